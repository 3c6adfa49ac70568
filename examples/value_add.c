/*
 * value_add.c - two processes add to one shared Value, one after the
 * other under a Lock: the second goes on from where the first stopped.
 *
 * From seed 001, "python多进程", section "使用Value和Array来进行内存之中的
 * 共享通信", 1. "Value多进程共享变量":
 *
 *     def add(number, add_value, lock):
 *         lock.acquire()
 *         try:
 *             print("init add{0} number = {1}".format(add_value, number.value))
 *             for i in xrange(1, 6):
 *                 number.value += add_value
 *                 print("***************add{0} has added***********".format(add_value))
 *                 time.sleep(1)
 *                 print("add{0} number = {1}".format(add_value, number.value))
 *         ...
 *         finally:
 *             lock.release()
 *
 *     number = multiprocessing.Value('i', 0)
 *
 * The seed prints "main end", then add1's loop (init 0, then 1 .. 5), then
 * add3's loop starting where add1 stopped ("init add3 number = 5", then 8,
 * 11, 14, 17, 20): both processes add to the SAME number, 5*1 + 5*3 = 20.
 * (Which process gets the lock first is up to the scheduler; when add3 is
 * first, add1 starts from 15.)
 *
 * number.value += add_value is a get and a set: each takes the Value's own
 * lock, but the pair is made safe here by the separate Lock both children
 * hold for their whole loop, as in the seed.
 *
 * The seed sleeps 1 s per step; this sleeps 0.2 s (`--long` or
 * MPROC_DEMO_LONG=1 restores 1 s).  Each child checks that every value it
 * reads is the one it wrote (no one else writes while it holds the lock);
 * the main process checks that the final value is 20.
 *
 * This program is self-contained on purpose, so that it can be read and
 * copied on its own: helpers such as nap() and report() and the start and
 * join code repeat those of lock_add_nolock.c, lock_add_lock.c and
 * array_negate.c instead of being shared.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mproc.h>

#define EXIT_WRONG 3 /* a value read back was not what the child wrote */
#define EXIT_MPROC 4 /* an mproc call failed */

struct add_arg {
  mproc_value *number; /* shared: Value('i', 0) */
  int add_value;
  mproc_lock *lock;    /* shared: Lock() */
};

static double step_seconds = 0.2;

static void nap(double seconds) {
  struct timespec left;
  left.tv_sec = (time_t)seconds;
  left.tv_nsec = (long)((seconds - (double)left.tv_sec) * 1e9);
  while (nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}

static int add(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  struct add_arg a;
  int64_t value, expect;
  int rc, status = 0;

  if (len != sizeof a) {
    return 2;
  }
  memcpy(&a, arg, sizeof a);
  if ((rc = mproc_lock_acquire(a.lock, MPROC_FOREVER)) != 0) {
    fprintf(stderr, "add%d: acquire: %s\n", a.add_value, mproc_strerror(rc));
    return EXIT_MPROC;
  }
  if (mproc_value_get_i64(a.number, &value) != 0) {
    status = EXIT_MPROC;
    goto release;
  }
  printf("init add%d number = %" PRId64 "\n", a.add_value, value);
  for (int i = 1; i < 6; i++) {
    /* number.value += add_value */
    if (mproc_value_get_i64(a.number, &value) != 0 ||
        mproc_value_set_i64(a.number, value + a.add_value) != 0) {
      status = EXIT_MPROC;
      goto release;
    }
    expect = value + a.add_value;
    printf("***************add%d has added***********\n", a.add_value);
    nap(step_seconds);
    if (mproc_value_get_i64(a.number, &value) != 0) {
      status = EXIT_MPROC;
      goto release;
    }
    printf("add%d number = %" PRId64 "\n", a.add_value, value);
    if (value != expect) {
      status = EXIT_WRONG;
    }
  }
release:
  if ((rc = mproc_lock_release(a.lock)) != 0) {
    fprintf(stderr, "add%d: release: %s\n", a.add_value, mproc_strerror(rc));
    return EXIT_MPROC;
  }
  return status;
}

static int report(const char *what, int rc) {
  fprintf(stderr, "value_add: %s: %s (%s)\n", what, mproc_strerror(rc),
          mproc_err_name(rc));
  return 1;
}

int main(int argc, char **argv) {
  const char *env = getenv("MPROC_DEMO_LONG");
  mproc_process *p[2] = {NULL, NULL};
  mproc_lock *lock = NULL;
  mproc_value *number = NULL;
  int status = 0, rc;

  if ((argc > 1 && strcmp(argv[1], "--long") == 0) ||
      (env != NULL && strcmp(env, "1") == 0)) {
    step_seconds = 1.0;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);

  if ((rc = mproc_lock_new(&lock)) != 0) {
    return report("mproc_lock_new", rc);
  }
  int zero = 0;
  if ((rc = mproc_value_new(&number, 'i', &zero, NULL)) != 0) {
    status = report("mproc_value_new", rc);
    goto out;
  }
  for (int i = 0; i < 2; i++) {
    struct add_arg a = {number, i == 0 ? 1 : 3, lock};
    if ((rc = mproc_process_new(&p[i], add, NULL, &a, sizeof a, NULL)) != 0) {
      status = report("mproc_process_new", rc);
      goto out;
    }
  }
  for (int i = 0; i < 2; i++) {
    if ((rc = mproc_process_start(p[i])) != 0) {
      status = report("mproc_process_start", rc);
      goto out;
    }
  }
  printf("main end\n");

out:
  for (int i = 0; i < 2; i++) {
    int code = 0;
    if (p[i] == NULL) {
      continue;
    }
    if (mproc_process_pid(p[i]) != 0) {
      if ((rc = mproc_process_join(p[i], MPROC_FOREVER)) != 0) {
        status = report("mproc_process_join", rc);
        (void)mproc_process_kill(p[i]);
        (void)mproc_process_join(p[i], MPROC_FOREVER);
      } else if ((rc = mproc_process_exitcode(p[i], &code)) != 0) {
        status = report("mproc_process_exitcode", rc);
      } else if (code != 0) {
        fprintf(stderr, "value_add: add%d exited with %d\n", i == 0 ? 1 : 3,
                code);
        status = 1;
      }
    }
    if ((rc = mproc_process_free(p[i])) != 0) {
      status = report("mproc_process_free", rc);
    }
  }
  if (status == 0 && number != NULL) {
    int64_t final = 0;
    if ((rc = mproc_value_get_i64(number, &final)) != 0) {
      status = report("mproc_value_get_i64", rc);
    } else if (final != 20) {
      fprintf(stderr, "value_add: number.value is %" PRId64 ", not 20\n",
              final);
      status = 1;
    } else {
      printf("check: number.value = %" PRId64 " = 5 * 1 + 5 * 3, both "
             "processes added to the same number\n", final);
    }
  }
  if ((rc = mproc_value_free(number)) != 0) {
    status = report("mproc_value_free", rc);
  }
  if ((rc = mproc_lock_free(lock)) != 0) {
    status = report("mproc_lock_free", rc);
  }
  return status;
}
