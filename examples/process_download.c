/*
 * process_download.c - two "downloads", first one after the other, then in
 * two processes at once.
 *
 * From the seed tutorial "python学习笔记之多进程": download_task() stands
 * for a download by sleeping a random number of seconds.  Run serially the
 * two downloads take the sum of their times; run in two mproc processes
 * they take about as long as the longer one.  The program checks that and
 * exits non-zero when the parallel run was not faster than the sum.
 *
 * The seed sleeps 5..10 s per file.  To keep the demo short the times are
 * 1..3 s; "--long" (or MPROC_DEMO_LONG=1 in the environment) restores the
 * seed's 5..10 s.
 *
 * What it shows of the Process API:
 *   - the argument is bytes, copied into the object: here a small struct
 *     (the sleep time, chosen by the parent so that it knows the longest
 *     and the sum) followed by the file name with its terminating NUL;
 *   - start() both children before joining either, as the seed does;
 *   - every return code checked, every object freed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

/*
 * The argument bytes: the header, then the NUL-terminated file name.  The
 * child reads the header with memcpy because mproc promises a copy of the
 * bytes, not any particular alignment of that copy.
 */
struct download_arg {
  int seconds;  /* how long this "download" takes, chosen by the parent */
  char name[];  /* the file name, NUL included */
};

static const char *const files[2] = {
    "MySQL从删库到跑路.pdf",
    "万万没想到.mp4",
};

static double now(void) {
  struct timespec ts;

  /* CLOCK_MONOTONIC so that a wall-clock step cannot fake the result. */
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleeps the whole time even if a signal interrupts nanosleep. */
static void sleep_seconds(int seconds) {
  struct timespec left = {seconds, 0};

  while (nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}

/* The seed's download_task, shared by the serial and the parallel run. */
static void download_task(const char *filename, int seconds) {
  printf("开始下载%s...\n", filename);
  sleep_seconds(seconds);
  printf("%s下载完成! 耗费了%d秒\n", filename, seconds);
}

/*
 * The child's target.  It checks the bytes it was given before trusting
 * them, since a target is an entry point that receives untyped data.
 */
static int download_target(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  const size_t head = offsetof(struct download_arg, name);
  const char *bytes = arg;
  int seconds;

  if (arg == NULL || len <= head || bytes[len - 1] != '\0') {
    fprintf(stderr, "download_target: bad argument (%zu bytes)\n", len);
    return 2;
  }
  memcpy(&seconds, bytes + offsetof(struct download_arg, seconds),
         sizeof seconds);
  printf("启动下载进程,进程号[%d].\n", (int)getpid());
  download_task(bytes + head, seconds);
  return 0;
}

static int report(const char *what, int rc) {
  fprintf(stderr, "process_download: %s: %s (%s)\n", what,
          mproc_strerror(rc), mproc_err_name(rc));
  return 1;
}

/*
 * Error-path cleanup: a child that was started is stopped and reaped
 * before its object is freed, because free refuses a running child.
 */
static void discard(mproc_process *p) {
  if (p == NULL) {
    return;
  }
  if (mproc_process_pid(p) != 0) {
    (void)mproc_process_terminate(p);
    (void)mproc_process_join(p, MPROC_FOREVER);
  }
  (void)mproc_process_free(p);
}

static int random_seconds(int lo, int hi) {
  return lo + rand() % (hi - lo + 1);
}

static void usage(void) {
  fprintf(stderr,
          "usage: process_download [--long]\n"
          "  --long  sleep 5..10 s per file as the seed does (default "
          "1..3 s;\n"
          "          MPROC_DEMO_LONG=1 does the same)\n");
}

int main(int argc, char **argv) {
  mproc_process *procs[2] = {NULL, NULL};
  int seconds[2];
  int lo = 1, hi = 3;
  int longest, sum;
  double start, total;
  const char *env = getenv("MPROC_DEMO_LONG");
  int i, rc;

  if (env != NULL && env[0] != '\0' && strcmp(env, "0") != 0) {
    lo = 5;
    hi = 10;
  }
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--long") == 0) {
      lo = 5;
      hi = 10;
    } else {
      usage();
      return 2;
    }
  }
  srand((unsigned)time(NULL) ^ (unsigned)getpid());

  /* The serial version: one download after the other. */
  start = now();
  for (i = 0; i < 2; i++) {
    download_task(files[i], random_seconds(lo, hi));
  }
  printf("总共耗费了%.2f秒.\n", now() - start);
  printf("\n");

  /*
   * The parallel version.  The times are drawn here, in the parent, so
   * that the parent can compare its total with the longest and the sum.
   */
  for (i = 0; i < 2; i++) {
    size_t namelen = strlen(files[i]) + 1;
    size_t len = offsetof(struct download_arg, name) + namelen;
    struct download_arg *arg = malloc(len);

    if (arg == NULL) {
      fprintf(stderr, "process_download: out of memory\n");
      goto fail;
    }
    seconds[i] = random_seconds(lo, hi);
    arg->seconds = seconds[i];
    memcpy(arg->name, files[i], namelen);
    /* The object keeps its own copy of the bytes: arg is freed at once. */
    rc = mproc_process_new(&procs[i], download_target, NULL, arg, len, NULL);
    free(arg);
    if (rc != 0) {
      report("mproc_process_new", rc);
      goto fail;
    }
  }

  start = now();
  for (i = 0; i < 2; i++) {
    rc = mproc_process_start(procs[i]);
    if (rc != 0) {
      report("mproc_process_start", rc);
      goto fail;
    }
  }
  for (i = 0; i < 2; i++) {
    int code;

    rc = mproc_process_join(procs[i], MPROC_FOREVER);
    if (rc != 0) {
      report("mproc_process_join", rc);
      goto fail;
    }
    rc = mproc_process_exitcode(procs[i], &code);
    if (rc != 0) {
      report("mproc_process_exitcode", rc);
      goto fail;
    }
    if (code != 0) {
      fprintf(stderr, "process_download: %s exited with %d\n",
              mproc_process_name(procs[i]), code);
      goto fail;
    }
  }
  total = now() - start;
  printf("总共耗费了%.2f秒.\n", total);

  for (i = 0; i < 2; i++) {
    rc = mproc_process_free(procs[i]);
    procs[i] = NULL;
    if (rc != 0) {
      report("mproc_process_free", rc);
      goto fail;
    }
  }

  longest = seconds[0] > seconds[1] ? seconds[0] : seconds[1];
  sum = seconds[0] + seconds[1];
  if (total < (double)sum) {
    printf("parallel total %.2f s: near the longest (%d s), not the sum "
           "(%d s)\n",
           total, longest, sum);
    return 0;
  }
  printf("parallel total %.2f s: NOT below the sum (%d s); the longest is "
         "%d s\n",
         total, sum, longest);
  return 1;

fail:
  for (i = 0; i < 2; i++) {
    discard(procs[i]);
  }
  return 1;
}
