/*
 * tests/unit/test-queue.c - the Queue API in one process: construction,
 * capacity and maxsize, bad input, message sizes (zero-length, too large,
 * records wrapping around the ring's end with every byte checked),
 * get_into's MPROC_ENOBUFS, qsize/empty/full, close, timeouts on an empty
 * or full queue, JoinableQueue's task_done count and SimpleQueue.
 */
#include "internal.h"
#include "task.h"

#include <math.h>
#include <sched.h>
#include <sys/syscall.h>

static mproc_queue *new_queue(long maxsize, size_t capacity) {
  mproc_queue *q = NULL;
  mproc_queue_opts o = {capacity};
  ASSERT_OK(mproc_queue_new(&q, maxsize, &o));
  ASSERT_NOT_NULL(q);
  return q;
}

static void put_u32(mproc_queue *q, uint32_t v, double timeout) {
  ASSERT_OK(mproc_queue_put(q, &v, sizeof v, timeout));
}

static uint32_t get_u32(mproc_queue *q, double timeout) {
  uint32_t v = 0;
  size_t len = 0;
  ASSERT_OK(mproc_queue_get_into(q, &v, sizeof v, &len, timeout));
  ASSERT_EQ(len, sizeof v);
  return v;
}

TEST_IMPL(queue_new_and_free) {
  mproc_queue *q = NULL;
  ASSERT_OK(mproc_queue_new(&q, 0, NULL));
  ASSERT_EQ(mproc_queue_capacity(q), MPROC_QUEUE_DEFAULT_CAPACITY);
  ASSERT_EQ(mproc_queue_maxsize(q), 0);
  ASSERT_EQ(mproc_queue_qsize(q), 0);
  ASSERT_EQ(mproc_queue_empty(q), 1);
  ASSERT_EQ(mproc_queue_full(q), 0);
  ASSERT_EQ(mproc_queue_is_closed(q), 0);
  ASSERT_EQ(mproc_queue_lost(q), 0);
  /* A plain Queue has no task_done/join. */
  ASSERT_ERR(mproc_queue_task_done(q), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_join(q, 0), MPROC_EINVAL);
  ASSERT_OK(mproc_queue_free(q));
  ASSERT_OK(mproc_queue_free(NULL));

  /* Capacity: rounded up to a power of two, at least the minimum. */
  q = new_queue(-3, 1);
  ASSERT_EQ(mproc_queue_capacity(q), MPROC_QUEUE_MIN_CAPACITY);
  ASSERT_EQ(mproc_queue_maxsize(q), -3);
  ASSERT_EQ(mproc_queue_full(q), 0);
  ASSERT_OK(mproc_queue_free(q));
  q = new_queue(7, 5000);
  ASSERT_EQ(mproc_queue_capacity(q), 8192);
  ASSERT_EQ(mproc_queue_maxsize(q), 7);
  ASSERT_OK(mproc_queue_free(q));
  q = new_queue(0, 65536);
  ASSERT_EQ(mproc_queue_capacity(q), 65536);
  ASSERT_OK(mproc_queue_free(q));

  mproc_queue_opts big = {MPROC_QUEUE_MAX_CAPACITY + 1};
  ASSERT_ERR(mproc_queue_new(&q, 0, &big), MPROC_EINVAL);
  ASSERT_NULL(q);
  ASSERT_ERR(mproc_queue_new(NULL, 0, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_joinable_queue_new(NULL, 0, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_simple_queue_new(NULL, NULL), MPROC_EINVAL);
  return 0;
}

/* Python's test_qsize: 0, 1, 2, 1, 0; and FIFO order. */
TEST_IMPL(queue_qsize_and_order) {
  mproc_queue *q = new_queue(0, 0);
  ASSERT_EQ(mproc_queue_qsize(q), 0);
  put_u32(q, 1, MPROC_FOREVER);
  ASSERT_EQ(mproc_queue_qsize(q), 1);
  ASSERT_EQ(mproc_queue_empty(q), 0);
  put_u32(q, 2, MPROC_FOREVER);
  ASSERT_EQ(mproc_queue_qsize(q), 2);
  ASSERT_EQ(get_u32(q, MPROC_FOREVER), 1);
  ASSERT_EQ(mproc_queue_qsize(q), 1);
  ASSERT_EQ(get_u32(q, 0), 2);
  ASSERT_EQ(mproc_queue_qsize(q), 0);
  ASSERT_EQ(mproc_queue_empty(q), 1);
  for (uint32_t i = 0; i < 1000; i++) {
    put_u32(q, i, 0);
  }
  for (uint32_t i = 0; i < 1000; i++) {
    ASSERT_EQ(get_u32(q, 0), i);
  }
  ASSERT_OK(mproc_queue_free(q));
  return 0;
}

/* mproc_queue_get allocates; a zero-length message gives a 1-byte buffer. */
TEST_IMPL(queue_get_allocates) {
  mproc_queue *q = new_queue(0, 0);
  ASSERT_OK(mproc_queue_put(q, "hello", 5, 0));
  ASSERT_OK(mproc_queue_put(q, NULL, 0, 0));
  ASSERT_OK(mproc_queue_put(q, "", 0, 0));
  ASSERT_OK(mproc_queue_put(q, "x", 1, 0));
  void *m = NULL;
  size_t len = 99;
  ASSERT_OK(mproc_queue_get(q, &m, &len, 0));
  ASSERT_EQ(len, 5);
  ASSERT(memcmp(m, "hello", 5) == 0);
  free(m);
  for (int i = 0; i < 2; i++) {
    m = NULL;
    len = 99;
    ASSERT_OK(mproc_queue_get(q, &m, &len, 0));
    ASSERT_NOT_NULL(m);
    ASSERT_EQ(len, 0);
    free(m);
  }
  ASSERT_OK(mproc_queue_get(q, &m, &len, 0));
  ASSERT_EQ(len, 1);
  ASSERT_EQ(*(char *)m, 'x');
  free(m);
  /* Empty: *out NULL and *len 0. */
  m = (void *)1;
  len = 99;
  ASSERT_ERR(mproc_queue_get(q, &m, &len, 0), MPROC_EEMPTY);
  ASSERT_NULL(m);
  ASSERT_EQ(len, 0);
  ASSERT_OK(mproc_queue_free(q));
  return 0;
}

/* Zero-length messages are messages: counted, ordered, distinct from
 * "empty" and from "closed". */
TEST_IMPL(queue_zero_length) {
  mproc_queue *q = new_queue(3, 0);
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(mproc_queue_put(q, NULL, 0, 0));
  }
  ASSERT_EQ(mproc_queue_qsize(q), 3);
  ASSERT_EQ(mproc_queue_full(q), 1);
  ASSERT_ERR(mproc_queue_put(q, NULL, 0, 0), MPROC_EFULL);
  size_t len = 7;
  ASSERT_OK(mproc_queue_get_into(q, NULL, 0, &len, 0));
  ASSERT_EQ(len, 0);
  ASSERT_OK(mproc_queue_close(q));
  ASSERT_OK(mproc_queue_get_into(q, NULL, 0, &len, 0));
  ASSERT_OK(mproc_queue_get_into(q, NULL, 0, &len, 0));
  ASSERT_ERR(mproc_queue_get_into(q, NULL, 0, &len, 0), MPROC_ECLOSED);
  ASSERT_OK(mproc_queue_free(q));
  return 0;
}

/* A message that can never fit is MPROC_EMSGSIZE at once, whatever the
 * timeout; the largest one that fits goes through. */
TEST_IMPL(queue_message_too_large) {
  mproc_queue *q = new_queue(0, 4096);
  size_t cap = mproc_queue_capacity(q);
  unsigned char *buf = malloc(cap + 1);
  ASSERT_NOT_NULL(buf);
  test_fill(buf, cap + 1, 42);
  double t0 = test_now();
  ASSERT_ERR(mproc_queue_put(q, buf, cap, MPROC_FOREVER), MPROC_EMSGSIZE);
  ASSERT_ERR(mproc_queue_put(q, buf, cap - 7, MPROC_FOREVER), MPROC_EMSGSIZE);
  ASSERT_ERR(mproc_queue_put(q, buf, SIZE_MAX, 0), MPROC_EMSGSIZE);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  /* cap - 8 bytes: the record fills the whole ring. */
  ASSERT_OK(mproc_queue_put(q, buf, cap - 8, 0));
  ASSERT_ERR(mproc_queue_put(q, NULL, 0, 0), MPROC_EFULL);
  unsigned char *out = malloc(cap);
  ASSERT_NOT_NULL(out);
  size_t len = 0;
  ASSERT_OK(mproc_queue_get_into(q, out, cap, &len, 0));
  ASSERT_EQ(len, cap - 8);
  ASSERT(test_check_fill(out, len, 42));
  /* Again, now starting in the middle of the ring: it wraps. */
  ASSERT_OK(mproc_queue_put(q, buf, 100, 0));
  ASSERT_OK(mproc_queue_get_into(q, out, cap, &len, 0));
  test_fill(buf, cap - 8, 43);
  ASSERT_OK(mproc_queue_put(q, buf, cap - 8, 0));
  memset(out, 0, cap);
  ASSERT_OK(mproc_queue_get_into(q, out, cap, &len, 0));
  ASSERT_EQ(len, cap - 8);
  ASSERT(test_check_fill(out, len, 43));
  free(out);
  free(buf);
  ASSERT_OK(mproc_queue_free(q));
  return 0;
}

/* Records of every length 0..300 and some larger, at every alignment of
 * the ring's end: each one's bytes come back intact, in order. */
TEST_IMPL(queue_wraps_ring_end) {
  mproc_queue *q = new_queue(0, 4096);
  unsigned char buf[3000], out[3000];
  uint64_t seed = 1;
  int queued = 0;
  uint64_t next_get = 1;
  size_t lens_in[1024];
  uint64_t head_i = 0, tail_i = 0;
  for (int round = 0; round < 4000; round++) {
    size_t len = round < 301 ? (size_t)round
                             : (size_t)(test_rand(&seed) % 3000);
    test_fill(buf, len, (uint64_t)round + 1);
    int r;
    while ((r = mproc_queue_put(q, buf, len, 0)) == MPROC_EFULL) {
      /* Ring full: take the oldest out and check it. */
      size_t got = 0;
      ASSERT_OK(mproc_queue_get_into(q, out, sizeof out, &got, 0));
      ASSERT_EQ(got, lens_in[tail_i % 1024]);
      ASSERT(test_check_fill(out, got, next_get));
      next_get++;
      tail_i++;
      queued--;
    }
    ASSERT_OK(r);
    ASSERT(head_i - tail_i < 1024);
    lens_in[head_i % 1024] = len;
    head_i++;
    queued++;
    ASSERT_EQ(mproc_queue_qsize(q), queued);
  }
  while (queued > 0) {
    size_t got = 0;
    ASSERT_OK(mproc_queue_get_into(q, out, sizeof out, &got, 0));
    ASSERT_EQ(got, lens_in[tail_i % 1024]);
    ASSERT(test_check_fill(out, got, next_get));
    next_get++;
    tail_i++;
    queued--;
  }
  ASSERT_EQ(next_get, 4001);
  ASSERT_EQ(mproc_queue_empty(q), 1);
  ASSERT_OK(mproc_queue_free(q));
  return 0;
}

/* get_into with a short buffer: MPROC_ENOBUFS, the length, and the
 * message stays first in line. */
TEST_IMPL(queue_get_into_short_buffer) {
  mproc_queue *q = new_queue(0, 0);
  char msg[100];
  memset(msg, 'a', sizeof msg);
  ASSERT_OK(mproc_queue_put(q, msg, sizeof msg, 0));
  ASSERT_OK(mproc_queue_put(q, "b", 1, 0));
  char small[10];
  size_t len = 0;
  ASSERT_ERR(mproc_queue_get_into(q, small, sizeof small, &len, 0),
             MPROC_ENOBUFS);
  ASSERT_EQ(len, sizeof msg);
  ASSERT_ERR(mproc_queue_get_into(q, NULL, 0, &len, 0), MPROC_ENOBUFS);
  ASSERT_EQ(len, sizeof msg);
  ASSERT_EQ(mproc_queue_qsize(q), 2);
  char big[200];
  ASSERT_OK(mproc_queue_get_into(q, big, sizeof big, &len, 0));
  ASSERT_EQ(len, sizeof msg);
  ASSERT(memcmp(big, msg, sizeof msg) == 0);
  ASSERT_OK(mproc_queue_get_into(q, small, 1, &len, 0));
  ASSERT_EQ(len, 1);
  ASSERT_EQ(small[0], 'b');
  ASSERT_OK(mproc_queue_free(q));
  return 0;
}

/* Python's test_put in one process: maxsize 6 filled, then full at once
 * for a poll, after the timeout for a timed put. */
TEST_IMPL(queue_full_timeouts) {
  mproc_queue *q = new_queue(6, 0);
  for (uint32_t i = 0; i < 6; i++) {
    ASSERT_EQ(mproc_queue_full(q), 0);
    put_u32(q, i, i % 2 ? 0 : MPROC_FOREVER);
  }
  ASSERT_EQ(mproc_queue_full(q), 1);
  ASSERT_EQ(mproc_queue_qsize(q), 6);
  uint32_t v = 7;
  double t0 = test_now();
  ASSERT_ERR(mproc_queue_put(q, &v, sizeof v, 0), MPROC_EFULL);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  t0 = test_now();
  ASSERT_ERR(mproc_queue_put(q, &v, sizeof v, 0.1), MPROC_EFULL);
  double el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.1);
  ASSERT_DBL_LE(el, 0.1 + test_slack());
  /* Very short timeouts end on time too (inside the backoff). */
  static const double shorts[] = {1e-7, 1e-6, 5e-6, 2e-5, 1e-3};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(shorts); i++) {
    t0 = test_now();
    ASSERT_ERR(mproc_queue_put(q, &v, sizeof v, shorts[i]), MPROC_EFULL);
    el = test_now() - t0;
    ASSERT_DBL_GE(el, shorts[i]);
    ASSERT_DBL_LE(el, shorts[i] + test_slack());
  }
  ASSERT_EQ(get_u32(q, 0), 0);
  put_u32(q, 6, 0);
  for (uint32_t i = 1; i < 7; i++) {
    ASSERT_EQ(get_u32(q, 0), i);
  }
  ASSERT_OK(mproc_queue_free(q));

  /* Byte-full with fewer than maxsize messages: put waits (not "full"). */
  q = new_queue(100, 4096);
  char blob[2000] = {0};
  ASSERT_OK(mproc_queue_put(q, blob, sizeof blob, 0));
  ASSERT_OK(mproc_queue_put(q, blob, sizeof blob, 0));
  ASSERT_EQ(mproc_queue_full(q), 0);
  t0 = test_now();
  ASSERT_ERR(mproc_queue_put(q, blob, sizeof blob, 0.05), MPROC_EFULL);
  ASSERT_DBL_GE(test_now() - t0, 0.05);
  ASSERT_OK(mproc_queue_put(q, blob, 8, 0)); /* a small one still fits */
  ASSERT_OK(mproc_queue_free(q));
  return 0;
}

/* Python's test_get timings on an empty queue. */
TEST_IMPL(queue_empty_timeouts) {
  mproc_queue *q = new_queue(0, 0);
  void *m = NULL;
  size_t len = 0;
  double t0 = test_now();
  ASSERT_ERR(mproc_queue_get(q, &m, &len, 0), MPROC_EEMPTY);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  t0 = test_now();
  ASSERT_ERR(mproc_queue_get(q, &m, &len, 0.1), MPROC_EEMPTY);
  double el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.1);
  ASSERT_DBL_LE(el, 0.1 + test_slack());
  /* Python's test_timeout: get(True, 0.2) fails after >= 0.1 s. */
  t0 = test_now();
  ASSERT_ERR(mproc_queue_get_into(q, &len, sizeof len, &len, 0.2),
             MPROC_EEMPTY);
  el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.2);
  ASSERT_DBL_LE(el, 0.2 + test_slack());
  static const double shorts[] = {1e-7, 1e-6, 5e-6, 2e-5, 1e-3};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(shorts); i++) {
    t0 = test_now();
    ASSERT_ERR(mproc_queue_get(q, &m, &len, shorts[i]), MPROC_EEMPTY);
    el = test_now() - t0;
    ASSERT_DBL_GE(el, shorts[i]);
    ASSERT_DBL_LE(el, shorts[i] + test_slack());
  }
  ASSERT_OK(mproc_queue_free(q));
  return 0;
}

/* Close: puts fail, gets drain and then fail, all without waiting. */
TEST_IMPL(queue_close_drains) {
  mproc_queue *q = new_queue(0, 0);
  put_u32(q, 1, 0);
  put_u32(q, 2, 0);
  ASSERT_OK(mproc_queue_close(q));
  ASSERT_OK(mproc_queue_close(q)); /* idempotent */
  ASSERT_EQ(mproc_queue_is_closed(q), 1);
  uint32_t v = 3;
  ASSERT_ERR(mproc_queue_put(q, &v, sizeof v, MPROC_FOREVER), MPROC_ECLOSED);
  ASSERT_ERR(mproc_queue_put(q, NULL, 0, 0), MPROC_ECLOSED);
  ASSERT_EQ(mproc_queue_qsize(q), 2);
  ASSERT_EQ(get_u32(q, MPROC_FOREVER), 1);
  ASSERT_EQ(get_u32(q, MPROC_FOREVER), 2);
  double t0 = test_now();
  void *m = NULL;
  size_t len = 0;
  ASSERT_ERR(mproc_queue_get(q, &m, &len, MPROC_FOREVER), MPROC_ECLOSED);
  ASSERT_ERR(mproc_queue_get(q, &m, &len, 0), MPROC_ECLOSED);
  ASSERT_ERR(mproc_queue_get_into(q, &v, sizeof v, &len, 1), MPROC_ECLOSED);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  ASSERT_EQ(mproc_queue_empty(q), 1);
  ASSERT_OK(mproc_queue_free(q));
  return 0;
}

/* Bad input is MPROC_EINVAL, never a crash. */
TEST_IMPL(queue_bad_input) {
  mproc_queue *q = new_queue(0, 0);
  void *m = NULL;
  size_t len = 0;
  char buf[8];
  /* NULL queue. */
  ASSERT_ERR(mproc_queue_put(NULL, "a", 1, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_get(NULL, &m, &len, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_get_into(NULL, buf, 8, &len, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_qsize(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_empty(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_full(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_maxsize(NULL), MPROC_EINVAL);
  ASSERT_EQ(mproc_queue_capacity(NULL), 0);
  ASSERT_ERR(mproc_queue_close(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_is_closed(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_lost(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_task_done(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_join(NULL, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_simple_queue_put(NULL, "a", 1), MPROC_EINVAL);
  ASSERT_ERR(mproc_simple_queue_get(NULL, &m, &len), MPROC_EINVAL);
  ASSERT_ERR(mproc_simple_queue_empty(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_simple_queue_close(NULL), MPROC_EINVAL);
  /* Bad arguments on a good queue. */
  ASSERT_ERR(mproc_queue_put(q, NULL, 1, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_put(q, "a", 1, NAN), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_get(q, NULL, &len, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_get(q, &m, NULL, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_get(q, &m, &len, NAN), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_get_into(q, NULL, 8, &len, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_get_into(q, buf, 8, NULL, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_get_into(q, buf, 8, &len, NAN), MPROC_EINVAL);
  ASSERT_EQ(mproc_queue_qsize(q), 0);
  /* NaN with a message waiting: still refused, the message stays. */
  ASSERT_OK(mproc_queue_put(q, "a", 1, 0));
  ASSERT_ERR(mproc_queue_get(q, &m, &len, NAN), MPROC_EINVAL);
  ASSERT_EQ(mproc_queue_qsize(q), 1);
  ASSERT_OK(mproc_queue_free(q));

  /* A freed queue. */
  ASSERT_ERR(mproc_queue_put(q, "a", 1, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_get(q, &m, &len, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_get_into(q, buf, 8, &len, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_qsize(q), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_close(q), MPROC_EINVAL);
  ASSERT_ERR(mproc_queue_free(q), MPROC_EINVAL);
  ASSERT_ERR(mproc_simple_queue_free(q), MPROC_EINVAL);

  /* Foreign pointers: the stack, the heap, raw arena memory, a lock,
   * misaligned inside the arena. */
  uint64_t stack_obj[64] = {0};
  void *heap_obj = calloc(1, 1024);
  ASSERT_NOT_NULL(heap_obj);
  void *raw = NULL;
  ASSERT_OK(mproc_shm_calloc(&raw, 1, 4096));
  mproc_lock *l = NULL;
  ASSERT_OK(mproc_lock_new(&l));
  void *foreign[] = {stack_obj, heap_obj, raw, l, (char *)raw + 64 + 8,
                     (void *)(uintptr_t)0x1000};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(foreign); i++) {
    mproc_queue *f = foreign[i];
    ASSERT_ERR(mproc_queue_put(f, "a", 1, 0), MPROC_EINVAL);
    ASSERT_ERR(mproc_queue_get(f, &m, &len, 0), MPROC_EINVAL);
    ASSERT_ERR(mproc_queue_empty(f), MPROC_EINVAL);
    ASSERT_ERR(mproc_queue_task_done(f), MPROC_EINVAL);
    ASSERT_ERR(mproc_queue_free(f), MPROC_EINVAL);
  }
  ASSERT_OK(mproc_lock_free(l));
  ASSERT_OK(mproc_shm_free(raw));
  free(heap_obj);
  return 0;
}

/* Free refuses while a live process or thread waits in the queue (it
 * holds the get lock), and works once nobody does, messages queued or
 * not. */
/* A getter that waits for one message, with its thread id published so
 * the test can see it asleep. */
typedef struct getter {
  mproc_queue *q;
  _Atomic pid_t tid;
  _Atomic int done;
} getter;

static void *th_get_wait(void *arg) {
  getter *g = arg;
  g->tid = (pid_t)syscall(SYS_gettid);
  void *m = NULL;
  size_t len = 0;
  int r = mproc_queue_get(g->q, &m, &len, 60);
  free(m);
  g->done = 1;
  return r == 0 ? NULL : (void *)1;
}

TEST_IMPL(queue_free_busy) {
  getter g = {new_queue(0, 0), 0, 0};
  pthread_t th;
  ASSERT_OK(pthread_create(&th, NULL, th_get_wait, &g));
  /* The event: the getter sleeps in the kernel, inside its get. */
  for (;;) {
    ASSERT_EQ(g.done, 0);
    pid_t tid = g.tid;
    if (tid != 0 && test_proc_stat(tid, NULL, NULL) == 'S') {
      break;
    }
    sched_yield();
  }
  ASSERT_ERR(mproc_queue_free(g.q), MPROC_EBUSY);
  put_u32(g.q, 1, 0);
  test_join_threads_ok(&th, 1);
  ASSERT_OK(mproc_queue_free(g.q));
  return 0;
}

/* Python's "task_done() called too many times", and join's timeouts. */
TEST_IMPL(queue_task_done_count) {
  mproc_queue *q = NULL;
  ASSERT_OK(mproc_joinable_queue_new(&q, 0, NULL));
  ASSERT_ERR(mproc_queue_task_done(q), MPROC_ETASKDONE);
  ASSERT_OK(mproc_queue_join(q, 0));
  ASSERT_OK(mproc_queue_join(q, MPROC_FOREVER));
  put_u32(q, 1, 0);
  put_u32(q, 2, 0);
  double t0 = test_now();
  ASSERT_ERR(mproc_queue_join(q, 0), MPROC_ETIMEDOUT);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  t0 = test_now();
  ASSERT_ERR(mproc_queue_join(q, 0.1), MPROC_ETIMEDOUT);
  double el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.1);
  ASSERT_DBL_LE(el, 0.1 + test_slack());
  ASSERT_ERR(mproc_queue_join(q, NAN), MPROC_EINVAL);
  ASSERT_EQ(get_u32(q, 0), 1);
  ASSERT_OK(mproc_queue_task_done(q));
  ASSERT_ERR(mproc_queue_join(q, 0), MPROC_ETIMEDOUT);
  ASSERT_EQ(get_u32(q, 0), 2);
  ASSERT_OK(mproc_queue_task_done(q));
  ASSERT_OK(mproc_queue_join(q, 0));
  ASSERT_ERR(mproc_queue_task_done(q), MPROC_ETASKDONE);
  /* A put refused by close adds no task. */
  ASSERT_OK(mproc_queue_close(q));
  ASSERT_ERR(mproc_queue_put(q, "x", 1, 0), MPROC_ECLOSED);
  ASSERT_OK(mproc_queue_join(q, 0));
  ASSERT_ERR(mproc_queue_task_done(q), MPROC_ETASKDONE);
  ASSERT_OK(mproc_queue_free(q));
  return 0;
}

/* Python's TestSimpleQueue in one process. */
TEST_IMPL(queue_simple_queue) {
  mproc_simple_queue *q = NULL;
  ASSERT_OK(mproc_simple_queue_new(&q, NULL));
  ASSERT_EQ(mproc_simple_queue_empty(q), 1);
  ASSERT_OK(mproc_simple_queue_put(q, "spam", 4));
  ASSERT_EQ(mproc_simple_queue_empty(q), 0);
  void *m = NULL;
  size_t len = 0;
  ASSERT_OK(mproc_simple_queue_get(q, &m, &len));
  ASSERT_EQ(len, 4);
  ASSERT(memcmp(m, "spam", 4) == 0);
  free(m);
  ASSERT_EQ(mproc_simple_queue_empty(q), 1);
  ASSERT_EQ(mproc_queue_maxsize(q), 0);
  ASSERT_OK(mproc_simple_queue_close(q));
  ASSERT_OK(mproc_simple_queue_close(q));
  ASSERT_ERR(mproc_simple_queue_put(q, "x", 1), MPROC_ECLOSED);
  ASSERT_ERR(mproc_simple_queue_get(q, &m, &len), MPROC_ECLOSED);
  ASSERT_OK(mproc_simple_queue_free(q));
  ASSERT_OK(mproc_simple_queue_free(NULL));
  return 0;
}

/* Threads of one process share a queue like processes do. */
struct th_arg {
  mproc_queue *q;
  uint32_t base;
};

static void *th_producer(void *arg) {
  struct th_arg *a = arg;
  for (uint32_t i = 0; i < 20000; i++) {
    uint32_t v = a->base + i;
    if (mproc_queue_put(a->q, &v, sizeof v, MPROC_FOREVER) != 0) {
      return (void *)1;
    }
  }
  return NULL;
}

TEST_IMPL(queue_threads) {
  mproc_queue *q = new_queue(0, 4096);
  pthread_t th[2];
  struct th_arg a[2] = {{q, 0}, {q, 1u << 20}};
  for (int i = 0; i < 2; i++) {
    ASSERT_OK(pthread_create(&th[i], NULL, th_producer, &a[i]));
  }
  uint32_t next[2] = {0, 0};
  for (int n = 0; n < 40000; n++) {
    uint32_t v = get_u32(q, 10);
    int who = v >> 20;
    ASSERT(who == 0 || who == 1);
    ASSERT_EQ(v & 0xfffff, next[who]);
    next[who]++;
  }
  test_join_threads_ok(th, 2);
  ASSERT_EQ(mproc_queue_empty(q), 1);
  ASSERT_OK(mproc_queue_free(q));
  return 0;
}

/* A get's timeout covers waiting for the get lock, which a consumer
 * waiting on an empty queue holds: a second consumer's timed get ends on
 * time, its poll at once; a put still goes through and reaches the
 * first. */
static void *th_get_one(void *arg) {
  uint32_t v = 0;
  size_t len = 0;
  int r = mproc_queue_get_into(arg, &v, sizeof v, &len, 5);
  return r == 0 && v == 42 ? NULL : (void *)1;
}

TEST_IMPL(queue_timeout_covers_get_lock) {
  mproc_queue *q = new_queue(0, 0);
  pthread_t th;
  ASSERT_OK(pthread_create(&th, NULL, th_get_one, q));
  test_sleep(0.05);
  double t0 = test_now();
  uint32_t v;
  size_t len;
  ASSERT_ERR(mproc_queue_get_into(q, &v, sizeof v, &len, 0), MPROC_EEMPTY);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  t0 = test_now();
  ASSERT_ERR(mproc_queue_get_into(q, &v, sizeof v, &len, 0.1), MPROC_EEMPTY);
  double el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.1);
  ASSERT_DBL_LE(el, 0.1 + test_slack());
  put_u32(q, 42, 0);
  test_join_threads_ok(&th, 1);
  ASSERT_EQ(mproc_queue_empty(q), 1);
  ASSERT_OK(mproc_queue_free(q));
  return 0;
}
