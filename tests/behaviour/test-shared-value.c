/*
 * tests/behaviour/test-shared-value.c - Value and RawValue across
 * processes, ported from CPython's Lib/test/_test_multiprocessing.py
 * _TestValue (test_value, test_rawvalue, test_getobj_getlock): a child
 * process writes new values of several typecodes and the parent reads
 * them back, with and without a lock; and the get_lock rules, seen from a
 * child too.
 */
#include "internal.h"
#include "task.h"

#include <signal.h>

/* Python's codes_values: (typecode, initial value, value the child sets). */
#define NCODES 5
struct code_value {
  char code;
  int64_t first_i, then_i;  /* integer codes */
  double first_d, then_d;   /* 'd' */
};
static const struct code_value codes_values[NCODES] = {
    {'i', 4343, 24234, 0, 0},
    {'d', 0, 0, 3.625, -4.25},
    {'h', -232, 234, 0, 0},
    {'q', INT64_C(1) << 33, INT64_C(1) << 34, 0, 0},
    {'c', 'x', 'y', 0, 0},
};

struct values_arg {
  mproc_value *v[NCODES];
};

/* Python's _TestValue._test: sv.value = cv[2] for each. */
static int t_set_values(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  struct values_arg va;
  ASSERT_EQ(len, sizeof va);
  memcpy(&va, arg, sizeof va);
  for (int i = 0; i < NCODES; i++) {
    const struct code_value *cv = &codes_values[i];
    if (cv->code == 'd') {
      ASSERT_OK(mproc_value_set_double(va.v[i], cv->then_d));
    } else if (cv->code == 'c') {
      char c = (char)cv->then_i; /* the bytes way, as b'y' */
      ASSERT_OK(mproc_value_set(va.v[i], &c, 1));
    } else {
      ASSERT_OK(mproc_value_set_i64(va.v[i], cv->then_i));
    }
  }
  return 0;
}

static void value_case(int raw) {
  struct values_arg va;
  for (int i = 0; i < NCODES; i++) {
    const struct code_value *cv = &codes_values[i];
    union {
      int i;
      short h;
      long long q;
      char c;
      double d;
    } init;
    switch (cv->code) {
    case 'i': init.i = (int)cv->first_i; break;
    case 'h': init.h = (short)cv->first_i; break;
    case 'q': init.q = cv->first_i; break;
    case 'c': init.c = (char)cv->first_i; break;
    default: init.d = cv->first_d; break;
    }
    if (raw) {
      ASSERT_OK(mproc_raw_value_new(&va.v[i], cv->code, &init));
    } else {
      ASSERT_OK(mproc_value_new(&va.v[i], cv->code, &init, NULL));
    }
  }
  for (int i = 0; i < NCODES; i++) {
    const struct code_value *cv = &codes_values[i];
    if (cv->code == 'd') {
      double d;
      ASSERT_OK(mproc_value_get_double(va.v[i], &d));
      ASSERT(d == cv->first_d);
    } else {
      int64_t x;
      ASSERT_OK(mproc_value_get_i64(va.v[i], &x));
      ASSERT_EQ(x, cv->first_i);
    }
  }
  ASSERT_EQ(test_run_proc(t_set_values, &va, sizeof va), 0);
  for (int i = 0; i < NCODES; i++) {
    const struct code_value *cv = &codes_values[i];
    if (cv->code == 'd') {
      double d;
      ASSERT_OK(mproc_value_get_double(va.v[i], &d));
      ASSERT(d == cv->then_d);
    } else if (cv->code == 'c') {
      char c = 0;
      ASSERT_OK(mproc_value_get(va.v[i], &c, 1));
      ASSERT_EQ(c, 'y');
    } else {
      int64_t x;
      ASSERT_OK(mproc_value_get_i64(va.v[i], &x));
      ASSERT_EQ(x, cv->then_i);
    }
    ASSERT_OK(mproc_value_free(va.v[i]));
  }
}

TEST_IMPL(shared_value_child_writes) {
  value_case(0);
  return 0;
}

TEST_IMPL(shared_rawvalue_child_writes) {
  value_case(1);
  return 0;
}

/* ---- get_lock rules across processes ---- */

struct lock_arg {
  mproc_value *v;
  mproc_lock *expect; /* what get_lock must say in the child */
  int recursive;      /* an RLock: get/set may be called while holding it */
};

/* The child sees the same lock, can take it, finds it is its own while
 * held, and that the parent's hold is not. */
static int t_check_lock(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  struct lock_arg la;
  ASSERT_EQ(len, sizeof la);
  memcpy(&la, arg, sizeof la);
  mproc_lock *l = mproc_value_get_lock(la.v);
  ASSERT_PTR_EQ(l, la.expect);
  if (l == NULL) {
    return 0;
  }
  ASSERT_OK(mproc_lock_acquire(l, 30));
  ASSERT_EQ(mproc_lock_held_by_process(l), 1);
  int64_t x;
  if (la.recursive) {
    /* Python's `with v.get_lock(): v.value += 1`. */
    ASSERT_OK(mproc_value_get_i64(la.v, &x));
    ASSERT_OK(mproc_value_set_i64(la.v, x + 1));
    ASSERT_OK(mproc_lock_release(l));
  } else {
    /* With a plain Lock that would deadlock, in Python too: get and set
     * take the lock themselves.  Use the storage directly instead. */
    (*(int *)mproc_value_ptr(la.v))++;
    ASSERT_OK(mproc_lock_release(l));
  }
  return 0;
}

/* Python's test_getobj_getlock. */
TEST_IMPL(shared_value_getlock_across_processes) {
  int five = 5;
  /* Value('i', 5): a new RLock. */
  mproc_value *v1;
  ASSERT_OK(mproc_value_new(&v1, 'i', &five, NULL));
  mproc_lock *l1 = mproc_value_get_lock(v1);
  ASSERT_NOT_NULL(l1);
  ASSERT_PTR_EQ(mproc_value_ptr(v1), mproc_value_ptr(v1));
  ASSERT_EQ(*(int *)mproc_value_ptr(v1), 5);
  ASSERT_OK(mproc_lock_acquire(l1, 0));
  ASSERT_EQ(mproc_lock_is_mine(l1), 1);
  ASSERT_OK(mproc_lock_release(l1));

  /* Value('i', 5, lock=Lock()): that lock. */
  mproc_lock *lock;
  ASSERT_OK(mproc_lock_new(&lock));
  mproc_shared_opts o = {.lock = lock};
  mproc_value *v3;
  ASSERT_OK(mproc_value_new(&v3, 'i', &five, &o));
  ASSERT_PTR_EQ(mproc_value_get_lock(v3), lock);

  /* Value('i', 5, lock=False) and RawValue: none. */
  mproc_shared_opts ro = {.raw = 1};
  mproc_value *v4, *v5;
  ASSERT_OK(mproc_value_new(&v4, 'i', &five, &ro));
  ASSERT_NULL(mproc_value_get_lock(v4));
  ASSERT_OK(mproc_raw_value_new(&v5, 'i', &five));
  ASSERT_NULL(mproc_value_get_lock(v5));

  struct lock_arg la[] = {
      {v1, l1, 1}, {v3, lock, 0}, {v4, NULL, 0}, {v5, NULL, 0}};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(la); i++) {
    ASSERT_EQ(test_run_proc(t_check_lock, &la[i], sizeof la[i]), 0);
  }
  int64_t x;
  ASSERT_OK(mproc_value_get_i64(v1, &x));
  ASSERT_EQ(x, 6);
  ASSERT_OK(mproc_value_get_i64(v3, &x));
  ASSERT_EQ(x, 6);
  ASSERT_OK(mproc_value_free(v1));
  ASSERT_OK(mproc_value_free(v3));
  ASSERT_OK(mproc_value_free(v4));
  ASSERT_OK(mproc_value_free(v5));
  ASSERT_OK(mproc_lock_free(lock));
  return 0;
}

/* A child frees the object the parent made (any process may free it,
 * once); the parent then sees MPROC_EINVAL, not a crash. */
static int t_free_value(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  mproc_value *v;
  ASSERT_EQ(len, sizeof v);
  memcpy(&v, arg, sizeof v);
  ASSERT_OK(mproc_value_free(v));
  return 0;
}

TEST_IMPL(shared_value_freed_by_child) {
  mproc_value *v;
  ASSERT_OK(mproc_value_new(&v, 'q', NULL, NULL));
  ASSERT_EQ(test_run_proc(t_free_value, &v, sizeof v), 0);
  int64_t x;
  ASSERT_ERR(mproc_value_get_i64(v, &x), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_add(v, 1, &x), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_free(v), MPROC_EINVAL);
  ASSERT_OK(mproc__arena_check());
  return 0;
}

/* ---- a lock holder that dies ---- */

/* Take the value's lock, write, and die holding it. */
static int t_die_holding(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  mproc_value *v;
  ASSERT_EQ(len, sizeof v);
  memcpy(&v, arg, sizeof v);
  ASSERT_OK(mproc_lock_acquire(mproc_value_get_lock(v), MPROC_FOREVER));
  ASSERT_OK(mproc_value_set_i64(v, 7));
  raise(SIGKILL);
  return 0;
}

/* A get after the holder died: the access marks the lock consistent and
 * succeeds (one element has nothing to repair); the lock stays usable. */
TEST_IMPL_ALL_METHODS(shared_value_lock_holder_died) {
  mproc_value *v;
  ASSERT_OK(mproc_value_new(&v, 'i', NULL, NULL));
  ASSERT_EQ(test_run_proc(t_die_holding, &v, sizeof v), -SIGKILL);
  mproc_lock *l = mproc_value_get_lock(v);
  int64_t x = 0;
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, 7);
  ASSERT_OK(mproc_value_set_i64(v, 8));
  ASSERT_EQ(mproc_lock_is_locked(l), 0);
  ASSERT_OK(mproc_lock_acquire(l, 0));
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_OK(mproc_value_free(v));
  return 0;
}
