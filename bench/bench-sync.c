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
 * Output: one JSON object a line on stdout; details on stderr.
 * BENCH_QUICK=1 shrinks the counts.  Exits non-zero only when something
 * fails (an mproc or pthread call, a worker, a wrong final count).
 */
#include "mproc.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WARM 200 /* untimed round trips before a timed ping-pong */

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void fail(const char *what, int rc) {
  fprintf(stderr, "bench-sync[%d]: %s failed: %s (%d)\n", (int)getpid(), what,
          rc < 0 ? mproc_strerror(rc) : strerror(rc), rc);
  exit(1);
}

/* Shared (not private) futex operations: the words are in MAP_SHARED
 * memory used by several processes. */
static void futex_wait(_Atomic uint32_t *w, uint32_t val, long timeout_ns) {
  struct timespec ts = {timeout_ns / 1000000000L, timeout_ns % 1000000000L};
  (void)syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val,
                timeout_ns > 0 ? &ts : NULL, NULL, 0);
}
static void futex_wake(_Atomic uint32_t *w, int n) {
  (void)syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, n, NULL, NULL, 0);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* ---- the shared control block and the raw peers' state ---- */

typedef struct locked_int { /* a mutex with the counter it protects */
  pthread_mutex_t mu;
  int64_t count;
} __attribute__((aligned(64))) locked_int;

typedef struct futex_word {
  _Atomic uint32_t w;
} __attribute__((aligned(64))) futex_word;

enum { CMD_QUIT = 1, CMD_VALUE, CMD_PING };
enum { V_MPROC, V_PTHREAD, V_ROBUST, V_MPROC_LOCK, NV };
enum { P_MPROC, P_FUTEX, NP };

typedef struct ctl {
  _Atomic uint32_t seq; /* futex: bumped for every command */
  char pad0[60];
  _Atomic uint32_t done; /* futex: workers that finished the command */
  char pad1[60];
  _Atomic uint32_t arrive; /* the workers' start barrier */
  char pad2[60];
  int cmd, sys;
  long n;
  double t_start[2], t_end[2];
  int cpu[2][2]; /* each worker's CPU at the start and the end of a round */
  locked_int plain, robust;   /* pthread_mutex, pthread_robust */
  futex_word f1, f2;          /* raw_futex */
} ctl;

static ctl *C;
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
    pthread_mutex_t *mu = sys == L_PTHREAD ? &C->plain.mu : &C->robust.mu;
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

static void barrier(void) {
  atomic_fetch_add(&C->arrive, 1);
  unsigned spins = 0;
  while (atomic_load(&C->arrive) < 2) {
    cpu_relax();
    if (++spins % 1024 == 0) sched_yield();
  }
}

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
    locked_int *li = sys == V_PTHREAD ? &C->plain : &C->robust;
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
      if (i == WARM) C->t_start[0] = now_ns();
      int rc = mproc_event_set(ev1);
      if (rc != 0) fail("mproc_event_set", rc);
      rc = mproc_event_wait(ev2, MPROC_FOREVER);
      if (rc != 0) fail("mproc_event_wait", rc);
      rc = mproc_event_clear(ev2);
      if (rc != 0) fail("mproc_event_clear", rc);
    }
    C->t_end[0] = now_ns();
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
  _Atomic uint32_t *f1 = &C->f1.w, *f2 = &C->f2.w;
  if (id == 0) { /* A */
    for (long i = 0; i < WARM + n; i++) {
      if (i == WARM) C->t_start[0] = now_ns();
      atomic_store(f1, 1);
      futex_wake(f1, 1);
      while (atomic_load(f2) == 0) futex_wait(f2, 0, 0);
      atomic_store(f2, 0);
    }
    C->t_end[0] = now_ns();
  } else { /* B */
    for (long i = 0; i < WARM + n; i++) {
      while (atomic_load(f1) == 0) futex_wait(f1, 0, 0);
      atomic_store(f1, 0);
      atomic_store(f2, 1);
      futex_wake(f2, 1);
    }
  }
}

static int worker(const void *arg, size_t len) {
  int id;
  if (len != sizeof id) return 2;
  memcpy(&id, arg, sizeof id);
  uint32_t seen = 0;
  for (;;) {
    uint32_t s;
    while ((s = atomic_load(&C->seq)) == seen) futex_wait(&C->seq, seen, 0);
    seen = s;
    int cmd = C->cmd;
    if (cmd == CMD_QUIT) return 0;
    barrier();
    C->cpu[id][0] = sched_getcpu();
    if (cmd == CMD_VALUE) {
      C->t_start[id] = now_ns();
      value_work(C->sys, C->n);
      C->t_end[id] = now_ns();
    } else if (cmd == CMD_PING) {
      if (C->sys == P_MPROC) {
        ping_mproc(id, C->n);
      } else {
        ping_futex(id, C->n);
      }
    }
    C->cpu[id][1] = sched_getcpu();
    if (atomic_fetch_add(&C->done, 1) + 1 == 2) futex_wake(&C->done, 1);
  }
}

static mproc_process *workers[2];

/* Give both workers a command and sleep until both have done it. */
static void command(int cmd, int sys, long n) {
  C->cmd = cmd;
  C->sys = sys;
  C->n = n;
  atomic_store(&C->done, 0);
  atomic_store(&C->arrive, 0);
  atomic_fetch_add(&C->seq, 1);
  futex_wake(&C->seq, INT_MAX);
  if (cmd == CMD_QUIT) return;
  uint32_t d;
  while ((d = atomic_load(&C->done)) < 2) {
    futex_wait(&C->done, d, 1000000000L);
    if (atomic_load(&C->done) >= 2) break;
    for (int k = 0; k < 2; k++) {
      if (mproc_process_is_alive(workers[k]) != 1) {
        fprintf(stderr, "bench-sync: worker %d died during a round\n", k);
        for (int j = 0; j < 2; j++) {
          (void)mproc_process_kill(workers[j]);
          (void)mproc_process_join(workers[j], MPROC_FOREVER);
        }
        exit(1);
      }
    }
  }
}

/* Whether the two workers ran on different CPUs at both ends of the last
 * round (the scheduler decides; nothing is pinned). */
static int apart(void) {
  return C->cpu[0][0] != C->cpu[1][0] && C->cpu[0][1] != C->cpu[1][1];
}

/* value_contended round: M increments/s in total; checks the count. */
static double value_round(int sys, long n, double *solo_tail) {
  int64_t zero = 0;
  if (sys == V_MPROC || sys == V_MPROC_LOCK) {
    int rc = mproc_value_set_i64(sys == V_MPROC ? val_rlock : val_lock, zero);
    if (rc != 0) fail("mproc_value_set_i64", rc);
  } else {
    (sys == V_PTHREAD ? &C->plain : &C->robust)->count = zero;
  }
  command(CMD_VALUE, sys, n);
  int64_t got;
  if (sys == V_MPROC || sys == V_MPROC_LOCK) {
    int rc = mproc_value_get_i64(sys == V_MPROC ? val_rlock : val_lock, &got);
    if (rc != 0) fail("mproc_value_get_i64", rc);
  } else {
    got = (sys == V_PTHREAD ? &C->plain : &C->robust)->count;
  }
  if (got != 2 * (int64_t)n) {
    fprintf(stderr, "bench-sync: value_contended system %d: final count %lld, "
            "want %lld\n", sys, (long long)got, 2 * (long long)n);
    exit(1);
  }
  double s0 = C->t_start[0] < C->t_start[1] ? C->t_start[0] : C->t_start[1];
  double e0 = C->t_end[0] < C->t_end[1] ? C->t_end[0] : C->t_end[1];
  double e1 = C->t_end[0] > C->t_end[1] ? C->t_end[0] : C->t_end[1];
  *solo_tail = (e1 - e0) / (e1 - s0);
  return 2.0 * (double)n / (e1 - s0) * 1e3; /* per ns -> M/s */
}

static double ping_round(int sys, long n) {
  command(CMD_PING, sys, n);
  return (C->t_end[0] - C->t_start[0]) / (double)n / 1e3; /* us */
}

/* ---- statistics and output ---- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double quantile(const double *v, int n, double q) {
  double pos = q * (n - 1);
  int lo = (int)pos;
  if (lo >= n - 1) return v[n - 1];
  return v[lo] + (v[lo + 1] - v[lo]) * (pos - lo);
}

/* Sorts v; prints the spread; returns the median. */
static double summarize(const char *bench, const char *sys, const char *unit,
                        double *v, int rounds, const char *extra) {
  qsort(v, (size_t)rounds, sizeof(double), cmp_double);
  double med = quantile(v, rounds, 0.5);
  fprintf(stderr,
          "bench-sync: %-16s %-14s %s: median %.4g  min %.4g  p25 %.4g  "
          "p75 %.4g  max %.4g%s\n",
          bench, sys, unit, med, v[0], quantile(v, rounds, 0.25),
          quantile(v, rounds, 0.75), v[rounds - 1], extra);
  return med;
}

/* "; on 2 CPUs in K of N rounds (median A), on one CPU in the rest (B)":
 * the scheduler's placement of the two workers, round by round. */
static void split_note(char *buf, size_t size, const double *v,
                       const int *ap, int rounds) {
  double a[rounds], b[rounds];
  int na = 0, nb = 0;
  for (int r = 0; r < rounds; r++) {
    if (ap[r]) {
      a[na++] = v[r];
    } else {
      b[nb++] = v[r];
    }
  }
  qsort(a, (size_t)na, sizeof(double), cmp_double);
  qsort(b, (size_t)nb, sizeof(double), cmp_double);
  snprintf(buf, size,
           "; workers on 2 CPUs in %d of %d rounds (median %.4g), "
           "on one CPU or moved in %d (median %.4g)",
           na, rounds, na ? quantile(a, na, 0.5) : 0.0, nb,
           nb ? quantile(b, nb, 0.5) : 0.0);
}

static void emit(const char *bench, const char *sys, double value,
                 const char *unit, const char *better) {
  printf("{\"bench\": \"%s\", \"system\": \"%s\", \"value\": %.6g, "
         "\"unit\": \"%s\", \"better\": \"%s\"}\n",
         bench, sys, value, unit, better);
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
  const char *quick = getenv("BENCH_QUICK");
  int is_quick = quick != NULL && quick[0] != '\0' && strcmp(quick, "0") != 0;
  int rounds = is_quick ? 3 : 21;
  long lock_ops = is_quick ? 100000 : 1000000;  /* pairs per round */
  long val_n = is_quick ? 20000 : 300000;       /* increments per worker */
  long ping_n = is_quick ? 1000 : 10000;        /* round trips per round */

  C = mmap(NULL, sizeof *C, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
           -1, 0);
  if (C == MAP_FAILED) fail("mmap", errno);
  init_mutex(&C->plain.mu, 0);
  init_mutex(&C->robust.mu, 1);

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

  for (int k = 0; k < 2; k++) {
    rc = mproc_process_new(&workers[k], worker, &k, sizeof k, NULL);
    if (rc != 0) fail("mproc_process_new", rc);
    rc = mproc_process_start(workers[k]);
    if (rc != 0) fail("mproc_process_start", rc);
  }

  /* ---- lock_uncontended ---- */
  static const char *lnames[NL] = {"mproc", "pthread_mutex", "pthread_robust"};
  double lres[NL][rounds];
  for (int k = 0; k < NL; k++) lock_round(k, lock_ops / 4); /* warm-up */
  for (int r = 0; r < rounds; r++) {
    for (int j = 0; j < NL; j++) {
      int k = r % 2 == 0 ? j : NL - 1 - j;
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
      int k = r % 2 == 0 ? j : NV - 1 - j;
      vres[k][r] = value_round(k, val_n, &vtail[k][r]);
      vapart[k][r] = apart();
    }
  }

  /* ---- event_pingpong ---- */
  static const char *pnames[NP] = {"mproc", "raw_futex"};
  double pres[NP][rounds];
  int papart[NP][rounds];
  for (int k = 0; k < NP; k++) ping_round(k, ping_n / 10); /* warm-up */
  for (int r = 0; r < rounds; r++) {
    for (int j = 0; j < NP; j++) {
      int k = r % 2 == 0 ? j : NP - 1 - j;
      pres[k][r] = ping_round(k, ping_n);
      papart[k][r] = apart();
    }
  }

  command(CMD_QUIT, 0, 0);
  for (int k = 0; k < 2; k++) {
    rc = mproc_process_join(workers[k], MPROC_FOREVER);
    if (rc != 0) fail("mproc_process_join", rc);
    int code = -1;
    rc = mproc_process_exitcode(workers[k], &code);
    if (rc != 0) fail("mproc_process_exitcode", rc);
    if (code != 0) {
      fprintf(stderr, "bench-sync: worker %d exit code %d, want 0\n", k, code);
      return 1;
    }
    rc = mproc_process_free(workers[k]);
    if (rc != 0) fail("mproc_process_free", rc);
  }
  int left = mproc_active_children(NULL, 0);
  if (left != 0) {
    fprintf(stderr, "bench-sync: %d mproc children still running\n", left);
    return 1;
  }

  /* ---- results ---- */
  char extra[400], split[200];
  double lmed[NL], vmed[NV], pmed[NP];
  snprintf(extra, sizeof extra, "  (%d rounds x %ld pairs, one process)",
           rounds, lock_ops);
  for (int k = 0; k < NL; k++)
    lmed[k] = summarize("lock_uncontended", lnames[k], "ns/pair", lres[k],
                        rounds, extra);
  for (int k = 0; k < NV; k++) {
    qsort(vtail[k], (size_t)rounds, sizeof(double), cmp_double);
    split_note(split, sizeof split, vres[k], vapart[k], rounds);
    snprintf(extra, sizeof extra,
             "  (%d rounds x 2 processes x %ld; median share of the round "
             "one worker ran alone at the end: %.0f%%%s)",
             rounds, val_n, 100 * quantile(vtail[k], rounds, 0.5), split);
    vmed[k] = summarize("value_contended", vnames[k], "M incr/s", vres[k],
                        rounds, extra);
  }
  for (int k = 0; k < NP; k++) {
    split_note(split, sizeof split, pres[k], papart[k], rounds);
    snprintf(extra, sizeof extra,
             "  (%d rounds x %ld round trips, %d warm%s)", rounds, ping_n,
             WARM, split);
    pmed[k] = summarize("event_pingpong", pnames[k], "us/round trip", pres[k],
                        rounds, extra);
  }
  fprintf(stderr,
          "bench-sync: information, not result rows: pthread_robust = the "
          "pthread mutex made PTHREAD_MUTEX_ROBUST (%.2fx pthread_mutex "
          "uncontended, %.2fx its contended rate); mproc_Lock = a Value "
          "given a plain mproc Lock instead of its own RLock (%.2fx mproc's "
          "contended rate)\n",
          lmed[L_ROBUST] / lmed[L_PTHREAD], vmed[V_ROBUST] / vmed[V_PTHREAD],
          vmed[V_MPROC_LOCK] / vmed[V_MPROC]);

  emit("lock_uncontended", "mproc", lmed[L_MPROC], "ns", "lower");
  emit("lock_uncontended", "pthread_mutex", lmed[L_PTHREAD], "ns", "lower");
  emit("value_contended", "mproc", vmed[V_MPROC], "M/s", "higher");
  emit("value_contended", "pthread_mutex", vmed[V_PTHREAD], "M/s", "higher");
  emit("event_pingpong", "mproc", pmed[P_MPROC], "us", "lower");
  emit("event_pingpong", "raw_futex", pmed[P_FUTEX], "us", "lower");

  mproc_event_free(ev1);
  mproc_event_free(ev2);
  mproc_value_free(val_lock);
  mproc_lock_free(val_lock_lock);
  mproc_value_free(val_rlock);
  mproc_lock_free(lock_mproc);
  pthread_mutex_destroy(&C->plain.mu);
  pthread_mutex_destroy(&C->robust.mu);
  munmap(C, sizeof *C);
  return fflush(stdout) == 0 ? 0 : 1;
}
