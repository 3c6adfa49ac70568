/*
 * pool_apply_async.c - a pool of 3 workers runs 4 tasks submitted with
 * apply_async, which does not wait: the parent prints its Mark~ line
 * while the tasks run.
 *
 * From seed 003, 例7.1 "使用进程池(非阻塞)":
 *
 *     def func(msg):
 *         print "msg:", msg
 *         time.sleep(3)
 *         print "end"
 *
 *     pool = multiprocessing.Pool(processes = 3)
 *     for i in xrange(4):
 *         msg = "hello %d" %(i)
 *         pool.apply_async(func, (msg, ))
 *     print "Mark~ Mark~ Mark~~~~~~~~~~~~~~~~~~~~~~"
 *     pool.close()
 *     pool.join()
 *     print "Sub-process(es) done."
 *
 * The seed's output: the Mark~ line first (mixed into "msg: hello 0"
 * there, as both wrote at once), msg: hello 0, 1, 2, an end, then
 * msg: hello 3 (the fourth task waits for a free worker), three more end.
 *
 * The seed sleeps 3 s per task; this sleeps 0.3 s (`--long` or
 * MPROC_DEMO_LONG=1 restores 3 s).  The msg is the argument bytes, NUL
 * included.  The parent checks that the submitting loop did not wait for
 * a task (it took less than one task's sleep), that every task succeeded,
 * and that the whole run took about two rounds of sleeps (3 workers, 4
 * tasks), not four.
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
  fprintf(stderr, "pool_apply_async: %s: %s (%s)\n", what, mproc_strerror(rc),
          mproc_err_name(rc));
  return 1;
}

int main(int argc, char **argv) {
  const char *env = getenv("MPROC_DEMO_LONG");
  mproc_pool *pool = NULL;
  mproc_async *res[NTASKS] = {NULL};
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
    int n = snprintf(msg, sizeof msg, "hello %d", i);
    rc = mproc_pool_apply_async(pool, func, NULL, msg, (size_t)n + 1, NULL,
                                &res[i]);
    if (rc != 0) {
      status = report("mproc_pool_apply_async", rc);
      goto out;
    }
  }
  double submit = now() - t0;
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

  for (int i = 0; i < NTASKS; i++) {
    if ((rc = mproc_async_get(res[i], 0)) != 0) {
      status = report("task", rc);
    }
  }
  if (submit >= task_seconds) {
    fprintf(stderr, "pool_apply_async: submitting took %.2f s: it waited\n",
            submit);
    status = 1;
  }
  if (total < 2 * task_seconds * 0.9 || total >= 4 * task_seconds) {
    fprintf(stderr,
            "pool_apply_async: %.2f s for 4 tasks of %.1f s on 3 workers "
            "(want about %.1f s)\n",
            total, task_seconds, 2 * task_seconds);
    status = 1;
  }

out:
  for (int i = 0; i < NTASKS; i++) {
    mproc_async_free(res[i]);
  }
  if ((rc = mproc_pool_free(pool)) != 0) {
    status = report("mproc_pool_free", rc);
  }
  return status;
}
