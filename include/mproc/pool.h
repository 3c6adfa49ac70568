/*
 * mproc/pool.h - Python's multiprocessing.Pool in C: apply, apply_async,
 * map, map_async, imap, imap_unordered, close, terminate, join; a worker
 * that dies fails its own task instead of hanging the pool.
 *
 * The API contract of issue 5, implemented in src/pool/ (the DESIGN
 * comment of src/pool/pool-internal.h says how); docs/pool.md is the
 * guide, with Python's Pool side by side.
 *
 * DESIGN
 * Workers are forked from the program when the pool is created (and again
 * to replace one), so a task is a plain C function pointer: the worker
 * runs the same binary at the same addresses.  Arguments and results are
 * bytes, copied through the shared arena: no pickling.  Everything the
 * parent and the workers share (the task queue, each worker's slot naming
 * the task it runs, the result records, map's input and output arrays)
 * lives in the arena, so a worker reads a chunk of map input where the
 * parent put it and writes results in place.
 *
 * The parent runs one result thread per pool (Python runs three).  It
 * collects results and checks every worker's pidfd at least every 10 ms,
 * so:
 *   - a worker that dies (a signal, the OOM killer, exit() inside a task)
 *     is seen within 10 ms; the task it held (for map: the items of its
 *     chunk not yet done) fails with MPROC_EWORKERDIED and the signal or
 *     exit status, a new worker replaces it, every other result is
 *     unaffected; Python's Pool hangs forever there.  A worker that
 *     faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL) leaves a crash note: the
 *     message names the faulting address;
 *   - a task past the per-task timeout gets its worker stopped (SIGTERM,
 *     then SIGKILL after timeout_grace), fails with MPROC_ETIMEDOUT, and a
 *     new worker replaces it;
 *   - callbacks and error callbacks of the async calls run on this thread,
 *     one at a time, as Python's run on its result-handler thread: a slow
 *     callback delays every later result.
 * Workers die with the parent (PR_SET_PDEATHSIG), ignore SIGINT (the
 * parent decides: a Ctrl-C in the terminal ends the program, and the pool
 * is torn down by it), and leave with _exit.
 *
 * Descendants.  Each worker leads a process group of its own (so a
 * Ctrl-C to the terminal's foreground group does not reach it either).
 * When a worker ends for any reason the pool sees (a death, a
 * task_timeout kill, terminate, free, the program's exit), the pool
 * SIGKILLs that group after reaping the worker: processes a task forked
 * (and their children) end with it.  Limits: a descendant that leaves the
 * group (setsid, setpgid) escapes; so does every descendant when the
 * parent itself is SIGKILLed or calls _exit (the workers then die of
 * their death signal, and nobody is left to kill their groups).
 *
 * A stuck worker.  A worker that holds the pool's lock, or the arena
 * allocator's lock, for over 1 s (stopped by SIGSTOP or a debugger, or
 * not run for that long) is SIGKILLed by the parent, and its state is
 * repaired as for any death: its task fails with MPROC_EWORKERDIED, the
 * message says why.  So no wait of the parent depends on a worker's
 * progress: task_timeout is enforced, and get/join/terminate/free return.
 * A get's own timeout holds while either lock is held: a thread in get
 * that collects results does not wait over 10 ms (or its timeout) for the
 * arena's lock to free their blocks, but leaves those frees to the
 * result thread, so a result in hand is returned at once.
 *
 * At exit (return from main, exit()) with a live pool, the pool is
 * cancelled before the process module joins its children: nothing is
 * replaced, the workers are stopped, and exit finishes.
 *
 * Errors are negative codes from mproc/errno.h.  Timeouts are double
 * seconds (mproc/common.h): MPROC_FOREVER waits, 0 polls.  A pool may be
 * used from several threads of the process that created it, not from its
 * workers or other processes (MPROC_EFORKED there).
 */
#ifndef MPROC_POOL_H
#define MPROC_POOL_H

#include "mproc/common.h"
#include "mproc/context.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_pool mproc_pool;
typedef struct mproc_async mproc_async; /* Python's AsyncResult */
typedef struct mproc_imap mproc_imap;   /* imap's iterator */
typedef struct mproc_task mproc_task;   /* a running task, in a worker */

/* ==================== what runs in a worker ==================== */

/*
 * A task: arg/len are the argument bytes; ctx is the pointer given with
 * the function (mproc_pool_apply's ctx, the initializer's initctx),
 * passed as is: see "What a ctx may point to" below.  Returns 0 for
 * success (its result is what mproc_task_return set, else empty), or any
 * nonzero value for failure: the caller then sees MPROC_ETASK, with this
 * value as the task's own code and the message of mproc_task_fail, if any
 * (Python's re-raised exception and its traceback text).
 *
 * What a ctx may point to.  Workers are forked, so a ctx reaches a worker
 * as the same address, not as a copy of what it points to.  It must point
 * at memory the worker sees: arena memory (mproc_shm_alloc, the shared
 * objects of sync.h, shared.h, queue.h), which every worker shares with
 * the parent both ways; or memory the parent set up before the pool was
 * created and does not change afterwards (a worker reads the parent's
 * memory as it was when that worker was forked, and a replacement worker
 * is forked later, so it sees the parent's memory as it is then).  Writes
 * a worker makes to non-arena memory stay in that worker.  NULL is fine.
 */
typedef int (*mproc_task_fn)(mproc_task *t, const void *arg, size_t len,
                             void *ctx);

/* In a task: the result bytes (copied now; a second call replaces the
 * first).  Returns 0, MPROC_ENOMEM (the arena is full: the task then
 * fails with MPROC_ENOMEM), MPROC_EINVAL. */
MPROC_EXTERN int mproc_task_return(mproc_task *t, const void *data,
                                   size_t len);
/* In a task: a message for the caller (printf format, at most 1 KiB is
 * kept).  Returns 0.  The task still decides success by its return. */
MPROC_EXTERN int mproc_task_fail(mproc_task *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * map's function: one fixed-size input record at in, one fixed-size
 * result record to fill at out (zeroed before the call, except in an
 * in-place map of arena memory, where out == in: see mproc_pool_map); ctx
 * is the pointer given with the function (the same for every item, with
 * the rule of mproc_task_fn).  Returns 0, or nonzero to fail this item
 * (map then reports the first failing item's index and code, after every
 * item ran, as Python does).  For starmap, make the record a struct of
 * the arguments.
 */
typedef int (*mproc_map_fn)(const void *in, void *out, void *ctx);

/* ==================== the pool ==================== */

typedef struct mproc_pool_opts {
  int processes;             /* workers; 0: mproc_cpu_count(); < 0:
                                MPROC_EINVAL */
  mproc_task_fn initializer; /* run once in every worker before its first
                                task (NULL: none); a nonzero return fails
                                mproc_pool_new with MPROC_EINIT and its
                                message, never a respawn loop */
  const void *initarg;       /* the initializer's argument bytes */
  size_t initarg_len;
  void *initctx;             /* the initializer's ctx (see mproc_task_fn) */
  long maxtasksperchild;     /* a worker is replaced after this many tasks
                                (0: never; < 0: MPROC_EINVAL); an apply
                                task counts one, so does each map chunk */
  double task_timeout;       /* seconds a task (a map chunk) may run; 0
                                (the default) or < 0 (MPROC_FOREVER): no
                                limit; NaN: MPROC_EINVAL.  Past it, its
                                worker gets SIGTERM, and SIGKILL
                                timeout_grace seconds later */
  char *errbuf;              /* where mproc_pool_new puts an initializer's
                                message (NULL: nowhere) */
  size_t errcap;
  double timeout_grace;      /* seconds from SIGTERM to SIGKILL for a task
                                over task_timeout; 0 (the default): 1 s;
                                < 0 or NaN: MPROC_EINVAL */
  int on_death;              /* MPROC_POOL_REPLACE (0) or
                                MPROC_POOL_BREAK, below */
  const mproc_context *context; /* how workers (replacements too) are
                                   started (mproc/context.h); NULL: the
                                   default context, resolved at
                                   mproc_pool_new */
} mproc_pool_opts;

/*
 * What a worker's death does to the pool.
 * MPROC_POOL_REPLACE (the default): the task it ran fails with
 *   MPROC_EWORKERDIED and a new worker takes its place.
 * MPROC_POOL_BREAK (concurrent.futures' BrokenProcessPool): a worker that
 *   dies in a task (not one the pool stopped for task_timeout, not an idle
 *   one) fails its task with MPROC_EWORKERDIED, every other worker is
 *   stopped, everything outstanding fails with MPROC_EBROKEN, and so does
 *   any later submission.
 * Either way a replacement whose initializer fails is started again after
 * 0.1 s, then 0.2, 0.4 and 0.8 s, and after 5 failures in a row that slot
 * stays empty; a pool left with no worker at all is broken (MPROC_EBROKEN)
 * instead of hanging.
 */
enum { MPROC_POOL_REPLACE = 0, MPROC_POOL_BREAK = 1 };

/*
 * mproc_pool_new - start the workers.  Returns 0 and *out; MPROC_EINVAL;
 * MPROC_EINIT (an initializer failed: every started worker is stopped);
 * MPROC_EAGAIN (fork refused); MPROC_ENOMEM.
 */
MPROC_EXTERN int mproc_pool_new(mproc_pool **out, const mproc_pool_opts *opts);

/* No new work (MPROC_ECLOSED for any later submission); workers leave
 * when the queued work is done.  Idempotent. */
MPROC_EXTERN int mproc_pool_close(mproc_pool *p);
/* Stop the workers now (SIGTERM, then SIGKILL after a grace period);
 * pending results fail with MPROC_ECANCELED. */
MPROC_EXTERN int mproc_pool_terminate(mproc_pool *p);
/* Stop the pool from anywhere, a signal handler included (it only stores
 * a flag and wakes the result thread: async-signal-safe): the result
 * thread terminates the workers and every pending result fails with
 * MPROC_ECANCELED promptly; later submissions get MPROC_ECLOSED.  The
 * program still calls mproc_pool_join (allowed at once: a cancelled pool
 * counts as closed) and mproc_pool_free afterwards, outside the handler.
 * Returns 0 or MPROC_EINVAL. */
MPROC_EXTERN int mproc_pool_cancel(mproc_pool *p);
/* Drain instead of kill (concurrent.futures' shutdown(cancel_futures=
 * True) without the shutdown): every task not started yet fails with
 * MPROC_ECANCELED, a map hands out no more chunks (its items not taken
 * fail with MPROC_ECANCELED, those running finish), and the pool stays
 * open for new work.  Async-signal-safe like mproc_pool_cancel; the
 * result thread does the work promptly after.  Returns 0 or
 * MPROC_EINVAL. */
MPROC_EXTERN int mproc_pool_cancel_pending(mproc_pool *p);
/* Wait for the workers to end: after close or terminate only (else
 * MPROC_ESTATE, Python's "Pool is still running").  Returns 0 or
 * MPROC_ETIMEDOUT. */
MPROC_EXTERN int mproc_pool_join(mproc_pool *p, double timeout);
/* Terminate if still running, join, free.  NULL: no-op. */
MPROC_EXTERN int mproc_pool_free(mproc_pool *p);

/* ==================== apply ==================== */

/* A callback runs once the result is ready (mproc_async_data and
 * mproc_async_error work in it); a thread waiting in mproc_async_get may
 * return before the callback has finished (in Python, after).  A map of
 * nothing runs its callback in the calling thread. */
typedef void (*mproc_async_cb)(mproc_async *r, void *user);

typedef struct mproc_apply_opts {
  mproc_async_cb callback;       /* on success, on the result thread */
  mproc_async_cb error_callback; /* on failure, on the result thread */
  void *user;                    /* passed to both */
} mproc_apply_opts;

/*
 * mproc_pool_apply_async - queue fn(t, arg, len, ctx) and return its
 * AsyncResult at once.  Returns 0 and *out; MPROC_ECLOSED; MPROC_EINVAL;
 * MPROC_ENOMEM.
 * mproc_pool_apply - the same, waiting: 0 with *result (malloc'd, free()
 * it; may be NULL with *len 0) or the task's failure (MPROC_ETASK,
 * MPROC_EWORKERDIED, MPROC_ETIMEDOUT, MPROC_ECANCELED after terminate or
 * cancel, MPROC_EBROKEN, MPROC_ENOMEM when the result does not fit).
 */
MPROC_EXTERN int mproc_pool_apply_async(mproc_pool *p, mproc_task_fn fn,
                                        void *ctx, const void *arg, size_t len,
                                        const mproc_apply_opts *opts,
                                        mproc_async **out);
MPROC_EXTERN int mproc_pool_apply(mproc_pool *p, mproc_task_fn fn,
                                  void *ctx, const void *arg, size_t len,
                                  void **result, size_t *result_len);

/* ==================== AsyncResult ==================== */

/* Wait up to timeout; then the outcome: 0 (success), MPROC_ETIMEDOUT (not
 * ready yet), or the task's failure (MPROC_ETASK, MPROC_EWORKERDIED,
 * MPROC_ETIMEDOUT for a task over the pool's task_timeout,
 * MPROC_ECANCELED after terminate). */
MPROC_EXTERN int mproc_async_get(mproc_async *r, double timeout);
/* Wait up to timeout: 0 (ready) or MPROC_ETIMEDOUT. */
MPROC_EXTERN int mproc_async_wait(mproc_async *r, double timeout);
/* 1 or 0. */
MPROC_EXTERN int mproc_async_ready(const mproc_async *r);
/* 1 or 0 once ready; MPROC_ESTATE before (Python's ValueError). */
MPROC_EXTERN int mproc_async_successful(const mproc_async *r);
/* The result bytes once ready and successful (NULL before), valid until
 * free. */
MPROC_EXTERN const void *mproc_async_data(const mproc_async *r, size_t *len);
/* Once ready and failed: the task's own return value (or 0 when the
 * worker died), the signal that killed the worker (0 if none), and the
 * message (of mproc_task_fail, or one mproc wrote, such as "worker 4711
 * killed by SIGKILL"), valid until free.  MPROC_ESTATE if not ready or
 * successful. */
MPROC_EXTERN int mproc_async_error(const mproc_async *r, int *task_code,
                                   int *signal, const char **message);
/* Free.  Safe at any time, also before the result is ready, from its
 * own callback, and after the pool was freed: the pool keeps its own
 * reference until the callback returned.  NULL: no-op. */
MPROC_EXTERN int mproc_async_free(mproc_async *r);

/* ==================== map ==================== */

enum {
  MPROC_CHUNK_PYTHON = 0,  /* Python's formula: ceil(n / (4 * workers)) */
  MPROC_CHUNK_ADAPTIVE = -1 /* sized from measured task durations, as
                               joblib's auto batching */
};

typedef struct mproc_map_opts {
  long chunksize;          /* items per task; MPROC_CHUNK_PYTHON (0) or
                              MPROC_CHUNK_ADAPTIVE, or > 0 */
  int progress;            /* mproc_pool_map only (map_async has nobody
                              waiting to draw it; for imap see
                              mproc_imap_progress): draw a progress bar on
                              stderr (items done, rate, ETA), only if
                              stderr is a terminal */
  mproc_async_cb callback; /* map_async only, as apply_async's */
  mproc_async_cb error_callback;
  void *user;
} mproc_map_opts;

/* The first failing item of a map: its index and the code it returned
 * (or 0 when its worker died), and the failure (MPROC_ETASK,
 * MPROC_EWORKERDIED, MPROC_ETIMEDOUT). */
typedef struct mproc_map_error {
  size_t index;
  int task_code;
  int error;
} mproc_map_error;

/*
 * mproc_pool_map - fn(in[i], out[i], ctx) for n records of in_size bytes
 * into records of out_size bytes, chunked; results in input order.  The fast
 * path: the input is copied once into the arena (not at all when in is
 * arena memory), workers write results into an arena array copied to out
 * at the end (or straight into out when out is arena memory, with no
 * copy), no allocation per item.
 * Returns 0; the first failure (see mproc_map_error, filled when err is
 * not NULL) after every item ran; MPROC_ECLOSED; MPROC_EBROKEN;
 * MPROC_ECANCELED (terminate or cancel; items not run are lost);
 * MPROC_EINVAL; MPROC_EOVERFLOW (n * size overflows); MPROC_ENOMEM.  The
 * result record of an item that was lost (its worker died or was stopped
 * before finishing it) is zeros.  n == 0 returns 0 at once (MPROC_ECLOSED
 * on a closed pool).
 * In place: out == in with out_size == in_size maps the records onto
 * themselves.  fn is then called with its result record holding the
 * input (in == out when the buffer is arena memory; otherwise out is a
 * zeroed record and in a copy of the input), so it must write its whole
 * result.  Any other overlap of in and out is MPROC_EINVAL.
 * mproc_pool_map_async - the same, returning an AsyncResult at once; out
 * must stay valid until it is ready (it is filled before).
 */
MPROC_EXTERN int mproc_pool_map(mproc_pool *p, mproc_map_fn fn, void *ctx,
                                const void *in, size_t n, size_t in_size,
                                void *out, size_t out_size,
                                const mproc_map_opts *opts,
                                mproc_map_error *err);
MPROC_EXTERN int mproc_pool_map_async(mproc_pool *p, mproc_map_fn fn,
                                      void *ctx, const void *in, size_t n,
                                      size_t in_size, void *out,
                                      size_t out_size,
                                      const mproc_map_opts *opts,
                                      mproc_async **r);
/* The first failure of a ready map_async (MPROC_ESTATE if not ready or
 * successful). */
MPROC_EXTERN int mproc_async_map_error(const mproc_async *r,
                                       mproc_map_error *err);

/* Items that are not records: n arguments of any length in, n results of
 * any length out (each malloc'd in results[i].data, free() them). */
typedef struct mproc_bytes {
  const void *data;
  size_t len;
} mproc_bytes;
/* mproc_pool_map_bytes returns 0, the first failure among the results,
 * or a submission's error (MPROC_ECLOSED...): then the results from the
 * first item not submitted on are left as they were (zero them first to
 * tell).  opts is accepted for symmetry and not used: each item is one
 * apply task. */
typedef struct mproc_result {
  void *data;    /* malloc'd result bytes (NULL when empty or failed) */
  size_t len;
  int error;     /* 0, MPROC_ETASK, MPROC_EWORKERDIED, MPROC_ETIMEDOUT,
                    MPROC_ECANCELED, MPROC_EBROKEN, MPROC_ENOMEM */
  int task_code; /* the task's own return value when it failed */
} mproc_result;
MPROC_EXTERN int mproc_pool_map_bytes(mproc_pool *p, mproc_task_fn fn,
                                      void *ctx, const mproc_bytes *args,
                                      size_t n, mproc_result *results,
                                      const mproc_map_opts *opts);

/* ==================== imap ==================== */

/*
 * mproc_pool_imap - an iterator over the results of fn on n records, in
 * input order (unordered == 0, Python's imap) or as they complete
 * (unordered != 0, imap_unordered); chunksize >= 1 (0: 1, as Python).
 * mproc_imap_next - the next result into out (out_size bytes) and its
 * index: 0; MPROC_ETIMEDOUT (none within the timeout); MPROC_EOF (all
 * delivered); or that item's failure (the iterator goes on).
 */
MPROC_EXTERN int mproc_pool_imap(mproc_pool *p, mproc_map_fn fn, void *ctx,
                                 const void *in, size_t n, size_t in_size,
                                 size_t out_size, long chunksize,
                                 int unordered, mproc_imap **out);
MPROC_EXTERN int mproc_imap_next(mproc_imap *it, void *out, size_t *index,
                                 double timeout);
/* The own return value of the item mproc_imap_next returned last when
 * that was MPROC_ETASK (Python's exception from next()); 0 otherwise. */
MPROC_EXTERN int mproc_imap_task_code(const mproc_imap *it);
/* Draw a progress bar on stderr (items delivered, rate, ETA) while
 * iterating, if stderr is a terminal (on != 0); off by default. */
MPROC_EXTERN int mproc_imap_progress(mproc_imap *it, int on);
/* Free the iterator, also before every result was delivered (the
 * remaining items still run). */
MPROC_EXTERN int mproc_imap_free(mproc_imap *it);

/* ==================== statistics ==================== */

typedef struct mproc_pool_stats {
  uint64_t tasks_done;      /* tasks completed, failed ones included: an
                               apply task counts one, a map each chunk a
                               worker took (an adaptive claim is one) */
  uint64_t tasks_failed;    /* of which failed: apply tasks that failed,
                               map chunks a death or a stop cut short,
                               and one per map with failing items */
  uint64_t workers_died;    /* workers that died in a task */
  uint64_t workers_replaced;/* started to replace one (death, timeout,
                               maxtasksperchild) */
  int workers;              /* the pool's size (its worker slots) */
  double busy_seconds[64];  /* per worker slot: time spent in tasks (the
                               first 64 slots) */
} mproc_pool_stats;
MPROC_EXTERN int mproc_pool_stats_get(mproc_pool *p, mproc_pool_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_POOL_H */
