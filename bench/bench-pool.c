/*
 * bench/bench-pool.c - the process pool against a hand-written C thread
 * pool, a hand-written process pool over fork and a process-shared
 * mutex+condvar queue, and a raw futex ping-pong.
 *
 * Bench IDs and systems (the python_* and joblib rows come from
 * bench/python/pool.py):
 *
 *   map_chunk1       M tasks/s, higher is better; out[i] = in[i] * in[i]
 *                    over N = 1,000,000 items (int32 in, int64 out), one
 *                    item per task (chunksize 1); every result checked.
 *   map_default      the same with the default chunksize, Python's formula
 *                    ceil(n / (4 * workers)).
 *       mproc             mproc_pool_map(pool, sq, in, n, 4, out, 8,
 *                         {.chunksize = 1 | MPROC_CHUNK_PYTHON}) on a pool
 *                         of mproc_cpu_count() workers made before timing;
 *       c_threadpool      W pthreads and one queue of task records (fn,
 *                         in, out, count) guarded by a mutex and condvars,
 *                         the code a C programmer writes for a thread
 *                         pool: the caller pushes one record per chunk
 *                         (one lock each), a worker pops one (one lock;
 *                         the count of finished tasks is updated under the
 *                         same lock as the next pop) and wakes the caller
 *                         when the last is done; in and out used in place;
 *       raw_pshared_pool  the same code with W forked processes and the
 *                         queue, its PTHREAD_PROCESS_SHARED mutex and
 *                         condvars and the items in one MAP_SHARED mapping;
 *                         the caller copies the input into the mapping and
 *                         the results out of it (mproc's map copies too).
 *   apply_roundtrip  us per round trip, lower is better; one task at a
 *                    time, a 4-byte argument, a 4-byte result (x + 1,
 *                    checked).
 *       mproc             mproc_pool_apply_async + mproc_async_get +
 *                         mproc_async_data + mproc_async_free, on the same
 *                         pool (W workers, as Python's Pool default);
 *       raw_futex         two processes ping-pong the 4 bytes through one
 *                         futex word in a MAP_SHARED page (FUTEX_WAIT /
 *                         FUTEX_WAKE, no spinning): the floor.
 *   efficiency_10us  (serial time / map time) / W, higher is better (1.0
 *   efficiency_1ms   is perfect); a map with the default chunksize over
 *                    items that each burn the CPU for ~10 us / ~1 ms (a
 *                    calibrated chain of multiply-adds, the same count for
 *                    every item); the serial time is the same function
 *                    called in a plain loop in this process, measured in
 *                    the same round as the maps; results checked against
 *                    the serial loop's.  Systems mproc, c_threadpool,
 *                    raw_pshared_pool as above.
 *   worker_uss_kib   KiB, lower is better; private memory (Private_Clean +
 *                    Private_Dirty of /proc/PID/smaps_rollup) of an idle
 *                    mproc worker: at the end, with every other pool and
 *                    child gone, a fresh pool of W workers maps 100,000
 *                    items (default chunksize), sleeps 0.2 s, and the
 *                    figure is the median over its workers (the API has no
 *                    pid accessor: they are this process's children, read
 *                    from every thread's /proc/self/task/TID/children).
 *                    The raw_pshared_pool workers' figure (after the other
 *                    benches) goes to stderr.
 *   pool_start_stop  ms per pool life, lower is better: mproc_pool_new of
 *                    W workers, one mproc_pool_apply of a no-op task, then
 *                    mproc_pool_close + mproc_pool_join + mproc_pool_free; run last, when every other pool and child
 *                    is gone.  mproc_pool_new returns once every worker
 *                    is up (its initializer's verdict, none here), so one
 *                    life is every worker's whole start and end.
 *       mproc             the fork start method (the default context);
 *       mproc_spawn       mproc_pool_opts.context = the "spawn" context;
 *       mproc_forkserver  the "forkserver" context; the server is started
 *                         before the warm-up (not counted) and stopped at
 *                         the end.
 *                    Their peers are python_fork / python_spawn /
 *                    python_forkserver from bench/python/pool_start_stop.py
 *                    (report.py pairs them by method).
 *
 * W = mproc_cpu_count() for every system.  Order of creation: the raw
 * peers' processes are forked first, from the pristine program (no mproc
 * call yet, no thread), then the mproc pool, then the thread pool's
 * threads.  All pools live through the whole program; an idle pool's
 * workers sleep.
 *
 * Method (as the other benches): the systems of a bench run in
 * alternating rounds, the order reversed every round, so a burst of noise
 * hits all alike; warm-up rounds of every system run first and are not
 * counted; the figure is the MEDIAN over rounds.  Efficiency is computed
 * per round (that round's serial time / that round's map time / W), the
 * serial loop taking its turn among the systems.  Stderr shows the spread
 * over rounds, the calibration and the per-item times.
 *
 * Output: one JSON object a line on stdout; details on stderr.
 * BENCH_QUICK=1 shrinks the counts.  Exits non-zero only when something
 * fails (an mproc call, a wrong result, a worker).
 */
#define BENCH_NAME "bench-pool"
#define BENCH_SYS_WIDTH 16
#include "harness.h"

#include "internal.h" /* mproc__forkserver_stop */

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define MAXW 64 /* workers at most, for every system */

/* ---- the work ---- */

static int sq_fn(const void *in, void *out, void *ctx) {
  (void)ctx;
  int32_t x;
  memcpy(&x, in, 4);
  int64_t y = (int64_t)x * x;
  memcpy(out, &y, 8);
  return 0;
}

/* Multiply-adds per burn_fn call: a word in a MAP_SHARED page mapped
 * before any worker exists, so every process and thread sees the value
 * each efficiency bench sets. */
static long *burn_iters;

static inline uint64_t burn(uint64_t x, long k) {
  for (long i = 0; i < k; i++) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    __asm__ volatile("" : "+r"(x)); /* one step per iteration, no shortcut */
  }
  return x;
}

static int burn_fn(const void *in, void *out, void *ctx) {
  (void)ctx;
  uint32_t s;
  memcpy(&s, in, 4);
  uint64_t r = burn(s, *burn_iters);
  memcpy(out, &r, 8);
  return 0;
}

/* ns per multiply-add: the best of a few timed runs. */
static double burn_ns_per_iter(void) {
  double best = 1e9;
  for (int t = 0; t < 5; t++) {
    long k = 2000000;
    double t0 = now_ns();
    uint64_t r = burn((uint64_t)t, k);
    double dt = now_ns() - t0;
    ESCAPE(&r);
    if (dt / (double)k < best) best = dt / (double)k;
  }
  return best;
}

/* ---- the hand-written pool (c_threadpool, raw_pshared_pool) ---- */

typedef struct hp_task {
  mproc_map_fn fn;
  const unsigned char *in;
  unsigned char *out;
  size_t in_size, out_size;
  long count;
} hp_task;

#define HP_QCAP 4096

typedef struct hpool {
  pthread_mutex_t mu;
  pthread_cond_t not_empty, not_full, all_done;
  long head, tail; /* records pushed, popped, ever */
  long done;       /* records finished, ever */
  int idle;        /* workers waiting on not_empty */
  int full_waiting, done_waiting, quit;
  hp_task q[HP_QCAP];
} hpool;

static void hp_init(hpool *h, int pshared) {
  pthread_mutexattr_t ma;
  pthread_condattr_t ca;
  pthread_mutexattr_init(&ma);
  pthread_condattr_init(&ca);
  if (pshared) {
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
  }
  pthread_mutex_init(&h->mu, &ma);
  pthread_cond_init(&h->not_empty, &ca);
  pthread_cond_init(&h->not_full, &ca);
  pthread_cond_init(&h->all_done, &ca);
  pthread_mutexattr_destroy(&ma);
  pthread_condattr_destroy(&ca);
  h->head = h->tail = h->done = 0;
  h->idle = h->full_waiting = h->done_waiting = h->quit = 0;
}

static void hp_worker(hpool *h) {
  long finished = 0;
  pthread_mutex_lock(&h->mu);
  for (;;) {
    if (finished) {
      h->done += finished;
      finished = 0;
      if (h->done == h->head && h->done_waiting)
        pthread_cond_signal(&h->all_done);
    }
    while (h->head == h->tail && !h->quit) {
      h->idle++;
      pthread_cond_wait(&h->not_empty, &h->mu);
      h->idle--;
    }
    if (h->head == h->tail) break; /* quit, nothing left */
    hp_task t = h->q[h->tail % HP_QCAP];
    h->tail++;
    if (h->full_waiting) pthread_cond_signal(&h->not_full);
    pthread_mutex_unlock(&h->mu);
    for (long i = 0; i < t.count; i++)
      (void)t.fn(t.in + (size_t)i * t.in_size, t.out + (size_t)i * t.out_size,
                 NULL);
    finished = 1;
    pthread_mutex_lock(&h->mu);
  }
  pthread_mutex_unlock(&h->mu);
}

/* out[i] = fn(in[i]) for n items in chunks of chunk items (in and out
 * must be reachable by the workers); returns when all are done. */
static void hp_map(hpool *h, mproc_map_fn fn, const void *in, size_t in_size,
                   void *out, size_t out_size, long n, long chunk) {
  for (long i = 0; i < n; i += chunk) {
    hp_task t = {fn, (const unsigned char *)in + (size_t)i * in_size,
                 (unsigned char *)out + (size_t)i * out_size, in_size,
                 out_size, n - i < chunk ? n - i : chunk};
    pthread_mutex_lock(&h->mu);
    while (h->head - h->tail == HP_QCAP) {
      h->full_waiting++;
      pthread_cond_wait(&h->not_full, &h->mu);
      h->full_waiting--;
    }
    h->q[h->head % HP_QCAP] = t;
    h->head++;
    if (h->idle > 0) pthread_cond_signal(&h->not_empty);
    pthread_mutex_unlock(&h->mu);
  }
  pthread_mutex_lock(&h->mu);
  while (h->done != h->head) {
    h->done_waiting = 1;
    pthread_cond_wait(&h->all_done, &h->mu);
  }
  h->done_waiting = 0;
  pthread_mutex_unlock(&h->mu);
}

static void hp_quit(hpool *h) {
  pthread_mutex_lock(&h->mu);
  h->quit = 1;
  pthread_cond_broadcast(&h->not_empty);
  pthread_mutex_unlock(&h->mu);
}

/* c_threadpool */
static hpool TP;
static pthread_t tp_threads[MAXW];

static void *tp_main(void *arg) {
  hp_worker(arg);
  return NULL;
}

/* raw_pshared_pool: the pool and its item area in one MAP_SHARED mapping */
static hpool *RP;
static unsigned char *rp_area; /* inputs, then outputs */
static size_t rp_area_size;
static pid_t rp_pids[MAXW];

static void rp_map(mproc_map_fn fn, const void *in, size_t in_size,
                   void *out, size_t out_size, long n, long chunk) {
  unsigned char *sin = rp_area, *sout = rp_area + (size_t)n * in_size;
  if ((size_t)n * (in_size + out_size) > rp_area_size) fail("rp_map", E2BIG);
  memcpy(sin, in, (size_t)n * in_size);
  hp_map(RP, fn, sin, in_size, sout, out_size, n, chunk);
  memcpy(out, sout, (size_t)n * out_size);
}

/* A forked child that dies with this process (even if it crashes). */
static pid_t fork_child(void) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) fail("fork", errno);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
  }
  return pid;
}

static void wait_child(pid_t pid, const char *what) {
  int st;
  if (waitpid(pid, &st, 0) != pid) fail("waitpid", errno);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "bench-pool: %s child %d ended with status 0x%x\n", what,
            (int)pid, st);
    exit(1);
  }
}

/* ---- raw_futex: the apply round trip's floor ---- */

typedef struct pingpong {
  _Atomic uint32_t turn; /* 0: the caller's, 1: the server's, 2: quit */
  uint32_t val;
} pingpong;

static pingpong *PP;
static pid_t pp_pid;

static void pp_serve(void) {
  for (;;) {
    uint32_t t;
    while ((t = atomic_load(&PP->turn)) == 0) futex_wait(&PP->turn, 0, 0);
    if (t == 2) _exit(0);
    PP->val += 1;
    atomic_store(&PP->turn, 0);
    futex_wake(&PP->turn, 1);
  }
}

static double futex_round(long n) {
  double t0 = now_ns();
  for (long i = 0; i < n; i++) {
    PP->val = (uint32_t)i;
    atomic_store(&PP->turn, 1);
    futex_wake(&PP->turn, 1);
    while (atomic_load(&PP->turn) == 1) futex_wait(&PP->turn, 1, 0);
    if (PP->val != (uint32_t)i + 1) {
      fprintf(stderr, "bench-pool: raw_futex: got %u, want %u\n", PP->val,
              (unsigned)i + 1);
      exit(1);
    }
  }
  return (now_ns() - t0) / (double)n / 1e3;
}

/* ---- mproc ---- */

static mproc_pool *P;

static int echo_task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  uint32_t x;
  if (len != 4) return 1;
  memcpy(&x, arg, 4);
  x += 1;
  return mproc_task_return(t, &x, 4);
}

static double apply_round(long n) {
  double t0 = now_ns();
  for (long i = 0; i < n; i++) {
    uint32_t x = (uint32_t)i, y = 0;
    mproc_async *r = NULL;
    int rc = mproc_pool_apply_async(P, echo_task, NULL, &x, 4, NULL, &r);
    if (rc != 0) fail("mproc_pool_apply_async", rc);
    rc = mproc_async_get(r, MPROC_FOREVER);
    if (rc != 0) fail("mproc_async_get", rc);
    size_t len = 0;
    const void *d = mproc_async_data(r, &len);
    if (d == NULL || len != 4) fail("mproc_async_data", EPROTO);
    memcpy(&y, d, 4);
    if (y != x + 1) {
      fprintf(stderr, "bench-pool: mproc apply: got %u, want %u\n", y, x + 1);
      exit(1);
    }
    mproc_async_free(r);
  }
  return (now_ns() - t0) / (double)n / 1e3;
}

static void mproc_map_run(mproc_map_fn fn, const void *in, size_t in_size,
                          void *out, size_t out_size, long n, long chunk) {
  mproc_map_opts o = {0};
  o.chunksize = chunk;
  mproc_map_error e = {0};
  int rc = mproc_pool_map(P, fn, NULL, in, (size_t)n, in_size, out, out_size,
                          &o, &e);
  if (rc != 0) {
    fprintf(stderr, "bench-pool: mproc_pool_map: item %zu, code %d\n",
            e.index, e.task_code);
    fail("mproc_pool_map", rc);
  }
}

/* ---- the systems of the map benches ---- */

enum { S_MPROC, S_THREAD, S_RAW, S_SERIAL, NS };
static const char *names[NS] = {"mproc", "c_threadpool", "raw_pshared_pool",
                                "serial"};
static int W; /* workers, every system */

/* chunk: 1, or 0 for the default (Python's formula); returns ns. */
static double map_once(int sys, mproc_map_fn fn, const void *in,
                       void *out, long n, long chunk) {
  long pychunk = (n + 4L * W - 1) / (4L * W);
  double t0 = now_ns();
  switch (sys) {
    case S_MPROC:
      mproc_map_run(fn, in, 4, out, 8, n, chunk ? chunk : MPROC_CHUNK_PYTHON);
      break;
    case S_THREAD:
      hp_map(&TP, fn, in, 4, out, 8, n, chunk ? chunk : pychunk);
      break;
    case S_RAW:
      rp_map(fn, in, 4, out, 8, n, chunk ? chunk : pychunk);
      break;
    default:
      for (long i = 0; i < n; i++)
        (void)fn((const char *)in + 4 * i, (char *)out + 8 * i, NULL);
      break;
  }
  return now_ns() - t0;
}

static void check_squares(int sys, const int64_t *out, long n) {
  for (long i = 0; i < n; i++) {
    if (out[i] != (int64_t)i * i) {
      fprintf(stderr, "bench-pool: %s: map: out[%ld] = %lld, want %lld\n",
              names[sys], i, (long long)out[i], (long long)i * i);
      exit(1);
    }
  }
}

/* map_chunk1 (chunk 1) or map_default (chunk 0): M tasks/s medians. */
static void bench_map(const char *id, long chunk, long n, int rounds,
                      double med[3]) {
  int32_t *in = malloc((size_t)n * 4);
  int64_t *out = malloc((size_t)n * 8);
  if (in == NULL || out == NULL) fail("malloc", ENOMEM);
  for (long i = 0; i < n; i++) in[i] = (int32_t)i;
  double res[3][rounds];
  for (int k = 0; k < 3; k++) { /* warm-up */
    memset(out, 0, (size_t)n * 8);
    map_once(k, sq_fn, in, out, n / 4, chunk);
    check_squares(k, out, n / 4);
  }
  for (int r = 0; r < rounds; r++) {
    for (int j = 0; j < 3; j++) {
      int k = bench_alt(r, j, 3);
      memset(out, 0, (size_t)n * 8);
      double ns = map_once(k, sq_fn, in, out, n, chunk);
      check_squares(k, out, n);
      res[k][r] = (double)n / ns * 1e3;
    }
  }
  char extra[160];
  snprintf(extra, sizeof extra, "  (%d rounds of %ld items, chunksize %ld, "
           "%d workers)", rounds, n,
           chunk ? chunk : (n + 4L * W - 1) / (4L * W), W);
  for (int k = 0; k < 3; k++)
    med[k] = bench_summarize(id, names[k], "M tasks/s", res[k], rounds, extra);
  free(in);
  free(out);
}

/* efficiency_*: burn_fn items of target_ns each; per round
 * serial / map / W. */
static void bench_efficiency(const char *id, double target_ns,
                             double ns_per_iter, long n, int rounds,
                             double med[3]) {
  *burn_iters = (long)(target_ns / ns_per_iter);
  uint32_t *in = malloc((size_t)n * 4);
  uint64_t *ref = malloc((size_t)n * 8), *out = malloc((size_t)n * 8);
  if (in == NULL || ref == NULL || out == NULL) fail("malloc", ENOMEM);
  for (long i = 0; i < n; i++) in[i] = (uint32_t)i;
  double t_ser[rounds], eff[3][rounds];
  /* warm-up: each map on a quarter of the items, the serial loop once */
  map_once(S_SERIAL, burn_fn, in, ref, n, 0);
  for (int k = 0; k < 3; k++) {
    memset(out, 0, (size_t)n * 8);
    map_once(k, burn_fn, in, out, n / 4, 0);
    if (memcmp(out, ref, (size_t)(n / 4) * 8) != 0) {
      fprintf(stderr, "bench-pool: %s: %s: wrong results\n", id, names[k]);
      exit(1);
    }
  }
  for (int r = 0; r < rounds; r++) {
    double t[NS];
    for (int j = 0; j < NS; j++) {
      int k = bench_alt(r, j, NS);
      memset(out, 0, (size_t)n * 8);
      t[k] = map_once(k, burn_fn, in, out, n, 0);
      if (memcmp(out, ref, (size_t)n * 8) != 0) {
        fprintf(stderr, "bench-pool: %s: %s: wrong results\n", id, names[k]);
        exit(1);
      }
    }
    t_ser[r] = t[S_SERIAL];
    for (int k = 0; k < 3; k++) eff[k][r] = t[S_SERIAL] / t[k] / W;
  }
  double s[rounds];
  memcpy(s, t_ser, sizeof s);
  qsort(s, (size_t)rounds, sizeof(double), cmp_double);
  double per_item = quantile(s, rounds, 0.5) / (double)n / 1e3;
  char extra[200];
  snprintf(extra, sizeof extra, "  (%d rounds of %ld items of %.4g us "
           "(serial, median), chunksize %ld, %d workers)", rounds, n, per_item,
           (n + 4L * W - 1) / (4L * W), W);
  for (int k = 0; k < 3; k++)
    med[k] = bench_summarize(id, names[k], "efficiency", eff[k], rounds,
                             extra);
  free(in);
  free(ref);
  free(out);
}

/* ---- worker_uss_kib ---- */

/* Private_Clean + Private_Dirty of pid in KiB, or -1. */
static long uss_kib(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  long total = 0, v;
  int seen = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    if (sscanf(line, "Private_Clean: %ld kB", &v) == 1 ||
        sscanf(line, "Private_Dirty: %ld kB", &v) == 1) {
      total += v;
      seen++;
    }
  }
  fclose(f);
  return seen == 2 ? total : -1;
}

/* This process's children (every thread's), up to max; returns the count. */
static int children(pid_t *out, int max) {
  int n = 0;
  DIR *d = opendir("/proc/self/task");
  if (d == NULL) fail("opendir /proc/self/task", errno);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[300];
    snprintf(path, sizeof path, "/proc/self/task/%s/children", e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL) continue;
    int pid;
    while (fscanf(f, "%d", &pid) == 1) {
      int dup = 0;
      for (int i = 0; i < n; i++) dup |= out[i] == pid;
      if (!dup && n < max) out[n++] = pid;
    }
    fclose(f);
  }
  closedir(d);
  return n;
}

static double median_of(const double *v0, int n) {
  double v[n];
  memcpy(v, v0, sizeof v);
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  return quantile(v, n, 0.5);
}

/* The median USS of the raw_pshared_pool's workers, after the benches
 * (for stderr). */
static double raw_uss(void) {
  double v[MAXW];
  int n = 0;
  for (int k = 0; k < W; k++) {
    long kib = uss_kib(rp_pids[k]);
    if (kib >= 0) v[n++] = (double)kib;
  }
  return n ? median_of(v, n) : 0.0;
}

/* worker_uss_kib: a fresh pool of W workers (the other pools and the raw
 * peers are gone: every child of this process is one of its workers), a
 * map of n items (default chunksize), then the median USS of its idle
 * workers. */
static double bench_uss(long n, double raw_kib) {
  mproc_pool *p = NULL;
  mproc_pool_opts po = {0};
  po.processes = W;
  int rc = mproc_pool_new(&p, &po);
  if (rc != 0) fail("mproc_pool_new", rc);
  int32_t *in = malloc((size_t)n * 4);
  int64_t *out = malloc((size_t)n * 8);
  if (in == NULL || out == NULL) fail("malloc", ENOMEM);
  for (long i = 0; i < n; i++) in[i] = (int32_t)i;
  mproc_map_opts o = {0};
  rc = mproc_pool_map(p, sq_fn, NULL, in, (size_t)n, 4, out, 8, &o, NULL);
  if (rc != 0) fail("mproc_pool_map", rc);
  check_squares(S_MPROC, out, n);
  free(in);
  free(out);
  usleep(200000); /* idle */
  pid_t kids[4 * MAXW + 8];
  int nk = children(kids, 4 * MAXW + 8);
  double v[4 * MAXW + 8];
  int nv = 0;
  for (int i = 0; i < nk; i++) {
    long kib = uss_kib(kids[i]);
    if (kib >= 0) v[nv++] = (double)kib;
  }
  if (nv != W) {
    fprintf(stderr, "bench-pool: worker_uss_kib: read %d of %d children, "
            "want %d workers\n", nv, nk, W);
    if (nv == 0) exit(1);
  }
  qsort(v, (size_t)nv, sizeof(double), cmp_double);
  double med = quantile(v, nv, 0.5);
  fprintf(stderr, "bench-pool: %-16s %-16s KiB: median %.4g  min %.4g  max "
          "%.4g  (%d idle workers of a fresh pool after a map of %ld items; "
          "the raw_pshared_pool workers' after the benches above: median "
          "%.4g KiB, not a result row)\n",
          "worker_uss_kib", "mproc", med, v[0], v[nv - 1], nv, n, raw_kib);
  rc = mproc_pool_close(p);
  if (rc != 0) fail("mproc_pool_close", rc);
  rc = mproc_pool_join(p, 10.0);
  if (rc != 0) fail("mproc_pool_join", rc);
  rc = mproc_pool_free(p);
  if (rc != 0) fail("mproc_pool_free", rc);
  return med;
}

/* ---- pool_start_stop ---- */

static int pss_noop(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)t, (void)arg, (void)len, (void)ctx;
  return 0;
}
enum { PSS_FORK, PSS_SPAWN, PSS_FORKSERVER, PSS_N };
static const char *pss_names[PSS_N] = {"mproc", "mproc_spawn",
                                       "mproc_forkserver"};
static const char *pss_methods[PSS_N] = {"fork", "spawn", "forkserver"};

/* ops pool lives with context c; returns ms per life and adds the time
 * of mproc_pool_new alone to *t_new. */
static double pss_round(const mproc_context *c, int ops, double *t_new) {
  double t0 = now_ns();
  for (int i = 0; i < ops; i++) {
    mproc_pool *p = NULL;
    mproc_pool_opts po = {0};
    po.processes = mproc_cpu_count();
    po.context = c;
    double a = now_ns();
    int rc = mproc_pool_new(&p, &po);
    if (rc != 0) fail("mproc_pool_new", rc);
    *t_new += now_ns() - a;
    void *res = NULL;
    size_t rlen = 0;
    rc = mproc_pool_apply(p, pss_noop, NULL, NULL, 0, &res, &rlen);
    if (rc != 0) fail("mproc_pool_apply", rc);
    free(res);
    rc = mproc_pool_close(p);
    if (rc != 0) fail("mproc_pool_close", rc);
    rc = mproc_pool_join(p, 30.0);
    if (rc != 0) fail("mproc_pool_join", rc);
    rc = mproc_pool_free(p);
    if (rc != 0) fail("mproc_pool_free", rc);
  }
  return (now_ns() - t0) / 1e6 / ops;
}

/* pool_start_stop: the three methods in alternating rounds, the order
 * reversed every round; spawn, an exec per worker, runs fewer lives a
 * round.  out[k]: the median ms per life of pss_names[k]. */
static void bench_pool_start_stop(int rounds, int ops, double out[PSS_N]) {
  mproc_context *ctx[PSS_N];
  for (int k = 0; k < PSS_N; k++) {
    int rc = mproc_get_context(&ctx[k], pss_methods[k]);
    if (rc != 0) fail("mproc_get_context", rc);
  }
  int kops[PSS_N] = {ops, ops / 4 > 0 ? ops / 4 : 1, ops};
  double t0 = now_ns();
  int rc = mproc_forkserver_start();
  if (rc != 0) fail("mproc_forkserver_start", rc);
  double fs_ms = (now_ns() - t0) / 1e6;
  double t_new[PSS_N] = {0}, warm = 0;
  for (int k = 0; k < PSS_N; k++) pss_round(ctx[k], 2, &warm);
  double v[PSS_N][rounds];
  for (int r = 0; r < rounds; r++) {
    for (int j = 0; j < PSS_N; j++) {
      int k = bench_alt(r, j, PSS_N);
      v[k][r] = pss_round(ctx[k], kops[k], &t_new[k]);
    }
  }
  mproc__forkserver_stop(); /* joins the server */
  for (int k = 0; k < PSS_N; k++) {
    char extra[160];
    snprintf(extra, sizeof extra,
             "  (%d rounds of %d lives of a pool of %d workers; "
             "mproc_pool_new alone %.4g ms)",
             rounds, kops[k], mproc_cpu_count(),
             t_new[k] / 1e6 / ((double)rounds * kops[k]));
    out[k] = bench_summarize("pool_start_stop", pss_names[k], "ms/life",
                             v[k], rounds, extra);
  }
  fprintf(stderr, "bench-pool: pool_start_stop: the forkserver started "
          "before the warm-up in %.3f ms (not counted); this process's "
          "private memory (what a fork start copies the page tables of): "
          "%ld KiB\n", fs_ms, uss_kib(getpid()));
}

/* ---- main ---- */

int main(void) {
  int is_quick = bench_quick();
  W = mproc_cpu_count();
  if (W < 1) W = 1;
  if (W > MAXW) W = MAXW;

  /* Calibrate the burn before anything is forked. */
  burn_iters = bench_map_shared(sizeof *burn_iters);
  double ns_per_iter = burn_ns_per_iter();

  long map1_n = is_quick ? 100000 : 1000000;
  long mapd_n = is_quick ? 100000 : 1000000;
  int map1_rounds = is_quick ? 3 : 7, mapd_rounds = is_quick ? 3 : 11;
  long apply_n = is_quick ? 1000 : 10000;
  int apply_rounds = is_quick ? 3 : 11;
  long e10_n = is_quick ? 10000 : 100000, e1m_n = is_quick ? 100 : 1000;
  int eff_rounds = is_quick ? 3 : 5;
  int pss_rounds = is_quick ? 3 : 21, pss_ops = is_quick ? 4 : 8;

  /* raw peers first, from the pristine program: the futex server and the
   * process pool (its mapping: the pool, then room for the items). */
  PP = bench_map_shared(sizeof *PP);
  pp_pid = fork_child();
  if (pp_pid == 0) pp_serve();
  long most = map1_n > mapd_n ? map1_n : mapd_n;
  if (e10_n > most) most = e10_n;
  rp_area_size = (size_t)most * 12;
  RP = bench_map_shared(sizeof *RP + rp_area_size);
  rp_area = (unsigned char *)(RP + 1);
  hp_init(RP, 1);
  for (int k = 0; k < W; k++) {
    rp_pids[k] = fork_child();
    if (rp_pids[k] == 0) {
      hp_worker(RP);
      _exit(0);
    }
  }
  mproc_pool_opts po = {0};
  po.processes = W;
  int rc = mproc_pool_new(&P, &po);
  if (rc != 0) fail("mproc_pool_new", rc);

  hp_init(&TP, 0);
  for (int k = 0; k < W; k++) {
    rc = pthread_create(&tp_threads[k], NULL, tp_main, &TP);
    if (rc != 0) fail("pthread_create", rc);
  }
  fprintf(stderr, "bench-pool: %d workers for every system; burn: %.3g ns "
          "per step\n", W, ns_per_iter);

  double m1[3], md[3], ap[2], e10[3], e1m[3];
  bench_map("map_chunk1", 1, map1_n, map1_rounds, m1);
  bench_map("map_default", 0, mapd_n, mapd_rounds, md);

  /* apply_roundtrip: mproc, raw_futex alternating */
  double ares[2][apply_rounds];
  apply_round(apply_n / 4);
  futex_round(apply_n / 4);
  for (int r = 0; r < apply_rounds; r++) {
    for (int j = 0; j < 2; j++) {
      int k = bench_alt(r, j, 2);
      ares[k][r] = k == 0 ? apply_round(apply_n) : futex_round(apply_n);
    }
  }
  char extra[120];
  snprintf(extra, sizeof extra, "  (%d rounds of %ld round trips)",
           apply_rounds, apply_n);
  ap[0] = bench_summarize("apply_roundtrip", "mproc", "us/round trip",
                          ares[0], apply_rounds, extra);
  ap[1] = bench_summarize("apply_roundtrip", "raw_futex", "us/round trip",
                          ares[1], apply_rounds, extra);

  bench_efficiency("efficiency_10us", 10e3, ns_per_iter, e10_n, eff_rounds,
                   e10);
  bench_efficiency("efficiency_1ms", 1e6, ns_per_iter, e1m_n, eff_rounds,
                   e1m);

  double rp_kib = raw_uss();

  /* Tear down: every pool and child joined. */
  hp_quit(&TP);
  for (int k = 0; k < W; k++) pthread_join(tp_threads[k], NULL);
  hp_quit(RP);
  for (int k = 0; k < W; k++) wait_child(rp_pids[k], "raw_pshared_pool");
  atomic_store(&PP->turn, 2);
  futex_wake(&PP->turn, 1);
  wait_child(pp_pid, "raw_futex");
  rc = mproc_pool_close(P);
  if (rc != 0) fail("mproc_pool_close", rc);
  rc = mproc_pool_join(P, 10.0);
  if (rc != 0) fail("mproc_pool_join", rc);
  rc = mproc_pool_free(P);
  if (rc != 0) fail("mproc_pool_free", rc);
  double uss = bench_uss(100000, rp_kib);
  double pss[PSS_N];
  bench_pool_start_stop(pss_rounds, pss_ops, pss);
  int left = mproc_active_children(NULL, 0);
  if (left != 0) {
    fprintf(stderr, "bench-pool: %d mproc children still running\n", left);
    return 1;
  }

  for (int k = 0; k < 3; k++)
    bench_emit("map_chunk1", names[k], m1[k], "M/s", "higher");
  for (int k = 0; k < 3; k++)
    bench_emit("map_default", names[k], md[k], "M/s", "higher");
  bench_emit("apply_roundtrip", "mproc", ap[0], "us", "lower");
  bench_emit("apply_roundtrip", "raw_futex", ap[1], "us", "lower");
  for (int k = 0; k < 3; k++)
    bench_emit("efficiency_10us", names[k], e10[k], "x", "higher");
  for (int k = 0; k < 3; k++)
    bench_emit("efficiency_1ms", names[k], e1m[k], "x", "higher");
  bench_emit("worker_uss_kib", "mproc", uss, "KiB", "lower");
  for (int k = 0; k < PSS_N; k++)
    bench_emit("pool_start_stop", pss_names[k], pss[k], "ms", "lower");
  return 0;
}
