/*
 * tests/behaviour/test-sync-lock.c - Lock and RLock, ported from CPython's
 * _TestLock (test_lock, test_rlock, test_lock_context) and
 * TestSyncManagerTypes' "Lock acquired in child released in parent", plus
 * mproc's own: timeouts on CLOCK_MONOTONIC, ownership across threads and
 * forked processes, and many processes hammering one lock around a plain
 * counter in the arena (the total must come out exact).
 */
#include "internal.h"
#include "task.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

/* ---- _TestLock ---- */

TEST_IMPL(sync_lock_basic) {
  mproc_lock *l = NULL;
  ASSERT_OK(mproc_lock_new(&l));
  ASSERT_EQ(mproc_lock_is_locked(l), 0);
  ASSERT_EQ(mproc_lock_held_by_process(l), 0);
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  ASSERT_EQ(mproc_lock_is_locked(l), 1);
  ASSERT_EQ(mproc_lock_held_by_process(l), 1);
  /* A Lock has no owning thread: is_mine is an RLock's question. */
  ASSERT_ERR(mproc_lock_is_mine(l), MPROC_ENOTSUP);
  /* Python: lock.acquire(False) is False while held. */
  ASSERT_ERR(mproc_lock_acquire(l, 0), MPROC_ETIMEDOUT);
  ASSERT_ERR(mproc_lock_free(l), MPROC_EBUSY);
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_EQ(mproc_lock_is_locked(l), 0);
  /* Python: ValueError "semaphore or lock released too many times". */
  ASSERT_ERR(mproc_lock_release(l), MPROC_EUNLOCKED);
  ASSERT_OK(mproc_lock_acquire(l, 0));
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_OK(mproc_lock_free(l));
  return 0;
}

TEST_IMPL(sync_lock_acquire_timeout) {
  mproc_lock *l = NULL;
  ASSERT_OK(mproc_lock_new(&l));
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  double t0 = test_now();
  ASSERT_ERR(mproc_lock_acquire(l, 0), MPROC_ETIMEDOUT);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  t0 = test_now();
  ASSERT_ERR(mproc_lock_acquire(l, 0.1), MPROC_ETIMEDOUT);
  double el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.1);
  ASSERT_DBL_LE(el, 0.1 + test_slack());
  ASSERT_ERR(mproc_lock_acquire(l, NAN), MPROC_EINVAL);
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_OK(mproc_lock_free(l));
  return 0;
}

/* A contended acquire backs off for up to 10 us before it sleeps: a
 * timeout shorter than that, or about as long, still ends on time, and
 * one ending inside the backoff never takes a held lock. */
TEST_IMPL(sync_lock_short_timeouts_while_held) {
  mproc_lock *l = NULL;
  ASSERT_OK(mproc_lock_new(&l));
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  static const double timeouts[] = {1e-7, 1e-6, 5e-6, 1e-5, 2e-5, 1e-3};
  for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
    double t0 = test_now();
    ASSERT_ERR(mproc_lock_acquire(l, timeouts[i]), MPROC_ETIMEDOUT);
    double el = test_now() - t0;
    ASSERT_DBL_GE(el, timeouts[i]);
    ASSERT_DBL_LE(el, timeouts[i] + test_slack());
  }
  ASSERT_EQ(mproc_lock_held_by_process(l), 1);
  ASSERT_OK(mproc_lock_release(l));
  /* Free again: a short timeout takes it at once. */
  ASSERT_OK(mproc_lock_acquire(l, 1e-6));
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_OK(mproc_lock_free(l));
  return 0;
}

static int t_release(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  mproc_lock *l = *(mproc_lock *const *)arg;
  if (mproc_lock_held_by_process(l) != 0) {
    return 2;
  }
  if (mproc_lock_acquire(l, 0) != MPROC_ETIMEDOUT) {
    return 3;
  }
  return mproc_lock_release(l) == 0 ? 0 : 4;
}

static int t_acquire(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  mproc_lock *l = *(mproc_lock *const *)arg;
  return mproc_lock_acquire(l, 5) == 0 ? 0 : 5;
}

/* A Lock is ownerless: acquired here, released by a child; acquired by a
 * child, released here. */
TEST_IMPL(sync_lock_release_by_other_process) {
  mproc_lock *l = NULL;
  ASSERT_OK(mproc_lock_new(&l));
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  ASSERT_EQ(test_run_proc(t_release, &l, sizeof l), 0);
  ASSERT_EQ(mproc_lock_is_locked(l), 0);
  ASSERT_EQ(test_run_proc(t_acquire, &l, sizeof l), 0);
  ASSERT_EQ(mproc_lock_is_locked(l), 1);
  ASSERT_EQ(mproc_lock_held_by_process(l), 0);
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_ERR(mproc_lock_release(l), MPROC_EUNLOCKED);
  ASSERT_OK(mproc_lock_free(l));
  return 0;
}

/* A waiter blocked in another process gets the lock when it is
 * released. */
static int t_acquire_report(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  mproc_lock *l = ((mproc_lock *const *)arg)[0];
  int *flag = ((int *const *)arg)[1];
  __atomic_store_n(flag, 1, __ATOMIC_SEQ_CST);
  if (mproc_lock_acquire(l, 10) != 0) {
    return 2;
  }
  __atomic_store_n(flag, 2, __ATOMIC_SEQ_CST);
  return mproc_lock_release(l) == 0 ? 0 : 3;
}

TEST_IMPL(sync_lock_wakes_waiter) {
  mproc_lock *l = NULL;
  int *flag = NULL;
  ASSERT_OK(mproc_lock_new(&l));
  ASSERT_OK(mproc_shm_calloc((void **)&flag, 1, sizeof *flag));
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  void *args[2] = {l, flag};
  mproc_process *p = test_start_proc(t_acquire_report, args, sizeof args);
  while (__atomic_load_n(flag, __ATOMIC_SEQ_CST) == 0) {
    test_sleep(0.001);
  }
  test_sleep(0.1);
  ASSERT_EQ(__atomic_load_n(flag, __ATOMIC_SEQ_CST), 1);
  double t0 = test_now();
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_EQ(*flag, 2);
  ASSERT_DBL_LE(test_now() - t0, 10 * test_slack());
  ASSERT_OK(mproc_lock_free(l));
  ASSERT_OK(mproc_shm_free(flag));
  return 0;
}

/* ---- RLock ---- */

static void *th_rlock_other(void *arg) {
  mproc_lock *l = arg;
  intptr_t bad = 0;
  if (mproc_lock_is_mine(l) != 0) bad |= 1;
  if (mproc_lock_release(l) != MPROC_EPERM) bad |= 2;
  if (mproc_lock_acquire(l, 0) != MPROC_ETIMEDOUT) bad |= 4;
  if (mproc_lock_consistent(l) != MPROC_EPERM) bad |= 8;
  return (void *)bad;
}

TEST_IMPL(sync_rlock_basic) {
  mproc_lock *l = NULL;
  ASSERT_OK(mproc_rlock_new(&l));
  /* Python: 3 acquires, 3 releases, the 4th raises "not owned". */
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  ASSERT_OK(mproc_lock_acquire(l, 0));
  ASSERT_EQ(mproc_lock_is_mine(l), 1);
  pthread_t th;
  void *res = NULL;
  ASSERT_OK(pthread_create(&th, NULL, th_rlock_other, l));
  ASSERT_OK(pthread_join(th, &res));
  ASSERT_EQ((intptr_t)res, 0);
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_EQ(mproc_lock_is_locked(l), 1);
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_EQ(mproc_lock_is_locked(l), 0);
  ASSERT_EQ(mproc_lock_is_mine(l), 0);
  ASSERT_ERR(mproc_lock_release(l), MPROC_EPERM);
  ASSERT_OK(mproc_lock_free(l));
  return 0;
}

static int t_rlock_foreign(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  mproc_lock *l = *(mproc_lock *const *)arg;
  if (mproc_lock_is_mine(l) != 0) return 2;
  if (mproc_lock_release(l) != MPROC_EPERM) return 3;
  if (mproc_lock_acquire(l, 0.05) != MPROC_ETIMEDOUT) return 4;
  return 0;
}

/* A forked child is not the holder, even though it copied the holder's
 * memory (its own token, its own thread). */
TEST_IMPL_ALL_METHODS(sync_rlock_other_process) {
  mproc_lock *l = NULL;
  ASSERT_OK(mproc_rlock_new(&l));
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  ASSERT_EQ(test_run_proc(t_rlock_foreign, &l, sizeof l), 0);
  /* The same with a plain fork (libc's atfork handlers run). */
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    _exit(t_rlock_foreign(&l, sizeof l, NULL));
  }
  ASSERT_EQ(test_wait_pid(pid, 10), 0);
  ASSERT_EQ(mproc_lock_is_mine(l), 1);
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_OK(mproc_lock_free(l));
  return 0;
}

/* ---- many processes, one counter ---- */

#define HAMMER_PROCS 8
#define HAMMER_ITERS 100000

struct hammer {
  mproc_lock *lock;
  long counter;  /* plain, guarded by lock */
  int depth;     /* RLock: nesting per increment */
};

static int t_hammer(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct hammer *h = *(struct hammer *const *)arg;
  for (int i = 0; i < HAMMER_ITERS; i++) {
    for (int d = 0; d < h->depth; d++) {
      if (mproc_lock_acquire(h->lock, MPROC_FOREVER) != 0) {
        return 2;
      }
    }
    h->counter++;
    for (int d = 0; d < h->depth; d++) {
      if (mproc_lock_release(h->lock) != 0) {
        return 3;
      }
    }
  }
  return 0;
}

/* A zeroed hammer in the arena, over a new Lock or RLock. */
static struct hammer *hammer_new(int rlock, int depth) {
  struct hammer *h = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&h, 1, sizeof *h));
  ASSERT_OK(rlock ? mproc_rlock_new(&h->lock) : mproc_lock_new(&h->lock));
  h->depth = depth;
  return h;
}

static void hammer_free(struct hammer *h) {
  ASSERT_OK(mproc_lock_free(h->lock));
  ASSERT_OK(mproc_shm_free(h));
}

static void hammer(int rlock, int depth) {
  struct hammer *h = hammer_new(rlock, depth);
  test_run_procs_ok(HAMMER_PROCS, t_hammer, &h, sizeof h);
  ASSERT_EQ(h->counter, (long)HAMMER_PROCS * HAMMER_ITERS);
  ASSERT_EQ(mproc_lock_is_locked(h->lock), 0);
  hammer_free(h);
}

TEST_IMPL_ALL_METHODS(sync_lock_hammer_processes) {
  hammer(0, 1);
  return 0;
}

TEST_IMPL(sync_rlock_hammer_processes) {
  hammer(1, 2);
  return 0;
}

/* Threads and processes at once: 4 threads here, 2 child processes. */
static void *th_hammer(void *arg) {
  return (void *)(intptr_t)t_hammer(&arg, sizeof arg, NULL);
}

TEST_IMPL(sync_lock_hammer_threads_and_processes) {
  struct hammer *h = hammer_new(1, 1);
  mproc_process *p[2];
  test_start_procs(p, 2, t_hammer, &h, sizeof h);
  pthread_t th[4];
  test_start_threads(th, 4, th_hammer, h);
  test_join_threads_ok(th, 4);
  test_finish_procs_ok(p, 2);
  ASSERT_EQ(h->counter, 6L * HAMMER_ITERS);
  hammer_free(h);
  return 0;
}

/* ---- asym locks (src/internal.h; the queue's put and get locks) ---- */

/* An asym Lock embedded in an arena block, with a counter it guards and
 * the longest wait any acquirer saw. */
struct asym_hammer {
  _Alignas(16) unsigned char lock[MPROC__LOCK_BYTES];
  long counter;
  long long_waits; /* acquisitions that waited >= ASYM_LONG_WAIT */
  double max_wait;
};

#define ASYM_PROCS 4
#define ASYM_ITERS 300
#define ASYM_HOLD 50e-6 /* a hold long enough that waiters sleep */
/* The test stretches a sleeper's own slice (50 ms in the library) to
 * ASYM_SLICE, so a lost wake leaves a sleeper asleep for that long, while
 * the longest honest wait is a few holds plus scheduling, under any load
 * far below ASYM_LONG_WAIT.  The test asserts no time of its own: it
 * tells a wait of a slice from a wait of milliseconds. */
#define ASYM_SLICE_NS 20000000000ull /* 20 s */
#define ASYM_LONG_WAIT 5.0

static int t_asym(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct asym_hammer *h = *(struct asym_hammer *const *)arg;
  mproc_lock *l = (mproc_lock *)(void *)h->lock;
  for (int i = 0; i < ASYM_ITERS; i++) {
    double t0 = test_now();
    if (!mproc__lock_try_fast(h->lock) &&
        mproc_lock_acquire(l, MPROC_FOREVER) != 0) {
      return 2;
    }
    double waited = test_now() - t0;
    if (waited > h->max_wait) {
      h->max_wait = waited;
    }
    if (waited >= ASYM_LONG_WAIT) {
      h->long_waits++;
    }
    h->counter++;
    double until = test_now() + ASYM_HOLD;
    while (test_now() < until) {
    }
    mproc__lock_release_asym(h->lock);
  }
  return 0;
}

/* Waiters that sleep on an asym lock are woken by plain-store releases:
 * the count comes out exact, and no acquisition waits as long as a lost
 * wake would make it (a sleeper's whole slice).  With MPROC_NO_MEMBARRIER=1
 * (make check's fallback run) the same holds through the exchange path. */
TEST_IMPL(sync_asym_lock_sleepers_woken) {
  struct asym_hammer *h = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&h, 1, sizeof *h));
  mproc__lock_init_embedded_asym(h->lock);
  uint64_t saved = mproc__sync_asym_slice_ns;
  mproc__sync_asym_slice_ns = ASYM_SLICE_NS; /* inherited by the children */
  test_run_procs_ok(ASYM_PROCS, t_asym, &h, sizeof h);
  mproc__sync_asym_slice_ns = saved;
  ASSERT_EQ(h->counter, (long)ASYM_PROCS * ASYM_ITERS);
  if (h->long_waits > 0) {
    fprintf(stderr, "# longest wait %.3f s\n", h->max_wait);
  }
  ASSERT_EQ(h->long_waits, 0);
  ASSERT_EQ(mproc_lock_is_locked((mproc_lock *)(void *)h->lock), 0);
  ASSERT_OK(mproc__lock_retire_embedded(h->lock));
  ASSERT_OK(mproc_shm_free(h));
  return 0;
}

/* ---- who holds it: one meaning per name ---- */

struct owner_view {
  mproc_lock *l;
  int is_mine, by_process;
};

static void *th_owner_view(void *arg) {
  struct owner_view *v = arg;
  v->is_mine = mproc_lock_is_mine(v->l);
  v->by_process = mproc_lock_held_by_process(v->l);
  return NULL;
}

static int t_owner_view(const void *arg, size_t len, void *ctx) {
  (void)arg, (void)len;
  mproc_lock *l = ctx; /* arena memory: the same lock here */
  int rlock = mproc_lock_is_mine(l) != MPROC_ENOTSUP;
  if (mproc_lock_held_by_process(l) != 0) return 2;
  if (rlock && mproc_lock_is_mine(l) != 0) return 3;
  return 0;
}

/* is_mine is the calling thread's question, asked of an RLock only (a
 * Lock has no owning thread: MPROC_ENOTSUP, never a per-process answer
 * under the same name); held_by_process is the process's, for both. */
static void check_owner_views(int rlock) {
  mproc_lock *l = NULL;
  ASSERT_OK(rlock ? mproc_rlock_new(&l) : mproc_lock_new(&l));
  int want_mine_free = rlock ? 0 : MPROC_ENOTSUP;
  int want_mine_held = rlock ? 1 : MPROC_ENOTSUP;
  int want_mine_other = rlock ? 0 : MPROC_ENOTSUP;
  ASSERT_EQ(mproc_lock_is_mine(l), want_mine_free);
  ASSERT_EQ(mproc_lock_held_by_process(l), 0);
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  ASSERT_EQ(mproc_lock_is_mine(l), want_mine_held);
  ASSERT_EQ(mproc_lock_held_by_process(l), 1);
  /* Another thread of this process. */
  struct owner_view v = {l, -1000, -1000};
  pthread_t th;
  ASSERT_OK(pthread_create(&th, NULL, th_owner_view, &v));
  ASSERT_OK(pthread_join(th, NULL));
  ASSERT_EQ(v.is_mine, want_mine_other);
  ASSERT_EQ(v.by_process, 1);
  /* Another process. */
  mproc_process *p;
  ASSERT_OK(mproc_process_new(&p, t_owner_view, l, NULL, 0, NULL));
  ASSERT_OK(mproc_process_start(p));
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_EQ(mproc_lock_held_by_process(l), 0);
  ASSERT_EQ(mproc_lock_is_mine(l), want_mine_free);
  ASSERT_ERR(mproc_lock_is_mine(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_lock_held_by_process(NULL), MPROC_EINVAL);
  ASSERT_OK(mproc_lock_free(l));
}

TEST_IMPL(sync_lock_is_mine_one_meaning) {
  check_owner_views(0);
  check_owner_views(1);
  return 0;
}
