/*
 * src/pool/apply.c - apply and apply_async (queueing a task in the
 * shared state), and the AsyncResult calls.
 *
 * DESIGN
 *
 * A task is one arena block (struct shtask) with its argument copied
 * into the arena, queued under the shared mutex.  A thread waiting in
 * mproc_async_wait collects finished tasks itself (results.c) rather
 * than wait for the result thread; its references are described under
 * "Lifetimes" in pool-internal.h.
 */
#include "pool-internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ==================== apply ==================== */

/* Queue n tasks (under the shared lock), waking up to `wake` sleeping
 * workers. */
int mproc__pool_submit(mproc_pool *p, shtask *const *tasks, size_t n,
                       size_t wake) {
  pthread_mutex_lock(&p->mu);
  if (p->closed || p->broken || atomic_load(&p->cancel)) {
    int rc = p->broken ? MPROC_EBROKEN : MPROC_ECLOSED;
    pthread_mutex_unlock(&p->mu);
    return rc;
  }
  p->outstanding++;
  pthread_mutex_unlock(&p->mu);
  shpool *sh = p->sh;
  psh_lock(p);
  for (size_t i = 0; i < n; i++) {
    shtask *st = tasks[i];
    st->next = NULL;
    if (sh->qtail != NULL) {
      sh->qtail->next = st;
    } else {
      sh->qhead = st;
    }
    sh->qtail = st;
  }
  int sleepers = sh->sleepers;
  sh_unlock(sh);
  if (sleepers > 0) {
    seq_bump_wake(&sh->task_seq,
                  wake > (size_t)sleepers ? sleepers : (int)wake);
  }
  return 0;
}

mproc_async *mproc__pool_async_new(mproc_pool *p, int kind) {
  mproc_async *r = calloc(1, sizeof *r);
  if (r != NULL) {
    atomic_init(&r->refs, 2);
    atomic_init(&r->ready, 0);
    r->kind = kind;
    r->pool = p;
  }
  return r;
}

int mproc_pool_apply_async(mproc_pool *p, mproc_task_fn fn, void *ctx,
                           const void *arg, size_t len,
                           const mproc_apply_opts *opts, mproc_async **out) {
  if (out != NULL) {
    *out = NULL;
  }
  if (p == NULL || fn == NULL || out == NULL || (arg == NULL && len > 0)) {
    return MPROC_EINVAL;
  }
  if (p->owner != getpid()) {
    return MPROC_EFORKED;
  }
  int prc = mproc__pool_check_portable(p, (const void *)fn, ctx);
  if (prc != 0) {
    return prc;
  }
  mproc_async *r = mproc__pool_async_new(p, TK_APPLY);
  if (r == NULL) {
    return MPROC_ENOMEM;
  }
  if (opts != NULL) {
    r->cb = opts->callback;
    r->ecb = opts->error_callback;
    r->user = opts->user;
  }
  void *stp;
  int rc = mproc_shm_alloc(&stp, sizeof(shtask));
  if (rc != 0) {
    free(r);
    return rc;
  }
  shtask *st = stp;
  memset(st, 0, offsetof(shtask, msg) + 1);
  st->kind = TK_APPLY;
  st->fn = fn;
  st->ctx = ctx;
  st->len = len;
  st->owner = r;
  if (len > 0) {
    rc = mproc_shm_alloc(&st->arg, len);
    if (rc != 0) {
      mproc_shm_free(st);
      free(r);
      return rc;
    }
    memcpy(st->arg, arg, len);
  }
  rc = mproc__pool_submit(p, &st, 1, 1);
  if (rc != 0) {
    mproc_shm_free(st->arg);
    mproc_shm_free(st);
    free(r);
    return rc;
  }
  *out = r;
  return 0;
}

int mproc_pool_apply(mproc_pool *p, mproc_task_fn fn, void *ctx,
                     const void *arg, size_t len, void **result,
                     size_t *result_len) {
  if (result != NULL) {
    *result = NULL;
  }
  if (result_len != NULL) {
    *result_len = 0;
  }
  mproc_async *r;
  int rc = mproc_pool_apply_async(p, fn, ctx, arg, len, NULL, &r);
  if (rc != 0) {
    return rc;
  }
  rc = mproc_async_get(r, MPROC_FOREVER);
  if (rc == 0 && result != NULL) {
    *result = r->data;
    r->data = NULL;
    if (result_len != NULL) {
      *result_len = r->len;
    }
  }
  mproc_async_free(r);
  return rc;
}

/* ==================== AsyncResult ==================== */

int mproc_async_wait(mproc_async *r, double timeout) {
  if (r == NULL || timeout != timeout) {
    return MPROC_EINVAL;
  }
  if (atomic_load(&r->ready)) {
    return 0;
  }
  mproc_pool *p = r->pool;
  mproc__deadline d;
  if (mproc__deadline_init(&d, timeout) != 0) {
    return MPROC_EINVAL;
  }
  /* Collect results here rather than wait for the result thread to do it
   * and wake us: a worker with a result wakes this thread directly. */
  shpool *sh = p->sh;
  for (;;) {
    uint32_t seq = atomic_load(&sh->fg_seq);
    atomic_fetch_add(&sh->fg_waiters, 1);
    mproc__pool_collect_until(p, 0, &d);
    if (atomic_load(&r->ready)) {
      atomic_fetch_sub(&sh->fg_waiters, 1);
      return 0;
    }
    if (!d.forever && mproc__deadline_left_ns(&d) == 0) {
      atomic_fetch_sub(&sh->fg_waiters, 1);
      return MPROC_ETIMEDOUT;
    }
    /* Watch the done list for a moment before sleeping (a short task's
     * result arrives within microseconds; a sleep and a wake cost more). */
    if (p->nworkers > 0 && mproc__cpus_online() > 1) {
      uint64_t until = mproc__now_ns() + POOL_WAIT_SPIN_NS;
      while (__atomic_load_n(&sh->dhead, __ATOMIC_RELAXED) == NULL &&
             !atomic_load(&r->ready) && mproc__now_ns() < until) {
        for (int k = 0; k < 16; k++) {
          mproc__cpu_pause();
        }
      }
      if (__atomic_load_n(&sh->dhead, __ATOMIC_RELAXED) != NULL ||
          atomic_load(&r->ready)) {
        atomic_fetch_sub(&sh->fg_waiters, 1);
        continue;
      }
    }
    /* A slice, so that a wake lost to a dying worker costs 50 ms. */
    mproc__deadline slice;
    mproc__deadline_init(&slice, 0.05);
    if (!d.forever && d.at_ns < slice.at_ns) {
      slice = d;
    }
    mproc__futex_wait((uint32_t *)&sh->fg_seq, seq, &slice);
    atomic_fetch_sub(&sh->fg_waiters, 1);
  }
}

int mproc_async_get(mproc_async *r, double timeout) {
  int rc = mproc_async_wait(r, timeout);
  if (rc != 0) {
    return rc;
  }
  return r->err;
}

int mproc_async_ready(const mproc_async *r) {
  return r != NULL && atomic_load(&((mproc_async *)r)->ready) ? 1 : 0;
}

int mproc_async_successful(const mproc_async *r) {
  if (!mproc_async_ready(r)) {
    return MPROC_ESTATE;
  }
  return r->err == 0 ? 1 : 0;
}

const void *mproc_async_data(const mproc_async *r, size_t *len) {
  if (len != NULL) {
    *len = 0;
  }
  if (!mproc_async_ready(r) || r->err != 0) {
    return NULL;
  }
  if (len != NULL) {
    *len = r->len;
  }
  return r->data;
}

int mproc_async_error(const mproc_async *r, int *task_code, int *signal,
                      const char **message) {
  if (!mproc_async_ready(r) || r->err == 0) {
    return MPROC_ESTATE;
  }
  if (task_code != NULL) {
    *task_code = r->task_code;
  }
  if (signal != NULL) {
    *signal = r->signal;
  }
  if (message != NULL) {
    *message = r->msg != NULL ? r->msg : "";
  }
  return 0;
}

int mproc_async_free(mproc_async *r) {
  if (r != NULL) {
    mproc__pool_async_unref(r);
  }
  return 0;
}
