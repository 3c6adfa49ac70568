/*
 * pool_apply.c - the same pool of 3 workers and 4 tasks, submitted with
 * apply, which waits for each task: the tasks run one after the other
 * and the Mark~ line comes last.
 *
 * From seed 003, 例7.2 "使用进程池(阻塞)": 例7.1 with
 *
 *     for i in xrange(4):
 *         msg = "hello %d" %(i)
 *         pool.apply(func, (msg, ))
 *
 * and the seed's output: msg: hello 0, end, msg: hello 1, end, ...,
 * msg: hello 3, end, Mark~ Mark~ Mark~~~~~~~~~~~~~~~~~~~~~~,
 * Sub-process(es) done.
 *
 * The seed sleeps 3 s per task; this sleeps 0.3 s (`--long` or
 * MPROC_DEMO_LONG=1 restores 3 s).  The parent checks that every apply
 * succeeded and waited for its task (each took at least the task's
 * sleep), so the four took four sleeps, not one or two.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mproc.h>

#define NTASKS 4

static double task_seconds = 0.3;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap(double seconds) {
  struct timespec left;
  left.tv_sec = (time_t)seconds;
  left.tv_nsec = (long)((seconds - (double)left.tv_sec) * 1e9);
  while (nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}

/* func(msg) */
static int func(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  const char *msg = arg;
  if (len == 0 || msg[len - 1] != '\0') {
    mproc_task_fail(t, "msg is not a string");
    return 2;
  }
  printf("msg: %s\n", msg);
  nap(task_seconds);
  printf("end\n");
  return 0;
}

static int report(const char *what, int rc) {
  fprintf(stderr, "pool_apply: %s: %s (%s)\n", what, mproc_strerror(rc),
          mproc_err_name(rc));
  return 1;
}

int main(int argc, char **argv) {
  const char *env = getenv("MPROC_DEMO_LONG");
  mproc_pool *pool = NULL;
  int status = 0, rc;

  if ((argc > 1 && strcmp(argv[1], "--long") == 0) ||
      (env != NULL && strcmp(env, "1") == 0)) {
    task_seconds = 3.0;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);

  mproc_pool_opts po;
  memset(&po, 0, sizeof po);
  po.processes = 3;
  if ((rc = mproc_pool_new(&pool, &po)) != 0) {
    return report("mproc_pool_new", rc);
  }
  double t0 = now();
  for (int i = 0; i < NTASKS; i++) {
    char msg[32];
    void *result = NULL;
    size_t rlen = 0;
    int n = snprintf(msg, sizeof msg, "hello %d", i);
    double t1 = now();
    rc = mproc_pool_apply(pool, func, NULL, msg, (size_t)n + 1, &result, &rlen);
    double took = now() - t1;
    free(result);
    if (rc != 0) {
      status = report("mproc_pool_apply", rc);
      goto out;
    }
    if (took < task_seconds * 0.9) {
      fprintf(stderr, "pool_apply: apply returned after %.2f s: it did not "
              "wait for the task\n", took);
      status = 1;
    }
  }
  printf("Mark~ Mark~ Mark~~~~~~~~~~~~~~~~~~~~~~\n");
  if ((rc = mproc_pool_close(pool)) != 0) {
    status = report("mproc_pool_close", rc);
    goto out;
  }
  if ((rc = mproc_pool_join(pool, MPROC_FOREVER)) != 0) {
    status = report("mproc_pool_join", rc);
    goto out;
  }
  double total = now() - t0;
  printf("Sub-process(es) done.\n");
  if (total < NTASKS * task_seconds * 0.9) {
    fprintf(stderr, "pool_apply: %.2f s for 4 blocking applies of %.1f s\n",
            total, task_seconds);
    status = 1;
  }

out:
  if ((rc = mproc_pool_free(pool)) != 0) {
    status = report("mproc_pool_free", rc);
  }
  return status;
}
