/*
 * mproc/sync.h - Python's Lock, RLock, Semaphore, BoundedSemaphore, Event,
 * Condition and Barrier, shared between processes, safe when a process
 * dies at the worst moment.
 *
 * DESIGN
 * Every object lives in the shared arena (mproc/arena.h), so the pointer a
 * constructor returns is valid, unchanged, in every process of the program:
 * create it before starting the children that use it, or pass the pointer
 * as a target's or task's ctx or in its argument bytes, or store it in
 * another arena object.  Objects are built on futex words in the arena
 * (shared futex operations), not on sem_t, and every one carries a magic
 * word: a freed or foreign pointer is MPROC_EINVAL, not a crash.
 *
 * Owners and death.  A process that uses a sync object is given a token in
 * a table in the arena (its pid, its start time and a generation), and a
 * holder writes its token into the object.  A waiter that has waited a
 * while checks whether the holder's process still exists (the pid is alive
 * and has the recorded start time, so a recycled pid is not mistaken for
 * the holder).  So a death is noticed within 100 ms by a process already
 * waiting, and at once by one that arrives later:
 *   - Lock, RLock: the next acquirer gets the lock and MPROC_EOWNERDEAD.
 *     It may repair the state the lock protects and must then call
 *     mproc_lock_consistent(); releasing without that makes the lock
 *     unusable for good (every later acquire returns
 *     MPROC_ENOTRECOVERABLE), as POSIX robust mutexes do.  Python blocks
 *     forever here.
 *   - Semaphore: as Python, the count never rises because a process
 *     exited or died: a unit acquired by a process that ends is gone (a
 *     consumer that acquired an item consumed it).  Opt-in
 *     (opts.death_return), units a dead process acquired and that no
 *     release has given back since are returned, for a semaphore used as
 *     a resource counter (see mproc_semaphore_opts).
 *   - Condition, Event: waiting leaves no trace (a futex sequence word), so
 *     a process killed inside wait never blocks a later notify or set
 *     (Python's notify can block forever there).
 *   - Barrier: a party that dies while others wait breaks the barrier: they
 *     get MPROC_EBROKEN instead of waiting forever.
 *
 * The mechanism (process tokens in a table in the arena, the lock word,
 * when liveness is checked, the semaphore's per-process accounting and
 * its limits) is described in docs/sync.md and src/sync/.  The first sync
 * call of a process registers it (a few microseconds); with 4094 live
 * processes registered, a call that must register fails with MPROC_EAGAIN.
 *
 * Timeouts are double seconds on CLOCK_MONOTONIC (mproc/common.h):
 * MPROC_FOREVER waits, 0 polls; the deadline is fixed once and kept across
 * EINTR.  Every function may be used from several threads and processes at
 * once unless it says otherwise.
 *
 * Lifetime.  Exactly one process frees an object, once no process uses it
 * any more (as with pthread_mutex_destroy); freeing an object another
 * process is waiting on is undefined.  mproc_X_free(NULL) is a no-op.
 * Every destructor returns 0, MPROC_EINVAL (not a live object of its
 * type), MPROC_EBUSY where its contract says so, or MPROC_ECORRUPT (the
 * arena found the object's block damaged).  "Busy" means a live process
 * (the caller's included) holds or waits on it: a holder or waiter that
 * died does not count, and its liveness is checked at once (no rate
 * limit), so an object is free to go right after its user was killed and
 * reaped.  Destructors and releases never allocate, take no lock and
 * register nothing: they work with the arena full, in a process that
 * never made a sync call.
 */
#ifndef MPROC_SYNC_H
#define MPROC_SYNC_H

#include "mproc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==================== Lock and RLock ==================== */

/* One type for both: a Lock (ownerless, not recursive) or an RLock. */
typedef struct mproc_lock mproc_lock;

/*
 * mproc_lock_new - a Lock: unlocked; any process or thread may release it,
 * as in Python; acquiring it again while holding it blocks (deadlock).
 * mproc_rlock_new - an RLock: the holding thread may acquire it again; only
 * the holder may release it.
 *
 * CONSTRUCTOR: mproc_lock
 * Returns 0 and *out; MPROC_EINVAL (out NULL); MPROC_ENOMEM (arena full).
 */
MPROC_EXTERN int mproc_lock_new(mproc_lock **out);
MPROC_EXTERN int mproc_rlock_new(mproc_lock **out);

/*
 * mproc_lock_acquire - take the lock, waiting at most timeout seconds.
 *
 * METHOD: mproc_lock
 * Returns 0 (acquired); MPROC_EOWNERDEAD (acquired, but the previous holder
 * died holding it: repair, then mproc_lock_consistent); MPROC_ETIMEDOUT
 * (not acquired; 0 polls); MPROC_ENOTRECOVERABLE; MPROC_EINVAL (not a live
 * lock, NaN timeout); MPROC_EOVERFLOW (RLock depth past UINT32_MAX);
 * MPROC_EAGAIN (see "first call" above).
 */
MPROC_EXTERN int mproc_lock_acquire(mproc_lock *l, double timeout);

/*
 * mproc_lock_release - release the lock (one level of an RLock).
 *
 * Returns 0; for a Lock, MPROC_EUNLOCKED when it is not held ("semaphore
 * or lock released too many times") and MPROC_ENOTRECOVERABLE when it is
 * not recoverable; for an RLock, MPROC_EPERM when the caller is not the
 * holder, also when nobody holds it ("attempt to release recursive lock
 * not owned by thread", as Python); MPROC_EINVAL.  Releasing a lock taken
 * with MPROC_EOWNERDEAD before mproc_lock_consistent returns 0 and makes
 * it not recoverable.
 */
MPROC_EXTERN int mproc_lock_release(mproc_lock *l);

/*
 * mproc_lock_consistent - after MPROC_EOWNERDEAD, declare the protected
 * state repaired, so the lock stays usable after release.
 * Returns 0; MPROC_EPERM if the caller does not hold a lock in that state;
 * MPROC_EINVAL.
 */
MPROC_EXTERN int mproc_lock_consistent(mproc_lock *l);

/*
 * Who holds it; each a snapshot, 1 or 0, or MPROC_EINVAL (not a live
 * lock).
 * mproc_lock_is_locked - some thread of some process holds it.
 * mproc_lock_held_by_process - a thread of the calling process holds it
 * (the process's token is the holder): for a Lock as for an RLock.  A
 * forked child never holds its parent's lock.
 * mproc_lock_is_mine - an RLock only (Python's RLock._is_owned()): the
 * calling thread holds it, at any depth.  A Lock has no owning thread (in
 * Python neither: any thread may release it), so for a Lock it returns
 * MPROC_ENOTSUP rather than an answer that would mean something else.
 */
MPROC_EXTERN int mproc_lock_is_locked(const mproc_lock *l);
MPROC_EXTERN int mproc_lock_held_by_process(const mproc_lock *l);
MPROC_EXTERN int mproc_lock_is_mine(const mproc_lock *l);

/* DESTRUCTOR: mproc_lock.  Returns 0, MPROC_EBUSY while held, or
 * MPROC_EINVAL.  A not-recoverable lock may be freed. */
MPROC_EXTERN int mproc_lock_free(mproc_lock *l);

/* ==================== Semaphore and BoundedSemaphore ==================== */

typedef struct mproc_semaphore mproc_semaphore;

typedef struct mproc_semaphore_opts {
  int bounded;      /* nonzero: BoundedSemaphore (release above the
                       initial value is MPROC_EUNLOCKED) */
  int death_return; /* nonzero: return the units of a process that died
                       holding them (a resource counter: each process
                       releases what it acquired).  0 (the default):
                       Python's semantics, a count only acquire and
                       release move. */
} mproc_semaphore_opts;

/*
 * mproc_semaphore_new - a Semaphore with value units (0 .. INT32_MAX).
 *
 * Death return (opts.death_return).  The semaphore records which process
 * holds how many units (64 processes at once; units of any further
 * process are not tracked).  A release retires one held unit: the
 * releasing process's own if it holds one, otherwise another process's
 * (a unit released on its holder's behalf, as in the cross-process
 * acquire/release pattern, is held by nobody any more); a release when
 * nobody holds a unit is a signal, and the next acquire that finds one
 * takes it without holding it.  When a process dies, only its units that
 * are still held come back, so the value never exceeds the initial value
 * plus the signals released and not yet acquired.  A process killed in
 * the few instructions between taking a unit and recording it (or
 * between retiring one and adding it to the value) loses that unit: a
 * death never returns a unit twice.
 *
 * CONSTRUCTOR: mproc_semaphore
 * Returns 0 and *out; MPROC_EINVAL (negative value, out NULL);
 * MPROC_ENOMEM.
 */
MPROC_EXTERN int mproc_semaphore_new(mproc_semaphore **out, int value,
                                     const mproc_semaphore_opts *opts);

/* Returns 0 (a unit taken); MPROC_ETIMEDOUT; MPROC_EINVAL; MPROC_EAGAIN
 * (death return only: the process could not register, see "first call"
 * above); MPROC_ENOMEM (the same, on the program's first sync call with
 * the arena full). */
MPROC_EXTERN int mproc_semaphore_acquire(mproc_semaphore *s, double timeout);

/* Returns 0; MPROC_EUNLOCKED (bounded and already at its initial value, or
 * the value would pass INT32_MAX); MPROC_EINVAL.  Any process may release
 * (the signalling use).  Never allocates. */
MPROC_EXTERN int mproc_semaphore_release(mproc_semaphore *s);

/* The current value (>= 0), or MPROC_EINVAL.  With death return, returns
 * dead processes' units first (one /proc read per other process holding
 * units). */
MPROC_EXTERN int mproc_semaphore_get_value(const mproc_semaphore *s);

/* DESTRUCTOR: mproc_semaphore.  Returns 0; MPROC_EINVAL (not a live
 * semaphore); MPROC_ECORRUPT (the arena found its block damaged).  Never
 * allocates. */
MPROC_EXTERN int mproc_semaphore_free(mproc_semaphore *s);

/* ==================== Event ==================== */

typedef struct mproc_event mproc_event;

/* CONSTRUCTOR: mproc_event (unset).  Returns 0, MPROC_EINVAL, MPROC_ENOMEM. */
MPROC_EXTERN int mproc_event_new(mproc_event **out);
/* set: wakes every waiter; clear; is_set: 1 or 0. */
MPROC_EXTERN int mproc_event_set(mproc_event *e);
MPROC_EXTERN int mproc_event_clear(mproc_event *e);
MPROC_EXTERN int mproc_event_is_set(const mproc_event *e);
/* Returns 0 once the event is set (at once if it is), MPROC_ETIMEDOUT,
 * MPROC_EINVAL.  Python's wait() returns the flag: 0 here is True.  A set
 * that happened during the wait counts even if a clear followed before
 * the waiter ran (threading.Event's behaviour: no lost wakeup). */
MPROC_EXTERN int mproc_event_wait(mproc_event *e, double timeout);
/* DESTRUCTOR: mproc_event. */
MPROC_EXTERN int mproc_event_free(mproc_event *e);

/* ==================== Condition ==================== */

typedef struct mproc_cond mproc_cond;

/*
 * mproc_cond_new - a Condition over lock (a Lock or an RLock, which must
 * outlive it); NULL makes a new RLock owned by the condition, as Python's
 * default.
 *
 * CONSTRUCTOR: mproc_cond
 */
MPROC_EXTERN int mproc_cond_new(mproc_cond **out, mproc_lock *lock);

/* The condition's lock: acquire and release it with mproc_lock_*. */
MPROC_EXTERN mproc_lock *mproc_cond_lock(mproc_cond *c);

/*
 * mproc_cond_wait - release the lock (every level of an RLock), wait for a
 * notify or the timeout, and take the lock back before returning (restoring
 * the RLock's depth).
 *
 * Returns 0 (notified; also when the timeout expired but a notify chose
 * this waiter before it got the lock back, so no notify is lost);
 * MPROC_ETIMEDOUT (Python's False); MPROC_EPERM if the caller does not
 * hold the lock ("must acquire() condition before using wait()"), or holds
 * it in the state MPROC_EOWNERDEAD left it (call mproc_lock_consistent
 * first); MPROC_EOWNERDEAD if taking the lock back found its holder dead
 * (the lock is held; as for mproc_lock_acquire); MPROC_ENOTRECOVERABLE
 * (the lock could not be taken back: it is not held); MPROC_ENOMEM (the
 * wait record, on first use); MPROC_EINVAL.
 */
MPROC_EXTERN int mproc_cond_wait(mproc_cond *c, double timeout);

/* A predicate for wait_for: nonzero when the awaited state holds.  Called
 * with the lock held, in the waiting process, with the ctx given to
 * mproc_cond_wait_for. */
typedef int (*mproc_predicate_fn)(void *ctx);

/*
 * mproc_cond_wait_for - wait until pred(ctx) is nonzero, checking it first
 * and after every wakeup, at most timeout seconds in all.  Returns the
 * predicate's last value (>= 0; 0 means the timeout expired first; a
 * negative value from pred is returned as 1), or a negative error as
 * mproc_cond_wait (MPROC_EPERM without the lock, even if pred holds).
 */
MPROC_EXTERN int mproc_cond_wait_for(mproc_cond *c, mproc_predicate_fn pred,
                                     void *ctx, double timeout);

/*
 * mproc_cond_notify - wake up to n of the current waiters, oldest first
 * (n >= 0; 0 does nothing, negative is MPROC_EINVAL); notify_all wakes
 * all.  A waiter that starts waiting after the notify is not woken by it;
 * a waiter that died in its wait is skipped, not counted.  The caller must
 * hold the lock (MPROC_EPERM: "lock is not owned").  Never waits for the
 * woken to run, so a dead waiter cannot block it.
 */
MPROC_EXTERN int mproc_cond_notify(mproc_cond *c, int n);
MPROC_EXTERN int mproc_cond_notify_all(mproc_cond *c);

/* DESTRUCTOR: mproc_cond (and the RLock it made, if it made one).
 * MPROC_EBUSY while a live process waits on it or its own RLock is held. */
MPROC_EXTERN int mproc_cond_free(mproc_cond *c);

/* ==================== Barrier ==================== */

typedef struct mproc_barrier mproc_barrier;

/* Run by exactly one party (the last to arrive) each time the barrier
 * opens, before any party leaves wait, with the barrier's action_ctx.  The
 * party may be any process, started by any method: the action is kept as
 * a function of the program (or of a library), found again in a spawned
 * party's own image, and action_ctx follows the rule of a process
 * target's ctx (process.h): arena memory, static data, or (under fork
 * only) memory set up before the parties were started.  A party that
 * cannot find the action (it runs another build of the program, or the
 * library is not loaded in it) breaks the barrier and gets MPROC_EBUILD
 * or MPROC_ENOFUNC from its wait. */
typedef void (*mproc_barrier_action_fn)(void *ctx);

typedef struct mproc_barrier_opts {
  mproc_barrier_action_fn action; /* NULL: none */
  void *action_ctx;               /* passed to action */
  double timeout;                 /* mproc_barrier_wait_default's timeout,
                                     with the meaning of every timeout:
                                     MPROC_FOREVER for none (also when opts
                                     is NULL), 0 polls (Python's
                                     Barrier(timeout=0)), NaN: MPROC_EINVAL.
                                     A zeroed struct therefore polls: set
                                     it */
} mproc_barrier_opts;

/* CONSTRUCTOR: mproc_barrier.  parties >= 1 (else MPROC_EINVAL); a NaN
 * opts->timeout is MPROC_EINVAL. */
MPROC_EXTERN int mproc_barrier_new(mproc_barrier **out, int parties,
                                   const mproc_barrier_opts *opts);

/*
 * mproc_barrier_wait - wait until parties processes/threads have called
 * wait.  Returns the arrival index 0 .. parties-1 (exactly one party gets
 * each index; the last to arrive gets parties-1 and runs the action);
 * MPROC_EBROKEN if the barrier is or becomes broken (abort, reset while
 * waiting, a timeout of any party, a party that died) before the pass
 * completes (a party released by a completed pass succeeds, even if an
 * abort follows before it wakes); MPROC_ETIMEDOUT for the party whose own
 * timeout expired (it breaks the barrier for the others), or for a wait
 * held up by the previous pass still draining (the barrier stays
 * intact); MPROC_EINVAL (also for a NaN timeout); MPROC_EAGAIN.  timeout
 * has the meaning of every timeout (mproc/common.h): < 0 (MPROC_FOREVER)
 * waits without limit, 0 polls (arriving as the last party passes; any
 * other arrival times out at once and breaks the barrier, as Python's
 * wait(0)), > 0 waits that long.
 * mproc_barrier_wait_default - the same with the timeout given at creation
 * (opts->timeout): Python's wait() / wait(None).
 */
MPROC_EXTERN int mproc_barrier_wait(mproc_barrier *b, double timeout);
MPROC_EXTERN int mproc_barrier_wait_default(mproc_barrier *b);
/* abort: break it (waiters get MPROC_EBROKEN); reset: back to the initial
 * state (waiters get MPROC_EBROKEN). */
MPROC_EXTERN int mproc_barrier_abort(mproc_barrier *b);
MPROC_EXTERN int mproc_barrier_reset(mproc_barrier *b);
MPROC_EXTERN int mproc_barrier_parties(const mproc_barrier *b);
MPROC_EXTERN int mproc_barrier_n_waiting(const mproc_barrier *b);
MPROC_EXTERN int mproc_barrier_broken(const mproc_barrier *b);
/* DESTRUCTOR: mproc_barrier.  MPROC_EBUSY while a live party is inside
 * wait. */
MPROC_EXTERN int mproc_barrier_free(mproc_barrier *b);

#ifdef __cplusplus
}
#endif
#endif /* MPROC_SYNC_H */
