/*
 * tests/behaviour/test-ctx.c - the ctx pointer that travels with every
 * callback (docs/guide.md, "Conventions"): it reaches the task, the map
 * function, the initializer and the process target as the same address,
 * and arena memory behind it is shared both ways (what a worker writes
 * there, the parent reads).  Memory the parent set up before the workers
 * were forked is readable through it too.
 */
#include "mproc/arena.h"
#include "mproc/pool.h"
#include "mproc/process.h"
#include "task.h"

#define BOX_MAGIC 0x5eed

/* What the callbacks share with the parent: arena memory. */
typedef struct box {
  int magic;
  _Atomic int hits;   /* calls that saw the right ctx */
  _Atomic int inits;  /* initializer runs */
  int written;        /* a value a child stores for the parent */
} box;

static box *new_box(void) {
  box *b;
  ASSERT_OK(mproc_shm_calloc((void **)&b, 1, sizeof *b));
  b->magic = BOX_MAGIC;
  return b;
}

/* The argument bytes carry the address the ctx must be, so a wrong
 * pointer is seen even where it would point at readable memory. */
static int ctx_task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  void *want;
  if (len != sizeof want) {
    return 90;
  }
  memcpy(&want, arg, sizeof want);
  if (ctx != want) {
    return 91;
  }
  box *b = ctx;
  __atomic_add_fetch(&b->hits, 1, __ATOMIC_SEQ_CST);
  return mproc_task_return(t, &b->magic, sizeof b->magic);
}

/* out = in + the box's magic; counts a hit. */
static int ctx_map(const void *in, void *out, void *ctx) {
  box *b = ctx;
  if (b == NULL || b->magic != BOX_MAGIC) {
    return 92;
  }
  int x;
  memcpy(&x, in, sizeof x);
  x += b->magic;
  memcpy(out, &x, sizeof x);
  __atomic_add_fetch(&b->hits, 1, __ATOMIC_SEQ_CST);
  return 0;
}

static mproc_pool *new_pool(int n) {
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = n;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  return p;
}

static void finish_pool(mproc_pool *p) {
  ASSERT_OK(mproc_pool_close(p));
  ASSERT_OK(mproc_pool_join(p, 30 * test_timeout_mult()));
  ASSERT_OK(mproc_pool_free(p));
}

TEST_IMPL_ALL_METHODS(ctx_pool_apply) {
  box *b = new_box();
  mproc_pool *p = new_pool(2);
  void *res;
  size_t len;
  ASSERT_OK(mproc_pool_apply(p, ctx_task, b, &b, sizeof b, &res, &len));
  ASSERT_EQ(len, sizeof(int));
  ASSERT_EQ(*(int *)res, BOX_MAGIC);
  free(res);
  mproc_async *r[8];
  for (int i = 0; i < 8; i++) {
    ASSERT_OK(mproc_pool_apply_async(p, ctx_task, b, &b, sizeof b, NULL,
                                     &r[i]));
  }
  for (int i = 0; i < 8; i++) {
    ASSERT_OK(mproc_async_get(r[i], MPROC_FOREVER));
    ASSERT_OK(mproc_async_free(r[i]));
  }
  /* The workers' increments landed in the parent's view of the box. */
  ASSERT_EQ(__atomic_load_n(&b->hits, __ATOMIC_SEQ_CST), 9);
  /* A NULL ctx arrives as NULL. */
  ASSERT_ERR(mproc_pool_apply(p, ctx_task, NULL, &b, sizeof b, &res, NULL),
             MPROC_ETASK);
  finish_pool(p);
  ASSERT_OK(mproc_shm_free(b));
  return 0;
}

TEST_IMPL_ALL_METHODS(ctx_pool_map) {
  box *b = new_box();
  mproc_pool *p = new_pool(3);
  enum { N = 100 };
  int in[N], out[N];
  for (int i = 0; i < N; i++) {
    in[i] = i;
  }
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = 7;
  ASSERT_OK(mproc_pool_map(p, ctx_map, b, in, N, sizeof(int), out,
                           sizeof(int), &mo, NULL));
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(out[i], i + BOX_MAGIC);
  }
  ASSERT_EQ(__atomic_load_n(&b->hits, __ATOMIC_SEQ_CST), N);
  /* map_async carries it the same way. */
  memset(out, 0, sizeof out);
  mproc_async *r;
  ASSERT_OK(mproc_pool_map_async(p, ctx_map, b, in, N, sizeof(int), out,
                                 sizeof(int), NULL, &r));
  ASSERT_OK(mproc_async_get(r, MPROC_FOREVER));
  ASSERT_OK(mproc_async_free(r));
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(out[i], i + BOX_MAGIC);
  }
  ASSERT_EQ(__atomic_load_n(&b->hits, __ATOMIC_SEQ_CST), 2 * N);
  finish_pool(p);
  ASSERT_OK(mproc_shm_free(b));
  return 0;
}

TEST_IMPL_ALL_METHODS(ctx_pool_imap) {
  box *b = new_box();
  mproc_pool *p = new_pool(2);
  enum { N = 40 };
  int in[N];
  for (int i = 0; i < N; i++) {
    in[i] = i;
  }
  for (int unordered = 0; unordered <= 1; unordered++) {
    mproc_imap *it;
    ASSERT_OK(mproc_pool_imap(p, ctx_map, b, in, N, sizeof(int), sizeof(int),
                              3, unordered, &it));
    int seen = 0, v;
    size_t idx;
    int rc;
    while ((rc = mproc_imap_next(it, &v, &idx, MPROC_FOREVER)) == 0) {
      ASSERT_EQ(v, (int)idx + BOX_MAGIC);
      seen++;
    }
    ASSERT_ERR(rc, MPROC_EOF);
    ASSERT_EQ(seen, N);
    ASSERT_OK(mproc_imap_free(it));
  }
  ASSERT_EQ(__atomic_load_n(&b->hits, __ATOMIC_SEQ_CST), 2 * N);
  finish_pool(p);
  ASSERT_OK(mproc_shm_free(b));
  return 0;
}

TEST_IMPL(ctx_pool_map_bytes) {
  box *b = new_box();
  mproc_pool *p = new_pool(2);
  enum { N = 5 };
  mproc_bytes args[N];
  mproc_result res[N];
  for (int i = 0; i < N; i++) {
    args[i].data = &b;
    args[i].len = sizeof b;
  }
  ASSERT_OK(mproc_pool_map_bytes(p, ctx_task, b, args, N, res, NULL));
  for (int i = 0; i < N; i++) {
    ASSERT_OK(res[i].error);
    ASSERT_EQ(res[i].len, sizeof(int));
    ASSERT_EQ(*(int *)res[i].data, BOX_MAGIC);
    free(res[i].data);
  }
  ASSERT_EQ(__atomic_load_n(&b->hits, __ATOMIC_SEQ_CST), N);
  finish_pool(p);
  ASSERT_OK(mproc_shm_free(b));
  return 0;
}

/* The initializer counts itself in the box named by initctx. */
static int ctx_init(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)t, (void)arg, (void)len;
  box *b = ctx;
  if (b == NULL || b->magic != BOX_MAGIC) {
    return 93;
  }
  __atomic_add_fetch(&b->inits, 1, __ATOMIC_SEQ_CST);
  return 0;
}

/* Reads plain (not arena) memory the parent filled before the pool was
 * created: forked workers see it as it was then. */
static int read_plain(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)arg, (void)len;
  const char *s = ctx;
  return mproc_task_return(t, s, strlen(s) + 1);
}

TEST_IMPL(ctx_pool_initializer) {
  box *b = new_box();
  char *plain = malloc(32);
  ASSERT_NOT_NULL(plain);
  snprintf(plain, 32, "set before the fork");
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 3;
  o.initializer = ctx_init;
  o.initctx = b;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  /* mproc_pool_new returns after every initializer's verdict. */
  ASSERT_EQ(__atomic_load_n(&b->inits, __ATOMIC_SEQ_CST), 3);
  void *res;
  ASSERT_OK(mproc_pool_apply(p, read_plain, plain, NULL, 0, &res, NULL));
  ASSERT_STR_EQ((char *)res, "set before the fork");
  free(res);
  finish_pool(p);
  free(plain);
  ASSERT_OK(mproc_shm_free(b));
  return 0;
}

/* A process target: checks the ctx against the address in arg, then
 * stores a value the parent reads back. */
static int ctx_target(const void *arg, size_t len, void *ctx) {
  void *want;
  if (len != sizeof want) {
    return 10;
  }
  memcpy(&want, arg, sizeof want);
  if (ctx != want) {
    return 11;
  }
  box *b = ctx;
  if (b->magic != BOX_MAGIC) {
    return 12;
  }
  b->written = 4711;
  return 0;
}

TEST_IMPL_ALL_METHODS(ctx_process) {
  box *b = new_box();
  mproc_process *p;
  ASSERT_OK(mproc_process_new(&p, ctx_target, b, &b, sizeof b, NULL));
  ASSERT_OK(mproc_process_start(p));
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_EQ(b->written, 4711);
  ASSERT_OK(mproc_shm_free(b));
  return 0;
}
