/*
 * tests/unit/test-conventions.c - the object conventions every module
 * follows (docs/guide.md, "Conventions"): a destructor given NULL does
 * nothing and returns 0, and a constructor that fails leaves *out NULL
 * (nothing to free), whatever *out held before.
 */
#include "mproc.h"
#include "task.h"

#include <math.h>

TEST_IMPL(conventions_free_null_is_a_noop) {
  ASSERT_OK(mproc_shm_free(NULL));
  ASSERT_OK(mproc_connection_close(NULL));
  ASSERT_OK(mproc_listener_close(NULL));
  ASSERT_OK(mproc_pool_free(NULL));
  ASSERT_OK(mproc_async_free(NULL));
  ASSERT_OK(mproc_imap_free(NULL));
  ASSERT_OK(mproc_process_free(NULL));
  ASSERT_OK(mproc_queue_free(NULL));
  ASSERT_OK(mproc_simple_queue_free(NULL));
  ASSERT_OK(mproc_value_free(NULL));
  ASSERT_OK(mproc_array_free(NULL));
  ASSERT_OK(mproc_shared_memory_close(NULL));
  ASSERT_OK(mproc_lock_free(NULL));
  ASSERT_OK(mproc_semaphore_free(NULL));
  ASSERT_OK(mproc_event_free(NULL));
  ASSERT_OK(mproc_cond_free(NULL));
  ASSERT_OK(mproc_barrier_free(NULL));
  return 0;
}

static int noop_target(const void *arg, size_t len, void *ctx) {
  (void)arg, (void)len, (void)ctx;
  return 0;
}

/* A non-NULL value a failed constructor must overwrite. */
#define JUNK ((void *)0x5a5a)

TEST_IMPL(conventions_failed_new_leaves_null) {
  void *junk = JUNK;
  mproc_pool *pool = junk;
  mproc_pool_opts po;
  memset(&po, 0, sizeof po);
  po.processes = -1;
  ASSERT_ERR(mproc_pool_new(&pool, &po), MPROC_EINVAL);
  ASSERT_NULL(pool);
  mproc_process *proc = junk;
  ASSERT_ERR(mproc_process_new(&proc, NULL, NULL, NULL, 0, NULL),
             MPROC_EINVAL);
  ASSERT_NULL(proc);
  proc = junk;
  ASSERT_ERR(mproc_process_new(&proc, noop_target, NULL, NULL, 4, NULL),
             MPROC_EINVAL);
  ASSERT_NULL(proc);
  mproc_queue *q = junk;
  mproc_queue_opts qo;
  memset(&qo, 0xff, sizeof qo); /* nonsense options */
  int r = mproc_queue_new(&q, 0, &qo);
  if (r != 0) {
    ASSERT_NULL(q);
  } else {
    ASSERT_OK(mproc_queue_free(q));
  }
  mproc_value *v = junk;
  ASSERT_ERR(mproc_value_new(&v, '?', NULL, NULL), MPROC_EINVAL);
  ASSERT_NULL(v);
  v = junk;
  ASSERT_ERR(mproc_raw_value_new(&v, '?', NULL), MPROC_EINVAL);
  ASSERT_NULL(v);
  mproc_array *a = junk;
  ASSERT_ERR(mproc_array_new(&a, '?', 4, NULL, NULL), MPROC_EINVAL);
  ASSERT_NULL(a);
  a = junk;
  ASSERT_ERR(mproc_raw_array_new(&a, '?', 4, NULL), MPROC_EINVAL);
  ASSERT_NULL(a);
  mproc_shared_memory *m = junk;
  ASSERT_ERR(mproc_shared_memory_attach(&m, "no/such/name"), MPROC_EINVAL);
  ASSERT_NULL(m);
  mproc_semaphore *s = junk;
  ASSERT_ERR(mproc_semaphore_new(&s, -1, NULL), MPROC_EINVAL);
  ASSERT_NULL(s);
  mproc_barrier *b = junk;
  ASSERT_ERR(mproc_barrier_new(&b, 0, NULL), MPROC_EINVAL);
  ASSERT_NULL(b);
  b = junk;
  mproc_barrier_opts bo;
  memset(&bo, 0, sizeof bo);
  bo.timeout = NAN;
  ASSERT_ERR(mproc_barrier_new(&b, 2, &bo), MPROC_EINVAL);
  ASSERT_NULL(b);
  mproc_cond *c = junk;
  ASSERT_ERR(mproc_cond_new(&c, (mproc_lock *)junk), MPROC_EINVAL);
  ASSERT_NULL(c);
  mproc_listener *l = junk;
  mproc_listener_opts lo;
  memset(&lo, 0, sizeof lo);
  lo.family = 77;
  ASSERT_ERR(mproc_listener_new(&l, &lo), MPROC_EINVAL);
  ASSERT_NULL(l);
  mproc_connection *c1 = junk, *c2 = junk;
  ASSERT_ERR(mproc_connection_from_fd(&c1, -1, 1, 0), MPROC_EINVAL);
  ASSERT_NULL(c1);
  c1 = junk;
  mproc_client_opts co;
  memset(&co, 0, sizeof co);
  co.family = 77;
  ASSERT_ERR(mproc_client_connect(&c1, "x", &co), MPROC_EINVAL);
  ASSERT_NULL(c1);
  (void)c2;
  mproc_async *r2 = junk;
  ASSERT_ERR(mproc_pool_apply_async(NULL, NULL, NULL, NULL, 0, NULL, &r2),
             MPROC_EINVAL);
  ASSERT_NULL(r2);
  mproc_imap *it = junk;
  ASSERT_ERR(mproc_pool_imap(NULL, NULL, NULL, NULL, 0, 4, 4, 1, 0, &it),
             MPROC_EINVAL);
  ASSERT_NULL(it);
  return 0;
}
