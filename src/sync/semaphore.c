/*
 * src/sync/semaphore.c - Semaphore and BoundedSemaphore, returning the
 * units of a process that died holding them.
 *
 * DESIGN
 * The value is the futex word; a separate count of threads that may sleep
 * on it lets release skip the FUTEX_WAKE when nobody waits (musl's
 * sem_post).  A sleeper increments the count, futex-waits while the value
 * is 0, and decrements it; release increments the value and then reads the
 * count (both sequentially consistent, so either the sleeper sees the new
 * value or the releaser sees the sleeper).  A process killed while asleep
 * leaves the count one too high for good: releases then always make the
 * (harmless) wake system call.
 *
 * Python's semantics by default: the value is the count, and nothing
 * but acquire and release moves it.  A process that exits (normally or
 * killed) while it "holds" units gives nothing back, because a semaphore
 * cannot tell a unit taken to be given back (a resource) from one taken
 * for good (an item signalled by a producer): a consumer of a bounded
 * buffer acquires items that producers release, and returning them when
 * it exits would invent items that never existed.
 *
 * Death return (opts.death_return, opt-in).  The semaphore carries a table
 * of SEM_HOLDERS (64) entries, each one 64-bit word
 * {process token:32 | units:32}, so entries are claimed, counted and
 * freed with single CASes, and a word `credit` that counts released units
 * nobody holds (a producer's signal):
 *   - acquire takes a unit (CAS on the value); then, if credit > 0, it
 *     takes one credit (the unit is a signal: not held, never returned),
 *     else it adds 1 to its process's entry (claiming a free one, found
 *     by probing from a hash of the token);
 *   - release retires one held unit before it adds the unit to the value:
 *     its own process's if it has one there, else any other process's
 *     (a unit released on another's behalf, the cross-process
 *     acquire/release pattern, is no longer held by anybody); with no
 *     held unit anywhere it adds one credit;
 *   - so value + held units - credit stays the initial value through any
 *     sequence of acquires and releases, and units returned on a death
 *     never lift the value above the initial value plus the credit;
 *   - a waiter about to sleep, or whose 50 ms sleep slice ends
 *     (rate-limited to one check per semaphore per 40 ms), a timed
 *     acquire that gives up, and get_value check the liveness of the
 *     tokens in the table; the entry of a dead process is freed with a
 *     CAS (so its units are returned exactly once) and its units added
 *     back to the value (capped at the bound, or INT32_MAX).
 * Limits, all on the safe side (never more units than were released):
 *   - the table full (64 processes holding units at once): a further
 *     process's units are not tracked, and are lost if it dies holding
 *     them;
 *   - a process killed between taking a unit and recording it (or between
 *     retiring a held unit and adding it to the value) loses that one
 *     unit, and one killed between freeing a dead process's entry and
 *     adding its units back loses those units (fault points sync.sem_*);
 *   - units move with the process, not the thread: a thread's acquire and
 *     another thread's release in the same process cancel out.
 */
#include "sync-internal.h"

#include <errno.h>

#define SEM_MAGIC 0x53454d41u /* "SEMA" */
#define SEM_HOLDERS 64

struct mproc_semaphore {
  uint32_t value;      /* futex word: units available */
  uint32_t magic;
  uint32_t waiters;    /* threads that may be asleep on value */
  uint32_t maxvalue;   /* the bound: initial value, or INT32_MAX */
  uint32_t track;      /* 1: death return on */
  uint32_t bounded;
  uint64_t checked_ns; /* last liveness check (rate limit) */
  uint32_t credit;     /* death return: released units nobody holds */
  uint32_t spare;
  /* The holder table starts 64 bytes in, off the value's cache line when
   * the block is so aligned (the arena guarantees 16 bytes only). */
  uint64_t pad[3];
  uint64_t holders[SEM_HOLDERS];
};

#define H_TOKEN(x) ((uint32_t)((x) >> 32))
#define H_UNITS(x) ((uint32_t)(x))

static int sem_valid(const struct mproc_semaphore *s) {
  return sync_in_arena(s, sizeof *s) &&
         __atomic_load_n(&s->magic, __ATOMIC_RELAXED) == SEM_MAGIC;
}

int mproc_semaphore_new(mproc_semaphore **out, int value,
                        const mproc_semaphore_opts *opts) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  if (value < 0) {
    return MPROC_EINVAL;
  }
  struct mproc_semaphore *s = NULL;
  int r = mproc_shm_calloc((void **)&s, 1, sizeof *s);
  if (r != 0) {
    return r;
  }
  s->value = (uint32_t)value;
  s->bounded = opts != NULL && opts->bounded;
  s->maxvalue = s->bounded ? (uint32_t)value : (uint32_t)INT32_MAX;
  s->track = opts != NULL && opts->death_return;
  __atomic_store_n(&s->magic, SEM_MAGIC, __ATOMIC_RELEASE);
  *out = s;
  return 0;
}

static unsigned hash(uint32_t tok) {
  return (tok & SYNC_SLOT_MASK) % SEM_HOLDERS;
}

/* Add n units to the value (capped at the bound) and wake sleepers. */
static void give_back(struct mproc_semaphore *s, uint32_t n) {
  uint32_t v = __atomic_load_n(&s->value, __ATOMIC_RELAXED);
  uint32_t nv;
  do {
    nv = v + n > s->maxvalue || v + n < v ? s->maxvalue : v + n;
  } while (!__atomic_compare_exchange_n(&s->value, &v, nv, 1,
                                        __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
  if (__atomic_load_n(&s->waiters, __ATOMIC_SEQ_CST) != 0) {
    mproc__futex_wake(&s->value, n > INT32_MAX ? INT32_MAX : (int)n);
  }
}

/*
 * Return the units of dead processes.  Returns how many came back.
 */
static uint32_t reclaim(struct mproc_semaphore *s) {
  uint32_t me = __atomic_load_n(&mproc__sync_self_token, __ATOMIC_RELAXED);
  uint32_t alive[8];
  int nalive = 0;
  uint32_t total = 0;
  for (int i = 0; i < SEM_HOLDERS; i++) {
    uint64_t x = __atomic_load_n(&s->holders[i], __ATOMIC_ACQUIRE);
    uint32_t t = H_TOKEN(x);
    if (x == 0 || t == me) {
      continue;
    }
    int known = 0;
    for (int k = 0; k < nalive; k++) {
      known |= alive[k] == t;
    }
    if (known) {
      continue;
    }
    if (mproc__sync_token_alive(t)) {
      if (nalive < (int)MPROC__ARRAY_SIZE(alive)) {
        alive[nalive++] = t;
      }
      continue;
    }
    /* Dead: every entry it has (normally one) comes back. */
    for (int j = i; j < SEM_HOLDERS; j++) {
      uint64_t y = __atomic_load_n(&s->holders[j], __ATOMIC_ACQUIRE);
      while (H_TOKEN(y) == t &&
             !__atomic_compare_exchange_n(&s->holders[j], &y, 0, 0,
                                          __ATOMIC_ACQ_REL,
                                          __ATOMIC_ACQUIRE)) {
      }
      if (H_TOKEN(y) == t && H_UNITS(y) != 0) {
        MPROC__FAULT(SYNC_SEM_RECLAIMED);
        /* A held unit and a credit both outstanding mean a release found
         * nobody holding while this unit was being recorded (the two
         * words cannot change at once): they cancel, and only the rest
         * comes back, so the value never passes initial + credit. */
        uint32_t n = H_UNITS(y);
        uint32_t c = __atomic_load_n(&s->credit, __ATOMIC_RELAXED);
        uint32_t cancel;
        do {
          cancel = c < n ? c : n;
        } while (cancel != 0 &&
                 !__atomic_compare_exchange_n(&s->credit, &c, c - cancel, 1,
                                              __ATOMIC_RELAXED,
                                              __ATOMIC_RELAXED));
        n -= cancel;
        MPROC__WARN("sync: semaphore %p: %u unit(s) of dead pid %d returned",
                    (void *)s, n, (int)mproc__sync_token_pid(t));
        if (n != 0) {
          give_back(s, n);
        }
        total += n;
      }
    }
  }
  return total;
}

/* Record one unit taken by this process. */
static void holder_add(struct mproc_semaphore *s, uint32_t tok) {
  unsigned h = hash(tok);
  for (int attempt = 0; attempt < 4; attempt++) {
    int free_i = -1;
    for (int i = 0; i < SEM_HOLDERS; i++) {
      uint64_t *e = &s->holders[(h + (unsigned)i) % SEM_HOLDERS];
      uint64_t x = __atomic_load_n(e, __ATOMIC_RELAXED);
      while (H_TOKEN(x) == tok) {
        if (H_UNITS(x) == UINT32_MAX) {
          return; /* cannot count more: untracked */
        }
        if (__atomic_compare_exchange_n(e, &x, x + 1, 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
          return;
        }
      }
      if (x == 0 && free_i < 0) {
        free_i = (int)((h + (unsigned)i) % SEM_HOLDERS);
      }
    }
    if (free_i >= 0) {
      uint64_t zero = 0;
      if (__atomic_compare_exchange_n(&s->holders[free_i], &zero,
                                      ((uint64_t)tok << 32) | 1u, 0,
                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        return;
      }
      continue; /* taken under us: look again */
    }
    /* Full: make room from dead processes, once. */
    if (attempt > 0 || reclaim(s) == 0) {
      break;
    }
  }
  MPROC__DEBUG("sync: semaphore %p: holder table full; unit not tracked",
               (void *)s);
}

/* Take back one unit recorded for tok.  Returns 1 if it had one. */
static int holder_sub(struct mproc_semaphore *s, uint32_t tok) {
  unsigned h = hash(tok);
  for (int i = 0; i < SEM_HOLDERS; i++) {
    uint64_t *e = &s->holders[(h + (unsigned)i) % SEM_HOLDERS];
    uint64_t x = __atomic_load_n(e, __ATOMIC_RELAXED);
    while (H_TOKEN(x) == tok && H_UNITS(x) != 0) {
      uint64_t nx = H_UNITS(x) == 1 ? 0 : x - 1;
      if (__atomic_compare_exchange_n(e, &x, nx, 1, __ATOMIC_RELAXED,
                                      __ATOMIC_RELAXED)) {
        return 1;
      }
    }
  }
  return 0;
}

/* Retire one held unit of any process (a release on another's behalf).
 * Returns the token it was taken from, or 0 if nobody holds one. */
static uint32_t holder_sub_any(struct mproc_semaphore *s) {
  for (int i = 0; i < SEM_HOLDERS; i++) {
    uint64_t *e = &s->holders[i];
    uint64_t x = __atomic_load_n(e, __ATOMIC_RELAXED);
    while (x != 0 && H_UNITS(x) != 0) {
      uint64_t nx = H_UNITS(x) == 1 ? 0 : x - 1;
      if (__atomic_compare_exchange_n(e, &x, nx, 1, __ATOMIC_RELAXED,
                                      __ATOMIC_RELAXED)) {
        return H_TOKEN(x);
      }
    }
  }
  return 0;
}

/* Take one credit (a released unit nobody held).  Returns 1 if there was
 * one. */
static int credit_take(struct mproc_semaphore *s) {
  uint32_t c = __atomic_load_n(&s->credit, __ATOMIC_RELAXED);
  while (c != 0) {
    if (__atomic_compare_exchange_n(&s->credit, &c, c - 1, 1,
                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
      return 1;
    }
  }
  return 0;
}

static inline int try_take(struct mproc_semaphore *s) {
  uint32_t v = __atomic_load_n(&s->value, __ATOMIC_RELAXED);
  while (v > 0) {
    if (__atomic_compare_exchange_n(&s->value, &v, v - 1, 1, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED)) {
      return 1;
    }
  }
  return 0;
}

static int acquire_slow(struct mproc_semaphore *s, const mproc__deadline *d) {
  int poll = !d->forever && d->at_ns <= mproc__now_ns();
  if (!poll) {
    for (int i = 0; i < SYNC_SPINS; i++) {
      if (__atomic_load_n(&s->value, __ATOMIC_RELAXED) != 0) {
        if (try_take(s)) {
          return 0;
        }
        continue;
      }
      if (__atomic_load_n(&s->waiters, __ATOMIC_RELAXED) != 0) {
        break;
      }
      sync_pause();
    }
  }
  /* Before the first sleep: units of a process that died before anybody
   * waited come back at once (rate-limited). */
  if (!poll && s->track && mproc__sync_check_turn(&s->checked_ns, 0)) {
    reclaim(s);
  }
  for (;;) {
    if (try_take(s)) {
      return 0;
    }
    __atomic_fetch_add(&s->waiters, 1, __ATOMIC_SEQ_CST);
    MPROC__FAULT(SYNC_SEM_SLEEPING);
    int r = mproc__sync_wait_slice(&s->value, 0, d, SYNC_SLICE_NS);
    __atomic_fetch_sub(&s->waiters, 1, __ATOMIC_SEQ_CST);
    if (r == 0) {
      continue;
    }
    if (s->track && mproc__sync_check_turn(&s->checked_ns, 0)) {
      reclaim(s);
    }
    if (r == MPROC_ETIMEDOUT) {
      return try_take(s) ? 0 : MPROC_ETIMEDOUT;
    }
  }
}

int mproc_semaphore_acquire(mproc_semaphore *s, double timeout) {
  if (!sem_valid(s) || timeout != timeout) {
    return MPROC_EINVAL;
  }
  int64_t tok = 0;
  if (s->track) {
    tok = sync_self();
    if (tok < 0) {
      return (int)tok;
    }
  }
  if (!try_take(s)) {
    mproc__deadline d;
    if (mproc__deadline_init(&d, timeout) != 0) {
      return MPROC_EINVAL;
    }
    int r = acquire_slow(s, &d);
    if (r != 0) {
      return r;
    }
  }
  if (s->track) {
    /* The unit is taken; until it is accounted for, a death loses it
     * (never returns it twice). */
    MPROC__FAULT(SYNC_SEM_TAKEN);
    if (!credit_take(s)) {
      holder_add(s, (uint32_t)tok);
    }
    MPROC__FAULT(SYNC_SEM_RECORDED);
  }
  return 0;
}

int mproc_semaphore_release(mproc_semaphore *s) {
  if (!sem_valid(s)) {
    return MPROC_EINVAL;
  }
  /* Death return: retire a held unit first (the caller's own, else any
   * process's), or add a credit when nobody holds one; so a death never
   * returns a unit that a release already gave back (see the top). */
  uint32_t retired = 0; /* the token whose unit was retired */
  int credited = 0;
  if (s->track) {
    uint32_t tok = __atomic_load_n(&mproc__sync_self_token, __ATOMIC_RELAXED);
    if (tok != 0 && holder_sub(s, tok)) {
      retired = tok;
    } else if ((retired = holder_sub_any(s)) == 0) {
      __atomic_fetch_add(&s->credit, 1, __ATOMIC_RELAXED);
      credited = 1;
    }
    MPROC__FAULT(SYNC_SEM_RETIRED);
  }
  uint32_t v = __atomic_load_n(&s->value, __ATOMIC_RELAXED);
  do {
    if (v >= s->maxvalue) {
      /* Nothing released: undo the accounting. */
      if (retired != 0) {
        holder_add(s, retired);
      } else if (credited) {
        (void)credit_take(s);
      }
      return MPROC_EUNLOCKED;
    }
  } while (!__atomic_compare_exchange_n(&s->value, &v, v + 1, 1,
                                        __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
  if (__atomic_load_n(&s->waiters, __ATOMIC_SEQ_CST) != 0) {
    mproc__futex_wake(&s->value, 1);
  }
  return 0;
}

int mproc_semaphore_get_value(const mproc_semaphore *cs) {
  if (!sem_valid(cs)) {
    return MPROC_EINVAL;
  }
  /* The object is arena memory, never const itself. */
  struct mproc_semaphore *s = (struct mproc_semaphore *)(uintptr_t)cs;
  if (s->track) {
    uint32_t me = __atomic_load_n(&mproc__sync_self_token, __ATOMIC_RELAXED);
    for (int i = 0; i < SEM_HOLDERS; i++) {
      uint64_t x = __atomic_load_n(&s->holders[i], __ATOMIC_RELAXED);
      if (x != 0 && H_TOKEN(x) != me) {
        reclaim(s);
        break;
      }
    }
  }
  return (int)__atomic_load_n(&s->value, __ATOMIC_ACQUIRE);
}

int mproc_semaphore_free(mproc_semaphore *s) {
  if (s == NULL) {
    return 0;
  }
  if (!sem_valid(s)) {
    return MPROC_EINVAL;
  }
  __atomic_store_n(&s->magic, SYNC_DEAD_MAGIC, __ATOMIC_RELEASE);
  return mproc_shm_free(s);
}

/* For tests: units recorded for this process. */
int mproc__semaphore_held_by_me(const mproc_semaphore *s);
int mproc__semaphore_held_by_me(const mproc_semaphore *s) {
  uint32_t me = __atomic_load_n(&mproc__sync_self_token, __ATOMIC_RELAXED);
  int n = 0;
  for (int i = 0; i < SEM_HOLDERS && me != 0; i++) {
    uint64_t x = __atomic_load_n(&s->holders[i], __ATOMIC_RELAXED);
    if (H_TOKEN(x) == me) {
      n += (int)H_UNITS(x);
    }
  }
  return n;
}
