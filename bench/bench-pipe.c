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
 * The workers, the statistics and the output come from bench/harness.h.
 * Output: one JSON object a line on stdout; details on stderr.
 * BENCH_QUICK=1 shrinks the counts.  Exits non-zero only when something
 * fails (an mproc call or a syscall, a worker, a wrong answer).
 */
#define BENCH_NAME "bench-pipe"
#define BENCH_ID_WIDTH 13 /* the stderr lines' bench ID column */
#include "harness.h"

#include <sys/socket.h>

#define WARM 200 /* untimed round trips before a timed ping-pong */

static void wrong(const char *who, long i, uint64_t got, size_t len) {
  fprintf(stderr, "bench-pipe[%d]: %s: round trip %ld: got %llu (%zu bytes), "
          "want %ld (8 bytes)\n", (int)getpid(), who, i,
          (unsigned long long)got, len, i);
  exit(1);
}

/* ---- the systems and their sockets ---- */

enum { CMD_PING = 1 }; /* the command of workers A (0) and B (1) */
enum { P_MPROC, P_SOCKET, NP };

static mproc_connection *conn[2]; /* mproc: A's end, B's end */
static int sv[2];                 /* raw_socketpair: A's end, B's end */

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
      if (i == WARM) B->t_start[0] = now_ns();
      write_all(fd, &v, 8);
      read_all(fd, &r, 8);
      if (r != v) wrong("raw_socketpair", i, r, 8);
    } else { /* B */
      read_all(fd, &r, 8);
      write_all(fd, &r, 8);
    }
  }
  if (id == 0) B->t_end[0] = now_ns();
}

/* ---- mproc: the Pipe ---- */

static void ping_mproc(int id, long n) {
  mproc_connection *c = conn[id];
  for (long i = 0; i < WARM + n; i++) {
    uint64_t v = (uint64_t)i, r = UINT64_MAX;
    size_t len = 0;
    int rc;
    if (id == 0) { /* A */
      if (i == WARM) B->t_start[0] = now_ns();
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
  if (id == 0) B->t_end[0] = now_ns();
}

/* A worker's part of a round (the harness has met the other at the
 * barrier and notes the CPUs around it). */
static void work(int id, int cmd) {
  (void)cmd; /* CMD_PING */
  if (B->sys == P_MPROC) {
    ping_mproc(id, B->n);
  } else {
    ping_socket(id, B->n);
  }
}

static int worker(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  return bench_serve(arg, len, work);
}

static double ping_round(int sys, long n) {
  bench_command(CMD_PING, sys, 2, n);
  return (B->t_end[0] - B->t_start[0]) / (double)n / 1e3; /* us */
}

int main(void) {
  int is_quick = bench_quick();
  int rounds = is_quick ? 3 : 21;
  long ping_n = is_quick ? 1000 : 10000; /* round trips per round */

  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    fail("socketpair", errno);

  /* Both pairs before the workers start. */
  int rc = mproc_pipe(&conn[0], &conn[1], 1);
  if (rc != 0) fail("mproc_pipe", rc);
  bench_start_workers(2, worker);

  static const char *names[NP] = {"mproc", "raw_socketpair"};
  double res[NP][rounds];
  int ap[NP][rounds];
  for (int k = 0; k < NP; k++) ping_round(k, ping_n / 10); /* warm-up */
  for (int r = 0; r < rounds; r++) {
    for (int j = 0; j < NP; j++) {
      int k = bench_alt(r, j, NP);
      res[k][r] = ping_round(k, ping_n);
      ap[k][r] = bench_apart();
    }
  }

  if (bench_stop_workers() != 0) return 1;

  char extra[400], split[200];
  double med[NP];
  for (int k = 0; k < NP; k++) {
    bench_split_note(split, sizeof split, res[k], ap[k], rounds);
    snprintf(extra, sizeof extra,
             "  (%d rounds x %ld round trips of 8 B, %d warm%s)", rounds,
             ping_n, WARM, split);
    med[k] = bench_summarize("pipe_pingpong", names[k], "us/round trip",
                             res[k], rounds, extra);
  }
  for (int k = 0; k < NP; k++)
    bench_emit("pipe_pingpong", names[k], med[k], "us", "lower");

  mproc_connection_close(conn[0]);
  mproc_connection_close(conn[1]);
  close(sv[0]);
  close(sv[1]);
  return fflush(stdout) == 0 ? 0 : 1;
}
