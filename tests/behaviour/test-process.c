/*
 * tests/behaviour/test-process.c - Process, ported from the process cases
 * of CPython's Lib/test/_test_multiprocessing.py (test_current,
 * test_args_argument, test_process, test_terminate, test_kill,
 * test_recursion, test_sentinel, test_close, test_many_processes,
 * test_active_children, test_parent_process, _TestSubclassingProcess's
 * exit codes, _TestPollEintr) and mproc's own rules (no zombies, stdin,
 * stdio flushing, misuse errors).
 */
#include "internal.h"
#include "task.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

/* ---- targets ---- */

static int t_return_arg(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  return len == sizeof(int) ? *(const int *)arg : 99;
}

static int t_exit_arg(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  exit(*(const int *)arg);
}

static int t_sleep_arg(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  test_sleep(*(const double *)arg);
  return 0;
}

/* arg: an fd; read a byte from it (the test's word to end), return 0. */
static int t_wait_word(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  int fd;
  memcpy(&fd, arg, sizeof fd);
  char c;
  return mproc__read_full(fd, &c, 1) == 1 ? 0 : 1;
}

/* Tell a t_wait_word child to end: write the byte, close the pipe. */
static void send_word(int *go) {
  ASSERT_EQ(write(go[1], "g", 1), 1);
  close(go[1]);
}

static int t_raise_arg(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  raise(*(const int *)arg);
  return 50;
}

static int t_noop(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  return 0;
}

static mproc_process *start_target(mproc_target_fn fn, const void *arg,
                                   size_t len, const mproc_process_opts *o) {
  mproc_process *p = NULL;
  ASSERT_OK(mproc_process_new(&p, fn, NULL, arg, len, o));
  ASSERT_OK(mproc_process_start(p));
  return p;
}

static int join_code(mproc_process *p) {
  int code = -1000;
  ASSERT_OK(mproc_process_join(p, 30));
  ASSERT_OK(mproc_process_exitcode(p, &code));
  return code;
}

/* Start a target, join it, free it; its exit code. */
static int run_to_end(mproc_target_fn fn, const void *arg, size_t len) {
  mproc_process *p = start_target(fn, arg, len, NULL);
  int code = join_code(p);
  ASSERT_OK(mproc_process_free(p));
  return code;
}

/* ---- current process ---- */

TEST_IMPL(process_current) {
  mproc_process *me = mproc_current_process();
  ASSERT_NOT_NULL(me);
  ASSERT_STR_EQ(mproc_process_name(me), "MainProcess");
  ASSERT_EQ(mproc_process_pid(me), getpid());
  ASSERT_EQ(mproc_process_is_alive(me), 1);
  ASSERT_EQ(mproc_process_daemon(me), 0);
  int code;
  ASSERT_ERR(mproc_process_exitcode(me, &code), MPROC_ERUNNING);
  ASSERT_ERR(mproc_process_join(me, 0), MPROC_ENOTCHILD);
  ASSERT_ERR(mproc_process_terminate(me), MPROC_ENOTCHILD);
  ASSERT_ERR(mproc_process_free(me), MPROC_EINVAL);
  ASSERT_NULL(mproc_parent_process());
  ASSERT_GE(mproc_cpu_count(), 1);
  return 0;
}

/* ---- arguments ---- */

static int t_check_bytes(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  const unsigned char *b = arg;
  if (len == 0) {
    return arg == NULL ? 0 : 2;
  }
  for (size_t i = 0; i < len; i++) {
    if (b[i] != (unsigned char)(i * 7 + 3)) {
      return 3;
    }
  }
  return 0;
}

TEST_IMPL(process_args_copied) {
  static const size_t sizes[] = {0, 1, 100, 1 << 20};
  for (size_t k = 0; k < MPROC__ARRAY_SIZE(sizes); k++) {
    size_t n = sizes[k];
    unsigned char *buf = n ? malloc(n) : NULL;
    for (size_t i = 0; i < n; i++) {
      buf[i] = (unsigned char)(i * 7 + 3);
    }
    mproc_process *p = NULL;
    ASSERT_OK(mproc_process_new(&p, t_check_bytes, NULL, buf, n, NULL));
    /* The object has its own copy: scribbling on ours changes nothing. */
    if (n) {
      memset(buf, 0xff, n);
    }
    free(buf);
    ASSERT_OK(mproc_process_start(p));
    ASSERT_EQ(join_code(p), 0);
    ASSERT_OK(mproc_process_free(p));
  }
  return 0;
}

/* ---- lifecycle and exit codes ---- */

TEST_IMPL(process_lifecycle) {
  mproc_process *p = NULL;
  /* The child runs until told, so the checks on a running child hold
   * however late this process gets the CPU. */
  int go[2];
  ASSERT_OK(pipe(go));
  ASSERT_OK(mproc_process_new(&p, t_wait_word, NULL, &go[0], sizeof go[0],
                              NULL));
  int code;
  ASSERT_EQ(mproc_process_pid(p), 0);
  ASSERT_EQ(mproc_process_is_alive(p), 0);
  ASSERT_ERR(mproc_process_exitcode(p, &code), MPROC_ENOTSTARTED);
  ASSERT_ERR(mproc_process_join(p, 0), MPROC_ENOTSTARTED);
  ASSERT_ERR(mproc_process_sentinel(p), MPROC_ENOTSTARTED);
  ASSERT_ERR(mproc_process_terminate(p), MPROC_ENOTSTARTED);
  ASSERT_EQ(mproc_active_children(NULL, 0), 0);

  ASSERT_OK(mproc_process_start(p));
  ASSERT_GT(mproc_process_pid(p), 0);
  ASSERT_NE(mproc_process_pid(p), getpid());
  ASSERT_EQ(mproc_process_is_alive(p), 1);
  ASSERT_ERR(mproc_process_exitcode(p, &code), MPROC_ERUNNING);
  mproc_process *kids[4];
  ASSERT_EQ(mproc_active_children(kids, 4), 1);
  ASSERT_PTR_EQ(kids[0], p);
  ASSERT_ERR(mproc_process_start(p), MPROC_ESTARTED);

  close(go[0]);
  send_word(go);
  ASSERT_EQ(join_code(p), 0);
  ASSERT_EQ(mproc_process_is_alive(p), 0);
  ASSERT_EQ(mproc_active_children(kids, 4), 0);
  /* join is idempotent. */
  ASSERT_OK(mproc_process_join(p, 0));
  ASSERT_OK(mproc_process_join(p, -1));
  pid_t pid = mproc_process_pid(p);
  ASSERT_OK(mproc_process_close(p));
  ASSERT_EQ(mproc_process_pid(p), pid);
  ASSERT_OK(mproc_process_free(p));
  ASSERT_OK(mproc_process_free(NULL));
  return 0;
}

TEST_IMPL_ALL_METHODS(process_exitcodes) {
  static const int rets[] = {0, 1, 5, 255, 256, 300};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(rets); i++) {
    mproc_process *p = start_target(t_return_arg, &rets[i], sizeof(int), NULL);
    ASSERT_EQ(join_code(p), rets[i] & 0xff);
    ASSERT_OK(mproc_process_free(p));
  }
  static const int exits[] = {0, 3, 8, 42};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(exits); i++) {
    mproc_process *p = start_target(t_exit_arg, &exits[i], sizeof(int), NULL);
    ASSERT_EQ(join_code(p), exits[i]);
    ASSERT_OK(mproc_process_free(p));
  }
  static const int sigs[] = {SIGTERM, SIGKILL, SIGSEGV, SIGUSR1};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(sigs); i++) {
    mproc_process *p = start_target(t_raise_arg, &sigs[i], sizeof(int), NULL);
    ASSERT_EQ(join_code(p), -sigs[i]);
    ASSERT_OK(mproc_process_free(p));
  }
  return 0;
}

/* Python's test_terminate / test_kill: join(0) polls, join(0.5) waits
 * about 0.5 s and leaves the child alive; after the signal the join is
 * prompt and the exit code is -SIGTERM / -SIGKILL. */
static void terminate_case(int use_kill) {
  double t = 30;
  mproc_process *p = start_target(t_sleep_arg, &t, sizeof t, NULL);
  double t0 = test_now();
  ASSERT_ERR(mproc_process_join(p, 0), MPROC_ETIMEDOUT);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  t0 = test_now();
  ASSERT_ERR(mproc_process_join(p, 0.5), MPROC_ETIMEDOUT);
  double el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.5);
  ASSERT_DBL_LE(el, 0.5 + test_slack());
  ASSERT_EQ(mproc_process_is_alive(p), 1);
  int code;
  ASSERT_ERR(mproc_process_exitcode(p, &code), MPROC_ERUNNING);
  ASSERT_ERR(mproc_process_free(p), MPROC_ERUNNING);
  ASSERT_ERR(mproc_process_close(p), MPROC_ERUNNING);

  ASSERT_OK(use_kill ? mproc_process_kill(p) : mproc_process_terminate(p));
  t0 = test_now();
  ASSERT_OK(mproc_process_join(p, 10));
  ASSERT_DBL_LE(test_now() - t0, 1.0 + test_slack());
  ASSERT_OK(mproc_process_exitcode(p, &code));
  ASSERT_EQ(code, use_kill ? -SIGKILL : -SIGTERM);
  ASSERT_EQ(mproc_process_is_alive(p), 0);
  /* Signalling an ended process is not an error, as in Python. */
  ASSERT_OK(mproc_process_terminate(p));
  ASSERT_OK(mproc_process_free(p));
}

TEST_IMPL_ALL_METHODS(process_terminate) {
  terminate_case(0);
  return 0;
}

TEST_IMPL_ALL_METHODS(process_kill) {
  terminate_case(1);
  return 0;
}

TEST_IMPL(process_signal_errors) {
  double t = 30;
  mproc_process *p = start_target(t_sleep_arg, &t, sizeof t, NULL);
  ASSERT_ERR(mproc_process_signal(p, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_process_signal(p, -1), MPROC_EINVAL);
  ASSERT_ERR(mproc_process_signal(p, 10000), MPROC_EINVAL);
  ASSERT_OK(mproc_process_signal(p, SIGUSR2));
  ASSERT_EQ(join_code(p), -SIGUSR2);
  ASSERT_OK(mproc_process_free(p));
  return 0;
}

/* ---- misuse ---- */

TEST_IMPL(process_misuse) {
  mproc_process *p = (mproc_process *)0x1;
  ASSERT_ERR(mproc_process_new(NULL, t_noop, NULL, NULL, 0, NULL),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_process_new(&p, NULL, NULL, NULL, 0, NULL), MPROC_EINVAL);
  ASSERT_NULL(p);
  ASSERT_ERR(mproc_process_new(&p, t_noop, NULL, NULL, 5, NULL), MPROC_EINVAL);
  ASSERT_NULL(p);
  ASSERT_ERR(mproc_process_start(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_process_join(NULL, 1), MPROC_EINVAL);
  ASSERT_ERR(mproc_process_is_alive(NULL), MPROC_EINVAL);
  int code;
  ASSERT_ERR(mproc_process_exitcode(NULL, &code), MPROC_EINVAL);
  ASSERT_ERR(mproc_process_terminate(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_process_kill(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_process_sentinel(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_process_close(NULL), MPROC_EINVAL);
  ASSERT_EQ(mproc_process_pid(NULL), 0);
  ASSERT_STR_EQ(mproc_process_name(NULL), "");
  ASSERT_ERR(mproc_active_children(NULL, 3), MPROC_EINVAL);

  ASSERT_OK(mproc_process_new(&p, t_noop, NULL, NULL, 0, NULL));
  ASSERT_ERR(mproc_process_exitcode(p, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_process_join(p, NAN), MPROC_EINVAL);
  ASSERT_OK(mproc_process_start(p));
  ASSERT_ERR(mproc_process_join(p, NAN), MPROC_EINVAL);
  ASSERT_EQ(join_code(p), 0);
  /* close, then every method but pid/name/daemon/free is refused. */
  ASSERT_OK(mproc_process_close(p));
  ASSERT_OK(mproc_process_close(p));
  ASSERT_ERR(mproc_process_join(p, 0), MPROC_ECLOSED);
  ASSERT_ERR(mproc_process_is_alive(p), MPROC_ECLOSED);
  ASSERT_ERR(mproc_process_exitcode(p, &code), MPROC_ECLOSED);
  ASSERT_ERR(mproc_process_terminate(p), MPROC_ECLOSED);
  ASSERT_ERR(mproc_process_sentinel(p), MPROC_ECLOSED);
  ASSERT_ERR(mproc_process_start(p), MPROC_ECLOSED);
  ASSERT_OK(mproc_process_free(p));

  /* An unstarted object may be closed and freed. */
  ASSERT_OK(mproc_process_new(&p, t_noop, NULL, NULL, 0, NULL));
  ASSERT_OK(mproc_process_free(p));
  return 0;
}

/* Only the creating process may start, join or free an object. */
static mproc_process *shared_obj;

static int t_use_foreign(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  int code;
  if (mproc_process_start(shared_obj) != MPROC_EFORKED) return 1;
  if (mproc_process_join(shared_obj, 0) != MPROC_EFORKED) return 2;
  if (mproc_process_terminate(shared_obj) != MPROC_EFORKED) return 3;
  if (mproc_process_exitcode(shared_obj, &code) != MPROC_EFORKED) return 4;
  if (mproc_process_free(shared_obj) != MPROC_EFORKED) return 5;
  if (mproc_active_children(NULL, 0) != 0) return 6;
  return 0;
}

TEST_IMPL(process_foreign_object) {
  ASSERT_OK(mproc_process_new(&shared_obj, t_noop, NULL, NULL, 0, NULL));
  ASSERT_EQ(run_to_end(t_use_foreign, NULL, 0), 0);
  ASSERT_OK(mproc_process_free(shared_obj));
  return 0;
}

/* ---- names ---- */

static int name_fd = -1;

static void put_line(const char *s) {
  char buf[256];
  int n = snprintf(buf, sizeof buf, "%s\n", s);
  ASSERT_EQ(write(name_fd, buf, (size_t)n), n);
}

static int t_report_name(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  put_line(mproc_process_name(mproc_current_process()));
  return 0;
}

static int t_nested_names(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  put_line(mproc_process_name(mproc_current_process()));
  mproc_process *a = start_target(t_report_name, NULL, 0, NULL);
  if (join_code(a) != 0) return 1;
  mproc_process *b = start_target(t_report_name, NULL, 0, NULL);
  if (join_code(b) != 0) return 1;
  mproc_process_free(a);
  mproc_process_free(b);
  return 0;
}

static char *read_all(int fd) {
  static char buf[8192];
  ssize_t n = mproc__read_full(fd, buf, sizeof buf - 1);
  ASSERT_GE(n, 0);
  buf[n] = '\0';
  return buf;
}

TEST_IMPL(process_names) {
  int fds[2];
  ASSERT_OK(pipe(fds));
  name_fd = fds[1];
  mproc_process *p1 = start_target(t_report_name, NULL, 0, NULL);
  ASSERT_STR_EQ(mproc_process_name(p1), "Process-1");
  ASSERT_EQ(join_code(p1), 0);
  mproc_process *p2 = start_target(t_nested_names, NULL, 0, NULL);
  ASSERT_STR_EQ(mproc_process_name(p2), "Process-2");
  ASSERT_EQ(join_code(p2), 0);
  mproc_process_opts o = {.name = "worker"};
  mproc_process *p3 = start_target(t_nested_names, NULL, 0, &o);
  ASSERT_STR_EQ(mproc_process_name(p3), "worker");
  ASSERT_EQ(join_code(p3), 0);
  /* The counter counts objects, started or not. */
  mproc_process *p4 = NULL;
  ASSERT_OK(mproc_process_new(&p4, t_noop, NULL, NULL, 0, NULL));
  ASSERT_STR_EQ(mproc_process_name(p4), "Process-4");
  close(fds[1]);
  ASSERT_STR_EQ(read_all(fds[0]),
                "Process-1\nProcess-2\nProcess-2:1\nProcess-2:2\n"
                "worker\nProcess-3:1\nProcess-3:2\n");
  close(fds[0]);
  mproc_process_free(p1);
  mproc_process_free(p2);
  mproc_process_free(p3);
  mproc_process_free(p4);
  return 0;
}

/* Python's test_recursion: a tree of depth 2; each process reports its
 * identity. */
static int t_tree(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  int depth = len ? *(const int *)arg : 0;
  const char *name = mproc_process_name(mproc_current_process());
  put_line(name);
  if (depth > 0) {
    int next = depth - 1;
    for (int i = 0; i < 2; i++) {
      mproc_process *p = start_target(t_tree, &next, sizeof next, NULL);
      if (join_code(p) != 0) return 1;
      mproc_process_free(p);
    }
  }
  return 0;
}

TEST_IMPL(process_recursion) {
  int fds[2];
  ASSERT_OK(pipe(fds));
  name_fd = fds[1];
  int depth = 2;
  ASSERT_EQ(t_tree(&depth, sizeof depth, NULL), 0);
  close(fds[1]);
  ASSERT_STR_EQ(read_all(fds[0]),
                "MainProcess\nProcess-1\nProcess-1:1\nProcess-1:2\n"
                "Process-2\nProcess-2:1\nProcess-2:2\n");
  close(fds[0]);
  return 0;
}

/* ---- parent_process ---- */

static int t_parent_info(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  mproc_process *pp = mproc_parent_process();
  if (pp == NULL) return 1;
  if (mproc_process_pid(pp) != getppid()) return 2;
  if (strcmp(mproc_process_name(pp), "MainProcess") != 0) return 3;
  if (mproc_process_is_alive(pp) != 1) return 4;
  if (mproc_process_join(pp, 0) != MPROC_ETIMEDOUT) return 5;
  if (mproc_process_terminate(pp) != MPROC_ENOTCHILD) return 6;
  if (mproc_process_free(pp) != MPROC_EINVAL) return 7;
  return 0;
}

TEST_IMPL(process_parent_attributes) {
  ASSERT_EQ(run_to_end(t_parent_info, NULL, 0), 0);
  return 0;
}

/* Python's test_parent_process: a grandchild sees its parent alive, then,
 * once the parent was terminated, parent.join() returns and it is not
 * alive. */
static int t_grandchild_watch(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  mproc_process *pp = mproc_parent_process();
  put_line(mproc_process_is_alive(pp) == 1 ? "alive" : "not alive");
  if (mproc_process_join(pp, 10) != 0) {
    put_line("join failed");
    return 1;
  }
  put_line(mproc_process_is_alive(pp) == 0 ? "not alive" : "alive");
  return 0;
}

static int t_middle(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  mproc_process *g = start_target(t_grandchild_watch, NULL, 0, NULL);
  (void)g;
  test_sleep(30); /* terminated by the test */
  return 0;
}

TEST_IMPL(process_parent_process_join) {
  int fds[2];
  ASSERT_OK(pipe(fds));
  name_fd = fds[1];
  mproc_process *p = start_target(t_middle, NULL, 0, NULL);
  /* Terminate the middle process only once the grandchild saw it alive. */
  char first[7] = {0};
  ASSERT_EQ(mproc__read_full(fds[0], first, 6), 6);
  ASSERT_STR_EQ(first, "alive\n");
  ASSERT_OK(mproc_process_terminate(p));
  ASSERT_EQ(join_code(p), -SIGTERM);
  close(fds[1]);
  /* The grandchild was reparented to this process (a subreaper) and ends
   * on its own once it saw its parent go. */
  char *out = read_all(fds[0]);
  close(fds[0]);
  ASSERT_STR_EQ(out, "not alive\n");
  while (waitpid(-1, NULL, 0) > 0) {
  }
  ASSERT_OK(mproc_process_free(p));
  return 0;
}

/* ---- sentinel ---- */

TEST_IMPL(process_sentinel) {
  int go[2];
  ASSERT_OK(pipe(go));
  mproc_process *p = NULL;
  ASSERT_OK(mproc_process_new(&p, t_wait_word, NULL, &go[0], sizeof go[0],
                              NULL));
  ASSERT_ERR(mproc_process_sentinel(p), MPROC_ENOTSTARTED);
  ASSERT_OK(mproc_process_start(p));
  int fd = mproc_process_sentinel(p);
  ASSERT_GE(fd, 3);
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  ASSERT_EQ(poll(&pfd, 1, 0), 0); /* running until told */
  close(go[0]);
  double t0 = test_now();
  send_word(go);
  ASSERT_EQ(poll(&pfd, 1, (int)(5000 * test_timeout_mult())), 1);
  ASSERT_DBL_LE(test_now() - t0, 1.0 + test_slack());
  ASSERT_EQ(join_code(p), 0);
  ASSERT_OK(mproc_process_free(p));
  return 0;
}

/* ---- many processes ---- */

TEST_IMPL_ALL_METHODS(process_many) {
  enum { N = 100 };
  mproc_process *ps[N];
  double t = 0.05;
  for (int i = 0; i < N; i++) {
    ps[i] = start_target(t_sleep_arg, &t, sizeof t, NULL);
  }
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(join_code(ps[i]), 0);
    ASSERT_OK(mproc_process_free(ps[i]));
  }
  t = 30;
  for (int i = 0; i < N; i++) {
    ps[i] = start_target(t_sleep_arg, &t, sizeof t, NULL);
  }
  ASSERT_EQ(mproc_active_children(NULL, 0), N);
  for (int i = 0; i < N; i++) {
    ASSERT_OK(mproc_process_terminate(ps[i]));
  }
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(join_code(ps[i]), -SIGTERM);
    ASSERT_OK(mproc_process_free(ps[i]));
  }
  ASSERT_EQ(mproc_active_children(NULL, 0), 0);
  return 0;
}

TEST_IMPL_ALL_METHODS(process_active_children) {
  double t = 30, quick = 0;
  mproc_process *a = start_target(t_sleep_arg, &t, sizeof t, NULL);
  mproc_process *b = start_target(t_sleep_arg, &quick, sizeof quick, NULL);
  mproc_process *c = start_target(t_sleep_arg, &t, sizeof t, NULL);
  /* Wait for b's end, not for time: until it is a zombie or already
   * reaped in the background.  Not its sentinel: without pidfd that is a
   * pipe, which reads end-of-file while the child is still exiting. */
  pid_t bpid = mproc_process_pid(b);
  double end = test_now() + 30 * test_timeout_mult();
  char st;
  while ((st = test_proc_stat(bpid, NULL, NULL)) != 0 && st != 'Z' &&
         st != 'X') {
    ASSERT(test_now() < end);
    test_sleep(0.002);
  }
  mproc_process *out[1];
  /* Finished children are reaped and not listed; cap limits what is
   * written, not the count. */
  ASSERT_EQ(mproc_active_children(out, 1), 2);
  ASSERT(out[0] == a || out[0] == c);
  int code;
  ASSERT_OK(mproc_process_exitcode(b, &code));
  ASSERT_EQ(code, 0);
  ASSERT_OK(mproc_process_kill(a));
  ASSERT_OK(mproc_process_kill(c));
  ASSERT_EQ(join_code(a), -SIGKILL);
  ASSERT_EQ(join_code(c), -SIGKILL);
  ASSERT_EQ(mproc_active_children(NULL, 0), 0);
  mproc_process_free(a);
  mproc_process_free(b);
  mproc_process_free(c);
  return 0;
}

/* ---- no zombies, ever ---- */

TEST_IMPL_ALL_METHODS(process_reaped_without_join) {
  mproc_process *ps[5];
  pid_t pids[5];
  for (int i = 0; i < 5; i++) {
    int rc = 10 + i;
    ps[i] = start_target(t_return_arg, &rc, sizeof rc, NULL);
    pids[i] = mproc_process_pid(ps[i]);
  }
  /* Nobody joins: the reaper must collect them.  A zombie would still
   * have a /proc entry in state Z. */
  double end = test_now() + 5 * test_timeout_mult();
  for (int i = 0; i < 5; i++) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d", (int)pids[i]);
    while (access(path, F_OK) == 0) {
      ASSERT(test_now() < end);
      test_sleep(0.005);
    }
  }
  /* The exit codes were kept for a later join. */
  for (int i = 0; i < 5; i++) {
    int code;
    ASSERT_OK(mproc_process_exitcode(ps[i], &code));
    ASSERT_EQ(code, 10 + i);
    ASSERT_OK(mproc_process_free(ps[i]));
  }
  return 0;
}

/* ---- the child's stdio ---- */

static int t_stdin_is_devnull(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  char target[64] = {0};
  if (readlink("/proc/self/fd/0", target, sizeof target - 1) < 0) return 1;
  if (strcmp(target, "/dev/null") != 0) return 2;
  if (getchar() != EOF) return 3;
  return 0;
}

TEST_IMPL_ALL_METHODS(process_stdin_devnull) {
  ASSERT_EQ(run_to_end(t_stdin_is_devnull, NULL, 0), 0);
  return 0;
}

static int t_print_child(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  printf("[child]");
  return 0; /* no newline, no fflush: mproc flushes at the child's end */
}

/* Buffered output written before start appears once, not twice, and the
 * child's own buffered output is not lost. */
TEST_IMPL_ALL_METHODS(process_stdio_flushed_once) {
  int fds[2];
  ASSERT_OK(pipe(fds));
  pid_t sub = fork();
  ASSERT_GE(sub, 0);
  if (sub == 0) {
    close(fds[0]);
    dup2(fds[1], 1);
    close(fds[1]);
    setvbuf(stdout, NULL, _IOFBF, 4096);
    printf("[before]");
    mproc_process *p = start_target(t_print_child, NULL, 0, NULL);
    int code = join_code(p);
    printf("[after %d]", code);
    mproc_process_free(p);
    exit(0);
  }
  close(fds[1]);
  char *out = read_all(fds[0]);
  close(fds[0]);
  ASSERT_EQ(test_wait_pid(sub, 10), 0);
  ASSERT_STR_EQ(out, "[before][child][after 0]");
  return 0;
}

/* ---- signals during join (Python's _TestPollEintr) ---- */

static volatile sig_atomic_t got_usr1;
static void on_usr1(int sig) {
  (void)sig;
  got_usr1 = 1;
}

static pthread_t main_thread;

/* When the signal was sent (test_now), for the deadline check. */
static double usr1_sent_at;

/* The signal goes to the joining thread itself, so its poll sees EINTR.
 * arg: seconds to wait first (a double). */
static void *send_usr1_later(void *arg) {
  test_sleep(*(const double *)arg);
  usr1_sent_at = test_now(); /* read after pthread_join */
  pthread_kill(main_thread, SIGUSR1);
  return NULL;
}

TEST_IMPL(process_join_survives_eintr) {
  struct sigaction sa = {.sa_handler = on_usr1}; /* no SA_RESTART */
  sigaction(SIGUSR1, &sa, NULL);
  main_thread = pthread_self();
  double t = 0.6;
  double t0 = test_now(); /* before the start: the child sleeps 0.6 s after */
  mproc_process *p = start_target(t_sleep_arg, &t, sizeof t, NULL);
  pthread_t th;
  double delay = 0.2;
  ASSERT_EQ(pthread_create(&th, NULL, send_usr1_later, &delay), 0);
  ASSERT_EQ(join_code(p), 0);
  ASSERT_DBL_GE(test_now() - t0, 0.5);
  pthread_join(th, NULL);
  ASSERT_EQ(got_usr1, 1);
  ASSERT_OK(mproc_process_free(p));
  /* A timed join interrupted by a signal keeps its deadline: it ends
   * before a full timeout counted from the signal could have passed
   * (the signal comes late in the timeout, so a busy machine's wake-up
   * delays stay far from that bound). */
  t = 30;
  p = start_target(t_sleep_arg, &t, sizeof t, NULL);
  delay = 0.8;
  ASSERT_EQ(pthread_create(&th, NULL, send_usr1_later, &delay), 0);
  t0 = test_now();
  ASSERT_ERR(mproc_process_join(p, 1.0), MPROC_ETIMEDOUT);
  double t1 = test_now();
  ASSERT_DBL_GE(t1 - t0, 1.0);
  pthread_join(th, NULL);
  ASSERT_DBL_LE(t1, usr1_sent_at + 1.0);
  ASSERT_OK(mproc_process_kill(p));
  ASSERT_EQ(join_code(p), -SIGKILL);
  ASSERT_OK(mproc_process_free(p));
  return 0;
}

/* ---- threads ---- */

static void *start_from_thread(void *arg) {
  mproc_process **out = arg;
  double t = 0.1;
  *out = start_target(t_sleep_arg, &t, sizeof t, NULL);
  return NULL;
}

TEST_IMPL_ALL_METHODS(process_start_from_threads) {
  pthread_t th[4];
  mproc_process *ps[4];
  for (int i = 0; i < 4; i++) {
    ASSERT_EQ(pthread_create(&th[i], NULL, start_from_thread, &ps[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
  }
  for (int i = 0; i < 4; i++) {
    ASSERT_EQ(join_code(ps[i]), 0);
    ASSERT_OK(mproc_process_free(ps[i]));
  }
  return 0;
}

/* ---- cpu_count ---- */

TEST_IMPL(process_cpu_count_affinity) {
  pid_t sub = fork();
  ASSERT_GE(sub, 0);
  if (sub == 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) _exit(2);
    _exit(mproc_cpu_count() == 1 ? 0 : 1);
  }
  ASSERT_EQ(test_wait_pid(sub, 10), 0);
  return 0;
}

/* ---- logging ---- */

static int t_log_line(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  mproc_log(MPROC_LOG_INFO, "hello from %s", "the child");
  return 0;
}

static char *run_logged(const char *env) {
  int fds[2];
  ASSERT_OK(pipe(fds));
  pid_t sub = fork();
  ASSERT_GE(sub, 0);
  if (sub == 0) {
    close(fds[0]);
    dup2(fds[1], 2);
    close(fds[1]);
    if (env) {
      setenv("MPROC_LOG", env, 1);
    } else {
      unsetenv("MPROC_LOG");
    }
    mproc_process *p = start_target(t_log_line, NULL, 0, NULL);
    int code = join_code(p);
    mproc_process_free(p);
    exit(code);
  }
  close(fds[1]);
  char *out = strdup(read_all(fds[0]));
  close(fds[0]);
  ASSERT_EQ(test_wait_pid(sub, 10), 0);
  return out;
}

TEST_IMPL(log_off_by_default_and_on_by_env) {
  char *quiet = run_logged(NULL);
  ASSERT_STR_EQ(quiet, "");
  free(quiet);
  char *loud = run_logged("info");
  ASSERT_NOT_NULL(strstr(loud, "[INFO/Process-1] hello from the child\n"));
  ASSERT_NOT_NULL(strstr(loud, "[INFO/MainProcess] started Process-1"));
  ASSERT_NULL(strstr(loud, "[DEBUG/"));
  free(loud);
  char *dbg = run_logged("debug");
  ASSERT_NOT_NULL(strstr(dbg, "[INFO/Process-1] hello from the child\n"));
  free(dbg);
  ASSERT_ERR(mproc_log_set_level(7), MPROC_EINVAL);
  ASSERT_ERR(mproc_log_set_level(-1), MPROC_EINVAL);
  ASSERT_OK(mproc_log_set_level(MPROC_LOG_WARN));
  ASSERT_EQ(mproc_log_get_level(), MPROC_LOG_WARN);
  ASSERT_OK(mproc_log_set_level(MPROC_LOG_OFF));
  return 0;
}

/* More children end at once than the io_uring completion ring holds:
 * the overflowing completions are kept by the kernel and still drained,
 * so every exit code arrives. */
TEST_IMPL_ALL_METHODS(process_many_unjoined_overflow) {
  enum { N = 300 };
  static mproc_process *ps[N];
  for (int i = 0; i < N; i++) {
    int rc = i % 200;
    ps[i] = start_target(t_return_arg, &rc, sizeof rc, NULL);
  }
  /* Wait until every child is gone from /proc, reaped in the background
   * (so their completions pile up unread), before any join. */
  double end = test_now() + 30 * test_timeout_mult();
  for (int i = 0; i < N; i++) {
    pid_t pid = mproc_process_pid(ps[i]);
    while (test_proc_stat(pid, NULL, NULL) != 0) {
      ASSERT(test_now() < end);
      test_sleep(0.002);
    }
  }
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(join_code(ps[i]), i % 200);
    ASSERT_OK(mproc_process_free(ps[i]));
  }
  ASSERT_EQ(mproc_active_children(NULL, 0), 0);
  return 0;
}
