/*
 * rmutex.c - robust, process-shared pthread mutexes.
 *
 * The kernel keeps, per thread, a list of the robust mutexes the thread
 * holds (set_robust_list(2), registered by libc).  When the thread dies the
 * kernel marks each such mutex FUTEX_OWNER_DIED and wakes one waiter, which
 * then acquires it with EOWNERDEAD.  This only works while the mutex is
 * mapped in the dying process, which holds for the arena (mapped for the
 * process's whole life).
 *
 * Timed locks use pthread_mutex_clocklock on CLOCK_MONOTONIC (glibc 2.30);
 * pthread_mutex_timedlock would measure the deadline on the wall clock.
 */
#include "platform.h"

#include <errno.h>
#include <pthread.h>

int mproc__rmutex_init(pthread_mutex_t *m) {
  pthread_mutexattr_t a;
  int r = pthread_mutexattr_init(&a);
  if (r != 0) {
    return -r;
  }
  r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  if (r == 0) {
    r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  }
  if (r == 0) {
    /* Error checking: a relock by the holder is EDEADLK, not a hang. */
    r = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
  }
  if (r == 0) {
    r = pthread_mutex_init(m, &a);
  }
  pthread_mutexattr_destroy(&a);
  return -r;
}

int mproc__rmutex_lock(pthread_mutex_t *m, const mproc__deadline *d) {
  int r;
  if (d == NULL || d->forever) {
    r = pthread_mutex_lock(m);
  } else {
    struct timespec ts = {(time_t)(d->at_ns / 1000000000u),
                          (long)(d->at_ns % 1000000000u)};
    /* pthread_mutex_clocklock restarts internally after signals. */
    r = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
  }
  return -r;
}

int mproc__rmutex_consistent(pthread_mutex_t *m) {
  return -pthread_mutex_consistent(m);
}

int mproc__rmutex_unlock(pthread_mutex_t *m) {
  return -pthread_mutex_unlock(m);
}

pid_t mproc__rmutex_holder(const pthread_mutex_t *m) {
  /* A robust mutex's lock word holds its owner's thread id (the kernel
   * reads it there when the owner dies: FUTEX_OWNER_DIED), in glibc's
   * __data.__lock and musl's second int. */
#ifdef __GLIBC__
  const int *word = &m->__data.__lock;
#else
  const int *word = (const int *)(const void *)m + 1;
#endif
  int v = __atomic_load_n(word, __ATOMIC_RELAXED);
  return (pid_t)(v & 0x3fffffff); /* FUTEX_TID_MASK */
}
