/*
 * tests/behaviour/test-sync-barrier.c - Barrier, ported from CPython's
 * _TestBarrier with N = 5 processes (test_barrier, test_barrier_10,
 * test_wait_return, test_action, test_abort, test_reset,
 * test_abort_and_reset, test_timeout, test_default_timeout,
 * test_single_thread, test_thousand), plus threads and processes at once.
 */
#include "internal.h"
#include "task.h"

#include <math.h>
#include <pthread.h>

#define N 5

/* Everything a test's parties share, in the arena. */
struct bt {
  mproc_barrier *b, *b2;
  mproc_lock *lock;
  int passes;
  int r0, r1;        /* multipass counters (atomics) */
  int zeros;         /* waits that returned 0 */
  int actions;       /* action runs */
  int results1, results2, results3, timeouts;
  int log[N * 1000]; /* test_thousand's sequence; guarded by lock */
  int nlog;
};

/* A zeroed bt in the arena; b gets the options o (NULL: the defaults), and
 * an action in o gets the new bt as its argument. */
static struct bt *bt_new(const mproc_barrier_opts *o) {
  struct bt *t = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&t, 1, sizeof *t));
  mproc_barrier_opts with_arg;
  if (o != NULL) {
    with_arg = *o;
    if (with_arg.action != NULL) {
      with_arg.action_ctx = t;
    }
  }
  ASSERT_OK(mproc_barrier_new(&t->b, N, o != NULL ? &with_arg : NULL));
  ASSERT_OK(mproc_barrier_new(&t->b2, N, NULL));
  ASSERT_OK(mproc_lock_new(&t->lock));
  return t;
}

static void bt_free(struct bt *t) {
  ASSERT_OK(mproc_barrier_free(t->b));
  ASSERT_OK(mproc_barrier_free(t->b2));
  ASSERT_OK(mproc_lock_free(t->lock));
  ASSERT_OK(mproc_shm_free(t));
}

/* N-1 processes run fn(t); the caller runs it as the N-th party.  Returns
 * the sum of the exit codes (0: all good). */
static int run_parties(mproc_target_fn fn, struct bt *t) {
  mproc_process *p[N - 1];
  test_start_procs(p, N - 1, fn, &t, sizeof t);
  int bad = fn(&t, sizeof t, NULL);
  for (int i = 0; i < N - 1; i++) {
    bad += test_finish_proc(p[i]);
  }
  return bad;
}

#define ADD(field) __atomic_add_fetch(&t->field, 1, __ATOMIC_SEQ_CST)
#define GET(field) __atomic_load_n(&t->field, __ATOMIC_SEQ_CST)

/* test_barrier: lock-step passes. */
static int f_multipass(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct bt *t = *(struct bt *const *)arg;
  if (mproc_barrier_parties(t->b) != N) return 1;
  for (int i = 0; i < t->passes; i++) {
    ADD(r0);
    if (GET(r1) != i * N) return 2;
    int r = mproc_barrier_wait_default(t->b);
    if (r < 0 || r >= N) return 3;
    if (r == 0) ADD(zeros);
    ADD(r1);
    if (GET(r0) != (i + 1) * N) return 4;
    if (mproc_barrier_wait(t->b, MPROC_FOREVER) < 0) return 5;
  }
  return 0;
}

static void multipass(int passes) {
  struct bt *t = bt_new(NULL);
  t->passes = passes;
  ASSERT_EQ(run_parties(f_multipass, t), 0);
  ASSERT_EQ(t->r0, passes * N);
  ASSERT_EQ(t->r1, passes * N);
  /* test_wait_return: exactly one party got index 0 per pass. */
  ASSERT_EQ(t->zeros, passes);
  ASSERT_EQ(mproc_barrier_broken(t->b), 0);
  ASSERT_EQ(mproc_barrier_n_waiting(t->b), 0);
  bt_free(t);
}

TEST_IMPL(sync_barrier_passes) {
  multipass(1);
  return 0;
}

TEST_IMPL_ALL_METHODS(sync_barrier_passes_10) {
  multipass(10);
  return 0;
}

/* test_action: the action runs once per pass, in one party. */
static void action(void *arg) {
  struct bt *t = arg;
  ADD(actions);
}

static int f_wait_once(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct bt *t = *(struct bt *const *)arg;
  int r = mproc_barrier_wait(t->b, 10);
  if (r < 0) return 1;
  /* The action ran before anybody left wait. */
  return GET(actions) == 1 ? 0 : 2;
}

TEST_IMPL(sync_barrier_action) {
  mproc_barrier_opts o = {.action = action, .timeout = MPROC_FOREVER};
  struct bt *t = bt_new(&o);
  ASSERT_EQ(run_parties(f_wait_once, t), 0);
  ASSERT_EQ(t->actions, 1);
  bt_free(t);
  return 0;
}

/* A party's second wait on b, counted: results1 if it passed, results2 if
 * the barrier was broken.  Returns 0, or -1 for any other result. */
static int tally_second_wait(struct bt *t) {
  int r = mproc_barrier_wait(t->b, 10);
  if (r >= 0) {
    ADD(results1);
  } else if (r == MPROC_EBROKEN) {
    ADD(results2);
  } else {
    return -1;
  }
  return 0;
}

/* test_abort: one party aborts; the other N-1 are broken. */
static int f_abort(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct bt *t = *(struct bt *const *)arg;
  int i = mproc_barrier_wait(t->b, 10);
  if (i < 0) return 1;
  if (i == N / 2) {
    return mproc_barrier_abort(t->b) == 0 ? 0 : 2; /* Python: raise */
  }
  return tally_second_wait(t) == 0 ? 0 : 3;
}

TEST_IMPL(sync_barrier_abort) {
  struct bt *t = bt_new(NULL);
  ASSERT_EQ(run_parties(f_abort, t), 0);
  ASSERT_EQ(t->results1, 0);
  ASSERT_EQ(t->results2, N - 1);
  ASSERT_EQ(mproc_barrier_broken(t->b), 1);
  ASSERT_ERR(mproc_barrier_wait(t->b, 0), MPROC_EBROKEN);
  ASSERT_OK(mproc_barrier_reset(t->b));
  ASSERT_EQ(mproc_barrier_broken(t->b), 0);
  bt_free(t);
  return 0;
}

/* test_reset: one party resets while the others wait: they are broken,
 * then all pass again. */
static int f_reset(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct bt *t = *(struct bt *const *)arg;
  int i = mproc_barrier_wait(t->b, 10);
  if (i < 0) return 1;
  if (i == N / 2) {
    double end = test_now() + 10;
    while (mproc_barrier_n_waiting(t->b) < N - 1) {
      if (test_now() > end) return 2;
      test_sleep(0.001);
    }
    if (mproc_barrier_reset(t->b) != 0) return 3;
  } else {
    if (tally_second_wait(t) != 0) {
      return 4;
    }
  }
  if (mproc_barrier_wait(t->b, 10) < 0) return 5;
  ADD(results3);
  return 0;
}

/* Runs a reset case: no party passed its second wait, N - 1 found the
 * barrier broken, and all N passed once it was reset. */
static void check_reset_case(mproc_target_fn fn) {
  struct bt *t = bt_new(NULL);
  ASSERT_EQ(run_parties(fn, t), 0);
  ASSERT_EQ(t->results1, 0);
  ASSERT_EQ(t->results2, N - 1);
  ASSERT_EQ(t->results3, N);
  bt_free(t);
}

TEST_IMPL(sync_barrier_reset) {
  check_reset_case(f_reset);
  return 0;
}

/* test_abort_and_reset. */
static int f_abort_and_reset(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct bt *t = *(struct bt *const *)arg;
  int i = mproc_barrier_wait(t->b, 10);
  if (i < 0) return 1;
  if (i == N / 2) {
    if (mproc_barrier_abort(t->b) != 0) return 2;
  } else {
    if (tally_second_wait(t) != 0) {
      return 3;
    }
  }
  /* Synchronize and reset: everyone has left b, nobody enters it before
   * the reset. */
  int j = mproc_barrier_wait(t->b2, 10);
  if (j < 0) return 4;
  if (j == N / 2 && mproc_barrier_reset(t->b) != 0) return 5;
  if (mproc_barrier_wait(t->b2, 10) < 0) return 6;
  if (mproc_barrier_wait(t->b, 10) < 0) return 7;
  ADD(results3);
  return 0;
}

TEST_IMPL(sync_barrier_abort_and_reset) {
  check_reset_case(f_abort_and_reset);
  return 0;
}

/* test_timeout / test_default_timeout: one party is late; the others'
 * timeout breaks the barrier for all.  The party whose own timeout
 * expired gets MPROC_ETIMEDOUT, every other one MPROC_EBROKEN. */
static int f_timeout(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct bt *t = *(struct bt *const *)arg;
  int i = mproc_barrier_wait(t->b, 10);
  if (i < 0) return 1;
  if (i == N / 2) {
    /* The late party arrives only once another party's timeout broke the
     * barrier: an event, so a busy machine cannot let every party arrive
     * in time. */
    double end = test_now() + 30;
    while (mproc_barrier_broken(t->b) != 1) {
      if (test_now() > end) return 3;
      test_sleep(0.001);
    }
  }
  int r = t->passes ? mproc_barrier_wait_default(t->b)
                    : mproc_barrier_wait(t->b, 0.2);
  if (r == MPROC_ETIMEDOUT) {
    ADD(timeouts);
  } else if (r == MPROC_EBROKEN) {
    ADD(results2);
  } else {
    return 2;
  }
  return 0;
}

static void timeout_case(int use_default) {
  mproc_barrier_opts o = {.timeout = 0.2};
  struct bt *t = bt_new(use_default ? &o : NULL);
  t->passes = use_default;
  ASSERT_EQ(run_parties(f_timeout, t), 0);
  ASSERT_EQ(t->timeouts, 1);
  ASSERT_EQ(t->results2, N - 1);
  ASSERT_EQ(mproc_barrier_broken(t->b), 1);
  ASSERT_EQ(mproc_barrier_n_waiting(t->b), 0);
  bt_free(t);
}

TEST_IMPL(sync_barrier_timeout) {
  timeout_case(0);
  return 0;
}

TEST_IMPL(sync_barrier_default_timeout) {
  timeout_case(1);
  return 0;
}

/* test_single_thread: Barrier(1) never blocks. */
TEST_IMPL(sync_barrier_single) {
  mproc_barrier *b = NULL;
  ASSERT_OK(mproc_barrier_new(&b, 1, NULL));
  ASSERT_EQ(mproc_barrier_wait(b, MPROC_FOREVER), 0);
  ASSERT_EQ(mproc_barrier_wait(b, 0), 0);
  ASSERT_EQ(mproc_barrier_parties(b), 1);
  ASSERT_OK(mproc_barrier_free(b));
  return 0;
}

/* A poll (timeout 0) of a party that is not last times out at once and
 * breaks the barrier. */
TEST_IMPL(sync_barrier_poll) {
  mproc_barrier *b = NULL;
  ASSERT_OK(mproc_barrier_new(&b, 2, NULL));
  double t0 = test_now();
  ASSERT_ERR(mproc_barrier_wait(b, 0), MPROC_ETIMEDOUT);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  ASSERT_EQ(mproc_barrier_broken(b), 1);
  ASSERT_ERR(mproc_barrier_wait(b, 1), MPROC_EBROKEN);
  ASSERT_OK(mproc_barrier_reset(b));
  ASSERT_EQ(mproc_barrier_broken(b), 0);
  ASSERT_OK(mproc_barrier_free(b));
  return 0;
}

/* test_thousand: 5 processes x 1000 passes, the passes in order. */
static int f_thousand(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct bt *t = *(struct bt *const *)arg;
  for (int i = 0; i < 1000; i++) {
    if (mproc_barrier_wait(t->b, 30) < 0) return 1;
    if (mproc_lock_acquire(t->lock, 30) != 0) return 2;
    t->log[t->nlog++] = i;
    mproc_lock_release(t->lock);
  }
  return 0;
}

TEST_IMPL(sync_barrier_thousand) {
  struct bt *t = bt_new(NULL);
  ASSERT_EQ(run_parties(f_thousand, t), 0);
  ASSERT_EQ(t->nlog, N * 1000);
  for (int k = 0; k < N * 1000; k++) {
    ASSERT_EQ(t->log[k], k / N);
  }
  bt_free(t);
  return 0;
}

/* Threads and processes together: 2 threads here, 3 processes. */
static void *th_multipass(void *arg) {
  return (void *)(intptr_t)f_multipass(&arg, sizeof arg, NULL);
}

TEST_IMPL_ALL_METHODS(sync_barrier_threads_and_processes) {
  struct bt *t = bt_new(NULL);
  t->passes = 20;
  mproc_process *p[3];
  test_start_procs(p, 3, f_multipass, &t, sizeof t);
  pthread_t th[2];
  test_start_threads(th, 2, th_multipass, t);
  test_join_threads_ok(th, 2);
  test_finish_procs_ok(p, 3);
  ASSERT_EQ(t->zeros, 20);
  bt_free(t);
  return 0;
}
