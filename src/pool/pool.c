/*
 * src/pool/pool.c - Python's multiprocessing.Pool (mproc/pool.h): the
 * pool's life (new, close, terminate, cancel, cancel_pending, join,
 * free), the registry of live pools and its exit handler, statistics.
 * The module's design is at the top of pool-internal.h.
 *
 * DESIGN
 *
 * Close marks the shared state closed and wakes every worker; a worker
 * leaves when it finds no pending work and the pool closed.  Terminate
 * (and mproc_pool_cancel, which only sets a flag a signal handler may
 * set) sends SIGTERM to every worker, then SIGKILL after a short grace,
 * and fails everything outstanding with MPROC_ECANCELED.  The result
 * thread ends once closed (or terminating), nothing is outstanding and
 * every worker has ended; join waits for that.
 *
 * A program that exits with a live pool is handled by the registry
 * (see "Exit" below).
 */
#include "pool-internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
  /* Writes only what differs (a page written after fork is a
   * copy-on-write fault in every new child). */
  mproc__mutex_reset_in_child(&g_pools_mu);
  if (g_pools != NULL) {
    g_pools = NULL;
  }
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
      mproc__pool_unstick(p, holder, "the arena's allocator lock");
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

int mproc__pool_portable(const void *fn, const void *ctx) {
  if (!mproc__objtab_contains(fn)) {
    return MPROC_EINVAL;
  }
  if (ctx != NULL && !mproc__arena_contains(ctx) &&
      !mproc__objtab_contains(ctx)) {
    MPROC__WARN("pool: under spawn and forkserver, a task's ctx must be "
                "NULL, arena memory or static data");
    return MPROC_EINVAL;
  }
  return 0;
}

int mproc__pool_check_portable(mproc_pool *p, const void *fn,
                               const void *ctx) {
  int r = p->portable ? mproc__pool_portable(fn, ctx) : 0;
  if (r != 0) {
    return r;
  }
  /* Forked workers need the table too, for a function of a library
   * loaded after they were forked: they do not have it mapped. */
  /* A library loaded since the workers started (or since the last
   * publication): publish the current table for them.  The generation is
   * read without a lock; two threads publishing at once only publish the
   * same table twice. */
  uint64_t gen = mproc__objtab_generation();
  if (__atomic_load_n(&p->objtab_gen, __ATOMIC_RELAXED) == gen) {
    return 0;
  }
  void *tab = NULL;
  size_t len = 0;
  r = mproc__objtab_build(&tab, &len);
  void *blk = NULL;
  if (r == 0) {
    r = mproc_shm_alloc(&blk, sizeof(pool_objtab) + len);
  }
  if (r == 0) {
    pool_objtab *t = blk;
    t->len = len;
    memcpy(t->bytes, tab, len);
    pthread_mutex_lock(&p->mu);
    t->older = atomic_load(&p->sh->objtab);
    atomic_store(&p->sh->objtab, t);
    __atomic_store_n(&p->objtab_gen, gen, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&p->mu);
  }
  free(tab);
  return r;
}

static void pool_release(mproc_pool *p) {
  pools_remove(p);
  /* Blocks a waiting thread left for the result thread after its last
   * collection (the lock's holder is gone: the workers are reaped). */
  mproc__pool_free_deferred(p);
  if (p->sh != NULL) {
    pool_objtab *t = atomic_load(&p->sh->objtab);
    while (t != NULL) {
      pool_objtab *older = t->older;
      mproc_shm_free(t);
      t = older;
    }
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
      mproc__pool_worker_reap(p, i, &code);
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
  /* The default context is resolved now: replacements start the way the
   * first workers did, whatever the default becomes later. */
  int method = mproc__start_method(o.context);
  if (method < 0) {
    return method;
  }
  if (method != MPROC__START_FORK &&
      (o.initializer != NULL &&
       mproc__pool_portable(o.initializer, o.initctx) != 0)) {
    return MPROC_EINVAL;
  }
  mproc_context *mctx = NULL;
  (void)mproc_get_context(&mctx, mproc__start_method_name(method));
  o.context = mctx;
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
  p->portable = method != MPROC__START_FORK;
  p->objtab_gen = mproc__objtab_generation();
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
    rc = mproc__pool_worker_start(p, i);
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
  __atomic_add_fetch(&mproc__own_threads, 1, __ATOMIC_RELAXED);
  if (pthread_create(&p->rt, NULL, mproc__pool_rt_main, p) != 0) {
    __atomic_sub_fetch(&mproc__own_threads, 1, __ATOMIC_RELAXED);
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
