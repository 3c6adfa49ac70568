/*
 * tests/behaviour/test-shared-ctypes.c - CPython's _TestSharedCTypes
 * (test_sharedctypes, test_synchronize, test_copy): a child doubles
 * Value('i', 7), a c_double 1/3, a c_longlong 2**33, a Structure, every
 * element of Array('d', range(10)) and the string in Array('c', 20)
 * ('hello' -> 'hellohello'); the parent checks the results, without and
 * with locks.  Python's Structure _Foo(x: int, y: double) is a plain C
 * struct here, stored in a RawArray of bytes (mproc has no Structure
 * typecode: any C type fits in a byte array).
 */
#include "internal.h"
#include "task.h"

#include <math.h>

struct foo {
  int x;
  double y;
};

struct objs {
  mproc_value *x, *y, *z;
  mproc_array *foo; /* 'B', sizeof(struct foo) */
  mproc_array *arr; /* 'd', 10 */
  mproc_array *string; /* 'c', 20 */
};

/* Python's string.value: the bytes up to the first NUL. */
static size_t c_string(mproc_array *s, char *out, size_t cap) {
  size_t n = mproc_array_len(s);
  ASSERT(n < cap);
  ASSERT_OK(mproc_array_read(s, 0, n, out));
  out[n] = '\0';
  return strlen(out);
}

/* Python's _double. */
static int t_double(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  struct objs o;
  ASSERT_EQ(len, sizeof o);
  memcpy(&o, arg, sizeof o);
  int64_t i;
  ASSERT_OK(mproc_value_get_i64(o.x, &i));
  ASSERT_OK(mproc_value_set_i64(o.x, i * 2));
  double d;
  ASSERT_OK(mproc_value_get_double(o.y, &d));
  ASSERT_OK(mproc_value_set_double(o.y, d * 2));
  long long q;
  ASSERT_OK(mproc_value_get(o.z, &q, sizeof q));
  q *= 2;
  ASSERT_OK(mproc_value_set(o.z, &q, sizeof q));
  struct foo f;
  ASSERT_OK(mproc_array_read(o.foo, 0, sizeof f, &f));
  f.x *= 2;
  f.y *= 2;
  ASSERT_OK(mproc_array_write(o.foo, 0, sizeof f, &f));
  /* string.value *= 2 */
  char s[64];
  size_t n = c_string(o.string, s, sizeof s);
  ASSERT(2 * n < mproc_array_len(o.string));
  ASSERT_OK(mproc_array_write(o.string, n, n, s));
  for (size_t k = 0; k < mproc_array_len(o.arr); k++) {
    ASSERT_OK(mproc_array_get_double(o.arr, k, &d));
    ASSERT_OK(mproc_array_set_double(o.arr, k, d * 2));
  }
  return 0;
}

static void sharedctypes_case(int lock) {
  /* lock=False in Python: raw objects; lock=True: a new RLock each. */
  mproc_shared_opts opts = {.raw = !lock};
  struct objs o;
  int seven = 7;
  double third = 1.0 / 3.0;
  long long big = 1LL << 33;
  ASSERT_OK(mproc_value_new(&o.x, 'i', &seven, &opts));
  ASSERT_OK(mproc_value_new(&o.y, 'd', &third, &opts));
  ASSERT_OK(mproc_value_new(&o.z, 'q', &big, &opts));
  struct foo f = {3, 2.0};
  ASSERT_OK(mproc_array_new(&o.foo, 'B', sizeof f, &f, &opts));
  double range[10];
  for (int k = 0; k < 10; k++) {
    range[k] = k;
  }
  ASSERT_OK(mproc_array_new(&o.arr, 'd', 10, range, &opts));
  ASSERT_OK(mproc_array_new(&o.string, 'c', 20, NULL, &opts));
  ASSERT_OK(mproc_array_write(o.string, 0, 5, "hello"));
  ASSERT_EQ(mproc_value_get_lock(o.x) != NULL, lock);
  ASSERT_EQ(mproc_array_get_lock(o.string) != NULL, lock);

  mproc_process *p;
  ASSERT_OK(mproc_process_new(&p, t_double, NULL, &o, sizeof o,
                              &(mproc_process_opts){.daemon = 1}));
  ASSERT_OK(mproc_process_start(p));
  ASSERT_OK(mproc_process_join(p, 60));
  int code = -1000;
  ASSERT_OK(mproc_process_exitcode(p, &code));
  ASSERT_EQ(code, 0);
  ASSERT_OK(mproc_process_free(p));

  int64_t i;
  ASSERT_OK(mproc_value_get_i64(o.x, &i));
  ASSERT_EQ(i, 14);
  double d;
  ASSERT_OK(mproc_value_get_double(o.y, &d));
  ASSERT(fabs(d - 2.0 / 3.0) < 1e-7);
  ASSERT_OK(mproc_value_get_i64(o.z, &i));
  ASSERT_EQ(i, INT64_C(1) << 34);
  ASSERT_OK(mproc_array_read(o.foo, 0, sizeof f, &f));
  ASSERT_EQ(f.x, 6);
  ASSERT(fabs(f.y - 4.0) < 1e-7);
  for (size_t k = 0; k < 10; k++) {
    ASSERT_OK(mproc_array_get_double(o.arr, k, &d));
    ASSERT(fabs(d - (double)k * 2) < 1e-7);
  }
  char s[64];
  c_string(o.string, s, sizeof s);
  ASSERT_STR_EQ(s, "hellohello");

  ASSERT_OK(mproc_value_free(o.x));
  ASSERT_OK(mproc_value_free(o.y));
  ASSERT_OK(mproc_value_free(o.z));
  ASSERT_OK(mproc_array_free(o.foo));
  ASSERT_OK(mproc_array_free(o.arr));
  ASSERT_OK(mproc_array_free(o.string));
}

TEST_IMPL_ALL_METHODS(shared_ctypes_sharedctypes) {
  sharedctypes_case(0);
  return 0;
}

TEST_IMPL(shared_ctypes_synchronize) {
  sharedctypes_case(1);
  return 0;
}

/* Python's test_copy: a copy is independent of the shared original.  In
 * C a copy is mproc_value_get / mproc_array_read into local memory. */
TEST_IMPL(shared_ctypes_copy) {
  struct foo f = {2, 5.0};
  mproc_array *foo;
  ASSERT_OK(mproc_raw_array_new(&foo, 'B', sizeof f, &f));
  struct foo bar;
  ASSERT_OK(mproc_array_read(foo, 0, sizeof bar, &bar));
  struct foo *shared = mproc_array_ptr(foo);
  shared->x = 0;
  shared->y = 0;
  ASSERT_EQ(bar.x, 2);
  ASSERT(bar.y == 5.0);
  ASSERT_OK(mproc_array_free(foo));
  return 0;
}
