/*
 * tests/fault/test-fault-sweep-sync.c - kill a process at every named
 * fault point of the sync module (src/fault.h, "sync.*" and "owner.*"),
 * then check the object's invariants.
 *
 * For each point a forked child arms mproc__fault_hook and makes the call
 * that passes the point; the hook writes the point's number to a pipe and
 * pauses, and the parent SIGKILLs the child there and reaps it.  Then:
 *   - owner.*: the token table stays usable (a process killed while it
 *     created the table or registered in it blocks no later
 *     registration; the table block of the first case is the documented
 *     leak of one block) and the arena checks consistent;
 *   - a Lock or RLock whose holder died there is taken over with
 *     MPROC_EOWNERDEAD and usable after mproc_lock_consistent; a waiter
 *     killed asleep leaves a lock that acquires and releases normally;
 *   - a Semaphore's count is exact: what the header documents for the
 *     point (a death-return unit recorded comes back once, a unit in
 *     flight between the value and the holder table is lost, never
 *     returned twice), and a killed sleeper changes nothing;
 *   - Condition: a waiter or notifier killed at any step blocks nobody
 *     and swallows no wakeup (a live waiter is woken by the next notify,
 *     or by the dead notifier's mark);
 *   - Event: a waiter killed asleep leaves set/wait working;
 *   - Barrier: a party killed inside wait breaks the barrier for the
 *     others (MPROC_EBROKEN, not a hang), and reset makes it usable.
 */
#include "task.h"

#include "internal.h"
#include "sweep.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

SWEEP_COVERS("sync.", "owner.")

/* ---- the child stopped at a point ---- */

typedef void (*child_fn)(void *arg);

/* Fork a child that runs fn(arg) with the hook armed at the point named
 * name (NULL: no hook; fn itself reports through sweep_report by calling
 * report()); return once it reported (its pid). */
static pid_t run_to_point(const char *name, child_fn fn, void *arg) {
  int point = name != NULL ? mproc__fault_lookup(name) : -1;
  ASSERT(point != 0);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = test_fork();
  if (pid == 0) {
    close(fds[0]);
    sweep_target = point;
    sweep_report = fds[1];
    if (name != NULL) {
      mproc__fault_hook = sweep_stop_at_point;
    }
    fn(arg);
    _exit(3); /* never reached the point */
  }
  close(fds[1]);
  int got = 0;
  if (!test_read_int(fds[0], &got, 30 * test_timeout_mult())) {
    fprintf(stderr, "# %s: the child never reached the point\n",
            name != NULL ? name : "(report)");
    (void)kill(pid, SIGKILL);
    (void)test_wait_pid(pid, 10);
    ASSERT(0);
  }
  ASSERT_EQ(got, point);
  close(fds[0]);
  return pid;
}

/* For a child run without a hook: "I am there", then wait to be killed. */
static void report_and_pause(void) {
  int v = -1;
  (void)!write(sweep_report, &v, sizeof v);
  for (;;) {
    pause();
  }
}

static void kill_child(pid_t pid) {
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(test_wait_pid(pid, 10), -SIGKILL);
}

/* A lock acquired after a death there: taken over, repaired, usable. */
static void expect_owner_dead(mproc_lock *l) {
  ASSERT_ERR(mproc_lock_acquire(l, 5), MPROC_EOWNERDEAD);
  ASSERT_OK(mproc_lock_consistent(l));
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_OK(mproc_lock_acquire(l, 0));
  ASSERT_OK(mproc_lock_release(l));
}

/* A child that takes l and releases it, exiting 0 if both worked. */
static void child_lock_cycle(void *arg) {
  mproc_lock *l = arg;
  _exit(mproc_lock_acquire(l, 10) == 0 && mproc_lock_release(l) == 0 ? 0
                                                                      : 2);
}

static void expect_other_process_locks(mproc_lock *l) {
  pid_t pid = test_fork();
  if (pid == 0) {
    child_lock_cycle(l);
  }
  ASSERT_EQ(test_wait_pid(pid, 10 * test_timeout_mult()), 0);
}

/* ==================== owner table ==================== */

static void child_register(void *arg) {
  mproc_lock *l = arg;
  (void)mproc_lock_acquire(l, 10);
}

/* Killed while creating the token table (first sync call of the whole
 * program), then while registering in it. */
TEST_IMPL(fault_sweep_owner) {
  /* The arena exists (so the child shares it), the table does not. */
  mproc_lock *l = NULL;
  ASSERT_OK(mproc_lock_new(&l));
  ASSERT_EQ(*mproc__arena_root(MPROC__ROOT_SYNC_OWNERS), NULL);
  pid_t pid = run_to_point("owner.table_allocated", child_register, l);
  kill_child(pid);
  /* Not published: the parent makes its own (the child's block leaks,
   * as documented). */
  ASSERT_EQ(*mproc__arena_root(MPROC__ROOT_SYNC_OWNERS), NULL);
  ASSERT_EQ(mproc__arena_check(), 0);
  ASSERT_OK(mproc_lock_acquire(l, 0));
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_NE(*mproc__arena_root(MPROC__ROOT_SYNC_OWNERS), NULL);

  /* Killed with its slot claimed, its token not yet in any word. */
  pid = run_to_point("owner.slot_claimed", child_register, l);
  kill_child(pid);
  ASSERT_EQ(mproc_lock_is_locked(l), 0);
  ASSERT_OK(mproc_lock_acquire(l, 0));
  ASSERT_OK(mproc_lock_release(l));
  for (int i = 0; i < 3; i++) {
    expect_other_process_locks(l);
  }
  ASSERT_EQ(mproc__arena_check(), 0);
  ASSERT_OK(mproc_lock_free(l));
  return 0;
}

/* ==================== Lock and RLock ==================== */

static void child_hold(void *arg) {
  mproc_lock *l = arg;
  if (mproc_lock_acquire(l, 10) != 0) {
    _exit(2);
  }
  report_and_pause();
}

static void child_acquire(void *arg) {
  mproc_lock *l = arg;
  (void)mproc_lock_acquire(l, MPROC_FOREVER);
}

static void child_rlock_release(void *arg) {
  mproc_lock *l = arg;
  if (mproc_lock_acquire(l, 10) != 0 || mproc_lock_acquire(l, 10) != 0 ||
      mproc_lock_release(l) != 0) {
    _exit(2);
  }
  (void)mproc_lock_release(l); /* the last level: stops at the point */
}

TEST_IMPL(fault_sweep_sync_lock) {
  for (int rec = 0; rec < 2; rec++) {
    mproc_lock *l = NULL;
    ASSERT_OK(rec ? mproc_rlock_new(&l) : mproc_lock_new(&l));

    /* A waiter killed asleep (waiters bit set): nothing to repair. */
    ASSERT_OK(mproc_lock_acquire(l, 0));
    pid_t pid = run_to_point("sync.lock_sleeping", child_acquire, l);
    kill_child(pid);
    ASSERT_OK(mproc_lock_release(l));
    ASSERT_OK(mproc_lock_acquire(l, 0));
    ASSERT_OK(mproc_lock_release(l));
    expect_other_process_locks(l);

    /* A holder dies; the process taking over dies before it marks the
     * lock inconsistent; the next one takes over again. */
    pid_t holder = run_to_point(NULL, child_hold, l);
    kill_child(holder);
    pid = run_to_point("sync.lock_taken_over", child_acquire, l);
    kill_child(pid);
    expect_owner_dead(l);
    expect_other_process_locks(l);
    ASSERT_OK(mproc_lock_free(l));
  }

  /* An RLock's last release killed between clearing its owner thread and
   * freeing the word. */
  mproc_lock *r = NULL;
  ASSERT_OK(mproc_rlock_new(&r));
  pid_t pid = run_to_point("sync.rlock_owner_cleared", child_rlock_release, r);
  kill_child(pid);
  expect_owner_dead(r);
  ASSERT_OK(mproc_lock_acquire(r, 0));
  ASSERT_OK(mproc_lock_acquire(r, 0));
  ASSERT_OK(mproc_lock_release(r));
  ASSERT_OK(mproc_lock_release(r));
  ASSERT_ERR(mproc_lock_release(r), MPROC_EPERM);
  expect_other_process_locks(r);
  ASSERT_OK(mproc_lock_free(r));
  return 0;
}

/* ==================== Semaphore ==================== */

static void child_sem_acquire(void *arg) {
  (void)mproc_semaphore_acquire(arg, MPROC_FOREVER);
  report_and_pause(); /* only for the holder run without a hook */
}

static void child_sem_cycle(void *arg) {
  if (mproc_semaphore_acquire(arg, 10) != 0) {
    _exit(2);
  }
  (void)mproc_semaphore_release(arg);
}

static void child_sem_value(void *arg) {
  (void)mproc_semaphore_get_value(arg);
}

static mproc_semaphore *sem_new(int value, int death_return) {
  mproc_semaphore *s = NULL;
  mproc_semaphore_opts o = {.death_return = death_return};
  ASSERT_OK(mproc_semaphore_new(&s, value, &o));
  return s;
}

/* The value, twice (a dead process's units come back once only), and
 * that exactly that many units can be taken. */
static void expect_value(mproc_semaphore *s, int want) {
  ASSERT_EQ(mproc_semaphore_get_value(s), want);
  ASSERT_EQ(mproc_semaphore_get_value(s), want);
  for (int i = 0; i < want; i++) {
    ASSERT_OK(mproc_semaphore_acquire(s, 0));
  }
  ASSERT_ERR(mproc_semaphore_acquire(s, 0), MPROC_ETIMEDOUT);
  for (int i = 0; i < want; i++) {
    ASSERT_OK(mproc_semaphore_release(s));
  }
}

TEST_IMPL(fault_sweep_sync_semaphore) {
  /* Death return: killed between taking a unit and recording it, the
   * unit is lost (documented); once recorded, it comes back. */
  mproc_semaphore *s = sem_new(2, 1);
  pid_t pid = run_to_point("sync.sem_taken", child_sem_acquire, s);
  kill_child(pid);
  expect_value(s, 1);
  ASSERT_OK(mproc_semaphore_free(s));

  s = sem_new(2, 1);
  pid = run_to_point("sync.sem_recorded", child_sem_acquire, s);
  kill_child(pid);
  expect_value(s, 2);
  ASSERT_OK(mproc_semaphore_free(s));

  /* Killed in a release after retiring its unit, before raising the
   * value: the unit is lost, and not returned by its death either. */
  s = sem_new(2, 1);
  pid = run_to_point("sync.sem_retired", child_sem_cycle, s);
  kill_child(pid);
  expect_value(s, 1);
  ASSERT_OK(mproc_semaphore_free(s));

  /* A sleeper killed: nothing changes (both semantics). */
  for (int ret = 0; ret < 2; ret++) {
    s = sem_new(0, ret);
    pid = run_to_point("sync.sem_sleeping", child_sem_acquire, s);
    kill_child(pid);
    expect_value(s, 0);
    ASSERT_OK(mproc_semaphore_release(s));
    expect_value(s, 1);
    ASSERT_OK(mproc_semaphore_free(s));
  }

  /* A process returning a dead holder's units is killed after freeing
   * its entry, before adding them back: those units are lost (never
   * returned twice). */
  s = sem_new(3, 1);
  pid_t holder = run_to_point(NULL, child_sem_acquire, s);
  kill_child(holder);
  pid = run_to_point("sync.sem_reclaimed", child_sem_value, s);
  kill_child(pid);
  expect_value(s, 2);
  ASSERT_OK(mproc_semaphore_free(s));
  return 0;
}

/* ==================== Condition ==================== */

struct cw {
  mproc_cond *c;
  int waiting; /* a live waiter is in wait (set with the lock held) */
};

static void child_cond_wait(void *arg) {
  struct cw *w = arg;
  mproc_lock *l = mproc_cond_lock(w->c);
  if (mproc_lock_acquire(l, 10) != 0) {
    _exit(2);
  }
  (void)mproc_cond_wait(w->c, MPROC_FOREVER);
  _exit(4); /* not stopped */
}

static void child_cond_notify(void *arg) {
  struct cw *w = arg;
  mproc_lock *l = mproc_cond_lock(w->c);
  if (mproc_lock_acquire(l, 10) != 0) {
    _exit(2);
  }
  (void)mproc_cond_notify(w->c, 1);
  _exit(4);
}

/* A live waiter: exits 0 once notified (repairing the lock if it finds
 * the notifier dead holding it). */
static pid_t start_live_waiter(struct cw *w) {
  __atomic_store_n(&w->waiting, 0, __ATOMIC_SEQ_CST);
  pid_t pid = test_fork();
  if (pid == 0) {
    mproc_lock *l = mproc_cond_lock(w->c);
    int r = mproc_lock_acquire(l, 10);
    if (r == MPROC_EOWNERDEAD) {
      r = mproc_lock_consistent(l);
    }
    if (r != 0) {
      _exit(2);
    }
    __atomic_store_n(&w->waiting, 1, __ATOMIC_SEQ_CST);
    r = mproc_cond_wait(w->c, 30);
    if (r == MPROC_EOWNERDEAD) {
      r = mproc_lock_consistent(l);
    }
    _exit(r == 0 && mproc_lock_release(l) == 0 ? 0 : 3);
  }
  /* In wait once it set the flag and the lock is free again. */
  double end = test_now() + 10 * test_timeout_mult();
  while (__atomic_load_n(&w->waiting, __ATOMIC_SEQ_CST) == 0) {
    ASSERT(test_now() < end);
    test_sleep(0.001);
  }
  return pid;
}

/* Take the condition's lock (repairing it if a dead holder left it). */
static void cond_lock(struct cw *w) {
  mproc_lock *l = mproc_cond_lock(w->c);
  int r = mproc_lock_acquire(l, 5);
  if (r == MPROC_EOWNERDEAD) {
    r = mproc_lock_consistent(l);
  }
  ASSERT_OK(r);
}

/* No wakeup swallowed: a live waiter is woken by one notify. */
static void expect_notify_works(struct cw *w) {
  pid_t pid = start_live_waiter(w);
  cond_lock(w); /* the waiter released it: it is in wait */
  ASSERT_OK(mproc_cond_notify(w->c, 1));
  ASSERT_OK(mproc_lock_release(mproc_cond_lock(w->c)));
  ASSERT_EQ(test_wait_pid(pid, 10 * test_timeout_mult()), 0);
}

TEST_IMPL(fault_sweep_sync_cond) {
  static const char *const waiter_points[] = {
      "sync.cond_queued", "sync.cond_sleeping", "sync.cond_woken"};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(waiter_points); i++) {
    struct cw *w = NULL;
    ASSERT_OK(mproc_shm_calloc((void **)&w, 1, sizeof *w));
    ASSERT_OK(mproc_cond_new(&w->c, NULL));
    int woken = strcmp(waiter_points[i], "sync.cond_woken") == 0;
    pid_t pid;
    if (woken) {
      /* It must be notified to get there: wait until it waits. */
      int point = mproc__fault_lookup(waiter_points[i]);
      int fds[2];
      ASSERT_EQ(pipe(fds), 0);
      pid = test_fork();
      if (pid == 0) {
        close(fds[0]);
        sweep_target = point;
        sweep_report = fds[1];
        mproc__fault_hook = sweep_stop_at_point;
        mproc_lock *l = mproc_cond_lock(w->c);
        if (mproc_lock_acquire(l, 10) != 0) {
          _exit(2);
        }
        __atomic_store_n(&w->waiting, 1, __ATOMIC_SEQ_CST);
        (void)mproc_cond_wait(w->c, MPROC_FOREVER);
        _exit(4);
      }
      close(fds[1]);
      double end = test_now() + 10 * test_timeout_mult();
      while (__atomic_load_n(&w->waiting, __ATOMIC_SEQ_CST) == 0) {
        ASSERT(test_now() < end);
        test_sleep(0.001);
      }
      cond_lock(w);
      ASSERT_OK(mproc_cond_notify(w->c, 1));
      ASSERT_OK(mproc_lock_release(mproc_cond_lock(w->c)));
      int got = 0;
      ASSERT(test_read_int(fds[0], &got, 10 * test_timeout_mult()));
      ASSERT_EQ(got, point);
      close(fds[0]);
    } else {
      pid = run_to_point(waiter_points[i], child_cond_wait, w);
    }
    kill_child(pid);
    /* Killed holding the lock (queued): taken over; otherwise free. */
    mproc_lock *l = mproc_cond_lock(w->c);
    if (i == 0) {
      expect_owner_dead(l);
    } else {
      ASSERT_OK(mproc_lock_acquire(l, 5));
      ASSERT_OK(mproc_lock_release(l));
    }
    expect_notify_works(w);
    expect_notify_works(w);
    ASSERT_OK(mproc_cond_free(w->c));
    ASSERT_OK(mproc_shm_free(w));
  }

  /* A notifier killed after marking a live waiter's record, before waking
   * it: the waiter still returns (it sees the mark when its sleep slice
   * ends), and the notifier's lock is taken over. */
  struct cw *w = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&w, 1, sizeof *w));
  ASSERT_OK(mproc_cond_new(&w->c, NULL));
  pid_t waiter = start_live_waiter(w);
  pid_t pid = run_to_point("sync.cond_signalled", child_cond_notify, w);
  kill_child(pid);
  ASSERT_EQ(test_wait_pid(waiter, 10 * test_timeout_mult()), 0);
  cond_lock(w);
  ASSERT_OK(mproc_lock_release(mproc_cond_lock(w->c)));
  expect_notify_works(w);
  ASSERT_OK(mproc_cond_free(w->c));
  ASSERT_OK(mproc_shm_free(w));
  return 0;
}

/* ==================== Event ==================== */

static void child_event_wait(void *arg) {
  (void)mproc_event_wait(arg, MPROC_FOREVER);
}

TEST_IMPL(fault_sweep_sync_event) {
  mproc_event *e = NULL;
  ASSERT_OK(mproc_event_new(&e));
  pid_t pid = run_to_point("sync.event_sleeping", child_event_wait, e);
  kill_child(pid);
  ASSERT_EQ(mproc_event_is_set(e), 0);
  ASSERT_ERR(mproc_event_wait(e, 0), MPROC_ETIMEDOUT);
  ASSERT_OK(mproc_event_set(e));
  ASSERT_EQ(mproc_event_is_set(e), 1);
  ASSERT_OK(mproc_event_wait(e, 0));
  ASSERT_OK(mproc_event_clear(e));
  /* A live waiter is woken by the next set. */
  pid = test_fork();
  if (pid == 0) {
    _exit(mproc_event_wait(e, 30) == 0 ? 0 : 2);
  }
  ASSERT_OK(mproc_event_set(e));
  ASSERT_EQ(test_wait_pid(pid, 10 * test_timeout_mult()), 0);
  ASSERT_OK(mproc_event_free(e));
  return 0;
}

/* ==================== Barrier ==================== */

static void child_barrier_wait(void *arg) {
  (void)mproc_barrier_wait(arg, MPROC_FOREVER);
}

/* b (3 parties) is usable: after a reset, this process and two children
 * pass it together. */
static void expect_barrier_passes(mproc_barrier *b) {
  ASSERT_OK(mproc_barrier_reset(b));
  ASSERT_EQ(mproc_barrier_broken(b), 0);
  pid_t p[2];
  for (int i = 0; i < 2; i++) {
    p[i] = test_fork();
    if (p[i] == 0) {
      _exit(mproc_barrier_wait(b, 30) >= 0 ? 0 : 2);
    }
  }
  ASSERT_GE(mproc_barrier_wait(b, 30), 0);
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ(test_wait_pid(p[i], 10 * test_timeout_mult()), 0);
  }
}

TEST_IMPL(fault_sweep_sync_barrier) {
  static const char *const points[] = {"sync.barrier_entered",
                                       "sync.barrier_sleeping"};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(points); i++) {
    mproc_barrier *b = NULL;
    ASSERT_OK(mproc_barrier_new(&b, 3, NULL));
    pid_t pid = run_to_point(points[i], child_barrier_wait, b);
    kill_child(pid);
    /* This party is not left waiting for the dead one: broken. */
    double t0 = test_now();
    ASSERT_ERR(mproc_barrier_wait(b, 10), MPROC_EBROKEN);
    ASSERT_DBL_LE(test_now() - t0, 2 * test_timeout_mult());
    ASSERT_EQ(mproc_barrier_broken(b), 1);
    expect_barrier_passes(b);
    ASSERT_OK(mproc_barrier_free(b));
  }
  return 0;
}
