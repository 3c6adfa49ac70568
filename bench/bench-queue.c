/*
 * bench/bench-queue.c - the Queue against a raw shared-memory ring and
 * memcpy.
 *
 * Bench IDs and systems (the python_* rows come from bench/python/queue.py):
 *
 *   queue_small       M messages/s, higher is better; 1 producer process ->
 *                     1 consumer process, N messages of 8 bytes (the
 *                     message number); the consumer checks every message
 *                     (length, and that it is the next number: order).
 *       mproc          mproc_queue_put(q, &v, 8, MPROC_FOREVER) /
 *                      mproc_queue_get_into(q, &v, 8, &len, MPROC_FOREVER)
 *                      on a Queue (mproc_queue_new, maxsize 0, default
 *                      capacity: a 4 MiB ring);
 *       raw_ring       a lock-free single-producer single-consumer byte
 *                      ring in a MAP_SHARED anonymous mapping, the same
 *                      record format as the queue's (an 8-byte length, the
 *                      payload padded to 8, wrapping at the ring's end) and
 *                      the same 4 MiB capacity; each side caches the
 *                      other's position and re-reads it only when the ring
 *                      looks full or empty, then spins (pause, and a
 *                      sched_yield every 1024 spins in case both ends share
 *                      a CPU).  No locks, no futex, no validation: the speed
 *                      ceiling for passing bytes through shared memory
 *                      between two processes, not a usable queue (one
 *                      producer, one consumer, nobody may die, a waiter
 *                      burns its CPU).
 *   queue_1mib        MB/s (10^6 bytes) of payload, higher is better; the
 *                     same with N messages of 1 MiB, each stamped with its
 *                     number in its first and last 8 bytes (checked by the
 *                     consumer, with the length); the consumer receives
 *                     into its own 1 MiB buffer.
 *       mproc, raw_ring  as above;
 *       memcpy         one thread of this process copying a 1 MiB buffer
 *                      into the four 1 MiB slots of a 4 MiB area in turn
 *                      (MB/s of copies).  A message through either queue
 *                      costs two such copies (into the ring, out of it),
 *                      made by two processes at once.
 *   queue_mpmc_small  M messages/s in total, higher is better; 2 producers
 *                     -> 2 consumers on one mproc Queue (system mproc);
 *                     producer p puts N/2 values p << 40 | seq, each
 *                     consumer gets exactly N/2 (so all N arrive) and
 *                     checks that the messages of each producer come in
 *                     order; the count and the sum over both consumers are
 *                     checked at the end.
 *
 * Method (as bench/bench-sync.c): the workers are mproc processes started
 * once, before the rounds, with every object they use (the queue, the
 * ring's mapping) created before them; for each round this process hands
 * the work to them and sleeps on a futex until all are done, so the
 * workers have the machine's CPUs (nothing is pinned).  The workers of a
 * round meet at a spinning barrier and time their own part with
 * CLOCK_MONOTONIC; a round's time is last end - first start (producer's
 * first put to consumer's last get).  The raw ring's timed loop calls no
 * mproc function.  The systems of a bench run in alternating rounds, the
 * order reversed every round, so a burst of noise hits all alike; the
 * figure is the MEDIAN over rounds.  Warm-up rounds of every system run
 * first and are not counted (they also fault in the rings' pages).
 *
 * Printed on stderr for information (not result rows): the spread over
 * rounds; for the 1 -> 1 benches, in how many rounds the two workers ran
 * on two CPUs (sched_getcpu at the round's start and end) and the median
 * of those rounds and of the others (a spinning ring whose two ends share
 * one CPU crawls, and a queue's futex wakeups are far cheaper on one CPU).
 *
 * The workers, the statistics and the output come from bench/harness.h.
 * Output: one JSON object a line on stdout; details on stderr.
 * BENCH_QUICK=1 shrinks the counts.  Exits non-zero only when something
 * fails (an mproc call, a worker, a wrong message, count or sum).
 */
#define BENCH_NAME "bench-queue"
#define BENCH_SYS_WIDTH 8 /* the stderr lines' system column */
#include "harness.h"

#define NWORKERS 4                           /* 2 for the 1 -> 1 benches */
#define RING_CAP MPROC_QUEUE_DEFAULT_CAPACITY /* 4 MiB, as the queue's */
#define RING_MASK (RING_CAP - 1)
#define BIG ((size_t)1 << 20) /* queue_1mib's message size */
#define TAG_SHIFT 40          /* queue_mpmc_small: producer << 40 | seq */

static void wrong(const char *what, long i, uint64_t got, uint64_t want) {
  fprintf(stderr, "bench-queue[%d]: %s: message %ld: got %llu, want %llu\n",
          (int)getpid(), what, i, (unsigned long long)got,
          (unsigned long long)want);
  exit(1);
}

/* ---- the raw SPSC ring (the raw_ring peer) ---- */

typedef struct raw_ring {
  _Atomic uint64_t head; /* bytes published by the producer, ever */
  char pad0[56];
  _Atomic uint64_t tail; /* bytes consumed by the consumer, ever */
  char pad1[56];
  unsigned char data[]; /* RING_CAP bytes */
} raw_ring;

static raw_ring *R;

/* The producer's and the consumer's private views: each side owns one
 * position and caches the other's, re-reading it only when the cached
 * value says full (or empty). */
static uint64_t ring_head, ring_tail_seen; /* producer */
static uint64_t ring_tail, ring_head_seen; /* consumer */

static inline void ring_put(const void *buf, size_t len) {
  uint64_t rec = 8 + ((len + 7) & ~(uint64_t)7);
  uint64_t h = ring_head;
  if (h + rec - ring_tail_seen > RING_CAP) {
    unsigned spins = 0;
    while (h + rec -
               (ring_tail_seen =
                    atomic_load_explicit(&R->tail, memory_order_acquire)) >
           RING_CAP)
      spin(&spins);
  }
  size_t off = (size_t)(h & RING_MASK); /* 8-aligned: the length never wraps */
  uint64_t n = len;
  memcpy(R->data + off, &n, 8);
  off = (off + 8) & RING_MASK;
  size_t first = len < RING_CAP - off ? len : RING_CAP - off;
  memcpy(R->data + off, buf, first);
  memcpy(R->data, (const unsigned char *)buf + first, len - first);
  ring_head = h + rec;
  atomic_store_explicit(&R->head, h + rec, memory_order_release);
}

/* Returns the message's length; a message longer than cap is a bug of
 * this bench (exit). */
static inline size_t ring_get(void *buf, size_t cap) {
  uint64_t t = ring_tail;
  if (t == ring_head_seen) {
    unsigned spins = 0;
    while ((ring_head_seen = atomic_load_explicit(
                &R->head, memory_order_acquire)) == t)
      spin(&spins);
  }
  size_t off = (size_t)(t & RING_MASK);
  uint64_t n;
  memcpy(&n, R->data + off, 8);
  if (n > cap) wrong("raw_ring: message longer than the buffer", -1, n, cap);
  off = (off + 8) & RING_MASK;
  size_t first = n < RING_CAP - off ? (size_t)n : RING_CAP - off;
  memcpy(buf, R->data + off, first);
  memcpy((unsigned char *)buf + first, R->data, (size_t)n - first);
  ring_tail = t + 8 + ((n + 7) & ~(uint64_t)7);
  atomic_store_explicit(&R->tail, ring_tail, memory_order_release);
  return (size_t)n;
}

/* ---- the workers' commands and this bench's shared words ---- */

enum { CMD_SPSC = 1, CMD_MPMC };
enum { S_MPROC, S_RING, S_MEMCPY, NS };

typedef struct shared {
  int big;         /* CMD_SPSC: 1 MiB messages (queue_1mib), or 8 B */
  uint64_t sum[2]; /* queue_mpmc_small: each consumer's sum, count */
  long count[2];
} shared;

static shared *C;
static mproc_queue *Q;
static unsigned char *src_buf, *dst_buf; /* each worker's 1 MiB buffers */

static void stamp(unsigned char *buf, uint64_t v) {
  memcpy(buf, &v, 8);
  memcpy(buf + BIG - 8, &v, 8);
}

static void check_stamp(const char *who, const unsigned char *buf, size_t len,
                        long i) {
  uint64_t a, b;
  if (len != BIG) wrong(who, i, len, BIG);
  memcpy(&a, buf, 8);
  memcpy(&b, buf + BIG - 8, 8);
  if (a != (uint64_t)i) wrong(who, i, a, (uint64_t)i);
  if (b != (uint64_t)i) wrong(who, i, b, (uint64_t)i);
}

static void mproc_put(const void *buf, size_t len) {
  int rc = mproc_queue_put(Q, buf, len, MPROC_FOREVER);
  if (rc != 0) fail("mproc_queue_put", rc);
}

static size_t mproc_get(void *buf, size_t cap) {
  size_t len = 0;
  int rc = mproc_queue_get_into(Q, buf, cap, &len, MPROC_FOREVER);
  if (rc != 0) fail("mproc_queue_get_into", rc);
  return len;
}

/* queue_small / queue_1mib: worker 0 produces, worker 1 consumes. */
static void spsc_work(int id, int sys, int big, long n) {
  if (id == 0) {
    if (sys == S_RING) {
      ring_head = atomic_load(&R->head);
      ring_tail_seen = atomic_load(&R->tail);
    }
    for (long i = 0; i < n; i++) {
      uint64_t v = (uint64_t)i;
      const void *buf = &v;
      size_t len = 8;
      if (big) {
        stamp(src_buf, v);
        buf = src_buf;
        len = BIG;
      }
      if (sys == S_RING) {
        ring_put(buf, len);
      } else {
        mproc_put(buf, len);
      }
    }
  } else {
    if (sys == S_RING) {
      ring_tail = atomic_load(&R->tail);
      ring_head_seen = ring_tail;
    }
    const char *who = sys == S_RING ? "raw_ring" : "mproc";
    for (long i = 0; i < n; i++) {
      if (big) {
        size_t len = sys == S_RING ? ring_get(dst_buf, BIG)
                                   : mproc_get(dst_buf, BIG);
        check_stamp(who, dst_buf, len, i);
      } else {
        uint64_t v = UINT64_MAX;
        size_t len = sys == S_RING ? ring_get(&v, 8) : mproc_get(&v, 8);
        if (len != 8) wrong(who, i, len, 8);
        if (v != (uint64_t)i) wrong(who, i, v, (uint64_t)i);
      }
    }
  }
}

/* queue_mpmc_small: workers 0, 1 produce n/2 each, workers 2, 3 consume
 * n/2 each. */
static void mpmc_work(int id, long n) {
  long half = n / 2;
  if (id < 2) {
    uint64_t tag = (uint64_t)id << TAG_SHIFT;
    for (long i = 0; i < half; i++) {
      uint64_t v = tag | (uint64_t)i;
      mproc_put(&v, 8);
    }
    return;
  }
  int64_t last[2] = {-1, -1};
  uint64_t sum = 0;
  long count = 0;
  for (long i = 0; i < half; i++) {
    uint64_t v = UINT64_MAX;
    size_t len = mproc_get(&v, 8);
    if (len != 8) wrong("queue_mpmc_small", i, len, 8);
    uint64_t p = v >> TAG_SHIFT;
    int64_t s = (int64_t)(v & (((uint64_t)1 << TAG_SHIFT) - 1));
    if (p > 1) wrong("queue_mpmc_small: producer", i, p, 1);
    if (s <= last[p]) wrong("queue_mpmc_small: out of order", i, (uint64_t)s,
                            (uint64_t)(last[p] + 1));
    last[p] = s;
    sum += v;
    count++;
  }
  C->sum[id - 2] = sum;
  C->count[id - 2] = count;
}

/* A worker's part of a round (the harness has met the others at the
 * barrier and notes the CPUs around it). */
static void work(int id, int cmd) {
  B->t_start[id] = now_ns();
  if (cmd == CMD_SPSC) {
    spsc_work(id, B->sys, C->big, B->n);
  } else {
    mpmc_work(id, B->n);
  }
  B->t_end[id] = now_ns();
}

static int worker(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  /* Both buffers touched before the rounds, so no page faults are timed. */
  src_buf = malloc(BIG);
  dst_buf = malloc(BIG);
  if (src_buf == NULL || dst_buf == NULL) fail("malloc", ENOMEM);
  memset(src_buf, 0x5a, BIG);
  memset(dst_buf, 0, BIG);
  int rc = bench_serve(arg, len, work);
  free(src_buf);
  free(dst_buf);
  return rc;
}

/* The last round's time in ns: last end - first start of its workers. */
static double round_ns(int nwork) {
  double s = B->t_start[0], e = B->t_end[0];
  for (int k = 1; k < nwork; k++) {
    if (B->t_start[k] < s) s = B->t_start[k];
    if (B->t_end[k] > e) e = B->t_end[k];
  }
  return e - s;
}

/* One 1 -> 1 round: M msg/s (small) or MB/s (big). */
static double spsc_round(int sys, int big, long n) {
  C->big = big;
  bench_command(CMD_SPSC, sys, 2, n);
  double ns = round_ns(2);
  return big ? (double)n * (double)BIG / ns * 1e3 : (double)n / ns * 1e3;
}

/* One memcpy round in this process: MB/s. */
static double memcpy_round(unsigned char *area, const unsigned char *src,
                           long n) {
  double t0 = now_ns();
  for (long i = 0; i < n; i++) {
    unsigned char *dst = area + (size_t)(i % 4) * BIG;
    memcpy(dst, src, BIG);
    ESCAPE(dst);
  }
  return (double)n * (double)BIG / (now_ns() - t0) * 1e3;
}

/* One 2 -> 2 round: M msg/s in total; checks the count and the sum. */
static double mpmc_round(long n) {
  long half = n / 2;
  bench_command(CMD_MPMC, S_MPROC, 4, n);
  uint64_t sum = C->sum[0] + C->sum[1];
  long count = C->count[0] + C->count[1];
  uint64_t want = (uint64_t)half * (uint64_t)(half - 1) +
                  ((uint64_t)half << TAG_SHIFT);
  if (count != 2 * half || sum != want) {
    fprintf(stderr, "bench-queue: queue_mpmc_small: %ld messages summing to "
            "%llu, want %ld and %llu\n", count, (unsigned long long)sum,
            2 * half, (unsigned long long)want);
    bench_kill_workers();
    exit(1);
  }
  return (double)(2 * half) / round_ns(4) * 1e3;
}

int main(void) {
  int is_quick = bench_quick();
  int rounds = is_quick ? 3 : 11;
  long small_n = is_quick ? 100000 : 1000000; /* messages per round */
  long big_n = is_quick ? 100 : 1000;
  long mpmc_n = is_quick ? 100000 : 1000000;  /* in all, both producers */

  C = bench_map_shared(sizeof *C);
  R = bench_map_shared(sizeof *R + RING_CAP);
  memset(R->data, 0, RING_CAP);
  unsigned char *area = malloc(4 * BIG), *src = malloc(BIG);
  if (area == NULL || src == NULL) fail("malloc", ENOMEM);
  memset(area, 0, 4 * BIG);
  memset(src, 0x5a, BIG);

  /* Every mproc object before the workers start. */
  int rc = mproc_queue_new(&Q, 0, NULL);
  if (rc != 0) fail("mproc_queue_new", rc);
  if (mproc_queue_capacity(Q) != RING_CAP) {
    fprintf(stderr, "bench-queue: the queue's capacity is %zu, the raw "
            "ring's %zu: the comparison assumes the same\n",
            mproc_queue_capacity(Q), (size_t)RING_CAP);
  }
  bench_start_workers(NWORKERS, worker);

  static const char *names[NS] = {"mproc", "raw_ring", "memcpy"};

  /* ---- queue_small: mproc, raw_ring ---- */
  double sres[2][rounds];
  int sapart[2][rounds];
  for (int k = 0; k < 2; k++) spsc_round(k, 0, small_n / 4); /* warm-up */
  for (int r = 0; r < rounds; r++) {
    for (int j = 0; j < 2; j++) {
      int k = bench_alt(r, j, 2);
      sres[k][r] = spsc_round(k, 0, small_n);
      sapart[k][r] = bench_apart();
    }
  }

  /* ---- queue_1mib: mproc, raw_ring, memcpy ---- */
  double bres[NS][rounds];
  int bapart[2][rounds];
  for (int k = 0; k < 2; k++) spsc_round(k, 1, big_n / 4); /* warm-up */
  memcpy_round(area, src, big_n / 4);
  for (int r = 0; r < rounds; r++) {
    for (int j = 0; j < NS; j++) {
      int k = bench_alt(r, j, NS);
      if (k == S_MEMCPY) {
        bres[k][r] = memcpy_round(area, src, big_n);
      } else {
        bres[k][r] = spsc_round(k, 1, big_n);
        bapart[k][r] = bench_apart();
      }
    }
  }

  /* ---- queue_mpmc_small: mproc ---- */
  double mres[rounds];
  mpmc_round(mpmc_n / 4); /* warm-up */
  for (int r = 0; r < rounds; r++) mres[r] = mpmc_round(mpmc_n);

  if (bench_stop_workers() != 0) return 1;
  long qsize = mproc_queue_qsize(Q);
  int64_t lost = mproc_queue_lost(Q);
  if (qsize != 0 || lost != 0) {
    fprintf(stderr, "bench-queue: the queue ends with %ld messages queued "
            "and %lld lost, want 0 and 0\n", qsize, (long long)lost);
    return 1;
  }

  /* ---- results ---- */
  char extra[400], split[200];
  double smed[2], bmed[NS], mmed;
  for (int k = 0; k < 2; k++) {
    bench_split_note(split, sizeof split, sres[k], sapart[k], rounds);
    snprintf(extra, sizeof extra, "  (%d rounds x %ld messages of 8 B, "
             "1 -> 1%s)", rounds, small_n, split);
    smed[k] = bench_summarize("queue_small", names[k], "M msg/s", sres[k],
                              rounds, extra);
  }
  for (int k = 0; k < NS; k++) {
    if (k == S_MEMCPY) {
      snprintf(extra, sizeof extra, "  (%d rounds x %ld copies of 1 MiB, "
               "one thread; a queued message costs two copies)",
               rounds, big_n);
    } else {
      bench_split_note(split, sizeof split, bres[k], bapart[k], rounds);
      snprintf(extra, sizeof extra, "  (%d rounds x %ld messages of 1 MiB, "
               "1 -> 1%s)", rounds, big_n, split);
    }
    bmed[k] = bench_summarize("queue_1mib", names[k], "MB/s", bres[k],
                              rounds, extra);
  }
  snprintf(extra, sizeof extra, "  (%d rounds x %ld messages of 8 B in all, "
           "2 -> 2, count and sum checked)", rounds, mpmc_n);
  mmed = bench_summarize("queue_mpmc_small", "mproc", "M msg/s", mres,
                         rounds, extra);

  bench_emit("queue_small", "mproc", smed[S_MPROC], "M/s", "higher");
  bench_emit("queue_small", "raw_ring", smed[S_RING], "M/s", "higher");
  bench_emit("queue_1mib", "mproc", bmed[S_MPROC], "MB/s", "higher");
  bench_emit("queue_1mib", "raw_ring", bmed[S_RING], "MB/s", "higher");
  bench_emit("queue_1mib", "memcpy", bmed[S_MEMCPY], "MB/s", "higher");
  bench_emit("queue_mpmc_small", "mproc", mmed, "M/s", "higher");

  rc = mproc_queue_free(Q);
  if (rc != 0) fail("mproc_queue_free", rc);
  free(area);
  free(src);
  munmap(R, sizeof *R + RING_CAP);
  munmap(C, sizeof *C);
  return fflush(stdout) == 0 ? 0 : 1;
}
