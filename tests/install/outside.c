/*
 * tests/install/outside.c - a program from outside the source tree, built
 * against an installed mproc the way a user builds one: with pkg-config
 * (`cc outside.c $(pkg-config --cflags --libs mproc)`) or with CMake's
 * find_package(mproc).  tests/install/test-install.sh builds and runs it.
 *
 * It checks that the installed headers and library agree on the version,
 * that the error table is there, and that a process can be started,
 * joined and its exit code read.  Prints one line per step; exits 0 when
 * all went well.
 */
#include <mproc.h>

#include <stdio.h>
#include <string.h>

static int target(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  /* The child gets its own copy of the argument bytes. */
  return len == 6 && memcmp(arg, "hello", 6) == 0 ? 42 : 1;
}

#define CHECK(expr)                                                           \
  do {                                                                        \
    if (!(expr)) {                                                            \
      fprintf(stderr, "outside: %s:%d: check failed: %s\n", __FILE__,        \
              __LINE__, #expr);                                               \
      return 1;                                                               \
    }                                                                         \
  } while (0)

#define CHECK_OK(call)                                                        \
  do {                                                                        \
    int rc_ = (call);                                                         \
    if (rc_ != 0) {                                                           \
      fprintf(stderr, "outside: %s:%d: %s: %s (%s)\n", __FILE__, __LINE__,   \
              #call, mproc_strerror(rc_), mproc_err_name(rc_));               \
      return 1;                                                               \
    }                                                                         \
  } while (0)

int main(void) {
  /* Header and library of the same release. */
  printf("mproc %s (header %s)\n", mproc_version_string(),
         MPROC_VERSION_STRING);
  CHECK(mproc_version() == MPROC_VERSION_HEX);
  CHECK(strcmp(mproc_version_string(), MPROC_VERSION_STRING) == 0);

  /* The error table. */
  CHECK(MPROC_ETIMEDOUT == -ETIMEDOUT);
  CHECK(strcmp(mproc_err_name(MPROC_ETIMEDOUT), "MPROC_ETIMEDOUT") == 0);
  CHECK(strcmp(mproc_strerror(MPROC_ETIMEDOUT), "unknown error") != 0);
  CHECK(strcmp(mproc_err_name(0), "MPROC_OK") == 0);
  printf("MPROC_EEMPTY: %s\n", mproc_strerror(MPROC_EEMPTY));

  /* One process: start, join, exit code. */
  mproc_process *p = NULL;
  CHECK_OK(mproc_process_new(&p, target, NULL, "hello", 6, NULL));
  CHECK_OK(mproc_process_start(p));
  CHECK(mproc_process_pid(p) > 0);
  CHECK_OK(mproc_process_join(p, MPROC_FOREVER));
  int code = -1;
  CHECK_OK(mproc_process_exitcode(p, &code));
  printf("%s exited with %d\n", mproc_process_name(p), code);
  CHECK(code == 42);
  CHECK_OK(mproc_process_free(p));

  printf("outside: ok\n");
  return 0;
}
