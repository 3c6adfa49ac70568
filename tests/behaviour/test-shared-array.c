/*
 * tests/behaviour/test-shared-array.c - Array and RawArray across
 * processes, ported from CPython's Lib/test/_test_multiprocessing.py
 * _TestArray (test_array, test_rawarray, test_array_from_size,
 * test_getobj_getlock_obj): len, index, slice read and write, a child that
 * computes prefix sums in place, zeroed arrays, and the lock rules.
 */
#include "internal.h"
#include "task.h"

#define N 10

/* Python's _TestArray.f: seq[i] += seq[i-1], on a plain C array. */
static void prefix_sums(int *seq, size_t n) {
  for (size_t i = 1; i < n; i++) {
    seq[i] += seq[i - 1];
  }
}

/* The same on the shared array, element by element through the API, as
 * Python's f does on the Array (each index access takes the lock). */
static int t_prefix_sums(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  mproc_array *a;
  ASSERT_EQ(len, sizeof a);
  memcpy(&a, arg, sizeof a);
  size_t n = mproc_array_len(a);
  ASSERT_EQ(n, N);
  for (size_t i = 1; i < n; i++) {
    int64_t prev, cur;
    ASSERT_OK(mproc_array_get_i64(a, i - 1, &prev));
    ASSERT_OK(mproc_array_get_i64(a, i, &cur));
    ASSERT_OK(mproc_array_set_i64(a, i, cur + prev));
  }
  return 0;
}

static void array_case(int raw) {
  int seq[N] = {680, 626, 934, 821, 150, 233, 548, 982, 714, 831};
  mproc_array *arr;
  if (raw) {
    ASSERT_OK(mproc_raw_array_new(&arr, 'i', N, seq));
  } else {
    ASSERT_OK(mproc_array_new(&arr, 'i', N, seq, NULL));
  }
  /* len(arr), arr[3], arr[2:7] */
  ASSERT_EQ(mproc_array_len(arr), N);
  int64_t x;
  ASSERT_OK(mproc_array_get_i64(arr, 3, &x));
  ASSERT_EQ(x, seq[3]);
  int part[5];
  ASSERT_OK(mproc_array_read(arr, 2, 5, part));
  ASSERT_EQ(memcmp(part, seq + 2, sizeof part), 0);
  /* arr[4:8] = seq[4:8] = array.array('i', [1, 2, 3, 4]) */
  static const int four[4] = {1, 2, 3, 4};
  ASSERT_OK(mproc_array_write(arr, 4, 4, four));
  memcpy(seq + 4, four, sizeof four);
  int all[N];
  ASSERT_OK(mproc_array_read(arr, 0, N, all));
  ASSERT_EQ(memcmp(all, seq, sizeof seq), 0);
  /* The child computes the prefix sums in place; we compute them on
   * our own copy and compare. */
  prefix_sums(seq, N);
  ASSERT_EQ(test_run_proc(t_prefix_sums, &arr, sizeof arr), 0);
  ASSERT_OK(mproc_array_read(arr, 0, N, all));
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(all[i], seq[i]);
  }
  ASSERT_OK(mproc_array_free(arr));
}

TEST_IMPL_ALL_METHODS(shared_array_child_prefix_sums) {
  array_case(0);
  return 0;
}

TEST_IMPL(shared_rawarray_child_prefix_sums) {
  array_case(1);
  return 0;
}

/* Python's test_array_from_size: zeroed three times over (issue #11675),
 * arr[:] = range(10). */
TEST_IMPL(shared_array_from_size_zeroed) {
  for (int round = 0; round < 3; round++) {
    mproc_array *arr;
    ASSERT_OK(mproc_array_new(&arr, 'i', N, NULL, NULL));
    ASSERT_EQ(mproc_array_len(arr), N);
    int all[N];
    ASSERT_OK(mproc_array_read(arr, 0, N, all));
    for (int i = 0; i < N; i++) {
      ASSERT_EQ(all[i], 0);
    }
    for (int i = 0; i < N; i++) {
      all[i] = i;
    }
    ASSERT_OK(mproc_array_write(arr, 0, N, all));
    int back[N];
    ASSERT_OK(mproc_array_read(arr, 0, N, back));
    ASSERT_EQ(memcmp(back, all, sizeof all), 0);
    /* Dirty the memory before freeing, so a reuse would show. */
    memset(mproc_array_ptr(arr), 0xa5, sizeof all);
    ASSERT_OK(mproc_array_free(arr));
  }
  return 0;
}

struct lock_arg {
  mproc_array *a;
  mproc_lock *expect;
  int recursive; /* an RLock: the array may be used while holding it */
};

static int t_check_lock(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  struct lock_arg la;
  ASSERT_EQ(len, sizeof la);
  memcpy(&la, arg, sizeof la);
  ASSERT_PTR_EQ(mproc_array_get_lock(la.a), la.expect);
  if (la.expect != NULL) {
    ASSERT_OK(mproc_lock_acquire(la.expect, 30));
    ASSERT_EQ(mproc_lock_held_by_process(la.expect), 1);
    if (la.recursive) {
      ASSERT_OK(mproc_array_set_i64(la.a, 0, 42));
    } else {
      /* A plain Lock is not recursive: set_i64 would deadlock here, as
       * arr[0] = 42 inside `with arr.get_lock():` does in Python. */
      ((int *)mproc_array_ptr(la.a))[0] = 42;
    }
    ASSERT_OK(mproc_lock_release(la.expect));
  }
  return 0;
}

/* Python's test_getobj_getlock_obj. */
TEST_IMPL(shared_array_getlock_across_processes) {
  int seq[N] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  mproc_array *a1, *a2, *a3, *a4, *a5;
  ASSERT_OK(mproc_array_new(&a1, 'i', N, seq, NULL));
  mproc_lock *l1 = mproc_array_get_lock(a1);
  ASSERT_NOT_NULL(l1);
  ASSERT_NOT_NULL(mproc_array_ptr(a1));

  mproc_shared_opts def = {0}; /* lock=None: a new RLock too */
  ASSERT_OK(mproc_array_new(&a2, 'i', N, seq, &def));
  ASSERT_NOT_NULL(mproc_array_get_lock(a2));
  ASSERT_PTR_NE(mproc_array_get_lock(a2), l1);

  mproc_lock *lock;
  ASSERT_OK(mproc_lock_new(&lock));
  mproc_shared_opts o = {.lock = lock};
  ASSERT_OK(mproc_array_new(&a3, 'i', N, seq, &o));
  ASSERT_PTR_EQ(mproc_array_get_lock(a3), lock);

  mproc_shared_opts ro = {.raw = 1};
  ASSERT_OK(mproc_array_new(&a4, 'i', N, seq, &ro));
  ASSERT_NULL(mproc_array_get_lock(a4));
  ASSERT_OK(mproc_raw_array_new(&a5, 'i', N, seq));
  ASSERT_NULL(mproc_array_get_lock(a5));

  /* lock='navalue': not a lock. */
  mproc_array *bad = NULL;
  o.lock = (mproc_lock *)(void *)seq;
  ASSERT_ERR(mproc_array_new(&bad, 'i', N, seq, &o), MPROC_EINVAL);
  ASSERT_NULL(bad);

  struct lock_arg la[] = {
      {a1, l1, 1}, {a3, lock, 0}, {a4, NULL, 0}, {a5, NULL, 0}};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(la); i++) {
    ASSERT_EQ(test_run_proc(t_check_lock, &la[i], sizeof la[i]), 0);
  }
  int64_t x;
  ASSERT_OK(mproc_array_get_i64(a1, 0, &x));
  ASSERT_EQ(x, 42);
  ASSERT_OK(mproc_array_get_i64(a3, 0, &x));
  ASSERT_EQ(x, 42);
  ASSERT_OK(mproc_array_free(a1));
  ASSERT_OK(mproc_array_free(a2));
  ASSERT_OK(mproc_array_free(a3));
  ASSERT_OK(mproc_array_free(a4));
  ASSERT_OK(mproc_array_free(a5));
  ASSERT_OK(mproc_lock_free(lock));
  return 0;
}

/* Slices written by several processes at once under the array's lock are
 * never torn: each child writes its own id to the whole array many times;
 * every read, under the lock, sees one id throughout. */
#define NWRITERS 4
#define TEAR_LEN 512

struct tear_arg {
  mproc_array *a;
  int id;
};

static int t_write_slices(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  struct tear_arg ta;
  ASSERT_EQ(len, sizeof ta);
  memcpy(&ta, arg, sizeof ta);
  static long long buf[TEAR_LEN];
  for (int round = 0; round < 300; round++) {
    for (int i = 0; i < TEAR_LEN; i++) {
      buf[i] = ta.id;
    }
    ASSERT_OK(mproc_array_write(ta.a, 0, TEAR_LEN, buf));
    ASSERT_OK(mproc_array_read(ta.a, 0, TEAR_LEN, buf));
    for (int i = 1; i < TEAR_LEN; i++) {
      ASSERT_EQ(buf[i], buf[0]);
    }
  }
  return 0;
}

TEST_IMPL(shared_array_slices_not_torn) {
  mproc_array *a;
  ASSERT_OK(mproc_array_new(&a, 'q', TEAR_LEN, NULL, NULL));
  mproc_process *p[NWRITERS];
  for (int i = 0; i < NWRITERS; i++) {
    struct tear_arg ta = {a, i + 1};
    ASSERT_OK(mproc_process_new(&p[i], t_write_slices, NULL, &ta, sizeof ta,
                                NULL));
    ASSERT_OK(mproc_process_start(p[i]));
  }
  for (int i = 0; i < NWRITERS; i++) {
    int code = -1000;
    ASSERT_OK(mproc_process_join(p[i], 120));
    ASSERT_OK(mproc_process_exitcode(p[i], &code));
    ASSERT_EQ(code, 0);
    ASSERT_OK(mproc_process_free(p[i]));
  }
  long long first;
  ASSERT_OK(mproc_array_read(a, 0, 1, &first));
  ASSERT(first >= 1 && first <= NWRITERS);
  ASSERT_OK(mproc_array_free(a));
  return 0;
}
