/*
 * tests/unit/test-platform.c - layer 0: deadlines, futexes across
 * processes, fd rules (close-on-exec, never fds 0-2), pidfd, memfd, the
 * robust mutex's owner-death report.
 */
#include "internal.h"
#include "task.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>

TEST_IMPL(platform_deadline) {
  mproc__deadline d;
  ASSERT_ERR(mproc__deadline_init(&d, NAN), -EINVAL);
  ASSERT_OK(mproc__deadline_init(&d, -1));
  ASSERT(d.forever);
  ASSERT_UEQ(mproc__deadline_left_ns(&d), UINT64_MAX);
  ASSERT_EQ(mproc__deadline_left_ms(&d), -1);
  ASSERT_OK(mproc__deadline_init(&d, 0));
  ASSERT_UEQ(mproc__deadline_left_ns(&d), 0);
  ASSERT_EQ(mproc__deadline_left_ms(&d), 0);
  double before = test_now();
  ASSERT_OK(mproc__deadline_init(&d, 0.25));
  uint64_t left = mproc__deadline_left_ns(&d);
  double took = test_now() - before;
  /* 0.25 s less what passed meanwhile (a busy machine may stall us). */
  ASSERT(left <= 250000000u);
  ASSERT_DBL_GE((double)left / 1e9 + took + 0.001, 0.25);
  /* 1 ns left is 1 ms for poll, never 0 (which would spin). */
  d.at_ns = mproc__now_ns() + 1000;
  ASSERT_GE(mproc__deadline_left_ms(&d), 0);
  ASSERT_OK(mproc__deadline_init(&d, 1e12));
  ASSERT(d.forever);
  return 0;
}

TEST_IMPL(platform_futex_timeout_accuracy) {
  uint32_t word = 0;
  mproc__deadline d;
  ASSERT_ERR(mproc__futex_wait(&word, 1, NULL), -EAGAIN);
  double t0 = test_now(); /* before the deadline starts */
  ASSERT_OK(mproc__deadline_init(&d, 0.2));
  ASSERT_ERR(mproc__futex_wait(&word, 0, &d), -ETIMEDOUT);
  double el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.2);
  ASSERT_DBL_LE(el, 0.2 + test_slack());
  ASSERT_OK(mproc__deadline_init(&d, 0));
  ASSERT_ERR(mproc__futex_wait(&word, 0, &d), -ETIMEDOUT);
  return 0;
}

static volatile sig_atomic_t hits;
static void on_alarm(int sig) {
  (void)sig;
  hits++;
}

/* Signals do not end a futex wait early, nor restart its clock. */
TEST_IMPL(platform_futex_eintr_keeps_deadline) {
  struct sigaction sa = {.sa_handler = on_alarm};
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {{0, 50000}, {0, 50000}};
  setitimer(ITIMER_REAL, &it, NULL);
  uint32_t word = 0;
  mproc__deadline d;
  double t0 = test_now(); /* before the deadline starts */
  ASSERT_OK(mproc__deadline_init(&d, 0.3));
  ASSERT_ERR(mproc__futex_wait(&word, 0, &d), -ETIMEDOUT);
  double el = test_now() - t0;
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  /* The timer fires at 50 ms, well inside the 0.3 s wait, so at least
   * one signal interrupted it; how many more depends on how often this
   * process ran (pending SIGALRMs merge on a busy machine). */
  ASSERT_GE(hits, 1);
  ASSERT_DBL_GE(el, 0.3);
  ASSERT_DBL_LE(el, 0.3 + test_slack());
  return 0;
}

/* Wait and wake across processes on a shared page. */
TEST_IMPL(platform_futex_across_processes) {
  uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT(w != MAP_FAILED);
  w[0] = 0;
  pid_t kid = fork();
  ASSERT_GE(kid, 0);
  if (kid == 0) {
    mproc__deadline d;
    mproc__deadline_init(&d, 10);
    while (__atomic_load_n(&w[0], __ATOMIC_ACQUIRE) == 0) {
      int r = mproc__futex_wait(&w[0], 0, &d);
      if (r == -ETIMEDOUT) _exit(1);
    }
    _exit(w[0] == 42 ? 0 : 2);
  }
  test_sleep(0.1);
  __atomic_store_n(&w[0], 42, __ATOMIC_RELEASE);
  ASSERT_GE(mproc__futex_wake(&w[0], INT32_MAX), 0);
  ASSERT_EQ(test_wait_pid(kid, 10), 0);
  munmap(w, 4096);
  return 0;
}

static int cloexec(int fd) { return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }

TEST_IMPL(platform_fds_cloexec_above_stdio) {
  int p[2];
  ASSERT_OK(mproc__pipe(p, 0));
  ASSERT_GE(p[0], 3);
  ASSERT_GE(p[1], 3);
  ASSERT(cloexec(p[0]) && cloexec(p[1]));
  int fd = mproc__open("/dev/null", O_RDONLY, 0);
  ASSERT_GE(fd, 3);
  ASSERT(cloexec(fd));
  mproc__close(fd);
  ASSERT_EQ(mproc__open("/nonexistent/x", O_RDONLY, 0), -ENOENT);
  int ep = mproc__epoll_create();
  ASSERT(ep >= 3 && cloexec(ep));
  mproc__close(ep);
  int mfd = mproc__memfd_create("mproc-test");
  ASSERT(mfd >= 3 && cloexec(mfd));
  ASSERT_OK(mproc__truncate(mfd, 1 << 20));
  void *m = NULL;
  ASSERT_OK(mproc__map_shared(mfd, 1 << 20, NULL, 0, &m));
  memset(m, 7, 1 << 20);
  ASSERT_OK(mproc__unmap(m, 1 << 20));
  mproc__close(mfd);

  /* With stdin closed, a new fd must still not become fd 0. */
  int saved = dup(0);
  close(0);
  fd = mproc__open("/dev/null", O_RDONLY, 0);
  ASSERT_GE(fd, 3);
  ASSERT_EQ(fcntl(0, F_GETFD), -1);
  mproc__close(fd);
  ASSERT_EQ(dup2(saved, 0), 0);
  close(saved);

  /* write_full / read_full move everything. */
  char out[5000], in[5000];
  memset(out, 'x', sizeof out);
  ASSERT_EQ(mproc__write_full(p[1], out, sizeof out), (ssize_t)sizeof out);
  mproc__close(p[1]);
  ASSERT_EQ(mproc__read_full(p[0], in, sizeof in), (ssize_t)sizeof in);
  ASSERT_EQ(memcmp(in, out, sizeof in), 0);
  ASSERT_EQ(mproc__read_full(p[0], in, 1), 0);
  mproc__close(p[0]);
  /* close of a negative or bad fd never crashes. */
  mproc__close(-1);
  mproc__close(999999);
  return 0;
}

TEST_IMPL(platform_wait_readable_timeout) {
  int p[2];
  ASSERT_OK(mproc__pipe(p, 0));
  mproc__deadline d;
  double t0 = test_now(); /* before the deadline starts */
  ASSERT_OK(mproc__deadline_init(&d, 0.15));
  ASSERT_EQ(mproc__wait_readable(p[0], &d), 0);
  ASSERT_DBL_GE(test_now() - t0, 0.15);
  ASSERT_DBL_LE(test_now() - t0, 0.15 + test_slack());
  ASSERT_EQ(write(p[1], "a", 1), 1);
  ASSERT_EQ(mproc__wait_readable(p[0], &d), 1);
  mproc__close(p[0]);
  mproc__close(p[1]);
  return 0;
}

TEST_IMPL(platform_pidfd_and_reap) {
  pid_t kid = fork();
  ASSERT_GE(kid, 0);
  if (kid == 0) {
    pause();
    _exit(0);
  }
  int code = 0;
  ASSERT_EQ(mproc__reap(kid, 1, &code), 0); /* still running */
  int fd = mproc__pidfd_open(kid);
  if (fd == -ENOSYS) {
    ASSERT_OK(mproc__kill(kid, SIGKILL));
  } else {
    ASSERT_GE(fd, 3);
    ASSERT(cloexec(fd));
    ASSERT_OK(mproc__pidfd_signal(fd, SIGTERM));
    mproc__deadline d;
    mproc__deadline_init(&d, 5);
    ASSERT_EQ(mproc__wait_readable(fd, &d), 1);
  }
  ASSERT_EQ(mproc__reap(kid, 0, &code), 1);
  ASSERT(code == -SIGTERM || code == -SIGKILL);
  ASSERT_EQ(mproc__reap(kid, 1, &code), -ECHILD);
  if (fd >= 0) {
    /* Signalling through the pidfd of a reaped process cannot hit a
     * recycled pid: it fails with ESRCH. */
    ASSERT_EQ(mproc__pidfd_signal(fd, SIGKILL), -ESRCH);
    mproc__close(fd);
  }
  return 0;
}

/* The robust mutex reports its dead holder to the next locker. */
TEST_IMPL(platform_rmutex_owner_dead) {
  pthread_mutex_t *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT(m != MAP_FAILED);
  ASSERT_OK(mproc__rmutex_init(m));
  int p[2];
  ASSERT_OK(pipe(p));
  pid_t kid = fork();
  ASSERT_GE(kid, 0);
  if (kid == 0) {
    mproc__rmutex_lock(m, NULL);
    (void)!write(p[1], "L", 1);
    pause();
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(p[0], &c, 1), 1);
  mproc__deadline d;
  mproc__deadline_init(&d, 0.1);
  ASSERT_ERR(mproc__rmutex_lock(m, &d), -ETIMEDOUT);
  kill(kid, SIGKILL);
  ASSERT_EQ(test_wait_pid(kid, 5), -SIGKILL);
  ASSERT_ERR(mproc__rmutex_lock(m, NULL), -EOWNERDEAD);
  ASSERT_OK(mproc__rmutex_consistent(m));
  ASSERT_OK(mproc__rmutex_unlock(m));
  ASSERT_OK(mproc__rmutex_lock(m, NULL));
  ASSERT_OK(mproc__rmutex_unlock(m));
  close(p[0]);
  close(p[1]);
  munmap(m, 4096);
  return 0;
}
