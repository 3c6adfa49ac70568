/*
 * pool.c - Python's multiprocessing.Pool (mproc/pool.h): apply, apply_async,
 * map, map_async, map_bytes, close, terminate, join, worker death.
 *
 * DESIGN
 *
 * Shared state.  One arena block (struct shpool) holds what the parent and
 * the workers share: a robust process-shared mutex, the FIFO of pending
 * tasks, the FIFO of done tasks, two futex sequence words (task_seq: work
 * was queued or the pool closed; res_seq: a task finished or a worker
 * reported its initializer), and one slot per worker naming the task or
 * the map job and claim that worker runs.  Every task is an arena block
 * (struct shtask) holding the function pointer (workers are forked, so
 * addresses agree), the argument (copied into the arena) or the map it
 * covers, and the outcome.  All list links are plain arena pointers,
 * valid in every process.
 *
 * apply.  A worker takes the mutex, pops the oldest pending task and
 * names it in its slot in the same critical section; after running it,
 * it moves the task to the done list and clears its slot, again in one
 * critical section.  So at any moment a task is in exactly one place
 * (pending, a slot, done), and a worker that dies mid-task leaves its
 * task named in its slot.  A worker killed while holding the mutex leaves
 * it to the next locker with EOWNERDEAD; the stores of both critical
 * sections are ordered so that the locker can tell how far the dead
 * worker got and repair the lists (sh_repair) before it goes on.
 *
 * map.  A whole map is one task, a "job" (see "Map jobs" below): its
 * items are cut in units (chunks of chunksize items; one item each in
 * adaptive mode), and workers claim units with one atomic add on the
 * job's counter, with no lock and no allocation per unit.  Results are
 * written in place into an arena array, each unit's state into a byte
 * array, each claim and its progress into the worker's own slot.  So a
 * worker that dies fails exactly the items of its claim it had not
 * finished.  imap uses the same job; its iterator reads the arena arrays
 * directly and sleeps on a futex word the workers bump.
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
 *
 * Lifetimes.  An mproc_async is reference counted: one reference for the
 * caller (dropped by mproc_async_free) and one for the pool while the
 * task is outstanding (dropped by the result thread after the callback),
 * so freeing an AsyncResult early or from a callback is safe.  Readiness
 * is an atomic flag, so a ready result never touches its pool again.
 * An imap's arrays belong to its mproc_async; the iterator and the result
 * thread hand them over under the pool's mutex: whichever is done with
 * them last frees them.
 *
 * Close marks the shared state closed and wakes every worker; a worker
 * leaves when it finds no pending work and the pool closed.  Terminate
 * (and mproc_pool_cancel, which only sets a flag a signal handler may
 * set) sends SIGTERM to every worker, then SIGKILL after a short grace,
 * and fails everything outstanding with MPROC_ECANCELED.  The result
 * thread ends once closed (or terminating), nothing is outstanding and
 * every worker has ended; join waits for that.
 *
 * Workers ignore SIGINT: a Ctrl-C ends the parent, and the workers die
 * with it (PR_SET_PDEATHSIG, set by the process module).
 */
#define _GNU_SOURCE 1

#include "mproc/pool.h"

#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POOL_MSG_MAX 1024
#define POOL_POLL_NS 10000000ull   /* result thread's liveness period */
#define POOL_TERM_GRACE_NS 200000000ull
#define POOL_SPIN_NS 50000ull          /* an idle worker's watch: 50 us */
#define POOL_WAIT_SPIN_NS 20000ull     /* a result waiter's watch: 20 us */
#define POOL_TIMEOUT_GRACE 1.0          /* default opts.timeout_grace */
#define POOL_RESPAWN_FIRST_NS 100000000ull /* respawn backoff: 0.1 s, */
#define POOL_RESPAWN_MAX_NS 3200000000ull  /* doubling up to 3.2 s, */
#define POOL_RESPAWN_CAP 5                 /* 5 failed starts in a row */

enum { TK_APPLY = 1, TK_JOB = 2 };
/* A map unit's state (shtask.ustate). */
enum { U_PENDING = 0, U_DONE = 1, U_LOST = 2 };
#define POOL_ADAPT_TARGET_NS 200000ull /* adaptive claims: ~0.2 ms of work */

/* What an imap iterator and the workers share besides the arrays: a
 * sequence word bumped whenever units finish, and whether the iterator
 * sleeps on it (arena). */
typedef struct imapsh {
  _Atomic uint32_t seq;
  _Atomic int waiting;
  _Atomic int finished;   /* every unit is done or lost */
  char pad[52];
  _Atomic size_t norder;  /* entries of order[] claimed */
} imapsh;
enum { SLOT_STARTING = 0, SLOT_READY = 1, SLOT_INITFAIL = 2 };

typedef struct shtask shtask;
struct shtask {
  shtask *next;
  int kind;
  mproc_task_fn fn;  /* TK_APPLY */
  void *ctx;         /* fn's or mfn's ctx, passed as is */
  void *arg;         /* arena copy of the argument (NULL when len 0) */
  size_t len;
  /* TK_JOB: a whole map, n items in nunits units of `unit` items that
   * the workers claim with one atomic add each (see "Map jobs"). */
  mproc_map_fn mfn;
  const char *in;
  char *out;
  size_t in_size, out_size, n, unit, nunits;
  int adaptive;      /* claim several units at once, sized by duration */
  int nworkers;
  unsigned char *ustate;  /* per unit: U_* (arena) */
  int *icodes;       /* imap: each item's return value (arena), or NULL */
  size_t *dead_from; /* imap: per lost unit, its first lost item */
  int *uerr;         /* imap: per lost unit, the failure */
  size_t *order;     /* imap: units in completion order, each + 1 */
  imapsh *ish;       /* imap */
  int deaths;        /* claimants that died (under mu) */
  size_t claims;     /* claims made (chunks dispatched), under mu */
  size_t lost_claims;/* claims that lost items to a death, under mu */
  int death_err;     /* the latest death's failure, signal and message */
  int death_sig;
  char death_msg[128];
  int has_lost;      /* the first lost item and its failure (under mu) */
  size_t lost_index;
  /* Outcome, written by the worker (or the result thread for a death). */
  int error;       /* 0, MPROC_ETASK, MPROC_ENOMEM, MPROC_EWORKERDIED... */
  int task_code;
  int signal;
  int has_fail;    /* map: an item failed (under mu) */
  size_t fail_index;
  int fail_code;
  void *res;       /* arena copy of the result */
  size_t res_len;
  void *owner;     /* the parent's mproc_async (parent memory) */
  /* The claim counter, on a line of its own: workers add to it, nothing
   * else is written near it. */
  char pad0[64];
  _Atomic size_t next_unit;
  char pad1[64];
  char msg[POOL_MSG_MAX];
};

typedef struct shslot {
  shtask *task;            /* the apply task this worker runs, under mu */
  shtask *job;             /* the map job it works in, under mu */
  size_t ju, jk;           /* its claim: units [ju, ju + jk); jk 0: none */
  size_t jclaims;          /* claims it made in its current job */
  _Atomic size_t jdone;    /* items of the claim done */
  uint64_t start_ns;       /* when it started its task or claim */
  _Atomic int state;       /* SLOT_* */
  _Atomic uint64_t busy_ns;
  _Atomic int crash_sig;         /* a crash note: the fatal signal */
  _Atomic uintptr_t crash_addr;  /* and the faulting address */
  char initmsg[POOL_MSG_MAX];
} shslot;

typedef struct shpool {
  pthread_mutex_t mu;
  shtask *qhead, *qtail;   /* pending, under mu */
  shtask *dhead, *dtail;   /* done, under mu */
  int sleepers;            /* workers asleep on task_seq, under mu */
  _Atomic int spinning;    /* a worker watches the queue before sleeping */
  int closed;              /* under mu */
  /* The pool is stopping (terminate, cancel, a broken pool, the program's
   * exit): a worker takes no more work, it leaves. */
  _Atomic int stopping;
  _Atomic uint32_t task_seq;
  _Atomic uint32_t res_seq;
  /* Threads of the parent waiting in mproc_async_wait sleep on fg_seq and
   * collect results themselves; a worker with a result wakes them rather
   * than the result thread when there are any (one wake per round trip
   * instead of two). */
  _Atomic uint32_t fg_seq;
  _Atomic int fg_waiters;
  int nslots;
  shslot slots[];
} shpool;

struct mproc_task {
  shtask *st;     /* NULL for the initializer */
  char *msg;      /* where mproc_task_fail writes */
};

struct mproc_async {
  _Atomic int refs;
  _Atomic int ready;
  int kind;
  mproc_pool *pool;
  mproc_async_cb cb, ecb;
  void *user;
  int err;
  int task_code;
  int signal;
  char *msg;
  void *data;
  size_t len;
  /* map */
  size_t chunks_left;
  char *ain;          /* arena input (owned when in_owned) */
  int in_owned;
  char *aout;         /* arena output: its own, or out itself when that
                         is arena memory (out_in_place) */
  int out_in_place;
  void *out;
  size_t n, out_size;
  int has_merr;
  mproc_map_error merr;
  /* map: the job's arena arrays (the job itself is freed when done) */
  size_t unit, nunits;
  unsigned char *ustate;
  int progress;         /* draw a progress bar while waiting */
  /* imap: the arrays the iterator reads (arena), shared with the job. */
  int is_imap;
  int abandoned;        /* mproc_imap_free ran before the job ended */
  int all_done;         /* the result thread is done with the arrays */
  int *icodes;
  size_t *dead_from;
  int *uerr;
  size_t *order;
  imapsh *ish;
};

struct mproc_imap {
  mproc_async *r;
  int unordered;
  size_t next;          /* ordered: the next item */
  size_t ocur;          /* unordered: position in r->order */
  size_t cu, citem;     /* unordered: the unit being delivered + 1, and
                           the next item in it */
  size_t scan;          /* unordered, after the job: units looked at */
  unsigned char *seen;  /* unordered: units taken up (parent memory) */
  size_t delivered;
  int last_code;        /* the last delivered item's own return value */
  int progress;         /* draw a progress bar on stderr */
  uint64_t t0, drawn;   /* progress: start, last drawn */
};

typedef struct pool_worker {
  mproc_process *proc;
  int timed_out;
  uint64_t term_ns;    /* when it was sent SIGTERM for task_timeout */
  int gone;            /* ended and not replaced */
  int initfails;       /* replacements whose initializer failed, in a row */
  uint64_t respawn_at; /* when to try again (0: not waiting) */
} pool_worker;

struct mproc_pool {
  shpool *sh;
  pid_t owner;
  int nworkers;
  mproc_pool_opts opts;
  void *initarg;            /* malloc'd copy */
  pool_worker *w;
  pthread_t rt;
  int rt_started;
  int rt_joined;
  pthread_mutex_t mu;       /* parent side: below fields, readiness */
  pthread_cond_t cv;
  int closed;
  int terminating;
  int broken;               /* MPROC_EBROKEN for new work */
  _Atomic int cancel;       /* mproc_pool_cancel was called */
  _Atomic int cancel_pending; /* mproc_pool_cancel_pending was called */
  shtask *handoff;          /* done tasks with callbacks that a waiting
                               thread collected, for the result thread */
  int rt_done;
  size_t outstanding;       /* submitted, not completed */
  mproc_pool_stats stats;
  /* Each slot's worker pid (0: none), for any thread of the parent: the
   * exit handler and a thread stuck on a shared lock read them without
   * the result thread's help.  wstuck: that worker was killed for holding
   * a shared lock past POOL_STUCK_NS. */
  _Atomic pid_t *wpid;
  _Atomic int *wstuck;
  _Atomic int exiting;      /* the program is exiting: never replace */
  mproc_pool *reg_next;     /* the registry of live pools (g_pools) */
};

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

static void sh_lock(shpool *sh) {
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

static void sh_unlock(shpool *sh) { mproc__rmutex_unlock(&sh->mu); }

/*
 * A worker holding a shared lock (the pool's, or the arena allocator's)
 * for POOL_STUCK_NS is stuck: stopped (SIGSTOP, a debugger), or not run
 * for that long.  The parent never waits on a worker's progress without
 * a bound, so it kills the holder (SIGKILL works on a stopped process),
 * and the lock's next taker repairs what it was doing as for any death.
 * The holder is the thread id in the robust mutex's lock word; only this
 * pool's workers are ever killed (a worker's main thread: its pid), and
 * the death is reported with that reason.
 */
#define POOL_STUCK_NS 1000000000ull

static void pool_unstick(mproc_pool *p, pid_t holder, const char *what) {
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
static int psh_lock_until(mproc_pool *p, const mproc__deadline *d) {
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
      pool_unstick(p, mproc__rmutex_holder(&sh->mu), "the pool lock");
    }
  }
  sh_locked(sh, rc);
  return 0;
}

static void psh_lock(mproc_pool *p) { (void)psh_lock_until(p, NULL); }

static void seq_bump_wake(_Atomic uint32_t *seq, int n) {
  atomic_fetch_add(seq, 1);
  mproc__futex_wake((uint32_t *)seq, n);
}

/* Something is on the done list: wake the threads waiting for results in
 * the parent if there are any (they collect it), else the result thread.
 * Both words move, so neither can sleep on a stale value. */
static void results_wake(shpool *sh) {
  atomic_fetch_add(&sh->res_seq, 1);
  atomic_fetch_add(&sh->fg_seq, 1);
  if (atomic_load(&sh->fg_waiters) > 0) {
    mproc__futex_wake((uint32_t *)&sh->fg_seq, INT32_MAX);
  } else {
    mproc__futex_wake((uint32_t *)&sh->res_seq, 1);
  }
}

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

/* Run one task (apply or a map chunk) and record its outcome in st. */
static void worker_run(shtask *st) {
  if (st->kind == TK_APPLY) {
    mproc_task t = {st, st->msg};
    int rc = st->fn(&t, st->arg, st->len, st->ctx);
    if (rc != 0) {
      st->error = MPROC_ETASK;
      st->task_code = rc;
      task_drop_result_at(st, MPROC__FP_POOL_FAIL_RESULT_CLEARED);
    } else if (st->error != 0) {
      task_drop_result_at(st, MPROC__FP_POOL_FAIL_RESULT_CLEARED);
    }
  }
}

/* ==================== map jobs ==================== */

/*
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

/* Whether a slot other than `except` names job st (mu held). */
static int job_has_users(const shpool *sh, const shtask *st,
                         const shslot *except) {
  for (int i = 0; i < sh->nslots; i++) {
    if (&sh->slots[i] != except && sh->slots[i].job == st) {
      return 1;
    }
  }
  return 0;
}

/* Wake an imap iterator waiting on the job's units (if any). */
static void job_notify(shtask *st) {
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
static void job_finish_locked(shpool *sh, shtask *st) {
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
static int job_claimant_died(shpool *sh, shslot *me, int err, int sig,
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
      !job_has_users(sh, st, NULL)) {
    job_finish_locked(sh, st);
    return 1;
  }
  job_notify(st);
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
static long worker_job(shpool *sh, shslot *me, shtask *st, long budget) {
  size_t k = 1;
  long claims = 0;
  const size_t unit = st->unit;
  const size_t n = st->n;
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
      int rc = st->mfn(st->in + i * st->in_size, out, st->ctx);
      if (st->icodes != NULL) {
        st->icodes[i] = rc;
      }
      if (MPROC__UNLIKELY(rc != 0) && !failed) {
        failed = 1;
        sh_lock(sh);
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
      job_notify(st);
    }
    if (st->adaptive) {
      k = adapt_units(st, (double)(t1 - t0) / (double)(last - first));
    }
  }
  /* Leave: unlink the exhausted job, finish it if this was the last
   * claimant, and only then clear the slot (see sh_repair).  A worker
   * that leaves for maxtasksperchild leaves the job queued for others. */
  sh_lock(sh);
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
  int last = exhausted && !job_has_users(sh, st, me);
  if (last) {
    job_finish_locked(sh, st);
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

/* The worker process: run the initializer, then tasks until the pool is
 * closed and empty, or maxtasksperchild tasks ran. */
static int worker_main(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  mproc_pool *p;
  int slot;
  memcpy(&p, arg, sizeof p);
  memcpy(&slot, (const char *)arg + sizeof p, sizeof slot);
  shpool *sh = p->sh;
  shslot *me = &sh->slots[slot];
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
  if (p->opts.initializer != NULL) {
    mproc_task t = {NULL, me->initmsg};
    me->initmsg[0] = '\0';
    int rc = p->opts.initializer(&t, p->initarg, p->opts.initarg_len,
                                 p->opts.initctx);
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
    sh_lock(sh);
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
        sh_lock(sh);
        continue;
      }
      uint32_t seq = atomic_load(&sh->task_seq);
      sh->sleepers++;
      sh_unlock(sh);
      mproc__futex_wait((uint32_t *)&sh->task_seq, seq, NULL);
      sh_lock(sh);
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
      long max = p->opts.maxtasksperchild;
      ran += worker_job(sh, me, st, max > 0 ? max - ran : 0);
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

    worker_run(st);

    /* Link the task on the done list, then clear the slot (sh_repair). */
    st->next = NULL;
    sh_lock(sh);
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
    if (p->opts.maxtasksperchild > 0 && ran >= p->opts.maxtasksperchild) {
      return 0;
    }
  }
}

/* ==================== the parent: workers ==================== */

/* Start a worker in slot i.  Returns 0 or an mproc error. */
static int worker_start(mproc_pool *p, int i) {
  char arg[sizeof p + sizeof i];
  memcpy(arg, &p, sizeof p);
  memcpy(arg + sizeof p, &i, sizeof i);
  shslot *s = &p->sh->slots[i];
  s->task = NULL;
  atomic_store(&s->crash_sig, 0);
  atomic_store(&s->crash_addr, 0);
  atomic_store(&s->state, SLOT_STARTING);
  char name[48];
  snprintf(name, sizeof name, "PoolWorker-%d", i + 1);
  mproc_process_opts po = {name, 1};
  mproc_process *proc;
  int rc = mproc_process_new(&proc, worker_main, NULL, arg, sizeof arg, &po);
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
static void worker_reap(mproc_pool *p, int i, int *code) {
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

static void async_unref(mproc_async *r) {
  if (atomic_fetch_sub(&r->refs, 1) == 1) {
    free(r->msg);
    free(r->data);
    free(r);
  }
}

/* Mark r ready, wake its waiters and run its callback (result thread, or
 * the submitting thread for a map of nothing), then drop the pool's ref. */
static void async_finish(mproc_pool *p, mproc_async *r) {
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
  async_unref(r);
}

/* Free an imap's arrays (the last of the iterator and the result
 * thread to be done with them). */
static void imap_release_arrays(mproc_async *r) {
  if (!r->out_in_place) {
    mproc_shm_free(r->aout);
  }
  /* mproc_pool_map draws its bar from the unit states while the map
   * runs (r->progress): it frees them itself once the map is over, so the
   * pointer it reads stays valid however early the map completes. */
  if (!r->progress || r->is_imap) {
    mproc_shm_free(r->ustate);
    r->ustate = NULL;
  }
  mproc_shm_free(r->icodes);
  mproc_shm_free(r->dead_from);
  mproc_shm_free(r->uerr);
  mproc_shm_free(r->order);
  mproc_shm_free(r->ish);
  if (r->in_owned) {
    mproc_shm_free(r->ain);
  }
  r->aout = NULL;
  r->icodes = NULL;
  r->dead_from = NULL;
  r->uerr = NULL;
  r->order = NULL;
  r->ish = NULL;
  r->ain = NULL;
}

/* Complete one done task: copy its outcome into its owner, free it. */
static void task_complete(mproc_pool *p, shtask *st) {
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
    mproc_shm_free(st->res);
    mproc_shm_free(st->arg);
    mproc_shm_free(st);
    async_finish(p, r);
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
  job_notify(st);
  mproc_shm_free(st);
  if (r->is_imap) {
    /* The iterator reads the arena arrays; whoever is last frees them. */
    pthread_mutex_lock(&p->mu);
    int abandoned = r->abandoned;
    r->all_done = 1;
    pthread_mutex_unlock(&p->mu);
    if (abandoned) {
      imap_release_arrays(r);
    }
    async_finish(p, r);
    return;
  }
  if (r->n * r->out_size > 0 && !r->out_in_place) {
    memcpy(r->out, r->aout, r->n * r->out_size);
  }
  imap_release_arrays(r);
  async_finish(p, r);
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
  task_complete(p, st);
}

/* ==================== the result thread ==================== */

/*
 * Take the done list and complete its tasks.  Returns how many.  On the
 * result thread (on_rt) every task; in a thread waiting for a result,
 * only those without callbacks (callbacks run on the result thread, as
 * the header promises): the others go to p->handoff and the result
 * thread is woken for them.
 */
static int collect_until(mproc_pool *p, int on_rt, const mproc__deadline *d) {
  shpool *sh = p->sh;
  shtask *st = NULL;
  if (on_rt) {
    pthread_mutex_lock(&p->mu);
    st = p->handoff;
    p->handoff = NULL;
    pthread_mutex_unlock(&p->mu);
  }
  int n = 0;
  while (st != NULL) {
    shtask *next = st->next;
    task_complete(p, st);
    st = next;
    n++;
  }
  if (psh_lock_until(p, d) != 0) {
    return n;
  }
  st = sh->dhead;
  sh->dhead = sh->dtail = NULL;
  sh_unlock(sh);
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
      task_complete(p, st);
    }
    st = next;
    n++;
  }
  if (handed) {
    seq_bump_wake(&sh->res_seq, 1);
  }
  return n;
}

static int rt_collect(mproc_pool *p) { return collect_until(p, 1, NULL); }

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
        if (rt_should_replace(p, i) && worker_start(p, i) == 0) {
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
    worker_reap(p, i, &code);
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
    job_claimant_died(sh, &sh->slots[i], err, sig, msg);
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
       * its caller read the statistics, before worker_start returns. */
      pthread_mutex_lock(&p->mu);
      p->stats.workers_replaced++;
      pthread_mutex_unlock(&p->mu);
      if (worker_start(p, i) == 0) {
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
    worker_reap(p, i, &code);
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
    job_claimant_died(sh, sl, err, 0, msg);
  }
  shtask *q = sh->qhead;
  sh->qhead = sh->qtail = NULL;
  while (q != NULL) {
    shtask *next = q->next;
    if (q->kind == TK_JOB) {
      job_cancel_locked(q, err, msg);
      job_finish_locked(sh, q);
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
      if (job_has_users(sh, q, NULL)) {
        /* Back in the queue; its last claimant unlinks and finishes it. */
        if (sh->qtail != NULL) {
          sh->qtail->next = q;
        } else {
          sh->qhead = q;
        }
        sh->qtail = q;
      } else {
        job_finish_locked(sh, q);
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

static void *rt_main(void *arg) {
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
             worker_start(p, 0) != 0)) {
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
  return NULL;
}

/* Wait on the pool's condvar (its mu held) until woken or d passes, in
 * slices of at most 10 ms (the condvar's clock is CLOCK_REALTIME, the
 * deadline's CLOCK_MONOTONIC).  Returns 0 after a wake or a slice (the
 * caller re-checks its condition), MPROC_ETIMEDOUT once d has passed. */
static int pool_cv_wait(mproc_pool *p, const mproc__deadline *d) {
  if (d->forever) {
    pthread_cond_wait(&p->cv, &p->mu);
    return 0;
  }
  uint64_t left = mproc__deadline_left_ns(d);
  if (left == 0) {
    return MPROC_ETIMEDOUT;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t step = left < 10000000ull ? left : 10000000ull;
  ts.tv_nsec += (long)step;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_cond_timedwait(&p->cv, &p->mu, &ts);
  return 0;
}

/* ==================== the pool ==================== */

/*
 * Exit.  A program that exits with a live pool (returns from main, calls
 * exit) must finish: the process module's exit handler sends SIGTERM to
 * daemon children and joins them, and a result thread that took those
 * deaths for crashes would fork replacements that nobody stops.  So the
 * pool module keeps a registry of live pools and its own exit handler,
 * registered after the process module's and so run before it: it cancels
 * every pool of this process (nothing is replaced from then on), waits up
 * to POOL_EXIT_WAIT_S for each result thread to stop its workers, and
 * else (a callback still running, or exit called from one) SIGKILLs the
 * workers and their process groups itself.
 */
#define POOL_EXIT_WAIT_S 2.0

static pthread_mutex_t g_pools_mu = PTHREAD_MUTEX_INITIALIZER;
static mproc_pool *g_pools;
static pthread_once_t g_pools_once = PTHREAD_ONCE_INIT;

static int pool_wait_rt(mproc_pool *p, double timeout);

/* SIGKILL every worker of p and its process group (any thread). */
static void pool_kill_groups(mproc_pool *p) {
  for (int i = 0; i < p->nworkers; i++) {
    pid_t pid = atomic_load(&p->wpid[i]);
    if (pid > 0) {
      (void)mproc__kill(pid, SIGKILL);
      (void)mproc__pgrp_kill(pid, SIGKILL);
    }
  }
}

static void pools_at_exit(void) {
  pthread_mutex_lock(&g_pools_mu);
  for (mproc_pool *p = g_pools; p != NULL; p = p->reg_next) {
    if (p->owner != getpid()) {
      continue;
    }
    atomic_store(&p->exiting, 1);
    atomic_store(&p->sh->stopping, 1);
    seq_bump_wake(&p->sh->task_seq, INT32_MAX);
    atomic_store(&p->cancel, 1);
    seq_bump_wake(&p->sh->res_seq, 1);
  }
  for (mproc_pool *p = g_pools; p != NULL; p = p->reg_next) {
    if (p->owner != getpid()) {
      continue;
    }
    if (pthread_equal(pthread_self(), p->rt) ||
        pool_wait_rt(p, POOL_EXIT_WAIT_S) != 0) {
      MPROC__WARN("pool: at exit, its result thread did not stop the "
                  "workers: killed");
      pool_kill_groups(p);
    }
  }
  pthread_mutex_unlock(&g_pools_mu);
}

/* A forked child owns none of its parent's pools (and must not wait for
 * the registry's lock if another thread held it at the fork). */
static void pools_atfork_child(void) {
  pthread_mutex_init(&g_pools_mu, NULL);
  g_pools = NULL;
}

/* The arena's stuck hook: a thread of this process waited over
 * MPROC__ARENA_STUCK_NS for the allocator's lock held by `holder`.  If it
 * is a worker of one of this process's pools, it is killed (see
 * POOL_STUCK_NS).  A worker (a forked child: no pools) does nothing; the
 * registry's lock is only tried, so a thread at exit holding it is not
 * waited for. */
static void pools_arena_stuck(pid_t holder) {
  if (pthread_mutex_trylock(&g_pools_mu) != 0) {
    return;
  }
  for (mproc_pool *p = g_pools; p != NULL; p = p->reg_next) {
    if (p->owner == getpid()) {
      pool_unstick(p, holder, "the arena's allocator lock");
    }
  }
  pthread_mutex_unlock(&g_pools_mu);
}

static void pools_init_once(void) {
  pthread_atfork(NULL, NULL, pools_atfork_child);
  atexit(pools_at_exit);
  mproc__arena_set_stuck_hook(pools_arena_stuck);
}

static void pools_add(mproc_pool *p) {
  pthread_once(&g_pools_once, pools_init_once);
  pthread_mutex_lock(&g_pools_mu);
  p->reg_next = g_pools;
  g_pools = p;
  pthread_mutex_unlock(&g_pools_mu);
}

static void pools_remove(mproc_pool *p) {
  pthread_mutex_lock(&g_pools_mu);
  for (mproc_pool **pp = &g_pools; *pp != NULL; pp = &(*pp)->reg_next) {
    if (*pp == p) {
      *pp = p->reg_next;
      break;
    }
  }
  pthread_mutex_unlock(&g_pools_mu);
}

static void pool_release(mproc_pool *p) {
  pools_remove(p);
  if (p->sh != NULL) {
    pthread_mutex_destroy(&p->sh->mu);
    mproc_shm_free(p->sh);
  }
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->initarg);
  free(p->w);
  free((void *)p->wpid);
  free((void *)p->wstuck);
  free(p);
}

/* Kill and reap every started worker (pool_new's failure path). */
static void pool_kill_all(mproc_pool *p) {
  for (int i = 0; i < p->nworkers; i++) {
    if (p->w[i].proc != NULL) {
      int code;
      mproc_process_kill(p->w[i].proc);
      worker_reap(p, i, &code);
    }
  }
}

int mproc_pool_new(mproc_pool **out, const mproc_pool_opts *opts) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  if (opts != NULL) {
    o = *opts;
  }
  if (o.processes < 0 || o.maxtasksperchild < 0 ||
      o.task_timeout != o.task_timeout || !(o.timeout_grace >= 0) ||
      (o.on_death != MPROC_POOL_REPLACE && o.on_death != MPROC_POOL_BREAK) ||
      (o.initarg == NULL && o.initarg_len > 0)) {
    return MPROC_EINVAL;
  }
  if (o.timeout_grace == 0) {
    o.timeout_grace = POOL_TIMEOUT_GRACE;
  }
  if (o.errbuf != NULL && o.errcap > 0) {
    o.errbuf[0] = '\0';
  }
  int n = o.processes > 0 ? o.processes : mproc_cpu_count();
  int rc = mproc__arena_ensure();
  if (rc != 0) {
    return rc;
  }
  mproc_pool *p = calloc(1, sizeof *p);
  if (p == NULL) {
    return MPROC_ENOMEM;
  }
  p->owner = getpid();
  p->nworkers = n;
  p->opts = o;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  p->w = calloc((size_t)n, sizeof *p->w);
  p->wpid = calloc((size_t)n, sizeof *p->wpid);
  p->wstuck = calloc((size_t)n, sizeof *p->wstuck);
  if (o.initarg_len > 0) {
    p->initarg = malloc(o.initarg_len);
    if (p->initarg != NULL) {
      memcpy(p->initarg, o.initarg, o.initarg_len);
    }
  }
  void *shp = NULL;
  rc = mproc_shm_calloc(&shp, 1, sizeof(shpool) + (size_t)n * sizeof(shslot));
  if (p->w == NULL || p->wpid == NULL || p->wstuck == NULL ||
      (o.initarg_len > 0 && p->initarg == NULL) || rc != 0) {
    pool_release(p);
    return rc != 0 ? rc : MPROC_ENOMEM;
  }
  p->sh = shp;
  p->sh->nslots = n;
  rc = mproc__rmutex_init(&p->sh->mu);
  if (rc != 0) {
    pool_release(p);
    return MPROC_ENOMEM;
  }
  for (int i = 0; i < n; i++) {
    rc = worker_start(p, i);
    if (rc != 0) {
      pool_kill_all(p);
      pool_release(p);
      return rc;
    }
  }
  /* Wait for every initializer's verdict (or the worker's death). */
  int failed = -1;
  for (;;) {
    uint32_t seq = atomic_load(&p->sh->res_seq);
    int waiting = 0;
    for (int i = 0; i < n; i++) {
      int st = atomic_load(&p->sh->slots[i].state);
      if (st == SLOT_INITFAIL) {
        failed = i;
      } else if (st == SLOT_STARTING) {
        if (mproc_process_is_alive(p->w[i].proc) == 1) {
          waiting = 1;
        } else if (atomic_load(&p->sh->slots[i].state) == SLOT_STARTING) {
          failed = i;
        }
      }
    }
    if (failed >= 0 || !waiting) {
      break;
    }
    mproc__deadline d;
    mproc__deadline_init(&d, (double)POOL_POLL_NS / 1e9);
    mproc__futex_wait((uint32_t *)&p->sh->res_seq, seq, &d);
  }
  if (failed >= 0) {
    if (o.errbuf != NULL && o.errcap > 0) {
      const char *m = p->sh->slots[failed].initmsg;
      if (atomic_load(&p->sh->slots[failed].state) != SLOT_INITFAIL) {
        m = "worker died in its initializer";
      }
      snprintf(o.errbuf, o.errcap, "%s", m);
    }
    pool_kill_all(p);
    pool_release(p);
    return MPROC_EINIT;
  }
  if (pthread_create(&p->rt, NULL, rt_main, p) != 0) {
    pool_kill_all(p);
    pool_release(p);
    return MPROC_EAGAIN;
  }
  p->rt_started = 1;
  /* After the workers started, so after the process module registered
   * its exit handler: this one runs first (see "Exit"). */
  pools_add(p);
  *out = p;
  return 0;
}

int mproc_pool_close(mproc_pool *p) {
  if (p == NULL) {
    return MPROC_EINVAL;
  }
  if (p->owner != getpid()) {
    return MPROC_EFORKED;
  }
  pthread_mutex_lock(&p->mu);
  p->closed = 1;
  pthread_mutex_unlock(&p->mu);
  psh_lock(p);
  p->sh->closed = 1;
  sh_unlock(p->sh);
  seq_bump_wake(&p->sh->task_seq, INT32_MAX);
  seq_bump_wake(&p->sh->res_seq, 1);
  return 0;
}

/* Wait for the result thread to end, at most timeout seconds. */
static int pool_wait_rt(mproc_pool *p, double timeout) {
  mproc__deadline d;
  if (mproc__deadline_init(&d, timeout) != 0) {
    return MPROC_EINVAL;
  }
  pthread_mutex_lock(&p->mu);
  while (!p->rt_done) {
    if (pool_cv_wait(p, &d) != 0) {
      pthread_mutex_unlock(&p->mu);
      return MPROC_ETIMEDOUT;
    }
  }
  int join = !p->rt_joined && !pthread_equal(pthread_self(), p->rt);
  if (join) {
    p->rt_joined = 1;
  }
  pthread_mutex_unlock(&p->mu);
  if (join) {
    pthread_join(p->rt, NULL);
  }
  return 0;
}

int mproc_pool_terminate(mproc_pool *p) {
  if (p == NULL) {
    return MPROC_EINVAL;
  }
  if (p->owner != getpid()) {
    return MPROC_EFORKED;
  }
  mproc_pool_close(p);
  pthread_mutex_lock(&p->mu);
  p->terminating = 1;
  pthread_mutex_unlock(&p->mu);
  seq_bump_wake(&p->sh->res_seq, 1);
  if (pthread_equal(pthread_self(), p->rt)) {
    return 0; /* from a callback: the result thread terminates next */
  }
  return pool_wait_rt(p, MPROC_FOREVER);
}

int mproc_pool_cancel(mproc_pool *p) {
  if (p == NULL) {
    return MPROC_EINVAL;
  }
  /* Async-signal-safe: one atomic store and one futex wake. */
  atomic_store(&p->cancel, 1);
  seq_bump_wake(&p->sh->res_seq, 1);
  return 0;
}

int mproc_pool_cancel_pending(mproc_pool *p) {
  if (p == NULL) {
    return MPROC_EINVAL;
  }
  /* Async-signal-safe, as mproc_pool_cancel. */
  atomic_store(&p->cancel_pending, 1);
  seq_bump_wake(&p->sh->res_seq, 1);
  return 0;
}

int mproc_pool_join(mproc_pool *p, double timeout) {
  if (p == NULL) {
    return MPROC_EINVAL;
  }
  if (p->owner != getpid()) {
    return MPROC_EFORKED;
  }
  pthread_mutex_lock(&p->mu);
  int closed = p->closed || atomic_load(&p->cancel);
  pthread_mutex_unlock(&p->mu);
  if (!closed) {
    return MPROC_ESTATE;
  }
  if (pthread_equal(pthread_self(), p->rt)) {
    return MPROC_ESTATE; /* a callback cannot wait for its own thread */
  }
  return pool_wait_rt(p, timeout);
}

int mproc_pool_free(mproc_pool *p) {
  if (p == NULL) {
    return 0;
  }
  if (p->owner != getpid()) {
    return MPROC_EFORKED;
  }
  if (pthread_equal(pthread_self(), p->rt)) {
    return MPROC_ESTATE;
  }
  pthread_mutex_lock(&p->mu);
  int done = p->rt_done;
  pthread_mutex_unlock(&p->mu);
  if (!done) {
    mproc_pool_terminate(p);
  } else {
    pool_wait_rt(p, MPROC_FOREVER);
  }
  pool_release(p);
  return 0;
}

/* ==================== apply ==================== */

/* Queue n tasks (under the shared lock), waking up to `wake` sleeping
 * workers. */
static int pool_submit(mproc_pool *p, shtask *const *tasks, size_t n,
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

static mproc_async *async_new(mproc_pool *p, int kind) {
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
  mproc_async *r = async_new(p, TK_APPLY);
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
  rc = pool_submit(p, &st, 1, 1);
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
    collect_until(p, 0, &d);
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
    async_unref(r);
  }
  return 0;
}

/* ==================== progress bar ==================== */

/* Draw "[#####     ]  500/1000 items  1.2 k/s  ETA 0:04" on stderr (a
 * terminal: the callers check), over the previous one; `last` ends the
 * line.  One write, so it does not interleave within itself. */
static void progress_draw(size_t done, size_t n, uint64_t t0, int last) {
  char bar[32];
  size_t width = sizeof bar - 1;
  size_t fill = n > 0 ? done * width / n : width;
  for (size_t i = 0; i < width; i++) {
    bar[i] = i < fill ? '#' : ' ';
  }
  bar[width] = '\0';
  double el = (double)(mproc__now_ns() - t0) / 1e9;
  double rate = el > 0 ? (double)done / el : 0;
  char eta[32] = "--:--";
  if (rate > 0 && done < n) {
    long left = (long)((double)(n - done) / rate + 0.5);
    snprintf(eta, sizeof eta, "%ld:%02ld", left / 60, left % 60);
  } else if (done >= n) {
    long e = (long)(el + 0.5);
    snprintf(eta, sizeof eta, "%ld:%02ld", e / 60, e % 60);
  }
  const char *unit = "";
  double shown = rate;
  if (shown >= 1e6) {
    shown /= 1e6;
    unit = " M";
  } else if (shown >= 1e3) {
    shown /= 1e3;
    unit = " k";
  }
  char line[160];
  int len = snprintf(line, sizeof line, "\r[%s] %zu/%zu items  %.1f%s/s  %s %s%s",
                     bar, done, n, shown, unit, done >= n ? "in" : "ETA", eta,
                     last ? "\n" : "");
  if (len > 0) {
    ssize_t w = write(STDERR_FILENO, line, (size_t)len < sizeof line
                                               ? (size_t)len
                                               : sizeof line - 1);
    (void)w;
  }
}

/* ==================== map ==================== */

/*
 * Start a map: copy the input into the arena (unless it is arena memory),
 * allocate the arena output, queue one task per chunk.  For imap
 * (is_imap), out is NULL and the results stay in the arena for
 * mproc_imap_next, with each item's code and each chunk's completion
 * recorded.  Returns 0 and *rout (the caller's reference), or an error
 * with nothing left allocated.
 */
static int map_start(mproc_pool *p, mproc_map_fn fn, void *ctx,
                     const void *in, size_t n, size_t in_size, void *out,
                     size_t out_size, const mproc_map_opts *opts,
                     int is_imap, mproc_async **rout) {
  if (rout != NULL) {
    *rout = NULL;
  }
  if (p == NULL || fn == NULL || rout == NULL ||
      (n > 0 && (in == NULL || in_size == 0 ||
                 (!is_imap && out == NULL && out_size > 0))) ||
      (opts != NULL && opts->chunksize < MPROC_CHUNK_ADAPTIVE)) {
    return MPROC_EINVAL;
  }
  if (p->owner != getpid()) {
    return MPROC_EFORKED;
  }
  if (n > 0 && (in_size > SIZE_MAX / n || (out_size > 0 && out_size > SIZE_MAX / n))) {
    return MPROC_EOVERFLOW;
  }
  if (n > 0 && out != NULL && out_size > 0) {
    /* In place is out == in record for record; any other overlap would
     * have an item's result overwrite another item's input. */
    uintptr_t a = (uintptr_t)in, b = (uintptr_t)out;
    int overlap = a < b + n * out_size && b < a + n * in_size;
    if (overlap && !(a == b && in_size == out_size)) {
      return MPROC_EINVAL;
    }
  }
  mproc_async *r = async_new(p, TK_JOB);
  if (r == NULL) {
    return MPROC_ENOMEM;
  }
  if (opts != NULL) {
    r->cb = opts->callback;
    r->ecb = opts->error_callback;
    r->user = opts->user;
  }
  r->n = n;
  r->out = out;
  r->out_size = out_size;
  r->is_imap = is_imap;
  if (n == 0) {
    pthread_mutex_lock(&p->mu);
    int closed = p->closed;
    if (!closed) {
      p->outstanding++;
    }
    pthread_mutex_unlock(&p->mu);
    if (closed) {
      free(r);
      return MPROC_ECLOSED;
    }
    async_finish(p, r);
    *rout = r;
    return 0;
  }
  size_t unit = opts != NULL && opts->chunksize > 0 ? (size_t)opts->chunksize
                                                    : 0;
  int adaptive = opts != NULL && opts->chunksize == MPROC_CHUNK_ADAPTIVE;
  if (adaptive) {
    unit = 1; /* claims of several units, sized as the map runs */
  } else if (unit == 0) {
    /* Python's formula: divmod(len, 4 * workers), rounded up. */
    size_t d = 4 * (size_t)p->nworkers;
    unit = (n + d - 1) / d;
  }
  size_t nunits = (n + unit - 1) / unit;
  r->unit = unit;
  r->nunits = nunits;
  r->progress = opts != NULL && opts->progress;
  int rc = 0;
  if (mproc_arena_contains(in)) {
    r->ain = (char *)in;
  } else {
    rc = mproc_shm_alloc((void **)&r->ain, n * in_size);
    if (rc == 0) {
      r->in_owned = 1;
      memcpy(r->ain, in, n * in_size);
    }
  }
  if (rc == 0 && !is_imap && out_size > 0 && mproc_arena_contains(out) &&
      mproc_arena_contains((char *)out + n * out_size - 1)) {
    /* Results straight into the caller's arena memory: no copy out. */
    r->aout = out;
    r->out_in_place = 1;
  } else if (rc == 0) {
    rc = mproc_shm_alloc((void **)&r->aout, out_size > 0 ? n * out_size : 1);
  }
  if (rc == 0) {
    rc = mproc_shm_calloc((void **)&r->ustate, nunits, 1);
  }
  if (rc == 0 && is_imap) {
    rc = mproc_shm_calloc((void **)&r->icodes, n, sizeof(int));
    if (rc == 0) {
      rc = mproc_shm_calloc((void **)&r->dead_from, nunits, sizeof(size_t));
    }
    if (rc == 0) {
      rc = mproc_shm_calloc((void **)&r->uerr, nunits, sizeof(int));
    }
    if (rc == 0) {
      rc = mproc_shm_calloc((void **)&r->order, nunits, sizeof(size_t));
    }
    if (rc == 0) {
      rc = mproc_shm_calloc((void **)&r->ish, 1, sizeof(imapsh));
    }
  }
  shtask *st = NULL;
  if (rc == 0) {
    rc = mproc_shm_alloc((void **)&st, sizeof(shtask));
  }
  if (rc == 0) {
    memset(st, 0, offsetof(shtask, msg) + 1);
    st->kind = TK_JOB;
    st->mfn = fn;
    st->ctx = ctx;
    st->in = r->ain;
    st->out = r->aout;
    st->in_size = in_size;
    st->out_size = out_size;
    st->n = n;
    st->unit = unit;
    st->nunits = nunits;
    st->adaptive = adaptive;
    st->nworkers = p->nworkers;
    st->ustate = r->ustate;
    st->icodes = r->icodes;
    st->dead_from = r->dead_from;
    st->uerr = r->uerr;
    st->order = r->order;
    st->ish = r->ish;
    st->owner = r;
    atomic_init(&st->next_unit, 0);
    rc = pool_submit(p, &st, 1, nunits);
    if (rc != 0) {
      mproc_shm_free(st);
    }
  }
  if (rc != 0) {
    if (!r->in_owned) {
      r->ain = NULL;
    }
    r->progress = 0; /* nobody draws: free the unit states too */
    imap_release_arrays(r);
    free(r);
    return rc;
  }
  *rout = r;
  return 0;
}

int mproc_pool_map(mproc_pool *p, mproc_map_fn fn, void *ctx, const void *in,
                   size_t n, size_t in_size, void *out, size_t out_size,
                   const mproc_map_opts *opts, mproc_map_error *err) {
  mproc_map_opts o;
  memset(&o, 0, sizeof o);
  if (opts != NULL) {
    o.chunksize = opts->chunksize;
    o.progress = opts->progress;
  }
  mproc_async *r;
  int rc = map_start(p, fn, ctx, in, n, in_size, out, out_size, &o, 0, &r);
  if (rc != 0) {
    return rc;
  }
  /* With progress on, the unit states stay until freed below (see
   * imap_release_arrays), even if the map is over already. */
  unsigned char *ustate = r->progress ? r->ustate : NULL;
  if (ustate != NULL && isatty(STDERR_FILENO)) {
    uint64_t t0 = mproc__now_ns();
    while (mproc_async_wait(r, 0.2) != 0) {
      size_t units = 0;
      for (size_t u = 0; u < r->nunits; u++) {
        units += __atomic_load_n(&ustate[u], __ATOMIC_RELAXED) != 0;
      }
      size_t done = units * r->unit < n ? units * r->unit : n;
      progress_draw(done, n, t0, 0);
    }
    progress_draw(n, n, t0, 1);
  }
  rc = mproc_async_get(r, MPROC_FOREVER);
  if (err != NULL) {
    if (r->has_merr) {
      *err = r->merr;
    } else {
      memset(err, 0, sizeof *err);
    }
  }
  mproc_shm_free(ustate);
  mproc_async_free(r);
  return rc;
}

int mproc_async_map_error(const mproc_async *r, mproc_map_error *err) {
  if (err == NULL || !mproc_async_ready(r) || r->kind != TK_JOB ||
      !r->has_merr) {
    return MPROC_ESTATE;
  }
  *err = r->merr;
  return 0;
}

int mproc_pool_map_bytes(mproc_pool *p, mproc_task_fn fn, void *ctx,
                         const mproc_bytes *args, size_t n,
                         mproc_result *results, const mproc_map_opts *opts) {
  (void)opts;
  if (p == NULL || fn == NULL || (n > 0 && (args == NULL || results == NULL))) {
    return MPROC_EINVAL;
  }
  mproc_async **rs = calloc(n > 0 ? n : 1, sizeof *rs);
  if (rs == NULL) {
    return MPROC_ENOMEM;
  }
  int rc = 0;
  size_t made = 0;
  for (; made < n; made++) {
    rc = mproc_pool_apply_async(p, fn, ctx, args[made].data, args[made].len,
                                NULL, &rs[made]);
    if (rc != 0) {
      break;
    }
  }
  int first = 0;
  for (size_t i = 0; i < made; i++) {
    int e = mproc_async_get(rs[i], MPROC_FOREVER);
    results[i].data = NULL;
    results[i].len = 0;
    results[i].error = e;
    results[i].task_code = rs[i]->task_code;
    if (e == 0) {
      results[i].data = rs[i]->data;
      results[i].len = rs[i]->len;
      rs[i]->data = NULL;
    } else if (first == 0) {
      first = e;
    }
    mproc_async_free(rs[i]);
  }
  free(rs);
  return rc != 0 ? rc : first;
}

int mproc_pool_map_async(mproc_pool *p, mproc_map_fn fn, void *ctx,
                         const void *in, size_t n, size_t in_size, void *out,
                         size_t out_size, const mproc_map_opts *opts,
                         mproc_async **rout) {
  /* The bar is mproc_pool_map's alone (nobody waits here to draw it),
   * and r->progress tells the completion that a drawer frees the unit
   * states: clear it. */
  mproc_map_opts o;
  if (opts != NULL) {
    o = *opts;
    o.progress = 0;
    opts = &o;
  }
  return map_start(p, fn, ctx, in, n, in_size, out, out_size, opts, 0, rout);
}

/* ==================== imap ==================== */

int mproc_pool_imap(mproc_pool *p, mproc_map_fn fn, void *ctx,
                    const void *in, size_t n, size_t in_size, size_t out_size,
                    long chunksize, int unordered, mproc_imap **out) {
  if (out == NULL || chunksize < 0) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  mproc_imap *it = calloc(1, sizeof *it);
  if (it == NULL) {
    return MPROC_ENOMEM;
  }
  mproc_map_opts o;
  memset(&o, 0, sizeof o);
  o.chunksize = chunksize > 0 ? chunksize : 1;
  int rc = map_start(p, fn, ctx, in, n, in_size, NULL, out_size, &o, 1,
                     &it->r);
  if (rc != 0) {
    free(it);
    return rc;
  }
  it->unordered = unordered != 0;
  if (it->unordered && n > 0) {
    it->seen = calloc(it->r->nunits, 1);
    if (it->seen == NULL) {
      mproc_imap_free(it);
      return MPROC_ENOMEM;
    }
  }
  *out = it;
  return 0;
}

int mproc_imap_task_code(const mproc_imap *it) {
  return it != NULL ? it->last_code : 0;
}

int mproc_imap_progress(mproc_imap *it, int on) {
  if (it == NULL) {
    return MPROC_EINVAL;
  }
  it->progress = on != 0 && isatty(STDERR_FILENO);
  it->t0 = mproc__now_ns();
  it->drawn = 0;
  return 0;
}

/* Take up unit u for delivery (unordered). */
static int imap_take_unit(mproc_imap *it, size_t u) {
  if (it->seen[u]) {
    return 0;
  }
  it->seen[u] = 1;
  it->cu = u + 1;
  it->citem = u * it->r->unit;
  return 1;
}

/* The next item to deliver, if its unit is finished: 1 and *item, or 0. */
static int imap_find(mproc_imap *it, size_t *item) {
  mproc_async *r = it->r;
  if (!it->unordered) {
    size_t u = it->next / r->unit;
    if (__atomic_load_n(&r->ustate[u], __ATOMIC_ACQUIRE) == U_PENDING) {
      return 0;
    }
    *item = it->next++;
    return 1;
  }
  for (;;) {
    if (it->cu != 0) {
      size_t u = it->cu - 1;
      size_t end = (u + 1) * r->unit < r->n ? (u + 1) * r->unit : r->n;
      *item = it->citem++;
      if (it->citem >= end) {
        it->cu = 0;
      }
      return 1;
    }
    int fin = atomic_load(&r->ish->finished);
    size_t norder = atomic_load(&r->ish->norder);
    int took = 0;
    while (it->ocur < norder && it->ocur < r->nunits) {
      size_t v = __atomic_load_n(&r->order[it->ocur], __ATOMIC_ACQUIRE);
      if (v == 0 && !fin) {
        break; /* being written; or a hole a killed worker left */
      }
      it->ocur++;
      if (v != 0 && imap_take_unit(it, v - 1)) {
        took = 1;
        break;
      }
    }
    if (took) {
      continue;
    }
    if (!fin) {
      return 0;
    }
    /* The job is over: units a killed worker finished without listing. */
    while (it->scan < r->nunits && !took) {
      took = imap_take_unit(it, it->scan++);
    }
    if (!took) {
      return 0;
    }
  }
}

int mproc_imap_next(mproc_imap *it, void *out, size_t *index,
                    double timeout) {
  if (it == NULL || (out == NULL && it->r->out_size > 0) ||
      timeout != timeout) {
    return MPROC_EINVAL;
  }
  mproc_async *r = it->r;
  if (it->delivered == r->n) {
    return MPROC_EOF;
  }
  mproc__deadline d;
  if (mproc__deadline_init(&d, timeout) != 0) {
    return MPROC_EINVAL;
  }
  size_t item;
  imapsh *ish = r->ish;
  while (!imap_find(it, &item)) {
    /* Sleep on the job's sequence word: raise `waiting`, look again,
     * sleep while the word is unchanged (a worker bumps it after marking
     * units, then wakes if it sees `waiting`). */
    uint32_t seq = atomic_load(&ish->seq);
    atomic_store(&ish->waiting, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (imap_find(it, &item)) {
      atomic_store(&ish->waiting, 0);
      break;
    }
    if (mproc__deadline_left_ns(&d) == 0 && !d.forever) {
      atomic_store(&ish->waiting, 0);
      return MPROC_ETIMEDOUT;
    }
    mproc__deadline slice = d;
    if (it->progress) {
      mproc__deadline_init(&slice, 0.2);
      if (!d.forever && d.at_ns < slice.at_ns) {
        slice = d;
      }
      progress_draw(it->delivered, r->n, it->t0, 0);
    }
    mproc__futex_wait((uint32_t *)&ish->seq, seq, &slice);
    atomic_store(&ish->waiting, 0);
  }
  size_t u = item / r->unit;
  int err = 0;
  it->last_code = 0;
  if (__atomic_load_n(&r->ustate[u], __ATOMIC_ACQUIRE) == U_LOST &&
      item >= r->dead_from[u]) {
    err = r->uerr[u];
  } else if (r->icodes[item] != 0) {
    err = MPROC_ETASK;
    it->last_code = r->icodes[item];
  }
  it->delivered++;
  if (it->progress) {
    uint64_t now = mproc__now_ns();
    if (it->delivered == r->n || now - it->drawn >= 200000000ull) {
      it->drawn = now;
      progress_draw(it->delivered, r->n, it->t0, it->delivered == r->n);
    }
  }
  if (index != NULL) {
    *index = item;
  }
  if (r->out_size > 0) {
    memcpy(out, r->aout + item * r->out_size, r->out_size);
  }
  return err;
}

int mproc_imap_free(mproc_imap *it) {
  if (it == NULL) {
    return 0;
  }
  mproc_async *r = it->r;
  /* Once ready, the result thread no longer touches r (and the pool may
   * be gone); before, whichever of the two comes last frees the arrays. */
  int mine = atomic_load(&r->ready);
  if (!mine) {
    mproc_pool *p = r->pool;
    pthread_mutex_lock(&p->mu);
    mine = r->all_done;
    if (!mine) {
      r->abandoned = 1;
    }
    pthread_mutex_unlock(&p->mu);
  }
  if (mine) {
    imap_release_arrays(r);
  }
  async_unref(r);
  free(it->seen);
  free(it);
  return 0;
}

/* ==================== statistics ==================== */

int mproc_pool_stats_get(mproc_pool *p, mproc_pool_stats *out) {
  if (p == NULL || out == NULL) {
    return MPROC_EINVAL;
  }
  pthread_mutex_lock(&p->mu);
  *out = p->stats;
  pthread_mutex_unlock(&p->mu);
  out->workers = p->nworkers;
  for (int i = 0; i < p->nworkers && i < 64; i++) {
    out->busy_seconds[i] =
        (double)atomic_load(&p->sh->slots[i].busy_ns) / 1e9;
  }
  return 0;
}
