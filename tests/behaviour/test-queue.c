/*
 * tests/behaviour/test-queue.c - Queue, JoinableQueue and SimpleQueue
 * between processes, ported from CPython's _TestQueue (test_put,
 * test_get, test_fork, test_qsize, test_task_done) and TestSimpleQueue,
 * plus mproc's own: close waking waiters in other processes, a child that
 * puts and exits is joined at once (no feeder to flush), and many
 * producers and consumers with every message checked exactly once.
 */
#include "internal.h"
#include "task.h"

#include <signal.h>

/* Wait (10 s at most) until *flag is nonzero. */
static void wait_flag(const int *flag) {
  double end = test_now() + 10 * test_timeout_mult();
  while (__atomic_load_n(flag, __ATOMIC_SEQ_CST) == 0) {
    ASSERT(test_now() < end);
    test_sleep(0.001);
  }
}

static void set_flag(int *flag, int v) {
  __atomic_store_n(flag, v, __ATOMIC_SEQ_CST);
}

/* What the children of a case share: the queue and some flags, in the
 * arena (the pointer travels in the task's argument bytes). */
struct shared {
  mproc_queue *q;
  int ready;
  int go;
  int result;
  double at; /* a child's test_now() at some moment */
};

static struct shared *make_shared(mproc_queue *q) {
  struct shared *s = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&s, 1, sizeof *s));
  s->q = q;
  return s;
}

static struct shared *arg_shared(const void *arg) {
  return *(struct shared *const *)arg;
}

static mproc_process *start(mproc_target_fn fn, struct shared *s) {
  return test_start_proc(fn, &s, sizeof s);
}

static int put_u32(mproc_queue *q, uint32_t v, double timeout) {
  return mproc_queue_put(q, &v, sizeof v, timeout);
}

/* The next message as a u32, or -1 / the error. */
static int64_t get_u32(mproc_queue *q, double timeout) {
  uint32_t v = 0;
  size_t len = 0;
  int r = mproc_queue_get_into(q, &v, sizeof v, &len, timeout);
  if (r != 0) {
    return r;
  }
  return len == sizeof v ? (int64_t)v : -1;
}

/* ---- _TestQueue.test_put ---- */

static int t_drain_six(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = arg_shared(arg);
  wait_flag(&s->go);
  for (uint32_t i = 0; i < 6; i++) {
    if (get_u32(s->q, 5) != i) {
      return 2;
    }
  }
  return 0;
}

TEST_IMPL(queue_put) {
  mproc_queue *q = NULL;
  ASSERT_OK(mproc_queue_new(&q, 6, NULL));
  struct shared *s = make_shared(q);
  mproc_process *p = start(t_drain_six, s);
  ASSERT_EQ(mproc_queue_empty(q), 1);
  ASSERT_EQ(mproc_queue_full(q), 0);
  /* Every form of put: block=False, block=True, timeouts. */
  ASSERT_OK(put_u32(q, 0, 0));
  ASSERT_OK(put_u32(q, 1, MPROC_FOREVER));
  ASSERT_OK(put_u32(q, 2, 1));
  ASSERT_OK(put_u32(q, 3, 0));
  ASSERT_OK(put_u32(q, 4, 1));
  ASSERT_OK(put_u32(q, 5, 0));
  ASSERT_EQ(mproc_queue_empty(q), 0);
  ASSERT_EQ(mproc_queue_full(q), 1);
  ASSERT_EQ(mproc_queue_qsize(q), 6);
  double t0 = test_now();
  ASSERT_ERR(put_u32(q, 7, 0), MPROC_EFULL);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  t0 = test_now();
  ASSERT_ERR(put_u32(q, 7, 0.1), MPROC_EFULL);
  double el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.1);
  ASSERT_DBL_LE(el, 0.1 + test_slack());
  set_flag(&s->go, 1);
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_EQ(mproc_queue_empty(q), 1);
  ASSERT_EQ(mproc_queue_full(q), 0);
  ASSERT_OK(mproc_queue_free(q));
  ASSERT_OK(mproc_shm_free(s));
  return 0;
}

/* ---- _TestQueue.test_get ---- */

static int t_put_2_to_5(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = arg_shared(arg);
  wait_flag(&s->go);
  for (uint32_t i = 2; i < 6; i++) {
    if (put_u32(s->q, i, MPROC_FOREVER) != 0) {
      return 2;
    }
  }
  set_flag(&s->ready, 1);
  return 0;
}

TEST_IMPL(queue_get) {
  mproc_queue *q = NULL;
  ASSERT_OK(mproc_queue_new(&q, 0, NULL));
  struct shared *s = make_shared(q);
  mproc_process *p = start(t_put_2_to_5, s);
  ASSERT_EQ(mproc_queue_empty(q), 1);
  set_flag(&s->go, 1);
  wait_flag(&s->ready);
  ASSERT_EQ(mproc_queue_empty(q), 0);
  void *m = NULL;
  size_t len = 0;
  ASSERT_OK(mproc_queue_get(q, &m, &len, MPROC_FOREVER));
  ASSERT_EQ(len, 4);
  ASSERT_EQ(*(uint32_t *)m, 2);
  free(m);
  ASSERT_EQ(get_u32(q, MPROC_FOREVER), 3);
  ASSERT_EQ(get_u32(q, 1), 4);
  ASSERT_EQ(get_u32(q, 0), 5);
  ASSERT_EQ(mproc_queue_empty(q), 1);
  double t0 = test_now();
  ASSERT_ERR(get_u32(q, 0), MPROC_EEMPTY);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  t0 = test_now();
  ASSERT_ERR(get_u32(q, 0.1), MPROC_EEMPTY);
  double el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.1);
  ASSERT_DBL_LE(el, 0.1 + test_slack());
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_OK(mproc_queue_free(q));
  ASSERT_OK(mproc_shm_free(s));
  return 0;
}

/* ---- _TestQueue.test_fork ---- */

static int t_put_10_to_19(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = arg_shared(arg);
  for (uint32_t i = 10; i < 20; i++) {
    if (put_u32(s->q, i, MPROC_FOREVER) != 0) {
      return 2;
    }
  }
  return 0;
}

TEST_IMPL_ALL_METHODS(queue_fork) {
  mproc_queue *q = NULL;
  ASSERT_OK(mproc_queue_new(&q, 0, NULL));
  struct shared *s = make_shared(q);
  for (uint32_t i = 0; i < 10; i++) {
    ASSERT_OK(put_u32(q, i, MPROC_FOREVER));
  }
  ASSERT_EQ(test_run_proc(t_put_10_to_19, &s, sizeof s), 0);
  for (uint32_t i = 0; i < 20; i++) {
    ASSERT_EQ(get_u32(q, 1), i);
  }
  ASSERT_ERR(get_u32(q, 0), MPROC_EEMPTY);
  ASSERT_OK(mproc_queue_free(q));
  ASSERT_OK(mproc_shm_free(s));
  return 0;
}

/* ---- _TestQueue.test_qsize, across processes ---- */

static int t_put_one(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = arg_shared(arg);
  return put_u32(s->q, 1, MPROC_FOREVER) == 0 ? 0 : 2;
}

static int t_get_one(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = arg_shared(arg);
  return get_u32(s->q, 5) == 1 ? 0 : 2;
}

TEST_IMPL(queue_qsize) {
  mproc_queue *q = NULL;
  ASSERT_OK(mproc_queue_new(&q, 0, NULL));
  struct shared *s = make_shared(q);
  ASSERT_EQ(mproc_queue_qsize(q), 0);
  ASSERT_EQ(test_run_proc(t_put_one, &s, sizeof s), 0);
  ASSERT_EQ(mproc_queue_qsize(q), 1);
  ASSERT_EQ(test_run_proc(t_put_one, &s, sizeof s), 0);
  ASSERT_EQ(mproc_queue_qsize(q), 2);
  ASSERT_EQ(test_run_proc(t_get_one, &s, sizeof s), 0);
  ASSERT_EQ(mproc_queue_qsize(q), 1);
  ASSERT_EQ(test_run_proc(t_get_one, &s, sizeof s), 0);
  ASSERT_EQ(mproc_queue_qsize(q), 0);
  ASSERT_OK(mproc_queue_free(q));
  ASSERT_OK(mproc_shm_free(s));
  return 0;
}

/* ---- _TestQueue.test_task_done: 4 workers, 10 items ---- */

static int t_worker(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = arg_shared(arg);
  for (;;) {
    int64_t v = get_u32(s->q, MPROC_FOREVER);
    if (v == MPROC_ECLOSED) {
      return 0;
    }
    if (v < 0) {
      return 2;
    }
    test_sleep(0.01); /* the work */
    __atomic_fetch_add(&s->result, 1, __ATOMIC_SEQ_CST);
    if (mproc_queue_task_done(s->q) != 0) {
      return 3;
    }
  }
}

TEST_IMPL(queue_task_done) {
  mproc_queue *q = NULL;
  ASSERT_OK(mproc_joinable_queue_new(&q, 0, NULL));
  struct shared *s = make_shared(q);
  mproc_process *w[4];
  test_start_procs(w, 4, t_worker, &s, sizeof s);
  for (uint32_t i = 0; i < 10; i++) {
    ASSERT_OK(put_u32(q, i, MPROC_FOREVER));
  }
  ASSERT_OK(mproc_queue_join(q, 10 * test_timeout_mult()));
  ASSERT_EQ(__atomic_load_n(&s->result, __ATOMIC_SEQ_CST), 10);
  /* Again, a second batch. */
  for (uint32_t i = 0; i < 10; i++) {
    ASSERT_OK(put_u32(q, i, MPROC_FOREVER));
  }
  ASSERT_OK(mproc_queue_join(q, MPROC_FOREVER));
  ASSERT_EQ(__atomic_load_n(&s->result, __ATOMIC_SEQ_CST), 20);
  /* Python stops its workers with None; close does it here. */
  ASSERT_OK(mproc_queue_close(q));
  test_finish_procs_ok(w, 4);
  ASSERT_ERR(mproc_queue_task_done(q), MPROC_ETASKDONE);
  ASSERT_OK(mproc_queue_free(q));
  ASSERT_OK(mproc_shm_free(s));
  return 0;
}

/* A join blocked in another process returns as soon as the last task is
 * done. */
static int t_join(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = arg_shared(arg);
  set_flag(&s->ready, 1);
  int r = mproc_queue_join(s->q, 10);
  s->at = test_now();
  return r == 0 ? 0 : 2;
}

TEST_IMPL(queue_join_wakes) {
  mproc_queue *q = NULL;
  ASSERT_OK(mproc_joinable_queue_new(&q, 0, NULL));
  struct shared *s = make_shared(q);
  ASSERT_OK(put_u32(q, 1, 0));
  mproc_process *p = start(t_join, s);
  wait_flag(&s->ready);
  test_sleep(0.2);
  ASSERT_EQ(get_u32(q, 0), 1);
  ASSERT_EQ(mproc_queue_is_closed(q), 0);
  double t0 = test_now();
  ASSERT_OK(mproc_queue_task_done(q));
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_DBL_GE(s->at, t0);
  ASSERT_DBL_LE(s->at - t0, test_slack());
  ASSERT_OK(mproc_queue_free(q));
  ASSERT_OK(mproc_shm_free(s));
  return 0;
}

/* ---- waking across processes ---- */

static int t_get_wait(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = arg_shared(arg);
  set_flag(&s->ready, 1);
  int64_t v = get_u32(s->q, 10);
  s->at = test_now();
  __atomic_store_n(&s->result, (int)v, __ATOMIC_SEQ_CST);
  return 0;
}

/* A consumer asleep on an empty queue gets a message put in another
 * process at once. */
TEST_IMPL(queue_put_wakes_getter) {
  mproc_queue *q = NULL;
  ASSERT_OK(mproc_queue_new(&q, 0, NULL));
  struct shared *s = make_shared(q);
  mproc_process *p = start(t_get_wait, s);
  wait_flag(&s->ready);
  test_sleep(0.2);
  double t0 = test_now();
  ASSERT_OK(put_u32(q, 77, 0));
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_EQ(s->result, 77);
  ASSERT_DBL_LE(s->at - t0, test_slack());
  ASSERT_OK(mproc_queue_free(q));
  ASSERT_OK(mproc_shm_free(s));
  return 0;
}

static int t_put_wait(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = arg_shared(arg);
  set_flag(&s->ready, 1);
  int r = put_u32(s->q, 2, 10);
  s->at = test_now();
  __atomic_store_n(&s->result, r == 0 ? 1 : r, __ATOMIC_SEQ_CST);
  return 0;
}

/* A producer asleep on a full queue puts as soon as another process
 * takes a message. */
TEST_IMPL(queue_get_wakes_putter) {
  mproc_queue *q = NULL;
  ASSERT_OK(mproc_queue_new(&q, 1, NULL));
  struct shared *s = make_shared(q);
  ASSERT_OK(put_u32(q, 1, 0));
  mproc_process *p = start(t_put_wait, s);
  wait_flag(&s->ready);
  test_sleep(0.2);
  double t0 = test_now();
  ASSERT_EQ(get_u32(q, 0), 1);
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_EQ(s->result, 1);
  ASSERT_DBL_LE(s->at - t0, test_slack());
  ASSERT_EQ(get_u32(q, 0), 2);
  ASSERT_OK(mproc_queue_free(q));
  ASSERT_OK(mproc_shm_free(s));
  return 0;
}

/* Close wakes a consumer asleep on an empty queue (MPROC_ECLOSED) and a
 * producer asleep on a full one (MPROC_ECLOSED), in other processes. */
TEST_IMPL(queue_close_wakes_waiters) {
  mproc_queue *q = NULL;
  ASSERT_OK(mproc_queue_new(&q, 0, NULL));
  struct shared *s = make_shared(q);
  mproc_process *p = start(t_get_wait, s);
  wait_flag(&s->ready);
  test_sleep(0.2);
  double t0 = test_now();
  ASSERT_OK(mproc_queue_close(q));
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_ERR(s->result, MPROC_ECLOSED);
  ASSERT_DBL_LE(s->at - t0, test_slack());
  ASSERT_OK(mproc_queue_free(q));

  ASSERT_OK(mproc_queue_new(&q, 1, NULL));
  memset(s, 0, sizeof *s);
  s->q = q;
  ASSERT_OK(put_u32(q, 1, 0));
  p = start(t_put_wait, s);
  wait_flag(&s->ready);
  test_sleep(0.2);
  t0 = test_now();
  ASSERT_OK(mproc_queue_close(q));
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_ERR(s->result, MPROC_ECLOSED);
  ASSERT_DBL_LE(s->at - t0, test_slack());
  /* The message queued before the close is still there. */
  ASSERT_EQ(get_u32(q, 0), 1);
  ASSERT_ERR(get_u32(q, 0), MPROC_ECLOSED);
  ASSERT_OK(mproc_queue_free(q));
  ASSERT_OK(mproc_shm_free(s));
  return 0;
}

/* ---- no feeder thread: a child that puts and exits is joined at once --- */

#define BIG_LEN ((size_t)1 << 20)

static int t_put_big_and_exit(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = arg_shared(arg);
  unsigned char *buf = malloc(BIG_LEN);
  if (buf == NULL) {
    return 2;
  }
  test_fill(buf, BIG_LEN, 99);
  int r = mproc_queue_put(s->q, buf, BIG_LEN, 5);
  s->at = test_now();
  free(buf);
  return r == 0 ? 0 : 3;
}

TEST_IMPL_ALL_METHODS(queue_child_put_then_join) {
  mproc_queue *q = NULL;
  ASSERT_OK(mproc_queue_new(&q, 0, NULL));
  struct shared *s = make_shared(q);
  mproc_process *p = start(t_put_big_and_exit, s);
  /* Python deadlocks here when the item has not been flushed yet. */
  ASSERT_OK(mproc_process_join(p, 10));
  double joined = test_now();
  int code = -1;
  ASSERT_OK(mproc_process_exitcode(p, &code));
  ASSERT_EQ(code, 0);
  ASSERT_OK(mproc_process_free(p));
  ASSERT_DBL_LE(joined - s->at, test_slack());
  void *m = NULL;
  size_t len = 0;
  ASSERT_OK(mproc_queue_get(q, &m, &len, 0));
  ASSERT_EQ(len, BIG_LEN);
  ASSERT(test_check_fill(m, len, 99));
  free(m);
  ASSERT_OK(mproc_queue_free(q));
  ASSERT_OK(mproc_shm_free(s));
  return 0;
}

/* ---- TestSimpleQueue across processes ---- */

static int t_simple_echo(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct shared *s = arg_shared(arg);
  void *m = NULL;
  size_t n = 0;
  if (mproc_simple_queue_get(s->q, &m, &n) != 0) {
    return 2;
  }
  set_flag(&s->ready, 1);
  wait_flag(&s->go);
  int r = mproc_simple_queue_put(s->q, m, n);
  free(m);
  return r == 0 ? 0 : 3;
}

TEST_IMPL_ALL_METHODS(queue_simple_queue_processes) {
  mproc_simple_queue *q = NULL;
  ASSERT_OK(mproc_simple_queue_new(&q, NULL));
  struct shared *s = make_shared(q);
  mproc_process *p = start(t_simple_echo, s);
  ASSERT_EQ(mproc_simple_queue_empty(q), 1);
  ASSERT_OK(mproc_simple_queue_put(q, "spam", 4));
  wait_flag(&s->ready);
  ASSERT_EQ(mproc_simple_queue_empty(q), 1);
  set_flag(&s->go, 1);
  void *m = NULL;
  size_t n = 0;
  ASSERT_OK(mproc_simple_queue_get(q, &m, &n));
  ASSERT_EQ(n, 4);
  ASSERT(memcmp(m, "spam", 4) == 0);
  free(m);
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_OK(mproc_simple_queue_close(q));
  ASSERT_OK(mproc_simple_queue_close(q));
  ASSERT_OK(mproc_simple_queue_free(q));
  ASSERT_OK(mproc_shm_free(s));
  return 0;
}

/* ---- stress: 4 producers x 4 consumers, every message exactly once ---- */

#define SP 4
#define SC 4
#define PER 100000u

struct stress {
  mproc_queue *q;
  int next_id;                 /* hands out producer / consumer ids */
  uint64_t received[SC];       /* per consumer */
  uint8_t seen[SP * PER];      /* how often each message was received */
};

/* A message: producer, sequence, check, then 0..119 payload bytes made
 * from the same numbers. */
struct msg_head {
  uint32_t prod;
  uint32_t seq;
  uint64_t check;
};

static uint64_t msg_check(uint32_t prod, uint32_t seq, size_t len) {
  uint64_t x = ((uint64_t)prod << 32 | seq) * UINT64_C(0x9e3779b97f4a7c15);
  return x ^ (len * UINT64_C(0xbf58476d1ce4e5b9)) ^ (x >> 29);
}

static size_t msg_make(unsigned char *buf, uint32_t prod, uint32_t seq) {
  size_t payload = (seq * 7u + prod * 13u) % 120u;
  struct msg_head h = {prod, seq, msg_check(prod, seq, payload)};
  memcpy(buf, &h, sizeof h);
  test_fill(buf + sizeof h, payload, ((uint64_t)prod << 32 | seq) + 1);
  return sizeof h + payload;
}

/* 1 if buf (len bytes) is an intact message; its numbers in *h. */
static int msg_valid(const unsigned char *buf, size_t len,
                     struct msg_head *h) {
  if (len < sizeof *h) {
    return 0;
  }
  memcpy(h, buf, sizeof *h);
  size_t payload = len - sizeof *h;
  return h->prod < SP && h->seq < PER &&
         h->check == msg_check(h->prod, h->seq, payload) &&
         payload == (h->seq * 7u + h->prod * 13u) % 120u &&
         test_check_fill(buf + sizeof *h, payload,
                         ((uint64_t)h->prod << 32 | h->seq) + 1);
}

static int t_stress_producer(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct stress *st = *(struct stress *const *)arg;
  uint32_t prod = (uint32_t)__atomic_fetch_add(&st->next_id, 1,
                                               __ATOMIC_SEQ_CST) % SP;
  unsigned char buf[256];
  for (uint32_t seq = 0; seq < PER; seq++) {
    size_t n = msg_make(buf, prod, seq);
    if (mproc_queue_put(st->q, buf, n, MPROC_FOREVER) != 0) {
      return 2;
    }
  }
  return 0;
}

static int t_stress_consumer(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  struct stress *st = *(struct stress *const *)arg;
  int me = __atomic_fetch_add(&st->next_id, 1, __ATOMIC_SEQ_CST) % SC;
  int64_t last[SP];
  for (int i = 0; i < SP; i++) {
    last[i] = -1;
  }
  unsigned char buf[256];
  uint64_t n = 0;
  for (;;) {
    size_t got = 0;
    int r = mproc_queue_get_into(st->q, buf, sizeof buf, &got, MPROC_FOREVER);
    if (r == MPROC_ECLOSED) {
      break;
    }
    if (r != 0) {
      return 2;
    }
    struct msg_head h;
    if (!msg_valid(buf, got, &h)) {
      return 3;
    }
    /* FIFO per producer, as seen by one consumer. */
    if ((int64_t)h.seq <= last[h.prod]) {
      return 4;
    }
    last[h.prod] = h.seq;
    __atomic_fetch_add(&st->seen[h.prod * PER + h.seq], 1, __ATOMIC_RELAXED);
    n++;
  }
  __atomic_store_n(&st->received[me], n, __ATOMIC_SEQ_CST);
  return 0;
}

TEST_IMPL_ALL_METHODS(queue_stress_mpmc) {
  struct stress *st = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&st, 1, sizeof *st));
  mproc_queue_opts o = {16384}; /* small: producers often wait for room */
  ASSERT_OK(mproc_queue_new(&st->q, 0, &o));
  double t0 = test_now();
  mproc_process *c[SC], *p[SP];
  test_start_procs(c, SC, t_stress_consumer, &st, sizeof st);
  /* Ids: consumers take 0..SC-1; producers start once they have, and
   * take SC..SC+SP-1 (used modulo SP). */
  double end = test_now() + 10;
  while (__atomic_load_n(&st->next_id, __ATOMIC_SEQ_CST) < SC) {
    ASSERT(test_now() < end);
    test_sleep(0.001);
  }
  test_start_procs(p, SP, t_stress_producer, &st, sizeof st);
  test_finish_procs_ok(p, SP);
  ASSERT_OK(mproc_queue_close(st->q));
  test_finish_procs_ok(c, SC);
  double el = test_now() - t0;
  uint64_t total = 0;
  for (int i = 0; i < SC; i++) {
    total += st->received[i];
  }
  ASSERT_UEQ(total, (uint64_t)SP * PER);
  for (size_t i = 0; i < (size_t)SP * PER; i++) {
    if (st->seen[i] != 1) {
      mproc_test_fail(__FILE__, __LINE__,
                      "message %zu of producer %zu received %d times",
                      i % PER, i / PER, st->seen[i]);
    }
  }
  ASSERT_EQ(mproc_queue_qsize(st->q), 0);
  ASSERT_EQ(mproc_queue_lost(st->q), 0);
  printf("# %u messages through %d producers and %d consumers in %.2f s "
         "(%.0f msg/s)\n",
         SP * PER, SP, SC, el, SP * PER / el);
  ASSERT_OK(mproc_queue_free(st->q));
  ASSERT_OK(mproc_shm_free(st));
  return 0;
}
