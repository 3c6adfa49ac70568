/*
 * pool_faults.c - what mproc's Pool does where Python's hangs or has no
 * answer: a worker killed in the middle of a task, a task that never
 * ends, a map of uneven items with adaptive chunks and a progress bar.
 *
 * No seed program: the seeds only use well-behaved tasks.  In Python the
 * first case hangs pool.map for ever (a SIGKILLed Pool worker's task is
 * never answered) and the second has no remedy but terminate().  Here:
 *   1. four tasks, one of which SIGKILLs its own worker: that one fails
 *      with MPROC_EWORKERDIED and says which signal, the three others
 *      succeed, a new worker takes the dead one's place;
 *   2. a task that spins for ever with a task_timeout of 0.3 s: it fails
 *      with MPROC_ETIMEDOUT (its worker got SIGTERM), and the next task
 *      runs;
 *   3. a map of 200,000 items of very different costs, chunksize
 *      MPROC_CHUNK_ADAPTIVE, with a progress bar (drawn only when stderr
 *      is a terminal), results checked;
 *   4. the pool's statistics.
 * It checks every outcome and exits non-zero if one is not as described.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mproc.h>

static int failures;

#define CHECK(cond, what)                                                     \
  do {                                                                        \
    if (!(cond)) {                                                            \
      printf("  UNEXPECTED: %s\n", what);                                     \
      failures++;                                                             \
    }                                                                         \
  } while (0)

/* Doubles its argument, or kills its own worker when the argument is 3. */
static int double_or_die(mproc_task *t, const void *arg, size_t len,
                         void *ctx) {
  (void)ctx;
  int x;
  (void)len;
  memcpy(&x, arg, sizeof x);
  if (x == 3) {
    raise(SIGKILL); /* as the OOM killer would */
  }
  x *= 2;
  return mproc_task_return(t, &x, sizeof x);
}

static int spin_for_ever(mproc_task *t, const void *arg, size_t len,
                         void *ctx) {
  (void)ctx;
  (void)t, (void)arg, (void)len;
  for (;;) {
    usleep(1000);
  }
  return 0;
}

/* An item whose cost depends on its value: from nothing to ~50 us. */
static int uneven(const void *in, void *out, void *ctx) {
  (void)ctx;
  long x;
  memcpy(&x, in, sizeof x);
  volatile long acc = 0;
  for (long i = 0; i < (x % 1000) * (x % 7 == 0 ? 40 : 1); i++) {
    acc += i;
  }
  long y = x + 1;
  memcpy(out, &y, sizeof y);
  return 0;
}

static int part1(mproc_pool *p) {
  printf("1. four tasks, the third one SIGKILLs its worker\n");
  mproc_async *r[4];
  for (int i = 0; i < 4; i++) {
    int x = i + 1;
    int rc = mproc_pool_apply_async(p, double_or_die, NULL, &x, sizeof x, NULL,
                                    &r[i]);
    if (rc != 0) {
      printf("apply_async: %s\n", mproc_strerror(rc));
      return 1;
    }
  }
  for (int i = 0; i < 4; i++) {
    int rc = mproc_async_get(r[i], MPROC_FOREVER);
    if (rc == 0) {
      size_t len;
      const int *v = mproc_async_data(r[i], &len);
      printf("  task %d -> %d\n", i + 1, *v);
      CHECK(i != 2 && *v == 2 * (i + 1), "a wrong result");
    } else {
      int code, sig;
      const char *msg;
      mproc_async_error(r[i], &code, &sig, &msg);
      printf("  task %d failed: %s (%s, signal %d)\n", i + 1,
             mproc_strerror(rc), msg, sig);
      CHECK(i == 2 && rc == MPROC_EWORKERDIED && sig == SIGKILL,
            "not the task that died, or not as a death");
    }
    mproc_async_free(r[i]);
  }
  return 0;
}

static int part2(mproc_pool *p) {
  printf("2. a task that never ends, task_timeout 0.3 s\n");
  void *res = NULL;
  size_t len = 0;
  int rc = mproc_pool_apply(p, spin_for_ever, NULL, NULL, 0, &res, &len);
  printf("  the endless task: %s\n", mproc_strerror(rc));
  CHECK(rc == MPROC_ETIMEDOUT, "the endless task did not time out");
  int x = 21;
  rc = mproc_pool_apply(p, double_or_die, NULL, &x, sizeof x, &res, &len);
  CHECK(rc == 0 && len == sizeof(int), "the next task failed");
  if (rc == 0) {
    printf("  the next task -> %d\n", *(int *)res);
    CHECK(*(int *)res == 42, "a wrong result");
    free(res);
  }
  return 0;
}

static int part3(mproc_pool *p) {
  size_t n = 200000;
  printf("3. a map of %zu uneven items, adaptive chunks%s\n", n,
         isatty(STDERR_FILENO) ? ", progress bar on stderr" : "");
  long *in = malloc(n * sizeof *in);
  long *out = malloc(n * sizeof *out);
  if (in == NULL || out == NULL) {
    free(in);
    free(out);
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    in[i] = (long)i;
  }
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = MPROC_CHUNK_ADAPTIVE;
  mo.progress = 1;
  int rc = mproc_pool_map(p, uneven, NULL, in, n, sizeof *in, out, sizeof *out,
                          &mo, NULL);
  size_t bad = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    bad += out[i] != (long)i + 1;
  }
  printf("  map: %s, %zu wrong results\n", mproc_strerror(rc), bad);
  CHECK(rc == 0 && bad == 0, "the map failed");
  free(in);
  free(out);
  return 0;
}

int main(void) {
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 3;
  o.task_timeout = 0.3;
  mproc_pool *p;
  int rc = mproc_pool_new(&p, &o);
  if (rc != 0) {
    printf("pool: %s\n", mproc_strerror(rc));
    return 1;
  }
  if (part1(p) != 0 || part2(p) != 0 || part3(p) != 0) {
    failures++;
  }
  mproc_pool_stats st;
  mproc_pool_stats_get(p, &st);
  printf("4. statistics: %llu tasks done, %llu failed, %llu worker died, "
         "%llu replaced\n",
         (unsigned long long)st.tasks_done,
         (unsigned long long)st.tasks_failed,
         (unsigned long long)st.workers_died,
         (unsigned long long)st.workers_replaced);
  CHECK(st.workers_died == 2 && st.workers_replaced >= 2,
        "the deaths were not counted");
  mproc_pool_close(p);
  rc = mproc_pool_join(p, MPROC_FOREVER);
  CHECK(rc == 0, "join failed");
  mproc_pool_free(p);
  printf(failures == 0 ? "all as described\n" : "%d unexpected outcomes\n",
         failures);
  return failures == 0 ? 0 : 1;
}
