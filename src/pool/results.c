/*
 * src/pool/results.c - the parent: starting and reaping workers,
 * completing tasks (results out of the arena into AsyncResults), and
 * the result thread (worker deaths, task_timeout, replacement, stop).
 *
 * DESIGN
 *
 * The parent.  One result thread per pool (rt_main) loops: it takes the
 * done list, completes each task (copies the result out of the arena into
 * the parent-side mproc_async, frees the arena blocks, wakes waiters on the
 * pool's condvar, runs the callback), and at least every 10 ms checks
 * each worker's liveness (through its pidfd) and each running task's age.
 * A dead worker's task fails with MPROC_EWORKERDIED (MPROC_ETIMEDOUT when
 * the result thread stopped it for task_timeout: SIGTERM, then SIGKILL
 * after timeout_grace) and a new worker is started in that slot, or, with
 * on_death = MPROC_POOL_BREAK, the pool breaks.  A replacement whose
 * initializer fails is retried with a doubling backoff and given up after
 * POOL_RESPAWN_CAP failures; a pool left with no worker is broken
 * (MPROC_EBROKEN), never stranded.
 */
#include "pool-internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==================== the parent: workers ==================== */

/* Start a worker in slot i.  Returns 0 or an mproc error. */
int mproc__pool_worker_start(mproc_pool *p, int i) {
  size_t alen = sizeof(pool_wargs) + p->opts.initarg_len;
  char stackarg[sizeof(pool_wargs) + 256];
  char *arg = alen <= sizeof stackarg ? stackarg : malloc(alen);
  if (arg == NULL) {
    return MPROC_ENOMEM;
  }
  pool_wargs wa = {.sh = p->sh,
                   .slot = i,
                   .maxtasksperchild = p->opts.maxtasksperchild,
                   .initializer = p->opts.initializer,
                   .initctx = p->opts.initctx,
                   .initarg_len = p->opts.initarg_len};
  memcpy(arg, &wa, sizeof wa);
  if (p->opts.initarg_len > 0) {
    memcpy(arg + sizeof wa, p->initarg, p->opts.initarg_len);
  }
  shslot *s = &p->sh->slots[i];
  s->task = NULL;
  atomic_store(&s->crash_sig, 0);
  atomic_store(&s->crash_addr, 0);
  atomic_store(&s->state, SLOT_STARTING);
  char name[48];
  snprintf(name, sizeof name, "PoolWorker-%d", i + 1);
  mproc_process_opts po = {name, 1, p->opts.context};
  mproc_process *proc;
  int rc = mproc_process_new(&proc, mproc__pool_worker_main, NULL, arg,
                             alen, &po);
  if (arg != stackarg) {
    free(arg);
  }
  if (rc != 0) {
    return rc;
  }
  rc = mproc_process_start(proc);
  if (rc != 0) {
    mproc_process_free(proc);
    return rc;
  }
  p->w[i].proc = proc;
  p->w[i].timed_out = 0;
  p->w[i].gone = 0;
  atomic_store(&p->wstuck[i], 0);
  atomic_store(&p->wpid[i], mproc_process_pid(proc));
  return 0;
}

/*
 * Join and free slot i's process (ended, or killed by the caller); its
 * exit code in *code.  Then SIGKILL its process group: whatever its tasks
 * started (and left in the group) ends with it.  The group's number
 * cannot be handed to a new process while any process of the group is
 * left, so the kill finds the worker's own descendants or nobody.
 */
void mproc__pool_worker_reap(mproc_pool *p, int i, int *code) {
  *code = 0;
  if (p->w[i].proc == NULL) {
    return;
  }
  pid_t pid = mproc_process_pid(p->w[i].proc);
  mproc_process_join(p->w[i].proc, MPROC_FOREVER);
  mproc_process_exitcode(p->w[i].proc, code);
  mproc_process_free(p->w[i].proc);
  p->w[i].proc = NULL;
  atomic_store(&p->wpid[i], 0);
  if (pid > 0) {
    (void)mproc__pgrp_kill(pid, SIGKILL);
  }
}

/* ==================== the parent: completing tasks ==================== */

void mproc__pool_async_unref(mproc_async *r) {
  if (atomic_fetch_sub(&r->refs, 1) == 1) {
    free(r->msg);
    free(r->data);
    free(r);
  }
}

/* Mark r ready, wake its waiters and run its callback (result thread, or
 * the submitting thread for a map of nothing), then drop the pool's ref. */
void mproc__pool_async_finish(mproc_pool *p, mproc_async *r) {
  pthread_mutex_lock(&p->mu);
  atomic_store(&r->ready, 1);
  p->outstanding--;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  /* Threads in mproc_async_wait sleep on fg_seq. */
  shpool *sh = p->sh;
  atomic_fetch_add(&sh->fg_seq, 1);
  if (atomic_load(&sh->fg_waiters) > 0) {
    mproc__futex_wake((uint32_t *)&sh->fg_seq, INT32_MAX);
  }
  mproc_async_cb cb = r->err == 0 ? r->cb : r->ecb;
  if (cb != NULL) {
    cb(r, r->user);
  }
  mproc__pool_async_unref(r);
}

void mproc__pool_shm_free(mproc_pool *p, void *ptr,
                          const mproc__deadline *d) {
  if (ptr == NULL) {
    return;
  }
  if (d == NULL || d->forever) {
    mproc_shm_free(ptr);
    return;
  }
  if (mproc__shm_free_until(ptr, d) != MPROC_ETIMEDOUT) {
    return;
  }
  pthread_mutex_lock(&p->mu);
  int first = p->deferred == NULL;
  memcpy(ptr, &p->deferred, sizeof p->deferred);
  p->deferred = ptr;
  pthread_mutex_unlock(&p->mu);
  if (first) {
    seq_bump_wake(&p->sh->res_seq, 1);
  }
}

void mproc__pool_free_deferred(mproc_pool *p) {
  pthread_mutex_lock(&p->mu);
  void *b = p->deferred;
  p->deferred = NULL;
  pthread_mutex_unlock(&p->mu);
  while (b != NULL) {
    void *next;
    memcpy(&next, b, sizeof next);
    mproc_shm_free(b);
    b = next;
  }
}

/* Free an imap's arrays (the last of the iterator and the result
 * thread to be done with them); d as for mproc__pool_shm_free (a waiting
 * thread's deadline; NULL where r->pool may be gone). */
void mproc__pool_imap_release_arrays(mproc_async *r,
                                     const mproc__deadline *d) {
  mproc_pool *p = r->pool;
  if (!r->out_in_place) {
    mproc__pool_shm_free(p, r->aout, d);
  }
  /* mproc_pool_map draws its bar from the unit states while the map
   * runs (r->progress): it frees them itself once the map is over, so the
   * pointer it reads stays valid however early the map completes. */
  if (!r->progress || r->is_imap) {
    mproc__pool_shm_free(p, r->ustate, d);
    r->ustate = NULL;
  }
  mproc__pool_shm_free(p, r->icodes, d);
  mproc__pool_shm_free(p, r->dead_from, d);
  mproc__pool_shm_free(p, r->uerr, d);
  mproc__pool_shm_free(p, r->order, d);
  mproc__pool_shm_free(p, r->ish, d);
  if (r->in_owned) {
    mproc__pool_shm_free(p, r->ain, d);
  }
  r->aout = NULL;
  r->icodes = NULL;
  r->dead_from = NULL;
  r->uerr = NULL;
  r->order = NULL;
  r->ish = NULL;
  r->ain = NULL;
}

/* Complete one done task: copy its outcome into its owner, free it.
 * d: the deadline of the waiting thread completing it (NULL: the result
 * thread); a free that would outlast it is left to the result thread. */
static void task_complete(mproc_pool *p, shtask *st,
                          const mproc__deadline *d) {
  mproc_async *r = st->owner;
  if (st->kind == TK_APPLY) {
    pthread_mutex_lock(&p->mu);
    p->stats.tasks_done++;
    p->stats.tasks_failed += st->error != 0;
    pthread_mutex_unlock(&p->mu);
    r->err = st->error;
    r->task_code = st->task_code;
    r->signal = st->signal;
    if (st->error != 0) {
      r->msg = strdup(st->msg);
    } else if (st->res_len > 0) {
      r->data = malloc(st->res_len);
      if (r->data == NULL) {
        r->err = MPROC_ENOMEM;
      } else {
        memcpy(r->data, st->res, st->res_len);
        r->len = st->res_len;
      }
    }
    mproc__pool_shm_free(p, st->res, d);
    mproc__pool_shm_free(p, st->arg, d);
    mproc__pool_shm_free(p, st, d);
    mproc__pool_async_finish(p, r);
    return;
  }
  /* A map job: its first failure (an item's own, or the first item a
   * death lost), then the results out of the arena. */
  /* A map counts its claims (the chunks workers took) as tasks; failed
   * ones are those a death cut short, and one for any failing items. */
  pthread_mutex_lock(&p->mu);
  p->stats.tasks_done += st->claims;
  p->stats.tasks_failed += st->lost_claims + (st->has_fail ? 1 : 0);
  pthread_mutex_unlock(&p->mu);
  if (st->has_fail || st->has_lost) {
    r->has_merr = 1;
    if (st->has_fail && (!st->has_lost || st->fail_index < st->lost_index)) {
      r->merr.index = st->fail_index;
      r->merr.task_code = st->fail_code;
      r->merr.error = MPROC_ETASK;
    } else {
      r->merr.index = st->lost_index;
      r->merr.task_code = 0;
      r->merr.error = st->error;
      r->signal = st->signal;
      free(r->msg);
      r->msg = strdup(st->msg);
    }
    r->err = r->merr.error;
    r->task_code = r->merr.task_code;
  }
  if (st->ish != NULL) {
    atomic_store(&st->ish->finished, 1);
  }
  mproc__pool_job_notify(st);
  mproc__pool_shm_free(p, st, d);
  if (r->is_imap) {
    /* The iterator reads the arena arrays; whoever is last frees them. */
    pthread_mutex_lock(&p->mu);
    int abandoned = r->abandoned;
    r->all_done = 1;
    pthread_mutex_unlock(&p->mu);
    if (abandoned) {
      mproc__pool_imap_release_arrays(r, d);
    }
    mproc__pool_async_finish(p, r);
    return;
  }
  if (r->n * r->out_size > 0 && !r->out_in_place) {
    memcpy(r->out, r->aout, r->n * r->out_size);
  }
  mproc__pool_imap_release_arrays(r, d);
  mproc__pool_async_finish(p, r);
}

/* Fail st (a task a dead or cancelled worker held) with err. */
static void task_fail(mproc_pool *p, shtask *st, int err, int sig,
                      const char *msg) {
  st->error = err;
  st->signal = sig;
  st->has_fail = 0;
  snprintf(st->msg, sizeof st->msg, "%s", msg);
  if (st->res != NULL) {
    mproc_shm_free(st->res);
    st->res = NULL;
    st->res_len = 0;
  }
  task_complete(p, st, NULL);
}

/* ==================== the result thread ==================== */

/*
 * Take the done list and complete its tasks.  Returns how many.  On the
 * result thread (on_rt) every task; in a thread waiting for a result,
 * only those without callbacks (callbacks run on the result thread, as
 * the header promises): the others go to p->handoff and the result
 * thread is woken for them.
 */
int mproc__pool_collect_until(mproc_pool *p, int on_rt,
                              const mproc__deadline *d) {
  shpool *sh = p->sh;
  shtask *st = NULL;
  if (on_rt) {
    mproc__pool_free_deferred(p);
    pthread_mutex_lock(&p->mu);
    st = p->handoff;
    p->handoff = NULL;
    pthread_mutex_unlock(&p->mu);
  }
  int n = 0;
  while (st != NULL) {
    shtask *next = st->next;
    task_complete(p, st, NULL);
    st = next;
    n++;
  }
  if (mproc__pool_psh_lock_until(p, d) != 0) {
    return n;
  }
  st = sh->dhead;
  sh->dhead = sh->dtail = NULL;
  sh_unlock(sh);
  /* A waiting thread frees the blocks of what it completes only while
   * the arena's lock comes within POOL_WAITER_FREE_S (and its caller's
   * deadline); the rest go to the result thread. */
  mproc__deadline fd;
  if (!on_rt) {
    mproc__deadline_init(&fd, POOL_WAITER_FREE_S);
    if (d != NULL && !d->forever && d->at_ns < fd.at_ns) {
      fd = *d;
    }
  }
  int handed = 0;
  while (st != NULL) {
    shtask *next = st->next;
    mproc_async *r = st->owner;
    if (!on_rt && (r->cb != NULL || r->ecb != NULL)) {
      pthread_mutex_lock(&p->mu);
      st->next = p->handoff;
      p->handoff = st;
      pthread_mutex_unlock(&p->mu);
      handed = 1;
    } else {
      task_complete(p, st, on_rt ? NULL : &fd);
    }
    st = next;
    n++;
  }
  if (handed) {
    seq_bump_wake(&sh->res_seq, 1);
  }
  return n;
}

static int rt_collect(mproc_pool *p) {
  return mproc__pool_collect_until(p, 1, NULL);
}

/* Whether an ended worker should be replaced. */
static int rt_should_replace(mproc_pool *p, int i) {
  (void)i;
  if (atomic_load(&p->exiting)) {
    return 0;
  }
  pthread_mutex_lock(&p->mu);
  int term = p->terminating;
  int closed = p->closed;
  pthread_mutex_unlock(&p->mu);
  if (term) {
    return 0;
  }
  if (!closed) {
    return 1;
  }
  psh_lock(p);
  int pending = p->sh->qhead != NULL;
  sh_unlock(p->sh);
  return pending;
}

/* Check every worker: fail the task of a dead one and replace it; kill a
 * worker whose task is past task_timeout.  Returns the live workers. */
static int rt_check_workers(mproc_pool *p) {
  shpool *sh = p->sh;
  uint64_t now = mproc__now_ns();
  /* Above ~292 years the nanosecond count overflows: that is no limit. */
  uint64_t limit = p->opts.task_timeout > 0 && p->opts.task_timeout < 9.0e9
                       ? (uint64_t)(p->opts.task_timeout * 1e9)
                       : 0;
  uint64_t grace = p->opts.timeout_grace < 9.0e9
                       ? (uint64_t)(p->opts.timeout_grace * 1e9)
                       : UINT64_MAX / 2;
  int live = 0;
  for (int i = 0; i < p->nworkers; i++) {
    pool_worker *w = &p->w[i];
    if (w->proc == NULL) {
      if (!w->gone && w->respawn_at != 0 && now >= w->respawn_at) {
        w->respawn_at = 0;
        if (rt_should_replace(p, i) && mproc__pool_worker_start(p, i) == 0) {
          live++;
        } else {
          w->gone = 1;
        }
      } else if (!w->gone && w->respawn_at != 0) {
        live++; /* waiting to start again counts: work is not stranded */
      }
      continue;
    }
    if (mproc_process_is_alive(w->proc) == 1) {
      live++;
      if (atomic_load(&sh->slots[i].state) == SLOT_READY) {
        w->initfails = 0;
      }
      if (limit > 0 && !w->timed_out) {
        psh_lock(p);
        uint64_t t0 = sh->slots[i].start_ns;
        int busy = sh->slots[i].task != NULL || sh->slots[i].jk > 0;
        int over = busy && t0 < now && now - t0 > limit;
        sh_unlock(sh);
        if (over) {
          /* SIGTERM first, so a task with a handler can clean up; SIGKILL
           * after the grace period (below). */
          w->timed_out = 1;
          w->term_ns = now;
          mproc_process_terminate(w->proc);
        }
      } else if (w->timed_out && now - w->term_ns > grace) {
        mproc_process_kill(w->proc);
      }
      continue;
    }
    /* Ended: its slot names the task it died in, or the map job and the
     * claim it worked on, if any. */
    int code;
    pid_t pid = mproc_process_pid(w->proc);
    int timed_out = w->timed_out;
    mproc__pool_worker_reap(p, i, &code);
    char msg[128];
    int sig = code < 0 ? -code : 0;
    if (atomic_load(&p->wstuck[i]) && sig == SIGKILL) {
      snprintf(msg, sizeof msg,
               "worker %d killed by SIGKILL: it held a shared lock for "
               "over %.1f s (stopped?)",
               (int)pid, (double)POOL_STUCK_NS / 1e9);
    } else if (timed_out) {
      snprintf(msg, sizeof msg, "worker %d killed after task_timeout",
               (int)pid);
    } else if (sig != 0 && atomic_load(&sh->slots[i].crash_sig) == sig) {
      /* Its crash note: where it faulted. */
      snprintf(msg, sizeof msg, "worker %d killed by SIG%s at address 0x%lx",
               (int)pid, sigabbrev_np(sig) ? sigabbrev_np(sig) : "?",
               (unsigned long)atomic_load(&sh->slots[i].crash_addr));
    } else if (sig != 0) {
      /* sigabbrev_np gives "KILL"; say "SIGKILL". */
      snprintf(msg, sizeof msg, "worker %d killed by SIG%s", (int)pid,
               sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
    } else {
      snprintf(msg, sizeof msg, "worker %d exited with status %d", (int)pid,
               code);
    }
    int err = timed_out ? MPROC_ETIMEDOUT : MPROC_EWORKERDIED;
    psh_lock(p);
    shtask *st = sh->slots[i].task;
    sh->slots[i].task = NULL;
    int in_job = sh->slots[i].job != NULL && sh->slots[i].jk > 0;
    mproc__pool_job_claimant_died(sh, &sh->slots[i], err, sig, msg);
    sh_unlock(sh);
    /* Its last result (or the job it finished) may be on the done list. */
    rt_collect(p);
    if (st != NULL || in_job) {
      pthread_mutex_lock(&p->mu);
      p->stats.workers_died++;
      pthread_mutex_unlock(&p->mu);
    }
    if (st != NULL) {
      task_fail(p, st, err, sig, msg);
    }
    /* A wake sent to this worker as it died is lost to the others: wake
     * every sleeping worker, they look at the queue again. */
    seq_bump_wake(&sh->task_seq, INT32_MAX);
    if (p->opts.on_death == MPROC_POOL_BREAK && !timed_out &&
        (st != NULL || in_job)) {
      pthread_mutex_lock(&p->mu);
      p->broken = 1;
      pthread_mutex_unlock(&p->mu);
      w->gone = 1;
      continue;
    }
    if (atomic_load(&sh->slots[i].state) == SLOT_INITFAIL) {
      /* A replacement whose initializer failed: try again later, less
       * and less often, and give the slot up after POOL_RESPAWN_CAP
       * failures in a row (never a respawn loop). */
      if (++w->initfails >= POOL_RESPAWN_CAP) {
        MPROC__WARN("pool: worker %d's initializer failed %d times: %s", i,
                    w->initfails, sh->slots[i].initmsg);
        w->gone = 1;
      } else {
        uint64_t wait = POOL_RESPAWN_FIRST_NS << (w->initfails - 1);
        w->respawn_at = now + (wait < POOL_RESPAWN_MAX_NS ? wait
                                                          : POOL_RESPAWN_MAX_NS);
        live++;
      }
      continue;
    }
    if (rt_should_replace(p, i)) {
      /* Counted before the start: the new worker may finish a task, and
       * its caller read the statistics, before mproc__pool_worker_start
       * returns. */
      pthread_mutex_lock(&p->mu);
      p->stats.workers_replaced++;
      pthread_mutex_unlock(&p->mu);
      if (mproc__pool_worker_start(p, i) == 0) {
        live++;
      } else {
        MPROC__WARN("pool: could not replace worker %d", i);
        pthread_mutex_lock(&p->mu);
        p->stats.workers_replaced--;
        pthread_mutex_unlock(&p->mu);
        w->gone = 1;
      }
    } else {
      w->gone = 1;
    }
  }
  return live;
}

/* Stop job st handing out units; when it finishes, every unit nobody took
 * fails with err (mu held).  Used when the pool stops (no worker left in
 * the job) and by cancel_pending (claims in flight still finish). */
static void job_cancel_locked(shtask *st, int err, const char *msg) {
  st->deaths++; /* so that finishing scans the units */
  st->death_err = err;
  st->death_sig = 0;
  snprintf(st->death_msg, sizeof st->death_msg, "%s", msg);
  atomic_store(&st->next_unit, st->nunits);
}

/* Stop: SIGTERM every worker, a grace period, SIGKILL; reap them all;
 * fail everything outstanding with err (MPROC_ECANCELED for terminate
 * and cancel, MPROC_EBROKEN for a broken pool). */
static void rt_stop(mproc_pool *p, int err, const char *msg) {
  shpool *sh = p->sh;
  /* No worker takes new work during the grace period. */
  atomic_store(&sh->stopping, 1);
  seq_bump_wake(&sh->task_seq, INT32_MAX);
  for (int i = 0; i < p->nworkers; i++) {
    if (p->w[i].proc != NULL) {
      mproc_process_terminate(p->w[i].proc);
    }
  }
  uint64_t until = mproc__now_ns() + POOL_TERM_GRACE_NS;
  for (int i = 0; i < p->nworkers; i++) {
    p->w[i].gone = 1;
    p->w[i].respawn_at = 0;
    if (p->w[i].proc == NULL) {
      continue;
    }
    uint64_t now = mproc__now_ns();
    double left = now < until ? (double)(until - now) / 1e9 : 0;
    if (mproc_process_join(p->w[i].proc, left) != 0) {
      mproc_process_kill(p->w[i].proc);
    }
    int code;
    mproc__pool_worker_reap(p, i, &code);
  }
  rt_collect(p);
  /* Every worker is gone: take what they held and what is queued.  A
   * job may be both queued and named in slots. */
  psh_lock(p);
  shtask *fail = NULL; /* apply tasks to fail, linked through next */
  for (int i = 0; i < sh->nslots; i++) {
    shslot *sl = &sh->slots[i];
    shtask *st = sl->task;
    sl->task = NULL;
    if (st != NULL) {
      st->next = fail;
      fail = st;
    }
    /* The last claimant of an exhausted job finishes it here; a job
     * with units left is still queued and finished below. */
    mproc__pool_job_claimant_died(sh, sl, err, 0, msg);
  }
  shtask *q = sh->qhead;
  sh->qhead = sh->qtail = NULL;
  while (q != NULL) {
    shtask *next = q->next;
    if (q->kind == TK_JOB) {
      job_cancel_locked(q, err, msg);
      mproc__pool_job_finish_locked(sh, q);
    } else {
      q->next = fail;
      fail = q;
    }
    q = next;
  }
  sh_unlock(sh);
  rt_collect(p);
  while (fail != NULL) {
    shtask *next = fail->next;
    task_fail(p, fail, err, 0, msg);
    fail = next;
  }
}

/* Fail every task not started yet with MPROC_ECANCELED, and stop every
 * map from handing out more units; running tasks and claims finish.  The
 * pool stays open. */
static void rt_cancel_pending(mproc_pool *p) {
  static const char msg[] = "cancelled before it started";
  shpool *sh = p->sh;
  psh_lock(p);
  shtask *q = sh->qhead;
  sh->qhead = sh->qtail = NULL;
  shtask *fail = NULL;
  while (q != NULL) {
    shtask *next = q->next;
    q->next = NULL;
    if (q->kind == TK_JOB) {
      job_cancel_locked(q, MPROC_ECANCELED, msg);
      if (mproc__pool_job_has_users(sh, q, NULL)) {
        /* Back in the queue; its last claimant unlinks and finishes it. */
        if (sh->qtail != NULL) {
          sh->qtail->next = q;
        } else {
          sh->qhead = q;
        }
        sh->qtail = q;
      } else {
        mproc__pool_job_finish_locked(sh, q);
      }
    } else {
      q->next = fail;
      fail = q;
    }
    q = next;
  }
  sh_unlock(sh);
  rt_collect(p);
  while (fail != NULL) {
    shtask *next = fail->next;
    task_fail(p, fail, MPROC_ECANCELED, 0, msg);
    fail = next;
  }
}

/*
 * A closed pool with nothing outstanding: every worker is leaving.  Wait
 * for their exits themselves (their pidfds) rather than for the next
 * liveness check, so that join returns as soon as the last worker is gone
 * (a join otherwise waited up to POOL_POLL_NS for nothing).  Each wait is
 * bounded by POOL_POLL_NS, so the loop's checks still run.  Returns 1 if
 * it waited.
 */
static int rt_await_exits(mproc_pool *p) {
  pthread_mutex_lock(&p->mu);
  size_t left = p->outstanding;
  pthread_mutex_unlock(&p->mu);
  if (left != 0) {
    return 0;
  }
  int waited = 0;
  for (int i = 0; i < p->nworkers; i++) {
    if (p->w[i].proc != NULL && mproc_process_is_alive(p->w[i].proc) == 1) {
      (void)mproc_process_join(p->w[i].proc, (double)POOL_POLL_NS / 1e9);
      waited = 1;
    }
  }
  return waited;
}

void *mproc__pool_rt_main(void *arg) {
  mproc_pool *p = arg;
  shpool *sh = p->sh;
  uint64_t last_check = 0;
  for (;;) {
    uint32_t seq = atomic_load(&sh->res_seq);
    int got = rt_collect(p);
    if (atomic_exchange(&p->cancel_pending, 0)) {
      rt_cancel_pending(p);
    }
    if (atomic_load(&p->cancel)) {
      pthread_mutex_lock(&p->mu);
      p->closed = 1;
      p->terminating = 1;
      pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_lock(&p->mu);
    int term = p->terminating;
    int closed = p->closed;
    pthread_mutex_unlock(&p->mu);
    if (term) {
      rt_stop(p, MPROC_ECANCELED,
              atomic_load(&p->cancel) ? "pool cancelled" : "pool terminated");
      break;
    }
    uint64_t now = mproc__now_ns();
    if (got == 0 || now - last_check >= POOL_POLL_NS) {
      last_check = now;
      int live = rt_check_workers(p);
      pthread_mutex_lock(&p->mu);
      int broken = p->broken;
      pthread_mutex_unlock(&p->mu);
      if (broken) {
        rt_stop(p, MPROC_EBROKEN, "pool broken: a worker died");
        break;
      }
      if (live == 0) {
        rt_collect(p);
        pthread_mutex_lock(&p->mu);
        size_t left = p->outstanding;
        pthread_mutex_unlock(&p->mu);
        if (closed && left == 0) {
          break;
        }
        /* No worker, and work left (or an open pool): start one in slot
         * 0, unless its initializer keeps failing; then the pool is
         * broken rather than stranded. */
        if ((left > 0 || !closed) &&
            (p->w[0].initfails >= POOL_RESPAWN_CAP ||
             atomic_load(&p->exiting) ||
             mproc__pool_worker_start(p, 0) != 0)) {
          pthread_mutex_lock(&p->mu);
          p->broken = 1;
          pthread_mutex_unlock(&p->mu);
          rt_stop(p, MPROC_EBROKEN, "pool broken: no worker could start");
          break;
        }
        if (left > 0 || !closed) {
          p->w[0].gone = 0;
        }
        continue;
      }
    }
    if (got == 0 && closed && rt_await_exits(p)) {
      continue;
    }
    if (got == 0) {
      mproc__deadline d;
      mproc__deadline_init(&d, (double)POOL_POLL_NS / 1e9);
      mproc__futex_wait((uint32_t *)&sh->res_seq, seq, &d);
    }
  }
  pthread_mutex_lock(&p->mu);
  p->rt_done = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  __atomic_sub_fetch(&mproc__own_threads, 1, __ATOMIC_RELAXED);
  return NULL;
}
