/*
 * src/pool/lock.c - the pool's shared mutex: a robust process-shared
 * mutex in struct shpool.
 *
 * DESIGN
 *
 * Workers take it without a bound (mproc__pool_sh_lock); a worker
 * killed holding it leaves it to the next locker with EOWNERDEAD, which
 * repairs the lists from what the dead holder's ordered stores left
 * (sh_repair) before it goes on.  The parent takes it with a bound
 * (mproc__pool_psh_lock_until) and kills a worker stuck holding it
 * (mproc__pool_unstick, also called for the arena's allocator lock).
 * The one-line unlock and wake helpers are in pool-internal.h.
 */
#include "pool-internal.h"

#include <errno.h>
#include <signal.h>

/* ==================== shared mutex ==================== */

/*
 * Repair the shared lists after a worker died holding the lock (the lock
 * is held).  The worker's two critical sections are written so that every
 * prefix of them can be recognised:
 *   - take: slot.task = qhead first, then qhead moves on.  A slot naming
 *     the queue's head is a take that did not finish (a finished take has
 *     moved qhead past its task, and a task is never queued twice): the
 *     slot is cleared and the task stays queued.
 *   - finish: the task is linked after the done list's tail, dtail moved,
 *     and only then the slot cleared.  A slot naming a task that is on
 *     the done list is a finish that did not clear it: cleared.
 * Only the dead holder can be inside either, so every live worker's slot
 * is left alone.  The tails are recomputed by walking the lists.
 */
static void sh_repair(shpool *sh) {
  shtask *last = NULL;
  for (shtask *t = sh->qhead; t != NULL; t = t->next) {
    last = t;
  }
  sh->qtail = last;
  last = NULL;
  for (shtask *t = sh->dhead; t != NULL; t = t->next) {
    last = t;
  }
  sh->dtail = last;
  for (int i = 0; i < sh->nslots; i++) {
    /* A job's last claimant links it done before it clears its slot. */
    shtask *job = sh->slots[i].job;
    for (shtask *t = sh->dhead; job != NULL && t != NULL; t = t->next) {
      if (t == job) {
        sh->slots[i].job = NULL;
        sh->slots[i].jk = 0;
        break;
      }
    }
    shtask *st = sh->slots[i].task;
    if (st == NULL) {
      continue;
    }
    if (st == sh->qhead) {
      sh->slots[i].task = NULL;
      continue;
    }
    for (shtask *t = sh->dhead; t != NULL; t = t->next) {
      if (t == st) {
        sh->slots[i].task = NULL;
        break;
      }
    }
  }
}

/*
 * Lock the shared mutex, repairing the lists if a worker died holding it.
 * The wait is cut in 20 ms slices: an unlock wakes one waiter, and when
 * that waiter is being killed at that moment the wake dies with it while
 * the lock word says free (seen under the SIGKILL storm test).  Retrying
 * turns that lost wake into a delay of at most one slice.
 */
static void sh_locked(shpool *sh, int rc);

void mproc__pool_sh_lock(shpool *sh) {
  int rc;
  do {
    mproc__deadline d;
    mproc__deadline_init(&d, 0.02);
    rc = mproc__rmutex_lock(&sh->mu, &d);
  } while (rc == -ETIMEDOUT);
  sh_locked(sh, rc);
  MPROC__FAULT(POOL_LOCK_HELD);
}

/* The lock was taken with rc: repair after a dead holder. */
static void sh_locked(shpool *sh, int rc) {
  if (rc != 0 && rc != -EOWNERDEAD) {
    MPROC__WARN("pool: the pool lock failed: %d", rc);
  }
  if (rc == -EOWNERDEAD) {
    MPROC__WARN("pool: a worker died holding the pool lock");
    sh_repair(sh);
    mproc__rmutex_consistent(&sh->mu);
  }
}

void mproc__pool_unstick(mproc_pool *p, pid_t holder, const char *what) {
  if (holder <= 0) {
    return;
  }
  for (int i = 0; i < p->nworkers; i++) {
    if (atomic_load(&p->wpid[i]) == holder) {
      if (atomic_exchange(&p->wstuck[i], 1) == 0) {
        MPROC__WARN("pool: worker %d held %s for over %.1f s: killed",
                    (int)holder, what, (double)POOL_STUCK_NS / 1e9);
      }
      (void)mproc__kill(holder, SIGKILL);
    }
  }
}

/*
 * The parent's lock of the shared state: a holder stuck past
 * POOL_STUCK_NS is killed (above).  d: the caller's deadline (NULL:
 * none).  Returns 0 (locked), or MPROC_ETIMEDOUT once d passed.
 */
int mproc__pool_psh_lock_until(mproc_pool *p, const mproc__deadline *d) {
  shpool *sh = p->sh;
  uint64_t t0 = mproc__now_ns();
  int rc;
  for (;;) {
    mproc__deadline slice;
    mproc__deadline_init(&slice, 0.02);
    if (d != NULL && !d->forever && d->at_ns < slice.at_ns) {
      slice = *d;
    }
    rc = mproc__rmutex_lock(&sh->mu, &slice);
    if (rc != -ETIMEDOUT) {
      break;
    }
    if (d != NULL && !d->forever && mproc__deadline_left_ns(d) == 0) {
      return MPROC_ETIMEDOUT;
    }
    if (mproc__now_ns() - t0 >= POOL_STUCK_NS) {
      mproc__pool_unstick(p, mproc__rmutex_holder(&sh->mu), "the pool lock");
    }
  }
  sh_locked(sh, rc);
  return 0;
}
