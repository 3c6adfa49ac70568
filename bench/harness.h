/*
 * bench/harness.h - what the C bench programs share.
 *
 * Not a bench program: CMake builds every bench/bench-*.c into its own
 * executable, and each of them includes this header once, after defining
 * BENCH_NAME, the program's name in its messages:
 *
 *   #define BENCH_NAME "bench-sync"
 *   #include "harness.h"
 *
 * Everything here is static (a copy in each program, inlined where the
 * compiler likes; nothing here is called through a pointer in a timed
 * loop), so a program that leaves a piece unused pays nothing for it.
 *
 * What a bench program looks like.  It measures one or more bench IDs, each
 * for mproc and its peers (the "systems": the raw syscall, pthread, a raw
 * ring...).  Its counts shrink when bench_quick() (BENCH_QUICK=1: a smoke
 * run).  The systems of a bench run in alternating rounds, the order
 * reversed every round (bench_alt), so a burst of noise hits all alike;
 * warm-up rounds of every system run first and are not counted; the figure
 * is the MEDIAN over rounds.  Results are checked (final counts, message
 * contents); anything that fails ends the program with a message and exit
 * status 1 (fail), and only that: a slow figure never fails.
 *
 * Output.  stdout: one JSON object a line, one per (bench ID, system)
 * (bench_emit), collected by bench/run.sh into results.jsonl:
 *
 *   {"bench": "event_pingpong", "system": "mproc", "value": 16.67,
 *    "unit": "us", "better": "lower"}
 *
 * (one line; value printed %.6g; better is "lower" or "higher").
 * stderr: details for a reader, never parsed; per (bench ID, system) one
 * line with the spread over rounds (bench_summarize's, with BENCH_ID_WIDTH
 * and BENCH_SYS_WIDTH wide columns, or the program's own):
 *
 *   bench-sync: event_pingpong   mproc          us/round trip: median 16.67
 *     min 16.27  p25 16.47  p75 16.71  max 16.76  (EXTRA)
 *
 * (one line; EXTRA is the program's note: counts, bench_split_note...).
 *
 * Benches in worker processes (bench-sync's two-process benches,
 * bench-queue, bench-pipe).  bench_start_workers(n, worker) maps the
 * control block B (MAP_SHARED) and starts n mproc processes (ids 0 .. n-1),
 * once, before the rounds, after every object they use was made (they
 * inherit it).  Each worker runs bench_serve: it sleeps on a futex until
 * this process hands it a command (bench_command: B->cmd, sys, nwork, n,
 * then B->seq bumped and woken); workers 0 .. nwork-1 meet at a spinning
 * barrier, note their CPU (B->cpu[id][0]), run the program's work(id, cmd)
 * (which times its own part into B->t_start[id] / B->t_end[id] with
 * now_ns, or not), note their CPU again (B->cpu[id][1]); every worker,
 * idle or not, then answers (B->done; the last one wakes this process), so
 * that none can still be reading a command when the next is written.
 * bench_command sleeps until all have answered, so the workers have the
 * machine's CPUs (nothing is pinned), and every second checks that they
 * are alive (a dead worker: the others killed, exit 1).  bench_apart()
 * tells whether workers 0 and 1 ran on two CPUs at both ends of the last
 * round (bench_split_note prints the medians of both kinds of round).
 * bench_stop_workers() tells them to quit, joins them, checks their exit
 * codes (0) and that no mproc child is left.
 */
#ifndef MPROC_BENCH_HARNESS_H
#define MPROC_BENCH_HARNESS_H

#ifndef BENCH_NAME
#error "define BENCH_NAME (the program's name in its messages) first"
#endif
#ifndef BENCH_ID_WIDTH
#define BENCH_ID_WIDTH 16 /* bench_summarize's bench ID column */
#endif
#ifndef BENCH_SYS_WIDTH
#define BENCH_SYS_WIDTH 14 /* bench_summarize's system column */
#endif

#include "mproc.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
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

/* ---- basics ---- */

/* Whether BENCH_QUICK asks for a smoke run (set, not empty, not "0"). */
static inline int bench_quick(void) {
  const char *quick = getenv("BENCH_QUICK");
  return quick != NULL && quick[0] != '\0' && strcmp(quick, "0") != 0;
}

static inline double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* rc: an mproc error (negative) or an errno value (positive). */
static inline void fail(const char *what, int rc) {
  fprintf(stderr, BENCH_NAME "[%d]: %s failed: %s (%d)\n", (int)getpid(),
          what, rc < 0 ? mproc_strerror(rc) : strerror(rc), rc);
  exit(1);
}

/* Keep the compiler from dropping work whose result is never read. */
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")

/* Shared (not private) futex operations: the words are in MAP_SHARED
 * memory used by several processes. */
static inline void futex_wait(_Atomic uint32_t *w, uint32_t val,
                              long timeout_ns) {
  struct timespec ts = {timeout_ns / 1000000000L, timeout_ns % 1000000000L};
  (void)syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val,
                timeout_ns > 0 ? &ts : NULL, NULL, 0);
}
static inline void futex_wake(_Atomic uint32_t *w, int n) {
  (void)syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, n, NULL, NULL, 0);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* One step of a spin-wait: pause, and give the CPU away now and then, so
 * that a spinner whose peer was put on the same CPU lets the peer run
 * instead of burning its whole time slice. */
static inline void spin(unsigned *spins) {
  cpu_relax();
  if (++*spins % 1024 == 0) sched_yield();
}

/* A zeroed MAP_SHARED anonymous mapping of size bytes (exit on failure):
 * shared with the worker processes started after it. */
static inline void *bench_map_shared(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail("mmap", errno);
  return p;
}

/* The system to run j-th (of n) in round r: in order in even rounds,
 * reversed in odd ones. */
static inline int bench_alt(int r, int j, int n) {
  return r % 2 == 0 ? j : n - 1 - j;
}

/* ---- the worker processes ---- */

#define BENCH_MAX_WORKERS 4
#define BENCH_QUIT 0 /* bench_command's quit; the programs' commands are > 0 */

typedef struct bench_ctl {
  _Atomic uint32_t seq; /* futex: bumped for every command */
  char pad0[60];
  _Atomic uint32_t done; /* futex: workers that answered the command */
  char pad1[60];
  _Atomic uint32_t arrive; /* the working workers' start barrier */
  char pad2[60];
  int nworkers;        /* workers started */
  int cmd, sys, nwork; /* the command; workers 0 .. nwork-1 work */
  long n;
  double t_start[BENCH_MAX_WORKERS], t_end[BENCH_MAX_WORKERS];
  int cpu[BENCH_MAX_WORKERS][2]; /* each worker's CPU at a round's start, end */
} bench_ctl;

static bench_ctl *B __attribute__((unused));
static mproc_process *bench_workers[BENCH_MAX_WORKERS] __attribute__((unused));

/* A worker's part of a command: id, B->cmd; B->sys, B->n say the rest. */
typedef void (*bench_work_fn)(int id, int cmd);

static inline void bench_barrier(int n) {
  atomic_fetch_add(&B->arrive, 1);
  unsigned spins = 0;
  while (atomic_load(&B->arrive) < (uint32_t)n) spin(&spins);
}

/* A worker's life (the program's mproc target calls it with its arg):
 * serve commands until told to quit; returns the exit code. */
static inline int bench_serve(const void *arg, size_t len, bench_work_fn work) {
  int id;
  if (len != sizeof id) return 2;
  memcpy(&id, arg, sizeof id);
  uint32_t seen = 0;
  for (;;) {
    uint32_t s;
    while ((s = atomic_load(&B->seq)) == seen) futex_wait(&B->seq, seen, 0);
    seen = s;
    int cmd = B->cmd;
    if (cmd == BENCH_QUIT) return 0;
    if (id < B->nwork) {
      bench_barrier(B->nwork);
      B->cpu[id][0] = sched_getcpu();
      work(id, cmd);
      B->cpu[id][1] = sched_getcpu();
    }
    if (atomic_fetch_add(&B->done, 1) + 1 == (uint32_t)B->nworkers)
      futex_wake(&B->done, 1);
  }
}

/* Map B and start n workers running target (which calls bench_serve),
 * each given its id (an int, 0 .. n-1). */
static inline void bench_start_workers(int n, mproc_target_fn target) {
  if (n < 2 || n > BENCH_MAX_WORKERS) fail("bench_start_workers", EINVAL);
  B = bench_map_shared(sizeof *B);
  B->nworkers = n;
  for (int k = 0; k < n; k++) {
    int rc = mproc_process_new(&bench_workers[k], target, NULL, &k, sizeof k,
                               NULL);
    if (rc != 0) fail("mproc_process_new", rc);
    rc = mproc_process_start(bench_workers[k]);
    if (rc != 0) fail("mproc_process_start", rc);
  }
}

static inline void bench_kill_workers(void) {
  for (int j = 0; j < B->nworkers; j++) {
    if (bench_workers[j] == NULL) continue;
    (void)mproc_process_kill(bench_workers[j]);
    (void)mproc_process_join(bench_workers[j], MPROC_FOREVER);
  }
}

/* Give the workers a command (workers 0 .. nwork-1 work) and sleep until
 * all have answered it; exit if one dies. */
static inline void bench_command(int cmd, int sys, int nwork, long n) {
  B->cmd = cmd;
  B->sys = sys;
  B->nwork = nwork;
  B->n = n;
  atomic_store(&B->done, 0);
  atomic_store(&B->arrive, 0);
  atomic_fetch_add(&B->seq, 1);
  futex_wake(&B->seq, INT_MAX);
  if (cmd == BENCH_QUIT) return;
  uint32_t all = (uint32_t)B->nworkers, d;
  while ((d = atomic_load(&B->done)) < all) {
    futex_wait(&B->done, d, 1000000000L);
    if (atomic_load(&B->done) >= all) break;
    for (int k = 0; k < B->nworkers; k++) {
      if (mproc_process_is_alive(bench_workers[k]) != 1) {
        fprintf(stderr, BENCH_NAME ": worker %d died during a round\n", k);
        bench_kill_workers();
        exit(1);
      }
    }
  }
}

/* Tell the workers to quit and join them; unmaps B.  Returns 0, or 1
 * (after a message) when a worker's exit code is not 0 or an mproc child
 * is left. */
static inline int bench_stop_workers(void) {
  bench_command(BENCH_QUIT, 0, 0, 0);
  for (int k = 0; k < B->nworkers; k++) {
    int rc = mproc_process_join(bench_workers[k], MPROC_FOREVER);
    if (rc != 0) fail("mproc_process_join", rc);
    int code = -1;
    rc = mproc_process_exitcode(bench_workers[k], &code);
    if (rc != 0) fail("mproc_process_exitcode", rc);
    if (code != 0) {
      fprintf(stderr, BENCH_NAME ": worker %d exit code %d, want 0\n", k,
              code);
      return 1;
    }
    rc = mproc_process_free(bench_workers[k]);
    if (rc != 0) fail("mproc_process_free", rc);
    bench_workers[k] = NULL;
  }
  int left = mproc_active_children(NULL, 0);
  if (left != 0) {
    fprintf(stderr, BENCH_NAME ": %d mproc children still running\n", left);
    return 1;
  }
  munmap(B, sizeof *B);
  B = NULL;
  return 0;
}

/* Whether workers 0 and 1 ran on different CPUs at both ends of the last
 * round (the scheduler decides; nothing is pinned). */
static inline int bench_apart(void) {
  return B->cpu[0][0] != B->cpu[1][0] && B->cpu[0][1] != B->cpu[1][1];
}

/* ---- statistics and output ---- */

static inline int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* q-quantile (0..1) of a sorted array, linear interpolation. */
static inline double quantile(const double *v, int n, double q) {
  double pos = q * (n - 1);
  int lo = (int)pos;
  if (lo >= n - 1) return v[n - 1];
  return v[lo] + (v[lo + 1] - v[lo]) * (pos - lo);
}

/* Sorts a copy of the rounds' figures v0; prints the spread line; returns
 * the median. */
static inline double bench_summarize(const char *bench, const char *sys,
                                     const char *unit, const double *v0,
                                     int rounds, const char *extra) {
  double v[rounds];
  memcpy(v, v0, sizeof v);
  qsort(v, (size_t)rounds, sizeof(double), cmp_double);
  double med = quantile(v, rounds, 0.5);
  fprintf(stderr,
          BENCH_NAME ": %-*s %-*s %s: median %.4g  min %.4g  p25 %.4g  "
                     "p75 %.4g  max %.4g%s\n",
          BENCH_ID_WIDTH, bench, BENCH_SYS_WIDTH, sys, unit, med, v[0],
          quantile(v, rounds, 0.25), quantile(v, rounds, 0.75),
          v[rounds - 1], extra);
  return med;
}

/* "; workers on 2 CPUs in K of N rounds (median A), on one CPU or moved
 * in the rest (median B)": the scheduler's placement of workers 0 and 1,
 * round by round (ap[r]: bench_apart() after round r). */
static inline void bench_split_note(char *buf, size_t size, const double *v,
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

/* One result row on stdout. */
static inline void bench_emit(const char *bench, const char *sys, double value,
                              const char *unit, const char *better) {
  printf("{\"bench\": \"%s\", \"system\": \"%s\", \"value\": %.6g, "
         "\"unit\": \"%s\", \"better\": \"%s\"}\n",
         bench, sys, value, unit, better);
}

#endif /* MPROC_BENCH_HARNESS_H */
