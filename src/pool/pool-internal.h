/*
 * src/pool/pool-internal.h - what the pool module's files share: the
 * shared (arena) structures, the parent's pool, AsyncResult and imap
 * objects, the constants, and the helpers more than one file calls.
 *
 * DESIGN (the whole module; each file's top says what it owns)
 *
 * Shared state.  One arena block (struct shpool) holds what the parent and
 * the workers share: a robust process-shared mutex, the FIFO of pending
 * tasks, the FIFO of done tasks, two futex sequence words (task_seq: work
 * was queued or the pool closed; res_seq: a task finished or a worker
 * reported its initializer), and one slot per worker naming the task or
 * the map job and claim that worker runs.  Every task is an arena block
 * (struct shtask) holding the function pointer (the owner's address),
 * the argument (copied into the arena) or the map it covers, and the
 * outcome.  All list links are plain arena pointers, valid in every
 * process.
 *
 * Start methods.  Workers are started by the pool's start method, fixed
 * at mproc_pool_new.  Forked workers share the owner's addresses, so a
 * task's function and ctx are used as they are.  Spawned and forkserver
 * workers run another image of the program: a worker turns each function
 * address (and a ctx that is static data) into its own through the
 * owner's table of loaded objects (process/funcref.c), the one its
 * bootstrap brought, or, for a library the owner loaded later, the table
 * the owner publishes in shpool.objtab when a submission finds that its
 * objects changed.  So such a pool checks at submission that fn lies in a
 * loaded object and that ctx is NULL, arena memory or static data
 * (MPROC_EINVAL otherwise: nothing copies heap memory to a worker).  The
 * worker's arguments (pool_wargs) hold only arena and such addresses.
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
 * map.  A whole map is one task, a "job" (see "Map jobs" in job.c): its
 * items are cut in units (chunks of chunksize items; one item each in
 * adaptive mode), and workers claim units with one atomic add on the
 * job's counter, with no lock and no allocation per unit.  Results are
 * written in place into an arena array, each unit's state into a byte
 * array, each claim and its progress into the worker's own slot.  So a
 * worker that dies fails exactly the items of its claim it had not
 * finished.  imap uses the same job; its iterator reads the arena arrays
 * directly and sleeps on a futex word the workers bump.
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
 * Files.
 *   pool.c     the pool's life: new, close, terminate, cancel, join, free;
 *              the registry of live pools and its exit handler; statistics.
 *   lock.c     the shared mutex: taking it, repairing the lists after a
 *              holder died, killing a holder stuck in it.
 *   worker.c   in the worker: its main loop, apply tasks,
 *              mproc_task_return and mproc_task_fail.
 *   job.c      map jobs: joining, claiming units, a dead claimant's lost
 *              items, finishing a job.
 *   results.c  the parent: starting and reaping workers, completing tasks,
 *              the result thread.
 *   apply.c    apply, apply_async, queueing tasks, the AsyncResult calls.
 *   map.c      map, map_async, map_bytes, imap, the progress bar.
 */
#ifndef MPROC_POOL_INTERNAL_H
#define MPROC_POOL_INTERNAL_H

#define _GNU_SOURCE 1

#include "mproc/pool.h"

#include "../internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define POOL_MSG_MAX 1024
#define POOL_POLL_NS 10000000ull   /* result thread's liveness period */
#define POOL_TERM_GRACE_NS 200000000ull
#define POOL_SPIN_NS 50000ull          /* an idle worker's watch: 50 us */
#define POOL_WAIT_SPIN_NS 20000ull     /* a result waiter's watch: 20 us */
/* How long a waiting thread that collects results waits for the arena's
 * lock to free their blocks, before it leaves them to the result thread:
 * the lock is held for microseconds unless its holder is descheduled or
 * stopped, and a result in hand is not held back for a free. */
#define POOL_WAITER_FREE_S 0.01
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
   * the workers claim with one atomic add each (see job.c). */
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
  /* Under spawn and forkserver: the owner's table of loaded objects, as
   * of its last submission that found it changed (a library dlopen'ed
   * since the workers started), for workers to translate addresses with
   * (see "Start methods" above).  NULL until the first change. */
  _Atomic(struct pool_objtab *) objtab;
  int nslots;
  shslot slots[];
} shpool;

/* An object table published in the arena; older ones stay linked (a
 * worker may still be reading one) until the pool is freed. */
typedef struct pool_objtab {
  struct pool_objtab *older;
  size_t len;
  unsigned char bytes[];
} pool_objtab;

/* What a worker process is started with (its argument bytes): only arena
 * addresses and the owner's addresses of functions and static data, so
 * that a spawned worker, which has none of the owner's heap, can use it. */
typedef struct pool_wargs {
  shpool *sh;
  int slot;
  long maxtasksperchild;
  mproc_task_fn initializer;
  void *initctx;
  size_t initarg_len; /* the initializer's bytes follow */
} pool_wargs;

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
  int portable;             /* workers are spawned or forkserver children:
                               fn and ctx must be portable (check_portable) */
  uint64_t objtab_gen;      /* objects' generation at the last publication */
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
  void *deferred;           /* arena blocks a waiting thread could not free
                               by its deadline, for the result thread; each
                               block's first word links the list */
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

/* ==================== lock.c: the shared mutex ==================== */

/* A worker's lock of the shared state: waits without a bound, repairs
 * the lists if a worker died holding it (sh_repair). */
void mproc__pool_sh_lock(shpool *sh);

static inline void sh_unlock(shpool *sh) { mproc__rmutex_unlock(&sh->mu); }

/* The parent's lock of the shared state: a holder stuck past
 * POOL_STUCK_NS is killed.  d: the caller's deadline (NULL: none).
 * Returns 0 (locked), or MPROC_ETIMEDOUT once d passed. */
int mproc__pool_psh_lock_until(mproc_pool *p, const mproc__deadline *d);

static inline void psh_lock(mproc_pool *p) {
  (void)mproc__pool_psh_lock_until(p, NULL);
}

/* Kill `holder` if it is one of p's workers, stuck in `what` (a lock)
 * for POOL_STUCK_NS; its death is reported with that reason. */
void mproc__pool_unstick(mproc_pool *p, pid_t holder, const char *what);

static inline void seq_bump_wake(_Atomic uint32_t *seq, int n) {
  atomic_fetch_add(seq, 1);
  mproc__futex_wake((uint32_t *)seq, n);
}

/* Something is on the done list: wake the threads waiting for results in
 * the parent if there are any (they collect it), else the result thread.
 * Both words move, so neither can sleep on a stale value. */
static inline void results_wake(shpool *sh) {
  atomic_fetch_add(&sh->res_seq, 1);
  atomic_fetch_add(&sh->fg_seq, 1);
  if (atomic_load(&sh->fg_waiters) > 0) {
    mproc__futex_wake((uint32_t *)&sh->fg_seq, INT32_MAX);
  } else {
    mproc__futex_wake((uint32_t *)&sh->res_seq, 1);
  }
}

/* ==================== worker.c: in the worker ==================== */

/* The worker process's main (an mproc_process target): arg holds the
 * pool and the slot number. */
int mproc__pool_worker_main(const void *arg, size_t len, void *ctx);

/* Whether fn and ctx can reach a spawned worker: fn in a loaded object,
 * ctx NULL, arena memory or static data.  0 or MPROC_EINVAL. */
int mproc__pool_portable(const void *fn, const void *ctx);
/* The submission check of a pool whose workers are not forked (0 for a
 * forked pool): mproc__pool_portable, and the object table published
 * again when objects were loaded since.  0 or a negative code. */
int mproc__pool_check_portable(mproc_pool *p, const void *fn,
                               const void *ctx);
/* In a worker: the owner's address addr as this process's (as is in a
 * forked worker, for arena memory and NULL).  0, or MPROC_ENOFUNC /
 * MPROC_EBUILD with the reason in msg (POOL_MSG_MAX bytes). */
int mproc__pool_local(shpool *sh, const void *addr, void **out, char *msg);

/* ==================== job.c: map jobs ==================== */

/* Whether a slot other than `except` names job st (mu held). */
int mproc__pool_job_has_users(const shpool *sh, const shtask *st,
                              const shslot *except);
/* Wake an imap iterator waiting on the job's units (if any). */
void mproc__pool_job_notify(shtask *st);
/* Finish an exhausted job nobody works in any more (mu held). */
void mproc__pool_job_finish_locked(shpool *sh, shtask *st);
/* A worker that named a job in slot me died (mu held): its claim's
 * unfinished items are lost with err.  Returns 1 if that finished the
 * job. */
int mproc__pool_job_claimant_died(shpool *sh, shslot *me, int err, int sig,
                                  const char *msg);
/* Work in job st (named in slot me) until no unit is left or `budget`
 * claims were made (0: no limit).  Returns the claims made. */
long mproc__pool_worker_job(shpool *sh, shslot *me, shtask *st,
                            long budget);

/* ==================== results.c: the parent ==================== */

/* Start a worker in slot i.  Returns 0 or an mproc error. */
int mproc__pool_worker_start(mproc_pool *p, int i);
/* Join and free slot i's ended (or killed) process, its exit code in
 * *code, and SIGKILL its process group. */
void mproc__pool_worker_reap(mproc_pool *p, int i, int *code);
/* Drop a reference to r; the last frees it. */
void mproc__pool_async_unref(mproc_async *r);
/* Mark r ready, wake its waiters, run its callback, drop the pool's
 * reference. */
void mproc__pool_async_finish(mproc_pool *p, mproc_async *r);
/* Free an imap's (or a map's) arena arrays. */
void mproc__pool_imap_release_arrays(mproc_async *r,
                                     const mproc__deadline *d);
/*
 * Free an arena block for a thread whose caller's deadline is d (NULL or
 * forever: wait for the allocator's lock as mproc_shm_free does).  A free
 * that cannot get the lock by d (a worker stopped while holding it) is
 * not waited for: the block goes to p->deferred, and the result thread,
 * which has no caller's deadline, frees it (mproc__pool_free_deferred).
 * A death of this process in between leaks the block with the arena.
 */
void mproc__pool_shm_free(mproc_pool *p, void *ptr, const mproc__deadline *d);

/* Free the deferred blocks, waiting for the lock as long as it takes
 * (the result thread, and pool release). */
void mproc__pool_free_deferred(mproc_pool *p);

/* Take the done list and complete its tasks (on the result thread:
 * on_rt; elsewhere those with callbacks are handed over).  d: how long
 * to wait for the lock (NULL: no bound).  Returns how many. */
int mproc__pool_collect_until(mproc_pool *p, int on_rt,
                              const mproc__deadline *d);
/* The result thread (a pthread start routine; arg: the pool). */
void *mproc__pool_rt_main(void *arg);

/* ==================== apply.c ==================== */

/* Queue n tasks, waking up to `wake` sleeping workers.  Returns 0, or
 * MPROC_ECLOSED / MPROC_EBROKEN. */
int mproc__pool_submit(mproc_pool *p, shtask *const *tasks, size_t n,
                       size_t wake);
/* A new AsyncResult of `kind` (TK_*) with two references, or NULL. */
mproc_async *mproc__pool_async_new(mproc_pool *p, int kind);

#endif /* MPROC_POOL_INTERNAL_H */
