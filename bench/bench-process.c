/*
 * bench/bench-process.c - process start+join of a no-op target.
 *
 * Bench ID process_start_join, systems:
 *   mproc     mproc_process_new + start + join(MPROC_FOREVER) + exitcode +
 *             free; the target returns 0 at once;
 *   raw_fork  fork(); the child calls _exit(0); the parent waitpid(pid),
 *             in a pristine single-threaded process (see below).
 *   mproc_spawn, mproc_forkserver
 *             the same as mproc with mproc_process_opts.context set to
 *             the "spawn" / "forkserver" context (mproc_get_context);
 *   raw_posix_spawn
 *             posix_spawn of /proc/self/exe (this bench program) with
 *             argv {argv[0], EXIT_AT_ONCE}, which makes main() _exit(0)
 *             before anything else; the parent waitpid(pid).  The same
 *             binary as mproc_spawn execs, loaded the same way (its
 *             shared libraries, its constructors, mproc's included, which
 *             find no bootstrap fd and return), so what mproc_spawn costs
 *             over it is mproc's bootstrap: the record over the socket,
 *             mapping the arena, resolving the target, the reply.
 * (python_fork, python_spawn and python_forkserver come from
 * bench/python/process_start_join.py.)
 *
 * The raw peer runs in a helper process forked at the very start, before
 * the first mproc call: a plain single-threaded program, the floor the
 * issue's target refers to.  Measured inside this process instead, it
 * pays for whatever mproc left in the process (its atfork handlers; on
 * kernels without io_uring waitid, a reaper thread, which makes every fork
 * take glibc's slower multi-threaded path); that figure is printed on
 * stderr as "raw_fork_mt" for information, not reported as a result.
 *
 * Method: the systems run in alternating rounds (the order reverses every
 * round: mproc, raw, raw_mt | raw_mt, raw, mproc | ...) so that all see the
 * same noise of this shared, noisy machine; only one of the two processes
 * works at a time (the other waits on a pipe).  A round times OPS
 * start+join one after the other; its per-op time is the round's time /
 * OPS.  The figure is the MEDIAN of the per-op times over the rounds, in ms
 * (lower is better).  The first mproc start creates the shared arena and
 * the background reaping (an io_uring, or a reaper thread on older
 * kernels): warm-up operations of every system run first and are
 * not counted (the first start's cost is printed on stderr).  The
 * forkserver is started in the warm-up (mproc_forkserver_start, timed on
 * stderr), so its rounds count only the requests to it; it is stopped at
 * the end.  The start / join split printed on stderr is informational.
 * The spawn systems run fewer start+joins a round (SPAWN_OPS_DIV), as
 * each costs an exec.
 *
 * Output (bench/harness.h has the common parts): one JSON object a line
 * on stdout; details on stderr.
 * BENCH_QUICK=1 shrinks the counts for a smoke run.  Exits non-zero only
 * when something fails (an mproc call, fork, a child's exit status).
 */
#define BENCH_NAME "bench-process"
#include "harness.h"

#include "internal.h"

#include <spawn.h>
#include <sys/wait.h>

/* The argument that makes main() _exit(0) at once: raw_posix_spawn's
 * child. */
#define EXIT_AT_ONCE "--bench-exit-at-once"

/* The spawn systems run ops / SPAWN_OPS_DIV start+joins a round. */
#define SPAWN_OPS_DIV 2

static double now_ms(void) { return now_ns() / 1e6; }

static int noop(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  return 0;
}

/* One mproc start+join; adds its start and join parts to the two sums. */
static void mproc_once(double *t_start, double *t_join) {
  mproc_process *p;
  double t0 = now_ms();
  int rc = mproc_process_new(&p, noop, NULL, NULL, 0, NULL);
  if (rc != 0) fail("mproc_process_new", rc);
  rc = mproc_process_start(p);
  if (rc != 0) fail("mproc_process_start", rc);
  double t1 = now_ms();
  rc = mproc_process_join(p, MPROC_FOREVER);
  if (rc != 0) fail("mproc_process_join", rc);
  int code = -1;
  rc = mproc_process_exitcode(p, &code);
  if (rc != 0) fail("mproc_process_exitcode", rc);
  if (code != 0) {
    fprintf(stderr, "bench-process: mproc child exit code %d, want 0\n", code);
    exit(1);
  }
  rc = mproc_process_free(p);
  if (rc != 0) fail("mproc_process_free", rc);
  double t2 = now_ms();
  *t_start += t1 - t0;
  *t_join += t2 - t1;
}

/* One raw fork + _exit(0) + waitpid. */
static void raw_once(double *t_start, double *t_join) {
  double t0 = now_ms();
  pid_t pid = fork();
  if (pid < 0) fail("fork", -errno);
  if (pid == 0) _exit(0);
  double t1 = now_ms();
  int status;
  pid_t r;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r != pid) fail("waitpid", -errno);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "bench-process: raw child status 0x%x, want exit 0\n",
            (unsigned)status);
    exit(1);
  }
  double t2 = now_ms();
  *t_start += t1 - t0;
  *t_join += t2 - t1;
}

/* ---- the start-method systems ---- */

static mproc_context *spawn_ctx, *forkserver_ctx;

/* One mproc start+join with the given context: as mproc_once, with
 * mproc_process_opts.context set. */
static void mproc_ctx_once(const mproc_context *c, double *t_start,
                           double *t_join) {
  mproc_process *p;
  mproc_process_opts o = {0};
  o.context = c;
  double t0 = now_ms();
  int rc = mproc_process_new(&p, noop, NULL, NULL, 0, &o);
  if (rc != 0) fail("mproc_process_new", rc);
  rc = mproc_process_start(p);
  if (rc != 0) fail("mproc_process_start", rc);
  double t1 = now_ms();
  rc = mproc_process_join(p, MPROC_FOREVER);
  if (rc != 0) fail("mproc_process_join", rc);
  int code = -1;
  rc = mproc_process_exitcode(p, &code);
  if (rc != 0) fail("mproc_process_exitcode", rc);
  if (code != 0) {
    fprintf(stderr, "bench-process: mproc %s child exit code %d, want 0\n",
            mproc_context_start_method(c), code);
    exit(1);
  }
  rc = mproc_process_free(p);
  if (rc != 0) fail("mproc_process_free", rc);
  double t2 = now_ms();
  *t_start += t1 - t0;
  *t_join += t2 - t1;
}

/* {argv[0], EXIT_AT_ONCE, NULL}, set by main. */
static char *exit_argv[3];

/* One posix_spawn of this program told to exit at once + waitpid.
 * posix_spawn returns once the child has exec'd (glibc: clone with
 * CLONE_VFORK), so "start" is up to the exec and "join" the new image's
 * loading, its exit and the wait. */
static void posix_spawn_once(double *t_start, double *t_join) {
  extern char **environ;
  double t0 = now_ms();
  pid_t pid;
  int rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, exit_argv,
                       environ);
  if (rc != 0) fail("posix_spawn", rc);
  double t1 = now_ms();
  int status;
  pid_t r;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r != pid) fail("waitpid", -errno);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "bench-process: posix_spawn child status 0x%x, want "
            "exit 0\n", (unsigned)status);
    exit(1);
  }
  double t2 = now_ms();
  *t_start += t1 - t0;
  *t_join += t2 - t1;
}

/* ---- the pristine raw_fork helper process ---- */

static int helper_cmd = -1, helper_res = -1;
static pid_t helper_pid;

static int read_full(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t r = write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* In the helper: run raw rounds on request until told 0 or EOF. */
static void helper_main(int cmd, int res) {
  for (;;) {
    int ops;
    if (read_full(cmd, &ops, sizeof ops) != 0 || ops <= 0) _exit(0);
    double out[3] = {0, 0, 0}; /* round ms, start sum, join sum */
    double t0 = now_ms();
    for (int i = 0; i < ops; i++) raw_once(&out[1], &out[2]);
    out[0] = now_ms() - t0;
    if (write_full(res, out, sizeof out) != 0) _exit(1);
  }
}

/* Fork the helper: must run before the first mproc call. */
static void helper_start(void) {
  int c[2], r[2];
  if (pipe(c) != 0 || pipe(r) != 0) fail("pipe", -errno);
  fflush(NULL);
  helper_pid = fork();
  if (helper_pid < 0) fail("fork", -errno);
  if (helper_pid == 0) {
    close(c[1]);
    close(r[0]);
    helper_main(c[0], r[1]);
  }
  close(c[0]);
  close(r[1]);
  helper_cmd = c[1];
  helper_res = r[0];
}

/* One raw round in the helper; adds the parts to the sums. */
static double helper_round(int ops, double *t_start, double *t_join) {
  double out[3];
  if (write_full(helper_cmd, &ops, sizeof ops) != 0 ||
      read_full(helper_res, out, sizeof out) != 0) {
    fprintf(stderr, "bench-process: the raw_fork helper process died\n");
    exit(1);
  }
  *t_start += out[1];
  *t_join += out[2];
  return out[0];
}

static void helper_stop(void) {
  int zero = 0;
  (void)write_full(helper_cmd, &zero, sizeof zero);
  close(helper_cmd);
  close(helper_res);
  int status;
  pid_t r;
  do {
    r = waitpid(helper_pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r != helper_pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "bench-process: the raw_fork helper failed\n");
    exit(1);
  }
}

/* ---- rounds ---- */

enum {
  SYS_MPROC,
  SYS_RAW,
  SYS_RAW_MT,
  SYS_SPAWN,
  SYS_FORKSERVER,
  SYS_POSIX_SPAWN,
  NSYS
};

/* Start+joins a round of system sys: an exec costs ~10 forks. */
static int sys_ops(int sys, int ops) {
  if (sys == SYS_SPAWN || sys == SYS_POSIX_SPAWN) {
    return ops / SPAWN_OPS_DIV > 0 ? ops / SPAWN_OPS_DIV : 1;
  }
  return ops;
}

typedef struct series {
  const char *system;
  double *per_op;  /* per round: ms per start+join */
  double start_ms; /* sums over all ops run */
  double join_ms;
  const char *start_what, *join_what;
} series;

static double run_round(int sys, series *s, int ops) {
  if (sys == SYS_RAW) return helper_round(ops, &s->start_ms, &s->join_ms) / ops;
  ops = sys_ops(sys, ops);
  double t0 = now_ms();
  for (int i = 0; i < ops; i++) {
    if (sys == SYS_MPROC) {
      mproc_once(&s->start_ms, &s->join_ms);
    } else if (sys == SYS_SPAWN) {
      mproc_ctx_once(spawn_ctx, &s->start_ms, &s->join_ms);
    } else if (sys == SYS_FORKSERVER) {
      mproc_ctx_once(forkserver_ctx, &s->start_ms, &s->join_ms);
    } else if (sys == SYS_POSIX_SPAWN) {
      posix_spawn_once(&s->start_ms, &s->join_ms);
    } else {
      raw_once(&s->start_ms, &s->join_ms);
    }
  }
  return (now_ms() - t0) / ops;
}

int main(int argc, char **argv) {
  /* raw_posix_spawn's child: exit before anything else. */
  if (argc == 2 && strcmp(argv[1], EXIT_AT_ONCE) == 0) _exit(0);
  exit_argv[0] = argv[0];
  exit_argv[1] = (char *)EXIT_AT_ONCE;
  int is_quick = bench_quick();
  int rounds = is_quick ? 5 : 41;
  int ops = is_quick ? 5 : 50;

  helper_start(); /* before any mproc call: a pristine process */

  double *buf = calloc((size_t)rounds * NSYS, sizeof(double));
  if (buf == NULL) fail("calloc", MPROC_ENOMEM);
  series s[NSYS] = {
      {"mproc", buf, 0, 0, "new+start", "join+free"},
      {"raw_fork", buf + rounds, 0, 0, "fork", "waitpid"},
      {"raw_fork_mt", buf + 2 * rounds, 0, 0, "fork", "waitpid"},
      {"mproc_spawn", buf + 3 * rounds, 0, 0, "new+start", "join+free"},
      {"mproc_forkserver", buf + 4 * rounds, 0, 0, "new+start", "join+free"},
      {"raw_posix_spawn", buf + 5 * rounds, 0, 0, "posix_spawn", "waitpid"},
  };

  /* Warm-up, not counted.  The first mproc start creates the arena and the
   * background reaping; time it alone. */
  series warm = {"warm-up", NULL, 0, 0, NULL, NULL};
  double t0 = now_ms();
  mproc_once(&warm.start_ms, &warm.join_ms);
  double first = now_ms() - t0;
  int rc = mproc_get_context(&spawn_ctx, "spawn");
  if (rc != 0) fail("mproc_get_context", rc);
  rc = mproc_get_context(&forkserver_ctx, "forkserver");
  if (rc != 0) fail("mproc_get_context", rc);
  t0 = now_ms();
  rc = mproc_forkserver_start(); /* one spawn, then only requests */
  if (rc != 0) fail("mproc_forkserver_start", rc);
  double fs_first = now_ms() - t0;
  for (int k = 0; k < NSYS; k++) run_round(k, &warm, 10);
  for (int k = 0; k < NSYS; k++) s[k].start_ms = s[k].join_ms = 0;

  static const int order[2][NSYS] = {
      {SYS_MPROC, SYS_RAW, SYS_RAW_MT, SYS_SPAWN, SYS_FORKSERVER,
       SYS_POSIX_SPAWN},
      {SYS_POSIX_SPAWN, SYS_FORKSERVER, SYS_SPAWN, SYS_RAW_MT, SYS_RAW,
       SYS_MPROC}};
  for (int r = 0; r < rounds; r++) {
    for (int j = 0; j < NSYS; j++) {
      int k = order[r % 2][j];
      s[k].per_op[r] = run_round(k, &s[k], ops);
    }
  }
  helper_stop();
  mproc__forkserver_stop(); /* joins the server */

  /* Nothing may be left running: every child was joined / waited for. */
  int left = mproc_active_children(NULL, 0);
  if (left != 0) {
    fprintf(stderr, "bench-process: %d mproc children still running\n", left);
    exit(1);
  }

  double med[NSYS];
  fprintf(stderr,
          "bench-process: %d rounds x %d start+join per system, order "
          "reversed every round; first mproc start+join (creates arena + "
          "background reaping, not counted): %.3f ms; children reaped by %s\n",
          rounds, ops, first, mproc__process_reaping_mode());
  for (int k = 0; k < NSYS; k++) {
    double sorted[rounds];
    memcpy(sorted, s[k].per_op, sizeof sorted);
    qsort(sorted, (size_t)rounds, sizeof(double), cmp_double);
    med[k] = quantile(sorted, rounds, 0.5);
    double n = (double)rounds * sys_ops(k, ops);
    fprintf(stderr,
            "bench-process: %-16s per op ms: median %.4f  min %.4f  "
            "p25 %.4f  p75 %.4f  max %.4f | mean split: %s %.4f + %s %.4f\n",
            s[k].system, med[k], sorted[0], quantile(sorted, rounds, 0.25),
            quantile(sorted, rounds, 0.75), sorted[rounds - 1],
            s[k].start_what, s[k].start_ms / n, s[k].join_what,
            s[k].join_ms / n);
  }
  fprintf(stderr,
          "bench-process: raw_fork_mt = raw fork+waitpid inside this process "
          "once mproc has started (mproc's atfork handlers run; a reaper "
          "thread, where there is one, makes fork take glibc's multi-threaded "
          "path): %.2fx raw_fork; not a result row\n",
          med[SYS_RAW_MT] / med[SYS_RAW]);
  fprintf(stderr,
          "bench-process: start methods: forkserver started in the warm-up "
          "in %.3f ms (not counted); spawn systems %d start+joins a round; "
          "mproc_spawn = %.2fx raw_posix_spawn, mproc_forkserver = %.2fx "
          "mproc (fork)\n",
          fs_first, sys_ops(SYS_SPAWN, ops),
          med[SYS_SPAWN] / med[SYS_POSIX_SPAWN],
          med[SYS_FORKSERVER] / med[SYS_MPROC]);
  for (int k = 0; k < NSYS; k++) {
    if (k == SYS_RAW_MT) continue; /* not a result row (see above) */
    printf("{\"bench\": \"process_start_join\", \"system\": \"%s\", "
           "\"value\": %.6f, \"unit\": \"ms\", \"better\": \"lower\"}\n",
           s[k].system, med[k]);
  }
  free(buf);
  return fflush(stdout) == 0 ? 0 : 1;
}
