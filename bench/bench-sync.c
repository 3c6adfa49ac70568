/*
 * bench/bench-sync.c - Lock, locked Value and Event against their raw peers.
 *
 * Bench IDs and systems (the python rows come from bench/python/sync.py):
 *
 *   lock_uncontended  ns per acquire+release pair, lower is better; one
 *                     process, nobody else touches the lock.
 *       mproc          mproc_lock_acquire(l, MPROC_FOREVER) +
 *                      mproc_lock_release(l) on a Lock (mproc_lock_new,
 *                      Python's multiprocessing.Lock);
 *       pthread_mutex  pthread_mutex_lock + unlock of a default-type
 *                      PTHREAD_PROCESS_SHARED mutex in a MAP_SHARED page.
 *   value_contended   M increments/s in total, higher is better; two
 *                     processes each add 1 to a shared int64 N times, taking
 *                     the lock around every increment; the final count must
 *                     be exactly 2N.
 *       mproc          a Value('q') with its default lock (an RLock, as
 *                      Python's): mproc_lock_acquire(mproc_value_get_lock(v)),
 *                      *(int64_t *)mproc_value_ptr(v) += 1,
 *                      mproc_lock_release;
 *       pthread_mutex  the same with the mutex above and a plain int64_t
 *                      beside it in the MAP_SHARED page.
 *   event_pingpong    us per round trip, lower is better; two processes
 *                     alternate: A sets e1 and waits for e2 (then clears
 *                     it); B waits for e1, clears it, sets e2.
 *       mproc          two mproc Events (mproc_event_set / wait(FOREVER) /
 *                      clear);
 *       raw_futex      two futex words in a MAP_SHARED page: store 1 +
 *                      FUTEX_WAKE; FUTEX_WAIT while 0, then store 0 (shared
 *                      futexes, no spinning, a wake syscall every time).
 *
 * Printed on stderr for information only (not result rows):
 * pthread_robust (the same pthread mutex made PTHREAD_MUTEX_ROBUST, the
 * floor for a lock that survives its holder's death, as mproc's does) in
 * lock_uncontended and value_contended, and mproc_Lock in value_contended
 * (a Value given a plain Lock through opts.lock instead of its RLock); for
 * the two-process benches, where the scheduler put the two workers (on
 * two CPUs, or one: a wakeup on the same CPU is far cheaper, and a
 * "contended" lock whose users take turns on one CPU is barely contended),
 * with the median of each kind of round.
 *
 * Method: the systems of a bench run in alternating rounds, the order
 * reversed every round, so a burst of noise hits all alike; the figure is
 * the MEDIAN over rounds.  lock_uncontended runs in this process (a round
 * times OPS pairs back to back).  The two-process benches run in two worker
 * processes (mproc processes started once, before the rounds, with every
 * object they use created before them); this process hands each round to
 * both and sleeps on a futex until both are done, so the two workers have
 * the machine's two CPUs (nothing is pinned).  The workers meet at a
 * spinning barrier, then each times its own part with CLOCK_MONOTONIC:
 * value_contended's round time is last end - first start; event_pingpong's
 * is A's time for its round trips, after WARM untimed ones.  Warm-up rounds
 * of every system run first and are not counted.
 *
 * The workers, the statistics and the output come from bench/harness.h.
 * Output: one JSON object a line on stdout; details on stderr.
 * BENCH_QUICK=1 shrinks the counts.  Exits non-zero only when something
 * fails (an mproc or pthread call, a worker, a wrong final count).
 */
#define BENCH_NAME "bench-sync"
#include "harness.h"

#include <pthread.h>

#define WARM 200 /* untimed round trips before a timed ping-pong */

/* ---- the raw peers' state, in a MAP_SHARED page ---- */

typedef struct locked_int { /* a mutex with the counter it protects */
  pthread_mutex_t mu;
  int64_t count;
} __attribute__((aligned(64))) locked_int;

typedef struct futex_word {
  _Atomic uint32_t w;
} __attribute__((aligned(64))) futex_word;

enum { CMD_VALUE = 1, CMD_PING }; /* the workers' commands */
enum { V_MPROC, V_PTHREAD, V_ROBUST, V_MPROC_LOCK, NV };
enum { P_MPROC, P_FUTEX, NP };

typedef struct peers {
  locked_int plain, robust; /* pthread_mutex, pthread_robust */
  futex_word f1, f2;        /* raw_futex */
} peers;

static peers *P;
static mproc_lock *lock_mproc;            /* lock_uncontended */
static mproc_value *val_rlock, *val_lock; /* value_contended */
static mproc_lock *val_lock_lock;         /* val_lock's plain Lock */
static mproc_event *ev1, *ev2;            /* event_pingpong */

/* ---- lock_uncontended: one process ---- */

enum { L_MPROC, L_PTHREAD, L_ROBUST, NL };

static double lock_round(int sys, long ops) {
  double t0 = now_ns();
  if (sys == L_MPROC) {
    mproc_lock *l = lock_mproc;
    for (long i = 0; i < ops; i++) {
      int rc = mproc_lock_acquire(l, MPROC_FOREVER);
      if (rc != 0) fail("mproc_lock_acquire", rc);
      rc = mproc_lock_release(l);
      if (rc != 0) fail("mproc_lock_release", rc);
    }
  } else {
    pthread_mutex_t *mu = sys == L_PTHREAD ? &P->plain.mu : &P->robust.mu;
    for (long i = 0; i < ops; i++) {
      int rc = pthread_mutex_lock(mu);
      if (rc != 0) fail("pthread_mutex_lock", rc);
      rc = pthread_mutex_unlock(mu);
      if (rc != 0) fail("pthread_mutex_unlock", rc);
    }
  }
  return (now_ns() - t0) / (double)ops;
}

/* ---- the two workers ---- */

static void value_work(int sys, long n) {
  if (sys == V_MPROC || sys == V_MPROC_LOCK) {
    mproc_value *v = sys == V_MPROC ? val_rlock : val_lock;
    mproc_lock *l = mproc_value_get_lock(v);
    int64_t *p = mproc_value_ptr(v);
    if (l == NULL || p == NULL) fail("mproc_value_get_lock/ptr", MPROC_EINVAL);
    for (long i = 0; i < n; i++) {
      int rc = mproc_lock_acquire(l, MPROC_FOREVER);
      if (rc != 0) fail("mproc_lock_acquire (value)", rc);
      *p += 1;
      rc = mproc_lock_release(l);
      if (rc != 0) fail("mproc_lock_release (value)", rc);
    }
  } else {
    locked_int *li = sys == V_PTHREAD ? &P->plain : &P->robust;
    for (long i = 0; i < n; i++) {
      int rc = pthread_mutex_lock(&li->mu);
      if (rc != 0) fail("pthread_mutex_lock (value)", rc);
      li->count += 1;
      rc = pthread_mutex_unlock(&li->mu);
      if (rc != 0) fail("pthread_mutex_unlock (value)", rc);
    }
  }
}

static void ping_mproc(int id, long n) {
  if (id == 0) { /* A */
    for (long i = 0; i < WARM + n; i++) {
      if (i == WARM) B->t_start[0] = now_ns();
      int rc = mproc_event_set(ev1);
      if (rc != 0) fail("mproc_event_set", rc);
      rc = mproc_event_wait(ev2, MPROC_FOREVER);
      if (rc != 0) fail("mproc_event_wait", rc);
      rc = mproc_event_clear(ev2);
      if (rc != 0) fail("mproc_event_clear", rc);
    }
    B->t_end[0] = now_ns();
  } else { /* B */
    for (long i = 0; i < WARM + n; i++) {
      int rc = mproc_event_wait(ev1, MPROC_FOREVER);
      if (rc != 0) fail("mproc_event_wait", rc);
      rc = mproc_event_clear(ev1);
      if (rc != 0) fail("mproc_event_clear", rc);
      rc = mproc_event_set(ev2);
      if (rc != 0) fail("mproc_event_set", rc);
    }
  }
}

static void ping_futex(int id, long n) {
  _Atomic uint32_t *f1 = &P->f1.w, *f2 = &P->f2.w;
  if (id == 0) { /* A */
    for (long i = 0; i < WARM + n; i++) {
      if (i == WARM) B->t_start[0] = now_ns();
      atomic_store(f1, 1);
      futex_wake(f1, 1);
      while (atomic_load(f2) == 0) futex_wait(f2, 0, 0);
      atomic_store(f2, 0);
    }
    B->t_end[0] = now_ns();
  } else { /* B */
    for (long i = 0; i < WARM + n; i++) {
      while (atomic_load(f1) == 0) futex_wait(f1, 0, 0);
      atomic_store(f1, 0);
      atomic_store(f2, 1);
      futex_wake(f2, 1);
    }
  }
}

/* A worker's part of a round (the harness has met the other at the
 * barrier and notes the CPUs around it). */
static void work(int id, int cmd) {
  if (cmd == CMD_VALUE) {
    B->t_start[id] = now_ns();
    value_work(B->sys, B->n);
    B->t_end[id] = now_ns();
  } else if (cmd == CMD_PING) {
    if (B->sys == P_MPROC) {
      ping_mproc(id, B->n);
    } else {
      ping_futex(id, B->n);
    }
  }
}

static int worker(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  return bench_serve(arg, len, work);
}

/* value_contended round: M increments/s in total; checks the count. */
static double value_round(int sys, long n, double *solo_tail) {
  int64_t zero = 0;
  if (sys == V_MPROC || sys == V_MPROC_LOCK) {
    int rc = mproc_value_set_i64(sys == V_MPROC ? val_rlock : val_lock, zero);
    if (rc != 0) fail("mproc_value_set_i64", rc);
  } else {
    (sys == V_PTHREAD ? &P->plain : &P->robust)->count = zero;
  }
  bench_command(CMD_VALUE, sys, 2, n);
  int64_t got;
  if (sys == V_MPROC || sys == V_MPROC_LOCK) {
    int rc = mproc_value_get_i64(sys == V_MPROC ? val_rlock : val_lock, &got);
    if (rc != 0) fail("mproc_value_get_i64", rc);
  } else {
    got = (sys == V_PTHREAD ? &P->plain : &P->robust)->count;
  }
  if (got != 2 * (int64_t)n) {
    fprintf(stderr, "bench-sync: value_contended system %d: final count %lld, "
            "want %lld\n", sys, (long long)got, 2 * (long long)n);
    exit(1);
  }
  double s0 = B->t_start[0] < B->t_start[1] ? B->t_start[0] : B->t_start[1];
  double e0 = B->t_end[0] < B->t_end[1] ? B->t_end[0] : B->t_end[1];
  double e1 = B->t_end[0] > B->t_end[1] ? B->t_end[0] : B->t_end[1];
  *solo_tail = (e1 - e0) / (e1 - s0);
  return 2.0 * (double)n / (e1 - s0) * 1e3; /* per ns -> M/s */
}

static double ping_round(int sys, long n) {
  bench_command(CMD_PING, sys, 2, n);
  return (B->t_end[0] - B->t_start[0]) / (double)n / 1e3; /* us */
}

static void init_mutex(pthread_mutex_t *mu, int robust) {
  pthread_mutexattr_t a;
  int rc = pthread_mutexattr_init(&a);
  if (rc == 0) rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  if (rc == 0 && robust) rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = pthread_mutex_init(mu, &a);
  if (rc != 0) fail("pthread_mutex_init", rc);
  pthread_mutexattr_destroy(&a);
}

int main(void) {
  int is_quick = bench_quick();
  int rounds = is_quick ? 3 : 21;
  long lock_ops = is_quick ? 100000 : 1000000;  /* pairs per round */
  long val_n = is_quick ? 20000 : 300000;       /* increments per worker */
  long ping_n = is_quick ? 1000 : 10000;        /* round trips per round */

  P = bench_map_shared(sizeof *P);
  init_mutex(&P->plain.mu, 0);
  init_mutex(&P->robust.mu, 1);

  /* Every mproc object before the workers start. */
  int rc = mproc_lock_new(&lock_mproc);
  if (rc != 0) fail("mproc_lock_new", rc);
  rc = mproc_value_new(&val_rlock, 'q', NULL, NULL);
  if (rc != 0) fail("mproc_value_new", rc);
  rc = mproc_lock_new(&val_lock_lock);
  if (rc != 0) fail("mproc_lock_new", rc);
  mproc_shared_opts vo = {0, val_lock_lock};
  rc = mproc_value_new(&val_lock, 'q', NULL, &vo);
  if (rc != 0) fail("mproc_value_new (opts.lock)", rc);
  rc = mproc_event_new(&ev1);
  if (rc != 0) fail("mproc_event_new", rc);
  rc = mproc_event_new(&ev2);
  if (rc != 0) fail("mproc_event_new", rc);

  bench_start_workers(2, worker);

  /* ---- lock_uncontended ---- */
  static const char *lnames[NL] = {"mproc", "pthread_mutex", "pthread_robust"};
  double lres[NL][rounds];
  for (int k = 0; k < NL; k++) lock_round(k, lock_ops / 4); /* warm-up */
  for (int r = 0; r < rounds; r++) {
    for (int j = 0; j < NL; j++) {
      int k = bench_alt(r, j, NL);
      lres[k][r] = lock_round(k, lock_ops);
    }
  }

  /* ---- value_contended ---- */
  static const char *vnames[NV] = {"mproc", "pthread_mutex", "pthread_robust",
                                   "mproc_Lock"};
  double vres[NV][rounds], vtail[NV][rounds], dummy;
  int vapart[NV][rounds];
  for (int k = 0; k < NV; k++) value_round(k, val_n / 4, &dummy); /* warm-up */
  for (int r = 0; r < rounds; r++) {
    for (int j = 0; j < NV; j++) {
      int k = bench_alt(r, j, NV);
      vres[k][r] = value_round(k, val_n, &vtail[k][r]);
      vapart[k][r] = bench_apart();
    }
  }

  /* ---- event_pingpong ---- */
  static const char *pnames[NP] = {"mproc", "raw_futex"};
  double pres[NP][rounds];
  int papart[NP][rounds];
  for (int k = 0; k < NP; k++) ping_round(k, ping_n / 10); /* warm-up */
  for (int r = 0; r < rounds; r++) {
    for (int j = 0; j < NP; j++) {
      int k = bench_alt(r, j, NP);
      pres[k][r] = ping_round(k, ping_n);
      papart[k][r] = bench_apart();
    }
  }

  if (bench_stop_workers() != 0) return 1;

  /* ---- results ---- */
  char extra[400], split[200];
  double lmed[NL], vmed[NV], pmed[NP];
  snprintf(extra, sizeof extra, "  (%d rounds x %ld pairs, one process)",
           rounds, lock_ops);
  for (int k = 0; k < NL; k++)
    lmed[k] = bench_summarize("lock_uncontended", lnames[k], "ns/pair",
                              lres[k], rounds, extra);
  for (int k = 0; k < NV; k++) {
    qsort(vtail[k], (size_t)rounds, sizeof(double), cmp_double);
    bench_split_note(split, sizeof split, vres[k], vapart[k], rounds);
    snprintf(extra, sizeof extra,
             "  (%d rounds x 2 processes x %ld; median share of the round "
             "one worker ran alone at the end: %.0f%%%s)",
             rounds, val_n, 100 * quantile(vtail[k], rounds, 0.5), split);
    vmed[k] = bench_summarize("value_contended", vnames[k], "M incr/s",
                              vres[k], rounds, extra);
  }
  for (int k = 0; k < NP; k++) {
    bench_split_note(split, sizeof split, pres[k], papart[k], rounds);
    snprintf(extra, sizeof extra,
             "  (%d rounds x %ld round trips, %d warm%s)", rounds, ping_n,
             WARM, split);
    pmed[k] = bench_summarize("event_pingpong", pnames[k], "us/round trip",
                              pres[k], rounds, extra);
  }
  fprintf(stderr,
          "bench-sync: information, not result rows: pthread_robust = the "
          "pthread mutex made PTHREAD_MUTEX_ROBUST (%.2fx pthread_mutex "
          "uncontended, %.2fx its contended rate); mproc_Lock = a Value "
          "given a plain mproc Lock instead of its own RLock (%.2fx mproc's "
          "contended rate)\n",
          lmed[L_ROBUST] / lmed[L_PTHREAD], vmed[V_ROBUST] / vmed[V_PTHREAD],
          vmed[V_MPROC_LOCK] / vmed[V_MPROC]);

  bench_emit("lock_uncontended", "mproc", lmed[L_MPROC], "ns", "lower");
  bench_emit("lock_uncontended", "pthread_mutex", lmed[L_PTHREAD], "ns",
             "lower");
  bench_emit("value_contended", "mproc", vmed[V_MPROC], "M/s", "higher");
  bench_emit("value_contended", "pthread_mutex", vmed[V_PTHREAD], "M/s",
             "higher");
  bench_emit("event_pingpong", "mproc", pmed[P_MPROC], "us", "lower");
  bench_emit("event_pingpong", "raw_futex", pmed[P_FUTEX], "us", "lower");

  mproc_event_free(ev1);
  mproc_event_free(ev2);
  mproc_value_free(val_lock);
  mproc_lock_free(val_lock_lock);
  mproc_value_free(val_rlock);
  mproc_lock_free(lock_mproc);
  pthread_mutex_destroy(&P->plain.mu);
  pthread_mutex_destroy(&P->robust.mu);
  munmap(P, sizeof *P);
  return fflush(stdout) == 0 ? 0 : 1;
}
