/*
 * tests/runner.c - runs test cases, each in its own process, and audits
 * what each leaves behind.
 *
 *   mproc_tests --list        the names of all test cases, one a line
 *   mproc_tests NAME...       run these cases (ctest runs one per call)
 *   mproc_tests               run every case, TAP output
 *
 * For each case the runner forks a test process that
 *   - makes itself a process-group leader (so strays can be found and
 *     killed by group) and a child subreaper (so orphans of the case, such
 *     as the children of a process the case SIGKILLed, come back to it and
 *     can be waited for),
 *   - records its open fds, runs the case, and then fails the case if it
 *     left a child (running or zombie) or an fd that is neither one it had
 *     before nor one mproc keeps for the life of the process.
 * The runner waits with a timeout (60 s, times MPROC_TEST_TIMEOUT_MULTIPLIER
 * for slow builds such as the sanitizer one); a hang is a failure, and the
 * whole group is SIGKILLed.  It then fails the case if any process of the
 * group is still alive or if /dev/shm holds a new entry, and removes what
 * it finds, so one bad case does not poison the next.  Where the kernel
 * lets it (root), each case gets a private /dev/shm (a mount namespace with
 * its own tmpfs), audited by the test process itself: then cases running
 * at once cannot see, or be blamed for, each other's segments.  Set
 * MPROC_TEST_SHARED_DEV_SHM=1 to use the machine's /dev/shm instead.
 *
 * Exit status: 0 all passed (skips count as passes, reported as such; a
 * lone skipped case exits 77 for ctest's SKIP_RETURN_CODE), 1 otherwise.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../src/internal.h"
#include "task.h"

typedef struct test_entry {
  const char *name;
  mproc_test_fn fn;
  const char *file;
} test_entry;

static test_entry tests[1024];
static int ntests;

void mproc_test_register(const char *name, mproc_test_fn fn,
                         const char *file) {
  if (ntests < (int)MPROC__ARRAY_SIZE(tests)) {
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    tests[ntests].file = file;
    ntests++;
  }
}

void mproc_test_fail(const char *file, int line, const char *fmt, ...) {
  char buf[2048];
  int n = snprintf(buf, sizeof buf, "# [pid %d] %s:%d: ", (int)getpid(), file,
                   line);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof buf) {
    n += vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
  }
  va_end(ap);
  if (n > (int)sizeof buf - 2) {
    n = (int)sizeof buf - 2;
  }
  buf[n++] = '\n';
  fflush(stdout);
  (void)!write(2, buf, (size_t)n);
  _exit(1);
}

double test_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void test_sleep(double seconds) {
  if (seconds > 0) {
    mproc__sleep_ns((uint64_t)(seconds * 1e9));
  }
}

char test_proc_stat(pid_t pid, pid_t *ppid, unsigned *flags) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return 0;
  }
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) {
    return 0;
  }
  buf[n] = '\0';
  /* The command name may hold spaces and parentheses: parse after the
   * last ')'. */
  char *p = strrchr(buf, ')');
  if (p == NULL || p[1] == '\0') {
    return 0;
  }
  char state = 0;
  int pp = 0, pgrp, session, tty, tpgid;
  unsigned fl = 0;
  if (sscanf(p + 2, "%c %d %d %d %d %d %u", &state, &pp, &pgrp, &session,
             &tty, &tpgid, &fl) < 2) {
    return 0;
  }
  if (ppid != NULL) {
    *ppid = (pid_t)pp;
  }
  if (flags != NULL) {
    *flags = fl;
  }
  return state;
}

static char proc_state(pid_t pid, pid_t *ppid) {
  return test_proc_stat(pid, ppid, NULL);
}

int test_pid_running(pid_t pid) {
  char s = proc_state(pid, NULL);
  return s != 0 && s != 'Z' && s != 'X';
}

int test_wait_pid(pid_t pid, double timeout) {
  double end = test_now() + timeout;
  for (;;) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      return WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
    }
    if (r < 0 && errno != EINTR) {
      /* Not our child (any more): wait until it is gone from /proc. */
      if (!test_pid_running(pid)) {
        return 0;
      }
    }
    if (test_now() > end) {
      return INT32_MIN;
    }
    test_sleep(0.002);
  }
}

int test_read_int(int fd, int *v, double timeout) {
  struct pollfd p = {fd, POLLIN, 0};
  double end = test_now() + timeout;
  for (;;) {
    int ms = (int)((end - test_now()) * 1000);
    if (ms < 0) {
      return 0;
    }
    int r = poll(&p, 1, ms);
    if (r > 0) {
      return read(fd, v, sizeof *v) == (ssize_t)sizeof *v;
    }
    if (r == 0 || errno != EINTR) {
      return 0;
    }
  }
}

int test_fd_count(void) { return mproc__fd_count(); }

double test_timeout_mult(void) {
  const char *m = getenv("MPROC_TEST_TIMEOUT_MULTIPLIER");
  double k = m != NULL ? atof(m) : 1.0;
  return k > 1.0 ? k : 1.0;
}

/*
 * How crowded the machine is: the larger of the 1-minute load average and
 * the number of tasks runnable right now (both from /proc/loadavg), per
 * online CPU, at least 1 and at most 20.  Read when a timing assertion is
 * checked, that is right after the wait it judges: with ctest -j8 on two
 * CPUs (or four other builds next door) a wake-up is late by a share of
 * the CPU, not by a fixed number of milliseconds.
 */
double test_busy_factor(void) {
  double f = 1.0;
  FILE *fp = fopen("/proc/loadavg", "re");
  if (fp != NULL) {
    double load1 = 0;
    int running = 0;
    if (fscanf(fp, "%lf %*f %*f %d", &load1, &running) == 2) {
      long cpus = sysconf(_SC_NPROCESSORS_ONLN);
      double load = load1 > running ? load1 : running;
      f = load / (double)(cpus > 0 ? cpus : 1);
    }
    fclose(fp);
  }
  return f < 1.0 ? 1.0 : f > 20.0 ? 20.0 : f;
}

double test_slack(void) {
  return 0.05 * test_timeout_mult() * test_busy_factor();
}

pid_t test_fork(void) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  return pid;
}

mproc_process *test_start_proc(mproc_target_fn fn, const void *arg,
                               size_t len) {
  mproc_process *p = NULL;
  ASSERT_OK(mproc_process_new(&p, fn, NULL, arg, len, NULL));
  ASSERT_OK(mproc_process_start(p));
  return p;
}

int test_finish_proc(mproc_process *p) {
  int code = -1000;
  ASSERT_OK(mproc_process_join(p, 60));
  ASSERT_OK(mproc_process_exitcode(p, &code));
  ASSERT_OK(mproc_process_free(p));
  return code;
}

int test_run_proc(mproc_target_fn fn, const void *arg, size_t len) {
  return test_finish_proc(test_start_proc(fn, arg, len));
}

void test_start_procs(mproc_process **p, int n, mproc_target_fn fn,
                      const void *arg, size_t len) {
  for (int i = 0; i < n; i++) {
    p[i] = test_start_proc(fn, arg, len);
  }
}

void test_finish_procs_ok(mproc_process **p, int n) {
  for (int i = 0; i < n; i++) {
    ASSERT_EQ(test_finish_proc(p[i]), 0);
  }
}

void test_run_procs_ok(int n, mproc_target_fn fn, const void *arg,
                       size_t len) {
  mproc_process **p = calloc((size_t)n, sizeof *p);
  ASSERT_NOT_NULL(p);
  test_start_procs(p, n, fn, arg, len);
  test_finish_procs_ok(p, n);
  free(p);
}

void test_start_threads(pthread_t *th, int n, void *(*fn)(void *),
                        void *arg) {
  for (int i = 0; i < n; i++) {
    ASSERT_OK(pthread_create(&th[i], NULL, fn, arg));
  }
}

void test_join_threads_ok(pthread_t *th, int n) {
  for (int i = 0; i < n; i++) {
    void *r;
    ASSERT_OK(pthread_join(th[i], &r));
    ASSERT_EQ((intptr_t)r, 0);
  }
}

uint64_t test_rand(uint64_t *s) {
  /* xorshift64*: fast, and the same sequence on every run for a seed. */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * UINT64_C(2685821657736338717);
}

void test_fill(void *p, size_t n, uint64_t seed) {
  unsigned char *c = p;
  for (size_t i = 0; i < n; i++) {
    c[i] = (unsigned char)(seed + i * 131u + (seed >> 8));
  }
}

int test_check_fill(const void *p, size_t n, uint64_t seed) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++) {
    if (c[i] != (unsigned char)(seed + i * 131u + (seed >> 8))) {
      return 0;
    }
  }
  return 1;
}

/* ---- leftovers ---- */

/* Children of pid (running or zombie), from /proc.  Returns the count. */
static int children_of(pid_t pid, pid_t *out, int max) {
  DIR *d = opendir("/proc");
  if (d == NULL) {
    return 0;
  }
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char *end;
    long v = strtol(e->d_name, &end, 10);
    if (*end != '\0' || v <= 0) {
      continue;
    }
    pid_t pp = 0;
    if (proc_state((pid_t)v, &pp) != 0 && pp == pid) {
      if (n < max) {
        out[n] = (pid_t)v;
      }
      n++;
    }
  }
  closedir(d);
  return n;
}

typedef struct fdset {
  unsigned char open[4096];
} fdset;

static void fdset_read(fdset *s) {
  memset(s, 0, sizeof *s);
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) {
    return;
  }
  int self = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] != '.' && fd != self && fd >= 0 && fd < 4096) {
      s->open[fd] = 1;
    }
  }
  closedir(d);
}

/* Names in /dev/shm as "\nname1\nname2\n", so "\nNAME\n" finds one. */
static char *shm_list(void) {
  size_t cap = 4096, len = 1;
  char *s = calloc(1, cap);
  if (s == NULL) {
    return NULL;
  }
  s[0] = '\n';
  DIR *d = opendir("/dev/shm");
  if (d == NULL) {
    return s;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') {
      continue;
    }
    size_t l = strlen(e->d_name);
    if (len + l + 2 > cap) {
      cap = (cap + l) * 2;
      char *ns = realloc(s, cap);
      if (ns == NULL) {
        break;
      }
      s = ns;
    }
    memcpy(s + len, e->d_name, l);
    len += l;
    s[len++] = '\n';
    s[len] = '\0';
  }
  closedir(d);
  return s;
}

/* Runs in the test process: the case, then its own audit. */
/*
 * Give the case a /dev/shm of its own, where the kernel allows it (root,
 * or a user namespace): a private mount namespace with a fresh tmpfs on
 * /dev/shm.  Cases then cannot see each other's segments while ctest runs
 * several at once, a leak is attributed to the case that made it, and the
 * tmpfs vanishes with the case, so nothing is ever left in the machine's
 * /dev/shm.  Every process the case starts (Python peers included) shares
 * the namespace.  Returns 1 when the private /dev/shm is in place.
 */
static int private_dev_shm(void) {
  if (getenv("MPROC_TEST_SHARED_DEV_SHM") != NULL) {
    return 0;
  }
  if (unshare(CLONE_NEWNS) != 0) {
    return 0;
  }
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
      mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV,
            "mode=1777") != 0) {
    return 0;
  }
  return 1;
}

static int run_in_test_process(const test_entry *t, int *private_shm,
                               int *private_flag) {
  setpgid(0, 0);
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  *private_shm = private_dev_shm();
  if (private_flag != NULL) {
    *private_flag = *private_shm;
  }
  fdset before, after;
  fdset_read(&before);

  int rc = t->fn();
  /* The forkserver is the library's, started on demand and kept, like
   * Python's: stop it here, so what is left is the case's own. */
  mproc__forkserver_stop();
  fflush(stdout);
  fflush(stderr);
  if (rc != 0) {
    return rc;
  }
  if (*private_shm) {
    /* Anything in the private /dev/shm now was left by this case. */
    char *left = shm_list();
    if (left != NULL && strcmp(left, "\n") != 0) {
      fprintf(stderr, "# LEAK: left in /dev/shm:%s", left);
      free(left);
      return 1;
    }
    free(left);
  }

  pid_t kids[64];
  int nk = children_of(getpid(), kids, 64);
  if (nk > 0) {
    fprintf(stderr, "# LEAK: the case left %d child process(es):", nk);
    for (int i = 0; i < nk && i < 64; i++) {
      fprintf(stderr, " %d(%c)", (int)kids[i], proc_state(kids[i], NULL));
      kill(kids[i], SIGKILL);
    }
    fprintf(stderr, "\n");
    return 1;
  }

  fdset_read(&after);
  int internal[256];
  int ni = mproc__internal_fds(internal, 256);
  for (int i = 0; i < ni && i < 256; i++) {
    if (internal[i] >= 0 && internal[i] < 4096) {
      after.open[internal[i]] = 0;
    }
  }
  int leaked = 0;
  for (int fd = 0; fd < 4096; fd++) {
    if (after.open[fd] && !before.open[fd]) {
      char path[64], target[256];
      snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
      ssize_t n = readlink(path, target, sizeof target - 1);
      target[n > 0 ? n : 0] = '\0';
      fprintf(stderr, "# LEAK: fd %d (%s) left open\n", fd, target);
      leaked = 1;
    }
  }
  return leaked ? 1 : 0;
}

static double timeout_seconds(void) {
  double mult = 1.0;
  const char *m = getenv("MPROC_TEST_TIMEOUT_MULTIPLIER");
  if (m != NULL && atof(m) > 0) {
    mult = atof(m);
  }
  return 60.0 * mult;
}

/* Returns 0 pass, 77 skip, 1 fail. */
static int run_one(const test_entry *t) {
  char *shm_before = shm_list();
  /* Whether the case got a private /dev/shm: then it checked that one
   * itself, and what appears in the machine's /dev/shm meanwhile belongs
   * to somebody else (another session, a benchmark's Python peers) and is
   * neither blamed on the case nor removed. */
  int *private_flag = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (private_flag == MAP_FAILED) {
    private_flag = NULL;
  }
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "# fork: %s\n", strerror(errno));
    free(shm_before);
    if (private_flag != NULL) {
      munmap(private_flag, sizeof(int));
    }
    return 1;
  }
  if (pid == 0) {
    int private_shm = 0;
    int rc = run_in_test_process(t, &private_shm, private_flag);
    exit(rc);
  }
  setpgid(pid, pid); /* also done by the child: whoever runs first */

  double deadline = test_now() + timeout_seconds();
  int status = 0, result = 1, timed_out = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      break;
    }
    if (r < 0 && errno != EINTR) {
      break;
    }
    if (test_now() > deadline) {
      timed_out = 1;
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    test_sleep(0.001);
  }
  if (timed_out) {
    fprintf(stderr, "# TIMEOUT after %.0f s: the case hung\n",
            timeout_seconds());
    result = 1;
  } else if (WIFEXITED(status)) {
    result = WEXITSTATUS(status) == 0    ? 0
             : WEXITSTATUS(status) == 77 ? 77
                                         : 1;
  } else if (WIFSIGNALED(status)) {
    fprintf(stderr, "# the test process died of signal %d\n",
            WTERMSIG(status));
    result = 1;
  }

  /* Strays left in the case's process group. */
  if (kill(-pid, 0) == 0) {
    /* Give processes a moment that are exiting right now. */
    test_sleep(0.2);
    if (kill(-pid, 0) == 0) {
      fprintf(stderr, "# LEAK: processes of the case are still running\n");
      kill(-pid, SIGKILL);
      result = 1;
    }
  }
  /* Reap whatever was reparented to the runner (it is a subreaper). */
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }

  int was_private = private_flag != NULL && *private_flag;
  if (private_flag != NULL) {
    munmap(private_flag, sizeof(int));
  }
  char *shm_after = was_private ? NULL : shm_list();
  if (shm_before != NULL && shm_after != NULL) {
    char *line = shm_after;
    while ((line = strchr(line, '\n')) != NULL) {
      line++;
      char *nl = strchr(line, '\n');
      if (nl == NULL || nl == line) {
        break;
      }
      char name[256];
      size_t l = (size_t)(nl - line);
      if (l < sizeof name) {
        memcpy(name, line, l);
        name[l] = '\0';
        char key[260];
        snprintf(key, sizeof key, "\n%s\n", name);
        if (strstr(shm_before, key) == NULL) {
          fprintf(stderr, "# LEAK: /dev/shm/%s left behind\n", name);
          char path[300];
          snprintf(path, sizeof path, "/dev/shm/%s", name);
          unlink(path);
          result = 1;
        }
      }
      line = nl;
    }
  }
  free(shm_before);
  free(shm_after);
  return result;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  if (argc > 1 && strcmp(argv[1], "--list") == 0) {
    for (int i = 0; i < ntests; i++) {
      printf("%s\n", tests[i].name);
    }
    return 0;
  }
  int failed = 0, skipped = 0, ran = 0;
  if (argc > 1) {
    for (int a = 1; a < argc; a++) {
      int found = 0;
      for (int i = 0; i < ntests; i++) {
        if (strcmp(tests[i].name, argv[a]) == 0) {
          found = 1;
          int r = run_one(&tests[i]);
          ran++;
          printf("%s %d - %s%s\n", r == 1 ? "not ok" : "ok", ran,
                 tests[i].name, r == 77 ? " # SKIP" : "");
          failed += r == 1;
          skipped += r == 77;
        }
      }
      if (!found) {
        fprintf(stderr, "no such test: %s\n", argv[a]);
        return 1;
      }
    }
    if (ran == 1 && skipped == 1) {
      return 77;
    }
    return failed ? 1 : 0;
  }
  printf("1..%d\n", ntests);
  for (int i = 0; i < ntests; i++) {
    int r = run_one(&tests[i]);
    printf("%s %d - %s%s\n", r == 1 ? "not ok" : "ok", i + 1, tests[i].name,
           r == 77 ? " # SKIP" : "");
    failed += r == 1;
  }
  return failed ? 1 : 0;
}
