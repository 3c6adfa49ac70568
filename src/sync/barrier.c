/*
 * src/sync/barrier.c - Barrier: threading.Barrier's state machine, shared
 * between processes, broken by the death of a waiting party.
 *
 * DESIGN
 * The state and count are Python's (filling 0, draining 1, resetting -1,
 * broken -2; count = parties inside wait), guarded by an internal Lock;
 * every change of state bumps a futex sequence word, on which parties
 * sleep (without the lock) in slices of 50 ms.  Each party inside wait
 * writes its process token into slots[index] (its arrival index) and
 * clears it when it leaves.
 *
 * Death.  When a sleeper's slice ends, it scans the slots (at most one
 * scan per barrier per 40 ms among all sleepers) and checks the liveness
 * of the tokens it finds.  A dead party's slot is cleared and it no longer
 * counts as inside; if the barrier was filling, it is broken, so the
 * others get MPROC_EBROKEN within about 100 ms instead of waiting forever;
 * if it was draining or resetting, the dead party just stops holding up
 * the next generation.  A party that dies holding the internal lock (in
 * the middle of an update, or running the action) is found by the next
 * locker (MPROC_EOWNERDEAD): the barrier is then broken and its count
 * rebuilt from the slots of live parties, since the update may be half
 * done.
 *
 * A party counts as released once the pass it joined completed (a
 * generation counter moved), so an abort or reset that comes right after
 * the pass, before the party woke up, does not fail it: Python's
 * threading.Barrier raises BrokenBarrierError there.
 *
 * The action runs in the last party to arrive, with the internal lock
 * held (as Python runs it under the condition): abort and reset wait for
 * it.  Only the wait that found the barrier filling honours the timeout
 * in Python; here a wait held up by a draining or resetting barrier also
 * returns MPROC_ETIMEDOUT at its deadline (without breaking it).
 */
#include "sync-internal.h"

#include <errno.h>

#define BARRIER_MAGIC 0x42415252u /* "BARR" */
enum { FILLING = 0, DRAINING = 1, RESETTING = -1, BROKEN = -2 };

struct mproc_barrier {
  uint32_t seq;    /* futex word: bumped at every change of state */
  uint32_t magic;
  int32_t parties;
  int32_t state;   /* guarded by lock */
  int32_t count;   /* guarded by lock */
  uint32_t gen;    /* passes completed; guarded by lock */
  double timeout;  /* wait_default's; < 0 forever, 0 polls */
  /* The action and its ctx as references every process can resolve: the
   * last party may be a child started by spawn or the forkserver, with
   * the program at other addresses than in the barrier's creator. */
  int32_t has_action;
  mproc__fnref action;
  mproc__fnref action_ctx;
  uint64_t checked_ns;
  struct mproc_lock lock;
  uint32_t slots[]; /* parties entries: token of the party at each index */
};

static int bar_valid(const struct mproc_barrier *b) {
  return sync_in_arena(b, sizeof *b) &&
         __atomic_load_n(&b->magic, __ATOMIC_RELAXED) == BARRIER_MAGIC;
}

int mproc_barrier_new(mproc_barrier **out, int parties,
                      const mproc_barrier_opts *opts) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  if (parties < 1 || (opts != NULL && opts->timeout != opts->timeout)) {
    return MPROC_EINVAL;
  }
  struct mproc_barrier *b = NULL;
  int r = mproc_shm_calloc(
      (void **)&b, 1, sizeof *b + (size_t)parties * sizeof(uint32_t));
  if (r != 0) {
    return r;
  }
  b->parties = parties;
  b->state = FILLING;
  b->timeout = MPROC_FOREVER;
  if (opts != NULL) {
    if (opts->action != NULL) {
      b->has_action = 1;
      mproc__fnref_make(&b->action, (const void *)(uintptr_t)opts->action);
      mproc__fnref_make(&b->action_ctx, opts->action_ctx);
    }
    b->timeout = opts->timeout;
  }
  mproc__lock_init(&b->lock, SYNC_KIND_LOCK);
  __atomic_store_n(&b->magic, BARRIER_MAGIC, __ATOMIC_RELEASE);
  *out = b;
  return 0;
}

static void bump(struct mproc_barrier *b) {
  __atomic_fetch_add(&b->seq, 1, __ATOMIC_RELEASE);
  mproc__futex_wake(&b->seq, INT32_MAX);
}

/* Whether token t is in the list of known-dead tokens. */
static int listed(const uint32_t *dead, int ndead, uint32_t t) {
  for (int i = 0; i < ndead; i++) {
    if (dead[i] == t) {
      return 1;
    }
  }
  return 0;
}

/* With the lock held: drop the slots of dead parties (all tokens in dead,
 * or, with ndead < 0, every token found dead now).  Breaks a filling
 * barrier.  Returns how many were dropped. */
static int drop_dead(struct mproc_barrier *b, const uint32_t *dead, int ndead) {
  int dropped = 0;
  for (int i = 0; i < b->parties; i++) {
    uint32_t t = __atomic_load_n(&b->slots[i], __ATOMIC_RELAXED);
    if (t == 0) {
      continue;
    }
    if (ndead >= 0 ? listed(dead, ndead, t) : !mproc__sync_token_alive(t)) {
      __atomic_store_n(&b->slots[i], 0, __ATOMIC_RELAXED);
      b->count--;
      dropped++;
    }
  }
  if (dropped > 0) {
    MPROC__WARN("sync: barrier %p: %d party(ies) died in wait", (void *)b,
                dropped);
    if (b->state == FILLING) {
      b->state = BROKEN;
    }
    if (b->count <= 0) {
      b->count = 0;
      if (b->state == DRAINING || b->state == RESETTING) {
        b->state = FILLING;
      }
    }
    bump(b);
  }
  return dropped;
}

/* Take the internal lock; repair after a holder's death.  The caller
 * has a token (sync_self succeeded), so the acquire cannot fail
 * otherwise. */
static void blk(struct mproc_barrier *b) {
  mproc__deadline forever = {1, 0};
  int r = mproc__lock_acquire_d(&b->lock, &forever);
  if (r == MPROC_EOWNERDEAD) {
    /* A party died in the middle of an update (or of the action): the
     * state cannot be trusted.  Keep the live parties' slots, recount
     * them, and break it. */
    drop_dead(b, NULL, -1);
    int n = 0;
    for (int i = 0; i < b->parties; i++) {
      n += __atomic_load_n(&b->slots[i], __ATOMIC_RELAXED) != 0;
    }
    b->count = n;
    b->state = BROKEN;
    b->lock.flags &= ~SYNC_LOCK_INCONSISTENT;
    bump(b);
  }
}

static void bunlock(struct mproc_barrier *b) {
  uint32_t depth;
  mproc__lock_release_all(&b->lock, &depth);
}

/* Check b and take its internal lock, which needs this thread's token.
 * Returns 0 with the lock held, or an error with it not taken. */
static int blk_valid(struct mproc_barrier *b) {
  if (!bar_valid(b)) {
    return MPROC_EINVAL;
  }
  int64_t tok = sync_self(); /* the internal lock needs a token */
  if (tok < 0) {
    return (int)tok;
  }
  blk(b);
  return 0;
}

/*
 * Sleep until the state changes (or a slice ends, or the deadline), with
 * the lock released; returns with it held.  Returns 0 or MPROC_ETIMEDOUT.
 */
static int sleep_unlocked(struct mproc_barrier *b, const mproc__deadline *d,
                          uint32_t me) {
  uint32_t s = __atomic_load_n(&b->seq, __ATOMIC_ACQUIRE);
  bunlock(b);
  /* Killed here, its slot names a dead party: a sleeper's slice check
   * drops it and breaks a filling barrier. */
  MPROC__FAULT(SYNC_BARRIER_SLEEPING);
  int r = mproc__sync_wait_slice(&b->seq, s, d, SYNC_SLICE_NS);
  uint32_t dead[16];
  int ndead = 0;
  if (r != 0 && mproc__sync_check_turn(&b->checked_ns, 0)) {
    uint32_t alive[16];
    int nalive = 0;
    for (int i = 0; i < b->parties && ndead < 16; i++) {
      uint32_t t = __atomic_load_n(&b->slots[i], __ATOMIC_RELAXED);
      if (t == 0 || t == me || listed(alive, nalive, t) ||
          listed(dead, ndead, t)) {
        continue;
      }
      if (mproc__sync_token_alive(t)) {
        if (nalive < 16) {
          alive[nalive++] = t;
        }
      } else {
        dead[ndead++] = t;
      }
    }
  }
  blk(b);
  if (ndead > 0) {
    drop_dead(b, dead, ndead);
  }
  return r == MPROC_ETIMEDOUT ? MPROC_ETIMEDOUT : 0;
}

int mproc_barrier_wait_default(mproc_barrier *b) {
  if (!bar_valid(b)) {
    return MPROC_EINVAL;
  }
  return mproc_barrier_wait(b, b->timeout);
}

int mproc_barrier_wait(mproc_barrier *b, double timeout) {
  if (!bar_valid(b) || timeout != timeout) {
    return MPROC_EINVAL;
  }
  mproc__deadline d;
  if (mproc__deadline_init(&d, timeout) != 0) {
    return MPROC_EINVAL;
  }
  int64_t tok = sync_self();
  if (tok < 0) {
    return (int)tok;
  }
  uint32_t me = (uint32_t)tok;
  blk(b);
  /* Python's _enter: wait for the previous generation to drain. */
  while (b->state == DRAINING || b->state == RESETTING) {
    if (sleep_unlocked(b, &d, me) == MPROC_ETIMEDOUT &&
        (b->state == DRAINING || b->state == RESETTING)) {
      bunlock(b);
      return MPROC_ETIMEDOUT;
    }
  }
  if (b->state == BROKEN) {
    bunlock(b);
    return MPROC_EBROKEN;
  }
  int index = b->count++;
  __atomic_store_n(&b->slots[index], me, __ATOMIC_RELAXED);
  /* Killed here, holding the internal lock: the next locker finds it
   * dead, breaks the barrier and recounts from the live slots. */
  MPROC__FAULT(SYNC_BARRIER_ENTERED);
  const uint32_t gen = b->gen;
  int result;
  if (index + 1 == b->parties) {
    if (b->has_action) {
      int e1 = 0, e2 = 0;
      void *fn = mproc__fnref_get(&b->action, &e1);
      void *actx = mproc__fnref_get(&b->action_ctx, &e2);
      if (fn == NULL || e2 != 0) {
        /* The action cannot run here (another build of the program, a
         * library not loaded): as an action that fails in Python, it
         * breaks the barrier, and this party learns why. */
        b->state = BROKEN;
        bump(b);
        bunlock(b);
        return e1 != 0 ? e1 : e2 != 0 ? e2 : MPROC_ENOFUNC;
      }
      ((mproc_barrier_action_fn)(uintptr_t)fn)(actx);
    }
    b->state = DRAINING;
    b->gen++;
    bump(b);
    result = index;
  } else {
    result = 0;
    while (b->state == FILLING && b->gen == gen) {
      if (sleep_unlocked(b, &d, me) == MPROC_ETIMEDOUT &&
          b->state == FILLING && b->gen == gen) {
        b->state = BROKEN; /* a timeout breaks it for everyone */
        bump(b);
        result = MPROC_ETIMEDOUT;
        break;
      }
    }
    if (result == 0) {
      /* Released by the pass it joined, even if an abort or reset came
       * before it woke (Python's threading.Barrier raises there). */
      result = b->gen != gen ? index : MPROC_EBROKEN;
    }
  }
  /* Python's _exit.  The slot may have been dropped if this process was
   * wrongly found dead; it never is (only proof of death counts). */
  if (__atomic_load_n(&b->slots[index], __ATOMIC_RELAXED) == me) {
    __atomic_store_n(&b->slots[index], 0, __ATOMIC_RELAXED);
    b->count--;
  }
  if (b->count == 0 && (b->state == RESETTING || b->state == DRAINING)) {
    b->state = FILLING;
    bump(b);
  }
  bunlock(b);
  return result;
}

int mproc_barrier_abort(mproc_barrier *b) {
  int r = blk_valid(b);
  if (r != 0) {
    return r;
  }
  b->state = BROKEN;
  bump(b);
  bunlock(b);
  return 0;
}

int mproc_barrier_reset(mproc_barrier *b) {
  int r = blk_valid(b);
  if (r != 0) {
    return r;
  }
  if (b->count > 0) {
    if (b->state == FILLING || b->state == BROKEN) {
      b->state = RESETTING;
    }
  } else {
    b->state = FILLING;
  }
  bump(b);
  bunlock(b);
  return 0;
}

int mproc_barrier_parties(const mproc_barrier *b) {
  return bar_valid(b) ? b->parties : MPROC_EINVAL;
}

int mproc_barrier_n_waiting(const mproc_barrier *b) {
  if (!bar_valid(b)) {
    return MPROC_EINVAL;
  }
  int state = __atomic_load_n(&b->state, __ATOMIC_RELAXED);
  return state == FILLING ? __atomic_load_n(&b->count, __ATOMIC_RELAXED) : 0;
}

int mproc_barrier_broken(const mproc_barrier *b) {
  if (!bar_valid(b)) {
    return MPROC_EINVAL;
  }
  return __atomic_load_n(&b->state, __ATOMIC_RELAXED) == BROKEN;
}

int mproc_barrier_free(mproc_barrier *b) {
  if (b == NULL) {
    return 0;
  }
  if (!bar_valid(b)) {
    return MPROC_EINVAL;
  }
  /* No lock taken: that would need a process token, whose first
   * registration allocates (a free never does).  Nobody may use the
   * barrier any more, so its internal lock is busy only if a live process
   * is inside wait, abort or reset, and the slots say who waits. */
  int busy = mproc__lock_busy(&b->lock);
  for (int i = 0; i < b->parties && !busy; i++) {
    uint32_t t = __atomic_load_n(&b->slots[i], __ATOMIC_ACQUIRE);
    busy = t != 0 && mproc__sync_token_alive(t);
  }
  if (busy) {
    return MPROC_EBUSY;
  }
  __atomic_store_n(&b->magic, SYNC_DEAD_MAGIC, __ATOMIC_RELEASE);
  return mproc_shm_free(b);
}
