/*
 * tests/fault/test-pool-stuck.c - a worker stopped (SIGSTOP: a debugger,
 * a long deschedule) while it holds a shared lock does not freeze the
 * pool:
 *   - stopped inside the pool lock's critical section (aimed: the fault
 *     hook raises SIGSTOP there): a get with a timeout returns in time,
 *     task_timeout is still enforced on another worker, the stopped
 *     worker is killed after the documented bound and its state repaired,
 *     queued work runs, and free returns;
 *   - a task that allocates from the arena in a loop, stopped from
 *     outside (often inside the allocator's lock): other work completes
 *     and free returns;
 *   - stopped inside the allocator's lock (aimed) while results wait to
 *     be collected: a get returns them in time, with its timeout or
 *     without one, while the worker still holds the lock (the blocks
 *     they leave go to the result thread), and nothing leaks.
 * A watchdog thread continues the stopped worker after 15 s, so that a
 * pool that waits for it fails the timing checks instead of hanging.
 */
#include "mproc/pool.h"
#include "task.h"

#include "internal.h"

#include <signal.h>
#include <stdatomic.h>

typedef struct stuck_board {
  pid_t parent;
  _Atomic int armed;
  _Atomic pid_t in_arena; /* the worker that stopped in the arena's lock */
  _Atomic pid_t stopped;  /* the worker that stopped itself */
  _Atomic pid_t looper;   /* the worker allocating in a loop */
} stuck_board;

static stuck_board *SK;

static void stop_hook(int point, void *ctx) {
  (void)ctx;
  if (SK == NULL || point != mproc__fault_lookup("pool.lock_held") ||
      getpid() == SK->parent || atomic_load(&SK->armed) == 0) {
    return;
  }
  if (atomic_exchange(&SK->armed, 0) == 1) {
    atomic_store(&SK->stopped, getpid());
    raise(SIGSTOP); /* holding the pool lock */
  }
}

/* In a worker that armed itself (free_in_lock_task), stop inside the
 * allocator's lock: after a free marked its block, before it merged. */
static int g_arena_armed;

static void arena_stop_hook(int point, void *ctx) {
  (void)ctx;
  if (g_arena_armed && point == mproc__fault_lookup("arena.free_marked")) {
    g_arena_armed = 0;
    atomic_store(&SK->in_arena, getpid());
    raise(SIGSTOP); /* holding the arena's lock */
  }
}

static int free_in_lock_task(mproc_task *t, const void *arg, size_t len,
                             void *ctx) {
  (void)t, (void)arg, (void)len, (void)ctx;
  void *b;
  if (mproc_shm_alloc(&b, 64) != 0) {
    return 1;
  }
  g_arena_armed = 1;
  mproc_shm_free(b);
  return 0;
}

/* A callback that keeps the result thread until the test lets it go, so
 * that only a waiting caller collects results meanwhile. */
typedef struct gate {
  int entered[2];
  int release[2];
} gate;

static void gate_cb(mproc_async *r, void *ctx) {
  (void)r;
  gate *g = ctx;
  int one = 1;
  char c;
  ASSERT_EQ(write(g->entered[1], &one, sizeof one), (ssize_t)sizeof one);
  ASSERT_EQ(read(g->release[0], &c, 1), 1);
}

static int sleep_task(mproc_task *t, const void *arg, size_t len,
                 void *ctx) {
  (void)ctx;
  (void)t, (void)arg, (void)len;
  test_sleep(30);
  return 0;
}

static int sqr_task(mproc_task *t, const void *arg, size_t len,
                 void *ctx) {
  (void)ctx;
  int x;
  (void)len;
  memcpy(&x, arg, sizeof x);
  x *= x;
  return mproc_task_return(t, &x, sizeof x);
}

static int alloc_loop_task(mproc_task *t, const void *arg, size_t len,
                 void *ctx) {
  (void)ctx;
  (void)t, (void)arg, (void)len;
  atomic_store(&SK->looper, getpid());
  for (;;) {
    void *b;
    if (mproc_shm_alloc(&b, 200) == 0) {
      mproc_shm_free(b);
    }
  }
  return 0;
}

/* Continue pid after 15 s, unless told to stop watching. */
typedef struct watchdog {
  pthread_t th;
  _Atomic pid_t pid;
  _Atomic int done;
} watchdog;

static void *watchdog_main(void *arg) {
  watchdog *w = arg;
  double until = test_now() + 15;
  while (!atomic_load(&w->done) && test_now() < until) {
    test_sleep(0.01);
  }
  pid_t pid = atomic_load(&w->pid);
  if (!atomic_load(&w->done) && pid > 0) {
    fprintf(stderr, "# watchdog: continuing worker %d\n", (int)pid);
    kill(pid, SIGCONT);
  }
  return NULL;
}

static pid_t wait_stopped(_Atomic pid_t *slot) {
  double until = test_now() + 10 * test_timeout_mult();
  pid_t pid;
  while ((pid = atomic_load(slot)) == 0) {
    ASSERT(test_now() < until);
    test_sleep(0.001);
  }
  return pid;
}

static void wait_gone(pid_t pid) {
  double until = test_now() + 10 * test_timeout_mult();
  while (test_pid_running(pid)) {
    ASSERT(test_now() < until);
    test_sleep(0.001);
  }
}

TEST_IMPL(pool_worker_stopped_holding_pool_lock) {
  ASSERT_OK(mproc_shm_calloc((void **)&SK, 1, sizeof *SK));
  SK->parent = getpid();
  mproc__fault_hook = stop_hook;
  watchdog wd;
  memset(&wd, 0, sizeof wd);
  ASSERT_EQ(pthread_create(&wd.th, NULL, watchdog_main, &wd), 0);
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 2;
  o.task_timeout = 0.5;
  o.timeout_grace = 0.2;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  /* One worker in a long task; the other stops in the lock. */
  mproc_async *longr, *q;
  ASSERT_OK(mproc_pool_apply_async(p, sleep_task, NULL, NULL, 0, NULL, &longr));
  test_sleep(0.05); /* not needed for correctness: lets it start first */
  atomic_store(&SK->armed, 1);
  int x = 7;
  ASSERT_OK(mproc_pool_apply_async(p, sqr_task, NULL, &x, sizeof x, NULL, &q));
  pid_t stopped = wait_stopped(&SK->stopped);
  atomic_store(&wd.pid, stopped);
  /* The caller's timeout holds while the lock is held. */
  double t0 = test_now();
  int rc = mproc_async_get(q, 0.3);
  double dt = test_now() - t0;
  ASSERT(rc == MPROC_ETIMEDOUT || rc == 0);
  ASSERT_DBL_LE(dt, 0.3 + 0.5 * test_timeout_mult());
  /* The stopped worker is killed after the bound; the queued task runs;
   * task_timeout is enforced on the other one. */
  ASSERT_OK(mproc_async_get(q, 10 * test_timeout_mult()));
  ASSERT_EQ(*(const int *)mproc_async_data(q, NULL), 49);
  ASSERT_DBL_LE(test_now() - t0, 1.0 + 3 * test_timeout_mult());
  ASSERT_ERR(mproc_async_get(longr, 10 * test_timeout_mult()),
             MPROC_ETIMEDOUT);
  wait_gone(stopped);
  mproc_async_free(q);
  mproc_async_free(longr);
  /* Again, and free the pool while the worker is stopped in the lock. */
  atomic_store(&SK->stopped, 0);
  atomic_store(&SK->armed, 1);
  ASSERT_OK(mproc_pool_apply_async(p, sqr_task, NULL, &x, sizeof x, NULL, &q));
  stopped = wait_stopped(&SK->stopped);
  atomic_store(&wd.pid, stopped);
  t0 = test_now();
  ASSERT_OK(mproc_pool_free(p));
  ASSERT_DBL_LE(test_now() - t0, 1.0 + 3 * test_timeout_mult());
  wait_gone(stopped);
  mproc_async_free(q);
  atomic_store(&wd.done, 1);
  ASSERT_EQ(pthread_join(wd.th, NULL), 0);
  mproc__fault_hook = NULL;
  ASSERT_OK(mproc__arena_check());
  mproc_shm_free(SK);
  SK = NULL;
  return 0;
}

TEST_IMPL(pool_worker_stopped_allocating) {
  ASSERT_OK(mproc_shm_calloc((void **)&SK, 1, sizeof *SK));
  SK->parent = getpid();
  watchdog wd;
  memset(&wd, 0, sizeof wd);
  ASSERT_EQ(pthread_create(&wd.th, NULL, watchdog_main, &wd), 0);
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 2;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  for (int round = 0; round < 4; round++) {
    atomic_store(&SK->looper, 0);
    mproc_async *loop;
    ASSERT_OK(mproc_pool_apply_async(p, alloc_loop_task, NULL, NULL, 0, NULL,
                                     &loop));
    pid_t pid = wait_stopped(&SK->looper);
    test_sleep(0.001 * round); /* not needed for correctness: varies the moment */
    ASSERT_EQ(kill(pid, SIGSTOP), 0);
    atomic_store(&wd.pid, pid);
    double t0 = test_now();
    for (int i = 0; i < 10; i++) {
      mproc_async *r;
      ASSERT_OK(mproc_pool_apply_async(p, sqr_task, NULL, &i, sizeof i, NULL, &r));
      ASSERT_OK(mproc_async_get(r, 10 * test_timeout_mult()));
      ASSERT_EQ(*(const int *)mproc_async_data(r, NULL), i * i);
      mproc_async_free(r);
    }
    ASSERT_DBL_LE(test_now() - t0, 1.0 + 3 * test_timeout_mult());
    /* Stopped inside the allocator's lock: killed by the pool
     * (EWORKERDIED); outside it: still stopped, ended here. */
    if (test_pid_running(pid) && mproc_async_ready(loop) == 0) {
      kill(pid, SIGKILL);
    }
    ASSERT_ERR(mproc_async_get(loop, 10 * test_timeout_mult()),
               MPROC_EWORKERDIED);
    mproc_async_free(loop);
    wait_gone(pid);
  }
  double t0 = test_now();
  ASSERT_OK(mproc_pool_free(p));
  ASSERT_DBL_LE(test_now() - t0, 1.0 + 3 * test_timeout_mult());
  atomic_store(&wd.done, 1);
  ASSERT_EQ(pthread_join(wd.th, NULL), 0);
  ASSERT_OK(mproc__arena_check());
  mproc_shm_free(SK);
  SK = NULL;
  return 0;
}

TEST_IMPL(pool_get_while_worker_stopped_in_arena_lock) {
  ASSERT_OK(mproc_shm_calloc((void **)&SK, 1, sizeof *SK));
  SK->parent = getpid();
  mproc_arena_stats st0, st1;
  ASSERT_OK(mproc_arena_get_stats(&st0));
  mproc__fault_hook = arena_stop_hook;
  watchdog wd;
  memset(&wd, 0, sizeof wd);
  ASSERT_EQ(pthread_create(&wd.th, NULL, watchdog_main, &wd), 0);
  gate g;
  ASSERT_EQ(pipe(g.entered), 0);
  ASSERT_EQ(pipe(g.release), 0);
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 1;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  /* The result thread is held in a callback; then the one worker
   * finishes two tasks (their results wait in the done list) and stops
   * inside the arena's lock in a third. */
  int x = 3, y = 4, z = 5;
  mproc_async *held, *a, *b, *stop;
  mproc_apply_opts ao = {gate_cb, NULL, &g};
  ASSERT_OK(mproc_pool_apply_async(p, sqr_task, NULL, &x, sizeof x, &ao,
                                   &held));
  int v;
  ASSERT_EQ(test_read_int(g.entered[0], &v, 10 * test_timeout_mult()), 1);
  ASSERT_OK(mproc_pool_apply_async(p, sqr_task, NULL, &y, sizeof y, NULL, &a));
  ASSERT_OK(mproc_pool_apply_async(p, sqr_task, NULL, &z, sizeof z, NULL, &b));
  ASSERT_OK(mproc_pool_apply_async(p, free_in_lock_task, NULL, NULL, 0, NULL,
                                   &stop));
  pid_t stopped = wait_stopped(&SK->in_arena);
  atomic_store(&wd.pid, stopped);
  /* With a timeout, and without one: the results come back while the
   * worker still holds the lock (only its death or SIGCONT frees it). */
  double t0 = test_now();
  ASSERT_OK(mproc_async_get(a, 0.3));
  ASSERT_DBL_LE(test_now() - t0, 0.3 + test_slack());
  ASSERT_EQ(*(const int *)mproc_async_data(a, NULL), 16);
  ASSERT_OK(mproc_async_get(b, MPROC_FOREVER));
  ASSERT_EQ(*(const int *)mproc_async_data(b, NULL), 25);
  ASSERT(test_pid_running(stopped));
  ASSERT_EQ(test_proc_stat(stopped, NULL, NULL), 'T');
  /* Let the result thread go: it frees what the caller left, the stopped
   * worker is killed as stuck, and its task reports the death. */
  char c = 1;
  ASSERT_EQ(write(g.release[1], &c, 1), 1);
  ASSERT_ERR(mproc_async_get(stop, 10 * test_timeout_mult()),
             MPROC_EWORKERDIED);
  ASSERT_OK(mproc_async_get(held, 10 * test_timeout_mult()));
  wait_gone(stopped);
  mproc_async_free(held);
  mproc_async_free(a);
  mproc_async_free(b);
  mproc_async_free(stop);
  ASSERT_OK(mproc_pool_free(p));
  atomic_store(&wd.done, 1);
  ASSERT_EQ(pthread_join(wd.th, NULL), 0);
  mproc__fault_hook = NULL;
  ASSERT_OK(mproc__arena_check());
  ASSERT_OK(mproc_arena_get_stats(&st1));
  ASSERT_EQ(st1.in_use, st0.in_use);
  for (int i = 0; i < 2; i++) {
    close(g.entered[i]);
    close(g.release[i]);
  }
  mproc_shm_free(SK);
  SK = NULL;
  return 0;
}
