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
 *                                 the clock); +inf waits without limit.
 * NaN is MPROC_EINVAL, whatever the state of the object (a lock that is
 * free, a result that is ready).  A wait that ends at its timeout returns
 * MPROC_ETIMEDOUT, except where the answer is a count or a truth value
 * (mproc_connection_poll and mproc_connection_wait return 0,
 * mproc_cond_wait_for the predicate's 0) and where Python names the
 * outcome (a queue's MPROC_EEMPTY and MPROC_EFULL, Python's Empty and
 * Full).  No wait gives a timeout value a meaning of its own: a barrier's
 * default timeout is used through its own call, mproc_barrier_wait_default.
 *
 * An options field that is a time limit rather than a wait (a pool's
 * task_timeout, a listener's handshake_timeout) says what its 0 means: 0
 * is the zeroed struct's value and so takes the documented default; < 0
 * (MPROC_FOREVER) is no limit where a limit may be lifted; NaN is
 * MPROC_EINVAL.  A field that is itself a wait's timeout (a barrier's
 * default) has the meaning above, 0 included.
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
