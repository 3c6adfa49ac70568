/*
 * mproc/common.h - definitions every mproc header shares.
 *
 * Visibility: the library is built with hidden visibility and exports only
 * what is marked MPROC_EXTERN, so internal mproc__ symbols never become part
 * of the ABI.
 *
 * Timeouts everywhere in mproc are double seconds, as in Python:
 *   timeout < 0  (MPROC_FOREVER)  waits without limit;
 *   timeout == 0                  polls and returns at once;
 *   timeout > 0                   waits at most that long, measured on
 *                                 CLOCK_MONOTONIC from the call's start
 *                                 (a wall-clock step neither stretches nor
 *                                 cuts the wait, and EINTR does not restart
 *                                 the clock).
 * NaN is MPROC_EINVAL.
 */
#ifndef MPROC_COMMON_H
#define MPROC_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#if defined(__GNUC__) && __GNUC__ >= 4
#define MPROC_EXTERN __attribute__((visibility("default")))
#else
#define MPROC_EXTERN
#endif

/* Wait without limit (any negative timeout means the same). */
#define MPROC_FOREVER (-1.0)

#endif /* MPROC_COMMON_H */
