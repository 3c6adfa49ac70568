/*
 * tests/behaviour/test-timeouts.c - one meaning of a timeout for every
 * call that waits (mproc/common.h, docs/guide.md "Conventions"): 0 polls,
 * any negative value waits without limit, a positive one waits that long
 * (an infinite one without limit), NaN is MPROC_EINVAL whatever the
 * object's state.
 *
 * One table: each row builds an object on which its wait must block,
 * names what a poll returns there, and how to release a waiter.  Every
 * wait runs in a thread of its own; a blocking wait is released only once
 * that thread is seen asleep in the kernel (an event, not a delay), and
 * must then return the row's success value.
 */
#include "mproc.h"
#include "task.h"

#include <math.h>
#include <sys/syscall.h>

/* What the rows' objects share: whichever fields a row uses. */
typedef struct obj {
  mproc_lock *lock;
  mproc_semaphore *sem;
  mproc_event *ev;
  mproc_cond *cond;
  int flag; /* cond_wait_for's state, under cond's lock */
  mproc_barrier *bar;
  mproc_queue *q;
  mproc_process *proc;
  mproc_pool *pool;
  mproc_async *ar;
  mproc_imap *it;
  mproc_connection *rd, *wr;
  mproc_listener *lis;
  mproc_connection *client;
} obj;

typedef struct row {
  const char *name;
  void (*setup)(obj *o, double timeout); /* a state where wait blocks */
  int (*wait)(obj *o, double timeout);
  int polled;                  /* what wait(o, 0) returns there */
  void (*release)(obj *o);     /* lets a blocked wait succeed */
  int ok;                      /* what the released wait returns */
  void (*teardown)(obj *o);
} row;

/* ==================== the rows ==================== */

/* An arena event: what the children and workers below wait on. */
static int wait_event_target(const void *arg, size_t len, void *ctx) {
  (void)arg, (void)len;
  return mproc_event_wait(ctx, MPROC_FOREVER) == 0 ? 0 : 1;
}
static int wait_event_task(mproc_task *t, const void *arg, size_t len,
                           void *ctx) {
  (void)t;
  return wait_event_target(arg, len, ctx);
}
static int wait_event_map(const void *in, void *out, void *ctx) {
  (void)in, (void)out;
  return mproc_event_wait(ctx, MPROC_FOREVER) == 0 ? 0 : 1;
}

static void lock_setup(obj *o, double t) {
  (void)t;
  ASSERT_OK(mproc_lock_new(&o->lock));
  ASSERT_OK(mproc_lock_acquire(o->lock, 0));
}
static void rlock_setup(obj *o, double t) {
  (void)t;
  ASSERT_OK(mproc_rlock_new(&o->lock));
  ASSERT_OK(mproc_lock_acquire(o->lock, 0));
}
static int lock_wait(obj *o, double t) {
  int r = mproc_lock_acquire(o->lock, t);
  if (r == 0) {
    ASSERT_OK(mproc_lock_release(o->lock));
  }
  return r;
}
static void lock_release(obj *o) { ASSERT_OK(mproc_lock_release(o->lock)); }
static void lock_teardown(obj *o) {
  if (mproc_lock_is_locked(o->lock) == 1) {
    ASSERT_OK(mproc_lock_release(o->lock));
  }
  ASSERT_OK(mproc_lock_free(o->lock));
}

static void sem_setup(obj *o, double t) {
  (void)t;
  ASSERT_OK(mproc_semaphore_new(&o->sem, 0, NULL));
}
static int sem_wait(obj *o, double t) {
  return mproc_semaphore_acquire(o->sem, t);
}
static void sem_release(obj *o) { ASSERT_OK(mproc_semaphore_release(o->sem)); }
static void sem_teardown(obj *o) { ASSERT_OK(mproc_semaphore_free(o->sem)); }

static void ev_setup(obj *o, double t) {
  (void)t;
  ASSERT_OK(mproc_event_new(&o->ev));
}
static int ev_wait(obj *o, double t) { return mproc_event_wait(o->ev, t); }
static void ev_release(obj *o) { ASSERT_OK(mproc_event_set(o->ev)); }
static void ev_teardown(obj *o) { ASSERT_OK(mproc_event_free(o->ev)); }

static void cond_setup(obj *o, double t) {
  (void)t;
  ASSERT_OK(mproc_cond_new(&o->cond, NULL));
}
static int cond_wait(obj *o, double t) {
  ASSERT_OK(mproc_lock_acquire(mproc_cond_lock(o->cond), MPROC_FOREVER));
  int r = mproc_cond_wait(o->cond, t);
  ASSERT_OK(mproc_lock_release(mproc_cond_lock(o->cond)));
  return r;
}
static int flag_set(void *ctx) { return ((obj *)ctx)->flag; }
static int cond_wait_for(obj *o, double t) {
  ASSERT_OK(mproc_lock_acquire(mproc_cond_lock(o->cond), MPROC_FOREVER));
  int r = mproc_cond_wait_for(o->cond, flag_set, o, t);
  ASSERT_OK(mproc_lock_release(mproc_cond_lock(o->cond)));
  return r;
}
static void cond_release(obj *o) {
  ASSERT_OK(mproc_lock_acquire(mproc_cond_lock(o->cond), MPROC_FOREVER));
  o->flag = 1;
  ASSERT_OK(mproc_cond_notify_all(o->cond));
  ASSERT_OK(mproc_lock_release(mproc_cond_lock(o->cond)));
}
static void cond_teardown(obj *o) { ASSERT_OK(mproc_cond_free(o->cond)); }

static void bar_setup(obj *o, double t) {
  (void)t;
  ASSERT_OK(mproc_barrier_new(&o->bar, 2, NULL));
}
/* The default timeout is the one given at creation: the row's timeout. */
static void bar_default_setup(obj *o, double t) {
  mproc_barrier_opts bo;
  memset(&bo, 0, sizeof bo);
  bo.timeout = t;
  if (isnan(t)) {
    ASSERT_ERR(mproc_barrier_new(&o->bar, 2, &bo), MPROC_EINVAL);
    o->bar = NULL; /* wait_default(NULL) is MPROC_EINVAL too */
    return;
  }
  ASSERT_OK(mproc_barrier_new(&o->bar, 2, &bo));
}
static int bar_wait(obj *o, double t) { return mproc_barrier_wait(o->bar, t); }
static int bar_wait_default(obj *o, double t) {
  (void)t;
  return mproc_barrier_wait_default(o->bar);
}
static void bar_release(obj *o) {
  /* The second party; the waiter arrived first (index 0). */
  ASSERT_EQ(mproc_barrier_wait(o->bar, MPROC_FOREVER), 1);
}
static void bar_teardown(obj *o) { ASSERT_OK(mproc_barrier_free(o->bar)); }

static void q_setup(obj *o, double t) {
  (void)t;
  ASSERT_OK(mproc_queue_new(&o->q, 0, NULL));
}
static void qfull_setup(obj *o, double t) {
  (void)t;
  ASSERT_OK(mproc_queue_new(&o->q, 1, NULL));
  ASSERT_OK(mproc_queue_put(o->q, "x", 1, 0));
}
static void qjoin_setup(obj *o, double t) {
  (void)t;
  ASSERT_OK(mproc_joinable_queue_new(&o->q, 0, NULL));
  ASSERT_OK(mproc_queue_put(o->q, "x", 1, 0));
}
static int q_get(obj *o, double t) {
  void *m;
  size_t len;
  int r = mproc_queue_get(o->q, &m, &len, t);
  if (r == 0) {
    free(m);
  }
  return r;
}
static int q_get_into(obj *o, double t) {
  char m[8];
  size_t len;
  return mproc_queue_get_into(o->q, m, sizeof m, &len, t);
}
static int q_put(obj *o, double t) { return mproc_queue_put(o->q, "y", 1, t); }
static int q_join(obj *o, double t) { return mproc_queue_join(o->q, t); }
static void q_release_put(obj *o) {
  ASSERT_OK(mproc_queue_put(o->q, "z", 1, MPROC_FOREVER));
}
static void q_release_get(obj *o) {
  char m[8];
  size_t len;
  ASSERT_OK(mproc_queue_get_into(o->q, m, sizeof m, &len, MPROC_FOREVER));
}
static void q_release_done(obj *o) {
  q_release_get(o);
  ASSERT_OK(mproc_queue_task_done(o->q));
}
static void q_teardown(obj *o) { ASSERT_OK(mproc_queue_free(o->q)); }

static void proc_setup(obj *o, double t) {
  (void)t;
  ASSERT_OK(mproc_event_new(&o->ev));
  ASSERT_OK(mproc_process_new(&o->proc, wait_event_target, o->ev, NULL, 0,
                              NULL));
  ASSERT_OK(mproc_process_start(o->proc));
}
static int proc_join(obj *o, double t) {
  return mproc_process_join(o->proc, t);
}
static void proc_teardown(obj *o) {
  ASSERT_OK(mproc_event_set(o->ev)); /* a no-op when released */
  ASSERT_OK(mproc_process_join(o->proc, MPROC_FOREVER));
  int code = -1;
  ASSERT_OK(mproc_process_exitcode(o->proc, &code));
  ASSERT_EQ(code, 0);
  ASSERT_OK(mproc_process_free(o->proc));
  ASSERT_OK(mproc_event_free(o->ev));
}

static void pool_base(obj *o) {
  ASSERT_OK(mproc_event_new(&o->ev));
  mproc_pool_opts po;
  memset(&po, 0, sizeof po);
  po.processes = 1;
  ASSERT_OK(mproc_pool_new(&o->pool, &po));
}
static void async_setup(obj *o, double t) {
  (void)t;
  pool_base(o);
  ASSERT_OK(mproc_pool_apply_async(o->pool, wait_event_task, o->ev, NULL, 0,
                                   NULL, &o->ar));
}
static void pjoin_setup(obj *o, double t) {
  async_setup(o, t);
  ASSERT_OK(mproc_pool_close(o->pool));
}
static void imap_setup(obj *o, double t) {
  (void)t;
  pool_base(o);
  static const int in = 1;
  ASSERT_OK(mproc_pool_imap(o->pool, wait_event_map, o->ev, &in, 1,
                            sizeof in, 0, 1, 0, &o->it));
}
static int async_wait(obj *o, double t) { return mproc_async_wait(o->ar, t); }
static int async_get(obj *o, double t) { return mproc_async_get(o->ar, t); }
static int pool_join(obj *o, double t) { return mproc_pool_join(o->pool, t); }
static int imap_next(obj *o, double t) {
  size_t idx;
  return mproc_imap_next(o->it, NULL, &idx, t);
}
static void pool_teardown(obj *o) {
  ASSERT_OK(mproc_event_set(o->ev));
  if (o->ar != NULL) {
    ASSERT_OK(mproc_async_get(o->ar, MPROC_FOREVER));
    ASSERT_OK(mproc_async_free(o->ar));
  }
  if (o->it != NULL) {
    ASSERT_OK(mproc_imap_free(o->it));
  }
  ASSERT_OK(mproc_pool_close(o->pool));
  ASSERT_OK(mproc_pool_join(o->pool, MPROC_FOREVER));
  ASSERT_OK(mproc_pool_free(o->pool));
  ASSERT_OK(mproc_event_free(o->ev));
}

static void pipe_setup(obj *o, double t) {
  (void)t;
  ASSERT_OK(mproc_pipe(&o->rd, &o->wr, 0));
}
static int conn_poll(obj *o, double t) {
  return mproc_connection_poll(o->rd, t);
}
static int conn_wait(obj *o, double t) {
  mproc_wait_item it = {o->rd, -1, 0};
  return mproc_connection_wait(&it, 1, t);
}
static void pipe_release(obj *o) {
  ASSERT_OK(mproc_connection_send(o->wr, "m", 1));
}
static void pipe_teardown(obj *o) {
  ASSERT_OK(mproc_connection_close(o->rd));
  ASSERT_OK(mproc_connection_close(o->wr));
}

static void lis_setup(obj *o, double t) {
  (void)t;
  mproc_listener_opts lo;
  memset(&lo, 0, sizeof lo);
  lo.family = MPROC_AF_UNIX;
  ASSERT_OK(mproc_listener_new(&o->lis, &lo));
}
static int lis_accept(obj *o, double t) {
  mproc_connection *c;
  int r = mproc_listener_accept(o->lis, &c, t);
  if (r == 0) {
    ASSERT_OK(mproc_connection_close(c));
  }
  return r;
}
static void lis_release(obj *o) {
  char addr[256];
  ASSERT_GE(mproc_listener_address(o->lis, addr, sizeof addr), 0);
  mproc_client_opts co;
  memset(&co, 0, sizeof co);
  co.family = MPROC_AF_UNIX;
  ASSERT_OK(mproc_client_connect(&o->client, addr, &co));
}
static void lis_teardown(obj *o) {
  ASSERT_OK(mproc_connection_close(o->client));
  ASSERT_OK(mproc_listener_close(o->lis));
}

static const row rows[] = {
    {"lock_acquire(Lock)", lock_setup, lock_wait, MPROC_ETIMEDOUT,
     lock_release, 0, lock_teardown},
    {"lock_acquire(RLock)", rlock_setup, lock_wait, MPROC_ETIMEDOUT,
     lock_release, 0, lock_teardown},
    {"semaphore_acquire", sem_setup, sem_wait, MPROC_ETIMEDOUT, sem_release,
     0, sem_teardown},
    {"event_wait", ev_setup, ev_wait, MPROC_ETIMEDOUT, ev_release, 0,
     ev_teardown},
    {"cond_wait", cond_setup, cond_wait, MPROC_ETIMEDOUT, cond_release, 0,
     cond_teardown},
    {"cond_wait_for", cond_setup, cond_wait_for, 0, cond_release, 1,
     cond_teardown},
    {"barrier_wait", bar_setup, bar_wait, MPROC_ETIMEDOUT, bar_release, 0,
     bar_teardown},
    {"barrier_wait_default", bar_default_setup, bar_wait_default,
     MPROC_ETIMEDOUT, bar_release, 0, bar_teardown},
    {"queue_get", q_setup, q_get, MPROC_EEMPTY, q_release_put, 0,
     q_teardown},
    {"queue_get_into", q_setup, q_get_into, MPROC_EEMPTY, q_release_put, 0,
     q_teardown},
    {"queue_put", qfull_setup, q_put, MPROC_EFULL, q_release_get, 0,
     q_teardown},
    {"queue_join", qjoin_setup, q_join, MPROC_ETIMEDOUT, q_release_done, 0,
     q_teardown},
    {"process_join", proc_setup, proc_join, MPROC_ETIMEDOUT, ev_release, 0,
     proc_teardown},
    {"async_wait", async_setup, async_wait, MPROC_ETIMEDOUT, ev_release, 0,
     pool_teardown},
    {"async_get", async_setup, async_get, MPROC_ETIMEDOUT, ev_release, 0,
     pool_teardown},
    {"pool_join", pjoin_setup, pool_join, MPROC_ETIMEDOUT, ev_release, 0,
     pool_teardown},
    {"imap_next", imap_setup, imap_next, MPROC_ETIMEDOUT, ev_release, 0,
     pool_teardown},
    {"connection_poll", pipe_setup, conn_poll, 0, pipe_release, 1,
     pipe_teardown},
    {"connection_wait", pipe_setup, conn_wait, 0, pipe_release, 1,
     pipe_teardown},
    {"listener_accept", lis_setup, lis_accept, MPROC_ETIMEDOUT, lis_release,
     0, lis_teardown},
};

/* ==================== the driver ==================== */

typedef struct waiter {
  const row *r;
  obj *o;
  double timeout;
  _Atomic pid_t tid;
  _Atomic int done;
  int rc;
} waiter;

static void *waiter_main(void *arg) {
  waiter *w = arg;
  w->tid = (pid_t)syscall(SYS_gettid);
  w->rc = w->r->wait(w->o, w->timeout);
  w->done = 1;
  return NULL;
}

/* Run r's wait with timeout in a thread; when block is set, release it
 * once the thread sleeps in the kernel (it must not have returned by
 * then).  Returns the wait's result. */
static int run_wait(const row *r, obj *o, double timeout, int block) {
  waiter w = {r, o, timeout, 0, 0, 0};
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, waiter_main, &w), 0);
  if (block) {
    for (;;) {
      pid_t tid = w.tid;
      if (w.done) {
        break;
      }
      if (tid != 0 && test_proc_stat(tid, NULL, NULL) == 'S') {
        break;
      }
      sched_yield();
    }
    if (w.done) {
      fprintf(stderr, "# %s(%g) returned %s instead of waiting\n", r->name,
              timeout, mproc_err_name(w.rc));
    }
    ASSERT_EQ(w.done, 0);
    r->release(o);
  }
  ASSERT_EQ(pthread_join(th, NULL), 0);
  return w.rc;
}

static void check_row(const row *r) {
  obj o;
  /* 0 polls: what the row names, at once. */
  memset(&o, 0, sizeof o);
  r->setup(&o, 0);
  int rc = run_wait(r, &o, 0, 0);
  if (rc != r->polled) {
    fprintf(stderr, "# %s(0) = %s\n", r->name, mproc_err_name(rc));
  }
  ASSERT_EQ(rc, r->polled);
  r->teardown(&o);
  /* NaN is refused, whether the wait would block or not. */
  memset(&o, 0, sizeof o);
  r->setup(&o, NAN);
  ASSERT_ERR(run_wait(r, &o, NAN, 0), MPROC_EINVAL);
  if (r->setup != bar_setup && r->setup != bar_default_setup) {
    /* (A barrier has no ready state without a second party inside.) */
    r->release(&o);
    ASSERT_ERR(run_wait(r, &o, NAN, 0), MPROC_EINVAL);
  }
  if (o.bar != NULL || r->setup != bar_default_setup) {
    r->teardown(&o);
  }
  /* Any negative value waits without limit, and so do +inf and a long
   * positive one: each blocks until released, then succeeds. */
  static const double waits[] = {MPROC_FOREVER, -0.5, -INFINITY, INFINITY,
                                 3600.0};
  for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
    memset(&o, 0, sizeof o);
    r->setup(&o, waits[i]);
    rc = run_wait(r, &o, waits[i], 1);
    if (rc != r->ok) {
      fprintf(stderr, "# %s(%g) = %s\n", r->name, waits[i],
              mproc_err_name(rc));
    }
    ASSERT_EQ(rc, r->ok);
    r->teardown(&o);
  }
}

TEST_IMPL(timeouts_one_meaning_for_every_wait) {
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    check_row(&rows[i]);
  }
  return 0;
}
