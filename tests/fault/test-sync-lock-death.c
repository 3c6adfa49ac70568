/*
 * tests/fault/test-sync-lock-death.c - Lock and RLock when the holder is
 * SIGKILLed (real processes, real signals): a process already waiting gets
 * the lock with MPROC_EOWNERDEAD within 100 ms of the kill; a later
 * acquirer gets it at once, also while the dead holder is still an
 * unreaped zombie; releasing without mproc_lock_consistent makes the lock
 * MPROC_ENOTRECOVERABLE for everyone, waiters included.
 */
#include "internal.h"
#include "task.h"

#include <signal.h>
#include <sys/wait.h>

struct shared {
  mproc_lock *lock;
  int ready;        /* the holder has the lock */
  int waiting;      /* the waiter is about to block */
  int result;       /* the waiter's acquire result */
  double at;        /* when it returned (CLOCK_MONOTONIC, test_now) */
  int depth;        /* RLock: holder's depth */
};

static void wait_flag(int *flag) {
  double end = test_now() + 10;
  while (__atomic_load_n(flag, __ATOMIC_SEQ_CST) == 0) {
    ASSERT(test_now() < end);
    test_sleep(0.001);
  }
}

static int t_hold_forever(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = *(struct shared *const *)arg;
  for (int i = 0; i < s->depth; i++) {
    if (mproc_lock_acquire(s->lock, MPROC_FOREVER) != 0) {
      return 2;
    }
  }
  __atomic_store_n(&s->ready, 1, __ATOMIC_SEQ_CST);
  for (;;) {
    test_sleep(60);
  }
}

static int t_wait_lock(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = *(struct shared *const *)arg;
  __atomic_store_n(&s->waiting, 1, __ATOMIC_SEQ_CST);
  int r = mproc_lock_acquire(s->lock, 10);
  s->at = test_now();
  __atomic_store_n(&s->result, r, __ATOMIC_SEQ_CST);
  if (r == MPROC_EOWNERDEAD) {
    if (mproc_lock_held_by_process(s->lock) != 1 ||
        mproc_lock_consistent(s->lock) != 0 ||
        mproc_lock_release(s->lock) != 0) {
      return 3;
    }
  }
  return 0;
}

static struct shared *make_shared(int rlock, int depth) {
  struct shared *s = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&s, 1, sizeof *s));
  ASSERT_OK(rlock ? mproc_rlock_new(&s->lock) : mproc_lock_new(&s->lock));
  s->depth = depth;
  return s;
}

static void free_shared(struct shared *s) {
  ASSERT_OK(mproc_lock_free(s->lock));
  ASSERT_OK(mproc_shm_free(s));
}

static mproc_process *start_proc(mproc_target_fn fn, struct shared *s) {
  return test_start_proc(fn, &s, sizeof s);
}

/* Joins p (10 s at most), frees it, and returns its exit code. */
static int join_code(mproc_process *p) {
  int code = -1;
  ASSERT_OK(mproc_process_join(p, 10));
  ASSERT_OK(mproc_process_exitcode(p, &code));
  ASSERT_OK(mproc_process_free(p));
  return code;
}

static void kill_and_join(mproc_process *p) {
  ASSERT_OK(mproc_process_kill(p));
  ASSERT_EQ(join_code(p), -SIGKILL);
}

/* A new lock whose holder (depth acquires) was SIGKILLed and reaped. */
static struct shared *dead_holder(int rlock, int depth) {
  struct shared *s = make_shared(rlock, depth);
  mproc_process *h = start_proc(t_hold_forever, s);
  wait_flag(&s->ready);
  kill_and_join(h);
  return s;
}

/* The waiter is blocked when the holder dies. */
static void holder_dies_while_waiting(int rlock) {
  struct shared *s = make_shared(rlock, rlock ? 3 : 1);
  mproc_process *h = start_proc(t_hold_forever, s);
  wait_flag(&s->ready);
  mproc_process *w = start_proc(t_wait_lock, s);
  wait_flag(&s->waiting);
  test_sleep(0.3); /* well into its 50 ms slices */
  ASSERT_EQ(s->result, 0);
  double killed = test_now();
  ASSERT_OK(mproc_process_kill(h));
  ASSERT_EQ(join_code(w), 0);
  ASSERT_ERR(s->result, MPROC_EOWNERDEAD);
  ASSERT_DBL_GE(s->at - killed, 0);
  ASSERT_DBL_LE(s->at - killed, 2 * test_slack());
  ASSERT_OK(mproc_process_join(h, 10));
  ASSERT_OK(mproc_process_free(h));
  /* Repaired: usable as before. */
  ASSERT_OK(mproc_lock_acquire(s->lock, 0));
  ASSERT_OK(mproc_lock_release(s->lock));
  free_shared(s);
}

TEST_IMPL_ALL_METHODS(sync_lock_holder_killed_waiter_gets_ownerdead) {
  holder_dies_while_waiting(0);
  return 0;
}

TEST_IMPL(sync_rlock_holder_killed_waiter_gets_ownerdead) {
  holder_dies_while_waiting(1);
  return 0;
}

/* Nobody waits when the holder dies: the next acquirer gets it at once. */
static void holder_dies_alone(int rlock) {
  struct shared *s = dead_holder(rlock, rlock ? 2 : 1);
  double t0 = test_now();
  ASSERT_ERR(mproc_lock_acquire(s->lock, 5), MPROC_EOWNERDEAD);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  ASSERT_EQ(mproc_lock_held_by_process(s->lock), 1);
  ASSERT_OK(mproc_lock_consistent(s->lock));
  ASSERT_ERR(mproc_lock_consistent(s->lock), MPROC_EPERM);
  /* Depth 1, whatever the dead holder's depth was. */
  ASSERT_OK(mproc_lock_release(s->lock));
  ASSERT_EQ(mproc_lock_is_locked(s->lock), 0);
  ASSERT_OK(mproc_lock_acquire(s->lock, 0));
  ASSERT_OK(mproc_lock_release(s->lock));
  free_shared(s);
}

TEST_IMPL(sync_lock_holder_killed_next_acquirer) {
  holder_dies_alone(0);
  return 0;
}

TEST_IMPL(sync_rlock_holder_killed_next_acquirer) {
  holder_dies_alone(1);
  return 0;
}

/* A poll (timeout 0) notices the death too. */
TEST_IMPL(sync_lock_holder_killed_poll) {
  struct shared *s = dead_holder(0, 1);
  int r = MPROC_ETIMEDOUT;
  double end = test_now() + 1;
  while (r == MPROC_ETIMEDOUT && test_now() < end) {
    r = mproc_lock_acquire(s->lock, 0);
  }
  ASSERT_ERR(r, MPROC_EOWNERDEAD);
  ASSERT_OK(mproc_lock_consistent(s->lock));
  ASSERT_OK(mproc_lock_release(s->lock));
  free_shared(s);
  return 0;
}

/* The dead holder is a zombie nobody reaped yet: still dead. */
TEST_IMPL(sync_lock_holder_zombie) {
  struct shared *s = make_shared(1, 1);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    t_hold_forever(&s, sizeof s, NULL);
    _exit(0);
  }
  wait_flag(&s->ready);
  ASSERT_OK(kill(pid, SIGKILL));
  siginfo_t si;
  /* Wait until it is a zombie, without reaping it. */
  ASSERT_OK(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT));
  double t0 = test_now();
  ASSERT_ERR(mproc_lock_acquire(s->lock, 5), MPROC_EOWNERDEAD);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  ASSERT_EQ(test_wait_pid(pid, 5), -SIGKILL);
  ASSERT_OK(mproc_lock_consistent(s->lock));
  ASSERT_OK(mproc_lock_release(s->lock));
  free_shared(s);
  return 0;
}

/* Released without consistent: not recoverable for good, and a process
 * waiting at that moment is told so. */
TEST_IMPL(sync_lock_not_recoverable) {
  struct shared *s = dead_holder(0, 1);
  ASSERT_ERR(mproc_lock_acquire(s->lock, 5), MPROC_EOWNERDEAD);
  mproc_process *w = start_proc(t_wait_lock, s);
  wait_flag(&s->waiting);
  test_sleep(0.1);
  ASSERT_OK(mproc_lock_release(s->lock)); /* no consistent */
  ASSERT_EQ(join_code(w), 0);
  ASSERT_ERR(s->result, MPROC_ENOTRECOVERABLE);
  ASSERT_ERR(mproc_lock_acquire(s->lock, 0), MPROC_ENOTRECOVERABLE);
  ASSERT_ERR(mproc_lock_acquire(s->lock, MPROC_FOREVER),
             MPROC_ENOTRECOVERABLE);
  ASSERT_ERR(mproc_lock_release(s->lock), MPROC_ENOTRECOVERABLE);
  ASSERT_ERR(mproc_lock_consistent(s->lock), MPROC_EPERM);
  free_shared(s); /* freeing an unrecoverable lock is allowed */
  return 0;
}

TEST_IMPL(sync_rlock_not_recoverable) {
  struct shared *s = dead_holder(1, 2);
  ASSERT_ERR(mproc_lock_acquire(s->lock, 5), MPROC_EOWNERDEAD);
  ASSERT_OK(mproc_lock_acquire(s->lock, 0)); /* depth 2 */
  ASSERT_OK(mproc_lock_release(s->lock));
  ASSERT_EQ(mproc_lock_is_locked(s->lock), 1);
  ASSERT_OK(mproc_lock_release(s->lock)); /* no consistent */
  ASSERT_ERR(mproc_lock_acquire(s->lock, 0.05), MPROC_ENOTRECOVERABLE);
  ASSERT_ERR(mproc_lock_release(s->lock), MPROC_EPERM);
  free_shared(s);
  return 0;
}

/* The taker dies too, before consistent: the next one gets EOWNERDEAD
 * again. */
static int t_take_and_die(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = *(struct shared *const *)arg;
  if (mproc_lock_acquire(s->lock, 5) != MPROC_EOWNERDEAD) {
    return 2;
  }
  __atomic_store_n(&s->ready, 2, __ATOMIC_SEQ_CST);
  for (;;) {
    test_sleep(60);
  }
}

TEST_IMPL(sync_lock_taker_killed_before_consistent) {
  struct shared *s = dead_holder(0, 1);
  s->ready = 0;
  mproc_process *t = start_proc(t_take_and_die, s);
  wait_flag(&s->ready);
  ASSERT_EQ(s->ready, 2);
  kill_and_join(t);
  ASSERT_ERR(mproc_lock_acquire(s->lock, 5), MPROC_EOWNERDEAD);
  ASSERT_OK(mproc_lock_consistent(s->lock));
  ASSERT_OK(mproc_lock_release(s->lock));
  free_shared(s);
  return 0;
}

/* A live holder is never taken over, however long it holds the lock. */
static int t_hold_then_release(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = *(struct shared *const *)arg;
  if (mproc_lock_acquire(s->lock, MPROC_FOREVER) != 0) {
    return 2;
  }
  __atomic_store_n(&s->ready, 1, __ATOMIC_SEQ_CST);
  test_sleep(0.4);
  return mproc_lock_release(s->lock) == 0 ? 0 : 3;
}

TEST_IMPL(sync_lock_live_holder_kept) {
  struct shared *s = make_shared(0, 1);
  mproc_process *h = start_proc(t_hold_then_release, s);
  wait_flag(&s->ready);
  double t0 = test_now();
  ASSERT_OK(mproc_lock_acquire(s->lock, 5));
  ASSERT_DBL_GE(test_now() - t0, 0.2);
  ASSERT_OK(mproc_lock_release(s->lock));
  ASSERT_EQ(join_code(h), 0);
  free_shared(s);
  return 0;
}
