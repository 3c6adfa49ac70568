/*
 * src/internal.h - what mproc's modules share and nobody else sees.
 *
 * Internal, non-static functions are prefixed mproc__ (two underscores).
 * The library is built with hidden visibility, so none of them is exported
 * from the shared library; the test suite links the static library and may
 * call them (fault injection, consistency checks).
 */
#ifndef MPROC_INTERNAL_H
#define MPROC_INTERNAL_H

#include "mproc.h"
#include "platform/platform.h"

#include <stddef.h>

#define MPROC__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MPROC__STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)

/* Branch hints for fast paths. */
#define MPROC__LIKELY(x) __builtin_expect(!!(x), 1)
#define MPROC__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- log.c ---- */

/* Log at a level, if on.  Cheap when off: one load and a compare. */
extern int mproc__log_level; /* -1 until MPROC_LOG was read */
void mproc__log_init(void);
#define MPROC__LOG(level, ...)                                                \
  do {                                                                        \
    if (MPROC__UNLIKELY(mproc__log_level != 0)) {                             \
      mproc_log((level), __VA_ARGS__);                                        \
    }                                                                         \
  } while (0)
#define MPROC__DEBUG(...) MPROC__LOG(MPROC_LOG_DEBUG, __VA_ARGS__)
#define MPROC__INFO(...) MPROC__LOG(MPROC_LOG_INFO, __VA_ARGS__)
#define MPROC__WARN(...) MPROC__LOG(MPROC_LOG_WARN, __VA_ARGS__)

/* ---- process.c ---- */

/* This process's name ("MainProcess" in the main process). */
const char *mproc__current_name(void);

/* How this process reaps children in the background: "io_uring",
 * "thread" or "none yet" (before the first start).  For tests and logs. */
const char *mproc__process_reaping_mode(void);

/* Reap slots on this process's free list (see process.c).  For tests: a
 * new child must start with none, its parent's are not mapped in it. */
int mproc__process_free_slots(void);

/*
 * The fds mproc keeps open for the life of the process (arena memfd, the
 * reaper's epoll fd and eventfd, pidfds of live children).  Test harnesses
 * exclude them from fd-leak checks.  Writes up to max fds to out and
 * returns how many there are.
 */
int mproc__internal_fds(int *out, int max);

/* ---- arena.c ---- */

/* Create the arena if it does not exist yet (called before the first fork
 * so that every child shares it).  Returns 0 or a negative code. */
int mproc__arena_ensure(void);

/* The arena's memfd, or -1 if there is no arena. */
int mproc__arena_fd(void);

/*
 * Program-wide slots in the arena header, zero when the arena is made, for
 * objects a module needs every process to find (the sync module's table
 * of process tokens).  A module claims its index below and publishes its
 * object with a compare-and-swap from NULL, so two processes racing to
 * create it agree on one.  Returns the slot's address (creating the arena
 * if needed), or NULL on error.
 */
#define MPROC__ARENA_ROOTS 8
#define MPROC__ROOT_SYNC_OWNERS 0 /* sync.c: the process token table */
void **mproc__arena_root(int index);

/*
 * Walk the whole heap and check every invariant (block chain, footers,
 * free lists, counters).  Returns 0 if consistent, MPROC_ECORRUPT if not.
 * For tests.
 */
int mproc__arena_check(void);

/*
 * Fault injection for tests: when set, called at numbered points inside
 * the allocator's critical section (with the lock held, in the middle of a
 * mutation), so a test can SIGKILL the process exactly there.
 */
extern void (*mproc__arena_fault_hook)(int point);

/* ---- sync (src/sync/) ---- */

/*
 * A Lock or RLock made in place inside another arena object, so that the
 * lock word and the data it guards share a cache line (a Value's own
 * lock): MPROC__LOCK_BYTES of 8-aligned memory.  mproc_lock_free refuses
 * it (MPROC_EINVAL); the owner retires it, which fails with MPROC_EBUSY
 * while it is held.
 */
#define MPROC__LOCK_BYTES 32
void mproc__lock_init_embedded(void *mem, int recursive);
int mproc__lock_retire_embedded(void *mem);

/* ---- shm.c ---- */

/* Unlink the segments this process created with MPROC_SHM_UNLINK_ON_EXIT
 * and has not unlinked or closed.  Registered with atexit(); process.c
 * also calls it at the end of an mproc child, which leaves with _exit(). */
void mproc__shm_exit_cleanup(void);

#endif /* MPROC_INTERNAL_H */
