/*
 * tests/fault/test-fault-sweep-queue.c - kill a queue's producer or
 * consumer at every named fault point of a put and a get (src/fault.h,
 * "queue.*"), then check the queue's invariants.
 *
 * For each point a forked child arms mproc__fault_hook, starts a put or a
 * get, and when the hook reports the point it writes the point's number
 * to a pipe and pauses; the parent SIGKILLs it there and reaps it.  Then
 * the parent checks, with no other process using the queue:
 *   - no torn message: every message received is whole and checks;
 *   - none lost or repeated beyond the contract (queue.h): a put killed
 *     before its publish is rolled back and counted in mproc_queue_lost,
 *     one killed after it is delivered once; a get killed before it moved
 *     the read position leaves the message to be delivered again, one
 *     killed after it took the message with it; order is kept;
 *   - the counts are exact: qsize, empty, a JoinableQueue's unfinished
 *     count (join returns once each delivered message is task_done);
 *   - no wedge: the next put and get complete (the dead holder's lock is
 *     taken over), and the queue frees at once.
 */
#include "task.h"

#include "internal.h"
#include "sweep.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

SWEEP_COVERS("queue.")

/* ---- the child stopped at a point ---- */

/* Fork a child that runs fn(q, arg) with the hook armed at the point
 * named name; return once it is stopped there (its pid). */
static pid_t run_to_point(const char *name, void (*fn)(mproc_queue *, int),
                          mproc_queue *q, int arg) {
  int point = mproc__fault_lookup(name);
  ASSERT_GT(point, 0);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = test_fork();
  if (pid == 0) {
    close(fds[0]);
    sweep_target = point;
    sweep_report = fds[1];
    mproc__fault_hook = sweep_stop_at_point;
    fn(q, arg);
    _exit(3); /* never reached the point */
  }
  close(fds[1]);
  int got = 0;
  if (!test_read_int(fds[0], &got, 30 * test_timeout_mult())) {
    fprintf(stderr, "# %s: the child never reached the point\n", name);
    (void)kill(pid, SIGKILL);
    (void)test_wait_pid(pid, 10);
    ASSERT(0);
  }
  ASSERT_EQ(got, point);
  close(fds[0]);
  return pid;
}

static void kill_child(pid_t pid) {
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(test_wait_pid(pid, 10), -SIGKILL);
}

/* ---- checkable messages: seq, then a pattern of 100 + seq % 300 bytes */

#define MSG_MAX 512

static size_t msg_make(unsigned char *buf, uint32_t seq) {
  size_t n = 100 + seq % 300;
  memcpy(buf, &seq, sizeof seq);
  test_fill(buf + sizeof seq, n, seq + 1);
  return sizeof seq + n;
}

static void put_msg(mproc_queue *q, uint32_t seq, double timeout) {
  unsigned char buf[MSG_MAX];
  size_t n = msg_make(buf, seq);
  ASSERT_OK(mproc_queue_put(q, buf, n, timeout));
}

/* The next message, checked whole; its seq. */
static uint32_t get_msg(mproc_queue *q, double timeout) {
  unsigned char buf[MSG_MAX];
  size_t n = 0;
  ASSERT_OK(mproc_queue_get_into(q, buf, sizeof buf, &n, timeout));
  uint32_t seq;
  ASSERT_GE(n, sizeof seq);
  memcpy(&seq, buf, sizeof seq);
  ASSERT_EQ(n, sizeof seq + 100 + seq % 300);
  ASSERT(test_check_fill(buf + sizeof seq, n - sizeof seq, seq + 1));
  return seq;
}

static void child_put(mproc_queue *q, int seq) {
  unsigned char buf[MSG_MAX];
  size_t n = msg_make(buf, (uint32_t)seq);
  (void)mproc_queue_put(q, buf, n, MPROC_FOREVER);
}

static void child_get(mproc_queue *q, int unused) {
  (void)unused;
  unsigned char buf[MSG_MAX];
  size_t n = 0;
  (void)mproc_queue_get_into(q, buf, sizeof buf, &n, MPROC_FOREVER);
}

/* Drains q, expecting exactly the seqs in want[0..n-1], task_done for
 * each (a JoinableQueue), then empty. */
static void drain_expect(mproc_queue *q, const uint32_t *want, int n) {
  ASSERT_EQ(mproc_queue_qsize(q), n);
  for (int i = 0; i < n; i++) {
    ASSERT_EQ(get_msg(q, 5), want[i]);
    ASSERT_OK(mproc_queue_task_done(q));
  }
  ASSERT_EQ(mproc_queue_qsize(q), 0);
  ASSERT_EQ(mproc_queue_empty(q), 1);
  unsigned char buf[MSG_MAX];
  size_t len = 0;
  ASSERT_ERR(mproc_queue_get_into(q, buf, sizeof buf, &len, 0),
             MPROC_EEMPTY);
  ASSERT_OK(mproc_queue_join(q, 0)); /* nothing unfinished */
  ASSERT_ERR(mproc_queue_task_done(q), MPROC_ETASKDONE);
}

static mproc_queue *new_queue(long maxsize) {
  mproc_queue *q = NULL;
  mproc_queue_opts o = {4096};
  ASSERT_OK(mproc_joinable_queue_new(&q, maxsize, &o));
  return q;
}

/* The ring is 4096 bytes and messages up to 412: several rounds make
 * records wrap around the ring's end too. */
#define ROUNDS 3

/* A producer killed at each point of a put. */
TEST_IMPL(fault_sweep_queue_put) {
  static const struct {
    const char *name;
    int published; /* the message is delivered (else rolled back) */
  } points[] = {
      {"queue.put_marked", 0},
      {"queue.put_copied", 0},
      {"queue.put_published", 1},
      {"queue.put_counted", 1},
  };
  for (int round = 0; round < ROUNDS; round++) {
    for (size_t i = 0; i < MPROC__ARRAY_SIZE(points); i++) {
      mproc_queue *q = new_queue(0);
      uint32_t base = (uint32_t)(round * 7);
      /* Records before it, so the kill leaves the ring mid-use (and
       * later rounds wrap). */
      for (int k = 0; k < round * 3; k++) {
        put_msg(q, 1000 + (uint32_t)k, 0);
        (void)get_msg(q, 0);
        ASSERT_OK(mproc_queue_task_done(q));
      }
      put_msg(q, base + 0, 0);
      put_msg(q, base + 1, 0);
      pid_t pid = run_to_point(points[i].name, child_put, q, (int)base + 2);
      kill_child(pid);
      /* The next put takes the dead producer's lock over and settles its
       * put from the marker. */
      put_msg(q, base + 3, 5);
      ASSERT_EQ(mproc_queue_lost(q), points[i].published ? 0 : 1);
      uint32_t want[4] = {base + 0, base + 1, base + 2, base + 3};
      if (points[i].published) {
        drain_expect(q, want, 4);
      } else {
        want[2] = base + 3;
        drain_expect(q, want, 3);
      }
      /* No wedge: both sides go on. */
      put_msg(q, 9999, 0);
      ASSERT_EQ(get_msg(q, 0), 9999);
      ASSERT_OK(mproc_queue_task_done(q));
      ASSERT_OK(mproc_queue_free(q));
    }
  }
  return 0;
}

/* A producer killed asleep for room (no lock held): the queue goes on. */
TEST_IMPL(fault_sweep_queue_put_sleeping) {
  mproc_queue *q = new_queue(1);
  put_msg(q, 0, 0);
  pid_t pid = run_to_point("queue.put_sleeping", child_put, q, 1);
  kill_child(pid);
  ASSERT_EQ(mproc_queue_full(q), 1);
  ASSERT_EQ(get_msg(q, 0), 0);
  ASSERT_OK(mproc_queue_task_done(q));
  put_msg(q, 2, 5);
  uint32_t want[1] = {2};
  drain_expect(q, want, 1);
  ASSERT_EQ(mproc_queue_lost(q), 0);
  ASSERT_OK(mproc_queue_free(q));
  return 0;
}

/* A consumer killed at each point of a get. */
TEST_IMPL(fault_sweep_queue_get) {
  static const struct {
    const char *name;
    int taken; /* the read position moved: the message went with it */
  } points[] = {
      {"queue.get_copied", 0},
      {"queue.get_marked", 0},
      {"queue.get_counted", 0},
      {"queue.get_moved", 1},
  };
  for (int round = 0; round < ROUNDS; round++) {
    for (size_t i = 0; i < MPROC__ARRAY_SIZE(points); i++) {
      mproc_queue *q = new_queue(0);
      for (int k = 0; k < round * 3; k++) {
        put_msg(q, 1000 + (uint32_t)k, 0);
        (void)get_msg(q, 0);
        ASSERT_OK(mproc_queue_task_done(q));
      }
      for (uint32_t s = 0; s < 3; s++) {
        put_msg(q, s, 0);
      }
      pid_t pid = run_to_point(points[i].name, child_get, q, 0);
      kill_child(pid);
      /* The next get takes the dead consumer's lock over and sets the
       * count from the marker. */
      uint32_t first = get_msg(q, 5);
      ASSERT_EQ(first, points[i].taken ? 1 : 0);
      ASSERT_OK(mproc_queue_task_done(q));
      put_msg(q, 3, 0);
      if (points[i].taken) {
        /* The dead consumer took message 0 and never called task_done:
         * it stays unfinished, as Python's (queue.h). */
        ASSERT_EQ(mproc_queue_qsize(q), 2);
        ASSERT_EQ(get_msg(q, 0), 2);
        ASSERT_EQ(get_msg(q, 0), 3);
        ASSERT_OK(mproc_queue_task_done(q));
        ASSERT_OK(mproc_queue_task_done(q));
        ASSERT_EQ(mproc_queue_qsize(q), 0);
        ASSERT_ERR(mproc_queue_join(q, 0), MPROC_ETIMEDOUT);
        ASSERT_OK(mproc_queue_task_done(q)); /* for the dead one */
        ASSERT_OK(mproc_queue_join(q, 0));
      } else {
        uint32_t want[3] = {1, 2, 3};
        drain_expect(q, want, 3);
      }
      ASSERT_EQ(mproc_queue_lost(q), 0);
      put_msg(q, 9999, 0);
      ASSERT_EQ(get_msg(q, 0), 9999);
      ASSERT_OK(mproc_queue_task_done(q));
      ASSERT_OK(mproc_queue_free(q));
    }
  }
  return 0;
}

/* A consumer killed asleep on an empty queue, holding the get lock. */
TEST_IMPL(fault_sweep_queue_get_sleeping) {
  mproc_queue *q = new_queue(0);
  pid_t pid = run_to_point("queue.get_sleeping", child_get, q, 0);
  kill_child(pid);
  put_msg(q, 0, 0);
  put_msg(q, 1, 0);
  uint32_t want[2] = {0, 1};
  drain_expect(q, want, 2);
  ASSERT_EQ(mproc_queue_lost(q), 0);
  ASSERT_OK(mproc_queue_free(q));
  return 0;
}
