/*
 * src/pool/worker.c - in the worker: the worker process's main loop
 * (initializer, taking and finishing apply tasks, joining map jobs),
 * running an apply task, mproc_task_return and mproc_task_fail.
 *
 * DESIGN
 *
 * The take and finish of an apply task are the two critical sections
 * described under "apply" in pool-internal.h; their stores are ordered
 * for sh_repair (lock.c).  A map job is worked in job.c.
 *
 * Workers ignore SIGINT: a Ctrl-C ends the parent, and the workers die
 * with it (PR_SET_PDEATHSIG, set by the process module).
 */
#include "pool-internal.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ==================== in the worker ==================== */

/*
 * Unlink a task's result block, then free it (in a worker).  The task
 * record is shared: the result thread frees whatever st->res names when
 * it completes or fails the task, also after this worker's death.  So the
 * pointer is cleared first and the block freed after: a kill between the
 * two leaks that one block, and can never leave the record naming a block
 * the arena has handed to someone else (which the result thread would
 * then free a second time).  point names the window for the fault sweep.
 */
static void task_drop_result_at(shtask *st, int point) {
  void *old = st->res;
  if (old == NULL) {
    return;
  }
  st->res = NULL;
  st->res_len = 0;
  atomic_signal_fence(memory_order_seq_cst);
  if (MPROC__UNLIKELY(mproc__fault_hook != NULL)) {
    mproc__fault_hook(point, mproc__fault_ctx);
  }
  mproc_shm_free(old);
}

static void task_drop_result(shtask *st) {
  task_drop_result_at(st, MPROC__FP_POOL_RESULT_CLEARED);
}

int mproc_task_return(mproc_task *t, const void *data, size_t len) {
  if (t == NULL || t->st == NULL || (data == NULL && len > 0)) {
    return MPROC_EINVAL;
  }
  shtask *st = t->st;
  task_drop_result(st);
  if (len == 0) {
    return 0;
  }
  void *p;
  int rc = mproc_shm_alloc(&p, len);
  if (rc != 0) {
    st->error = MPROC_ENOMEM;
    return MPROC_ENOMEM;
  }
  memcpy(p, data, len);
  /* A kill before the link leaks this one block; after it, the result
   * belongs to the task and whoever completes the task frees it. */
  MPROC__FAULT(POOL_RESULT_ALLOCATED);
  st->res_len = len;
  atomic_signal_fence(memory_order_seq_cst);
  st->res = p;
  atomic_signal_fence(memory_order_seq_cst);
  MPROC__FAULT(POOL_RESULT_PUBLISHED);
  return 0;
}

int mproc_task_fail(mproc_task *t, const char *fmt, ...) {
  if (t == NULL || t->msg == NULL || fmt == NULL) {
    return MPROC_EINVAL;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->msg, POOL_MSG_MAX, fmt, ap);
  va_end(ap);
  return 0;
}

/*
 * A forked worker has its owner's addresses for everything loaded when it
 * was forked; an address in no object it has is in a library the owner
 * loaded since, published in the pool's newest table: load that here and
 * translate.  Anything else (heap memory the worker inherited) is used as
 * it is.
 */
static int fork_local(shpool *sh, const void *addr, void **out, char *msg) {
  static mproc__funcmap *m;
  static const pool_objtab *seen;
  *out = (void *)addr;
  /* The table first: without one (nothing was loaded since the pool
   * started, the usual case) this worker never walks the loaded objects.
   * That walk takes the loader's lock, which a thread of the owner may
   * have held at the fork (its own walk, in a submission): a worker that
   * inherited it held would wait for ever. */
  const pool_objtab *t = atomic_load(&sh->objtab);
  if (t == NULL || mproc__objtab_contains(addr)) {
    return 0;
  }
  if (t != seen) {
    int r = m == NULL ? mproc__funcmap_new(&m, t->bytes, t->len)
                      : mproc__funcmap_update(m, t->bytes, t->len);
    if (r != 0) {
      return 0;
    }
    seen = t;
  }
  void *local = NULL;
  int r = mproc__funcmap_resolve(m, (uint64_t)(uintptr_t)addr, &local);
  if (r == 0) {
    *out = local;
  } else if (r != MPROC_ENOFUNC) {
    if (msg != NULL) {
      snprintf(msg, POOL_MSG_MAX, "%s", mproc__funcmap_error(m));
    }
    return r;
  }
  return 0;
}

int mproc__pool_local(shpool *sh, const void *addr, void **out, char *msg) {
  static const pool_objtab *seen; /* the last table taken from sh */
  mproc__funcmap *m = mproc__parent_funcmap();
  if (addr == NULL || mproc__arena_contains(addr)) {
    *out = (void *)addr;
    return 0;
  }
  if (m == NULL) {
    return fork_local(sh, addr, out, msg);
  }
  uint64_t a = (uint64_t)(uintptr_t)addr;
  int r = mproc__funcmap_resolve(m, a, out);
  if (r == MPROC_ENOFUNC) {
    /* Maybe in a library the owner loaded after this worker started. */
    const pool_objtab *t = atomic_load(&sh->objtab);
    if (t != NULL && t != seen) {
      seen = t;
      if (mproc__funcmap_update(m, t->bytes, t->len) == 0) {
        r = mproc__funcmap_resolve(m, a, out);
      }
    }
  }
  if (r != 0 && msg != NULL) {
    snprintf(msg, POOL_MSG_MAX, "%s", mproc__funcmap_error(m));
  }
  return r;
}

/* Run one task (apply or a map chunk) and record its outcome in st. */
static void worker_run(shpool *sh, shtask *st) {
  if (st->kind == TK_APPLY) {
    mproc_task t = {st, st->msg};
    void *fn = NULL, *ctx = NULL;
    int lr = mproc__pool_local(sh, (const void *)st->fn, &fn, st->msg);
    if (lr == 0) {
      lr = mproc__pool_local(sh, st->ctx, &ctx, st->msg);
    }
    if (lr != 0) {
      st->error = lr;
      return;
    }
    int rc = ((mproc_task_fn)fn)(&t, st->arg, st->len, ctx);
    if (rc != 0) {
      st->error = MPROC_ETASK;
      st->task_code = rc;
      task_drop_result_at(st, MPROC__FP_POOL_FAIL_RESULT_CLEARED);
    } else if (st->error != 0) {
      task_drop_result_at(st, MPROC__FP_POOL_FAIL_RESULT_CLEARED);
    }
  }
}

/* The worker process: run the initializer, then tasks until the pool is
 * closed and empty, or maxtasksperchild tasks ran. */
int mproc__pool_worker_main(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  pool_wargs wa;
  if (len < sizeof wa) {
    return 2;
  }
  memcpy(&wa, arg, sizeof wa);
  const void *initarg = (const char *)arg + sizeof wa;
  shpool *sh = wa.sh;
  shslot *me = &sh->slots[wa.slot];
  /* Ctrl-C is the parent's to handle (it tears the pool down), also while
   * the initializer runs. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGINT, &sa, NULL);
  /* A process group of its own: when this worker ends (or is killed),
   * the parent kills the group, so processes its tasks started end too
   * (pool.h, "Descendants"). */
  (void)mproc__pgrp_new();
  /* A segfault (or bus error, FPE, illegal instruction) leaves its
   * faulting address for the death message. */
  (void)mproc__crash_note_install(&me->crash_sig, &me->crash_addr);
  if (wa.initializer != NULL) {
    mproc_task t = {NULL, me->initmsg};
    me->initmsg[0] = '\0';
    void *init = NULL, *ictx = NULL;
    int rc = mproc__pool_local(sh, (const void *)wa.initializer, &init,
                               me->initmsg);
    if (rc == 0) {
      rc = mproc__pool_local(sh, wa.initctx, &ictx, me->initmsg);
    }
    if (rc == 0) {
      rc = ((mproc_task_fn)init)(&t, wa.initarg_len > 0 ? initarg : NULL,
                                 wa.initarg_len, ictx);
    }
    if (rc != 0) {
      atomic_store(&me->state, SLOT_INITFAIL);
      seq_bump_wake(&sh->res_seq, 1);
      return 1;
    }
  }
  atomic_store(&me->state, SLOT_READY);
  seq_bump_wake(&sh->res_seq, 1);
  long ran = 0;
  int may_spin = mproc__cpus_online() > 1;
  for (;;) {
    mproc__pool_sh_lock(sh);
    int spun = 0;
    if (atomic_load(&sh->stopping)) {
      sh_unlock(sh);
      return 0;
    }
    while (sh->qhead == NULL && !sh->closed && !atomic_load(&sh->stopping)) {
      if (may_spin && !spun && atomic_exchange(&sh->spinning, 1) == 0) {
        /* One idle worker at a time watches the queue for a while before
         * it sleeps: the next task then costs its submitter no wake and
         * this worker no wake-up latency (a round trip of apply is mostly
         * those).  Only one, so idle workers do not crowd the CPUs. */
        spun = 1;
        sh_unlock(sh);
        uint64_t until = mproc__now_ns() + POOL_SPIN_NS;
        while (__atomic_load_n(&sh->qhead, __ATOMIC_RELAXED) == NULL &&
               !__atomic_load_n(&sh->closed, __ATOMIC_RELAXED) &&
               mproc__now_ns() < until) {
          for (int k = 0; k < 16; k++) {
            mproc__cpu_pause();
          }
        }
        atomic_store(&sh->spinning, 0);
        mproc__pool_sh_lock(sh);
        continue;
      }
      uint32_t seq = atomic_load(&sh->task_seq);
      sh->sleepers++;
      sh_unlock(sh);
      mproc__futex_wait((uint32_t *)&sh->task_seq, seq, NULL);
      mproc__pool_sh_lock(sh);
      sh->sleepers--;
    }
    shtask *st = sh->qhead;
    if (st == NULL || atomic_load(&sh->stopping)) {
      sh_unlock(sh);
      return 0;
    }
    if (st->kind == TK_JOB) {
      /* Join: one store, so a kill leaves either nothing or a claimant
       * the result thread sees. */
      me->job = st;
      MPROC__FAULT(POOL_JOB_JOINED);
      sh_unlock(sh);
      long max = wa.maxtasksperchild;
      ran += mproc__pool_worker_job(sh, me, st, max > 0 ? max - ran : 0);
      if (max > 0 && ran >= max) {
        return 0;
      }
      continue;
    }
    /* The order matters for sh_repair: name the task, then unlink it. */
    uint64_t t0 = mproc__now_ns();
    me->start_ns = t0;
    me->task = st;
    /* A kill stops this thread between two instructions, so only the
     * compiler's order matters here. */
    atomic_signal_fence(memory_order_seq_cst);
    MPROC__FAULT(POOL_TASK_NAMED);
    sh->qhead = st->next;
    if (sh->qhead == NULL) {
      sh->qtail = NULL;
    }
    sh_unlock(sh);
    MPROC__FAULT(POOL_TASK_TAKEN);

    worker_run(sh, st);

    /* Link the task on the done list, then clear the slot (sh_repair). */
    st->next = NULL;
    mproc__pool_sh_lock(sh);
    if (sh->dtail != NULL) {
      sh->dtail->next = st;
    } else {
      sh->dhead = st;
    }
    sh->dtail = st;
    atomic_signal_fence(memory_order_seq_cst);
    MPROC__FAULT(POOL_TASK_LINKED_DONE);
    me->task = NULL;
    atomic_signal_fence(memory_order_seq_cst);
    MPROC__FAULT(POOL_SLOT_CLEARED);
    sh_unlock(sh);
    atomic_fetch_add(&me->busy_ns, mproc__now_ns() - t0);
    /* A kill here loses only the wake: the result thread looks at the
     * done list at least every POOL_POLL_NS. */
    MPROC__FAULT(POOL_RESULT_UNWOKEN);
    results_wake(sh);
    ran++;
    if (wa.maxtasksperchild > 0 && ran >= wa.maxtasksperchild) {
      return 0;
    }
  }
}
