/*
 * tests/fault/test-sync-death.c - Semaphore, Condition, Event and Barrier
 * when a process using them is SIGKILLed (real processes, real signals):
 * a dead holder's semaphore units come back; a process killed inside a
 * condition or event wait blocks nobody and swallows no wakeup; a barrier
 * party killed while others wait breaks the barrier for them within
 * about 100 ms, also when it dies holding the barrier's internal lock.
 */
#include "internal.h"
#include "task.h"

#include <signal.h>

static void kill_proc(mproc_process *p) {
  ASSERT_OK(mproc_process_kill(p));
  ASSERT_EQ(test_finish_proc(p), -SIGKILL);
}

static void wait_count(int *counter, int want) {
  double end = test_now() + 10;
  while (__atomic_load_n(counter, __ATOMIC_SEQ_CST) < want) {
    ASSERT(test_now() < end);
    test_sleep(0.001);
  }
}

static void sleep_forever(void) {
  for (;;) {
    test_sleep(60);
  }
}

/* ==================== Semaphore ==================== */

struct sd {
  mproc_semaphore *sem;
  int units;   /* how many the holder takes */
  int ready;
  int result;
  double at;
};

static int t_sem_hold(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct sd *s = *(struct sd *const *)arg;
  for (int i = 0; i < s->units; i++) {
    if (mproc_semaphore_acquire(s->sem, 5) != 0) {
      return 2;
    }
  }
  __atomic_add_fetch(&s->ready, 1, __ATOMIC_SEQ_CST);
  sleep_forever();
  return 0;
}

static struct sd *sd_new(int value, int bounded, int death_return) {
  struct sd *s = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&s, 1, sizeof *s));
  mproc_semaphore_opts o = {.bounded = bounded, .death_return = death_return};
  ASSERT_OK(mproc_semaphore_new(&s->sem, value, &o));
  return s;
}

static void sd_free(struct sd *s) {
  ASSERT_OK(mproc_semaphore_free(s->sem));
  ASSERT_OK(mproc_shm_free(s));
}

/* Starts a process that takes units units of s->sem and keeps them until
 * it is killed; returns once it holds them (the ready-th such holder). */
static mproc_process *start_holder(struct sd *s, int units, int ready) {
  s->units = units;
  mproc_process *p = test_start_proc(t_sem_hold, &s, sizeof s);
  wait_count(&s->ready, ready);
  return p;
}

TEST_IMPL_ALL_METHODS(sync_semaphore_holder_killed_units_return) {
  for (int bounded = 0; bounded < 2; bounded++) {
    struct sd *s = sd_new(5, bounded, 1);
    mproc_process *a = start_holder(s, 2, 1);
    mproc_process *b = start_holder(s, 1, 2);
    ASSERT_EQ(mproc_semaphore_get_value(s->sem), 2);
    kill_proc(a);
    ASSERT_EQ(mproc_semaphore_get_value(s->sem), 4);
    ASSERT_EQ(mproc_semaphore_get_value(s->sem), 4); /* once only */
    kill_proc(b);
    ASSERT_EQ(mproc_semaphore_get_value(s->sem), 5);
    sd_free(s);
  }
  return 0;
}

static int t_sem_wait(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct sd *s = *(struct sd *const *)arg;
  __atomic_store_n(&s->ready, 9, __ATOMIC_SEQ_CST);
  int r = mproc_semaphore_acquire(s->sem, 10);
  s->at = test_now();
  __atomic_store_n(&s->result, r == 0 ? 1 : r, __ATOMIC_SEQ_CST);
  return r == 0 ? 0 : 2;
}

/* A waiter blocked on the semaphore gets the dead holder's unit. */
TEST_IMPL(sync_semaphore_holder_killed_waiter_gets_unit) {
  struct sd *s = sd_new(1, 1, 1);
  mproc_process *h = start_holder(s, 1, 1);
  mproc_process *w = test_start_proc(t_sem_wait, &s, sizeof s);
  wait_count(&s->ready, 9);
  test_sleep(0.3);
  ASSERT_EQ(s->result, 0);
  double killed = test_now();
  ASSERT_OK(mproc_process_kill(h));
  ASSERT_EQ(test_finish_proc(w), 0);
  ASSERT_EQ(s->result, 1);
  ASSERT_DBL_LE(s->at - killed, 2 * test_slack());
  ASSERT_EQ(test_finish_proc(h), -SIGKILL);
  /* The waiter took the returned unit and died holding it in turn. */
  ASSERT_EQ(mproc_semaphore_get_value(s->sem), 1);
  sd_free(s);
  return 0;
}

/* The default (Python's semantics): the units stay taken. */
TEST_IMPL(sync_semaphore_no_death_return) {
  struct sd *s = sd_new(3, 0, 0);
  mproc_process *a = start_holder(s, 2, 1);
  kill_proc(a);
  ASSERT_EQ(mproc_semaphore_get_value(s->sem), 1);
  ASSERT_ERR(mproc_semaphore_acquire(s->sem, 0.1), 0);
  ASSERT_ERR(mproc_semaphore_acquire(s->sem, 0.1), MPROC_ETIMEDOUT);
  sd_free(s);
  return 0;
}

/* Death return: a release by another process retires the holder's unit,
 * so its death gives nothing back a second time. */
TEST_IMPL(sync_semaphore_release_by_other_then_death) {
  struct sd *s = sd_new(2, 1, 1);
  mproc_process *a = start_holder(s, 1, 1);
  ASSERT_EQ(mproc_semaphore_get_value(s->sem), 1);
  ASSERT_OK(mproc_semaphore_release(s->sem)); /* retires a's unit */
  ASSERT_EQ(mproc_semaphore_get_value(s->sem), 2);
  kill_proc(a);
  ASSERT_EQ(mproc_semaphore_get_value(s->sem), 2); /* nothing returned */
  sd_free(s);
  return 0;
}

/* ---- exact counts: the cross-process pattern and a bounded buffer ---- */

struct xp {
  mproc_semaphore *sem;
  int acquired;
  int go;
};

/* Acquires one unit, says so, and exits normally once told to (or is
 * killed before). */
static int t_xp_acquire(const void *arg, size_t len, void *ctx) {
  (void)len;
  (void)ctx;
  struct xp *x = *(struct xp *const *)arg;
  if (mproc_semaphore_acquire(x->sem, 10) != 0) {
    return 2;
  }
  __atomic_store_n(&x->acquired, 1, __ATOMIC_SEQ_CST);
  wait_count(&x->go, 1);
  return 0;
}

static int t_xp_release(const void *arg, size_t len, void *ctx) {
  (void)len;
  (void)ctx;
  struct xp *x = *(struct xp *const *)arg;
  return mproc_semaphore_release(x->sem) == 0 ? 0 : 2;
}

/*
 * Python's producer/consumer pattern on a Semaphore(1): one process
 * acquires, another releases, the acquirer exits (normally, or SIGKILLed).
 * The count stays 1: an exit gives nothing back a second time, with the
 * default semantics and with death return.
 */
TEST_IMPL(sync_semaphore_cross_process_exact) {
  for (int ret = 0; ret < 2; ret++) {
    for (int killed = 0; killed < 2; killed++) {
      struct xp *x = NULL;
      ASSERT_OK(mproc_shm_calloc((void **)&x, 1, sizeof *x));
      mproc_semaphore_opts o = {.death_return = ret};
      ASSERT_OK(mproc_semaphore_new(&x->sem, 1, &o));
      mproc_process *a = test_start_proc(t_xp_acquire, &x, sizeof x);
      wait_count(&x->acquired, 1);
      ASSERT_EQ(mproc_semaphore_get_value(x->sem), 0);
      ASSERT_EQ(test_run_proc(t_xp_release, &x, sizeof x), 0);
      ASSERT_EQ(mproc_semaphore_get_value(x->sem), 1);
      if (killed) {
        kill_proc(a);
      } else {
        __atomic_store_n(&x->go, 1, __ATOMIC_SEQ_CST);
        ASSERT_EQ(test_finish_proc(a), 0);
      }
      ASSERT_EQ(mproc_semaphore_get_value(x->sem), 1);
      ASSERT_EQ(mproc_semaphore_get_value(x->sem), 1);
      /* Exactly one unit: one acquire succeeds, a second polls empty. */
      ASSERT_OK(mproc_semaphore_acquire(x->sem, 0));
      ASSERT_ERR(mproc_semaphore_acquire(x->sem, 0), MPROC_ETIMEDOUT);
      ASSERT_OK(mproc_semaphore_release(x->sem));
      ASSERT_OK(mproc_semaphore_free(x->sem));
      ASSERT_OK(mproc_shm_free(x));
    }
  }
  return 0;
}

#define BB_SLOTS 4
#define BB_ITEMS 20 /* per producer and per consumer */

struct bb {
  mproc_semaphore *empty, *full;
  int items;      /* items in the buffer (changed with atomics) */
  int bad;
  int took;       /* the victim consumer took its item */
};

static int t_bb_producer(const void *arg, size_t len, void *ctx) {
  (void)len;
  (void)ctx;
  struct bb *b = *(struct bb *const *)arg;
  for (int i = 0; i < BB_ITEMS; i++) {
    if (mproc_semaphore_acquire(b->empty, 30) != 0) {
      return 2;
    }
    if (__atomic_add_fetch(&b->items, 1, __ATOMIC_SEQ_CST) > BB_SLOTS) {
      __atomic_store_n(&b->bad, 1, __ATOMIC_SEQ_CST);
    }
    if (mproc_semaphore_release(b->full) != 0) {
      return 3;
    }
  }
  return 0;
}

static int t_bb_consumer(const void *arg, size_t len, void *ctx) {
  (void)len;
  (void)ctx;
  struct bb *b = *(struct bb *const *)arg;
  for (int i = 0; i < BB_ITEMS; i++) {
    if (mproc_semaphore_acquire(b->full, 30) != 0) {
      return 2;
    }
    if (__atomic_sub_fetch(&b->items, 1, __ATOMIC_SEQ_CST) < 0) {
      __atomic_store_n(&b->bad, 1, __ATOMIC_SEQ_CST);
    }
    if (mproc_semaphore_release(b->empty) != 0) {
      return 3;
    }
  }
  return 0;
}

/* Takes one item and keeps it until it is killed. */
static int t_bb_victim(const void *arg, size_t len, void *ctx) {
  (void)len;
  (void)ctx;
  struct bb *b = *(struct bb *const *)arg;
  if (mproc_semaphore_acquire(b->full, 30) != 0) {
    return 2;
  }
  __atomic_sub_fetch(&b->items, 1, __ATOMIC_SEQ_CST);
  __atomic_store_n(&b->took, 1, __ATOMIC_SEQ_CST);
  sleep_forever();
  return 0;
}

/* Blocks waiting for an item that never comes, until it is killed. */
static int t_bb_starved(const void *arg, size_t len, void *ctx) {
  (void)len;
  (void)ctx;
  struct bb *b = *(struct bb *const *)arg;
  __atomic_store_n(&b->took, 1, __ATOMIC_SEQ_CST);
  mproc_semaphore_acquire(b->full, MPROC_FOREVER);
  return 2;
}

/* One item, then exit normally. */
static int t_bb_producer_one(const void *arg, size_t len, void *ctx) {
  (void)len;
  (void)ctx;
  struct bb *b = *(struct bb *const *)arg;
  if (mproc_semaphore_acquire(b->empty, 30) != 0) {
    return 2;
  }
  __atomic_add_fetch(&b->items, 1, __ATOMIC_SEQ_CST);
  return mproc_semaphore_release(b->full) == 0 ? 0 : 3;
}

static void bb_expect(struct bb *b, int full, int empty) {
  ASSERT_EQ(b->bad, 0);
  ASSERT_EQ(mproc_semaphore_get_value(b->full), full);
  ASSERT_EQ(mproc_semaphore_get_value(b->empty), empty);
  ASSERT_EQ(b->items, full);
}

/*
 * A bounded buffer (empty = Semaphore(4), full = Semaphore(0)): two
 * producers and two consumers pass 40 items and exit normally; the counts
 * are exact afterwards (no phantom items, no extra slots), with the
 * default semantics and with death return.  Then a consumer SIGKILLed
 * while it waits for an item changes nothing, and one killed after it took
 * an item leaves that item consumed (Python's semantics).
 */
TEST_IMPL(sync_semaphore_bounded_buffer_exact) {
  for (int ret = 0; ret < 2; ret++) {
    struct bb *b = NULL;
    ASSERT_OK(mproc_shm_calloc((void **)&b, 1, sizeof *b));
    mproc_semaphore_opts o = {.death_return = ret};
    ASSERT_OK(mproc_semaphore_new(&b->empty, BB_SLOTS, &o));
    ASSERT_OK(mproc_semaphore_new(&b->full, 0, &o));
    mproc_process *p[4];
    p[0] = test_start_proc(t_bb_producer, &b, sizeof b);
    p[1] = test_start_proc(t_bb_consumer, &b, sizeof b);
    p[2] = test_start_proc(t_bb_producer, &b, sizeof b);
    p[3] = test_start_proc(t_bb_consumer, &b, sizeof b);
    test_finish_procs_ok(p, 4);
    bb_expect(b, 0, BB_SLOTS);

    /* A consumer killed while it waits holds nothing. */
    mproc_process *v = test_start_proc(t_bb_starved, &b, sizeof b);
    wait_count(&b->took, 1);
    kill_proc(v);
    bb_expect(b, 0, BB_SLOTS);
    b->took = 0;

    if (!ret) {
      /* One item, its producer gone; a consumer takes it and is killed:
       * the item is consumed and its slot not given back (with death
       * return, a producer that exits holding a slot would get it back:
       * death return is for resource counters, not for this). */
      ASSERT_EQ(test_run_proc(t_bb_producer_one, &b, sizeof b), 0);
      bb_expect(b, 1, BB_SLOTS - 1);
      v = test_start_proc(t_bb_victim, &b, sizeof b);
      wait_count(&b->took, 1);
      kill_proc(v);
      bb_expect(b, 0, BB_SLOTS - 1);
      bb_expect(b, 0, BB_SLOTS - 1); /* still */
    }
    ASSERT_OK(mproc_semaphore_free(b->empty));
    ASSERT_OK(mproc_semaphore_free(b->full));
    ASSERT_OK(mproc_shm_free(b));
  }
  return 0;
}

/* ==================== Condition ==================== */

struct cd {
  mproc_cond *cond;
  int started;
  int woken;
  int state;
};

static int t_cond_waiter(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct cd *c = *(struct cd *const *)arg;
  mproc_lock *l = mproc_cond_lock(c->cond);
  if (mproc_lock_acquire(l, 10) != 0) return 2;
  __atomic_add_fetch(&c->started, 1, __ATOMIC_SEQ_CST);
  int r = mproc_cond_wait(c->cond, 20);
  if (r != 0) return 3;
  __atomic_add_fetch(&c->woken, 1, __ATOMIC_SEQ_CST);
  return mproc_lock_release(l) == 0 ? 0 : 4;
}

static void cond_notify(struct cd *c, int n) {
  mproc_lock *l = mproc_cond_lock(c->cond);
  ASSERT_OK(mproc_lock_acquire(l, 10));
  ASSERT_OK(mproc_cond_notify(c->cond, n));
  ASSERT_OK(mproc_lock_release(l));
}

static void expect_woken(struct cd *c, int want) {
  double end = test_now() + 5;
  while (__atomic_load_n(&c->woken, __ATOMIC_SEQ_CST) < want &&
         test_now() < end) {
    test_sleep(0.002);
  }
  test_sleep(0.1);
  ASSERT_EQ(c->woken, want);
}

/* The first waiter (first in line for a notify) is killed in its wait:
 * notify(1) still wakes a live one, each time, and the condition can be
 * freed afterwards. */
TEST_IMPL(sync_cond_waiter_killed) {
  struct cd *c = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&c, 1, sizeof *c));
  ASSERT_OK(mproc_cond_new(&c->cond, NULL));
  mproc_process *victim = test_start_proc(t_cond_waiter, &c, sizeof c);
  wait_count(&c->started, 1);
  mproc_process *p[2];
  for (int i = 0; i < 2; i++) {
    p[i] = test_start_proc(t_cond_waiter, &c, sizeof c);
    wait_count(&c->started, i + 2);
  }
  test_sleep(0.05);
  kill_proc(victim);
  cond_notify(c, 1);
  expect_woken(c, 1);
  cond_notify(c, 1);
  expect_woken(c, 2);
  test_finish_procs_ok(p, 2);
  /* A waiter killed with nobody notifying afterwards: free still works. */
  victim = test_start_proc(t_cond_waiter, &c, sizeof c);
  wait_count(&c->started, 4);
  test_sleep(0.05);
  kill_proc(victim);
  ASSERT_OK(mproc_cond_free(c->cond));
  ASSERT_OK(mproc_shm_free(c));
  return 0;
}

/* notify_all with a dead waiter among the live ones. */
TEST_IMPL(sync_cond_waiter_killed_notify_all) {
  struct cd *c = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&c, 1, sizeof *c));
  ASSERT_OK(mproc_cond_new(&c->cond, NULL));
  mproc_process *p[4];
  for (int i = 0; i < 4; i++) {
    p[i] = test_start_proc(t_cond_waiter, &c, sizeof c);
    wait_count(&c->started, i + 1);
  }
  test_sleep(0.05);
  kill_proc(p[1]);
  cond_notify(c, -1 & INT32_MAX);
  expect_woken(c, 3);
  for (int i = 0; i < 4; i++) {
    if (i != 1) {
      ASSERT_EQ(test_finish_proc(p[i]), 0);
    }
  }
  ASSERT_OK(mproc_cond_free(c->cond));
  ASSERT_OK(mproc_shm_free(c));
  return 0;
}

/* ==================== Event ==================== */

static int t_event_waiter(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct cd *c = *(struct cd *const *)arg;
  mproc_event *e = (mproc_event *)(void *)c->cond; /* reused field */
  __atomic_add_fetch(&c->started, 1, __ATOMIC_SEQ_CST);
  int r = mproc_event_wait(e, 20);
  __atomic_add_fetch(&c->woken, 1, __ATOMIC_SEQ_CST);
  return r == 0 ? 0 : 2;
}

TEST_IMPL(sync_event_waiter_killed) {
  struct cd *c = NULL;
  mproc_event *e = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&c, 1, sizeof *c));
  ASSERT_OK(mproc_event_new(&e));
  c->cond = (mproc_cond *)(void *)e;
  mproc_process *p[3];
  test_start_procs(p, 3, t_event_waiter, &c, sizeof c);
  wait_count(&c->started, 3);
  test_sleep(0.05);
  kill_proc(p[0]);
  double t0 = test_now();
  ASSERT_OK(mproc_event_set(e));
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  ASSERT_EQ(test_finish_proc(p[1]), 0);
  ASSERT_EQ(test_finish_proc(p[2]), 0);
  ASSERT_EQ(c->woken, 2);
  /* Still a working event. */
  ASSERT_OK(mproc_event_clear(e));
  ASSERT_ERR(mproc_event_wait(e, 0.05), MPROC_ETIMEDOUT);
  ASSERT_OK(mproc_event_set(e));
  ASSERT_OK(mproc_event_wait(e, 0));
  ASSERT_OK(mproc_event_free(e));
  ASSERT_OK(mproc_shm_free(c));
  return 0;
}

/* ==================== Barrier ==================== */

struct bd {
  mproc_barrier *b;
  int started;
  int results[4];
  double at[4];
  int next;
  int hang_in_action;
};

static int t_barrier_party(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct bd *s = *(struct bd *const *)arg;
  int me = __atomic_fetch_add(&s->next, 1, __ATOMIC_SEQ_CST);
  __atomic_add_fetch(&s->started, 1, __ATOMIC_SEQ_CST);
  int r = mproc_barrier_wait(s->b, 20);
  s->at[me] = test_now();
  s->results[me] = r;
  return 0;
}

static int t_barrier_doomed(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct bd *s = *(struct bd *const *)arg;
  __atomic_add_fetch(&s->started, 1, __ATOMIC_SEQ_CST);
  mproc_barrier_wait(s->b, MPROC_FOREVER);
  sleep_forever();
  return 0;
}

/* Kills doomed while the two live parties p[0] and p[1] wait: each must
 * get MPROC_EBROKEN within bound seconds (times the multiplier) of the
 * kill, and the broken barrier must reset. */
static void kill_doomed_party(struct bd *s, mproc_process **p,
                              mproc_process *doomed, double bound) {
  double killed = test_now();
  ASSERT_OK(mproc_process_kill(doomed));
  test_finish_procs_ok(p, 2);
  ASSERT_EQ(test_finish_proc(doomed), -SIGKILL);
  for (int i = 0; i < 2; i++) {
    ASSERT_ERR(s->results[i], MPROC_EBROKEN);
    ASSERT_DBL_LE(s->at[i] - killed, bound * test_timeout_mult() * test_busy_factor());
  }
  ASSERT_EQ(mproc_barrier_broken(s->b), 1);
  ASSERT_OK(mproc_barrier_reset(s->b));
  ASSERT_EQ(mproc_barrier_broken(s->b), 0);
}

/* Parties 4: two wait, a third waits and is killed: the two get
 * MPROC_EBROKEN within ~100 ms of the kill. */
TEST_IMPL_ALL_METHODS(sync_barrier_party_killed) {
  struct bd *s = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&s, 1, sizeof *s));
  ASSERT_OK(mproc_barrier_new(&s->b, 4, NULL));
  mproc_process *p[2];
  test_start_procs(p, 2, t_barrier_party, &s, sizeof s);
  mproc_process *doomed = test_start_proc(t_barrier_doomed, &s, sizeof s);
  wait_count(&s->started, 3);
  double end = test_now() + 5;
  while (mproc_barrier_n_waiting(s->b) < 3 && test_now() < end) {
    test_sleep(0.001);
  }
  ASSERT_EQ(mproc_barrier_n_waiting(s->b), 3);
  test_sleep(0.2);
  kill_doomed_party(s, p, doomed, 0.1);
  ASSERT_EQ(mproc_barrier_n_waiting(s->b), 0);
  ASSERT_OK(mproc_barrier_free(s->b));
  ASSERT_OK(mproc_shm_free(s));
  return 0;
}

/* The last party dies inside the action, holding the barrier's internal
 * lock: the others get MPROC_EBROKEN, and the barrier can be reset and
 * used again. */
static void hang_action(void *arg) {
  struct bd *s = arg;
  __atomic_store_n(&s->hang_in_action, 1, __ATOMIC_SEQ_CST);
  sleep_forever();
}

TEST_IMPL(sync_barrier_killed_in_action) {
  struct bd *s = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&s, 1, sizeof *s));
  mproc_barrier_opts o = {.action = hang_action, .timeout = MPROC_FOREVER};
  o.action_ctx = s;
  ASSERT_OK(mproc_barrier_new(&s->b, 3, &o));
  mproc_process *p[2];
  test_start_procs(p, 2, t_barrier_party, &s, sizeof s);
  wait_count(&s->started, 2);
  double end = test_now() + 5;
  while (mproc_barrier_n_waiting(s->b) < 2 && test_now() < end) {
    test_sleep(0.001);
  }
  mproc_process *doomed = test_start_proc(t_barrier_doomed, &s, sizeof s);
  wait_count(&s->hang_in_action, 1);
  test_sleep(0.1);
  kill_doomed_party(s, p, doomed, 0.2);
  ASSERT_OK(mproc_barrier_free(s->b));
  /* A new barrier without the action works as usual. */
  ASSERT_OK(mproc_barrier_new(&s->b, 1, NULL));
  ASSERT_EQ(mproc_barrier_wait(s->b, 1), 0);
  ASSERT_OK(mproc_barrier_free(s->b));
  ASSERT_OK(mproc_shm_free(s));
  return 0;
}
