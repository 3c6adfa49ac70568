/*
 * src/sync/cond.c - Condition over a Lock or an RLock.
 *
 * DESIGN
 * A FIFO queue of wait records, guarded by the condition's own lock (which
 * wait and notify both require the caller to hold).  A waiter appends a
 * record {state, token}, releases every level of the lock, and sleeps on
 * its own record's state word (shared futex op) until it is no longer
 * WAITING or its deadline passes; then it takes the lock back (restoring
 * the RLock's depth) and, if nobody signalled it, unlinks its record and
 * returns MPROC_ETIMEDOUT.  notify(n) unlinks the first n records, marks
 * each SIGNALLED and wakes its one sleeper; it never waits for the woken.
 * So notify(n) is exact (n of the current waiters, oldest first; a waiter
 * that arrives after a notify is not in its reach) and there is no
 * thundering herd.  Records come from a free list in the condition
 * (guarded by the same lock), refilled from the arena, so a wait
 * allocates only the first time it needs a new record.
 *
 * A waiter killed in its sleep leaves its record in the queue.  notify
 * finds out when FUTEX_WAKE reports that nobody slept on a record: that
 * happens for a live waiter only in a short window (between releasing the
 * lock and sleeping, or between waking up and taking the lock back, when
 * it will see SIGNALLED anyway), so only then does notify check the
 * record's token; a dead waiter's record is recycled and does not count
 * toward n.  So a death neither blocks notify nor swallows a wakeup.
 *
 * A waiter whose timeout expired and that was signalled before it got the
 * lock back returns 0: the notify counted it, and reporting the timeout
 * would lose that notification.
 */
#include "sync-internal.h"

#include <errno.h>

#define COND_MAGIC 0x434f4e44u /* "COND" */
#define NODE_WAITING 0u
#define NODE_SIGNALLED 1u

struct cond_node {
  uint32_t state; /* futex word: NODE_WAITING / NODE_SIGNALLED */
  uint32_t token; /* the waiting process */
  struct cond_node *next, *prev;
};

struct mproc_cond {
  uint32_t magic;
  uint32_t owns_lock;          /* the condition made the lock */
  struct mproc_lock *lock;
  struct cond_node *head, *tail; /* waiting records; guarded by lock */
  struct cond_node *spare;     /* free records (next-linked); lock */
};

static int cond_valid(const struct mproc_cond *c) {
  return sync_in_arena(c, sizeof *c) &&
         __atomic_load_n(&c->magic, __ATOMIC_RELAXED) == COND_MAGIC;
}

int mproc_cond_new(mproc_cond **out, mproc_lock *lock) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  if (lock != NULL && !mproc__lock_valid(lock)) {
    return MPROC_EINVAL;
  }
  struct mproc_cond *c = NULL;
  int r = mproc_shm_calloc((void **)&c, 1, sizeof *c);
  if (r != 0) {
    return r;
  }
  if (lock == NULL) {
    r = mproc_rlock_new(&lock);
    if (r != 0) {
      mproc_shm_free(c);
      return r;
    }
    c->owns_lock = 1;
  }
  c->lock = lock;
  __atomic_store_n(&c->magic, COND_MAGIC, __ATOMIC_RELEASE);
  *out = c;
  return 0;
}

mproc_lock *mproc_cond_lock(mproc_cond *c) {
  return cond_valid(c) ? c->lock : NULL;
}

static void unlink_node(struct mproc_cond *c, struct cond_node *n) {
  if (n->prev != NULL) {
    n->prev->next = n->next;
  } else {
    c->head = n->next;
  }
  if (n->next != NULL) {
    n->next->prev = n->prev;
  } else {
    c->tail = n->prev;
  }
  n->next = n->prev = NULL;
}

static void recycle(struct mproc_cond *c, struct cond_node *n) {
  n->prev = NULL;
  n->next = c->spare;
  c->spare = n;
}

/* The wait, with a deadline fixed by the caller.  The caller checked
 * validity and that it holds the lock. */
static int cond_wait_d(struct mproc_cond *c, const mproc__deadline *d) {
  struct mproc_lock *l = c->lock;
  if (l->flags & SYNC_LOCK_INCONSISTENT) {
    return MPROC_EPERM; /* repair and mproc_lock_consistent first */
  }
  struct cond_node *n = c->spare;
  if (n != NULL) {
    c->spare = n->next;
  } else {
    int r = mproc_shm_alloc((void **)&n, sizeof *n);
    if (r != 0) {
      return r;
    }
  }
  n->state = NODE_WAITING;
  n->token = __atomic_load_n(&mproc__sync_self_token, __ATOMIC_RELAXED);
  n->next = NULL;
  n->prev = c->tail;
  if (c->tail != NULL) {
    c->tail->next = n;
  } else {
    c->head = n;
  }
  c->tail = n;

  /* Killed here, holding the lock: the next acquirer takes it over, and
   * the record left queued is skipped by notify (its waiter is dead). */
  MPROC__FAULT(SYNC_COND_QUEUED);
  uint32_t depth = 1;
  mproc__lock_release_all(l, &depth);
  MPROC__FAULT(SYNC_COND_SLEEPING);
  for (;;) {
    /* In slices: a notifier killed between marking this record and
     * waking it (sync.cond_signalled) leaves it SIGNALLED with nobody to
     * wake its sleeper, which then sees the mark when its slice ends
     * instead of sleeping forever. */
    int r = mproc__sync_wait_slice(&n->state, NODE_WAITING, d,
                                   SYNC_SLICE_NS);
    if (__atomic_load_n(&n->state, __ATOMIC_ACQUIRE) != NODE_WAITING ||
        r == MPROC_ETIMEDOUT) {
      break;
    }
  }
  /* Killed here, its record is unlinked (signalled) or still queued
   * (timed out): as above. */
  MPROC__FAULT(SYNC_COND_WOKEN);
  int rr = mproc__lock_restore(l, depth);
  if (rr == MPROC_ENOTRECOVERABLE) {
    /* The lock is gone for good, and with it the queue's guard. */
    return rr;
  }
  int result = 0;
  if (__atomic_load_n(&n->state, __ATOMIC_ACQUIRE) == NODE_WAITING) {
    unlink_node(c, n);
    result = MPROC_ETIMEDOUT;
  }
  recycle(c, n);
  return rr == MPROC_EOWNERDEAD ? rr : result;
}

int mproc_cond_wait(mproc_cond *c, double timeout) {
  if (!cond_valid(c) || timeout != timeout) {
    return MPROC_EINVAL;
  }
  if (!mproc__lock_mine(c->lock)) {
    return MPROC_EPERM;
  }
  mproc__deadline d;
  if (mproc__deadline_init(&d, timeout) != 0) {
    return MPROC_EINVAL;
  }
  return cond_wait_d(c, &d);
}

int mproc_cond_wait_for(mproc_cond *c, mproc_predicate_fn pred, void *ctx,
                        double timeout) {
  if (!cond_valid(c) || pred == NULL || timeout != timeout) {
    return MPROC_EINVAL;
  }
  if (!mproc__lock_mine(c->lock)) {
    return MPROC_EPERM;
  }
  mproc__deadline d;
  if (mproc__deadline_init(&d, timeout) != 0) {
    return MPROC_EINVAL;
  }
  int result = pred(ctx);
  while (!result) {
    if (mproc__deadline_left_ns(&d) == 0) {
      break;
    }
    int r = cond_wait_d(c, &d);
    if (r != 0 && r != MPROC_ETIMEDOUT) {
      return r;
    }
    result = pred(ctx);
  }
  return result < 0 ? 1 : result;
}

int mproc_cond_notify(mproc_cond *c, int n) {
  if (!cond_valid(c) || n < 0) {
    return MPROC_EINVAL;
  }
  if (!mproc__lock_mine(c->lock)) {
    return MPROC_EPERM;
  }
  uint32_t me = __atomic_load_n(&mproc__sync_self_token, __ATOMIC_RELAXED);
  int woken = 0;
  while (woken < n && c->head != NULL) {
    struct cond_node *w = c->head;
    unlink_node(c, w);
    uint32_t tok = w->token;
    __atomic_store_n(&w->state, NODE_SIGNALLED, __ATOMIC_RELEASE);
    MPROC__FAULT(SYNC_COND_SIGNALLED);
    if (mproc__futex_wake(&w->state, 1) == 0 && tok != me &&
        !mproc__sync_token_alive(tok)) {
      /* Its waiter died in the wait: nobody will come back for it. */
      MPROC__DEBUG("sync: cond %p: waiter pid %d died; skipped", (void *)c,
                   (int)mproc__sync_token_pid(tok));
      recycle(c, w);
      continue;
    }
    woken++;
  }
  return 0;
}

int mproc_cond_notify_all(mproc_cond *c) {
  return mproc_cond_notify(c, INT32_MAX);
}

int mproc_cond_free(mproc_cond *c) {
  if (c == NULL) {
    return 0;
  }
  if (!cond_valid(c)) {
    return MPROC_EINVAL;
  }
  /* Records still queued belong to waiters that died in their wait (a
   * live one makes the free a misuse: MPROC_EBUSY). */
  for (struct cond_node *n = c->head; n != NULL; n = n->next) {
    if (mproc__sync_token_alive(n->token)) {
      return MPROC_EBUSY;
    }
  }
  if (c->owns_lock) {
    int r = mproc_lock_free(c->lock);
    if (r != 0) {
      return r;
    }
  }
  while (c->head != NULL) {
    struct cond_node *n = c->head;
    unlink_node(c, n);
    recycle(c, n);
  }
  while (c->spare != NULL) {
    struct cond_node *n = c->spare;
    c->spare = n->next;
    mproc_shm_free(n);
  }
  __atomic_store_n(&c->magic, SYNC_DEAD_MAGIC, __ATOMIC_RELEASE);
  return mproc_shm_free(c);
}
