/*
 * src/sync/sync-internal.h - what the sync module's files share: process
 * tokens, owner liveness, sliced futex waits, the lock's internals.
 *
 * DESIGN (the whole module; each file adds its own part)
 *
 * Tokens.  Every process that uses a sync object registers once in a
 * program-wide token table in the arena (owner.c), published through
 * mproc__arena_root(MPROC__ROOT_SYNC_OWNERS) with a compare-and-swap from
 * NULL.  A table slot holds {generation:32 | pid:32} in one 64-bit word and
 * the process's start time (field 22 of /proc/PID/stat, read once per
 * process).  A process's token is a 30-bit number, slot | (generation mod
 * 2^18) << 12: it fits in a futex word next to a flag bit, and names the
 * process without a pid (pids recycle; pid_max is 32768 here).  The token
 * is cached in the process (a static); a pthread_atfork child handler
 * clears it, so a forked child registers itself on its first sync call.
 *
 * Liveness.  A token is dead when its slot's generation moved on (the slot
 * was reclaimed, which happens only once its process was dead), or when
 * the slot's pid is gone, is a zombie, or now has another start time.  A
 * check costs a kill(pid, 0) and a read of /proc/PID/stat (a few
 * microseconds), so nobody checks on a fast path: only a waiter about to
 * sleep for the first time (see lock.c for how that check is kept off
 * the contended path), or whose sleep ran a whole 50 ms slice without
 * progress, rate-limited to one check per object per 40 ms; so a dead
 * holder is noticed within ~50 ms by a process already waiting and at
 * once by one that arrives later.  Only proof of death says "dead": an
 * unreadable /proc counts as alive.
 *
 * Registration claims a free slot (pid 0), or, when none is free, one
 * whose process is dead, by a CAS on the id word that also bumps the
 * generation, and then stores the start time.  Readers read id, start,
 * id again (a seqlock), and a token of the new generation can only be seen
 * after its process finished registering (it publishes its token only
 * afterwards), so a half-written slot never makes a live process look
 * dead.  4094 processes may be registered at once (MPROC_EAGAIN beyond,
 * while all of them live).  A slot reused 2^18 times while an object still
 * names its first owner would make the dead owner look alive: with
 * round-robin reuse of 4094 slots that takes about 10^9 registrations.
 */
#ifndef MPROC_SYNC_INTERNAL_H
#define MPROC_SYNC_INTERNAL_H

#include "../internal.h"

#include <limits.h>
#include <stdint.h>

/* ==================== owner.c: tokens ==================== */

#define SYNC_SLOT_BITS 12
#define SYNC_SLOTS (1u << SYNC_SLOT_BITS)   /* slots 1 .. SYNC_SLOTS-2 */
#define SYNC_SLOT_MASK (SYNC_SLOTS - 1u)
#define SYNC_GEN_BITS 18
#define SYNC_TOKEN_MASK 0x3fffffffu          /* 30 bits */
/* A token no process ever has: a lock that is not recoverable holds it. */
#define SYNC_TOKEN_NOTREC SYNC_TOKEN_MASK
/* The futex words of locks: holder token in the low 30 bits. */
#define SYNC_WAITERS 0x80000000u

/* Slices of a blocking wait, after which a waiter checks liveness (it
 * also checks once before its first sleep, so a holder that died before
 * anybody waited is found at once).  The slices are long on purpose: a
 * sleeper that wakes up without being released costs the lock's users a
 * contended round (a 2 ms first slice measured 15-30% off two processes'
 * counter rate). */
#define SYNC_SLICE_NS 50000000ull        /* 50 ms */
/* Per object, liveness is checked at most this often. */
#define SYNC_CHECK_EVERY_NS 40000000ull  /* 40 ms */

#define SYNC_HIDDEN __attribute__((visibility("hidden")))

/* This process's token, 0 until registered (atfork resets it). */
extern SYNC_HIDDEN uint32_t mproc__sync_self_token;

/* Register this process (first use, or first use after fork).  Returns
 * the token (> 0), or a negative error (MPROC_EAGAIN when the table is
 * full of live processes, MPROC_ENOMEM). */
int64_t mproc__sync_register(void);

/* This process's token, or a negative error. */
static inline int64_t sync_self(void) {
  uint32_t t = __atomic_load_n(&mproc__sync_self_token, __ATOMIC_RELAXED);
  if (MPROC__LIKELY(t != 0)) {
    return t;
  }
  return mproc__sync_register();
}

/* The calling thread's kernel thread id, cached (reset in a forked
 * child).  Initial-exec TLS: no __tls_get_addr call on the RLock path. */
extern __thread SYNC_HIDDEN uint32_t mproc__sync_tid_cache
    __attribute__((tls_model("initial-exec")));
uint32_t mproc__sync_tid_slow(void);
static inline uint32_t mproc__sync_tid(void) {
  uint32_t t = mproc__sync_tid_cache;
  return MPROC__LIKELY(t != 0) ? t : mproc__sync_tid_slow();
}

/* 1 if the process behind token is alive (or may be), 0 if it is dead.
 * The caller's own token is alive without a check. */
int mproc__sync_token_alive(uint32_t token);

/* The pid behind a token (0 if the slot moved on); for logs and tests. */
pid_t mproc__sync_token_pid(uint32_t token);

/* The arena's range, cached on the first validation (the arena never
 * moves, and a forked child maps it at the same address). */
extern SYNC_HIDDEN uintptr_t mproc__sync_arena_base, mproc__sync_arena_size;
int mproc__sync_in_arena_slow(const void *p, size_t size);

/* Whether the object at p (size bytes, 8-aligned) lies inside the arena:
 * an inline range check once the range is cached. */
static inline int sync_in_arena(const void *p, size_t size) {
  uintptr_t base = __atomic_load_n(&mproc__sync_arena_base, __ATOMIC_ACQUIRE);
  if (MPROC__LIKELY(base != 0)) {
    uintptr_t off = (uintptr_t)p - base;
    return ((uintptr_t)p & 7u) == 0 && off < mproc__sync_arena_size &&
           mproc__sync_arena_size - off >= size;
  }
  return mproc__sync_in_arena_slow(p, size);
}

/*
 * Rate limit for liveness checks on one object: 1 if the caller should
 * check now (and it claimed the turn), 0 if someone checked less than
 * SYNC_CHECK_EVERY_NS ago.  force: claim regardless of time.
 */
int mproc__sync_check_turn(uint64_t *last_ns, int force);

/*
 * One slice of a wait: futex-wait on addr while it holds val, until woken,
 * the slice ends or the deadline passes.  slice_ns: the slice's length.
 * Returns 0 (woken, or val changed), 1 (the slice ended: time to check
 * liveness), or MPROC_ETIMEDOUT (the caller's deadline passed).
 */
int mproc__sync_wait_slice(uint32_t *addr, uint32_t val,
                           const mproc__deadline *d, uint64_t slice_ns);

/* Rounds a contended Semaphore acquire spins (a load and a pause each)
 * before it sleeps.  0: a tight spin's loads steal the cache line from
 * the process that is about to release (measured on the Lock: 10, 30 or
 * 100 rounds halved two processes' counter rate).  Kept as a knob. */
#define SYNC_SPINS 0

/*
 * A contended Lock acquire backs off before it sleeps (lock.c): it
 * probes the word once, then again after a pause that doubles from
 * SYNC_PROBE_FIRST_NS up to SYNC_PROBE_MAX_NS, for at most
 * SYNC_BACKOFF_NS in all, and only then announces itself and sleeps.
 * Between probes it touches nothing shared, so the holder keeps the line;
 * unlike the tight spin above, this took two processes incrementing a
 * locked counter from about 0.85x to 1.6-2.2x the pthread mutex's rate
 * (docs/benchmarks.md).  Only on a machine with more than one CPU: on one
 * CPU the holder cannot run while we spin.
 */
#define SYNC_BACKOFF_NS 10000u   /* 10 us */
#define SYNC_PROBE_FIRST_NS 250u
#define SYNC_PROBE_MAX_NS 2000u
static inline void sync_pause(void) { mproc__cpu_pause(); }

/* ==================== lock.c ==================== */

#define SYNC_LOCK_MAGIC 0x4c4f434bu      /* "LOCK" */
#define SYNC_DEAD_MAGIC 0x64656164u      /* "dead": a freed object */

enum { SYNC_KIND_LOCK = 1, SYNC_KIND_RLOCK = 2 };
#define SYNC_LOCK_INCONSISTENT 1u
/* Made in place inside another object (a Value): freed with it, never by
 * mproc_lock_free. */
#define SYNC_LOCK_EMBEDDED 2u
/* An "asym" Lock (internal.h): waiters raise a flag in owner_tid (unused
 * by a plain Lock) instead of setting SYNC_WAITERS, and call
 * mproc__membarrier() before they sleep. */
#define SYNC_LOCK_ASYM 4u
/* A sleeper on an asym lock whose membarrier call failed sleeps this long
 * at most: its holder may release without a fence and miss it. */
#define SYNC_ASYM_FALLBACK_SLICE_NS 1000000ull /* 1 ms */

struct mproc_lock {
  /* The fields a locked update touches come first, so that a Value that
   * embeds its lock right after its element keeps element, word and owner
   * in one 16-byte chunk, and so in one cache line. */
  uint32_t word;       /* futex: holder token | SYNC_WAITERS; 0 free */
  uint32_t owner_tid;  /* RLock: holding thread; 0 when not held */
  uint32_t depth;      /* RLock: recursion depth while held; left at 1
                          after the last release (written only when it
                          changes) */
  uint32_t magic;      /* SYNC_LOCK_MAGIC */
  uint32_t kind;       /* SYNC_KIND_LOCK or SYNC_KIND_RLOCK */
  uint32_t flags;      /* SYNC_LOCK_INCONSISTENT (written by the holder),
                          SYNC_LOCK_EMBEDDED (set at init) */
  uint64_t checked_ns; /* last liveness check of the holder (rate limit) */
};

/* Make a lock in place (inside another arena object). */
void mproc__lock_init(struct mproc_lock *l, uint32_t kind);

/* Acquire with a deadline; the result as mproc_lock_acquire.  The lock
 * must be valid (no checks). */
int mproc__lock_acquire_d(struct mproc_lock *l, const mproc__deadline *d);

/* Whether the caller holds l (as mproc_lock_is_mine; no validity check). */
int mproc__lock_mine(const struct mproc_lock *l);

/* Release every level the caller holds (1 for a Lock), storing the depth
 * in *depth, for Condition.wait.  Returns 0 or as mproc_lock_release. */
int mproc__lock_release_all(struct mproc_lock *l, uint32_t *depth);

/* Take l back with that depth, waiting forever.  Returns 0,
 * MPROC_EOWNERDEAD (held, repair needed) or MPROC_ENOTRECOVERABLE (not
 * held). */
int mproc__lock_restore(struct mproc_lock *l, uint32_t depth);

/* Validity of a public lock pointer. */
int mproc__lock_valid(const struct mproc_lock *l);

#endif /* MPROC_SYNC_INTERNAL_H */
