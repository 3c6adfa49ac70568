/*
 * lock_add_lock.c - the same two adders, each holding a Lock for its
 * whole loop: one process runs its loop first, then the other.
 *
 * From seed 001, "python多进程", section "使用Lock来避免冲突", the program
 * with a lock:
 *
 *     def add(number, value, lock):
 *         lock.acquire()
 *         try:
 *             print("init add{0} number = {1}".format(value, number))
 *             for i in xrange(1, 6):
 *                 number += value
 *                 time.sleep(1)
 *                 print("add{0} number = {1}".format(value, number))
 *         ...
 *         finally:
 *             lock.release()
 *
 * The seed prints
 *
 *     main end
 *     init add1 number = 0        (add1 got the lock first)
 *     add1 number = 1
 *     ...
 *     add1 number = 5
 *     init add3 number = 0        (add3 waited for add1 to release it)
 *     add3 number = 3
 *     ...
 *     add3 number = 15
 *
 * and notes that add3 starts from 0 again although add1 reached 5: the
 * lock serializes the two processes, but number is a plain variable,
 * copied into each process, not shared (value_add.c shares it).  Which
 * process gets the lock first is up to the scheduler.
 *
 * The seed sleeps 1 s per step; this sleeps 0.2 s (`--long` or
 * MPROC_DEMO_LONG=1 restores 1 s).  To check that the lock really
 * serialized the loops, each child also counts itself in and out of its
 * critical section on a RawValue with atomic adds (a checker, not part of
 * the seed): a child that finds another one inside exits non-zero, as
 * does one that does not end at 5 * value.
 *
 * This program is self-contained on purpose, so that it can be read and
 * copied on its own: helpers such as nap() and report() and the start and
 * join code repeat those of lock_add_nolock.c, value_add.c and
 * array_negate.c instead of being shared.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mproc.h>

/* Exit codes of the child. */
#define EXIT_OVERLAP 3 /* another process was inside the locked loop */
#define EXIT_COUNT 4   /* the child's own copy did not end at 5 * value */
#define EXIT_MPROC 5   /* an mproc call failed */

struct add_arg {
  int number;          /* the child's own copy */
  int value;
  mproc_lock *lock;    /* shared: one lock in the arena */
  mproc_value *inside; /* the checker: processes inside the loop */
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
  int64_t before;
  int rc, status = 0;

  if (len != sizeof a) {
    return 2;
  }
  memcpy(&a, arg, sizeof a);
  if ((rc = mproc_lock_acquire(a.lock, MPROC_FOREVER)) != 0) {
    fprintf(stderr, "add%d: acquire: %s\n", a.value, mproc_strerror(rc));
    return EXIT_MPROC;
  }
  if (mproc_value_add(a.inside, 1, &before) != 0 || before != 0) {
    status = EXIT_OVERLAP;
  }
  printf("init add%d number = %d\n", a.value, a.number);
  for (int i = 1; i < 6; i++) {
    a.number += a.value;
    nap(step_seconds);
    printf("add%d number = %d\n", a.value, a.number);
  }
  if (mproc_value_add(a.inside, -1, &before) != 0 || before != 1) {
    status = EXIT_OVERLAP;
  }
  if ((rc = mproc_lock_release(a.lock)) != 0) {
    fprintf(stderr, "add%d: release: %s\n", a.value, mproc_strerror(rc));
    return EXIT_MPROC;
  }
  if (status == 0 && a.number != 5 * a.value) {
    status = EXIT_COUNT;
  }
  return status;
}

static int report(const char *what, int rc) {
  fprintf(stderr, "lock_add_lock: %s: %s (%s)\n", what, mproc_strerror(rc),
          mproc_err_name(rc));
  return 1;
}

int main(int argc, char **argv) {
  const char *env = getenv("MPROC_DEMO_LONG");
  mproc_process *p[2] = {NULL, NULL};
  mproc_lock *lock = NULL;
  mproc_value *inside = NULL;
  int number = 0;
  int status = 0, rc;

  if ((argc > 1 && strcmp(argv[1], "--long") == 0) ||
      (env != NULL && strcmp(env, "1") == 0)) {
    step_seconds = 1.0;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);

  if ((rc = mproc_lock_new(&lock)) != 0) {
    return report("mproc_lock_new", rc);
  }
  if ((rc = mproc_raw_value_new(&inside, 'i', NULL)) != 0) {
    status = report("mproc_raw_value_new", rc);
    goto out;
  }
  for (int i = 0; i < 2; i++) {
    struct add_arg a = {number, i == 0 ? 1 : 3, lock, inside};
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
        fprintf(stderr, "lock_add_lock: add%d exited with %d%s\n",
                i == 0 ? 1 : 3, code,
                code == EXIT_OVERLAP ? " (the loops overlapped)" : "");
        status = 1;
      }
    }
    if ((rc = mproc_process_free(p[i])) != 0) {
      status = report("mproc_process_free", rc);
    }
  }
  if ((rc = mproc_value_free(inside)) != 0) {
    status = report("mproc_value_free", rc);
  }
  if ((rc = mproc_lock_free(lock)) != 0) {
    status = report("mproc_lock_free", rc);
  }
  if (status == 0) {
    printf("check: the loops ran one after the other; each counted from 0 "
           "on its own copy (add1 to 5, add3 to 15)\n");
  }
  return status;
}
