/*
 * clock.c - monotonic deadlines.
 *
 * A timeout is turned into a deadline once, at the start of a call, on
 * CLOCK_MONOTONIC; every wait after that (including a wait resumed after
 * EINTR) asks how much of the deadline is left.  So a wall-clock step never
 * stretches or cuts a wait, and a stream of signals never restarts it.
 */
#include "platform.h"

#include <errno.h>
#include <math.h>
#include <time.h>

uint64_t mproc__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int mproc__deadline_init(mproc__deadline *d, double timeout) {
  if (isnan(timeout)) {
    return -EINVAL;
  }
  d->forever = 0;
  d->at_ns = 0;
  if (timeout < 0) {
    d->forever = 1;
    return 0;
  }
  /* Above ~292 years the nanosecond count overflows: that is forever. */
  if (timeout > 9.0e9) {
    d->forever = 1;
    return 0;
  }
  d->at_ns = mproc__now_ns() + (uint64_t)(timeout * 1e9);
  return 0;
}

uint64_t mproc__deadline_left_ns(const mproc__deadline *d) {
  if (d == NULL || d->forever) {
    return UINT64_MAX;
  }
  uint64_t now = mproc__now_ns();
  return now >= d->at_ns ? 0 : d->at_ns - now;
}

int mproc__deadline_left_ms(const mproc__deadline *d) {
  uint64_t ns = mproc__deadline_left_ns(d);
  if (ns == UINT64_MAX) {
    return -1;
  }
  uint64_t ms = (ns + 999999u) / 1000000u;
  return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

void mproc__sleep_ns(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  /* clock_nanosleep updates nothing on EINTR with an absolute time, so use
   * the absolute form and simply retry. */
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  ts.tv_sec += now.tv_sec;
  ts.tv_nsec += now.tv_nsec;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}
