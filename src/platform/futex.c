/*
 * futex.c - wait and wake on a 32-bit word, across processes.
 *
 * These are musl's __timedwait/__wake reduced to what mproc needs: the
 * shared futex operations only (mproc's futex words live in the arena,
 * which several processes map, so FUTEX_PRIVATE_FLAG would be wrong), and
 * deadlines on CLOCK_MONOTONIC through FUTEX_WAIT_BITSET, which takes an
 * absolute time on a chosen clock: a wait interrupted by a signal resumes
 * against the same deadline.
 */
#include "platform.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int mproc__futex_wait(uint32_t *addr, uint32_t val, const mproc__deadline *d) {
  struct timespec ts, *tsp = NULL;
  if (d != NULL && !d->forever) {
    ts.tv_sec = (time_t)(d->at_ns / 1000000000u);
    ts.tv_nsec = (long)(d->at_ns % 1000000000u);
    tsp = &ts;
  }
  for (;;) {
    /* FUTEX_WAIT_BITSET's timeout is absolute, on CLOCK_MONOTONIC unless
     * FUTEX_CLOCK_REALTIME is given. */
    long r = syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, val, tsp, NULL,
                     FUTEX_BITSET_MATCH_ANY);
    if (r == 0) {
      return 0;
    }
    int e = errno;
    if (e == EINTR) {
      /* Old kernels report EINTR even for SA_RESTART handlers (musl's
       * comment in __timedwait.c); the deadline is absolute, so retrying
       * is exact. */
      continue;
    }
    if (e == EAGAIN) {
      return -EAGAIN;
    }
    if (e == ETIMEDOUT) {
      return -ETIMEDOUT;
    }
    return -e;
  }
}

int mproc__futex_wake(uint32_t *addr, int n) {
  long r = syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
  return r < 0 ? -errno : (int)r;
}

/* MPROC_NO_MEMBARRIER=1: behave as a kernel without it (read each time a
 * process registers, which is once per process). */
static int membarrier_disabled(void) {
  const char *e = getenv("MPROC_NO_MEMBARRIER");
  return e != NULL && strcmp(e, "1") == 0;
}

int mproc__membarrier_register(void) {
  if (membarrier_disabled()) {
    return -ENOSYS;
  }
  long r = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
                   0);
  return r < 0 ? -errno : 0;
}

int mproc__membarrier(void) {
  if (membarrier_disabled()) {
    return -ENOSYS;
  }
  long r = syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0);
  return r < 0 ? -errno : 0;
}
