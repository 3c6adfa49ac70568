/*
 * array_negate.c - a child negates every element of a shared Array while
 * two other children add to a shared Value under a Lock.
 *
 * From seed 001, "python多进程", section "使用Value和Array来进行内存之中的
 * 共享通信", 2. "Array实现多进程共享内存变量":
 *
 *     def change(arr):
 *         for i in range(len(arr)):
 *             arr[i] = -arr[i]
 *
 *     lock = multiprocessing.Lock()
 *     number = multiprocessing.Value('i', 0)
 *     arr = multiprocessing.Array('i', range(10))
 *     print(arr[:])
 *     p1 = Process(target=add, args=(number, 1, lock))
 *     p2 = Process(target=add, args=(number, 3, lock))
 *     p3 = Process(target=change, args=(arr,))
 *     p1.start(); p2.start(); p3.start()
 *     p3.join()
 *     print(arr[:])
 *     print("main end")
 *
 * with add() as in value_add.c.  The seed prints
 *
 *     [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
 *     init add3 number = 0
 *     ***************add3 has added***********
 *     [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]
 *     main end
 *     add3 number = 3
 *     ...
 *     add3 number = 15
 *     init add1 number = 15
 *     ...
 *     add1 number = 20
 *
 * The array is printed before and after the child negated it: the main
 * process sees the child's writes.  The adders go on after "main end"
 * (Python joins them at exit; here main joins them explicitly).  (The
 * seed's listing of add() has its except/finally indented one level too
 * deep, a syntax error in Python; its output is that of the add() above.)
 *
 * The seed sleeps 1 s per step; this sleeps 0.2 s (`--long` or
 * MPROC_DEMO_LONG=1 restores 1 s).  The main process checks that every
 * element was negated and that number.value ends at 20, and exits
 * non-zero otherwise.
 *
 * This program is self-contained on purpose, so that it can be read and
 * copied on its own: helpers such as nap() and report() and the start and
 * join code repeat those of lock_add_nolock.c, lock_add_lock.c and
 * value_add.c instead of being shared.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mproc.h>

#define N 10
#define EXIT_MPROC 4

struct add_arg {
  mproc_value *number;
  int add_value;
  mproc_lock *lock;
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
  int64_t value;
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
    if (mproc_value_get_i64(a.number, &value) != 0 ||
        mproc_value_set_i64(a.number, value + a.add_value) != 0) {
      status = EXIT_MPROC;
      goto release;
    }
    printf("***************add%d has added***********\n", a.add_value);
    nap(step_seconds);
    if (mproc_value_get_i64(a.number, &value) != 0) {
      status = EXIT_MPROC;
      goto release;
    }
    printf("add%d number = %" PRId64 "\n", a.add_value, value);
  }
release:
  if ((rc = mproc_lock_release(a.lock)) != 0) {
    fprintf(stderr, "add%d: release: %s\n", a.add_value, mproc_strerror(rc));
    return EXIT_MPROC;
  }
  return status;
}

/* Python's change(arr): arr[i] = -arr[i] for every index. */
static int change(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  mproc_array *arr;

  if (len != sizeof arr) {
    return 2;
  }
  memcpy(&arr, arg, sizeof arr);
  for (size_t i = 0; i < mproc_array_len(arr); i++) {
    int64_t x;
    if (mproc_array_get_i64(arr, i, &x) != 0 ||
        mproc_array_set_i64(arr, i, -x) != 0) {
      return EXIT_MPROC;
    }
  }
  return 0;
}

/* print(arr[:]): the whole array as a Python list. */
static int print_array(mproc_array *arr) {
  int v[N];
  int rc = mproc_array_read(arr, 0, N, v);
  if (rc != 0) {
    return rc;
  }
  printf("[");
  for (int i = 0; i < N; i++) {
    printf(i == 0 ? "%d" : ", %d", v[i]);
  }
  printf("]\n");
  return 0;
}

static int report(const char *what, int rc) {
  fprintf(stderr, "array_negate: %s: %s (%s)\n", what, mproc_strerror(rc),
          mproc_err_name(rc));
  return 1;
}

/* Join, check the exit code, free; 0 or 1. */
static int finish(mproc_process *p, const char *who) {
  int code = 0, rc, status = 0;
  if (p == NULL) {
    return 0;
  }
  if (mproc_process_pid(p) != 0) {
    if ((rc = mproc_process_join(p, MPROC_FOREVER)) != 0) {
      status = report("mproc_process_join", rc);
      (void)mproc_process_kill(p);
      (void)mproc_process_join(p, MPROC_FOREVER);
    } else if ((rc = mproc_process_exitcode(p, &code)) != 0) {
      status = report("mproc_process_exitcode", rc);
    } else if (code != 0) {
      fprintf(stderr, "array_negate: %s exited with %d\n", who, code);
      status = 1;
    }
  }
  if ((rc = mproc_process_free(p)) != 0) {
    status = report("mproc_process_free", rc);
  }
  return status;
}

int main(int argc, char **argv) {
  const char *env = getenv("MPROC_DEMO_LONG");
  mproc_process *p1 = NULL, *p2 = NULL, *p3 = NULL;
  mproc_lock *lock = NULL;
  mproc_value *number = NULL;
  mproc_array *arr = NULL;
  int status = 0, rc;

  if ((argc > 1 && strcmp(argv[1], "--long") == 0) ||
      (env != NULL && strcmp(env, "1") == 0)) {
    step_seconds = 1.0;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);

  int range[N];
  for (int i = 0; i < N; i++) {
    range[i] = i;
  }
  int zero = 0;
  if ((rc = mproc_lock_new(&lock)) != 0 ||
      (rc = mproc_value_new(&number, 'i', &zero, NULL)) != 0 ||
      (rc = mproc_array_new(&arr, 'i', N, range, NULL)) != 0) {
    status = report("making the shared objects", rc);
    goto out;
  }
  if ((rc = print_array(arr)) != 0) {
    status = report("mproc_array_read", rc);
    goto out;
  }
  struct add_arg a1 = {number, 1, lock}, a3 = {number, 3, lock};
  if ((rc = mproc_process_new(&p1, add, NULL, &a1, sizeof a1, NULL)) != 0 ||
      (rc = mproc_process_new(&p2, add, NULL, &a3, sizeof a3, NULL)) != 0 ||
      (rc = mproc_process_new(&p3, change, NULL, &arr, sizeof arr,
                              NULL)) != 0) {
    status = report("mproc_process_new", rc);
    goto out;
  }
  if ((rc = mproc_process_start(p1)) != 0 ||
      (rc = mproc_process_start(p2)) != 0 ||
      (rc = mproc_process_start(p3)) != 0) {
    status = report("mproc_process_start", rc);
    goto out;
  }
  status |= finish(p3, "change");
  p3 = NULL;
  if ((rc = print_array(arr)) != 0) {
    status = report("mproc_array_read", rc);
  }
  printf("main end\n");

out:
  status |= finish(p1, "add1");
  status |= finish(p2, "add3");
  status |= finish(p3, "change");
  if (status == 0) {
    int v[N];
    int64_t final = 0;
    int bad = 0;
    if ((rc = mproc_array_read(arr, 0, N, v)) != 0 ||
        (rc = mproc_value_get_i64(number, &final)) != 0) {
      status = report("reading the results", rc);
    } else {
      for (int i = 0; i < N; i++) {
        bad |= v[i] != -i;
      }
      if (bad || final != 20) {
        fprintf(stderr, "array_negate: wrong result (array %s, number %"
                PRId64 ")\n", bad ? "not negated" : "negated", final);
        status = 1;
      } else {
        printf("check: every element negated by the child; number.value = "
               "%" PRId64 " = 5 * 1 + 5 * 3\n", final);
      }
    }
  }
  if ((rc = mproc_array_free(arr)) != 0) {
    status = report("mproc_array_free", rc);
  }
  if ((rc = mproc_value_free(number)) != 0) {
    status = report("mproc_value_free", rc);
  }
  if ((rc = mproc_lock_free(lock)) != 0) {
    status = report("mproc_lock_free", rc);
  }
  return status;
}
