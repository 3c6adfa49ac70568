/*
 * queue_results.c - four worker processes take tasks from one Queue and
 * put their results on another; the parent prints the results in the
 * order it submitted the tasks.
 *
 * From seed 003, "使用进程池并关注结果" (a pool, and the results):
 *
 *     def func(msg):
 *         print("msg:", msg)
 *         time.sleep(3)
 *         print("end")
 *         return "done" + msg
 *
 *     pool = multiprocessing.Pool(processes=4)
 *     result = []
 *     for i in range(3):
 *         msg = "hello %d" % (i)
 *         result.append(pool.apply_async(func, (msg, )))
 *     pool.close()
 *     pool.join()
 *     for res in result:
 *         print(":::", res.get())
 *     print("Sub-process(es) done.")
 *
 * mproc has no Pool yet, so this is the pool done by hand, with the
 * pieces a pool is made of: four worker processes, a task queue and a
 * result queue.  A task is the message "i hello i" (its number, then the
 * msg); the worker answers "i donehello i", so the parent can put each
 * result back in submission order, which is what the seed's list of
 * AsyncResults gives.
 *
 * pool.close() is mproc_queue_close on the task queue: the workers get
 * the tasks still queued, then MPROC_ECLOSED, and return.  pool.join() is
 * joining the four workers.  The parent reads the results only after
 * joining the workers, which in Python would risk the "joining processes
 * that use queues" deadlock; an mproc put is complete when it returns, so
 * a worker that has put its results can always exit.
 *
 * The seed sleeps 3 s per task; this sleeps 0.3 s (`--long` or
 * MPROC_DEMO_LONG=1 restores 3 s).  The parent checks that every result
 * came exactly once and is "done" + its msg, and every worker's exit code.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mproc.h>

#define NWORKERS 4 /* Pool(processes=4) */
#define NTASKS 3   /* for i in range(3) */

struct worker_arg {
  mproc_queue *tasks;   /* shared: "i hello i" */
  mproc_queue *results; /* shared: "i donehello i" */
};

static double task_seconds = 0.3;

static void nap(double seconds) {
  struct timespec left;
  left.tv_sec = (time_t)seconds;
  left.tv_nsec = (long)((seconds - (double)left.tv_sec) * 1e9);
  while (nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}

/* The pool's worker: func(msg) for every task until the queue is closed. */
static int worker(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  struct worker_arg a;
  char task[64], result[80];
  size_t n;
  int rc, i, off;

  if (len != sizeof a) {
    return 2;
  }
  memcpy(&a, arg, sizeof a);
  for (;;) {
    rc = mproc_queue_get_into(a.tasks, task, sizeof task - 1, &n,
                              MPROC_FOREVER);
    if (rc == MPROC_ECLOSED) {
      return 0; /* pool.close(), and no task left */
    }
    if (rc != 0) {
      fprintf(stderr, "worker: mproc_queue_get_into: %s\n",
              mproc_strerror(rc));
      return 3;
    }
    task[n] = '\0';
    if (sscanf(task, "%d %n", &i, &off) != 1) {
      fprintf(stderr, "worker: bad task \"%s\"\n", task);
      return 3;
    }
    const char *msg = task + off;
    /* func(msg) */
    printf("msg: %s\n", msg);
    nap(task_seconds);
    printf("end\n");
    int r = snprintf(result, sizeof result, "%d done%s", i, msg);
    rc = mproc_queue_put(a.results, result, (size_t)r, MPROC_FOREVER);
    if (rc != 0) {
      fprintf(stderr, "worker: mproc_queue_put: %s\n", mproc_strerror(rc));
      return 3;
    }
  }
}

static int report(const char *what, int rc) {
  fprintf(stderr, "queue_results: %s: %s (%s)\n", what, mproc_strerror(rc),
          mproc_err_name(rc));
  return 1;
}

int main(int argc, char **argv) {
  const char *env = getenv("MPROC_DEMO_LONG");
  mproc_process *pool[NWORKERS] = {NULL};
  mproc_queue *tasks = NULL, *results = NULL;
  char result[NTASKS][80] = {{0}};
  int status = 0, rc;

  if ((argc > 1 && strcmp(argv[1], "--long") == 0) ||
      (env != NULL && strcmp(env, "1") == 0)) {
    task_seconds = 3.0;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);

  if ((rc = mproc_queue_new(&tasks, 0, NULL)) != 0 ||
      (rc = mproc_queue_new(&results, 0, NULL)) != 0) {
    status = report("mproc_queue_new", rc);
    goto out;
  }
  struct worker_arg a = {tasks, results};
  for (int k = 0; k < NWORKERS; k++) {
    if ((rc = mproc_process_new(&pool[k], worker, NULL, &a, sizeof a,
                                NULL)) != 0) {
      status = report("mproc_process_new", rc);
      goto out;
    }
    if ((rc = mproc_process_start(pool[k])) != 0) {
      status = report("mproc_process_start", rc);
      goto out;
    }
  }

  /* result.append(pool.apply_async(func, ("hello %d" % i, ))) */
  for (int i = 0; i < NTASKS; i++) {
    char task[64];
    int n = snprintf(task, sizeof task, "%d hello %d", i, i);
    if ((rc = mproc_queue_put(tasks, task, (size_t)n, MPROC_FOREVER)) != 0) {
      status = report("mproc_queue_put", rc);
      goto out;
    }
  }
  /* pool.close(): no more tasks; the workers end when the queue is empty. */
  if ((rc = mproc_queue_close(tasks)) != 0) {
    status = report("mproc_queue_close", rc);
    goto out;
  }

out:
  /* pool.join(); also after a failure: a running child cannot be freed. */
  if (status != 0 && tasks != NULL) {
    (void)mproc_queue_close(tasks);
  }
  for (int k = 0; k < NWORKERS; k++) {
    int code = 0;
    if (pool[k] == NULL) {
      continue;
    }
    if (mproc_process_pid(pool[k]) != 0) {
      if ((rc = mproc_process_join(pool[k], MPROC_FOREVER)) != 0) {
        status = report("mproc_process_join", rc);
      } else if ((rc = mproc_process_exitcode(pool[k], &code)) != 0) {
        status = report("mproc_process_exitcode", rc);
      } else if (code != 0) {
        fprintf(stderr, "queue_results: worker %d exited with %d\n", k, code);
        status = 1;
      }
    }
    if ((rc = mproc_process_free(pool[k])) != 0) {
      status = report("mproc_process_free", rc);
    }
  }

  /* for res in result: print(":::", res.get()) */
  for (int k = 0; status == 0 && k < NTASKS; k++) {
    char buf[80];
    size_t n;
    int i, off;
    /* Every worker has ended: a result not queued now will never come. */
    if ((rc = mproc_queue_get_into(results, buf, sizeof buf - 1, &n, 0)) !=
        0) {
      status = report("mproc_queue_get_into (a result is missing)", rc);
      break;
    }
    buf[n] = '\0';
    if (sscanf(buf, "%d %n", &i, &off) != 1 || i < 0 || i >= NTASKS ||
        result[i][0] != '\0') {
      fprintf(stderr, "queue_results: unexpected result \"%s\"\n", buf);
      status = 1;
      break;
    }
    snprintf(result[i], sizeof result[i], "%s", buf + off);
  }
  for (int i = 0; status == 0 && i < NTASKS; i++) {
    char want[80];
    snprintf(want, sizeof want, "donehello %d", i);
    printf("::: %s\n", result[i]);
    if (strcmp(result[i], want) != 0) {
      fprintf(stderr, "queue_results: result %d is \"%s\", want \"%s\"\n", i,
              result[i], want);
      status = 1;
    }
  }
  if (status == 0) {
    if (mproc_queue_qsize(results) != 0) {
      fprintf(stderr, "queue_results: results left over\n");
      status = 1;
    } else {
      printf("Sub-process(es) done.\n");
    }
  }
  if ((rc = mproc_queue_free(tasks)) != 0) {
    status = report("mproc_queue_free", rc);
  }
  if ((rc = mproc_queue_free(results)) != 0) {
    status = report("mproc_queue_free", rc);
  }
  return status;
}
