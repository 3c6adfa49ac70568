/*
 * bench/bench-pipe.c - Pipe ping-pong against a raw socketpair.
 *
 * Bench ID pipe_pingpong, us per round trip, lower is better; two
 * processes, A and B, pass 8 bytes back and forth: A sends its round-trip
 * number and waits for the answer, B receives it and sends it back; A
 * checks every answer.  Systems (python_pipe comes from
 * bench/python/pipe.py):
 *
 *   mproc           mproc_pipe(&a, &b, 1) (duplex: a connected pair of Unix
 *                   stream sockets, as Python's Pipe()); A:
 *                   mproc_connection_send(a, &v, 8) then
 *                   mproc_connection_recv_bytes_into(a, &r, 8, 0, &len); B
 *                   the same the other way round.  Every message is framed
 *                   as Python's (a 4-byte length, then the 8 bytes).
 *   raw_socketpair  socketpair(AF_UNIX, SOCK_STREAM), write(2) of the 8
 *                   bytes and read(2) until 8 bytes have come, looping on
 *                   short reads and writes and EINTR; no framing.  The
 *                   floor for a byte stream between two processes.
 *
 * Method (as bench/bench-sync.c's event_pingpong): A and B are mproc
 * processes started once, before the rounds, with both pairs of sockets
 * made before them (each inherits all four ends and uses its own two).
 * For each round this process hands the work to both and sleeps on a
 * futex until both are done, so the two have the machine's two CPUs
 * (nothing is pinned).  They meet at a spinning barrier; A times N round
 * trips with CLOCK_MONOTONIC after WARM untimed ones.  The raw peer's timed
 * loop calls no mproc function.  The systems run in alternating rounds, the
 * order reversed every round; the figure is the MEDIAN over rounds.
 * Warm-up rounds of both run first and are not counted.
 *
 * Printed on stderr for information: the spread over rounds, and in how
 * many rounds A and B ran on two CPUs (sched_getcpu at the round's start
 * and end) with the median of those rounds and of the others (a wakeup on
 * the same CPU is far cheaper than one across CPUs).
 *
 * Output: one JSON object a line on stdout; details on stderr.
 * BENCH_QUICK=1 shrinks the counts.  Exits non-zero only when something
 * fails (an mproc call or a syscall, a worker, a wrong answer).
 */
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
#include <sys/socket.h>
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
  fprintf(stderr, "bench-pipe[%d]: %s failed: %s (%d)\n", (int)getpid(), what,
          rc < 0 ? mproc_strerror(rc) : strerror(rc), rc);
  exit(1);
}

static void wrong(const char *who, long i, uint64_t got, size_t len) {
  fprintf(stderr, "bench-pipe[%d]: %s: round trip %ld: got %llu (%zu bytes), "
          "want %ld (8 bytes)\n", (int)getpid(), who, i,
          (unsigned long long)got, len, i);
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

/* ---- the shared control block ---- */

enum { CMD_QUIT = 1, CMD_PING };
enum { P_MPROC, P_SOCKET, NP };

typedef struct ctl {
  _Atomic uint32_t seq; /* futex: bumped for every command */
  char pad0[60];
  _Atomic uint32_t done; /* futex: workers that finished the command */
  char pad1[60];
  _Atomic uint32_t arrive; /* the workers' start barrier */
  char pad2[60];
  int cmd, sys;
  long n;
  double t_start, t_end; /* A's timed part */
  int cpu[2][2]; /* each worker's CPU at the start and the end of a round */
} ctl;

static ctl *C;
static mproc_connection *conn[2]; /* mproc: A's end, B's end */
static int sv[2];                 /* raw_socketpair: A's end, B's end */

static void barrier(void) {
  atomic_fetch_add(&C->arrive, 1);
  unsigned spins = 0;
  while (atomic_load(&C->arrive) < 2) {
    cpu_relax();
    if (++spins % 1024 == 0) sched_yield();
  }
}

/* ---- raw_socketpair: plain read/write, no mproc call ---- */

static void write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write", errno);
    }
    p += w;
    len -= (size_t)w;
  }
}

static void read_all(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t r = read(fd, p, len);
    if (r < 0) {
      if (errno == EINTR) continue;
      fail("read", errno);
    }
    if (r == 0) fail("read (end of file)", EPIPE);
    p += r;
    len -= (size_t)r;
  }
}

static void ping_socket(int id, long n) {
  int fd = sv[id];
  for (long i = 0; i < WARM + n; i++) {
    uint64_t v = (uint64_t)i, r = UINT64_MAX;
    if (id == 0) { /* A */
      if (i == WARM) C->t_start = now_ns();
      write_all(fd, &v, 8);
      read_all(fd, &r, 8);
      if (r != v) wrong("raw_socketpair", i, r, 8);
    } else { /* B */
      read_all(fd, &r, 8);
      write_all(fd, &r, 8);
    }
  }
  if (id == 0) C->t_end = now_ns();
}

/* ---- mproc: the Pipe ---- */

static void ping_mproc(int id, long n) {
  mproc_connection *c = conn[id];
  for (long i = 0; i < WARM + n; i++) {
    uint64_t v = (uint64_t)i, r = UINT64_MAX;
    size_t len = 0;
    int rc;
    if (id == 0) { /* A */
      if (i == WARM) C->t_start = now_ns();
      rc = mproc_connection_send(c, &v, 8);
      if (rc != 0) fail("mproc_connection_send", rc);
      rc = mproc_connection_recv_bytes_into(c, &r, 8, 0, &len);
      if (rc != 0) fail("mproc_connection_recv_bytes_into", rc);
      if (len != 8 || r != v) wrong("mproc", i, r, len);
    } else { /* B */
      rc = mproc_connection_recv_bytes_into(c, &r, 8, 0, &len);
      if (rc != 0) fail("mproc_connection_recv_bytes_into", rc);
      if (len != 8) wrong("mproc (B)", i, r, len);
      rc = mproc_connection_send(c, &r, 8);
      if (rc != 0) fail("mproc_connection_send", rc);
    }
  }
  if (id == 0) C->t_end = now_ns();
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
    if (C->sys == P_MPROC) {
      ping_mproc(id, C->n);
    } else {
      ping_socket(id, C->n);
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
        fprintf(stderr, "bench-pipe: worker %d died during a round\n", k);
        for (int j = 0; j < 2; j++) {
          (void)mproc_process_kill(workers[j]);
          (void)mproc_process_join(workers[j], MPROC_FOREVER);
        }
        exit(1);
      }
    }
  }
}

static int apart(void) {
  return C->cpu[0][0] != C->cpu[1][0] && C->cpu[0][1] != C->cpu[1][1];
}

static double ping_round(int sys, long n) {
  command(CMD_PING, sys, n);
  return (C->t_end - C->t_start) / (double)n / 1e3; /* us */
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

/* Sorts a copy of v; prints the spread; returns the median. */
static double summarize(const char *sys, const double *v0, int rounds,
                        const char *extra) {
  double v[rounds];
  memcpy(v, v0, sizeof v);
  qsort(v, (size_t)rounds, sizeof(double), cmp_double);
  double med = quantile(v, rounds, 0.5);
  fprintf(stderr,
          "bench-pipe: pipe_pingpong %-14s us/round trip: median %.4g  "
          "min %.4g  p25 %.4g  p75 %.4g  max %.4g%s\n",
          sys, med, v[0], quantile(v, rounds, 0.25),
          quantile(v, rounds, 0.75), v[rounds - 1], extra);
  return med;
}

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

int main(void) {
  const char *quick = getenv("BENCH_QUICK");
  int is_quick = quick != NULL && quick[0] != '\0' && strcmp(quick, "0") != 0;
  int rounds = is_quick ? 3 : 21;
  long ping_n = is_quick ? 1000 : 10000; /* round trips per round */

  C = mmap(NULL, sizeof *C, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
           -1, 0);
  if (C == MAP_FAILED) fail("mmap", errno);
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    fail("socketpair", errno);

  /* Both pairs before the workers start. */
  int rc = mproc_pipe(&conn[0], &conn[1], 1);
  if (rc != 0) fail("mproc_pipe", rc);
  for (int k = 0; k < 2; k++) {
    rc = mproc_process_new(&workers[k], worker, &k, sizeof k, NULL);
    if (rc != 0) fail("mproc_process_new", rc);
    rc = mproc_process_start(workers[k]);
    if (rc != 0) fail("mproc_process_start", rc);
  }

  static const char *names[NP] = {"mproc", "raw_socketpair"};
  double res[NP][rounds];
  int ap[NP][rounds];
  for (int k = 0; k < NP; k++) ping_round(k, ping_n / 10); /* warm-up */
  for (int r = 0; r < rounds; r++) {
    for (int j = 0; j < NP; j++) {
      int k = r % 2 == 0 ? j : NP - 1 - j;
      res[k][r] = ping_round(k, ping_n);
      ap[k][r] = apart();
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
      fprintf(stderr, "bench-pipe: worker %d exit code %d, want 0\n", k, code);
      return 1;
    }
    rc = mproc_process_free(workers[k]);
    if (rc != 0) fail("mproc_process_free", rc);
  }
  int left = mproc_active_children(NULL, 0);
  if (left != 0) {
    fprintf(stderr, "bench-pipe: %d mproc children still running\n", left);
    return 1;
  }

  char extra[400], split[200];
  double med[NP];
  for (int k = 0; k < NP; k++) {
    split_note(split, sizeof split, res[k], ap[k], rounds);
    snprintf(extra, sizeof extra,
             "  (%d rounds x %ld round trips of 8 B, %d warm%s)", rounds,
             ping_n, WARM, split);
    med[k] = summarize(names[k], res[k], rounds, extra);
  }
  for (int k = 0; k < NP; k++) {
    printf("{\"bench\": \"pipe_pingpong\", \"system\": \"%s\", \"value\": "
           "%.6g, \"unit\": \"us\", \"better\": \"lower\"}\n",
           names[k], med[k]);
  }

  mproc_connection_close(conn[0]);
  mproc_connection_close(conn[1]);
  close(sv[0]);
  close(sv[1]);
  munmap(C, sizeof *C);
  return fflush(stdout) == 0 ? 0 : 1;
}
