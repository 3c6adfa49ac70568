/*
 * tests/fault/test-pool-exit.c - the pool's end: a program that exits
 * with a live pool, and the processes that tasks start.
 *
 *   - A program that exits (exit() from the main thread, as returning
 *     from main does, or from another thread while the main thread waits
 *     in a map) with a live pool and work in flight always finishes, and
 *     leaves no worker and no process its tasks started; many runs each
 *     (CPython's test_worker_finalization_via_atexit_handler_of_
 *     multiprocessing hung here).
 *   - A task that forks children of its own: they end with the worker
 *     when it dies, when it is killed for task_timeout, and when the pool
 *     is terminated or freed.
 */
#include "mproc/pool.h"
#include "task.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define MAXP 256

/* Arena memory, shared with the child programs and their workers. */
typedef struct exit_board {
  _Atomic int nworkers;
  _Atomic pid_t workers[MAXP];
  _Atomic int nkids;
  _Atomic pid_t kids[MAXP];
  _Atomic pid_t last_worker;
  _Atomic pid_t last_kid;
} exit_board;

static exit_board *EB;

static void note(_Atomic int *n, _Atomic pid_t *list, pid_t pid) {
  int k = atomic_fetch_add(n, 1);
  if (k < MAXP) {
    atomic_store(&list[k], pid);
  }
}

/* Fork a child that waits for ever (until a signal ends it); note it. */
static pid_t fork_kid(void) {
  pid_t kid = fork();
  if (kid == 0) {
    for (;;) {
      pause();
    }
  }
  if (kid > 0) {
    note(&EB->nkids, EB->kids, kid);
    atomic_store(&EB->last_kid, kid);
  }
  return kid;
}

/* A task of some milliseconds; every fourth leaves a child of its own. */
static int busy_task(mproc_task *t, const void *arg, size_t len,
                 void *ctx) {
  (void)ctx;
  int i;
  (void)t, (void)len;
  memcpy(&i, arg, sizeof i);
  pid_t me = getpid();
  int seen = 0;
  int n = atomic_load(&EB->nworkers);
  for (int k = 0; k < n && k < MAXP; k++) {
    seen |= atomic_load(&EB->workers[k]) == me;
  }
  if (!seen) {
    note(&EB->nworkers, EB->workers, me);
  }
  if (i % 4 == 0) {
    fork_kid();
  }
  test_sleep(0.002 * (i % 5));
  return 0;
}

static int busy_item(const void *in, void *out, void *ctx) {
  (void)ctx;
  int i;
  memcpy(&i, in, sizeof i);
  test_sleep(0.001);
  memcpy(out, &i, sizeof i);
  return 0;
}

static mproc_pool *start_busy_pool(void) {
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 3;
  mproc_pool *p;
  if (mproc_pool_new(&p, &o) != 0) {
    _exit(10);
  }
  for (int i = 0; i < 24; i++) {
    mproc_async *r;
    if (mproc_pool_apply_async(p, busy_task, NULL, &i, sizeof i, NULL, &r) != 0) {
      _exit(11);
    }
    mproc_async_free(r); /* still in flight */
  }
  return p;
}

static void *exit_thread(void *arg) {
  (void)arg;
  /* Once the map is under way (some work ran), exit from this thread. */
  while (atomic_load(&EB->nworkers) == 0) {
    test_sleep(0.001);
  }
  exit(0);
}

/* The child program: a live pool with work in flight, then exit. */
static void exit_child(int from_thread) {
  mproc_pool *p = start_busy_pool();
  if (!from_thread) {
    while (atomic_load(&EB->nkids) == 0) {
      test_sleep(0.001); /* some tasks ran, one left a child */
    }
    exit(0); /* what returning from main does */
  }
  pthread_t th;
  if (pthread_create(&th, NULL, exit_thread, NULL) != 0) {
    _exit(12);
  }
  static int in[20000], out[20000];
  for (int i = 0; i < 20000; i++) {
    in[i] = i;
  }
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = 1;
  (void)mproc_pool_map(p, busy_item, NULL, in, 20000, sizeof(int), out,
                       sizeof(int), &mo, NULL);
  for (;;) {
    pause(); /* the other thread's exit ends the program */
  }
}

/* Every process the runs left behind is gone: each worker and each child
 * of a task (those were reparented to this test process, a subreaper:
 * reap them). */
static void assert_all_gone(void) {
  int n = atomic_load(&EB->nworkers);
  for (int k = 0; k < n && k < MAXP; k++) {
    ASSERT_EQ(test_pid_running(atomic_load(&EB->workers[k])), 0);
  }
  n = atomic_load(&EB->nkids);
  for (int k = 0; k < n && k < MAXP; k++) {
    pid_t kid = atomic_load(&EB->kids[k]);
    int code = test_wait_pid(kid, 10 * test_timeout_mult());
    if (code == INT32_MIN) {
      kill(kid, SIGKILL);
      test_wait_pid(kid, 10);
    }
    ASSERT_NE(code, INT32_MIN);
  }
  /* A child forked by a task whose worker was killed before it noted the
   * pid: killed with the group all the same; reap it (a live one would
   * be caught by the runner's leak check). */
  double until = test_now() + 10 * test_timeout_mult();
  for (;;) {
    pid_t r = waitpid(-1, NULL, WNOHANG);
    if (r < 0) {
      break; /* ECHILD: no child left */
    }
    if (r == 0) {
      ASSERT(test_now() < until);
      test_sleep(0.001);
    }
  }
}

static void exit_runs(int from_thread, int runs) {
  ASSERT_OK(mproc_shm_calloc((void **)&EB, 1, sizeof *EB));
  for (int run = 0; run < runs; run++) {
    memset(EB, 0, sizeof *EB);
    pid_t child = test_fork();
    if (child == 0) {
      exit_child(from_thread);
    }
    int code = test_wait_pid(child, 30 * test_timeout_mult());
    if (code == INT32_MIN) {
      fprintf(stderr, "# run %d: the program did not finish\n", run);
      kill(child, SIGKILL);
      test_wait_pid(child, 10);
    }
    ASSERT_EQ(code, 0);
    assert_all_gone();
  }
  mproc_shm_free(EB);
  EB = NULL;
}

TEST_IMPL(pool_exit_with_live_pool) {
  exit_runs(0, 40);
  return 0;
}

TEST_IMPL(pool_exit_from_thread_during_map) {
  exit_runs(1, 25);
  return 0;
}

/* ---- a task's children end with its worker ---- */

/* Fork a child, note the worker, then wait for ever (until killed). */
static int parent_task(mproc_task *t, const void *arg, size_t len,
                 void *ctx) {
  (void)ctx;
  (void)t, (void)arg, (void)len;
  if (fork_kid() < 0) {
    return 1;
  }
  atomic_store(&EB->last_worker, getpid());
  for (;;) {
    test_sleep(1);
  }
  return 0;
}

static mproc_pool *kid_pool(double task_timeout) {
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 2;
  o.task_timeout = task_timeout;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  return p;
}

/* Start parent_task; wait until its child exists; the child's pid. */
static pid_t start_parent_task(mproc_pool *p, mproc_async **r) {
  atomic_store(&EB->last_worker, 0);
  atomic_store(&EB->last_kid, 0);
  ASSERT_OK(mproc_pool_apply_async(p, parent_task, NULL, NULL, 0, NULL, r));
  double until = test_now() + 10 * test_timeout_mult();
  while (atomic_load(&EB->last_worker) == 0) {
    ASSERT(test_now() < until);
    test_sleep(0.001);
  }
  pid_t kid = atomic_load(&EB->last_kid);
  ASSERT_GT(kid, 0);
  ASSERT_EQ(test_pid_running(kid), 1);
  return kid;
}

/* The task's child ends (killed), within the bound. */
static void assert_kid_ends(pid_t kid) {
  int code = test_wait_pid(kid, 10 * test_timeout_mult());
  if (code == INT32_MIN) {
    kill(kid, SIGKILL);
    test_wait_pid(kid, 10);
  }
  ASSERT_EQ(code, -SIGKILL);
}

TEST_IMPL(pool_task_children_end_with_worker) {
  ASSERT_OK(mproc_shm_calloc((void **)&EB, 1, sizeof *EB));
  mproc_pool *p = kid_pool(0);
  mproc_async *r;
  /* The worker dies (SIGKILL from outside). */
  pid_t kid = start_parent_task(p, &r);
  ASSERT_EQ(kill(atomic_load(&EB->last_worker), SIGKILL), 0);
  ASSERT_ERR(mproc_async_get(r, 10 * test_timeout_mult()), MPROC_EWORKERDIED);
  mproc_async_free(r);
  assert_kid_ends(kid);
  /* The pool terminated. */
  kid = start_parent_task(p, &r);
  pid_t kid2 = 0;
  mproc_async *r2;
  kid2 = start_parent_task(p, &r2);
  ASSERT_OK(mproc_pool_terminate(p));
  ASSERT_ERR(mproc_async_get(r, 0), MPROC_ECANCELED);
  ASSERT_ERR(mproc_async_get(r2, 0), MPROC_ECANCELED);
  mproc_async_free(r);
  mproc_async_free(r2);
  assert_kid_ends(kid);
  assert_kid_ends(kid2);
  ASSERT_OK(mproc_pool_free(p));
  /* The pool freed while running. */
  p = kid_pool(0);
  kid = start_parent_task(p, &r);
  ASSERT_OK(mproc_pool_free(p));
  ASSERT_ERR(mproc_async_get(r, 0), MPROC_ECANCELED);
  mproc_async_free(r);
  assert_kid_ends(kid);
  mproc_shm_free(EB);
  EB = NULL;
  return 0;
}

TEST_IMPL(pool_task_children_end_with_timeout) {
  ASSERT_OK(mproc_shm_calloc((void **)&EB, 1, sizeof *EB));
  mproc_pool *p = kid_pool(0.3);
  mproc_async *r;
  pid_t kid = start_parent_task(p, &r);
  ASSERT_ERR(mproc_async_get(r, 10 * test_timeout_mult()), MPROC_ETIMEDOUT);
  mproc_async_free(r);
  assert_kid_ends(kid);
  /* The pool goes on. */
  ASSERT_OK(mproc_pool_close(p));
  ASSERT_OK(mproc_pool_join(p, 10 * test_timeout_mult()));
  ASSERT_OK(mproc_pool_free(p));
  mproc_shm_free(EB);
  EB = NULL;
  return 0;
}
