/*
 * start_methods.c - the three start methods in a program with a thread.
 *
 * A background thread holds the program's log lock most of the time (as a
 * logging or networking thread does).  A child started by fork is a copy
 * of the process at that moment: the lock is copied held, and nobody in
 * the child will ever release it, so a child that logs hangs.  A child
 * started by spawn (a fresh exec of the program) or by the forkserver (a
 * fork of a server that has one thread) has the lock free.  Python 3.12
 * warns about exactly this, and Python 3.14 made forkserver its default.
 *
 * The program
 *   1. starts one child by each method that tries the log lock (trylock,
 *      so the fork child reports the held lock instead of hanging) and
 *      times 20 start+join of each method;
 *   2. runs a pool of 4 workers started by the forkserver, whose task
 *      logs (takes the lock) and reads its settings from static data: the
 *      task function and ctx are found again in each worker's image.
 *
 * Exit status 0 when every child behaved as its method says.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int stop_logger;

/* The settings the tasks read: static data, so a ctx pointing here is
 * valid under every start method. */
static const struct settings {
  int scale;
  const char *unit;
} settings = {1000, "ms"};

static void *logger(void *arg) {
  (void)arg;
  while (!stop_logger) {
    pthread_mutex_lock(&log_lock);
    usleep(2000); /* formats and writes a line, say */
    pthread_mutex_unlock(&log_lock);
    usleep(10);
  }
  return NULL;
}

/* In the child: 0 if the log lock can be taken, 1 if it is held. */
static int try_log(const void *arg, size_t len, void *ctx) {
  (void)arg, (void)len, (void)ctx;
  if (pthread_mutex_trylock(&log_lock) != 0) {
    return 1;
  }
  pthread_mutex_unlock(&log_lock);
  return 0;
}

static int noop(const void *arg, size_t len, void *ctx) {
  (void)arg, (void)len, (void)ctx;
  return 0;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run(const mproc_context *c, mproc_target_fn fn, int *code) {
  mproc_process_opts o = {.context = c};
  mproc_process *p = NULL;
  int rc = mproc_process_new(&p, fn, NULL, NULL, 0, &o);
  if (rc == 0) rc = mproc_process_start(p);
  if (rc == 0) rc = mproc_process_join(p, 30);
  if (rc == 0) rc = mproc_process_exitcode(p, code);
  if (rc != 0 && p != NULL) {
    mproc_process_kill(p);
    mproc_process_join(p, MPROC_FOREVER);
  }
  mproc_process_free(p);
  return rc;
}

/* The pool's task: log a line (the lock must be free), return the scaled
 * argument. */
static int task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  const struct settings *s = ctx;
  int x;
  if (len != sizeof x) return 1;
  memcpy(&x, arg, sizeof x);
  pthread_mutex_lock(&log_lock);
  printf("  worker %d: task %d, %d %s\n", (int)getpid(), x, x * s->scale,
         s->unit);
  fflush(stdout);
  pthread_mutex_unlock(&log_lock);
  int y = x * s->scale;
  return mproc_task_return(t, &y, sizeof y);
}

int main(void) {
  pthread_t th;
  if (pthread_create(&th, NULL, logger, NULL) != 0) return 1;
  int bad = 0;
  const char *names[3] = {"fork", "spawn", "forkserver"};
  printf("a background thread holds the log lock most of the time\n");
  for (int k = 0; k < 3; k++) {
    mproc_context *c = NULL;
    int code = -1;
    int rc = mproc_get_context(&c, names[k]);
    /* Make the thread hold the lock at the start, as it mostly does. */
    pthread_mutex_lock(&log_lock);
    pthread_mutex_unlock(&log_lock);
    usleep(500);
    if (rc == 0) rc = run(c, try_log, &code);
    if (rc != 0) {
      fprintf(stderr, "%s: %s\n", names[k], mproc_strerror(rc));
      bad = 1;
      continue;
    }
    double t0 = now();
    for (int i = 0; i < 20 && rc == 0; i++) {
      int ec;
      rc = run(c, noop, &ec);
    }
    double per = (now() - t0) / 20 * 1e3;
    printf("%-10s the child finds the log lock %-5s start+join %.2f ms\n",
           names[k], code == 0 ? "free;" : "held;", per);
    /* A fork child may find it either way (it is free now and then); a
     * spawned or forkserver child always finds it free. */
    if (k > 0 && code != 0) bad = 1;
  }

  printf("a pool of 4 workers started by the forkserver:\n");
  mproc_context *fs = NULL;
  mproc_get_context(&fs, "forkserver");
  mproc_pool_opts po = {.processes = 4, .context = fs};
  mproc_pool *pool = NULL;
  int rc = mproc_pool_new(&pool, &po);
  for (int i = 1; i <= 4 && rc == 0; i++) {
    void *res = NULL;
    size_t rlen = 0;
    rc = mproc_pool_apply(pool, task, (void *)&settings, &i, sizeof i, &res,
                          &rlen);
    if (rc == 0 && (rlen != sizeof(int) || *(int *)res != i * 1000)) bad = 1;
    free(res);
  }
  if (rc != 0) {
    fprintf(stderr, "pool: %s\n", mproc_strerror(rc));
    bad = 1;
  }
  if (pool != NULL) {
    mproc_pool_close(pool);
    mproc_pool_join(pool, MPROC_FOREVER);
    mproc_pool_free(pool);
  }
  stop_logger = 1;
  pthread_join(th, NULL);
  printf(bad ? "something went wrong\n" : "done\n");
  return bad;
}
