/*
 * tests/fault/test-pool-death.c - Pool workers that die (reliability.md
 * §4 rows 1-4), with real SIGKILLs, no mocks:
 *   - a worker SIGKILLed mid-task fails exactly that task with
 *     MPROC_EWORKERDIED and signal 9, a new worker replaces it, the other
 *     results are unaffected, again and again in a loop;
 *   - a task that calls exit() fails with MPROC_EWORKERDIED, signal 0;
 *   - a map item that kills its worker fails from that item on (the items
 *     of its chunk not yet done), the items before it keep their results;
 *   - random kills while tasks flow: nothing hangs, close + join returns.
 */
#include "mproc/pool.h"
#include "task.h"

#include <signal.h>
#include <sys/mman.h>

/* Shared between the test and its workers (arena memory). */
typedef struct board {
  int running_pid; /* pid of the worker in a "victim" task */
} board;

static board *B;

static int victim_task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)t, (void)arg, (void)len;
  __atomic_store_n(&B->running_pid, (int)getpid(), __ATOMIC_SEQ_CST);
  test_sleep(60);
  return 0;
}

static int quick_task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  int x;
  (void)len;
  memcpy(&x, arg, sizeof x);
  test_sleep(0.001);
  x += 1;
  return mproc_task_return(t, &x, sizeof x);
}

static int exit_task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)t, (void)arg, (void)len;
  _exit(3);
}

static void new_board(void) {
  ASSERT_OK(mproc_shm_calloc((void **)&B, 1, sizeof *B));
}

static int wait_pid_posted(void) {
  double end = test_now() + 10 * test_timeout_mult();
  int pid;
  while ((pid = __atomic_exchange_n(&B->running_pid, 0, __ATOMIC_SEQ_CST)) ==
         0) {
    ASSERT(test_now() < end);
    test_sleep(0.001);
  }
  return pid;
}

TEST_IMPL(pool_worker_sigkill) {
  new_board();
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 3;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  for (int round = 0; round < 5; round++) {
    mproc_async *v, *q[20];
    ASSERT_OK(mproc_pool_apply_async(p, victim_task, NULL, NULL, 0, NULL, &v));
    int pid = wait_pid_posted();
    for (int i = 0; i < 20; i++) {
      ASSERT_OK(mproc_pool_apply_async(p, quick_task, NULL, &i, sizeof i, NULL,
                                       &q[i]));
    }
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    ASSERT_ERR(mproc_async_get(v, 10 * test_timeout_mult()),
               MPROC_EWORKERDIED);
    int code = -1, sig = 0;
    const char *msg;
    ASSERT_OK(mproc_async_error(v, &code, &sig, &msg));
    ASSERT_EQ(code, 0);
    ASSERT_EQ(sig, SIGKILL);
    ASSERT(strstr(msg, "SIGKILL") != NULL);
    mproc_async_free(v);
    for (int i = 0; i < 20; i++) {
      ASSERT_OK(mproc_async_get(q[i], 10 * test_timeout_mult()));
      ASSERT_EQ(*(const int *)mproc_async_data(q[i], NULL), i + 1);
      mproc_async_free(q[i]);
    }
  }
  /* The result thread fails the dead worker's task first and starts its
   * replacement right after: the last one may still be on its way. */
  mproc_pool_stats st;
  double end = test_now() + 30 * test_timeout_mult();
  do {
    ASSERT(test_now() < end);
    ASSERT_OK(mproc_pool_stats_get(p, &st));
    if (st.workers_replaced < 5) {
      test_sleep(0.001);
    }
  } while (st.workers_replaced < 5);
  ASSERT_UEQ(st.workers_died, 5);
  ASSERT_UEQ(st.workers_replaced, 5);
  ASSERT_OK(mproc_pool_close(p));
  ASSERT_OK(mproc_pool_join(p, 10 * test_timeout_mult()));
  ASSERT_OK(mproc_pool_free(p));
  mproc_shm_free(B);
  return 0;
}

TEST_IMPL_ALL_METHODS(pool_worker_exit_in_task) {
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 2;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  for (int round = 0; round < 3; round++) {
    void *res = NULL;
    ASSERT_ERR(mproc_pool_apply(p, exit_task, NULL, NULL, 0, &res, NULL),
               MPROC_EWORKERDIED);
    mproc_async *r;
    ASSERT_OK(mproc_pool_apply_async(p, exit_task, NULL, NULL, 0, NULL, &r));
    ASSERT_ERR(mproc_async_get(r, 10 * test_timeout_mult()),
               MPROC_EWORKERDIED);
    int sig = -1;
    const char *msg;
    ASSERT_OK(mproc_async_error(r, NULL, &sig, &msg));
    ASSERT_EQ(sig, 0);
    ASSERT(strstr(msg, "status 3") != NULL);
    mproc_async_free(r);
    int x = 41;
    ASSERT_OK(mproc_pool_apply(p, quick_task, NULL, &x, sizeof x, &res, NULL));
    ASSERT_EQ(*(int *)res, 42);
    free(res);
  }
  ASSERT_OK(mproc_pool_close(p));
  ASSERT_OK(mproc_pool_join(p, 10 * test_timeout_mult()));
  ASSERT_OK(mproc_pool_free(p));
  return 0;
}

static int suicide_map(const void *in, void *out, void *ctx) {
  (void)ctx;
  int x;
  memcpy(&x, in, sizeof x);
  if (x == 25) {
    raise(SIGKILL);
  }
  x *= 2;
  memcpy(out, &x, sizeof x);
  return 0;
}

TEST_IMPL_ALL_METHODS(pool_map_worker_killed) {
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 2;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  int in[100], out[100];
  for (int i = 0; i < 100; i++) {
    in[i] = i;
  }
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = 10;
  mproc_map_error me;
  ASSERT_ERR(mproc_pool_map(p, suicide_map, NULL, in, 100, sizeof(int), out,
                            sizeof(int), &mo, &me),
             MPROC_EWORKERDIED);
  ASSERT_UEQ(me.index, 25);
  ASSERT_EQ(me.error, MPROC_EWORKERDIED);
  for (int i = 0; i < 100; i++) {
    if (i < 20 || i >= 30 || i < 25) {
      ASSERT_EQ(out[i], 2 * i); /* 20..24 done before the death */
    }
  }
  /* The pool still works. */
  in[25] = 0;
  ASSERT_OK(mproc_pool_map(p, suicide_map, NULL, in, 100, sizeof(int), out,
                           sizeof(int), &mo, NULL));
  ASSERT_OK(mproc_pool_close(p));
  ASSERT_OK(mproc_pool_join(p, 10 * test_timeout_mult()));
  ASSERT_OK(mproc_pool_free(p));
  return 0;
}

/* Kill random workers while many short tasks flow. */
static int slow_pid_task(mproc_task *t, const void *arg, size_t len,
                         void *ctx) {
  (void)ctx;
  (void)arg, (void)len;
  test_sleep(0.002);
  pid_t pid = getpid();
  return mproc_task_return(t, &pid, sizeof pid);
}

TEST_IMPL_ALL_METHODS(pool_sigkill_storm) {
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 4;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  enum { N = 600 };
  static mproc_async *r[N];
  for (int i = 0; i < N; i++) {
    ASSERT_OK(mproc_pool_apply_async(p, slow_pid_task, NULL, NULL, 0, NULL,
                                     &r[i]));
  }
  int kills = 0;
  for (int i = 0; i < N; i++) {
    ASSERT_OK(mproc_async_wait(r[i], 20 * test_timeout_mult()));
    if (i % 50 == 10 && mproc_async_get(r[i], 0) == 0) {
      pid_t pid;
      memcpy(&pid, mproc_async_data(r[i], NULL), sizeof pid);
      if (kill(pid, SIGKILL) == 0) {
        kills++;
      }
    }
  }
  int died = 0;
  for (int i = 0; i < N; i++) {
    int rc = mproc_async_get(r[i], 0);
    if (rc != 0) {
      ASSERT_ERR(rc, MPROC_EWORKERDIED);
      died++;
    }
    mproc_async_free(r[i]);
  }
  ASSERT_LE(died, kills);
  ASSERT_OK(mproc_pool_close(p));
  ASSERT_OK(mproc_pool_join(p, 10 * test_timeout_mult()));
  ASSERT_OK(mproc_pool_free(p));
  return 0;
}

static int segv_task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)t, (void)arg, (void)len;
  raise(SIGSEGV);
  return 0;
}

static int spin_task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)t, (void)arg, (void)len;
  for (volatile unsigned long i = 0;; i++) {
  }
  return 0;
}

/* Row 1's bound and rows 2 and 4: a death is seen within 100 ms; a
 * segfault is a death with SIGSEGV; a task in an endless loop is killed
 * at task_timeout and its worker replaced. */
TEST_IMPL(pool_worker_segv_and_spin) {
  new_board();
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 2;
  o.task_timeout = 0.3;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  mproc_async *r;
  ASSERT_OK(mproc_pool_apply_async(p, victim_task, NULL, NULL, 0, NULL, &r));
  int pid = wait_pid_posted();
  double t0 = test_now();
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_ERR(mproc_async_get(r, 5), MPROC_EWORKERDIED);
  ASSERT_DBL_LE(test_now() - t0, 0.1 + test_slack());
  mproc_async_free(r);
  ASSERT_OK(mproc_pool_apply_async(p, segv_task, NULL, NULL, 0, NULL, &r));
  ASSERT_ERR(mproc_async_get(r, 5 * test_timeout_mult()), MPROC_EWORKERDIED);
  int sig;
  const char *msg;
  ASSERT_OK(mproc_async_error(r, NULL, &sig, &msg));
  ASSERT_EQ(sig, SIGSEGV);
  /* raise() is no fault: no address in the note. */
  ASSERT_NOT_NULL(strstr(msg, "killed by SIGSEGV"));
  ASSERT_NULL(strstr(msg, "address"));
  mproc_async_free(r);
  t0 = test_now();
  ASSERT_OK(mproc_pool_apply_async(p, spin_task, NULL, NULL, 0, NULL, &r));
  ASSERT_ERR(mproc_async_get(r, 10 * test_timeout_mult()), MPROC_ETIMEDOUT);
  ASSERT_DBL_GE(test_now() - t0, 0.3 - 0.01);
  mproc_async_free(r);
  int x = 1;
  void *res;
  ASSERT_OK(mproc_pool_apply(p, quick_task, NULL, &x, sizeof x, &res, NULL));
  ASSERT_EQ(*(int *)res, 2);
  free(res);
  mproc_pool_stats st;
  ASSERT_OK(mproc_pool_stats_get(p, &st));
  ASSERT_UEQ(st.workers_replaced, 3);
  ASSERT_OK(mproc_pool_close(p));
  ASSERT_OK(mproc_pool_join(p, 10 * test_timeout_mult()));
  ASSERT_OK(mproc_pool_free(p));
  mproc_shm_free(B);
  return 0;
}

static int post_pid_task(mproc_task *t, const void *arg, size_t len,
                         void *ctx) {
  (void)ctx;
  (void)arg, (void)len;
  int pid = (int)getpid();
  __atomic_store_n(&B->running_pid, pid, __ATOMIC_SEQ_CST);
  return mproc_task_return(t, &pid, sizeof pid); /* an arena allocation */
}

/* Kills at random moments of a worker's life (in a task, between tasks,
 * inside the pool's critical sections): every result still arrives, as
 * a success or MPROC_EWORKERDIED, and close + join return. */
TEST_IMPL(pool_sigkill_random) {
  new_board();
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 4;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  uint64_t rs = 12345;
  for (int round = 0; round < 10; round++) {
    enum { N = 2000 };
    static mproc_async *r[N];
    for (int i = 0; i < N; i++) {
      ASSERT_OK(mproc_pool_apply_async(p, post_pid_task, NULL, NULL, 0, NULL,
                                       &r[i]));
    }
    for (int k = 0; k < 3; k++) {
      test_sleep((double)(test_rand(&rs) % 2000) / 1e6);
      int pid = __atomic_exchange_n(&B->running_pid, 0, __ATOMIC_SEQ_CST);
      if (pid > 0) {
        kill(pid, SIGKILL);
      }
    }
    for (int i = 0; i < N; i++) {
      int rc = mproc_async_get(r[i], 20 * test_timeout_mult());
      if (rc != 0) {
        ASSERT_ERR(rc, MPROC_EWORKERDIED);
      }
      mproc_async_free(r[i]);
    }
  }
  ASSERT_OK(mproc_pool_close(p));
  ASSERT_OK(mproc_pool_join(p, 10 * test_timeout_mult()));
  ASSERT_OK(mproc_pool_free(p));
  mproc_shm_free(B);
  return 0;
}

static void *make_pool_thread(void *arg) {
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 2;
  ASSERT_OK(mproc_pool_new((mproc_pool **)arg, &o));
  return NULL;
}

/* Row 7: the thread that created the pool exits; its workers live on. */
TEST_IMPL(pool_created_by_exited_thread) {
  mproc_pool *p = NULL;
  pthread_t th;
  test_start_threads(&th, 1, make_pool_thread, &p);
  test_join_threads_ok(&th, 1);
  test_sleep(0.1);
  for (int i = 0; i < 10; i++) {
    void *res;
    ASSERT_OK(mproc_pool_apply(p, quick_task, NULL, &i, sizeof i, &res, NULL));
    ASSERT_EQ(*(int *)res, i + 1);
    free(res);
  }
  mproc_pool_stats st;
  ASSERT_OK(mproc_pool_stats_get(p, &st));
  ASSERT_UEQ(st.workers_died, 0);
  ASSERT_OK(mproc_pool_close(p));
  ASSERT_OK(mproc_pool_join(p, 10 * test_timeout_mult()));
  ASSERT_OK(mproc_pool_free(p));
  return 0;
}

/* A page no process may touch, mapped before the pool so every worker
 * has it at the same address. */
static int fault_task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)t, (void)len;
  volatile char *page;
  memcpy((void *)&page, arg, sizeof page);
  page[16] = 1; /* SIGSEGV, a real fault at page + 16 */
  return 0;
}

/* A worker that faults leaves a crash note (reliability.md row 2): the
 * failure names the signal and the faulting address.  A SIGSEGV sent with
 * raise() (pool_worker_segv_and_spin) has no address and gets none. */
TEST_IMPL_ALL_METHODS(pool_worker_fault_address) {
  char *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                    0);
  ASSERT(page != MAP_FAILED);
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 1;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  mproc_async *r;
  ASSERT_OK(mproc_pool_apply_async(p, fault_task, NULL, &page, sizeof page,
                                   NULL, &r));
  ASSERT_ERR(mproc_async_get(r, MPROC_FOREVER), MPROC_EWORKERDIED);
  int code, sig;
  const char *msg;
  ASSERT_OK(mproc_async_error(r, &code, &sig, &msg));
  ASSERT_EQ(sig, SIGSEGV);
  char want[64];
  snprintf(want, sizeof want, "killed by SIGSEGV at address 0x%lx",
           (unsigned long)(uintptr_t)(page + 16));
  if (strstr(msg, want) == NULL) {
    fprintf(stderr, "# message: %s\n# wanted: %s\n", msg, want);
  }
  ASSERT_NOT_NULL(strstr(msg, want));
  mproc_async_free(r);
  /* The replacement works. */
  int x = 1;
  void *res;
  ASSERT_OK(mproc_pool_apply(p, quick_task, NULL, &x, sizeof x, &res, NULL));
  ASSERT_EQ(*(int *)res, 2);
  free(res);
  ASSERT_OK(mproc_pool_close(p));
  ASSERT_OK(mproc_pool_join(p, 10 * test_timeout_mult()));
  ASSERT_OK(mproc_pool_free(p));
  munmap(page, 4096);
  return 0;
}
