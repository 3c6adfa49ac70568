/*
 * pool_map_squares.c - square [1..6], each taking a sleep, first one
 * after the other, then with Pool(5).map: six sleeps serially, about two
 * with the pool.
 *
 * From seed 004, section 3 "使用Pool类创建多个子进程":
 *
 *     def func(i):
 *         time.sleep(1)
 *         print( i*i )
 *
 *     testFL = [1,2,3,4,5,6]
 *     print('顺序执行:')
 *     for i in testFL:
 *         func(i)
 *     print("顺序执行时间:", int(end_time1 - start_time1) )
 *     print( '多进程执行' )
 *     pool = Pool(5)
 *     rl = pool.map(func, testFL)
 *     pool.close()
 *     pool.join()
 *     print "并行执行时间:", int(end_time2-end-time2)
 *     print( rl )
 *
 * The seed's output: 顺序执行时间: 6, 并行执行时间: 2 and
 * [1, 4, 9, 16, 25, 36] (its func returns None; the printed list is what
 * the text means, so this func also returns i*i).
 *
 * mproc_pool_map takes fixed-size records: an int in, an int out, results
 * in input order.  The seed sleeps 1 s per item; this sleeps 0.1 s
 * (`--long` or MPROC_DEMO_LONG=1 restores 1 s), so the times print with
 * two decimals instead of int().  Five workers take six items in two
 * rounds (chunksize 1, what Python's formula gives for 6 items and 5
 * workers).  The parent checks the squares and that the pool took less
 * than half the serial time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mproc.h>

#define N 6

static double item_seconds = 0.1;

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

static int square(int i) {
  nap(item_seconds);
  printf("%d\n", i * i);
  return i * i;
}

/* func, as map's record function: an int in, an int out. */
static int func(const void *in, void *out, void *ctx) {
  (void)ctx;
  int i;
  memcpy(&i, in, sizeof i);
  int y = square(i);
  memcpy(out, &y, sizeof y);
  return 0;
}

static int report(const char *what, int rc) {
  fprintf(stderr, "pool_map_squares: %s: %s (%s)\n", what, mproc_strerror(rc),
          mproc_err_name(rc));
  return 1;
}

int main(int argc, char **argv) {
  const char *env = getenv("MPROC_DEMO_LONG");
  const int testFL[N] = {1, 2, 3, 4, 5, 6};
  int rl[N] = {0};
  mproc_pool *pool = NULL;
  mproc_map_error err;
  int status = 0, rc;

  if ((argc > 1 && strcmp(argv[1], "--long") == 0) ||
      (env != NULL && strcmp(env, "1") == 0)) {
    item_seconds = 1.0;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);

  printf("顺序执行:\n");
  double t1 = now();
  for (int i = 0; i < N; i++) {
    (void)square(testFL[i]);
  }
  double serial = now() - t1;
  printf("顺序执行时间: %.2f\n", serial);

  printf("多进程执行:\n");
  double t2 = now();
  mproc_pool_opts po;
  memset(&po, 0, sizeof po);
  po.processes = 5;
  if ((rc = mproc_pool_new(&pool, &po)) != 0) {
    return report("mproc_pool_new", rc);
  }
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = 1;
  if ((rc = mproc_pool_map(pool, func, NULL, testFL, N, sizeof(int), rl,
                           sizeof(int), &mo, &err)) != 0) {
    status = report("pool.map", rc);
    goto out;
  }
  if ((rc = mproc_pool_close(pool)) != 0) {
    status = report("mproc_pool_close", rc);
    goto out;
  }
  if ((rc = mproc_pool_join(pool, MPROC_FOREVER)) != 0) {
    status = report("mproc_pool_join", rc);
    goto out;
  }
  double parallel = now() - t2;
  printf("并行执行时间: %.2f\n", parallel);

  printf("[");
  for (int i = 0; i < N; i++) {
    printf("%s%d", i ? ", " : "", rl[i]);
    if (rl[i] != testFL[i] * testFL[i]) {
      status = 1;
    }
  }
  printf("]\n");
  if (status != 0) {
    fprintf(stderr, "pool_map_squares: wrong squares\n");
  }
  if (parallel >= serial / 2) {
    fprintf(stderr,
            "pool_map_squares: the pool took %.2f s, serial %.2f s: want "
            "about a third\n",
            parallel, serial);
    status = 1;
  }

out:
  if ((rc = mproc_pool_free(pool)) != 0) {
    status = report("mproc_pool_free", rc);
  }
  return status;
}
