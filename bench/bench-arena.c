/*
 * bench/bench-arena.c - shared-arena alloc/free against malloc/free.
 *
 * Bench IDs (ns per alloc+free pair, lower is better), systems mproc
 * (mproc_shm_alloc / mproc_shm_free) and malloc (malloc / free):
 *
 *   arena_alloc_free       a small-size mix: a working set of LIVE blocks
 *                          (sizes 16..512, uniform), each step frees one
 *                          random live block and allocates a new one of a
 *                          random size in its place (random replace);
 *   arena_alloc_free_pair  allocate a block and free it at once, sizes
 *                          16..512 from the same sequence (the allocator's
 *                          fastest path).
 *
 * Both systems replay the SAME pre-generated sequence (fixed-seed PRNG, made
 * before timing so its cost is not measured) and write one byte into every
 * block so the pages are real.  Rounds alternate between the systems in ABBA
 * order so both see the same noise; the figure is the MEDIAN over rounds of
 * (round time / steps).  One untimed round per system runs first (the first
 * mproc_shm_alloc creates the arena; first touches fault pages in).
 *
 * Single process, single thread.  What the comparison means: glibc malloc
 * serves small blocks from per-thread caches (tcache) without a lock and
 * shares nothing across processes; every mproc call takes the arena's
 * robust process-shared lock, and its blocks are visible at the same
 * address in every process.
 *
 * Output (bench/harness.h has the common parts): one JSON object a line
 * on stdout; details on stderr.
 * BENCH_QUICK=1 shrinks the counts.  Exits non-zero only when an
 * allocation fails.
 */
#define BENCH_NAME "bench-arena"
#include "harness.h"

#define LIVE 1000
#define MIN_SIZE 16
#define MAX_SIZE 512

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}

/* ---- the two allocators behind one interface ---- */

static void *a_mproc(size_t n) {
  void *p = NULL;
  int rc = mproc_shm_alloc(&p, n);
  if (rc != 0) {
    fprintf(stderr, "bench-arena: mproc_shm_alloc(%zu) failed: %s\n", n,
            mproc_strerror(rc));
    exit(1);
  }
  return p;
}
static void f_mproc(void *p) {
  int rc = mproc_shm_free(p);
  if (rc != 0) {
    fprintf(stderr, "bench-arena: mproc_shm_free failed: %s\n",
            mproc_strerror(rc));
    exit(1);
  }
}
static void *a_malloc(size_t n) {
  void *p = malloc(n);
  if (p == NULL) {
    fprintf(stderr, "bench-arena: malloc(%zu) failed\n", n);
    exit(1);
  }
  return p;
}
static void f_malloc(void *p) { free(p); }

typedef struct sys {
  const char *name;
  void *(*alloc)(size_t);
  void (*release)(void *);
} sys;

static const sys SYSTEMS[2] = {{"mproc", a_mproc, f_mproc},
                               {"malloc", a_malloc, f_malloc}};

/* The pre-generated sequence, shared by both systems. */
static uint32_t *seq_slot;  /* which live block to replace */
static uint32_t *seq_size;  /* size of the new block */
static uint32_t init_size[LIVE];

/* Random replace over a working set; returns ns per alloc+free pair. */
static double run_mix(const sys *s, long steps) {
  static void *live[LIVE];
  for (int i = 0; i < LIVE; i++) {
    live[i] = s->alloc(init_size[i]);
    *(volatile char *)live[i] = (char)i;
  }
  double t0 = now_ns();
  for (long k = 0; k < steps; k++) {
    uint32_t slot = seq_slot[k];
    s->release(live[slot]);
    char *p = s->alloc(seq_size[k]);
    p[0] = (char)k;
    ESCAPE(p);
    live[slot] = p;
  }
  double t = now_ns() - t0;
  for (int i = 0; i < LIVE; i++) s->release(live[i]);
  return t / (double)steps;
}

/* Allocate and free at once; returns ns per alloc+free pair. */
static double run_pair(const sys *s, long steps) {
  double t0 = now_ns();
  for (long k = 0; k < steps; k++) {
    char *p = s->alloc(seq_size[k]);
    p[0] = (char)k;
    ESCAPE(p);
    s->release(p);
  }
  return (now_ns() - t0) / (double)steps;
}

typedef double (*workload_fn)(const sys *, long);

static void bench(const char *id, const char *what, workload_fn w, int rounds,
                  long steps) {
  double res[2][rounds];
  w(&SYSTEMS[0], steps); /* warm-up, not counted */
  w(&SYSTEMS[1], steps);
  for (int r = 0; r < rounds; r++) {
    int a = (r % 2 == 0) ? 0 : 1; /* ABBA */
    res[a][r] = w(&SYSTEMS[a], steps);
    res[1 - a][r] = w(&SYSTEMS[1 - a], steps);
  }
  for (int k = 0; k < 2; k++) {
    qsort(res[k], (size_t)rounds, sizeof(double), cmp_double);
    fprintf(stderr,
            "bench-arena: %-21s %-6s ns/pair: median %.1f  min %.1f  "
            "max %.1f  (%s; %d rounds x %ld steps)\n",
            id, SYSTEMS[k].name, quantile(res[k], rounds, 0.5), res[k][0],
            res[k][rounds - 1], what, rounds, steps);
  }
  for (int k = 0; k < 2; k++) {
    printf("{\"bench\": \"%s\", \"system\": \"%s\", \"value\": %.3f, "
           "\"unit\": \"ns\", \"better\": \"lower\"}\n",
           id, SYSTEMS[k].name, quantile(res[k], rounds, 0.5));
  }
}

int main(void) {
  int is_quick = bench_quick();
  int rounds = is_quick ? 3 : 21;
  long steps = is_quick ? 20000 : 200000;

  seq_slot = malloc((size_t)steps * sizeof *seq_slot);
  seq_size = malloc((size_t)steps * sizeof *seq_size);
  if (seq_slot == NULL || seq_size == NULL) {
    fprintf(stderr, "bench-arena: out of memory\n");
    return 1;
  }
  for (int i = 0; i < LIVE; i++)
    init_size[i] = MIN_SIZE + (uint32_t)(rng() % (MAX_SIZE - MIN_SIZE + 1));
  for (long k = 0; k < steps; k++) {
    seq_slot[k] = (uint32_t)(rng() % LIVE);
    seq_size[k] = MIN_SIZE + (uint32_t)(rng() % (MAX_SIZE - MIN_SIZE + 1));
  }

  bench("arena_alloc_free", "random replace, 1000 live blocks, 16..512 B",
        run_mix, rounds, steps);
  bench("arena_alloc_free_pair", "alloc then free at once, 16..512 B",
        run_pair, rounds, steps);

  free(seq_slot);
  free(seq_size);
  return fflush(stdout) == 0 ? 0 : 1;
}
