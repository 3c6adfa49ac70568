/*
 * lock_add_nolock.c - two processes add to "the same" number without a
 * lock, and each one counts on its own copy.
 *
 * From seed 001, "python多进程", section "使用Lock来避免冲突", the program
 * without a lock:
 *
 *     def add(number, value, lock):
 *         print("init add{0} number = {1}".format(value, number))
 *         for i in xrange(1, 6):
 *             number += value
 *             time.sleep(1)
 *             print("add{0} number = {1}".format(value, number))
 *
 * started twice, with value 1 and value 3, and "main end" printed by the
 * main process.  The seed prints
 *
 *     main end
 *     init add1 number = 0
 *     init add3 number = 0
 *     add1 number = 1
 *     add3 number = 3
 *     ...
 *     add1 number = 5
 *     add3 number = 15
 *
 * the two processes interleaved, each counting from 0 on its own copy: a
 * plain int is passed by value (Python pickles it, mproc copies the
 * argument bytes), so add3 never sees what add1 added.  The lock is made
 * and passed, as in the seed, but not used; lock_add_lock.c uses it.
 *
 * The seed sleeps 1 s per step; this sleeps 0.2 s so the demo stays short
 * (`--long` or MPROC_DEMO_LONG=1 restores 1 s).  Each child exits non-zero
 * unless it ended at 5 * value; the main process checks that its own
 * number is still 0 and that both children succeeded.
 *
 * This program is self-contained on purpose, so that it can be read and
 * copied on its own: helpers such as nap() and report() and the start and
 * join code repeat those of lock_add_lock.c, value_add.c and array_negate.c
 * instead of being shared.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mproc.h>

struct add_arg {
  int number;       /* the child's own copy */
  int value;
  mproc_lock *lock; /* passed as in the seed; unused here */
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

  if (len != sizeof a) {
    return 2;
  }
  memcpy(&a, arg, sizeof a);
  printf("init add%d number = %d\n", a.value, a.number);
  for (int i = 1; i < 6; i++) {
    a.number += a.value;
    nap(step_seconds);
    printf("add%d number = %d\n", a.value, a.number);
  }
  return a.number == 5 * a.value ? 0 : 3;
}

static int report(const char *what, int rc) {
  fprintf(stderr, "lock_add_nolock: %s: %s (%s)\n", what, mproc_strerror(rc),
          mproc_err_name(rc));
  return 1;
}

int main(int argc, char **argv) {
  const char *env = getenv("MPROC_DEMO_LONG");
  mproc_process *p[2] = {NULL, NULL};
  mproc_lock *lock = NULL;
  int number = 0;
  int status = 0, rc;

  if ((argc > 1 && strcmp(argv[1], "--long") == 0) ||
      (env != NULL && strcmp(env, "1") == 0)) {
    step_seconds = 1.0;
  }
  /* Line-buffered, so the children's lines interleave even in a pipe. */
  setvbuf(stdout, NULL, _IOLBF, 0);

  if ((rc = mproc_lock_new(&lock)) != 0) {
    return report("mproc_lock_new", rc);
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
        fprintf(stderr, "lock_add_nolock: add%d exited with %d\n",
                i == 0 ? 1 : 3, code);
        status = 1;
      }
    }
    if ((rc = mproc_process_free(p[i])) != 0) {
      status = report("mproc_process_free", rc);
    }
  }
  if ((rc = mproc_lock_free(lock)) != 0) {
    status = report("mproc_lock_free", rc);
  }
  if (status == 0) {
    if (number != 0) {
      fprintf(stderr, "lock_add_nolock: the main process's number changed\n");
      return 1;
    }
    printf("check: add1 ended at 5 and add3 at 15, each on its own copy; "
           "the main process's number is still %d\n", number);
  }
  return status;
}
