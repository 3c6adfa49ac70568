/*
 * tests/task.h - the test harness's assertions and registration.
 *
 * A test is a function defined with TEST_IMPL(name) anywhere under tests/;
 * it registers itself (a constructor), and CMake finds the names by
 * scanning the sources, so adding a test needs no list to edit.  The runner
 * (runner.c) runs every test case in its own process, in its own process
 * group, with a timeout, and afterwards checks that the case left no child,
 * no zombie, no new fd and nothing new in /dev/shm.
 *
 * A test returns 0 (pass) or TEST_SKIP after printing why.  The ASSERT
 * macros print both operands (and for error codes their mproc names) and
 * end the test process at once with status 1; inside a child process the
 * child ends with status 1, which the test asserts on through the child's
 * exit code.
 */
#ifndef MPROC_TEST_TASK_H
#define MPROC_TEST_TASK_H

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mproc.h"

#define TEST_SKIP 77

typedef int (*mproc_test_fn)(void);
void mproc_test_register(const char *name, mproc_test_fn fn, const char *file);

#define TEST_IMPL(name)                                                       \
  static int test_##name##_impl(void);                                        \
  __attribute__((constructor)) static void test_##name##_register(void) {     \
    mproc_test_register(#name, test_##name##_impl, __FILE__);                 \
  }                                                                           \
  static int test_##name##_impl(void)

/* A case that holds under every start method: CMake also runs it as
 * name@spawn and name@forkserver (MPROC_START_METHOD set).  Its children
 * must take what they need from arg, ctx (arena memory or static data) or
 * pass_fds, never from a global set at run time or an inherited fd. */
#define TEST_IMPL_ALL_METHODS(name) TEST_IMPL(name)

__attribute__((noreturn)) void mproc_test_fail(const char *file, int line,
                                               const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define ASSERT(expr)                                                          \
  do {                                                                        \
    if (!(expr)) {                                                            \
      mproc_test_fail(__FILE__, __LINE__, "assertion failed: %s", #expr);     \
    }                                                                         \
  } while (0)

#define ASSERT_BASE(a, op, b, type, fmt)                                      \
  do {                                                                        \
    type eval_a_ = (type)(a);                                                 \
    type eval_b_ = (type)(b);                                                 \
    if (!(eval_a_ op eval_b_)) {                                              \
      mproc_test_fail(__FILE__, __LINE__,                                     \
                      "assertion failed: `%s %s %s` (" fmt " %s " fmt ")",    \
                      #a, #op, #b, eval_a_, #op, eval_b_);                    \
    }                                                                         \
  } while (0)

#define ASSERT_EQ(a, b) ASSERT_BASE(a, ==, b, int64_t, "%" PRId64)
#define ASSERT_NE(a, b) ASSERT_BASE(a, !=, b, int64_t, "%" PRId64)
#define ASSERT_GE(a, b) ASSERT_BASE(a, >=, b, int64_t, "%" PRId64)
#define ASSERT_GT(a, b) ASSERT_BASE(a, >, b, int64_t, "%" PRId64)
#define ASSERT_LE(a, b) ASSERT_BASE(a, <=, b, int64_t, "%" PRId64)
#define ASSERT_LT(a, b) ASSERT_BASE(a, <, b, int64_t, "%" PRId64)
#define ASSERT_UEQ(a, b) ASSERT_BASE(a, ==, b, uint64_t, "%" PRIu64)
#define ASSERT_DBL_GE(a, b) ASSERT_BASE(a, >=, b, double, "%.4f")
#define ASSERT_DBL_LE(a, b) ASSERT_BASE(a, <=, b, double, "%.4f")
#define ASSERT_PTR_EQ(a, b) ASSERT_BASE(a, ==, b, const void *, "%p")
#define ASSERT_PTR_NE(a, b) ASSERT_BASE(a, !=, b, const void *, "%p")
#define ASSERT_NULL(a) ASSERT_PTR_EQ(a, NULL)
#define ASSERT_NOT_NULL(a) ASSERT_PTR_NE(a, NULL)

#define ASSERT_STR_EQ(a, b)                                                   \
  do {                                                                        \
    const char *sa_ = (a), *sb_ = (b);                                        \
    if (sa_ == NULL || sb_ == NULL || strcmp(sa_, sb_) != 0) {                \
      mproc_test_fail(__FILE__, __LINE__,                                     \
                      "assertion failed: `%s == %s` (\"%s\" == \"%s\")", #a,  \
                      #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");        \
    }                                                                         \
  } while (0)

/* An mproc call's result compared with an expected code, by name. */
#define ASSERT_ERR(expr, code)                                                \
  do {                                                                        \
    int r_ = (expr);                                                          \
    int c_ = (code);                                                          \
    if (r_ != c_) {                                                           \
      mproc_test_fail(__FILE__, __LINE__,                                     \
                      "`%s` returned %d (%s), expected %d (%s)", #expr, r_,   \
                      mproc_err_name(r_), c_, mproc_err_name(c_));            \
    }                                                                         \
  } while (0)
#define ASSERT_OK(expr) ASSERT_ERR(expr, 0)

/* ---- helpers (runner.c) ---- */

/* Seconds on CLOCK_MONOTONIC. */
double test_now(void);
/* Sleep, whatever signals arrive. */
void test_sleep(double seconds);
/* 1 if pid exists and is not a zombie, else 0. */
int test_pid_running(pid_t pid);
/* The state letter, parent and kernel flags (PF_*) of pid, from
 * /proc/PID/stat, or 0 if there is no such process; ppid and flags may
 * be NULL. */
char test_proc_stat(pid_t pid, pid_t *ppid, unsigned *flags);
/* Wait up to timeout seconds for pid (a child or an orphan reparented to
 * the test process, which is a subreaper) to end; reaps it.  Returns its
 * Python-style exit code (status or -signal), or INT32_MIN on timeout. */
int test_wait_pid(pid_t pid, double timeout);
/* Read one int from fd within timeout seconds (a child's report through a
 * pipe).  Returns 1, or 0 on end of file, an error or the timeout. */
int test_read_int(int fd, int *v, double timeout);
/* The number of fds open in this process. */
int test_fd_count(void);
/* MPROC_TEST_TIMEOUT_MULTIPLIER, at least 1 (slow builds stretch bounds). */
double test_timeout_mult(void);
/* How busy the machine is now: runnable tasks (or the 1-minute load
 * average, the larger) per CPU, clamped to 1..20. */
double test_busy_factor(void);
/* Upper slack for timing assertions: 50 ms times test_timeout_mult() times
 * test_busy_factor(), so 50 ms on a quiet machine and up to 1 s (more in
 * slow builds) on a crowded one.  Call it after the wait it bounds. */
double test_slack(void);
/* Flush stdout and stderr, then fork, asserting it worked; fork's result. */
pid_t test_fork(void);
/* Create and start a process running fn(arg, len, NULL) with default
 * options (the test helpers pass no ctx: arg carries what a child needs). */
mproc_process *test_start_proc(mproc_target_fn fn, const void *arg,
                               size_t len);
/* Join p (60 s at most), free it, and return its exit code. */
int test_finish_proc(mproc_process *p);
/* Start a process running fn(arg, len), join and free it; its exit code. */
int test_run_proc(mproc_target_fn fn, const void *arg, size_t len);
/* Start n processes into p[0..n-1], each running fn(arg, len). */
void test_start_procs(mproc_process **p, int n, mproc_target_fn fn,
                      const void *arg, size_t len);
/* Finish p[0..n-1] in order, asserting that each exited with code 0. */
void test_finish_procs_ok(mproc_process **p, int n);
/* Spawn n workers running fn(arg, len), join them all, each must exit 0. */
void test_run_procs_ok(int n, mproc_target_fn fn, const void *arg,
                       size_t len);
/* Start threads th[0..n-1], each running fn(arg), asserting each start. */
void test_start_threads(pthread_t *th, int n, void *(*fn)(void *),
                        void *arg);
/* Join threads th[0..n-1] in order, asserting that each returned 0. */
void test_join_threads_ok(pthread_t *th, int n);
/* A seeded pseudo-random sequence (xorshift64*); the state must not be 0. */
uint64_t test_rand(uint64_t *state);
/* Fill n bytes with a pattern derived from seed; check it (1 if intact). */
void test_fill(void *p, size_t n, uint64_t seed);
int test_check_fill(const void *p, size_t n, uint64_t seed);

#endif /* MPROC_TEST_TASK_H */
