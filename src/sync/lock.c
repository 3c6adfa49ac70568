/*
 * src/sync/lock.c - Lock and RLock: a futex word holding the holder's
 * process token, with owner-death recovery.
 *
 * DESIGN
 * The 32-bit futex word is 0 when the lock is free, else the holder's
 * token (30 bits, see sync-internal.h) plus SYNC_WAITERS when some thread
 * may sleep on it.  Acquire is one CAS 0 -> token; release is one atomic
 * exchange word -> 0 and a FUTEX_WAKE of one sleeper only if SYNC_WAITERS
 * was set: no system call and no table lookup on the uncontended path
 * (the token is cached in the process); the exchange, after checking the
 * word, is 3-4 ns cheaper than a CAS here.
 *
 * Contended, a waiter first backs off (see SYNC_BACKOFF_NS in
 * sync-internal.h): up to 10 us of probes spaced 250 ns to 2 us apart, a
 * load and, when the word is free, a CAS.  Only then does it set
 * SYNC_WAITERS and sleep on the word (shared futex op) in 50 ms slices;
 * a thread that took the lock after sleeping sets SYNC_WAITERS again (it
 * cannot know whether others still sleep), as glibc's lll_lock does.
 * Why back off: with short critical sections a waiter that sleeps at once
 * never really sleeps (its FUTEX_WAIT finds the word changed: the holder
 * released and took it again meanwhile) and every round of it makes the
 * holder's next release a FUTEX_WAKE system call that wakes nobody; that
 * was the whole cost of the contended path, for glibc's mutex too.  A
 * waiter that probes rarely leaves the holder its cache line and no
 * system calls, and finds the lock free within a few probes.
 *
 * An RLock also records the holding thread (kernel tid) and the depth;
 * only the holder reads or writes them, so they need no atomics beyond
 * what the word's acquire/release ordering gives.
 *
 * Owner death.  When a 50 ms slice of its wait ends without progress, and
 * when a timed acquire gives up (or a poll fails), a waiter checks the
 * holder token's liveness, rate-limited to one check per lock per 40 ms.
 * It also checks before its first sleep, unless the holder is the one
 * this process last found alive there: so a holder that died before
 * anybody waited is found at once, and contention between the same live
 * processes costs no checks (a per-lock timestamp read there cost 5% of
 * the contended rate).  If the holder is dead, the waiter replaces its
 * token by its own with a CAS (so exactly one waiter wins), marks the
 * lock INCONSISTENT and returns MPROC_EOWNERDEAD with the lock held.
 * mproc_lock_consistent clears the mark; a release while it is set stores
 * the reserved token SYNC_TOKEN_NOTREC instead of 0 and wakes everyone:
 * the word is never free again, and every acquire sees that token and
 * returns MPROC_ENOTRECOVERABLE, with no extra load on the fast path.
 * A holder that dies after taking over, before consistent, passes the
 * mark on to the next taker.
 *
 * A Lock is ownerless, as in Python: any thread of any process may release
 * it.  Its token still names the process that acquired it, so if that
 * process dies before someone releases the lock, the next acquirer gets
 * MPROC_EOWNERDEAD.
 */
#include "sync-internal.h"

#include <errno.h>

#define TOK(v) ((v) & SYNC_TOKEN_MASK)

static inline int lock_valid(const struct mproc_lock *l) {
  return sync_in_arena(l, sizeof *l) &&
         __atomic_load_n(&l->magic, __ATOMIC_RELAXED) == SYNC_LOCK_MAGIC;
}

int mproc__lock_valid(const struct mproc_lock *l) { return lock_valid(l); }

void mproc__lock_init(struct mproc_lock *l, uint32_t kind) {
  l->word = 0;
  l->kind = kind;
  l->flags = 0;
  l->owner_tid = 0;
  l->depth = 0;
  l->checked_ns = 0;
  __atomic_store_n(&l->magic, SYNC_LOCK_MAGIC, __ATOMIC_RELEASE);
}

static int lock_new(mproc_lock **out, uint32_t kind) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  struct mproc_lock *l = NULL;
  int r = mproc_shm_alloc((void **)&l, sizeof *l);
  if (r != 0) {
    return r;
  }
  mproc__lock_init(l, kind);
  *out = l;
  return 0;
}

int mproc_lock_new(mproc_lock **out) { return lock_new(out, SYNC_KIND_LOCK); }

int mproc_rlock_new(mproc_lock **out) {
  return lock_new(out, SYNC_KIND_RLOCK);
}

/* Taken: record the holder (RLock) and the outcome. */
static int got(struct mproc_lock *l, int dead) {
  if (l->kind == SYNC_KIND_RLOCK) {
    l->owner_tid = mproc__sync_tid();
    if (l->depth != 1) {
      l->depth = 1;
    }
  }
  if (dead) {
    l->flags |= SYNC_LOCK_INCONSISTENT;
    return MPROC_EOWNERDEAD;
  }
  return 0;
}

/*
 * The holder `owner` was found dead: take its place.  Returns 1 (ours,
 * EOWNERDEAD), 0 (the word moved on: look again).
 */
static int take_over(struct mproc_lock *l, uint32_t owner, uint32_t tok) {
  uint32_t v = __atomic_load_n(&l->word, __ATOMIC_RELAXED);
  while (TOK(v) == owner) {
    if (__atomic_compare_exchange_n(&l->word, &v,
                                    tok | (v & SYNC_WAITERS), 1,
                                    __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
      /* Ours, not yet marked inconsistent: a death here leaves a word
       * naming a dead holder again, taken over the same way. */
      MPROC__FAULT(SYNC_LOCK_TAKEN_OVER);
      MPROC__WARN("sync: lock %p: holder (pid %d) died; taken over",
                  (void *)l, (int)mproc__sync_token_pid(owner));
      return 1;
    }
  }
  return 0;
}

/* The holder this process last found alive before a first sleep.  The
 * check before a first sleep is skipped for it: under contention between
 * the same processes it would otherwise cost a clock read and a miss on
 * the word's line for every sleep.  If that holder dies later, the slice
 * checks find it within 50 ms. */
static uint32_t last_alive;

/* Liveness check of the holder, if it is this caller's turn. */
static int holder_dead(struct mproc_lock *l, uint32_t owner, uint32_t tok) {
  if (owner == tok || owner == SYNC_TOKEN_NOTREC) {
    return 0;
  }
  if (!mproc__sync_check_turn(&l->checked_ns, 0)) {
    return 0;
  }
  __atomic_store_n(&last_alive, 0, __ATOMIC_RELAXED);
  return !mproc__sync_token_alive(owner);
}

/* The check before a first sleep. */
static int holder_dead_first(uint32_t owner, uint32_t tok) {
  if (owner == __atomic_load_n(&last_alive, __ATOMIC_RELAXED) ||
      owner == tok || owner == SYNC_TOKEN_NOTREC) {
    return 0;
  }
  if (!mproc__sync_token_alive(owner)) {
    return 1;
  }
  __atomic_store_n(&last_alive, owner, __ATOMIC_RELAXED);
  return 0;
}

/*
 * Set SYNC_WAITERS with one atomic OR and return the word with it set.
 * Under contention the holder owns the line most of the time; a waiter
 * that reads it, then CASes it, then has the kernel read it again takes
 * it from the holder three times per round instead of twice (measured:
 * nearly every futex wait here returns EAGAIN, so these rounds are the
 * contended path's whole cost).  On a free lock this leaves the word at
 * SYNC_WAITERS alone, which the caller then takes with a CAS.
 */
static inline uint32_t announce(struct mproc_lock *l) {
  return __atomic_fetch_or(&l->word, SYNC_WAITERS, __ATOMIC_RELAXED) |
         SYNC_WAITERS;
}

/* Whether backing off can pay: more than one CPU online, so the holder
 * may run while we wait (our own affinity does not matter; -1: not known
 * yet). */
static int backoff_pays = -1;

/*
 * The backoff phase of a contended acquire (see the file's top).
 * Returns 1 if it took the lock, 0 if the budget or the caller's
 * deadline ran out, or the lock is not recoverable (the caller's loop
 * then reports it).  It never sets SYNC_WAITERS; it keeps the bit when it
 * takes a free word, so that sleepers are still woken by its release.
 */
static int backoff(struct mproc_lock *l, uint32_t tok,
                   const mproc__deadline *d) {
  int pays = __atomic_load_n(&backoff_pays, __ATOMIC_RELAXED);
  if (pays < 0) {
    pays = mproc__cpus_online() > 1;
    __atomic_store_n(&backoff_pays, pays, __ATOMIC_RELAXED);
  }
  if (!pays) {
    return 0;
  }
  uint64_t now = mproc__now_ns();
  uint64_t end = now + SYNC_BACKOFF_NS;
  if (!d->forever && d->at_ns < end) {
    end = d->at_ns;
  }
  uint64_t gap = SYNC_PROBE_FIRST_NS;
  while (now < end) {
    uint64_t until = now + gap;
    do {
      sync_pause();
      now = mproc__now_ns();
    } while (now < until);
    uint32_t v = __atomic_load_n(&l->word, __ATOMIC_RELAXED);
    if (TOK(v) == 0) {
      if (__atomic_compare_exchange_n(&l->word, &v, tok | v, 0,
                                      __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        return 1;
      }
    } else if (TOK(v) == SYNC_TOKEN_NOTREC) {
      return 0;
    }
    if (gap < SYNC_PROBE_MAX_NS) {
      gap *= 2;
    }
  }
  return 0;
}

/*
 * An asym lock's sleep (internal.h): raise the flag in owner_tid, make
 * every registered process's running threads pass a full barrier
 * (membarrier), look at the word once more and sleep while it still holds
 * v.  The releaser that sees the flag lowers it and wakes everybody.
 * Returns as mproc__sync_wait_slice.
 */
uint64_t mproc__sync_asym_slice_ns = SYNC_SLICE_NS;

static int asym_wait(struct mproc_lock *l, uint32_t v,
                     const mproc__deadline *d) {
  uint64_t slice = mproc__sync_asym_slice_ns;
  /* A releaser that lowered the flag between our raising it and the
   * barrier may have woken everybody before we slept, and a later
   * releaser would then not see the flag: so raise it again until it is
   * still up after the barrier.  A lowering after that check comes with a
   * wake that finds us asleep, or a word we no longer wait for. */
  do {
    __atomic_store_n(&l->owner_tid, 1, __ATOMIC_SEQ_CST);
    if (mproc__membarrier() != 0) {
      slice = SYNC_ASYM_FALLBACK_SLICE_NS;
    }
  } while (__atomic_load_n(&l->owner_tid, __ATOMIC_SEQ_CST) == 0);
  if (__atomic_load_n(&l->word, __ATOMIC_SEQ_CST) != v) {
    return 0;
  }
  /* Sleep on the flag, not on the word.  The word cannot tell us whether
   * a release happened since we looked: the same process may release and
   * take the lock again, writing the same token back (ABA), and that
   * release, having seen our flag, lowered it and woke nobody.  The flag
   * can: every release that saw it lowers it, so the kernel's check that
   * it is still 1 refuses the sleep after such a release.  A flag that
   * another waiter raised again in between is that waiter's promise: the
   * next release sees it and wakes every sleeper. */
  return mproc__sync_wait_slice(&l->owner_tid, 1, d, slice);
}

static int acquire_slow(struct mproc_lock *l, uint32_t tok,
                        const mproc__deadline *d) {
  int poll = !d->forever && d->at_ns <= mproc__now_ns();
  uint32_t v;
  if (!poll && backoff(l, tok, d)) {
    return got(l, 0);
  }
  uint32_t waiters = 0; /* SYNC_WAITERS once this thread has slept */
  int checked = 0;       /* the check before the first sleep is done */
  int asym = (l->flags & SYNC_LOCK_ASYM) != 0; /* no SYNC_WAITERS at all */
  for (;;) {
    v = __atomic_load_n(&l->word, __ATOMIC_RELAXED);
    uint32_t owner = TOK(v);
    if (owner == 0) {
      if (__atomic_compare_exchange_n(&l->word, &v, tok | v | waiters, 0,
                                      __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        return got(l, 0);
      }
      continue;
    }
    if (owner == SYNC_TOKEN_NOTREC) {
      return MPROC_ENOTRECOVERABLE;
    }
    if (poll) {
      /* No sleep, so no WAITERS bit (it would cost the holder a wake). */
      if (holder_dead(l, owner, tok) && take_over(l, owner, tok)) {
        return got(l, 1);
      }
      v = __atomic_load_n(&l->word, __ATOMIC_RELAXED);
      if (TOK(v) == 0) {
        continue;
      }
      return MPROC_ETIMEDOUT;
    }
    if (!checked) {
      /* Before the first sleep: a holder that died before anybody waited
       * is found at once (rate-limited, so cheap under contention). */
      checked = 1;
      if (holder_dead_first(owner, tok) && take_over(l, owner, tok)) {
        return got(l, 1);
      }
      v = asym ? __atomic_load_n(&l->word, __ATOMIC_RELAXED) : announce(l);
      continue;
    }
    if (!asym && !(v & SYNC_WAITERS)) {
      v = announce(l);
      if (TOK(v) != owner) {
        continue; /* released or taken over meanwhile: look again */
      }
    }
    /* A sleeper that dies leaves at most the waiters bit (or an asym
     * lock's flag): one spare wake for the next release. */
    MPROC__FAULT(SYNC_LOCK_SLEEPING);
    int r = asym ? asym_wait(l, v, d)
                 : mproc__sync_wait_slice(&l->word, v, d, SYNC_SLICE_NS);
    if (!asym) {
      waiters = SYNC_WAITERS;
    }
    if (r == 0) {
      /* Woken, or the word changed before we slept: announce again in the
       * same operation that reads it, as glibc's waiter does with its
       * exchange (an asym lock's waiter just looks). */
      v = asym ? __atomic_load_n(&l->word, __ATOMIC_RELAXED) : announce(l);
      continue;
    }
    /* A slice ended, or the caller's deadline passed: is the holder
     * still there, and alive? */
    v = __atomic_load_n(&l->word, __ATOMIC_RELAXED);
    if (TOK(v) == owner && holder_dead(l, owner, tok) &&
        take_over(l, owner, tok)) {
      return got(l, 1);
    }
    if (r == MPROC_ETIMEDOUT) {
      /* Last chance: free right now? */
      v = __atomic_load_n(&l->word, __ATOMIC_RELAXED);
      if (TOK(v) == 0 &&
          __atomic_compare_exchange_n(&l->word, &v, tok | v | waiters, 0,
                                      __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        return got(l, 0);
      }
      return MPROC_ETIMEDOUT;
    }
  }
}

/* After a failed CAS that saw v: recursion, unrecoverable, or wait. */
__attribute__((noinline)) static int acquire_after(struct mproc_lock *l,
                                                  uint32_t tok, uint32_t v,
                                                  double timeout,
                                                  const mproc__deadline *dl) {
  if (l->kind == SYNC_KIND_RLOCK && TOK(v) == tok &&
      l->owner_tid == mproc__sync_tid()) {
    if (l->depth == UINT32_MAX) {
      return MPROC_EOVERFLOW;
    }
    l->depth++;
    return 0;
  }
  if (TOK(v) == SYNC_TOKEN_NOTREC) {
    return MPROC_ENOTRECOVERABLE;
  }
  if (dl != NULL) {
    return acquire_slow(l, tok, dl);
  }
  mproc__deadline d;
  if (mproc__deadline_init(&d, timeout) != 0) {
    return MPROC_EINVAL;
  }
  return acquire_slow(l, tok, &d);
}

/* The common part of the public and the internal acquire. */
static inline int acquire(struct mproc_lock *l, uint32_t tok, double timeout,
                          const mproc__deadline *dl) {
  uint32_t v = 0;
  if (MPROC__LIKELY(__atomic_compare_exchange_n(
          &l->word, &v, tok, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))) {
    if (l->kind == SYNC_KIND_RLOCK) {
      l->owner_tid = mproc__sync_tid();
      if (l->depth != 1) {
        l->depth = 1;
      }
    }
    return 0;
  }
  return acquire_after(l, tok, v, timeout, dl);
}

__attribute__((noinline)) static int acquire_checked(struct mproc_lock *l,
                                                    double timeout) {
  if (!lock_valid(l) || timeout != timeout) {
    return MPROC_EINVAL;
  }
  int64_t tok = sync_self();
  if (tok < 0) {
    return (int)tok;
  }
  return acquire(l, (uint32_t)tok, timeout, NULL);
}

int mproc_lock_acquire(mproc_lock *l, double timeout) {
  /* The uncontended path: checks, one CAS, no call. */
  uint32_t tok = __atomic_load_n(&mproc__sync_self_token, __ATOMIC_RELAXED);
  /* A NaN timeout is refused even when the lock is free: the meaning of a
   * timeout does not depend on the lock's state. */
  if (MPROC__LIKELY(tok != 0 && lock_valid(l) && timeout == timeout)) {
    uint32_t v = 0;
    if (MPROC__LIKELY(__atomic_compare_exchange_n(
            &l->word, &v, tok, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))) {
      if (l->kind == SYNC_KIND_RLOCK) {
        l->owner_tid = mproc__sync_tid();
        if (l->depth != 1) {
          l->depth = 1;
        }
      }
      return 0;
    }
    return acquire_after(l, tok, v, timeout, NULL);
  }
  return acquire_checked(l, timeout);
}

int mproc__lock_acquire_d(struct mproc_lock *l, const mproc__deadline *d) {
  int64_t tok = sync_self();
  if (tok < 0) {
    return (int)tok;
  }
  return acquire(l, (uint32_t)tok, 0, d);
}

/* Release while inconsistent: unusable for good. */
__attribute__((noinline)) static int release_notrec(struct mproc_lock *l) {
  l->flags &= ~SYNC_LOCK_INCONSISTENT;
  __atomic_store_n(&l->word, SYNC_TOKEN_NOTREC, __ATOMIC_RELEASE);
  mproc__futex_wake(&l->word, INT32_MAX);
  if (l->flags & SYNC_LOCK_ASYM) {
    mproc__lock_wake_sleepers(l); /* they sleep on their flag */
  }
  MPROC__WARN("sync: lock %p released while inconsistent: not recoverable",
              (void *)l);
  return 0;
}

/*
 * Release the word: one exchange, checked afterwards.  A Lock's release
 * comes straight here: a load of the word before the locked instruction
 * measurably slows the pair (the line is fetched shared, then again
 * exclusive), and an exchange is a few ns cheaper than a CAS.  Only a
 * thread that may release changes a held word, except for a racing second
 * release of a Lock (a misuse): then the word was 0 (MPROC_EUNLOCKED; the
 * exchange wrote 0 over 0) or SYNC_TOKEN_NOTREC, which is put back.
 */
static inline int release_word(struct mproc_lock *l) {
  if (MPROC__UNLIKELY(l->flags & SYNC_LOCK_INCONSISTENT)) {
    return release_notrec(l);
  }
  uint32_t v = __atomic_exchange_n(&l->word, 0, __ATOMIC_RELEASE);
  if (MPROC__UNLIKELY(TOK(v) == 0 || TOK(v) == SYNC_TOKEN_NOTREC)) {
    if (TOK(v) == SYNC_TOKEN_NOTREC) {
      __atomic_store_n(&l->word, SYNC_TOKEN_NOTREC, __ATOMIC_RELAXED);
      return MPROC_ENOTRECOVERABLE;
    }
    return MPROC_EUNLOCKED;
  }
  if (v & SYNC_WAITERS) {
    mproc__futex_wake(&l->word, 1);
  } else if (MPROC__UNLIKELY(l->flags & SYNC_LOCK_ASYM) &&
             __atomic_load_n(&l->owner_tid, __ATOMIC_SEQ_CST) != 0) {
    /* An asym lock's sleepers' flag (the exchange was a full barrier). */
    mproc__lock_wake_sleepers(l);
  }
  return 0;
}

int mproc_lock_release(mproc_lock *l) {
  if (MPROC__UNLIKELY(!lock_valid(l))) {
    return MPROC_EINVAL;
  }
  if (l->kind == SYNC_KIND_RLOCK) {
    uint32_t v = __atomic_load_n(&l->word, __ATOMIC_RELAXED);
    uint32_t tok = __atomic_load_n(&mproc__sync_self_token, __ATOMIC_RELAXED);
    if (tok == 0 || TOK(v) != tok || l->owner_tid != mproc__sync_tid()) {
      return MPROC_EPERM;
    }
    if (l->depth > 1) {
      l->depth--;
      return 0;
    }
    /* depth stays 1: the next acquire need not write it. */
    l->owner_tid = 0;
    /* Killed here, the word still names this process: the next acquirer
     * takes the lock over (MPROC_EOWNERDEAD). */
    MPROC__FAULT(SYNC_RLOCK_OWNER_CLEARED);
  }
  return release_word(l);
}

int mproc__lock_mine(const struct mproc_lock *l) {
  uint32_t tok = __atomic_load_n(&mproc__sync_self_token, __ATOMIC_RELAXED);
  uint32_t v = __atomic_load_n(&l->word, __ATOMIC_RELAXED);
  if (tok == 0 || TOK(v) != tok) {
    return 0;
  }
  return l->kind != SYNC_KIND_RLOCK || l->owner_tid == mproc__sync_tid();
}

int mproc_lock_consistent(mproc_lock *l) {
  if (!mproc__lock_valid(l)) {
    return MPROC_EINVAL;
  }
  if (!mproc__lock_mine(l) || !(l->flags & SYNC_LOCK_INCONSISTENT)) {
    return MPROC_EPERM;
  }
  l->flags &= ~SYNC_LOCK_INCONSISTENT;
  return 0;
}

int mproc_lock_is_locked(const mproc_lock *l) {
  if (!mproc__lock_valid(l)) {
    return MPROC_EINVAL;
  }
  return TOK(__atomic_load_n(&l->word, __ATOMIC_RELAXED)) != 0;
}

int mproc_lock_held_by_process(const mproc_lock *l) {
  if (!mproc__lock_valid(l)) {
    return MPROC_EINVAL;
  }
  uint32_t tok = __atomic_load_n(&mproc__sync_self_token, __ATOMIC_RELAXED);
  return tok != 0 && TOK(__atomic_load_n(&l->word, __ATOMIC_RELAXED)) == tok;
}

int mproc_lock_is_mine(const mproc_lock *l) {
  if (!mproc__lock_valid(l)) {
    return MPROC_EINVAL;
  }
  if (l->kind != SYNC_KIND_RLOCK) {
    return MPROC_ENOTSUP; /* a Lock has no owning thread */
  }
  return mproc__lock_mine(l);
}

void mproc__lock_init_embedded(void *mem, int recursive) {
  struct mproc_lock *l = mem;
  mproc__lock_init(l, recursive ? SYNC_KIND_RLOCK : SYNC_KIND_LOCK);
  l->flags = SYNC_LOCK_EMBEDDED;
}

void mproc__lock_init_embedded_asym(void *mem) {
  struct mproc_lock *l = mem;
  mproc__lock_init(l, SYNC_KIND_LOCK);
  l->flags = SYNC_LOCK_EMBEDDED | SYNC_LOCK_ASYM;
}

int mproc__lock_busy(const struct mproc_lock *l) {
  uint32_t v = TOK(__atomic_load_n(&l->word, __ATOMIC_ACQUIRE));
  if (v == 0 || v == SYNC_TOKEN_NOTREC) {
    return 0;
  }
  /* No rate limit: a free must see a death that happened a moment ago
   * (a waiter's check 10 ms before the holder was killed must not keep
   * the object busy for the next 40 ms).  token_alive reads the token
   * table without creating it, so this allocates nothing. */
  if (v == __atomic_load_n(&mproc__sync_self_token, __ATOMIC_RELAXED)) {
    return 1;
  }
  return mproc__sync_token_alive(v);
}

int mproc__lock_retire_embedded(void *mem) {
  struct mproc_lock *l = mem;
  if (mproc__lock_busy(l)) {
    return MPROC_EBUSY;
  }
  __atomic_store_n(&l->magic, SYNC_DEAD_MAGIC, __ATOMIC_RELEASE);
  return 0;
}

MPROC__STATIC_ASSERT(sizeof(struct mproc_lock) == MPROC__LOCK_BYTES,
                     "internal.h's MPROC__LOCK_BYTES is the lock's size");
MPROC__STATIC_ASSERT(offsetof(struct mproc_lock, word) == 0 &&
                         offsetof(struct mproc_lock, owner_tid) == 4 &&
                         MPROC__LOCK_WAITERS == SYNC_WAITERS,
                     "internal.h's fast paths know the lock word and an "
                     "asym lock's sleepers' flag");

void mproc__lock_wake_sleepers(void *mem) {
  struct mproc_lock *l = mem;
  __atomic_store_n(&l->owner_tid, 0, __ATOMIC_SEQ_CST);
  mproc__futex_wake(&l->owner_tid, INT32_MAX);
}

int mproc_lock_free(mproc_lock *l) {
  if (l == NULL) {
    return 0;
  }
  if (!mproc__lock_valid(l) || (l->flags & SYNC_LOCK_EMBEDDED)) {
    /* An embedded lock belongs to its Value and goes with it. */
    return MPROC_EINVAL;
  }
  if (mproc__lock_busy(l)) {
    return MPROC_EBUSY;
  }
  __atomic_store_n(&l->magic, SYNC_DEAD_MAGIC, __ATOMIC_RELEASE);
  return mproc_shm_free(l);
}

int mproc__lock_release_all(struct mproc_lock *l, uint32_t *depth) {
  if (l->kind == SYNC_KIND_RLOCK) {
    *depth = l->depth;
    l->owner_tid = 0;
    l->depth = 0;
  } else {
    *depth = 1;
  }
  return release_word(l);
}

int mproc__lock_restore(struct mproc_lock *l, uint32_t depth) {
  mproc__deadline forever = {1, 0};
  int r = mproc__lock_acquire_d(l, &forever);
  if ((r == 0 || r == MPROC_EOWNERDEAD) && l->kind == SYNC_KIND_RLOCK) {
    l->depth = depth;
  }
  return r;
}
