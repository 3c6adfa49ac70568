/*
 * mproc.h - Python's multiprocessing, for C programs.
 *
 * Include this one header.  Every module has its own header under mproc/,
 * documented function by function; docs/ has the guide.
 *
 *   mproc/errno.h     error codes, mproc_strerror(), mproc_err_name()
 *   mproc/version.h   version macros and mproc_version()
 *   mproc/log.h       the optional diagnostic log (MPROC_LOG=debug|info|warn)
 *   mproc/arena.h     the shared arena: mproc_shm_alloc/calloc/free
 *   mproc/process.h   Process: start, join, terminate, exitcode, names
 *   mproc/sync.h      Lock, RLock, Semaphore, Event, Condition, Barrier
 *   mproc/shared.h    Value, Array, RawValue, RawArray
 *   mproc/shm.h       SharedMemory, named and Python-compatible
 */
#ifndef MPROC_H
#define MPROC_H

#include "mproc/common.h"
#include "mproc/errno.h"
#include "mproc/version.h"
#include "mproc/log.h"
#include "mproc/arena.h"
#include "mproc/process.h"
#include "mproc/sync.h"
#include "mproc/shared.h"
#include "mproc/shm.h"
#include "mproc/connection.h"
#include "mproc/queue.h"
#include "mproc/pool.h"

#endif /* MPROC_H */
