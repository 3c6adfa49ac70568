/*
 * mproc.h - Python's multiprocessing, for C programs.
 *
 * Include this one header.  Every module has its own header under mproc/,
 * documented function by function; docs/ has the guide (docs/guide.md,
 * with the conventions every module follows) and a page per module.
 *
 *   mproc/common.h      MPROC_EXTERN, MPROC_FOREVER and the meaning of
 *                       every timeout
 *   mproc/errno.h       error codes, mproc_strerror(), mproc_err_name()
 *   mproc/version.h     version macros and mproc_version()
 *   mproc/log.h         the optional diagnostic log (MPROC_LOG=debug|info|
 *                       warn)
 *   mproc/arena.h       the shared arena, memory every process sees at the
 *                       same address: mproc_shm_alloc/calloc/free
 *   mproc/context.h     start methods (fork, spawn, forkserver) and
 *                       contexts: set_start_method, get_context
 *   mproc/process.h     Process: start, join, terminate, exitcode, names,
 *                       daemons; active_children, cpu_count
 *   mproc/sync.h        Lock, RLock, Semaphore, BoundedSemaphore, Event,
 *                       Condition, Barrier, shared between processes
 *   mproc/shared.h      Value, Array, RawValue, RawArray
 *   mproc/shm.h         SharedMemory, named segments Python can attach to
 *   mproc/connection.h  Pipe, Connection (Python's wire format), wait;
 *                       Listener and Client with the authkey handshake
 *   mproc/queue.h       Queue, JoinableQueue, SimpleQueue in shared memory
 *   mproc/pool.h        Pool: apply, map, imap and their async forms, with
 *                       workers that may die without hanging it
 */
#ifndef MPROC_H
#define MPROC_H

#include "mproc/common.h"
#include "mproc/errno.h"
#include "mproc/version.h"
#include "mproc/log.h"
#include "mproc/arena.h"
#include "mproc/context.h"
#include "mproc/process.h"
#include "mproc/sync.h"
#include "mproc/shared.h"
#include "mproc/shm.h"
#include "mproc/connection.h"
#include "mproc/queue.h"
#include "mproc/pool.h"

#endif /* MPROC_H */
