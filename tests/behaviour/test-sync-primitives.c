/*
 * tests/behaviour/test-sync-primitives.c - Semaphore, BoundedSemaphore,
 * Event and Condition, ported from CPython's _TestSemaphore
 * (test_semaphore, test_bounded_semaphore, test_timeout), _TestEvent
 * (test_event) and _TestCondition (test_notify, test_notify_all,
 * test_notify_n, test_timeout, test_waitfor, test_waitfor_timeout,
 * test_wait_result), with waiters in both processes and threads, plus
 * mproc's own: exact notify(n) counts, late waiters not woken by an
 * earlier notify, RLock depth restored by wait, timeouts on
 * CLOCK_MONOTONIC.
 */
#include "internal.h"
#include "task.h"

#include <math.h>
#include <pthread.h>

/* ---- helpers ---- */

#define DELTA 0.1

/* Assert that fn-like expression returns ETIMEDOUT after about t s. */
#define ASSERT_TIMES_OUT(expr, t)                                             \
  do {                                                                        \
    double t0_ = test_now();                                                  \
    ASSERT_ERR((expr), MPROC_ETIMEDOUT);                                      \
    double el_ = test_now() - t0_;                                            \
    ASSERT_DBL_GE(el_, (t));                                                  \
    ASSERT_DBL_LE(el_, (t) + test_slack());                                   \
  } while (0)

/* ==================== Semaphore ==================== */

TEST_IMPL(sync_semaphore_basic) {
  mproc_semaphore *s = NULL;
  ASSERT_OK(mproc_semaphore_new(&s, 2, NULL));
  ASSERT_EQ(mproc_semaphore_get_value(s), 2);
  ASSERT_OK(mproc_semaphore_acquire(s, MPROC_FOREVER));
  ASSERT_EQ(mproc_semaphore_get_value(s), 1);
  ASSERT_OK(mproc_semaphore_acquire(s, MPROC_FOREVER));
  ASSERT_EQ(mproc_semaphore_get_value(s), 0);
  ASSERT_ERR(mproc_semaphore_acquire(s, 0), MPROC_ETIMEDOUT);
  ASSERT_EQ(mproc_semaphore_get_value(s), 0);
  ASSERT_OK(mproc_semaphore_release(s));
  ASSERT_EQ(mproc_semaphore_get_value(s), 1);
  ASSERT_OK(mproc_semaphore_release(s));
  ASSERT_EQ(mproc_semaphore_get_value(s), 2);
  /* Not bounded: above the initial value. */
  ASSERT_OK(mproc_semaphore_release(s));
  ASSERT_EQ(mproc_semaphore_get_value(s), 3);
  ASSERT_OK(mproc_semaphore_release(s));
  ASSERT_EQ(mproc_semaphore_get_value(s), 4);
  ASSERT_OK(mproc_semaphore_free(s));
  return 0;
}

TEST_IMPL(sync_semaphore_bounded) {
  mproc_semaphore_opts o = {.bounded = 1};
  mproc_semaphore *s = NULL;
  ASSERT_OK(mproc_semaphore_new(&s, 2, &o));
  ASSERT_OK(mproc_semaphore_acquire(s, MPROC_FOREVER));
  ASSERT_EQ(mproc_semaphore_get_value(s), 1);
  ASSERT_OK(mproc_semaphore_acquire(s, MPROC_FOREVER));
  ASSERT_EQ(mproc_semaphore_get_value(s), 0);
  ASSERT_ERR(mproc_semaphore_acquire(s, 0), MPROC_ETIMEDOUT);
  ASSERT_OK(mproc_semaphore_release(s));
  ASSERT_EQ(mproc_semaphore_get_value(s), 1);
  ASSERT_OK(mproc_semaphore_release(s));
  ASSERT_EQ(mproc_semaphore_get_value(s), 2);
  /* Python: ValueError "semaphore or lock released too many times". */
  ASSERT_ERR(mproc_semaphore_release(s), MPROC_EUNLOCKED);
  ASSERT_EQ(mproc_semaphore_get_value(s), 2);
  ASSERT_OK(mproc_semaphore_free(s));
  /* Bounded at 0: every release is one too many. */
  ASSERT_OK(mproc_semaphore_new(&s, 0, &o));
  ASSERT_ERR(mproc_semaphore_release(s), MPROC_EUNLOCKED);
  ASSERT_OK(mproc_semaphore_free(s));
  return 0;
}

TEST_IMPL(sync_semaphore_timeout) {
  mproc_semaphore *s = NULL;
  ASSERT_OK(mproc_semaphore_new(&s, 0, NULL));
  ASSERT_TIMES_OUT(mproc_semaphore_acquire(s, 0), 0);
  ASSERT_TIMES_OUT(mproc_semaphore_acquire(s, 0.1), 0.1);
  ASSERT_TIMES_OUT(mproc_semaphore_acquire(s, 0.25), 0.25);
  ASSERT_ERR(mproc_semaphore_acquire(s, NAN), MPROC_EINVAL);
  ASSERT_OK(mproc_semaphore_free(s));
  return 0;
}

/* Signalling between processes: a child releases, the parent acquires. */
static int t_sem_release_later(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  mproc_semaphore *s = *(mproc_semaphore *const *)arg;
  test_sleep(DELTA);
  return mproc_semaphore_release(s) == 0 ? 0 : 2;
}

TEST_IMPL_ALL_METHODS(sync_semaphore_signal_between_processes) {
  for (int track = 0; track < 2; track++) {
    mproc_semaphore_opts o = {.death_return = track};
    mproc_semaphore *s = NULL;
    ASSERT_OK(mproc_semaphore_new(&s, 0, &o));
    mproc_process *p = test_start_proc(t_sem_release_later, &s, sizeof s);
    double t0 = test_now();
    ASSERT_OK(mproc_semaphore_acquire(s, 10));
    ASSERT_DBL_GE(test_now() - t0, DELTA * 0.5);
    ASSERT_EQ(test_finish_proc(p), 0);
    ASSERT_EQ(mproc_semaphore_get_value(s), 0);
    ASSERT_OK(mproc_semaphore_free(s));
  }
  return 0;
}

/* A resource counter: never more than `value` holders at once. */
struct sem_pool {
  mproc_semaphore *sem;
  int inside;
  int max_inside;
};

static int t_sem_pool(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct sem_pool *sp = *(struct sem_pool *const *)arg;
  for (int i = 0; i < 2000; i++) {
    if (mproc_semaphore_acquire(sp->sem, 30) != 0) {
      return 2;
    }
    int n = __atomic_add_fetch(&sp->inside, 1, __ATOMIC_SEQ_CST);
    int m = __atomic_load_n(&sp->max_inside, __ATOMIC_RELAXED);
    while (n > m && !__atomic_compare_exchange_n(&sp->max_inside, &m, n, 0,
                                                 __ATOMIC_SEQ_CST,
                                                 __ATOMIC_RELAXED)) {
    }
    __atomic_sub_fetch(&sp->inside, 1, __ATOMIC_SEQ_CST);
    if (mproc_semaphore_release(sp->sem) != 0) {
      return 3;
    }
  }
  return 0;
}

TEST_IMPL(sync_semaphore_resource_counter) {
  struct sem_pool *sp = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&sp, 1, sizeof *sp));
  mproc_semaphore_opts o = {.bounded = 1};
  ASSERT_OK(mproc_semaphore_new(&sp->sem, 3, &o));
  test_run_procs_ok(6, t_sem_pool, &sp, sizeof sp);
  ASSERT_LE(sp->max_inside, 3);
  ASSERT_GE(sp->max_inside, 1);
  ASSERT_EQ(mproc_semaphore_get_value(sp->sem), 3);
  ASSERT_OK(mproc_semaphore_free(sp->sem));
  ASSERT_OK(mproc_shm_free(sp));
  return 0;
}

/* ==================== Event ==================== */

static int t_event_set_later(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  mproc_event *e = *(mproc_event *const *)arg;
  test_sleep(DELTA);
  return mproc_event_set(e) == 0 ? 0 : 2;
}

TEST_IMPL(sync_event_basic) {
  mproc_event *e = NULL;
  ASSERT_OK(mproc_event_new(&e));
  ASSERT_EQ(mproc_event_is_set(e), 0);
  ASSERT_TIMES_OUT(mproc_event_wait(e, 0), 0);
  ASSERT_TIMES_OUT(mproc_event_wait(e, 0.1), 0.1);
  ASSERT_OK(mproc_event_set(e));
  ASSERT_EQ(mproc_event_is_set(e), 1);
  ASSERT_OK(mproc_event_set(e)); /* twice is fine */
  double t0 = test_now();
  ASSERT_OK(mproc_event_wait(e, MPROC_FOREVER));
  ASSERT_OK(mproc_event_wait(e, 0.1));
  ASSERT_OK(mproc_event_wait(e, 0));
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  ASSERT_OK(mproc_event_clear(e));
  ASSERT_EQ(mproc_event_is_set(e), 0);
  ASSERT_OK(mproc_event_clear(e));
  /* A child sets it after DELTA: wait() returns then. */
  mproc_process *p = test_start_proc(t_event_set_later, &e, sizeof e);
  t0 = test_now();
  ASSERT_OK(mproc_event_wait(e, MPROC_FOREVER));
  ASSERT_DBL_GE(test_now() - t0, DELTA * 0.5);
  ASSERT_EQ(mproc_event_is_set(e), 1);
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_ERR(mproc_event_wait(e, NAN), MPROC_EINVAL);
  ASSERT_OK(mproc_event_free(e));
  return 0;
}

struct ev_many {
  mproc_event *e;
  int started;
  int returned;
};

static int t_event_waiter(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct ev_many *m = *(struct ev_many *const *)arg;
  __atomic_add_fetch(&m->started, 1, __ATOMIC_SEQ_CST);
  int r = mproc_event_wait(m->e, 20);
  __atomic_add_fetch(&m->returned, 1, __ATOMIC_SEQ_CST);
  return r == 0 ? 0 : 2;
}

static void *th_event_waiter(void *arg) {
  return (void *)(intptr_t)t_event_waiter(&arg, sizeof arg, NULL);
}

/* set() wakes every waiter, processes and threads. */
TEST_IMPL(sync_event_wakes_all) {
  struct ev_many *m = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&m, 1, sizeof *m));
  ASSERT_OK(mproc_event_new(&m->e));
  mproc_process *p[4];
  pthread_t th[2];
  test_start_procs(p, 4, t_event_waiter, &m, sizeof m);
  test_start_threads(th, 2, th_event_waiter, m);
  while (__atomic_load_n(&m->started, __ATOMIC_SEQ_CST) < 6) {
    test_sleep(0.001);
  }
  test_sleep(DELTA);
  ASSERT_EQ(m->returned, 0);
  ASSERT_OK(mproc_event_set(m->e));
  test_finish_procs_ok(p, 4);
  test_join_threads_ok(th, 2);
  ASSERT_EQ(m->returned, 6);
  ASSERT_OK(mproc_event_free(m->e));
  ASSERT_OK(mproc_shm_free(m));
  return 0;
}

/* A set immediately followed by a clear still wakes the waiters that were
 * there (threading.Event's answer): no lost wakeup. */
TEST_IMPL(sync_event_set_then_clear_wakes) {
  struct ev_many *m = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&m, 1, sizeof *m));
  ASSERT_OK(mproc_event_new(&m->e));
  mproc_process *p[3];
  test_start_procs(p, 3, t_event_waiter, &m, sizeof m);
  while (__atomic_load_n(&m->started, __ATOMIC_SEQ_CST) < 3) {
    test_sleep(0.001);
  }
  test_sleep(DELTA);
  ASSERT_OK(mproc_event_set(m->e));
  ASSERT_OK(mproc_event_clear(m->e));
  test_finish_procs_ok(p, 3);
  ASSERT_EQ(mproc_event_is_set(m->e), 0);
  ASSERT_OK(mproc_event_free(m->e));
  ASSERT_OK(mproc_shm_free(m));
  return 0;
}

/* Ping-pong between two processes: every round trip must complete. */
struct pingpong {
  mproc_event *ping, *pong;
};

static int t_pong(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct pingpong *pp = *(struct pingpong *const *)arg;
  for (int i = 0; i < 5000; i++) {
    if (mproc_event_wait(pp->ping, 10) != 0) {
      return 2;
    }
    mproc_event_clear(pp->ping);
    mproc_event_set(pp->pong);
  }
  return 0;
}

TEST_IMPL_ALL_METHODS(sync_event_ping_pong) {
  struct pingpong *pp = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&pp, 1, sizeof *pp));
  ASSERT_OK(mproc_event_new(&pp->ping));
  ASSERT_OK(mproc_event_new(&pp->pong));
  mproc_process *p = test_start_proc(t_pong, &pp, sizeof pp);
  for (int i = 0; i < 5000; i++) {
    ASSERT_OK(mproc_event_set(pp->ping));
    ASSERT_OK(mproc_event_wait(pp->pong, 10));
    ASSERT_OK(mproc_event_clear(pp->pong));
  }
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_OK(mproc_event_free(pp->ping));
  ASSERT_OK(mproc_event_free(pp->pong));
  ASSERT_OK(mproc_shm_free(pp));
  return 0;
}

/* ==================== Condition ==================== */

/* Python's f(cond, sleeping, woken, timeout). */
struct cv {
  mproc_cond *cond;
  mproc_semaphore *sleeping;
  mproc_semaphore *woken;
  double timeout;
  int state;  /* guarded by cond's lock */
  int target; /* wait_for: the state awaited */
};

static int cv_f(struct cv *c) {
  mproc_lock *l = mproc_cond_lock(c->cond);
  if (mproc_lock_acquire(l, MPROC_FOREVER) != 0) return 2;
  if (mproc_semaphore_release(c->sleeping) != 0) return 3;
  int r = mproc_cond_wait(c->cond, c->timeout);
  if (r != 0 && r != MPROC_ETIMEDOUT) return 4;
  if (mproc_semaphore_release(c->woken) != 0) return 5;
  if (mproc_lock_release(l) != 0) return 6;
  return 0;
}

static int t_cv_f(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  return cv_f(*(struct cv *const *)arg);
}

static void *th_cv_f(void *arg) { return (void *)(intptr_t)cv_f(arg); }

static struct cv *cv_new(mproc_lock *lock) {
  struct cv *c = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&c, 1, sizeof *c));
  ASSERT_OK(mproc_cond_new(&c->cond, lock));
  mproc_semaphore_opts o = {0};
  ASSERT_OK(mproc_semaphore_new(&c->sleeping, 0, &o));
  ASSERT_OK(mproc_semaphore_new(&c->woken, 0, &o));
  c->timeout = MPROC_FOREVER;
  return c;
}

static void cv_free(struct cv *c) {
  ASSERT_OK(mproc_cond_free(c->cond));
  ASSERT_OK(mproc_semaphore_free(c->sleeping));
  ASSERT_OK(mproc_semaphore_free(c->woken));
  ASSERT_OK(mproc_shm_free(c));
}

static void cv_notify(struct cv *c, int n) {
  mproc_lock *l = mproc_cond_lock(c->cond);
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  ASSERT_OK(n < 0 ? mproc_cond_notify_all(c->cond)
                  : mproc_cond_notify(c->cond, n));
  ASSERT_OK(mproc_lock_release(l));
}

/* Wait until woken reaches want (or 5 s), then check it stays there. */
static void expect_woken(struct cv *c, int want) {
  double end = test_now() + 5;
  while (mproc_semaphore_get_value(c->woken) < want && test_now() < end) {
    test_sleep(0.005);
  }
  test_sleep(DELTA);
  ASSERT_EQ(mproc_semaphore_get_value(c->woken), want);
}

/* n processes and m threads running cv_f. */
struct crowd {
  mproc_process *p[8];
  pthread_t th[8];
  int np, nt;
};

static void crowd_start(struct crowd *k, struct cv *c, int np, int nt) {
  k->np = np;
  k->nt = nt;
  test_start_procs(k->p, np, t_cv_f, &c, sizeof c);
  test_start_threads(k->th, nt, th_cv_f, c);
  for (int i = 0; i < np + nt; i++) {
    ASSERT_OK(mproc_semaphore_acquire(c->sleeping, 10));
  }
}

static void crowd_join(struct crowd *k) {
  test_finish_procs_ok(k->p, k->np);
  test_join_threads_ok(k->th, k->nt);
}

/* test_notify: one process and one thread wait; each notify wakes
 * exactly one. */
TEST_IMPL(sync_cond_notify) {
  struct cv *c = cv_new(NULL);
  struct crowd k;
  crowd_start(&k, c, 1, 1);
  test_sleep(DELTA);
  ASSERT_EQ(mproc_semaphore_get_value(c->woken), 0);
  cv_notify(c, 1);
  expect_woken(c, 1);
  cv_notify(c, 1);
  expect_woken(c, 2);
  crowd_join(&k);
  cv_free(c);
  return 0;
}

/* test_notify_all: 6 waiters with a timeout time out; 6 new ones are all
 * woken by notify_all. */
TEST_IMPL_ALL_METHODS(sync_cond_notify_all) {
  struct cv *c = cv_new(NULL);
  struct crowd k;
  c->timeout = 0.1;
  crowd_start(&k, c, 3, 3);
  for (int i = 0; i < 6; i++) {
    ASSERT_OK(mproc_semaphore_acquire(c->woken, 10));
  }
  ASSERT_EQ(mproc_semaphore_get_value(c->woken), 0);
  crowd_join(&k);
  c->timeout = MPROC_FOREVER;
  crowd_start(&k, c, 3, 3);
  test_sleep(DELTA);
  ASSERT_EQ(mproc_semaphore_get_value(c->woken), 0);
  cv_notify(c, -1);
  expect_woken(c, 6);
  crowd_join(&k);
  cv_free(c);
  return 0;
}

/* test_notify_n, stricter: exactly n of the current waiters each time. */
TEST_IMPL(sync_cond_notify_n) {
  struct cv *c = cv_new(NULL);
  struct crowd k;
  crowd_start(&k, c, 3, 3);
  test_sleep(DELTA);
  ASSERT_EQ(mproc_semaphore_get_value(c->woken), 0);
  cv_notify(c, 2);
  expect_woken(c, 2);
  cv_notify(c, 1);
  expect_woken(c, 3);
  cv_notify(c, 0);
  expect_woken(c, 3);
  cv_notify(c, 4); /* only 3 left */
  expect_woken(c, 6);
  cv_notify(c, 3); /* nobody left */
  expect_woken(c, 6);
  crowd_join(&k);
  cv_free(c);
  return 0;
}

/* A notify reaches only the waiters there at the time: one that starts
 * waiting afterwards is not woken by it. */
TEST_IMPL(sync_cond_late_waiter_not_woken) {
  struct cv *c = cv_new(NULL);
  struct crowd k1, k2;
  crowd_start(&k1, c, 1, 0);
  mproc_lock *l = mproc_cond_lock(c->cond);
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  ASSERT_OK(mproc_cond_notify(c->cond, 1));
  /* The first waiter cannot run until the lock is released: a second
   * comes in after the notify (threads start waiting once they get the
   * lock, after this release). */
  ASSERT_OK(mproc_lock_release(l));
  crowd_start(&k2, c, 1, 0);
  expect_woken(c, 1);
  crowd_join(&k1);
  cv_notify(c, 1);
  expect_woken(c, 2);
  crowd_join(&k2);
  cv_free(c);
  return 0;
}

/* test_timeout and test_wait_result. */
static int t_cv_notify_once(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct cv *c = *(struct cv *const *)arg;
  mproc_lock *l = mproc_cond_lock(c->cond);
  if (mproc_lock_acquire(l, 10) != 0) return 2;
  if (mproc_cond_notify(c->cond, 1) != 0) return 3;
  return mproc_lock_release(l) == 0 ? 0 : 4;
}

TEST_IMPL(sync_cond_timeout_and_result) {
  struct cv *c = cv_new(NULL);
  mproc_lock *l = mproc_cond_lock(c->cond);
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  ASSERT_TIMES_OUT(mproc_cond_wait(c->cond, 0), 0);
  ASSERT_TIMES_OUT(mproc_cond_wait(c->cond, 0.1), 0.1);
  mproc_process *p = test_start_proc(t_cv_notify_once, &c, sizeof c);
  ASSERT_OK(mproc_cond_wait(c->cond, 60));
  ASSERT_EQ(mproc_lock_is_mine(l), 1);
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_EQ(test_finish_proc(p), 0);
  cv_free(c);
  return 0;
}

/* wait releases every level of an RLock and restores them. */
static int t_cv_grab(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct cv *c = *(struct cv *const *)arg;
  mproc_lock *l = mproc_cond_lock(c->cond);
  if (mproc_lock_acquire(l, 10) != 0) return 2;
  c->state = 7;
  if (mproc_cond_notify(c->cond, 1) != 0) return 3;
  return mproc_lock_release(l) == 0 ? 0 : 4;
}

TEST_IMPL(sync_cond_rlock_depth_restored) {
  struct cv *c = cv_new(NULL);
  mproc_lock *l = mproc_cond_lock(c->cond);
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  }
  mproc_process *p = test_start_proc(t_cv_grab, &c, sizeof c);
  while (c->state != 7) {
    ASSERT_OK(mproc_cond_wait(c->cond, 10));
  }
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(mproc_lock_is_mine(l), 1);
    ASSERT_OK(mproc_lock_release(l));
  }
  ASSERT_ERR(mproc_lock_release(l), MPROC_EPERM);
  ASSERT_EQ(test_finish_proc(p), 0);
  cv_free(c);
  return 0;
}

/* Over a plain Lock, shared with the caller. */
TEST_IMPL(sync_cond_over_lock) {
  mproc_lock *l = NULL;
  ASSERT_OK(mproc_lock_new(&l));
  struct cv *c = cv_new(l);
  ASSERT_PTR_EQ(mproc_cond_lock(c->cond), l);
  struct crowd k;
  crowd_start(&k, c, 2, 0);
  test_sleep(DELTA);
  cv_notify(c, 1);
  expect_woken(c, 1);
  cv_notify(c, -1);
  expect_woken(c, 2);
  crowd_join(&k);
  cv_free(c);
  ASSERT_EQ(mproc_lock_is_locked(l), 0);
  ASSERT_OK(mproc_lock_free(l));
  return 0;
}

/* test_waitfor: a child waits for state == 4 while the parent increments
 * it four times with a notify each. */
static int pred_state_is(void *arg) {
  struct cv *c = arg;
  return c->state == c->target;
}

static int pred_state_zero(void *arg) {
  struct cv *c = arg;
  return c->state == 0;
}

static int t_cv_waitfor(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct cv *c = *(struct cv *const *)arg;
  mproc_lock *l = mproc_cond_lock(c->cond);
  if (mproc_lock_acquire(l, 10) != 0) return 2;
  c->state = 0;
  if (mproc_cond_notify(c->cond, 1) != 0) return 3;
  c->target = 4;
  int r = mproc_cond_wait_for(c->cond, pred_state_is, c, MPROC_FOREVER);
  if (r != 1 || c->state != 4) return 4;
  return mproc_lock_release(l) == 0 ? 0 : 5;
}

TEST_IMPL(sync_cond_wait_for) {
  struct cv *c = cv_new(NULL);
  mproc_lock *l = mproc_cond_lock(c->cond);
  c->state = -1;
  mproc_process *p = test_start_proc(t_cv_waitfor, &c, sizeof c);
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  ASSERT_EQ(mproc_cond_wait_for(c->cond, pred_state_zero, c, 10), 1);
  ASSERT_EQ(c->state, 0);
  ASSERT_OK(mproc_lock_release(l));
  for (int i = 0; i < 4; i++) {
    test_sleep(0.01);
    ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
    c->state++;
    ASSERT_OK(mproc_cond_notify(c->cond, 1));
    ASSERT_OK(mproc_lock_release(l));
  }
  ASSERT_EQ(test_finish_proc(p), 0);
  cv_free(c);
  return 0;
}

/* test_waitfor_timeout: only three increments, so state 4 never comes;
 * wait_for gives up after its timeout in spite of the notifies. */
static int t_cv_bump3(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct cv *c = *(struct cv *const *)arg;
  mproc_lock *l = mproc_cond_lock(c->cond);
  for (int i = 0; i < 3; i++) {
    test_sleep(0.01);
    if (mproc_lock_acquire(l, 10) != 0) return 2;
    c->state++;
    if (mproc_cond_notify(c->cond, 1) != 0) return 3;
    if (mproc_lock_release(l) != 0) return 4;
  }
  return 0;
}

TEST_IMPL(sync_cond_wait_for_timeout) {
  struct cv *c = cv_new(NULL);
  mproc_lock *l = mproc_cond_lock(c->cond);
  c->state = 0;
  c->target = 4;
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  mproc_process *p = test_start_proc(t_cv_bump3, &c, sizeof c);
  double t0 = test_now();
  ASSERT_EQ(mproc_cond_wait_for(c->cond, pred_state_is, c, 0.1), 0);
  double el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.1);
  ASSERT_DBL_LE(el, 0.1 + test_slack());
  /* Already true: returns at once, even with timeout 0. */
  c->target = c->state;
  ASSERT_EQ(mproc_cond_wait_for(c->cond, pred_state_is, c, 0), 1);
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_EQ(c->state, 3);
  cv_free(c);
  return 0;
}
