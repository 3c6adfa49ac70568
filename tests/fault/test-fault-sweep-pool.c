/*
 * tests/fault/test-fault-sweep-pool.c - a worker SIGKILLed at every named
 * fault point of the pool (the "pool.*" lines of src/fault.h).
 *
 * For each point in turn: the fault hook is set before the pool exists,
 * so every worker inherits it; the first worker to reach the point says
 * so on a shared board and waits there.  A thread of the test then takes
 * a few blocks from the arena the size of a task's first result (so that
 * a block the worker freed is handed out again, as it would be to any
 * other process), fills them with a pattern, and SIGKILLs the worker.
 * Those blocks must come out intact and still allocated: a record left
 * naming a freed block would have the pool free one of them.  A workload
 * of apply tasks (each replaces its first result with a second one, and
 * every fifth then fails) and a chunked map passes every point.  After
 * it:
 *   - the pool went on: every task and every item has an outcome;
 *   - every result that is not the killed one's is right, and each task
 *     and item ran at most once (none twice, none lost);
 *   - the killed task failed with MPROC_EWORKERDIED and SIGKILL, or
 *     succeeded where the point lies after its result was published; a
 *     killed map claim lost at most its own chunk;
 *   - mproc__arena_check() is 0, and once the pool is freed the arena
 *     holds at most one block more than before (the documented leak of a
 *     kill between unlinking a block and freeing it).
 */
#include "mproc/pool.h"
#include "task.h"

#include "internal.h"
#include "sweep.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

SWEEP_COVERS("pool.")

#define NT 20   /* apply tasks */
#define NI 64   /* map items */
#define CHUNK 4 /* map chunksize */

typedef struct sweep_board {
  int target;          /* the point to die at */
  pid_t parent;
  _Atomic int armed;   /* 1 until a worker reached the target */
  _Atomic int hit;
  _Atomic pid_t at_pid; /* the worker waiting at the target */
  _Atomic int runs[NT];
  _Atomic int item_runs[NI];
} sweep_board;

static sweep_board *SB; /* arena memory: the workers write to it */

static void sweep_hook(int point, void *ctx) {
  (void)ctx;
  if (SB == NULL || point != SB->target || getpid() == SB->parent) {
    return;
  }
  if (atomic_exchange(&SB->armed, 0) == 1) {
    atomic_store(&SB->hit, 1);
    atomic_store(&SB->at_pid, getpid());
    for (;;) {
      pause(); /* until the test's SIGKILL */
    }
  }
}

#define FIRST_LEN 96 /* a task's first result */
#define NREUSE 32

/* The killer thread: waits for a worker at the point, takes blocks of the
 * first result's size, then kills the worker. */
typedef struct killer {
  pthread_t th;
  _Atomic int stop;
  void *blocks[NREUSE];
} killer;

static void *killer_main(void *arg) {
  killer *k = arg;
  pid_t pid;
  while ((pid = atomic_load(&SB->at_pid)) == 0) {
    if (atomic_load(&k->stop)) {
      return NULL;
    }
    test_sleep(0.0005);
  }
  for (int i = 0; i < NREUSE; i++) {
    if (mproc_shm_alloc(&k->blocks[i], FIRST_LEN) != 0) {
      k->blocks[i] = NULL;
      continue;
    }
    test_fill(k->blocks[i], FIRST_LEN, (uint64_t)i + 1);
  }
  kill(pid, SIGKILL);
  return NULL;
}

static int sweep_task(mproc_task *t, const void *arg, size_t len,
                 void *ctx) {
  (void)ctx;
  int i;
  (void)len;
  memcpy(&i, arg, sizeof i);
  atomic_fetch_add(&SB->runs[i], 1);
  /* A first result, replaced by the second: the replacement frees the
   * first block in the worker. */
  char first[FIRST_LEN];
  memset(first, i, sizeof first);
  if (mproc_task_return(t, first, sizeof first) != 0) {
    return 99;
  }
  int x = i * 7 + 1;
  if (mproc_task_return(t, &x, sizeof x) != 0) {
    return 99;
  }
  return i % 5 == 4 ? 7 : 0; /* a failure after a result: freed too */
}

static int sweep_item(const void *in, void *out, void *ctx) {
  (void)ctx;
  int v;
  memcpy(&v, in, sizeof v);
  atomic_fetch_add(&SB->item_runs[v], 1);
  int r = v * v + 1;
  memcpy(out, &r, sizeof r);
  return 0;
}

/* Points where the killed task or claim must fail, where nothing may fail,
 * and (the rest) where either may happen. */
static const char *const must_fail[] = {
    "pool.task_taken",       "pool.result_cleared", "pool.result_allocated",
    "pool.result_published", "pool.fail_result_cleared",
    "pool.claim_added",      "pool.claim_recorded",
};
static const char *const must_not_fail[] = {
    "pool.task_named",      "pool.task_linked_done", "pool.slot_cleared",
    "pool.result_unwoken",  "pool.job_joined",       "pool.claim_items_done",
    "pool.claim_marked",    "pool.job_leaving",      "pool.job_finished",
};

static int listed(const char *const *list, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(list[i], name) == 0) {
      return 1;
    }
  }
  return 0;
}

static size_t arena_blocks(void) {
  mproc_arena_stats s;
  ASSERT_OK(mproc_arena_get_stats(&s));
  return s.blocks;
}

static void sweep_one(int point) {
  const char *name = mproc__fault_name(point);
  fprintf(stderr, "# sweep: %s (%s)\n", name, mproc__fault_what(point));
  memset(SB, 0, sizeof *SB);
  SB->target = point;
  SB->parent = getpid();
  atomic_store(&SB->armed, 1);
  size_t base = arena_blocks();

  mproc__fault_hook = sweep_hook;
  killer k;
  memset(&k, 0, sizeof k);
  ASSERT_EQ(pthread_create(&k.th, NULL, killer_main, &k), 0);
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 2;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  mproc_async *r[NT];
  for (int i = 0; i < NT; i++) {
    ASSERT_OK(mproc_pool_apply_async(p, sweep_task, NULL, &i, sizeof i, NULL, &r[i]));
  }
  int in[NI], out[NI];
  for (int i = 0; i < NI; i++) {
    in[i] = i;
  }
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = CHUNK;
  mproc_map_error merr;
  int mrc = mproc_pool_map(p, sweep_item, NULL, in, NI, sizeof(int), out,
                           sizeof(int), &mo, &merr);
  int failed = 0;
  for (int i = 0; i < NT; i++) {
    int rc = mproc_async_get(r[i], 30 * test_timeout_mult());
    if (rc == MPROC_EWORKERDIED) {
      int sig = 0;
      ASSERT_OK(mproc_async_error(r[i], NULL, &sig, NULL));
      ASSERT_EQ(sig, SIGKILL);
      ASSERT_LE(atomic_load(&SB->runs[i]), 1);
      failed++;
    } else if (i % 5 == 4) {
      ASSERT_ERR(rc, MPROC_ETASK);
      int code = 0;
      ASSERT_OK(mproc_async_error(r[i], &code, NULL, NULL));
      ASSERT_EQ(code, 7);
      ASSERT_EQ(atomic_load(&SB->runs[i]), 1);
    } else {
      ASSERT_OK(rc);
      size_t len = 0;
      const int *d = mproc_async_data(r[i], &len);
      ASSERT_NOT_NULL(d);
      ASSERT_UEQ(len, sizeof(int));
      ASSERT_EQ(*d, i * 7 + 1);
      ASSERT_EQ(atomic_load(&SB->runs[i]), 1);
    }
    mproc_async_free(r[i]);
  }
  int lost = 0, first_lost = -1;
  for (int i = 0; i < NI; i++) {
    if (out[i] == i * i + 1) {
      ASSERT_EQ(atomic_load(&SB->item_runs[i]), 1);
    } else {
      ASSERT_EQ(out[i], 0); /* a lost item reads zeros */
      ASSERT_LE(atomic_load(&SB->item_runs[i]), 1);
      if (first_lost < 0) {
        first_lost = i;
      }
      lost++;
    }
  }
  if (lost > 0) {
    ASSERT_ERR(mrc, MPROC_EWORKERDIED);
    ASSERT_EQ((int64_t)merr.index, first_lost);
    ASSERT_LE(lost, CHUNK); /* one claim's chunk at most */
    failed++;
  } else {
    ASSERT_OK(mrc);
  }
  atomic_store(&k.stop, 1);
  ASSERT_EQ(pthread_join(k.th, NULL), 0);
  ASSERT_EQ(atomic_load(&SB->hit), 1); /* the point was reached */
  ASSERT_LE(failed, 1);
  if (listed(must_fail, MPROC__ARRAY_SIZE(must_fail), name)) {
    ASSERT_EQ(failed, 1);
  }
  if (listed(must_not_fail, MPROC__ARRAY_SIZE(must_not_fail), name)) {
    ASSERT_EQ(failed, 0);
  }
  ASSERT_OK(mproc_pool_close(p));
  ASSERT_OK(mproc_pool_join(p, 30 * test_timeout_mult()));
  ASSERT_OK(mproc_pool_free(p));
  mproc__fault_hook = NULL;
  ASSERT_OK(mproc__arena_check());
  /* The blocks handed out after the worker's free are still ours. */
  for (int i = 0; i < NREUSE; i++) {
    ASSERT_NOT_NULL(k.blocks[i]);
    ASSERT_GE(mproc_shm_usable_size(k.blocks[i]), FIRST_LEN);
    ASSERT(test_check_fill(k.blocks[i], FIRST_LEN, (uint64_t)i + 1));
    ASSERT_OK(mproc_shm_free(k.blocks[i]));
  }
  size_t after = arena_blocks();
  ASSERT_LE(after, base + 1);
}

TEST_IMPL(pool_fault_sweep) {
  ASSERT_OK(mproc_shm_calloc((void **)&SB, 1, sizeof *SB));
  int swept = 0;
  for (int point = 1; point < MPROC__FP_END; point++) {
    if (strncmp(mproc__fault_name(point), "pool.", 5) == 0) {
      sweep_one(point);
      swept++;
    }
  }
  ASSERT_GE(swept, 17);
  mproc_shm_free(SB);
  SB = NULL;
  return 0;
}
