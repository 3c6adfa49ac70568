/*
 * tests/behaviour/test-pool-policy.c - the pool's policies beyond Python
 * (mproc/pool.h): adaptive chunking, the progress bar, task timeouts that
 * escalate from SIGTERM to SIGKILL, the on_death policy, the respawn
 * backoff for a replacement whose initializer fails, and mproc_pool_cancel
 * from a signal handler (a pool made by a thread that exits: in
 * tests/fault/test-pool-death.c).
 * Real processes and real signals throughout.
 */
#include "mproc/pool.h"
#include "mproc/shm.h"
#include "task.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/time.h>

static int sqr_long(const void *in, void *out, void *ctx) {
  (void)ctx;
  long x;
  memcpy(&x, in, sizeof x);
  long y = x * x + 1;
  memcpy(out, &y, sizeof y);
  return 0;
}

/* An item whose cost grows with its value, so an adaptive map sees both
 * cheap and costly items. */
static int uneven_map(const void *in, void *out, void *ctx) {
  (void)ctx;
  long x;
  memcpy(&x, in, sizeof x);
  volatile long acc = 0;
  for (long i = 0; i < (x % 97) * 50; i++) {
    acc += i;
  }
  long y = x * 3;
  memcpy(out, &y, sizeof y);
  return x % 1000 == 999 ? 7 : 0;
}

static mproc_pool *pool_with(int n, const mproc_pool_opts *base) {
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  if (base != NULL) {
    o = *base;
  }
  o.processes = n;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  return p;
}

static void pool_done(mproc_pool *p) {
  ASSERT_OK(mproc_pool_close(p));
  ASSERT_OK(mproc_pool_join(p, MPROC_FOREVER));
  ASSERT_OK(mproc_pool_free(p));
}

/* MPROC_CHUNK_ADAPTIVE: every result right, in order, for cheap items
 * (large claims) and uneven ones, and the first failing item reported as
 * with fixed chunks. */
TEST_IMPL(pool_map_adaptive) {
  mproc_pool *p = pool_with(3, NULL);
  size_t n = 200000;
  long *in = malloc(n * sizeof *in);
  long *out = malloc(n * sizeof *out);
  ASSERT_NOT_NULL(in);
  ASSERT_NOT_NULL(out);
  for (size_t i = 0; i < n; i++) {
    in[i] = (long)i;
  }
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = MPROC_CHUNK_ADAPTIVE;
  ASSERT_OK(mproc_pool_map(p, sqr_long, NULL, in, n, sizeof *in, out,
                           sizeof *out, &mo, NULL));
  for (size_t i = 0; i < n; i++) {
    ASSERT_EQ(out[i], (long)i * (long)i + 1);
  }
  mproc_map_error me;
  n = 20000;
  ASSERT_ERR(mproc_pool_map(p, uneven_map, NULL, in, n, sizeof *in, out,
                            sizeof *out, &mo, &me),
             MPROC_ETASK);
  ASSERT_UEQ(me.index, 999);
  ASSERT_EQ(me.task_code, 7);
  for (size_t i = 0; i < n; i++) {
    ASSERT_EQ(out[i], (long)i * 3);
  }
  mproc_pool_stats st;
  ASSERT_OK(mproc_pool_stats_get(p, &st));
  ASSERT_GT(st.tasks_done, 0);
  free(in);
  free(out);
  pool_done(p);
  return 0;
}

/* A chunksize below MPROC_CHUNK_ADAPTIVE is refused. */
TEST_IMPL(pool_map_bad_chunksize) {
  mproc_pool *p = pool_with(1, NULL);
  long in = 1, out;
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = -2;
  ASSERT_ERR(mproc_pool_map(p, sqr_long, NULL, &in, 1, sizeof in, &out,
                            sizeof out, &mo, NULL),
             MPROC_EINVAL);
  pool_done(p);
  return 0;
}

/* ---- progress bar ---- */

/* Run a map with progress on, stderr on a pseudo-terminal; return what
 * was drawn (read from the master side) in buf. */
static int progress_child(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg, (void)len;
  mproc_pool *p = pool_with(2, NULL);
  size_t n = 3000;
  long in[3000], out[3000];
  for (size_t i = 0; i < n; i++) {
    in[i] = (long)i;
  }
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = 10;
  mo.progress = 1;
  int rc = mproc_pool_map(p, uneven_map, NULL, in, 999, sizeof *in, out,
                          sizeof *out, &mo, NULL);
  mproc_imap *it;
  if (rc == 0) {
    rc = mproc_pool_imap(p, sqr_long, NULL, in, n, sizeof *in, sizeof *out, 50,
                         0, &it);
  }
  if (rc == 0) {
    mproc_imap_progress(it, 1);
    long v;
    while ((rc = mproc_imap_next(it, &v, NULL, MPROC_FOREVER)) == 0) {
    }
    rc = rc == MPROC_EOF ? 0 : rc;
    mproc_imap_free(it);
  }
  mproc_pool_close(p);
  mproc_pool_join(p, MPROC_FOREVER);
  mproc_pool_free(p);
  return rc == 0 ? 0 : 1;
}

/* The bytes a pseudo-terminal's master reads until the hang-up. */
static char g_pty_buf[1 << 20];
typedef struct pty_reader {
  int master;
  int timed_out;
} pty_reader;

static void *pty_drain(void *arg) {
  pty_reader *rd = arg;
  size_t got = 0;
  for (;;) {
    struct pollfd pf = {rd->master, POLLIN, 0};
    int pr = poll(&pf, 1, (int)(60000 * test_timeout_mult()));
    if (pr == 0) {
      rd->timed_out = 1; /* a silent master: neither data nor hang-up */
      break;
    }
    if (pr < 0) {
      if (errno == EINTR) {
        continue;
      }
      break;
    }
    ssize_t r = read(rd->master, g_pty_buf + got, sizeof g_pty_buf - 1 - got);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0 || got + (size_t)r >= sizeof g_pty_buf - 1) {
      break; /* EIO: every slave fd is closed and all was read */
    }
    got += (size_t)r;
  }
  g_pty_buf[got] = '\0';
  return NULL;
}

/* With stderr a terminal, map and imap draw a bar that ends at n/n; with
 * stderr a pipe (not a terminal), nothing is written. */
TEST_IMPL(pool_progress_bar_on_tty) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0) {
    return TEST_SKIP; /* no pseudo-terminals in this sandbox */
  }
  const char *name = NULL;
  int slave = -1;
  if (grantpt(master) == 0 && unlockpt(master) == 0 &&
      (name = ptsname(master)) != NULL) {
    slave = open(name, O_RDWR | O_NOCTTY);
  }
  if (slave < 0) {
    close(master);
    return TEST_SKIP; /* a /dev/ptmx without a usable devpts */
  }
  /* A thread drains the master while the child draws, so the terminal's
   * buffer never fills (a full one would block the child's writes), and
   * reads until the hang-up that follows the last slave fd's close: every
   * byte the child wrote arrives before it, however late a busy machine
   * moves it from the slave to the master.  The thread starts after the
   * fork: a fork while another thread holds a lock (the sanitizers'
   * allocator's) would leave the child that lock held for ever. */
  int saved = dup(STDERR_FILENO);
  ASSERT_GE(saved, 0);
  ASSERT_GE(dup2(slave, STDERR_FILENO), 0);
  mproc_process *child = test_start_proc(progress_child, NULL, 0);
  ASSERT_GE(dup2(saved, STDERR_FILENO), 0);
  close(saved);
  close(slave);
  pty_reader rd = {master, 0};
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, pty_drain, &rd), 0);
  int rc = test_finish_proc(child);
  ASSERT_EQ(pthread_join(th, NULL), 0);
  close(master);
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(rd.timed_out, 0);
  char *buf = g_pty_buf;
  if (strstr(buf, "999/999 items") == NULL ||
      strstr(buf, "3000/3000 items") == NULL) {
    fprintf(stderr, "# the terminal got %zu bytes: %.2000s\n", strlen(buf),
            buf);
  }
  ASSERT_NOT_NULL(strstr(buf, "999/999 items"));
  ASSERT_NOT_NULL(strstr(buf, "3000/3000 items"));
  ASSERT_NOT_NULL(strstr(buf, "/s"));

  /* Not a terminal: no bar. */
  int pfd[2];
  ASSERT_OK(pipe(pfd));
  saved = dup(STDERR_FILENO);
  ASSERT_GE(dup2(pfd[1], STDERR_FILENO), 0);
  rc = test_run_proc(progress_child, NULL, 0);
  ASSERT_GE(dup2(saved, STDERR_FILENO), 0);
  close(saved);
  close(pfd[1]);
  ASSERT_EQ(rc, 0);
  ssize_t r = read(pfd[0], buf, sizeof g_pty_buf - 1);
  close(pfd[0]);
  buf[r > 0 ? r : 0] = '\0';
  ASSERT_NULL(strstr(buf, "items"));
  return 0;
}

/* ---- task timeouts: SIGTERM, then SIGKILL ---- */

static int spin_task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)t, (void)len;
  int ignore_term;
  memcpy(&ignore_term, arg, sizeof ignore_term);
  if (ignore_term) {
    signal(SIGTERM, SIG_IGN);
  }
  for (;;) {
    test_sleep(0.01);
  }
  return 0;
}

static int ok_task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  return mproc_task_return(t, arg, len);
}

/* A task over task_timeout gets SIGTERM (and dies of it); one that
 * ignores SIGTERM gets SIGKILL after timeout_grace.  Both fail with
 * MPROC_ETIMEDOUT and the signal that ended them, and the pool goes on. */
TEST_IMPL(pool_timeout_escalates_to_sigkill) {
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  /* Long enough that the second task has set SIGTERM aside before its
   * time is up, even on a loaded machine. */
  o.task_timeout = 1.0;
  o.timeout_grace = 0.3;
  mproc_pool *p = pool_with(2, &o);
  int no = 0, yes = 1;
  mproc_async *a, *b, *c;
  ASSERT_OK(mproc_pool_apply_async(p, spin_task, NULL, &no, sizeof no, NULL,
                                   &a));
  ASSERT_OK(mproc_pool_apply_async(p, spin_task, NULL, &yes, sizeof yes, NULL,
                                   &b));
  ASSERT_ERR(mproc_async_get(a, MPROC_FOREVER), MPROC_ETIMEDOUT);
  ASSERT_ERR(mproc_async_get(b, MPROC_FOREVER), MPROC_ETIMEDOUT);
  int code, sig;
  const char *msg;
  ASSERT_OK(mproc_async_error(a, &code, &sig, &msg));
  ASSERT_EQ(sig, SIGTERM);
  ASSERT_NOT_NULL(strstr(msg, "task_timeout"));
  ASSERT_OK(mproc_async_error(b, &code, &sig, &msg));
  ASSERT_EQ(sig, SIGKILL);
  mproc_async_free(a);
  mproc_async_free(b);
  int v = 42;
  ASSERT_OK(mproc_pool_apply_async(p, ok_task, NULL, &v, sizeof v, NULL, &c));
  ASSERT_OK(mproc_async_get(c, MPROC_FOREVER));
  size_t len;
  const int *res = mproc_async_data(c, &len);
  ASSERT_EQ(*res, 42);
  mproc_async_free(c);
  pool_done(p);
  return 0;
}

/* A map chunk over task_timeout fails from its first unfinished item. */
static int slow_at_5(const void *in, void *out, void *ctx) {
  (void)ctx;
  long x;
  memcpy(&x, in, sizeof x);
  if (x == 5) {
    for (;;) {
      test_sleep(0.01);
    }
  }
  memcpy(out, &x, sizeof x);
  return 0;
}

TEST_IMPL(pool_map_chunk_timeout) {
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.task_timeout = 0.3;
  mproc_pool *p = pool_with(2, &o);
  long in[20], out[20];
  for (int i = 0; i < 20; i++) {
    in[i] = i;
  }
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = 4;
  mproc_map_error me;
  ASSERT_ERR(mproc_pool_map(p, slow_at_5, NULL, in, 20, sizeof *in, out,
                            sizeof *out, &mo, &me),
             MPROC_ETIMEDOUT);
  ASSERT_UEQ(me.index, 5);
  ASSERT_EQ(me.error, MPROC_ETIMEDOUT);
  for (int i = 0; i < 20; i++) {
    if (i < 5 || i >= 8) {
      ASSERT_EQ(out[i], i);
    }
  }
  pool_done(p);
  return 0;
}

/* ---- on_death ---- */

typedef struct board {
  int pid; /* the worker in a victim task */
  int inits;
} board;

static int victim(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)t, (void)len;
  board *b = *(board *const *)arg;
  __atomic_store_n(&b->pid, (int)getpid(), __ATOMIC_SEQ_CST);
  test_sleep(60);
  return 0;
}

static int sleepy(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)t, (void)arg, (void)len;
  test_sleep(0.5);
  return 0;
}

static int wait_pid(board *b) {
  double until = test_now() + 10;
  while (__atomic_load_n(&b->pid, __ATOMIC_SEQ_CST) == 0 &&
         test_now() < until) {
    test_sleep(0.001);
  }
  return __atomic_load_n(&b->pid, __ATOMIC_SEQ_CST);
}

/* MPROC_POOL_BREAK: the dead worker's task fails with MPROC_EWORKERDIED,
 * everything else outstanding and every later submission with
 * MPROC_EBROKEN; close and join still return. */
TEST_IMPL_ALL_METHODS(pool_on_death_break) {
  board *b;
  ASSERT_OK(mproc_shm_calloc((void **)&b, 1, sizeof *b));
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.on_death = MPROC_POOL_BREAK;
  mproc_pool *p = pool_with(2, &o);
  mproc_async *v, *others[4];
  ASSERT_OK(mproc_pool_apply_async(p, victim, NULL, &b, sizeof b, NULL, &v));
  int pid = wait_pid(b);
  ASSERT_GT(pid, 0);
  for (int i = 0; i < 4; i++) {
    ASSERT_OK(mproc_pool_apply_async(p, sleepy, NULL, NULL, 0, NULL,
                                     &others[i]));
  }
  ASSERT_OK(kill(pid, SIGKILL));
  ASSERT_ERR(mproc_async_get(v, MPROC_FOREVER), MPROC_EWORKERDIED);
  for (int i = 0; i < 4; i++) {
    int rc = mproc_async_get(others[i], MPROC_FOREVER);
    /* One may have finished on the other worker before the break. */
    ASSERT(rc == MPROC_EBROKEN || rc == 0);
    mproc_async_free(others[i]);
  }
  mproc_async_free(v);
  mproc_async *late;
  ASSERT_ERR(mproc_pool_apply_async(p, sleepy, NULL, NULL, 0, NULL, &late),
             MPROC_EBROKEN);
  pool_done(p);
  ASSERT_OK(mproc_shm_free(b));
  return 0;
}

TEST_IMPL(pool_on_death_bad_value) {
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.on_death = 7;
  mproc_pool *p;
  ASSERT_ERR(mproc_pool_new(&p, &o), MPROC_EINVAL);
  o.on_death = 0;
  o.timeout_grace = -1;
  ASSERT_ERR(mproc_pool_new(&p, &o), MPROC_EINVAL);
  return 0;
}

/* ---- respawn backoff ---- */

/* Succeeds for the first two workers, fails for every later one. */
static int init_first_two(mproc_task *t, const void *arg, size_t len,
                          void *ctx) {
  (void)ctx;
  (void)len;
  board *b = *(board *const *)arg;
  int n = __atomic_add_fetch(&b->inits, 1, __ATOMIC_SEQ_CST);
  if (n > 2) {
    mproc_task_fail(t, "no more workers (start %d)", n);
    return 1;
  }
  return 0;
}

/* Replacements whose initializer fails are retried with a backoff and
 * given up after 5 failures in a row: no respawn loop, and the pool with
 * no worker left is broken, so nothing waits for ever. */
TEST_IMPL_ALL_METHODS(pool_respawn_initializer_fails_backoff) {
  board *b;
  ASSERT_OK(mproc_shm_calloc((void **)&b, 1, sizeof *b));
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.initializer = init_first_two;
  o.initarg = &b;
  o.initarg_len = sizeof b;
  o.maxtasksperchild = 1;
  mproc_pool *p = pool_with(2, &o);
  mproc_async *r[6];
  for (int i = 0; i < 6; i++) {
    int v = i;
    ASSERT_OK(mproc_pool_apply_async(p, ok_task, NULL, &v, sizeof v, NULL,
                                     &r[i]));
  }
  int ok = 0, broken = 0;
  for (int i = 0; i < 6; i++) {
    int rc = mproc_async_get(r[i], MPROC_FOREVER);
    ok += rc == 0;
    broken += rc == MPROC_EBROKEN;
    mproc_async_free(r[i]);
  }
  /* The two first workers ran one task each, then no replacement could
   * start: the other four fail, none waits for ever. */
  ASSERT_EQ(ok, 2);
  ASSERT_EQ(broken, 4);
  /* 2 good starts, then at most 5 failures per slot (plus the rescue
   * start in slot 0): bounded, not a loop. */
  int inits = __atomic_load_n(&b->inits, __ATOMIC_SEQ_CST);
  ASSERT_GE(inits, 2 + 5);
  ASSERT_LE(inits, 2 + 2 * 5 + 1);
  mproc_async *late;
  ASSERT_ERR(mproc_pool_apply_async(p, ok_task, NULL, NULL, 0, NULL, &late),
             MPROC_EBROKEN);
  pool_done(p);
  ASSERT_OK(mproc_shm_free(b));
  return 0;
}

/* ---- cancel from a signal handler ---- */

static mproc_pool *g_cancel_pool;

static void on_alarm(int sig) {
  (void)sig;
  mproc_pool_cancel(g_cancel_pool);
}

static int slow_item(const void *in, void *out, void *ctx) {
  (void)ctx;
  (void)in;
  test_sleep(0.01);
  memset(out, 1, 1);
  return 0;
}

/* mproc_pool_cancel in a SIGALRM handler during a long map: the map
 * returns MPROC_ECANCELED promptly, later work gets MPROC_ECLOSED, join
 * returns, no worker is left. */
TEST_IMPL(pool_cancel_from_signal_handler) {
  mproc_pool *p = pool_with(2, NULL);
  g_cancel_pool = p;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sa.sa_flags = SA_RESTART;
  ASSERT_OK(sigaction(SIGALRM, &sa, NULL));
  struct itimerval itv;
  memset(&itv, 0, sizeof itv);
  itv.it_value.tv_usec = 200000;
  ASSERT_OK(setitimer(ITIMER_REAL, &itv, NULL));
  static char in[2000], out[2000];
  double t0 = test_now();
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = 1;
  ASSERT_ERR(mproc_pool_map(p, slow_item, NULL, in, sizeof in, 1, out, 1, &mo,
                            NULL),
             MPROC_ECANCELED);
  /* 2000 items of 10 ms on 2 workers would take 10 s. */
  ASSERT_DBL_LE(test_now() - t0, 5.0);
  mproc_async *late;
  ASSERT_ERR(mproc_pool_apply_async(p, ok_task, NULL, NULL, 0, NULL, &late),
             MPROC_ECLOSED);
  ASSERT_OK(mproc_pool_join(p, MPROC_FOREVER));
  ASSERT_OK(mproc_pool_free(p));
  signal(SIGALRM, SIG_DFL);
  return 0;
}

/* ---- stdout and replacements forked while the program prints ---- */

static int noop_task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)t, (void)arg, (void)len;
  return 0;
}

/* The program prints numbered lines to a buffered stdout (a file) while
 * the pool forks replacement after replacement (maxtasksperchild 1) from
 * its own threads: every line is in the file exactly once.  A child that
 * inherited the parent's unflushed buffer and flushed it at its end
 * wrote lines twice (seen with examples/pool_faults). */
TEST_IMPL_ALL_METHODS(pool_replacements_do_not_repeat_stdout) {
  char path[] = "/tmp/mproc-test-stdout-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  fflush(stdout);
  int saved = dup(STDOUT_FILENO);
  ASSERT_GE(saved, 0);
  ASSERT_GE(dup2(fd, STDOUT_FILENO), 0);
  setvbuf(stdout, NULL, _IOFBF, 1 << 16);
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.maxtasksperchild = 1;
  mproc_pool *p = pool_with(2, &o);
  enum { TASKS = 60, LINES = 3000 };
  mproc_async *r[TASKS];
  int line = 0;
  for (int i = 0; i < TASKS; i++) {
    ASSERT_OK(mproc_pool_apply_async(p, noop_task, NULL, NULL, 0, NULL, &r[i]));
    for (int k = 0; k < LINES / TASKS; k++) {
      printf("line %d\n", line++);
    }
  }
  for (int i = 0; i < TASKS; i++) {
    ASSERT_OK(mproc_async_get(r[i], MPROC_FOREVER));
    mproc_async_free(r[i]);
    printf("line %d\n", line++);
  }
  ASSERT_OK(mproc_pool_close(p));
  ASSERT_OK(mproc_pool_join(p, MPROC_FOREVER));
  ASSERT_OK(mproc_pool_free(p));
  fflush(stdout);
  ASSERT_GE(dup2(saved, STDOUT_FILENO), 0);
  close(saved);
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* Count every line. */
  FILE *f = fdopen(fd, "r");
  ASSERT_NOT_NULL(f);
  rewind(f);
  static unsigned char seen[LINES + TASKS];
  char buf[64];
  int total = 0, dup = 0;
  while (fgets(buf, sizeof buf, f) != NULL) {
    int v;
    ASSERT_EQ(sscanf(buf, "line %d", &v), 1);
    ASSERT(v >= 0 && v < line);
    dup += seen[v]++ > 0;
    total++;
  }
  fclose(f);
  unlink(path);
  if (dup > 0) {
    fprintf(stderr, "# %d of %d lines written twice\n", dup, total);
  }
  ASSERT_EQ(dup, 0);
  ASSERT_EQ(total, line);
  return 0;
}

/* ---- map over arena memory: no copy in, none out ---- */

static int sqr_or_die(const void *in, void *out, void *ctx) {
  (void)ctx;
  long x;
  memcpy(&x, in, sizeof x);
  if (x == 777) {
    raise(SIGKILL);
  }
  long y = x * x + 1;
  memcpy(out, &y, sizeof y);
  return 0;
}

/* Input and output made with mproc_shm_alloc: the workers read and write
 * them in place, the results are right, the output block is still the
 * caller's to free (not freed by the map), and the records of the items a
 * death lost are zeros there too. */
TEST_IMPL_ALL_METHODS(pool_map_arena_in_and_out) {
  mproc_pool *p = pool_with(2, NULL);
  size_t n = 5000;
  long *in, *out;
  ASSERT_OK(mproc_shm_alloc((void **)&in, n * sizeof *in));
  ASSERT_OK(mproc_shm_alloc((void **)&out, n * sizeof *out));
  for (size_t i = 0; i < n; i++) {
    in[i] = (long)i;
    out[i] = -1;
  }
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = 100;
  /* 777 is not in the first map: only 0..776. */
  ASSERT_OK(mproc_pool_map(p, sqr_or_die, NULL, in, 777, sizeof *in, out,
                           sizeof *out, &mo, NULL));
  for (size_t i = 0; i < 777; i++) {
    ASSERT_EQ(out[i], (long)(i * i + 1));
  }
  ASSERT_EQ(out[777], -1); /* not part of that map: untouched */
  mproc_map_error me;
  ASSERT_ERR(mproc_pool_map(p, sqr_or_die, NULL, in, n, sizeof *in, out,
                            sizeof *out, &mo, &me),
             MPROC_EWORKERDIED);
  ASSERT_UEQ(me.index, 777);
  for (size_t i = 0; i < n; i++) {
    if (i >= 777 && i < 800) {
      ASSERT_EQ(out[i], 0); /* lost with the worker: zeros */
    } else {
      ASSERT_EQ(out[i], (long)(i * i + 1));
    }
  }
  ASSERT_OK(mproc_shm_free(in));
  ASSERT_OK(mproc_shm_free(out));
  pool_done(p);
  return 0;
}

static int sq_plus_one(const void *in, void *out, void *ctx) {
  (void)ctx;
  long x;
  memcpy(&x, in, sizeof x);
  long y = x * x + 1;
  memcpy(out, &y, sizeof y);
  return 0;
}

/* In place: out == in (same size) maps the records onto themselves, in
 * arena memory (the workers read and write the one buffer) and in the
 * caller's own memory; each result is the function of its own input.
 * Other overlaps are refused before anything runs. */
TEST_IMPL_ALL_METHODS(pool_map_in_place) {
  mproc_pool *p = pool_with(2, NULL);
  size_t n = 3000;
  long *a;
  ASSERT_OK(mproc_shm_alloc((void **)&a, n * sizeof *a));
  long *h = malloc(n * sizeof *h);
  ASSERT_NOT_NULL(h);
  for (size_t i = 0; i < n; i++) {
    a[i] = (long)i + 3;
    h[i] = (long)i + 5;
  }
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = 64;
  mproc_map_error me;
  ASSERT_OK(mproc_pool_map(p, sq_plus_one, NULL, a, n, sizeof *a, a, sizeof *a, &mo,
                           &me));
  ASSERT_OK(mproc_pool_map(p, sq_plus_one, NULL, h, n, sizeof *h, h, sizeof *h,
                           NULL, NULL));
  for (size_t i = 0; i < n; i++) {
    ASSERT_EQ(a[i], (long)((i + 3) * (i + 3) + 1));
    ASSERT_EQ(h[i], (long)((i + 5) * (i + 5) + 1));
  }
  /* map_async too. */
  mproc_async *r;
  ASSERT_OK(mproc_pool_map_async(p, sq_plus_one, NULL, a, 100, sizeof *a, a,
                                 sizeof *a, &mo, &r));
  ASSERT_OK(mproc_async_get(r, 30 * test_timeout_mult()));
  mproc_async_free(r);
  ASSERT_EQ(a[7], (long)((10 * 10 + 1) * (10 * 10 + 1) + 1));
  /* Shifted by one record, or the same start with another record size:
   * refused, and nothing was written. */
  a[0] = 11;
  a[1] = 12;
  ASSERT_ERR(mproc_pool_map(p, sq_plus_one, NULL, a, 10, sizeof *a, a + 1,
                            sizeof *a, NULL, NULL),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_pool_map(p, sq_plus_one, NULL, a + 1, 10, sizeof *a, a,
                            sizeof *a, NULL, NULL),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_pool_map(p, sq_plus_one, NULL, a, 10, 2 * sizeof *a, a,
                            sizeof *a, NULL, NULL),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_pool_map_async(p, sq_plus_one, NULL, h, 10, sizeof *h, h + 2,
                                  sizeof *h, NULL, &r),
             MPROC_EINVAL);
  ASSERT_EQ(a[0], 11);
  ASSERT_EQ(a[1], 12);
  /* Adjacent, not overlapping: fine. */
  ASSERT_OK(mproc_pool_map(p, sq_plus_one, NULL, a, 10, sizeof *a, a + 10,
                           sizeof *a, NULL, NULL));
  ASSERT_EQ(a[10], 11 * 11 + 1);
  ASSERT_OK(mproc_shm_free(a));
  free(h);
  pool_done(p);
  return 0;
}

/* ---- cancel_pending: drain, do not kill ---- */

static int nap_task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  double s;
  memcpy(&s, arg, sizeof s);
  (void)len;
  test_sleep(s);
  int pid = (int)getpid();
  return mproc_task_return(t, &pid, sizeof pid);
}

static int long_task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  int *started = *(int *const *)arg;
  (void)len;
  __atomic_store_n(started, 1, __ATOMIC_SEQ_CST);
  test_sleep(0.3);
  int pid = (int)getpid();
  return mproc_task_return(t, &pid, sizeof pid);
}

static mproc_pool *g_drain_pool;
static long *g_drain_out;

/* Signals the process once a few of the map's results are in (the
 * output is arena memory, written in place as the items finish). */
static void *drain_watcher(void *arg) {
  (void)arg;
  for (;;) {
    int done = 0;
    for (int i = 0; i < 400; i++) {
      done += __atomic_load_n(&g_drain_out[i], __ATOMIC_RELAXED) != 0;
    }
    if (done >= 5) {
      break;
    }
    test_sleep(0.001);
  }
  kill(getpid(), SIGALRM);
  return NULL;
}

static void on_alarm_drain(int sig) {
  (void)sig;
  mproc_pool_cancel_pending(g_drain_pool);
}

static int nap_item(const void *in, void *out, void *ctx) {
  (void)ctx;
  long x;
  memcpy(&x, in, sizeof x);
  test_sleep(0.02);
  long y = x + 1000;
  memcpy(out, &y, sizeof y);
  return 0;
}

/* The running task finishes, the queued ones fail with MPROC_ECANCELED,
 * no worker is killed, the pool takes new work; a map stops handing out
 * items (from a signal handler), its finished items are right, the rest
 * are reported cancelled and read zeros. */
TEST_IMPL(pool_cancel_pending_drains) {
  mproc_pool *p = pool_with(1, NULL);
  double short_s = 0.01;
  int *started;
  ASSERT_OK(mproc_shm_calloc((void **)&started, 1, sizeof *started));
  mproc_async *run, *queued[5];
  ASSERT_OK(mproc_pool_apply_async(p, long_task, NULL, &started, sizeof started,
                                   NULL, &run));
  while (!__atomic_load_n(started, __ATOMIC_SEQ_CST)) {
    test_sleep(0.001); /* until the worker runs it */
  }
  ASSERT_OK(mproc_shm_free(started));
  for (int i = 0; i < 5; i++) {
    ASSERT_OK(mproc_pool_apply_async(p, nap_task, NULL, &short_s,
                                     sizeof short_s, NULL, &queued[i]));
  }
  ASSERT_OK(mproc_pool_cancel_pending(p));
  for (int i = 0; i < 5; i++) {
    ASSERT_ERR(mproc_async_get(queued[i], MPROC_FOREVER), MPROC_ECANCELED);
    mproc_async_free(queued[i]);
  }
  ASSERT_OK(mproc_async_get(run, MPROC_FOREVER));
  size_t len;
  int pid1 = *(const int *)mproc_async_data(run, &len);
  mproc_async_free(run);
  void *res;
  ASSERT_OK(mproc_pool_apply(p, nap_task, NULL, &short_s, sizeof short_s, &res,
                             &len));
  ASSERT_EQ(*(int *)res, pid1); /* the same worker: nobody was killed */
  free(res);
  pool_done(p);

  /* A map, drained from a SIGALRM handler once a few items are done. */
  p = pool_with(2, NULL);
  g_drain_pool = p;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm_drain;
  sa.sa_flags = SA_RESTART;
  ASSERT_OK(sigaction(SIGALRM, &sa, NULL));
  enum { N = 400 };
  static long in[N];
  long *out;
  ASSERT_OK(mproc_shm_calloc((void **)&out, N, sizeof *out));
  g_drain_out = out;
  for (int i = 0; i < N; i++) {
    in[i] = i;
  }
  pthread_t watcher;
  ASSERT_OK(pthread_create(&watcher, NULL, drain_watcher, NULL));
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = 1;
  mproc_map_error me;
  ASSERT_ERR(mproc_pool_map(p, nap_item, NULL, in, N, sizeof *in, out,
                            sizeof *out, &mo, &me),
             MPROC_ECANCELED);
  ASSERT_OK(pthread_join(watcher, NULL));
  signal(SIGALRM, SIG_DFL);
  ASSERT_GT(me.index, 0);
  ASSERT_LT(me.index, N);
  int done = 0;
  for (int i = 0; i < N; i++) {
    if (out[i] != 0) {
      ASSERT_EQ(out[i], i + 1000);
      done++;
    }
  }
  ASSERT_GT(done, 0);
  ASSERT_LT(done, N);
  /* Still open, same workers. */
  mproc_pool_stats st;
  ASSERT_OK(mproc_pool_stats_get(p, &st));
  ASSERT_EQ(st.workers_died, 0);
  ASSERT_OK(mproc_pool_map(p, nap_item, NULL, in, 10, sizeof *in, out,
                           sizeof *out, &mo, NULL));
  ASSERT_EQ(out[9], 1009);
  ASSERT_OK(mproc_shm_free(out));
  pool_done(p);
  return 0;
}
