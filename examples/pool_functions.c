/*
 * pool_functions.c - four different functions run in one pool of 4
 * workers, each sleeping a random time.
 *
 * From seed 003, 例7.4 "使用多个进程池":
 *
 *     def Lee():
 *         print "\nRun task Lee-%s" %(os.getpid())
 *         start = time.time()
 *         time.sleep(random.random() * 10)
 *         end = time.time()
 *         print 'Task Lee, runs %0.2f seconds.' %(end - start)
 *     # Marlon (random() * 40), Allen (* 30), Frank (* 20): the same
 *
 *     function_list = [Lee, Marlon, Allen, Frank]
 *     print "parent process %s" %(os.getpid())
 *     pool = multiprocessing.Pool(4)
 *     for func in function_list:
 *         pool.apply_async(func)
 *     print 'Waiting for all subprocesses done...'
 *     pool.close()
 *     pool.join()
 *     print 'All subprocesses done.'
 *
 * A task is a plain C function pointer (workers are forked from this
 * program), so function_list is an array of them.  The seed sleeps up to
 * 10, 40, 30 and 20 s; this sleeps up to 0.1, 0.4, 0.3 and 0.2 s (a
 * hundredth; `--long` or MPROC_DEMO_LONG=1 restores the seed's times).
 * The parent draws the random times and passes each as the argument
 * bytes: random() in forked workers would repeat the same sequence.
 * Each task returns its pid; the parent checks every task succeeded in a
 * process other than itself, and that the four ran at once (the whole
 * run took about the longest sleep, not the sum).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

#define NFUNCS 4

static double scale = 0.01; /* --long: 1 */

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

/* The body the four functions share: print, sleep, print, return pid. */
static int run(mproc_task *t, const char *name, const char *sep,
               const void *arg, size_t len) {
  double seconds;
  if (len != sizeof seconds) {
    mproc_task_fail(t, "want a double");
    return 2;
  }
  memcpy(&seconds, arg, sizeof seconds);
  printf("\nRun task %s-%ld\n", name, (long)getpid());
  double start = now();
  nap(seconds);
  double end = now();
  printf("Task %s%s runs %0.2f seconds.\n", name, sep, end - start);
  pid_t pid = getpid();
  return mproc_task_return(t, &pid, sizeof pid);
}

static int Lee(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  return run(t, "Lee", ",", arg, len); /* the seed's comma */
}
static int Marlon(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  return run(t, "Marlon", "", arg, len);
}
static int Allen(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  return run(t, "Allen", "", arg, len);
}
static int Frank(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  return run(t, "Frank", "", arg, len);
}

static int report(const char *what, int rc) {
  fprintf(stderr, "pool_functions: %s: %s (%s)\n", what, mproc_strerror(rc),
          mproc_err_name(rc));
  return 1;
}

int main(int argc, char **argv) {
  const char *env = getenv("MPROC_DEMO_LONG");
  static const mproc_task_fn function_list[NFUNCS] = {Lee, Marlon, Allen,
                                                      Frank};
  static const double max_seconds[NFUNCS] = {10, 40, 30, 20};
  double seconds[NFUNCS], longest = 0, sum = 0;
  mproc_pool *pool = NULL;
  mproc_async *res[NFUNCS] = {NULL};
  int status = 0, rc;

  if ((argc > 1 && strcmp(argv[1], "--long") == 0) ||
      (env != NULL && strcmp(env, "1") == 0)) {
    scale = 1.0;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  for (int i = 0; i < NFUNCS; i++) {
    /* random.random() * max, scaled */
    seconds[i] = (double)rand() / ((double)RAND_MAX + 1.0) * max_seconds[i] *
                 scale;
    sum += seconds[i];
    longest = seconds[i] > longest ? seconds[i] : longest;
  }

  printf("parent process %ld\n", (long)getpid());
  mproc_pool_opts po;
  memset(&po, 0, sizeof po);
  po.processes = 4;
  if ((rc = mproc_pool_new(&pool, &po)) != 0) {
    return report("mproc_pool_new", rc);
  }
  double t0 = now();
  for (int i = 0; i < NFUNCS; i++) {
    rc = mproc_pool_apply_async(pool, function_list[i], NULL, &seconds[i],
                                sizeof seconds[i], NULL, &res[i]);
    if (rc != 0) {
      status = report("mproc_pool_apply_async", rc);
      goto out;
    }
  }
  printf("Waiting for all subprocesses done...\n");
  if ((rc = mproc_pool_close(pool)) != 0) {
    status = report("mproc_pool_close", rc);
    goto out;
  }
  if ((rc = mproc_pool_join(pool, MPROC_FOREVER)) != 0) {
    status = report("mproc_pool_join", rc);
    goto out;
  }
  double total = now() - t0;
  printf("All subprocesses done.\n");

  for (int i = 0; i < NFUNCS; i++) {
    size_t len = 0;
    pid_t pid;
    const void *data;
    if ((rc = mproc_async_get(res[i], 0)) != 0) {
      status = report("task", rc);
      continue;
    }
    data = mproc_async_data(res[i], &len);
    if (data == NULL || len != sizeof pid) {
      fprintf(stderr, "pool_functions: task %d returned %zu bytes\n", i, len);
      status = 1;
      continue;
    }
    memcpy(&pid, data, sizeof pid);
    if (pid == getpid()) {
      fprintf(stderr, "pool_functions: task %d ran in the parent\n", i);
      status = 1;
    }
  }
  /* At once: about the longest sleep; a margin for starting on a busy
   * machine, and below the sum unless the sleeps were all tiny. */
  if (total > longest + 0.5 * (sum - longest) + 0.2) {
    fprintf(stderr,
            "pool_functions: %.2f s in all; longest task %.2f s, sum %.2f s: "
            "the tasks did not run at once\n",
            total, longest, sum);
    status = 1;
  }

out:
  for (int i = 0; i < NFUNCS; i++) {
    mproc_async_free(res[i]);
  }
  if ((rc = mproc_pool_free(pool)) != 0) {
    status = report("mproc_pool_free", rc);
  }
  return status;
}
