/*
 * src/pool/job.c - map jobs: a worker joining, claiming and finishing
 * units, leaving; a dead claimant's lost items; finishing a job.
 *
 * DESIGN
 *
 * Map jobs.  A map is one shtask (TK_JOB) that stays at the head of the
 * pending queue until every unit is claimed.  A worker that finds it
 * there names it in its slot (joining), then claims units lock-free with
 * one atomic add on next_unit, recording each claim and its progress in
 * its own slot, and marks the units done in ustate.  When a claim finds
 * nothing left, the worker leaves under the mutex: the first to leave
 * unlinks the job from the queue, and the last (no slot names the job any
 * more) links it on the done list for the result thread.
 *
 * A worker that dies leaves its slot naming the job and its claim: the
 * result thread marks the claim's items from the first undone one lost,
 * clears the slot and, if that was the last claimant of an exhausted job,
 * finishes it.  A worker killed between its atomic add and recording the
 * claim leaves a unit that is neither done nor named anywhere; once no
 * slot names the job, every unit still pending is such a unit, and is
 * marked lost when the job finishes (only a job that saw a death scans).
 */
#include "pool-internal.h"

#include <stdio.h>
#include <string.h>

/* Whether a slot other than `except` names job st (mu held). */
int mproc__pool_job_has_users(const shpool *sh, const shtask *st,
                              const shslot *except) {
  for (int i = 0; i < sh->nslots; i++) {
    if (&sh->slots[i] != except && sh->slots[i].job == st) {
      return 1;
    }
  }
  return 0;
}

/* Wake an imap iterator waiting on the job's units (if any). */
void mproc__pool_job_notify(shtask *st) {
  if (st->ish == NULL) {
    return;
  }
  atomic_fetch_add(&st->ish->seq, 1);
  if (atomic_load(&st->ish->waiting)) {
    mproc__futex_wake((uint32_t *)&st->ish->seq, INT32_MAX);
  }
}

/* Mark unit u lost from item `from` by the latest death (mu held).
 * Notes the job's first lost item and the death that lost it.  An
 * unordered iterator also finds the unit in order[], best effort: an
 * entry a killed worker left out or wrote twice is made good there. */
static void job_lose_unit(shtask *st, size_t u, size_t from) {
  if (st->ustate[u] != U_PENDING) {
    return;
  }
  /* A lost item's result record is zeros, as if its function had not
   * written it (the arena output is not cleared beforehand). */
  size_t uend = (u + 1) * st->unit < st->n ? (u + 1) * st->unit : st->n;
  if (from < uend) {
    memset(st->out + from * st->out_size, 0, (uend - from) * st->out_size);
  }
  if (st->dead_from != NULL) {
    st->dead_from[u] = from;
    st->uerr[u] = st->death_err;
  }
  if (!st->has_lost || from < st->lost_index) {
    st->has_lost = 1;
    st->lost_index = from;
    st->error = st->death_err;
    st->signal = st->death_sig;
    snprintf(st->msg, sizeof st->msg, "%s", st->death_msg);
  }
  atomic_thread_fence(memory_order_release);
  st->ustate[u] = U_LOST;
  if (st->order != NULL) {
    size_t k = atomic_fetch_add(&st->ish->norder, 1);
    __atomic_store_n(&st->order[k], u + 1, __ATOMIC_RELEASE);
  }
}

/* Finish an exhausted job nobody works in any more (mu held): mark the
 * units a dead worker claimed without recording them lost, unlink it from
 * the queue if it is still there, link it on the done list. */
void mproc__pool_job_finish_locked(shpool *sh, shtask *st) {
  if (st->deaths > 0) {
    for (size_t u = 0; u < st->nunits; u++) {
      if (st->ustate[u] == U_PENDING) {
        st->lost_claims++; /* claimed by a worker killed before it said */
        job_lose_unit(st, u, u * st->unit);
      }
    }
  }
  if (sh->qhead == st) {
    sh->qhead = st->next;
    if (sh->qhead == NULL) {
      sh->qtail = NULL;
    }
  }
  st->next = NULL;
  if (sh->dtail != NULL) {
    sh->dtail->next = st;
  } else {
    sh->dhead = st;
  }
  sh->dtail = st;
}

/*
 * A worker that named job st in slot me died (mu held): the items of its
 * claim from the first it did not finish are lost with err; a unit it
 * finished is done even if it died before saying so.  Clears the slot.
 * Returns 1 if that finished the job (linked done), else 0.
 */
int mproc__pool_job_claimant_died(shpool *sh, shslot *me, int err, int sig,
                                  const char *msg) {
  shtask *st = me->job;
  if (st == NULL) {
    return 0;
  }
  st->deaths++;
  st->death_err = err;
  st->death_sig = sig;
  snprintf(st->death_msg, sizeof st->death_msg, "%s", msg);
  st->claims += me->jclaims;
  me->jclaims = 0;
  if (me->jk > 0) {
    st->lost_claims++;
    size_t first = me->ju * st->unit;
    size_t lost = first + atomic_load(&me->jdone);
    for (size_t u = me->ju; u < me->ju + me->jk; u++) {
      size_t ustart = u * st->unit;
      size_t uend = ustart + st->unit < st->n ? ustart + st->unit : st->n;
      if (uend <= lost) {
        if (st->ustate[u] == U_PENDING) {
          atomic_thread_fence(memory_order_release);
          st->ustate[u] = U_DONE;
        }
      } else {
        job_lose_unit(st, u, ustart > lost ? ustart : lost);
      }
    }
  }
  me->jk = 0;
  me->job = NULL;
  if (atomic_load(&st->next_unit) >= st->nunits &&
      !mproc__pool_job_has_users(sh, st, NULL)) {
    mproc__pool_job_finish_locked(sh, st);
    return 1;
  }
  mproc__pool_job_notify(st);
  return 0;
}

/* Record item idx's failure code rc if it is the job's first (mu held). */
static void job_note_fail(shtask *st, size_t idx, int rc) {
  if (!st->has_fail || idx < st->fail_index) {
    st->has_fail = 1;
    st->fail_index = idx;
    st->fail_code = rc;
  }
}

/* How many units an adaptive claim takes: about POOL_ADAPT_TARGET_NS of
 * work at the measured cost per item, and never more than a share of
 * what is left that keeps every worker busy to the end (guided
 * self-scheduling). */
static size_t adapt_units(const shtask *st, double ns_per_item) {
  size_t next = atomic_load_explicit(&st->next_unit, memory_order_relaxed);
  size_t left = next < st->nunits ? st->nunits - next : 0;
  size_t cap = left / (2 * (size_t)st->nworkers);
  double want = ns_per_item > 0 ? (double)POOL_ADAPT_TARGET_NS / ns_per_item
                                : 1.0;
  size_t k = want >= (double)SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)want;
  if (k > cap) {
    k = cap;
  }
  return k < 1 ? 1 : k;
}

/* Work in job st (already named in this worker's slot) until no unit is
 * left, or `budget` claims were made (0: no limit; maxtasksperchild counts
 * each claim, as Python counts each chunk); then leave.  Returns the
 * claims made. */
long mproc__pool_worker_job(shpool *sh, shslot *me, shtask *st, long budget) {
  size_t k = 1;
  long claims = 0;
  const size_t unit = st->unit;
  const size_t n = st->n;
  /* The function and ctx as this process's (spawned workers translate
   * the owner's addresses).  Should that fail, every item this worker
   * claims fails with the reason's code instead of running. */
  void *fnp = NULL, *ctx = NULL;
  char why[POOL_MSG_MAX];
  int lr = mproc__pool_local(sh, (const void *)st->mfn, &fnp, why);
  if (lr == 0) {
    lr = mproc__pool_local(sh, st->ctx, &ctx, why);
  }
  mproc_map_fn mfn = (mproc_map_fn)fnp;
  for (;;) {
    if ((budget > 0 && claims >= budget) ||
        atomic_load_explicit(&sh->stopping, memory_order_relaxed)) {
      break;
    }
    size_t u = atomic_fetch_add_explicit(&st->next_unit, k,
                                         memory_order_relaxed);
    if (u >= st->nunits) {
      break;
    }
    MPROC__FAULT(POOL_CLAIM_ADDED);
    claims++;
    me->jclaims++;
    size_t cnt = st->nunits - u < k ? st->nunits - u : k;
    uint64_t t0 = mproc__now_ns();
    /* Record the claim before its first item (only the compiler's order
     * matters: a kill stops this thread between two instructions). */
    me->ju = u;
    atomic_store_explicit(&me->jdone, 0, memory_order_relaxed);
    me->start_ns = t0;
    atomic_signal_fence(memory_order_seq_cst);
    me->jk = cnt;
    atomic_signal_fence(memory_order_seq_cst);
    MPROC__FAULT(POOL_CLAIM_RECORDED);
    size_t first = u * unit;
    size_t last = (u + cnt) * unit < n ? (u + cnt) * unit : n;
    int failed = 0;
    for (size_t i = first; i < last; i++) {
      char *out = st->out + i * st->out_size;
      if (st->out != st->in) {
        /* In place (out == in), the record is the input: not cleared. */
        memset(out, 0, st->out_size);
      }
      int rc = lr != 0 ? lr : mfn(st->in + i * st->in_size, out, ctx);
      if (st->icodes != NULL) {
        st->icodes[i] = rc;
      }
      if (MPROC__UNLIKELY(rc != 0) && !failed) {
        failed = 1;
        mproc__pool_sh_lock(sh);
        job_note_fail(st, i, rc);
        sh_unlock(sh);
      }
      atomic_store_explicit(&me->jdone, i - first + 1, memory_order_release);
    }
    MPROC__FAULT(POOL_CLAIM_ITEMS_DONE);
    /* Results (and icodes) before the units' state. */
    atomic_thread_fence(memory_order_release);
    memset(st->ustate + u, U_DONE, cnt);
    atomic_signal_fence(memory_order_seq_cst);
    MPROC__FAULT(POOL_CLAIM_MARKED);
    me->jk = 0;
    uint64_t t1 = mproc__now_ns();
    atomic_fetch_add_explicit(&me->busy_ns, t1 - t0, memory_order_relaxed);
    if (st->ish != NULL) {
      if (st->order != NULL) {
        for (size_t j = 0; j < cnt; j++) {
          size_t o = atomic_fetch_add(&st->ish->norder, 1);
          __atomic_store_n(&st->order[o], u + j + 1, __ATOMIC_RELEASE);
        }
      }
      mproc__pool_job_notify(st);
    }
    if (st->adaptive) {
      k = adapt_units(st, (double)(t1 - t0) / (double)(last - first));
    }
  }
  /* Leave: unlink the exhausted job, finish it if this was the last
   * claimant, and only then clear the slot (see sh_repair).  A worker
   * that leaves for maxtasksperchild leaves the job queued for others. */
  mproc__pool_sh_lock(sh);
  MPROC__FAULT(POOL_JOB_LEAVING);
  if (sh->qhead == st && atomic_load(&st->next_unit) >= st->nunits) {
    sh->qhead = st->next;
    if (sh->qhead == NULL) {
      sh->qtail = NULL;
    }
  }
  /* The slot names the job until it is linked done: a kill before the
   * link leaves a claimant for the result thread, one after it a slot
   * that sh_repair clears. */
  st->claims += me->jclaims;
  me->jclaims = 0;
  int exhausted = atomic_load(&st->next_unit) >= st->nunits;
  int last = exhausted && !mproc__pool_job_has_users(sh, st, me);
  if (last) {
    mproc__pool_job_finish_locked(sh, st);
    atomic_signal_fence(memory_order_seq_cst);
    MPROC__FAULT(POOL_JOB_FINISHED);
  }
  atomic_signal_fence(memory_order_seq_cst);
  me->job = NULL;
  sh_unlock(sh);
  if (last) {
    results_wake(sh);
  }
  return claims;
}
