/*
 * pool_results.c - a pool of 4 workers runs 3 tasks with apply_async;
 * after close and join the parent prints each task's result, in the
 * order it submitted them.
 *
 * From seed 003, 例7.3 "使用进程池,并关注结果":
 *
 *     def func(msg):
 *         print "msg:", msg
 *         time.sleep(3)
 *         print "end"
 *         return "done" + msg
 *
 *     pool = multiprocessing.Pool(processes=4)
 *     result = []
 *     for i in xrange(3):
 *         msg = "hello %d" %(i)
 *         result.append(pool.apply_async(func, (msg, )))
 *     pool.close()
 *     pool.join()
 *     for res in result:
 *         print ":::", res.get()
 *     print "Sub-process(es) done."
 *
 * The seed's output: msg: hello 0, 1, 2, three end, then
 * ::: donehello 0, 1, 2 and Sub-process(es) done.
 *
 * This is queue_results.c with the real Pool: the list of AsyncResults
 * keeps the order, the task's return value is its result bytes
 * (mproc_task_return), and res.get() is mproc_async_get then
 * mproc_async_data.  The seed sleeps 3 s per task; this sleeps 0.3 s
 * (`--long` or MPROC_DEMO_LONG=1 restores 3 s).  The parent checks every
 * result is "done" + its msg, and that the three tasks ran at once (the
 * whole run took about one sleep, not three).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mproc.h>

#define NTASKS 3

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

/* func(msg): returns "done" + msg (without a NUL). */
static int func(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  const char *msg = arg;
  char result[64];
  if (len == 0 || msg[len - 1] != '\0') {
    mproc_task_fail(t, "msg is not a string");
    return 2;
  }
  printf("msg: %s\n", msg);
  nap(task_seconds);
  printf("end\n");
  int n = snprintf(result, sizeof result, "done%s", msg);
  return mproc_task_return(t, result, (size_t)n);
}

static int report(const char *what, int rc) {
  fprintf(stderr, "pool_results: %s: %s (%s)\n", what, mproc_strerror(rc),
          mproc_err_name(rc));
  return 1;
}

int main(int argc, char **argv) {
  const char *env = getenv("MPROC_DEMO_LONG");
  mproc_pool *pool = NULL;
  mproc_async *result[NTASKS] = {NULL};
  int status = 0, rc;

  if ((argc > 1 && strcmp(argv[1], "--long") == 0) ||
      (env != NULL && strcmp(env, "1") == 0)) {
    task_seconds = 3.0;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);

  mproc_pool_opts po;
  memset(&po, 0, sizeof po);
  po.processes = 4;
  if ((rc = mproc_pool_new(&pool, &po)) != 0) {
    return report("mproc_pool_new", rc);
  }
  double t0 = now();
  for (int i = 0; i < NTASKS; i++) {
    char msg[32];
    int n = snprintf(msg, sizeof msg, "hello %d", i);
    rc = mproc_pool_apply_async(pool, func, NULL, msg, (size_t)n + 1, NULL,
                                &result[i]);
    if (rc != 0) {
      status = report("mproc_pool_apply_async", rc);
      goto out;
    }
  }
  if ((rc = mproc_pool_close(pool)) != 0) {
    status = report("mproc_pool_close", rc);
    goto out;
  }
  if ((rc = mproc_pool_join(pool, MPROC_FOREVER)) != 0) {
    status = report("mproc_pool_join", rc);
    goto out;
  }
  double total = now() - t0;

  /* for res in result: print ":::", res.get() */
  for (int i = 0; i < NTASKS; i++) {
    char want[64];
    size_t len = 0;
    if ((rc = mproc_async_get(result[i], MPROC_FOREVER)) != 0) {
      status = report("res.get()", rc);
      continue;
    }
    const char *data = mproc_async_data(result[i], &len);
    printf("::: %.*s\n", (int)len, data != NULL ? data : "");
    int n = snprintf(want, sizeof want, "donehello %d", i);
    if (data == NULL || len != (size_t)n || memcmp(data, want, len) != 0) {
      fprintf(stderr, "pool_results: result %d is \"%.*s\", want \"%s\"\n",
              i, (int)len, data != NULL ? data : "", want);
      status = 1;
    }
  }
  if (status == 0) {
    printf("Sub-process(es) done.\n");
  }
  if (total >= 2 * task_seconds) {
    fprintf(stderr,
            "pool_results: %.2f s for 3 tasks of %.1f s on 4 workers "
            "(want about %.1f s)\n",
            total, task_seconds, task_seconds);
    status = 1;
  }

out:
  for (int i = 0; i < NTASKS; i++) {
    mproc_async_free(result[i]);
  }
  if ((rc = mproc_pool_free(pool)) != 0) {
    status = report("mproc_pool_free", rc);
  }
  return status;
}
