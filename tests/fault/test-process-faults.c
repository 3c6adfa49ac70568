/*
 * tests/fault/test-process-faults.c - processes under faults, with real
 * processes and real signals: daemons when the parent exits or is
 * SIGKILLed, non-daemon children joined at exit, fork failing with EAGAIN
 * (made to fail by the kernel through a seccomp filter, not a mock), the
 * pidfd-less fallback, daemons started from short-lived threads.
 */
#include "internal.h"
#include "task.h"

#include <dirent.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static int report_fd = -1;

static void report_pid(void) {
  pid_t me = getpid();
  ASSERT_EQ(write(report_fd, &me, sizeof me), (ssize_t)sizeof me);
}

static pid_t read_pid(int fd) {
  pid_t pid = 0;
  ASSERT_EQ(mproc__read_full(fd, &pid, sizeof pid), (ssize_t)sizeof pid);
  return pid;
}

static int t_sleep_forever(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  report_pid();
  for (;;) {
    test_sleep(60);
  }
  return 0;
}

/* A daemon that tells, through the pipe, that it got SIGTERM. */
static void on_term(int sig) {
  (void)sig;
  char t = 'T';
  (void)!write(report_fd, &t, 1);
  _exit(0);
}

/* Write end of a pipe on which the daemon says its handler is in place. */
static int ready_fd = -1;

static int t_daemon_reports_term(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  struct sigaction sa = {.sa_handler = on_term};
  sigaction(SIGTERM, &sa, NULL);
  report_pid();
  char r = 'R';
  ASSERT_EQ(write(ready_fd, &r, 1), 1);
  for (;;) {
    test_sleep(60);
  }
  return 0;
}

static int t_slow_nondaemon(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  test_sleep(0.4);
  char n = 'N';
  (void)!write(report_fd, &n, 1);
  return 0;
}

/* The middle process: starts a daemon and a slow non-daemon child, then
 * returns at once, so mproc's exit handling must SIGTERM the daemon and
 * wait for the other. */
static int t_parent_returns(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  int ready[2];
  if (pipe(ready) != 0) {
    return 3;
  }
  ready_fd = ready[1];
  mproc_process_opts d = {.daemon = 1};
  mproc_process *a = NULL, *b = NULL;
  if (mproc_process_new(&a, t_daemon_reports_term, NULL, NULL, 0, &d) != 0 ||
      mproc_process_start(a) != 0) {
    return 1;
  }
  close(ready[1]);
  if (mproc_process_new(&b, t_slow_nondaemon, NULL, NULL, 0, NULL) != 0 ||
      mproc_process_start(b) != 0) {
    return 2;
  }
  /* Return only once the daemon's SIGTERM handler is in place. */
  char r;
  int ok = mproc__read_full(ready[0], &r, 1) == 1;
  close(ready[0]);
  return ok ? 0 : 4;
}

static void check_exit_handling(pid_t middle_or_zero, mproc_process *mp,
                                int fd) {
  double t0 = test_now();
  if (mp != NULL) {
    int code;
    ASSERT_OK(mproc_process_join(mp, 10));
    ASSERT_OK(mproc_process_exitcode(mp, &code));
    ASSERT_EQ(code, 0);
  } else {
    ASSERT_EQ(test_wait_pid(middle_or_zero, 10), 0);
  }
  /* The middle process waited for its non-daemon child (0.4 s). */
  ASSERT_DBL_GE(test_now() - t0, 0.25);
  char buf[16] = {0};
  pid_t daemon_pid = read_pid(fd);
  ssize_t n = mproc__read_full(fd, buf, sizeof buf - 1);
  ASSERT_EQ(n, 2);
  /* The daemon got SIGTERM, and the non-daemon ran to its end. */
  ASSERT(memchr(buf, 'T', 2) != NULL);
  ASSERT(memchr(buf, 'N', 2) != NULL);
  ASSERT_EQ(test_pid_running(daemon_pid), 0);
}

TEST_IMPL(process_daemon_terminated_at_child_exit) {
  int fds[2];
  ASSERT_OK(pipe(fds));
  report_fd = fds[1];
  mproc_process *mp = NULL;
  ASSERT_OK(mproc_process_new(&mp, t_parent_returns, NULL, NULL, 0, NULL));
  ASSERT_OK(mproc_process_start(mp));
  close(fds[1]);
  check_exit_handling(0, mp, fds[0]);
  close(fds[0]);
  ASSERT_OK(mproc_process_free(mp));
  return 0;
}

/*
 * Fork a plain "middle" process (not an mproc child) that runs body, which
 * does not return; report_fd is the write end of a pipe whose read end
 * comes back in *rfd.
 */
static pid_t fork_middle(void (*body)(void), int *rfd) {
  int fds[2];
  ASSERT_OK(pipe(fds));
  report_fd = fds[1];
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    body();
    _exit(0);
  }
  close(fds[1]);
  *rfd = fds[0];
  return pid;
}

static void middle_returns_via_exit(void) {
  exit(t_parent_returns(NULL, 0, NULL));
}

/* The same from a main program that calls exit(): the atexit handler. */
TEST_IMPL(process_daemon_terminated_at_main_exit) {
  int rfd;
  pid_t sub = fork_middle(middle_returns_via_exit, &rfd);
  check_exit_handling(sub, NULL, rfd);
  close(rfd);
  return 0;
}

static void start_or_exit(int daemon) {
  mproc_process_opts o = {.daemon = daemon};
  mproc_process *p = NULL;
  if (mproc_process_new(&p, t_sleep_forever, NULL, NULL, 0, &o) != 0 ||
      mproc_process_start(p) != 0) {
    _exit(3);
  }
}

static void *start_daemon_thread(void *arg) {
  (void)arg;
  start_or_exit(1);
  return NULL;
}

static void middle_starts_daemon(void) {
  start_or_exit(1);
  for (;;) {
    test_sleep(60);
  }
}

/* The starting thread ends at once: the daemon must not die with it
 * (PR_SET_PDEATHSIG follows the forking thread). */
static void middle_starts_daemon_from_thread(void) {
  pthread_t th;
  pthread_create(&th, NULL, start_daemon_thread, NULL);
  pthread_join(th, NULL);
  for (;;) {
    test_sleep(60);
  }
}

static void middle_starts_nondaemon(void) {
  start_or_exit(0);
  for (;;) {
    test_sleep(60);
  }
}

/* The parent is SIGKILLed: its daemon child dies within 1 s (Python
 * leaves it running). */
static void daemon_dies_with_killed_parent(int from_thread) {
  int rfd;
  pid_t middle = fork_middle(from_thread ? middle_starts_daemon_from_thread
                                         : middle_starts_daemon,
                             &rfd);
  pid_t daemon_pid = read_pid(rfd);
  close(rfd);
  ASSERT(test_pid_running(daemon_pid));
  if (from_thread) {
    test_sleep(0.3);
    ASSERT(test_pid_running(daemon_pid)); /* survived its thread */
  }
  ASSERT_EQ(kill(middle, SIGKILL), 0);
  double t0 = test_now();
  ASSERT_EQ(test_wait_pid(middle, 5), -SIGKILL);
  /* The daemon was reparented to this test process (a subreaper). */
  ASSERT_EQ(test_wait_pid(daemon_pid, 1.0 + test_slack()), -SIGKILL);
  ASSERT_DBL_LE(test_now() - t0, 1.0 + test_slack());
}

TEST_IMPL(process_daemon_dies_with_killed_parent) {
  daemon_dies_with_killed_parent(0);
  return 0;
}

TEST_IMPL(process_daemon_from_thread_dies_with_killed_parent) {
  daemon_dies_with_killed_parent(1);
  return 0;
}

/* A non-daemon child outlives a parent that is killed, as in Python. */
TEST_IMPL(process_nondaemon_survives_killed_parent) {
  int rfd;
  pid_t middle = fork_middle(middle_starts_nondaemon, &rfd);
  pid_t child = read_pid(rfd);
  close(rfd);
  ASSERT_EQ(kill(middle, SIGKILL), 0);
  ASSERT_EQ(test_wait_pid(middle, 5), -SIGKILL);
  test_sleep(0.3);
  ASSERT(test_pid_running(child));
  kill(child, SIGKILL);
  ASSERT_EQ(test_wait_pid(child, 5), -SIGKILL);
  return 0;
}

/* Python: 'daemonic processes are not allowed to have children'. */
static int t_daemon_tries_child(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  if (!mproc_process_daemon(mproc_current_process())) return 1;
  mproc_process *p = NULL;
  if (mproc_process_new(&p, t_sleep_forever, NULL, NULL, 0,
                        NULL) != 0) return 2;
  int r = mproc_process_start(p);
  mproc_process_free(p);
  return r == MPROC_EDAEMONIC ? 0 : 3;
}

TEST_IMPL(process_daemon_cannot_have_children) {
  mproc_process_opts d = {.daemon = 1};
  mproc_process *p = NULL;
  ASSERT_OK(mproc_process_new(&p, t_daemon_tries_child, NULL, NULL, 0, &d));
  ASSERT_EQ(mproc_process_daemon(p), 1);
  ASSERT_OK(mproc_process_start(p));
  int code;
  ASSERT_OK(mproc_process_join(p, 10));
  ASSERT_OK(mproc_process_exitcode(p, &code));
  ASSERT_EQ(code, 0);
  ASSERT_OK(mproc_process_free(p));
  return 0;
}

/* ---- fork failing ---- */

/* Make clone/fork/vfork/clone3 fail with EAGAIN in this process: a real
 * kernel refusal (seccomp), as RLIMIT_NPROC would give a non-root user. */
static int deny_fork(void) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 4, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_fork, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_vfork, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 435 /* clone3 */, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EAGAIN & 0xffff)),
  };
  struct sock_fprog prog = {.len = MPROC__ARRAY_SIZE(f), .filter = f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return -1;
  }
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

static int t_ret7(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  return 7;
}

static int fork_eagain_case(void) {
  /* One successful start first, so the reaper thread exists (a thread is
   * a clone too, and the filter would stop it). */
  mproc_process *ok = NULL;
  if (mproc_process_new(&ok, t_ret7, NULL, NULL, 0, NULL) != 0 ||
      mproc_process_start(ok) != 0 || mproc_process_join(ok, 10) != 0) {
    return 10;
  }
  mproc_process_free(ok);
  int fds_before = test_fd_count();
  if (deny_fork() != 0) {
    return 77;
  }
  mproc_process *p = NULL;
  if (mproc_process_new(&p, t_ret7, NULL, NULL, 0, NULL) != 0) return 11;
  int r = mproc_process_start(p);
  if (r != MPROC_EAGAIN) return 12;
  /* Nothing half-registered: unstarted, no children, no fd. */
  if (mproc_process_pid(p) != 0) return 13;
  int code;
  if (mproc_process_exitcode(p, &code) != MPROC_ENOTSTARTED) return 14;
  if (mproc_process_join(p, 0) != MPROC_ENOTSTARTED) return 15;
  if (mproc_active_children(NULL, 0) != 0) return 16;
  if (test_fd_count() != fds_before) return 17;
  if (mproc_process_start(p) != MPROC_EAGAIN) return 18;
  if (mproc_process_free(p) != 0) return 19;
  return 0;
}

static void run_fork_eagain(int no_pidfd) {
  pid_t sub = fork();
  ASSERT_GE(sub, 0);
  if (sub == 0) {
    if (no_pidfd) {
      setenv("MPROC_NO_PIDFD", "1", 1);
    }
    _exit(fork_eagain_case());
  }
  int rc = test_wait_pid(sub, 20);
  if (rc == 77) {
    printf("# seccomp unavailable\n");
  }
  ASSERT_EQ(rc, 0);
}

TEST_IMPL(process_fork_eagain) {
  run_fork_eagain(0);
  return 0;
}

TEST_IMPL(process_fork_eagain_no_pidfd) {
  run_fork_eagain(1);
  return 0;
}

/* ---- kernels without pidfd: the pipe sentinel ---- */

static int t_sleep_then(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  test_sleep(((const double *)arg)[0]);
  return (int)((const double *)arg)[1];
}

/* arg: {fd, code}: read a byte from fd, then return code. */
static int t_read_then(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  const int *a = arg;
  char c;
  return mproc__read_full(a[0], &c, 1) == 1 ? a[1] : 99;
}

static int no_pidfd_case(void) {
  /* The child ends only when told, so it is still running at the short
   * join however late this process gets the CPU. */
  int go[2];
  if (pipe(go) != 0) return 25;
  int a[2] = {go[0], 9};
  mproc_process *p = NULL;
  if (mproc_process_new(&p, t_read_then, NULL, a, sizeof a,
                        NULL) != 0) return 10;
  if (mproc_process_start(p) != 0) return 11;
  close(go[0]);
  if (mproc_process_is_alive(p) != 1) return 12;
  if (mproc_process_join(p, 0.05) != MPROC_ETIMEDOUT) return 13;
  if (write(go[1], "g", 1) != 1) return 26;
  close(go[1]);
  int code = -1;
  if (mproc_process_join(p, 10) != 0) return 14;
  if (mproc_process_exitcode(p, &code) != 0 || code != 9) return 15;
  mproc_process_free(p);
  /* terminate through kill(2) by pid, safe because unreaped */
  double b[2] = {30, 0};
  if (mproc_process_new(&p, t_sleep_then, NULL, b, sizeof b,
                        NULL) != 0) return 16;
  if (mproc_process_start(p) != 0) return 17;
  if (mproc_process_terminate(p) != 0) return 18;
  if (mproc_process_join(p, 10) != 0) return 19;
  if (mproc_process_exitcode(p, &code) != 0 || code != -SIGTERM) return 20;
  mproc_process_free(p);
  /* reaped in the background without a join */
  double c[2] = {0, 4};
  if (mproc_process_new(&p, t_sleep_then, NULL, c, sizeof c,
                        NULL) != 0) return 21;
  if (mproc_process_start(p) != 0) return 22;
  pid_t pid = mproc_process_pid(p);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d", (int)pid);
  double end = test_now() + 5 * test_timeout_mult();
  while (access(path, F_OK) == 0) {
    if (test_now() > end) return 23;
    test_sleep(0.005);
  }
  if (mproc_process_exitcode(p, &code) != 0 || code != 4) return 24;
  mproc_process_free(p);
  return 0;
}

/* Run no_pidfd_case (start, join, terminate, background reaping) in a
 * fresh process with the given fallbacks forced. */
static void run_fallback_case(int no_pidfd, int no_uring) {
  pid_t sub = fork();
  ASSERT_GE(sub, 0);
  if (sub == 0) {
    if (no_pidfd) {
      setenv("MPROC_NO_PIDFD", "1", 1);
    }
    if (no_uring) {
      setenv("MPROC_NO_URING", "1", 1);
    }
    int rc = no_pidfd_case();
    if (rc == 0 && no_uring &&
        strcmp(mproc__process_reaping_mode(), "thread") != 0) {
      rc = 30;
    }
    _exit(rc);
  }
  ASSERT_EQ(test_wait_pid(sub, 30), 0);
}

TEST_IMPL(process_without_pidfd) {
  run_fallback_case(1, 0);
  return 0;
}

TEST_IMPL(process_reaper_thread) {
  run_fallback_case(0, 1);
  return 0;
}

TEST_IMPL(process_without_pidfd_and_io_uring) {
  run_fallback_case(1, 1);
  return 0;
}

/* Where the kernel reaps through io_uring, starting processes from the
 * main thread creates no thread: every later fork stays on glibc's
 * single-threaded path. */
static int thread_count(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL) {
    n += e->d_name[0] != '.';
  }
  if (d != NULL) {
    closedir(d);
  }
  return n;
}

TEST_IMPL(process_no_thread_with_io_uring) {
  mproc_process *p = NULL;
  ASSERT_OK(mproc_process_new(&p, t_ret7, NULL, NULL, 0, NULL));
  ASSERT_OK(mproc_process_start(p));
  if (strcmp(mproc__process_reaping_mode(), "io_uring") != 0) {
    ASSERT_OK(mproc_process_join(p, 10));
    mproc_process_free(p);
    printf("# io_uring waitid unavailable here: %s\n",
           mproc__process_reaping_mode());
    return TEST_SKIP;
  }
  ASSERT_EQ(thread_count(), 1);
  pid_t pid = mproc_process_pid(p);
  /* Never joined: the kernel reaps it for us. */
  char path[64];
  snprintf(path, sizeof path, "/proc/%d", (int)pid);
  double end = test_now() + 5 * test_timeout_mult();
  while (access(path, F_OK) == 0) {
    ASSERT(test_now() < end);
    test_sleep(0.005);
  }
  int code;
  ASSERT_OK(mproc_process_exitcode(p, &code));
  ASSERT_EQ(code, 7);
  ASSERT_EQ(thread_count(), 1);
  ASSERT_OK(mproc_process_free(p));
  return 0;
}

/* A child does not inherit its parent's reap slots (they live in pages
 * the child does not have), and reaps its own children with its own. */
static int t_nested_reaping(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  if (mproc__process_free_slots() != 0) return 40;
  for (int i = 0; i < 3; i++) {
    mproc_process *p = NULL;
    if (mproc_process_new(&p, t_ret7, NULL, NULL, 0, NULL) != 0) return 41;
    if (mproc_process_start(p) != 0) return 42;
    int code = -1;
    if (mproc_process_join(p, 10) != 0) return 43;
    if (mproc_process_exitcode(p, &code) != 0 || code != 7) return 44;
    mproc_process_free(p);
  }
  return 0;
}

TEST_IMPL(process_child_has_own_reap_slots) {
  for (int i = 0; i < 5; i++) {
    mproc_process *p = NULL;
    ASSERT_OK(mproc_process_new(&p, t_nested_reaping, NULL, NULL, 0, NULL));
    ASSERT_OK(mproc_process_start(p));
    int code = -1;
    ASSERT_OK(mproc_process_join(p, 10));
    ASSERT_OK(mproc_process_exitcode(p, &code));
    ASSERT_EQ(code, 0);
    ASSERT_OK(mproc_process_free(p));
  }
  return 0;
}

/* ---- no zombie when the starting thread is gone ---- */

/*
 * A child is reaped in the background although the thread that started it
 * has exited and nothing calls mproc again.  The middle process (a plain
 * fork) keeps one thread, "idle", that makes no mproc call and waits for
 * the test's word to _exit; the child waits for its own word to end.  The
 * test then watches the child's /proc entry: it must go (be reaped by the
 * middle process), not stay a zombie.
 */
static int go_fd = -1;   /* read end: a byte ends the child */
static int stop_fd = -1; /* read end: a byte ends the middle process */

static int t_wait_for_go(const void *arg, size_t len, void *ctx) {
  (void)arg;
  (void)len;
  (void)ctx;
  char c;
  return mproc__read_full(go_fd, &c, 1) == 1 ? 0 : 1;
}

static void start_waiting_child_or_exit(void) {
  mproc_process *p = NULL;
  if (mproc_process_new(&p, t_wait_for_go, NULL, NULL, 0, NULL) != 0 ||
      mproc_process_start(p) != 0) {
    _exit(3);
  }
  pid_t pid = mproc_process_pid(p);
  if (write(report_fd, &pid, sizeof pid) != (ssize_t)sizeof pid) {
    _exit(4);
  }
  /* The object is left as it is: no later mproc call of any kind. */
}

static void *idle_until_stop(void *arg) {
  (void)arg;
  char c;
  /* _exit, not exit: mproc's exit handler would reap the child. */
  _exit(mproc__read_full(stop_fd, &c, 1) == 1 ? 0 : 5);
}

static void *start_child_thread(void *arg) {
  (void)arg;
  start_waiting_child_or_exit();
  return NULL;
}

/* The main thread starts the child, then leaves with pthread_exit while
 * the idle thread keeps the process alive. */
static void middle_main_thread_exits(void) {
  pthread_t th;
  if (pthread_create(&th, NULL, idle_until_stop, NULL) != 0) {
    _exit(6);
  }
  start_waiting_child_or_exit();
  pthread_exit(NULL);
}

/* A second thread starts the child and ends; the main thread idles. */
static void middle_thread_exits(void) {
  pthread_t th;
  if (pthread_create(&th, NULL, start_child_thread, NULL) != 0 ||
      pthread_join(th, NULL) != 0) {
    _exit(6);
  }
  idle_until_stop(NULL);
}

static void no_zombie_after_starter_exit(void (*body)(void)) {
  int go[2], stop[2];
  ASSERT_OK(pipe(go));
  ASSERT_OK(pipe(stop));
  go_fd = go[0];
  stop_fd = stop[0];
  int rfd;
  pid_t middle = fork_middle(body, &rfd);
  close(go[0]);
  close(stop[0]);
  pid_t child = read_pid(rfd);
  close(rfd);
  double end = test_now() + 10 * test_timeout_mult();
  if (body == middle_main_thread_exits) {
    /* Wait for the main thread to be gone: a thread-group leader that
     * exited before the other threads shows as a zombie. */
    while (test_proc_stat(middle, NULL, NULL) != 'Z') {
      ASSERT(test_now() < end);
      test_sleep(0.002);
    }
  }
  char b = 'g';
  ASSERT_EQ(write(go[1], &b, 1), 1);
  close(go[1]);
  /* The child ends at once; until reaped it stays in /proc as a zombie
   * whose parent is the middle process. */
  pid_t ppid = 0;
  char st;
  while ((st = test_proc_stat(child, &ppid, NULL)) != 0 && ppid == middle) {
    if (test_now() >= end) {
      mproc_test_fail(__FILE__, __LINE__,
                      "child %d still in state %c under %d, not reaped",
                      (int)child, st, (int)middle);
    }
    test_sleep(0.002);
  }
  ASSERT_EQ(write(stop[1], &b, 1), 1);
  close(stop[1]);
  ASSERT_EQ(test_wait_pid(middle, 10), 0);
}

TEST_IMPL(process_no_zombie_after_main_thread_exit) {
  no_zombie_after_starter_exit(middle_main_thread_exits);
  return 0;
}

TEST_IMPL(process_no_zombie_after_starting_thread_exit) {
  no_zombie_after_starter_exit(middle_thread_exits);
  return 0;
}
