/*
 * process_named.c - five processes started and joined one at a time, each
 * printing its own name.
 *
 * From the seed tutorial on multiprocessing's Process and Pool classes
 * (section 2, "使用Process()类创建多进程").  The output is the seed's:
 *
 *     Process-1 starting
 *     worker 0
 *     Process end!!!
 *     ...
 *     Process-5 starting
 *     worker 4
 *     Process end!!!
 *     主进程
 *
 * (Python's print("worker ", n) would put two spaces after "worker"; the
 * seed's printed output has one, and so does this program.)
 *
 * The names are not set by the program: mproc names the n-th process object
 * "Process-n" as Python does.  The parent checks the name of each object,
 * and each child checks that its current_process() carries the same name,
 * so a naming bug makes the program fail instead of printing a wrong line
 * that nobody reads.  Messages about failures go to stderr, so stdout stays
 * exactly the seed's.
 */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

#define NPROCS 5

/* The child's exit code when its own name is not the expected one. */
#define EXIT_BADNAME 3

/* "Process-<n + 1>": the name mproc gives the (n + 1)-th object. */
static void expected_name(char *buf, size_t size, int n) {
  snprintf(buf, size, "Process-%d", n + 1);
}

/* The seed's funcs(n): the worker number arrives as the argument bytes. */
static int funcs(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  const char *name = mproc_process_name(mproc_current_process());
  char want[32];
  int n;

  if (len != sizeof n) {
    fprintf(stderr, "funcs: bad argument (%zu bytes)\n", len);
    return 2;
  }
  /* memcpy: the copy of the bytes is not promised to be aligned. */
  memcpy(&n, arg, sizeof n);
  printf("%s starting\n", name);
  printf("worker %d\n", n);
  expected_name(want, sizeof want, n);
  if (strcmp(name, want) != 0) {
    fprintf(stderr, "funcs: current_process() is \"%s\", expected \"%s\"\n",
            name, want);
    return EXIT_BADNAME;
  }
  return 0;
}

static int report(const char *what, int rc) {
  fprintf(stderr, "process_named: %s: %s (%s)\n", what, mproc_strerror(rc),
          mproc_err_name(rc));
  return 1;
}

int main(void) {
  int i;

  for (i = 0; i < NPROCS; i++) {
    mproc_process *p = NULL;
    char want[32];
    int rc, code = -1, failed = 0;

    rc = mproc_process_new(&p, funcs, NULL, &i, sizeof i, NULL);
    if (rc != 0) {
      return report("mproc_process_new", rc);
    }
    expected_name(want, sizeof want, i);
    if (strcmp(mproc_process_name(p), want) != 0) {
      fprintf(stderr, "process_named: object %d is named \"%s\", expected "
                      "\"%s\"\n",
              i, mproc_process_name(p), want);
      failed = 1;
    }
    rc = mproc_process_start(p);
    if (rc != 0) {
      report("mproc_process_start", rc);
      (void)mproc_process_free(p);
      return 1;
    }
    rc = mproc_process_join(p, MPROC_FOREVER);
    if (rc != 0) {
      /* The child cannot be freed while it runs: stop it first. */
      report("mproc_process_join", rc);
      (void)mproc_process_kill(p);
      (void)mproc_process_join(p, MPROC_FOREVER);
      (void)mproc_process_free(p);
      return 1;
    }
    rc = mproc_process_exitcode(p, &code);
    if (rc != 0) {
      report("mproc_process_exitcode", rc);
      failed = 1;
    } else if (code != 0) {
      fprintf(stderr, "process_named: %s exited with %d\n",
              mproc_process_name(p), code);
      failed = 1;
    }
    rc = mproc_process_free(p);
    if (rc != 0) {
      report("mproc_process_free", rc);
      failed = 1;
    }
    if (failed) {
      return 1;
    }
    printf("Process end!!!\n");
  }
  printf("主进程\n");
  return 0;
}
