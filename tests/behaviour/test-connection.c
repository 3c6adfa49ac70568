/*
 * tests/behaviour/test-connection.c - Pipe, Connection and wait, ported
 * from CPython's _TestConnection (test_connection, test_duplex_false,
 * test_sendbytes), _TestPoll (test_empty_string, test_strings,
 * test_boundaries, test_dont_merge), TestWait (test_wait, test_wait_socket,
 * test_wait_timeout, test_wait_integer) and TestIgnoreEINTR, plus mproc's
 * own: EOF inside a frame, MPROC_EMSGSIZE decided before allocating,
 * malformed headers, SIGPIPE never killing the sender, the internal
 * framed I/O with deadlines that the handshake uses, and the read buffer:
 * messages served from it exact, poll and wait seeing what it holds,
 * MPROC_ENOBUFS, end of file and the limits with buffered bytes, and
 * bytes read ahead during the handshake kept for the caller.
 *
 * Connections reach children by fork: a child gets a copy of the object
 * and of its fd, and closes the ends it does not use, as Python's
 * children do, so end of file arrives when it should.
 */
#include "auth.h"
#include "connection-internal.h"
#include "task.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <time.h>

/* ---- helpers ---- */

static void send_str(mproc_connection *c, const char *s) {
  ASSERT_OK(mproc_connection_send(c, s, strlen(s)));
}

/* Receive one message and compare it with s. */
static void expect_str(mproc_connection *c, const char *s) {
  void *m = NULL;
  size_t n = 0;
  ASSERT_OK(mproc_connection_recv_bytes(c, &m, &n, MPROC_NOLIMIT));
  ASSERT_NOT_NULL(m);
  ASSERT_UEQ(n, strlen(s));
  ASSERT_EQ(memcmp(m, s, n), 0);
  free(m);
}

/* Write raw bytes to an fd (a peer that does not speak through mproc). */
static void raw_write(int fd, const void *p, size_t n) {
  ASSERT_EQ(write(fd, p, n), (ssize_t)n);
}

/* ---- test_connection: an echo child ---- */

/* What an echo child gets: its own ends, and the parent's to close. */
typedef struct echo_arg {
  mproc_connection *in, *out;     /* the child's (the same when duplex) */
  mproc_connection *close1, *close2; /* the parent's ends (may be NULL) */
} echo_arg;

/* Echo every message until "quit" or end of file, then close. */
static int echo_child(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  echo_arg a;
  memcpy(&a, arg, sizeof a);
  mproc_connection_close(a.close1);
  mproc_connection_close(a.close2);
  for (;;) {
    void *m = NULL;
    size_t n = 0;
    int r = mproc_connection_recv_bytes(a.in, &m, &n, MPROC_NOLIMIT);
    if (r == MPROC_EOF) {
      break;
    }
    ASSERT_OK(r);
    if (n == 4 && memcmp(m, "quit", 4) == 0) {
      free(m);
      break;
    }
    ASSERT_OK(mproc_connection_send(a.out, m, n));
    free(m);
  }
  mproc_connection_close(a.in);
  if (a.out != a.in) {
    mproc_connection_close(a.out);
  }
  return 0;
}

/*
 * The body of test_connection for one kind of pipe: to (parent -> child)
 * and from (child -> parent) are the parent's ends.
 */
static void echo_session(mproc_connection *to, mproc_connection *from) {
  const char *msg = "hello world";
  send_str(to, msg);
  expect_str(from, msg);

  /* An empty message is a message. */
  ASSERT_OK(mproc_connection_send(to, NULL, 0));
  void *m = NULL;
  size_t n = 99;
  ASSERT_OK(mproc_connection_recv_bytes(from, &m, &n, MPROC_NOLIMIT));
  ASSERT_NOT_NULL(m);
  ASSERT_UEQ(n, 0);
  free(m);

  /* recv_bytes_into, without and with an offset. */
  char buf[64];
  memset(buf, 0, sizeof buf);
  send_str(to, msg);
  ASSERT_OK(mproc_connection_recv_bytes_into(from, buf, sizeof buf, 0, &n));
  ASSERT_UEQ(n, strlen(msg));
  ASSERT_EQ(memcmp(buf, msg, n), 0);
  memset(buf, 0, sizeof buf);
  send_str(to, msg);
  ASSERT_OK(mproc_connection_recv_bytes_into(from, buf, sizeof buf, 24, &n));
  ASSERT_UEQ(n, strlen(msg));
  ASSERT_EQ(memcmp(buf + 24, msg, n), 0);
  ASSERT_EQ(buf[0], 0);
  /* Exactly filling the room is fine. */
  send_str(to, msg);
  ASSERT_OK(mproc_connection_recv_bytes_into(
      from, buf, 24 + strlen(msg), 24, &n));
  ASSERT_UEQ(n, strlen(msg));

  /* Too small: MPROC_ENOBUFS, the length, and the message is kept. */
  const char *longer = "a message longer than sixteen bytes";
  send_str(to, longer);
  n = 0;
  ASSERT_ERR(mproc_connection_recv_bytes_into(from, buf, 16, 0, &n),
             MPROC_ENOBUFS);
  ASSERT_UEQ(n, strlen(longer));
  ASSERT_EQ(mproc_connection_poll(from, 0), 1);
  ASSERT_ERR(mproc_connection_recv_bytes_into(from, buf, sizeof buf, 40, &n),
             MPROC_ENOBUFS);
  ASSERT_OK(mproc_connection_recv_bytes_into(from, buf, sizeof buf, 0, &n));
  ASSERT_UEQ(n, strlen(longer));
  ASSERT_EQ(memcmp(buf, longer, n), 0);
  /* ... and recv_bytes takes a kept message too. */
  send_str(to, longer);
  ASSERT_ERR(mproc_connection_recv_bytes_into(from, buf, 4, 0, &n),
             MPROC_ENOBUFS);
  expect_str(from, longer);

  /* poll: False at once, False after 0.1 s, True at once with data. */
  double t0 = test_now();
  ASSERT_EQ(mproc_connection_poll(from, 0), 0);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  t0 = test_now();
  ASSERT_EQ(mproc_connection_poll(from, 0.1), 0);
  double el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.1);
  ASSERT_DBL_LE(el, 0.1 + test_slack());
  send_str(to, msg);
  test_sleep(0.1);
  t0 = test_now();
  ASSERT_EQ(mproc_connection_poll(from, 5.0), 1);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  ASSERT_EQ(mproc_connection_poll(from, MPROC_FOREVER), 1); /* not consumed */
  expect_str(from, msg);

  /* A 16 MiB message, both ways. */
  size_t big = (size_t)16 << 20;
  char *p = malloc(big);
  ASSERT_NOT_NULL(p);
  test_fill(p, big, 42);
  ASSERT_OK(mproc_connection_send(to, p, big));
  free(p);
  ASSERT_OK(mproc_connection_recv_bytes(from, &m, &n, MPROC_NOLIMIT));
  ASSERT_UEQ(n, big);
  ASSERT(test_check_fill(m, n, 42));
  free(m);

  /* Tell the child to quit; it closes its ends and we see MPROC_EOF,
   * every time, and poll says end of file is readable. */
  send_str(to, "quit");
}

static void echo_finish(mproc_process *p, mproc_connection *from) {
  ASSERT_EQ(test_finish_proc(p), 0);
  void *m = (void *)1;
  size_t n = 1;
  ASSERT_ERR(mproc_connection_recv_bytes(from, &m, &n, MPROC_NOLIMIT),
             MPROC_EOF);
  ASSERT_NULL(m);
  ASSERT_UEQ(n, 0);
  ASSERT_ERR(mproc_connection_recv_bytes(from, &m, &n, MPROC_NOLIMIT),
             MPROC_EOF);
  ASSERT_EQ(mproc_connection_poll(from, 0), 1);
  char buf[4];
  ASSERT_ERR(mproc_connection_recv_bytes_into(from, buf, 4, 0, &n),
             MPROC_EOF);
}

TEST_IMPL(connection_echo_duplex) {
  mproc_connection *a = NULL, *b = NULL;
  ASSERT_OK(mproc_pipe(&a, &b, 1));
  ASSERT_EQ(mproc_connection_readable(a), 1);
  ASSERT_EQ(mproc_connection_writable(a), 1);
  echo_arg arg = {.in = b, .out = b, .close1 = a};
  mproc_process *p = test_start_proc(echo_child, &arg, sizeof arg);
  ASSERT_OK(mproc_connection_close(b));
  echo_session(a, a);
  echo_finish(p, a);
  ASSERT_OK(mproc_connection_close(a));
  return 0;
}

TEST_IMPL(connection_echo_simplex) {
  mproc_connection *r1 = NULL, *w1 = NULL, *r2 = NULL, *w2 = NULL;
  ASSERT_OK(mproc_pipe(&r1, &w1, 0)); /* parent -> child */
  ASSERT_OK(mproc_pipe(&r2, &w2, 0)); /* child -> parent */
  echo_arg arg = {.in = r1, .out = w2, .close1 = w1, .close2 = r2};
  mproc_process *p = test_start_proc(echo_child, &arg, sizeof arg);
  ASSERT_OK(mproc_connection_close(r1));
  ASSERT_OK(mproc_connection_close(w2));
  echo_session(w1, r2);
  echo_finish(p, r2);
  ASSERT_OK(mproc_connection_close(w1));
  ASSERT_OK(mproc_connection_close(r2));
  return 0;
}

/* ---- test_duplex_false ---- */

TEST_IMPL(connection_duplex_false) {
  mproc_connection *r = NULL, *w = NULL;
  ASSERT_OK(mproc_pipe(&r, &w, 0));
  ASSERT_EQ(mproc_connection_readable(r), 1);
  ASSERT_EQ(mproc_connection_writable(r), 0);
  ASSERT_EQ(mproc_connection_readable(w), 0);
  ASSERT_EQ(mproc_connection_writable(w), 1);
  ASSERT_GE(mproc_connection_fileno(r), 3);
  ASSERT_GE(mproc_connection_fileno(w), 3);
  /* Python: "connection is read-only" / "connection is write-only". */
  ASSERT_ERR(mproc_connection_send(r, "x", 1), MPROC_EPERM);
  ASSERT_ERR(mproc_connection_send_bytes(r, "x", 1, 5, 9), MPROC_EPERM);
  void *m = NULL;
  size_t n = 0;
  char buf[8];
  ASSERT_ERR(mproc_connection_recv_bytes(w, &m, &n, MPROC_NOLIMIT),
             MPROC_EPERM);
  ASSERT_ERR(mproc_connection_recv_bytes_into(w, buf, 8, 0, &n), MPROC_EPERM);
  ASSERT_ERR(mproc_connection_poll(w, 0), MPROC_EPERM);
  ASSERT_ERR(mproc__conn_send_frame(r, "x", 1, NULL), MPROC_EPERM);
  ASSERT_ERR(mproc__conn_recv_frame(w, &m, &n, 10, NULL), MPROC_EPERM);
  /* The right directions work. */
  send_str(w, "ok");
  expect_str(r, "ok");
  ASSERT_OK(mproc_connection_close(r));
  ASSERT_OK(mproc_connection_close(w));
  return 0;
}

/* ---- test_sendbytes ---- */

TEST_IMPL(connection_sendbytes_offsets) {
  mproc_connection *a = NULL, *b = NULL;
  ASSERT_OK(mproc_pipe(&a, &b, 1));
  const char *msg = "abcdefghijklmnopqrstuvwxyz";
  size_t L = strlen(msg);
  ASSERT_UEQ(L, 26);

  ASSERT_OK(mproc_connection_send_bytes(a, msg, L, 0, MPROC_REST));
  expect_str(b, msg);
  ASSERT_OK(mproc_connection_send_bytes(a, msg, L, 5, MPROC_REST));
  expect_str(b, msg + 5);
  ASSERT_OK(mproc_connection_send_bytes(a, msg, L, 7, 8));
  expect_str(b, "hijklmno"); /* msg[7:15] */
  ASSERT_OK(mproc_connection_send_bytes(a, msg, L, 26, MPROC_REST));
  expect_str(b, "");
  ASSERT_OK(mproc_connection_send_bytes(a, msg, L, 26, 0));
  expect_str(b, "");
  ASSERT_OK(mproc_connection_send_bytes(a, NULL, 0, 0, MPROC_REST));
  expect_str(b, "");

  /* Out of bounds: MPROC_EINVAL and nothing sent. */
  ASSERT_ERR(mproc_connection_send_bytes(a, msg, L, 27, MPROC_REST),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_send_bytes(a, msg, L, 22, 5), MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_send_bytes(a, msg, L, 26, 1), MPROC_EINVAL);
  /* Python's send_bytes(buf, -1) and (buf, 4, -1) are ValueErrors: a
   * negative offset or size is refused, and -1 is not "to the end". */
  ASSERT_ERR(mproc_connection_send_bytes(a, msg, L, -1, MPROC_REST),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_send_bytes(a, msg, L, 4, -1), MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_send_bytes(a, msg, L, 4, -2), MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_send_bytes(a, msg, L, 0, -(ptrdiff_t)L),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_send_bytes(a, msg, L, 4, MPROC_REST + 1),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_send_bytes(a, msg, L, PTRDIFF_MAX, 1),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_send_bytes(a, msg, L, 4, PTRDIFF_MAX),
             MPROC_EINVAL);
  /* A size_t -1 passed by mistake is the same -1, not MPROC_REST. */
  ASSERT_ERR(mproc_connection_send_bytes(a, msg, L, 4, (ptrdiff_t)(size_t)-1),
             MPROC_EINVAL);
  ASSERT_EQ(mproc_connection_poll(b, 0), 0);

  ASSERT_OK(mproc_connection_close(a));
  ASSERT_OK(mproc_connection_close(b));
  return 0;
}

/* ---- _TestPoll ---- */

TEST_IMPL(connection_poll_empty_message) {
  mproc_connection *a = NULL, *b = NULL;
  ASSERT_OK(mproc_pipe(&a, &b, 1));
  ASSERT_EQ(mproc_connection_poll(a, 0), 0);
  ASSERT_OK(mproc_connection_send(b, "", 0));
  ASSERT_EQ(mproc_connection_poll(a, 0), 1);
  ASSERT_EQ(mproc_connection_poll(a, 0), 1); /* not consumed */
  expect_str(a, "");
  ASSERT_EQ(mproc_connection_poll(a, 0), 0);
  ASSERT_OK(mproc_connection_close(a));
  ASSERT_OK(mproc_connection_close(b));
  return 0;
}

static const char *const poll_strings[] = {"hello", "", "a", "b", "",
                                           "bye",   "", "lop"};

static int poll_strings_child(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  mproc_connection *conns[2];
  memcpy(conns, arg, sizeof conns);
  mproc_connection_close(conns[0]);
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(poll_strings); i++) {
    send_str(conns[1], poll_strings[i]);
  }
  mproc_connection_close(conns[1]);
  return 0;
}

/* test_strings: messages arrive in order, each polled before it is read. */
TEST_IMPL(connection_poll_strings) {
  for (int duplex = 0; duplex <= 1; duplex++) {
    mproc_connection *r = NULL, *w = NULL;
    ASSERT_OK(mproc_pipe(&r, &w, duplex));
    mproc_connection *conns[2] = {r, w};
    mproc_process *p = test_start_proc(poll_strings_child, conns,
                                       sizeof conns);
    ASSERT_OK(mproc_connection_close(w));
    for (size_t i = 0; i < MPROC__ARRAY_SIZE(poll_strings); i++) {
      ASSERT_EQ(mproc_connection_poll(r, 5.0), 1);
      expect_str(r, poll_strings[i]);
    }
    ASSERT_EQ(test_finish_proc(p), 0);
    void *m = NULL;
    size_t n = 0;
    ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
               MPROC_EOF);
    ASSERT_OK(mproc_connection_close(r));
  }
  return 0;
}

/* test_dont_merge: three sends are three messages. */
TEST_IMPL(connection_poll_dont_merge) {
  for (int duplex = 0; duplex <= 1; duplex++) {
    mproc_connection *r = NULL, *w = NULL;
    ASSERT_OK(mproc_pipe(&r, &w, duplex));
    send_str(w, "a");
    send_str(w, "b");
    send_str(w, "cd");
    ASSERT_EQ(mproc_connection_poll(r, 0), 1);
    expect_str(r, "a");
    ASSERT_EQ(mproc_connection_poll(r, 0), 1);
    expect_str(r, "b");
    ASSERT_EQ(mproc_connection_poll(r, 0), 1);
    expect_str(r, "cd");
    ASSERT_EQ(mproc_connection_poll(r, 0), 0);
    ASSERT_OK(mproc_connection_close(r));
    ASSERT_OK(mproc_connection_close(w));
  }
  return 0;
}

static int boundaries_child(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  mproc_connection *conns[2];
  memcpy(conns, arg, sizeof conns);
  mproc_connection_close(conns[1]);
  /* Polling must not pull in (part of) a message. */
  int r = mproc_connection_poll(conns[0], 5.0);
  mproc_connection_close(conns[0]);
  return r == 1 ? 0 : 1;
}

/* test_boundaries: a child that polls leaves the messages whole. */
TEST_IMPL(connection_poll_boundaries) {
  mproc_connection *r = NULL, *w = NULL;
  ASSERT_OK(mproc_pipe(&r, &w, 0));
  mproc_connection *conns[2] = {r, w};
  mproc_process *p = test_start_proc(boundaries_child, conns, sizeof conns);
  test_sleep(0.2);
  send_str(w, "first");
  send_str(w, "second");
  ASSERT_OK(mproc_connection_close(w));
  ASSERT_EQ(test_finish_proc(p), 0);
  expect_str(r, "first");
  expect_str(r, "second");
  void *m = NULL;
  size_t n = 0;
  ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
             MPROC_EOF);
  ASSERT_OK(mproc_connection_close(r));
  return 0;
}

/* ---- TestWait ---- */

#define WAIT_CHILDREN 4
#define WAIT_MESSAGES 10

typedef struct wait_arg {
  mproc_connection *r, *w;
  int id;
} wait_arg;

static int wait_child(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  wait_arg a;
  memcpy(&a, arg, sizeof a);
  mproc_connection_close(a.r);
  uint64_t seed = (uint64_t)getpid() * 2654435761u + 1;
  for (int i = 0; i < WAIT_MESSAGES; i++) {
    /* Python's "slow" variant: up to 20 ms between messages. */
    test_sleep((double)(test_rand(&seed) % 20) / 1000.0);
    int msg[2] = {a.id, i};
    ASSERT_OK(mproc_connection_send(a.w, msg, sizeof msg));
  }
  mproc_connection_close(a.w);
  return 0;
}

/* test_wait / test_wait_socket: read every child's messages through wait
 * until each connection reaches end of file. */
static void wait_children(int duplex) {
  mproc_connection *readers[WAIT_CHILDREN];
  mproc_process *procs[WAIT_CHILDREN];
  for (int i = 0; i < WAIT_CHILDREN; i++) {
    mproc_connection *r = NULL, *w = NULL;
    ASSERT_OK(mproc_pipe(&r, &w, duplex));
    wait_arg a = {.r = r, .w = w, .id = i};
    procs[i] = test_start_proc(wait_child, &a, sizeof a);
    ASSERT_OK(mproc_connection_close(w));
    readers[i] = r;
  }
  int next[WAIT_CHILDREN] = {0};
  int open = WAIT_CHILDREN;
  while (open > 0) {
    mproc_wait_item items[WAIT_CHILDREN];
    size_t n = 0;
    int map[WAIT_CHILDREN];
    for (int i = 0; i < WAIT_CHILDREN; i++) {
      if (readers[i] != NULL) {
        items[n] = (mproc_wait_item){.conn = readers[i]};
        map[n++] = i;
      }
    }
    int ready = mproc_connection_wait(items, n, 10.0);
    ASSERT_GT(ready, 0);
    int seen = 0;
    for (size_t k = 0; k < n; k++) {
      if (!items[k].ready) {
        continue;
      }
      seen++;
      int i = map[k];
      void *m = NULL;
      size_t len = 0;
      int r = mproc_connection_recv_bytes(readers[i], &m, &len, 64);
      if (r == MPROC_EOF) {
        ASSERT_OK(mproc_connection_close(readers[i]));
        readers[i] = NULL;
        open--;
        continue;
      }
      ASSERT_OK(r);
      int msg[2];
      ASSERT_UEQ(len, sizeof msg);
      memcpy(msg, m, sizeof msg);
      free(m);
      ASSERT_EQ(msg[0], i);
      ASSERT_EQ(msg[1], next[i]);
      next[i]++;
    }
    ASSERT_EQ(seen, ready);
  }
  for (int i = 0; i < WAIT_CHILDREN; i++) {
    ASSERT_EQ(next[i], WAIT_MESSAGES);
  }
  test_finish_procs_ok(procs, WAIT_CHILDREN);
}

TEST_IMPL(connection_wait_pipes) {
  wait_children(0);
  return 0;
}

TEST_IMPL(connection_wait_sockets) {
  wait_children(1);
  return 0;
}

/* test_wait_timeout, shortened: nothing ready for the whole timeout, then
 * exactly the connection that got a message. */
TEST_IMPL(connection_wait_timeout) {
  mproc_connection *a = NULL, *x = NULL, *b = NULL, *y = NULL;
  ASSERT_OK(mproc_pipe(&a, &x, 1));
  ASSERT_OK(mproc_pipe(&b, &y, 0));
  mproc_wait_item items[2] = {{.conn = a}, {.conn = b}};
  double t0 = test_now();
  ASSERT_EQ(mproc_connection_wait(items, 2, 0.5), 0);
  double el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.5);
  ASSERT_DBL_LE(el, 0.5 + test_slack());
  ASSERT_EQ(items[0].ready + items[1].ready, 0);
  t0 = test_now();
  ASSERT_EQ(mproc_connection_wait(items, 2, 0), 0);
  ASSERT_DBL_LE(test_now() - t0, test_slack());

  send_str(x, "hi");
  t0 = test_now();
  ASSERT_EQ(mproc_connection_wait(items, 2, 5.0), 1);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  ASSERT_EQ(items[0].ready, 1);
  ASSERT_EQ(items[1].ready, 0);
  expect_str(a, "hi");

  /* A raw fd item, and a frame kept pending by MPROC_ENOBUFS. */
  send_str(y, "a longer message");
  char buf[4];
  size_t n = 0;
  ASSERT_ERR(mproc_connection_recv_bytes_into(b, buf, sizeof buf, 0, &n),
             MPROC_ENOBUFS);
  ASSERT_EQ(mproc_connection_poll(b, 0), 1);
  mproc_wait_item three[3] = {
      {.conn = a}, {.conn = b}, {.conn = NULL, .fd = mproc_connection_fileno(a)}};
  t0 = test_now();
  ASSERT_EQ(mproc_connection_wait(three, 3, MPROC_FOREVER), 1);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  ASSERT_EQ(three[1].ready, 1);
  expect_str(b, "a longer message");
  send_str(x, "again");
  ASSERT_EQ(mproc_connection_wait(three, 3, MPROC_FOREVER), 2);
  ASSERT_EQ(three[0].ready, 1);
  ASSERT_EQ(three[1].ready, 0);
  ASSERT_EQ(three[2].ready, 1);
  expect_str(a, "again");

  /* End of file makes an item ready. */
  ASSERT_OK(mproc_connection_close(y));
  ASSERT_EQ(mproc_connection_wait(items, 2, 5.0), 1);
  ASSERT_EQ(items[1].ready, 1);

  ASSERT_OK(mproc_connection_close(a));
  ASSERT_OK(mproc_connection_close(x));
  ASSERT_OK(mproc_connection_close(b));
  return 0;
}

static int sleepy_child(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  test_sleep(0.3);
  return 0;
}

/* test_wait_integer, shortened: a process sentinel among connections. */
TEST_IMPL(connection_wait_sentinel) {
  mproc_connection *a = NULL, *x = NULL;
  ASSERT_OK(mproc_pipe(&a, &x, 1));
  double t0 = test_now();
  mproc_process *p = test_start_proc(sleepy_child, NULL, 0);
  int sentinel = mproc_process_sentinel(p);
  ASSERT_GE(sentinel, 0);
  mproc_wait_item items[2] = {{.conn = a}, {.conn = NULL, .fd = sentinel}};
  ASSERT_EQ(mproc_connection_wait(items, 2, 10.0), 1);
  double el = test_now() - t0;
  ASSERT_EQ(items[0].ready, 0);
  ASSERT_EQ(items[1].ready, 1);
  ASSERT_DBL_GE(el, 0.3);
  ASSERT_DBL_LE(el, 0.3 + 20 * test_slack());
  /* Still ready; and a message makes both ready. */
  send_str(x, "m");
  ASSERT_EQ(mproc_connection_wait(items, 2, 0), 2);
  expect_str(a, "m");
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_OK(mproc_connection_close(a));
  ASSERT_OK(mproc_connection_close(x));
  return 0;
}

/* ---- framing errors ---- */

/* A peer that closes inside a frame: MPROC_ECONNRESET, then the stream
 * is broken. */
TEST_IMPL(connection_eof_inside_frame) {
  for (int variant = 0; variant < 3; variant++) {
    int fds[2];
    ASSERT_OK(mproc__pipe(fds, 0));
    mproc_connection *r = NULL;
    ASSERT_OK(mproc_connection_from_fd(&r, fds[0], 1, 0));
    if (variant == 0) {
      /* Header announcing 100 bytes, then only 10. */
      raw_write(fds[1], "\0\0\0\x64" "0123456789", 14);
    } else if (variant == 1) {
      raw_write(fds[1], "\0\0", 2); /* half a header */
    } else {
      raw_write(fds[1], "\xff\xff\xff\xff\0\0", 6); /* half an escape */
    }
    mproc__close(fds[1]);
    void *m = (void *)1;
    size_t n = 1;
    ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
               MPROC_ECONNRESET);
    ASSERT_NULL(m);
    ASSERT_UEQ(n, 0);
    ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
               MPROC_EBROKEN);
    ASSERT_EQ(mproc_connection_poll(r, 0), 1);
    ASSERT_OK(mproc_connection_close(r));
  }
  return 0;
}

/* A length over maxlength is refused from the header alone: 2^62 bytes
 * would never fit in memory.  The stream is then broken. */
TEST_IMPL(connection_emsgsize_before_alloc) {
  int fds[2];
  ASSERT_OK(mproc__socketpair(fds));
  mproc_connection *r = NULL;
  ASSERT_OK(mproc_connection_from_fd(&r, fds[0], 1, 1));
  raw_write(fds[1], "\xff\xff\xff\xff\x40\0\0\0\0\0\0\0", 12);
  void *m = (void *)1;
  size_t n = 1;
  double t0 = test_now();
  ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, (size_t)1 << 20),
             MPROC_EMSGSIZE);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  ASSERT_NULL(m);
  ASSERT_UEQ(n, 0);
  ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
             MPROC_EBROKEN);
  char buf[8];
  ASSERT_ERR(mproc_connection_recv_bytes_into(r, buf, 8, 0, &n),
             MPROC_EBROKEN);
  /* A broken end is "ready" (a receive returns at once). */
  ASSERT_EQ(mproc_connection_poll(r, 0), 1);
  mproc_wait_item it = {.conn = r};
  ASSERT_EQ(mproc_connection_wait(&it, 1, 0), 1);
  /* Sending still works: only the receiving side lost its place. */
  mproc_connection *peer = NULL;
  ASSERT_OK(mproc_connection_from_fd(&peer, fds[1], 1, 1));
  send_str(r, "still");
  expect_str(peer, "still");
  ASSERT_OK(mproc_connection_close(r));
  ASSERT_OK(mproc_connection_close(peer));

  /* An ordinary message one byte too long, and one exactly at the limit. */
  mproc_connection *a = NULL, *b = NULL;
  ASSERT_OK(mproc_pipe(&a, &b, 1));
  send_str(b, "0123456789");
  expect_str(a, "0123456789"); /* maxlength NOLIMIT */
  send_str(b, "0123456789");
  ASSERT_OK(mproc_connection_recv_bytes(a, &m, &n, 10));
  free(m);
  send_str(b, "0123456789");
  ASSERT_ERR(mproc_connection_recv_bytes(a, &m, &n, 9), MPROC_EMSGSIZE);
  ASSERT_ERR(mproc_connection_recv_bytes(a, &m, &n, 100), MPROC_EBROKEN);
  ASSERT_OK(mproc_connection_close(a));
  ASSERT_OK(mproc_connection_close(b));
  return 0;
}

/* A negative length other than -1 is a protocol error. */
TEST_IMPL(connection_malformed_header) {
  int fds[2];
  ASSERT_OK(mproc__socketpair(fds));
  mproc_connection *r = NULL;
  ASSERT_OK(mproc_connection_from_fd(&r, fds[0], 1, 0));
  raw_write(fds[1], "\xff\xff\xff\xfe" "abcd", 8);
  void *m = NULL;
  size_t n = 0;
  ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
             MPROC_EPROTO);
  ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
             MPROC_EBROKEN);
  ASSERT_OK(mproc_connection_close(r));
  mproc__close(fds[1]);
  return 0;
}

/* What Python would write, byte for byte, read by mproc; and what mproc
 * writes, read raw. */
TEST_IMPL(connection_wire_format) {
  int fds[2];
  ASSERT_OK(mproc__socketpair(fds));
  mproc_connection *c = NULL;
  ASSERT_OK(mproc_connection_from_fd(&c, fds[0], 1, 1));
  ASSERT_OK(mproc_connection_send(c, "abc", 3));
  ASSERT_OK(mproc_connection_send(c, "", 0));
  unsigned char got[11];
  ASSERT_EQ(read(fds[1], got, sizeof got), (ssize_t)sizeof got);
  ASSERT_EQ(memcmp(got, "\0\0\0\x03" "abc" "\0\0\0\0", 11), 0);
  /* An escaped header with a small length, as a peer may send it. */
  raw_write(fds[1], "\xff\xff\xff\xff\0\0\0\0\0\0\0\x02" "hi", 14);
  expect_str(c, "hi");
  ASSERT_OK(mproc_connection_close(c));
  mproc__close(fds[1]);
  return 0;
}

/* ---- SIGPIPE ---- */

static int sigpipe_pending(void) {
  sigset_t s;
  sigemptyset(&s);
  ASSERT_EQ(sigpending(&s), 0);
  return sigismember(&s, SIGPIPE);
}

static int sigpipe_blocked(void) {
  sigset_t s;
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, NULL, &s), 0);
  return sigismember(&s, SIGPIPE);
}

/* With SIGPIPE's default action (death), a send to a gone peer is
 * MPROC_EPIPE, on a socketpair and on a pipe, and leaves no signal
 * pending and the mask as it was. */
TEST_IMPL(connection_epipe_no_sigpipe) {
  ASSERT(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
  for (int duplex = 0; duplex <= 1; duplex++) {
    mproc_connection *r = NULL, *w = NULL;
    ASSERT_OK(mproc_pipe(&r, &w, duplex));
    ASSERT_OK(mproc_connection_close(r));
    ASSERT_ERR(mproc_connection_send(w, "x", 1), MPROC_EPIPE);
    /* A big one too: the first write already fails. */
    size_t big = 1 << 20;
    char *p = calloc(1, big);
    ASSERT_NOT_NULL(p);
    ASSERT_ERR(mproc_connection_send(w, p, big), MPROC_EPIPE);
    free(p);
    ASSERT_EQ(sigpipe_pending(), 0);
    ASSERT_EQ(sigpipe_blocked(), 0);
    ASSERT_OK(mproc_connection_close(w));
  }

  /* A SIGPIPE already pending (blocked by the caller) is not ours: it
   * stays pending, and the caller's mask stays as it was. */
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
  ASSERT_EQ(raise(SIGPIPE), 0);
  ASSERT_EQ(sigpipe_pending(), 1);
  mproc_connection *r = NULL, *w = NULL;
  ASSERT_OK(mproc_pipe(&r, &w, 0));
  ASSERT_OK(mproc_connection_close(r));
  ASSERT_ERR(mproc_connection_send(w, "x", 1), MPROC_EPIPE);
  ASSERT_EQ(sigpipe_pending(), 1);
  ASSERT_EQ(sigpipe_blocked(), 1);
  struct timespec zero = {0, 0};
  ASSERT_EQ(sigtimedwait(&set, NULL, &zero), SIGPIPE);
  ASSERT_EQ(sigpipe_pending(), 0);
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
  ASSERT_OK(mproc_connection_close(w));
  return 0;
}

/* ---- TestIgnoreEINTR ---- */

static volatile sig_atomic_t usr1_count;

static void on_usr1(int sig) {
  (void)sig;
  usr1_count++;
}

typedef struct eintr_arg {
  pthread_t target;   /* the thread to interrupt */
  mproc_connection *c; /* the helper's end */
  size_t big;          /* 0: send a short message; else read big bytes */
} eintr_arg;

/* Interrupt the main thread a few times while it blocks, then do the
 * other half of its transfer.  Each signal is sent after the previous one
 * was handled: two sent while the target is not scheduled (a busy
 * machine) would merge into one delivery. */
static void *eintr_helper(void *p) {
  eintr_arg *a = p;
  for (int i = 0; i < 3; i++) {
    test_sleep(0.05);
    ASSERT_EQ(pthread_kill(a->target, SIGUSR1), 0);
    double end = test_now() + 30.0;
    while (usr1_count < i + 1 && test_now() < end) {
      test_sleep(0.001);
    }
  }
  test_sleep(0.05);
  if (a->big == 0) {
    send_str(a->c, "after signals");
    return NULL;
  }
  /* Read slowly at first, so the sender blocks and gets interrupted
   * between partial writes too. */
  void *m = NULL;
  size_t n = 0;
  ASSERT_OK(mproc_connection_recv_bytes(a->c, &m, &n, MPROC_NOLIMIT));
  ASSERT_UEQ(n, a->big);
  ASSERT(test_check_fill(m, n, 7));
  free(m);
  return NULL;
}

TEST_IMPL(connection_eintr) {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: blocking calls see EINTR */
  ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);

  for (int duplex = 0; duplex <= 1; duplex++) {
    /* A blocking receive, interrupted. */
    mproc_connection *r = NULL, *w = NULL;
    ASSERT_OK(mproc_pipe(&r, &w, duplex));
    eintr_arg a = {.target = pthread_self(), .c = w, .big = 0};
    pthread_t th;
    usr1_count = 0;
    ASSERT_OK(pthread_create(&th, NULL, eintr_helper, &a));
    expect_str(r, "after signals");
    ASSERT_OK(pthread_join(th, NULL));
    ASSERT_EQ(usr1_count, 3);

    /* A blocking send of a big message, interrupted. */
    size_t big = (size_t)4 << 20;
    char *p = malloc(big);
    ASSERT_NOT_NULL(p);
    test_fill(p, big, 7);
    a = (eintr_arg){.target = pthread_self(), .c = r, .big = big};
    usr1_count = 0;
    ASSERT_OK(pthread_create(&th, NULL, eintr_helper, &a));
    ASSERT_OK(mproc_connection_send(w, p, big));
    ASSERT_OK(pthread_join(th, NULL));
    ASSERT_EQ(usr1_count, 3);
    free(p);
    ASSERT_OK(mproc_connection_close(r));
    ASSERT_OK(mproc_connection_close(w));
  }
  ASSERT_EQ(sigaction(SIGUSR1, &old, NULL), 0);
  return 0;
}

/* ---- internal framed I/O with deadlines (the handshake's) ---- */

TEST_IMPL(connection_frame_deadlines) {
  mproc_connection *a = NULL, *b = NULL;
  ASSERT_OK(mproc_pipe(&a, &b, 1));
  mproc__deadline d;
  void *m = NULL;
  size_t n = 0;

  /* Nothing arrives: a timeout, and the connection is still fine. */
  ASSERT_OK(mproc__deadline_init(&d, 0.1));
  double t0 = test_now();
  ASSERT_ERR(mproc__conn_recv_frame(a, &m, &n, MPROC__AUTH_MAX_MESSAGE, &d),
             MPROC_ETIMEDOUT);
  double el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.1);
  ASSERT_DBL_LE(el, 0.1 + test_slack());
  ASSERT_OK(mproc__deadline_init(&d, 1.0));
  ASSERT_OK(mproc__conn_send_frame(b, "#CHALLENGE#", 11, &d));
  ASSERT_OK(mproc__conn_recv_frame(a, &m, &n, MPROC__AUTH_MAX_MESSAGE, &d));
  ASSERT_UEQ(n, 11);
  ASSERT_EQ(memcmp(m, "#CHALLENGE#", 11), 0);
  free(m);

  /* Over the pre-authentication cap. */
  char big[300];
  memset(big, 'x', sizeof big);
  ASSERT_OK(mproc__conn_send_frame(b, big, sizeof big, &d));
  ASSERT_ERR(mproc__conn_recv_frame(a, &m, &n, MPROC__AUTH_MAX_MESSAGE, &d),
             MPROC_EMSGSIZE);
  ASSERT_OK(mproc_connection_close(a));
  ASSERT_OK(mproc_connection_close(b));

  /* A header that stops halfway: the deadline passes inside the frame,
   * and the stream is broken. */
  int fds[2];
  ASSERT_OK(mproc__socketpair(fds));
  ASSERT_OK(mproc__conn_wrap(&a, fds[0], 1, 1));
  raw_write(fds[1], "\0\0", 2);
  ASSERT_OK(mproc__deadline_init(&d, 0.05));
  ASSERT_ERR(mproc__conn_recv_frame(a, &m, &n, 100, &d), MPROC_ETIMEDOUT);
  ASSERT_ERR(mproc__conn_recv_frame(a, &m, &n, 100, NULL), MPROC_EBROKEN);
  ASSERT_OK(mproc_connection_close(a));
  mproc__close(fds[1]);

  /* A whole header and no payload yet: the frame stays pending across
   * the timeout and arrives whole later. */
  ASSERT_OK(mproc__socketpair(fds));
  ASSERT_OK(mproc__conn_wrap(&a, fds[0], 1, 1));
  raw_write(fds[1], "\0\0\0\x02", 4);
  ASSERT_OK(mproc__deadline_init(&d, 0.05));
  ASSERT_ERR(mproc__conn_recv_frame(a, &m, &n, 100, &d), MPROC_ETIMEDOUT);
  /* Nothing is left in the kernel, yet the pending frame is ready. */
  mproc_wait_item raw = {.conn = NULL, .fd = fds[0]};
  ASSERT_EQ(mproc_connection_wait(&raw, 1, 0), 0);
  ASSERT_EQ(mproc_connection_poll(a, 0), 1);
  mproc_wait_item both[2] = {{.conn = a}, {.conn = NULL, .fd = fds[0]}};
  ASSERT_EQ(mproc_connection_wait(both, 2, MPROC_FOREVER), 1);
  ASSERT_EQ(both[0].ready, 1);
  ASSERT_EQ(both[1].ready, 0);
  raw_write(fds[1], "ok", 2);
  expect_str(a, "ok");
  ASSERT_OK(mproc_connection_close(a));
  mproc__close(fds[1]);
  return 0;
}

/* A timed send into a full socket: MPROC_ETIMEDOUT on time; once part of
 * a frame went out, later sends are refused.  And a timed send through a
 * pipe, bigger than PIPE_BUF, to a reader that keeps up. */
typedef struct drain_arg {
  mproc_connection *r;
  size_t len;
} drain_arg;

static void *drain_thread(void *p) {
  drain_arg *a = p;
  void *m = NULL;
  size_t n = 0;
  ASSERT_OK(mproc_connection_recv_bytes(a->r, &m, &n, MPROC_NOLIMIT));
  ASSERT_UEQ(n, a->len);
  ASSERT(test_check_fill(m, n, 3));
  free(m);
  return NULL;
}

TEST_IMPL(connection_frame_send_deadline) {
  mproc_connection *a = NULL, *b = NULL;
  ASSERT_OK(mproc_pipe(&a, &b, 1));
  size_t big = (size_t)8 << 20; /* more than any socket buffer */
  char *p = malloc(big);
  ASSERT_NOT_NULL(p);
  test_fill(p, big, 3);
  mproc__deadline d;
  ASSERT_OK(mproc__deadline_init(&d, 0.1));
  double t0 = test_now();
  ASSERT_ERR(mproc__conn_send_frame(a, p, big, &d), MPROC_ETIMEDOUT);
  double el = test_now() - t0;
  ASSERT_DBL_GE(el, 0.1);
  ASSERT_DBL_LE(el, 0.1 + test_slack());
  ASSERT_ERR(mproc_connection_send(a, "x", 1), MPROC_EBROKEN);
  ASSERT_OK(mproc_connection_close(a));
  ASSERT_OK(mproc_connection_close(b));

  for (int duplex = 0; duplex <= 1; duplex++) {
    mproc_connection *r = NULL, *w = NULL;
    ASSERT_OK(mproc_pipe(&r, &w, duplex));
    size_t len = (size_t)1 << 20;
    drain_arg da = {.r = r, .len = len};
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, drain_thread, &da));
    ASSERT_OK(mproc__deadline_init(&d, 30.0));
    ASSERT_OK(mproc__conn_send_frame(w, p, len, &d));
    ASSERT_OK(pthread_join(th, NULL));
    ASSERT_OK(mproc_connection_close(r));
    ASSERT_OK(mproc_connection_close(w));
  }
  free(p);
  return 0;
}

/* ---- the read buffer ---- */

/* Whether fd itself is readable right now (poll(2), not the buffer). */
static int fd_readable(int fd) {
  mproc_wait_item it = {.conn = NULL, .fd = fd};
  int r = mproc_connection_wait(&it, 1, 0);
  ASSERT_GE(r, 0);
  return r;
}

/* The length of the i-th message of buffered_small_messages: every
 * fifth is empty, the others 1 to 40 bytes. */
static size_t small_len(int i) {
  return i % 5 == 0 ? 0 : (size_t)(i * 7 % 40) + 1;
}

/* Many small messages sent back to back arrive in one read and are
 * served from the buffer one by one, exact in content and boundaries,
 * empty ones included, whichever receive call takes them. */
TEST_IMPL(connection_buffered_small_messages) {
  enum { COUNT = 100 }; /* a Unix socket counts ~1 KiB per send */
  for (int duplex = 0; duplex <= 1; duplex++) {
    mproc_connection *r = NULL, *w = NULL;
    ASSERT_OK(mproc_pipe(&r, &w, duplex));
    size_t total = 0;
    for (int i = 0; i < COUNT; i++) {
      unsigned char m[40];
      test_fill(m, small_len(i), (uint64_t)i);
      ASSERT_OK(mproc_connection_send(w, m, small_len(i)));
      total += 4 + small_len(i);
    }
    /* Far less than the buffer, and far less than a pipe holds. */
    ASSERT_LT(total, 16384);
    for (int i = 0; i < COUNT; i++) {
      ASSERT_EQ(mproc_connection_poll(r, 0), 1);
      size_t n = 99;
      if (i % 2 == 0) {
        void *m = NULL;
        ASSERT_OK(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT));
        ASSERT_NOT_NULL(m);
        ASSERT_UEQ(n, small_len(i));
        ASSERT(test_check_fill(m, n, (uint64_t)i));
        free(m);
      } else {
        unsigned char buf[48];
        memset(buf, 0xee, sizeof buf);
        ASSERT_OK(mproc_connection_recv_bytes_into(r, buf, sizeof buf, 3, &n));
        ASSERT_UEQ(n, small_len(i));
        ASSERT(test_check_fill(buf + 3, n, (uint64_t)i));
        ASSERT_EQ(buf[2], 0xee);
        ASSERT_EQ(buf[3 + n], 0xee); /* not a byte more */
      }
      if (i == 0) {
        /* The first receive read them all, in one read: the fd is empty
         * until the writer closes. */
        ASSERT_EQ(fd_readable(mproc_connection_fileno(r)), 0);
        ASSERT_OK(mproc_connection_close(w));
        ASSERT_EQ(fd_readable(mproc_connection_fileno(r)), 1);
      }
    }
    void *m = (void *)1;
    size_t n = 1;
    ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
               MPROC_EOF);
    ASSERT_NULL(m);
    ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
               MPROC_EOF);
    ASSERT_OK(mproc_connection_close(r));
  }
  return 0;
}

/* A sender thread for the mixed-size tests: sizes[0 .. n) as messages
 * filled with test_fill(seed = index). */
typedef struct sizes_arg {
  mproc_connection *w;
  const size_t *sizes;
  size_t n;
} sizes_arg;

static void *sizes_sender(void *p) {
  sizes_arg *a = p;
  size_t max = 0;
  for (size_t i = 0; i < a->n; i++) {
    max = a->sizes[i] > max ? a->sizes[i] : max;
  }
  char *buf = malloc(max > 0 ? max : 1);
  ASSERT_NOT_NULL(buf);
  for (size_t i = 0; i < a->n; i++) {
    test_fill(buf, a->sizes[i], (uint64_t)i);
    ASSERT_OK(mproc_connection_send(a->w, buf, a->sizes[i]));
  }
  free(buf);
  return NULL;
}

/* Receive sizes[0 .. n) from r, alternately with recv_bytes and with
 * recv_bytes_into (into a buffer of exactly the message's size). */
static void receive_sizes(mproc_connection *r, const size_t *sizes,
                          size_t count) {
  for (size_t i = 0; i < count; i++) {
    void *m = NULL;
    size_t n = 0;
    if (i % 2 == 0) {
      ASSERT_OK(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT));
    } else {
      m = malloc(sizes[i] > 0 ? sizes[i] : 1);
      ASSERT_NOT_NULL(m);
      ASSERT_OK(mproc_connection_recv_bytes_into(r, m, sizes[i], 0, &n));
    }
    ASSERT_UEQ(n, sizes[i]);
    ASSERT(test_check_fill(m, n, (uint64_t)i));
    free(m);
  }
}

/* Sizes around every boundary of the buffer: the gathered/direct limit
 * (8 KiB), the buffer's 16 KiB + 16, a 16 KiB payload as Python writes
 * it, and a 16 MiB message between small ones. */
static const size_t mixed_sizes[] = {
    5,         0,         16777216, 3,     8191,  8192,  8193,  0,
    16384,     16379,     16380,    16385, 16396, 16400, 16401, 1,
    32768,     100000,    7,        0,     2,     65536, 4095,  4096,
    16777216,  9};

TEST_IMPL(connection_buffered_mixed_sizes) {
  size_t count = MPROC__ARRAY_SIZE(mixed_sizes);
  for (int duplex = 0; duplex <= 1; duplex++) {
    mproc_connection *r = NULL, *w = NULL;
    ASSERT_OK(mproc_pipe(&r, &w, duplex));
    sizes_arg a = {.w = w, .sizes = mixed_sizes, .n = count};
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, sizes_sender, &a));
    receive_sizes(r, mixed_sizes, count);
    ASSERT_OK(pthread_join(th, NULL));
    ASSERT_EQ(mproc_connection_poll(r, 0), 0);
    ASSERT_OK(mproc_connection_close(w));
    void *m = NULL;
    size_t n = 0;
    ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
               MPROC_EOF);
    ASSERT_OK(mproc_connection_close(r));
  }
  /* The brief's case alone: small, 16 MiB, small, all sent before the
   * first receive starts. */
  static const size_t three[] = {11, (size_t)16 << 20, 13};
  mproc_connection *r = NULL, *w = NULL;
  ASSERT_OK(mproc_pipe(&r, &w, 1));
  sizes_arg a = {.w = w, .sizes = three, .n = 3};
  pthread_t th;
  ASSERT_OK(pthread_create(&th, NULL, sizes_sender, &a));
  test_sleep(0.1);
  receive_sizes(r, three, 3);
  ASSERT_OK(pthread_join(th, NULL));
  ASSERT_OK(mproc_connection_close(r));
  ASSERT_OK(mproc_connection_close(w));
  return 0;
}

/* poll and wait see a message waiting in the buffer, though the fd has
 * nothing; a partial frame in the buffer alone is not ready. */
TEST_IMPL(connection_buffered_poll_wait) {
  mproc_connection *r = NULL, *w = NULL, *other = NULL, *ow = NULL;
  ASSERT_OK(mproc_pipe(&r, &w, 1));
  ASSERT_OK(mproc_pipe(&other, &ow, 0));
  int rfd = mproc_connection_fileno(r);
  send_str(w, "one");
  send_str(w, "two");
  send_str(w, "three");
  expect_str(r, "one");
  /* Everything was read with the first message: only the buffer knows. */
  ASSERT_EQ(fd_readable(rfd), 0);
  double t0 = test_now();
  ASSERT_EQ(mproc_connection_poll(r, 5.0), 1);
  ASSERT_EQ(mproc_connection_poll(r, 0), 1);
  /* wait returns at once, and still marks the others ready right now. */
  send_str(ow, "x");
  mproc_wait_item items[3] = {
      {.conn = other}, {.conn = r}, {.conn = NULL, .fd = rfd}};
  ASSERT_EQ(mproc_connection_wait(items, 3, 5.0), 2);
  ASSERT_EQ(items[0].ready, 1);
  ASSERT_EQ(items[1].ready, 1);
  ASSERT_EQ(items[2].ready, 0);
  expect_str(other, "x");
  ASSERT_EQ(mproc_connection_wait(items, 3, 5.0), 1);
  ASSERT_EQ(items[1].ready, 1);
  ASSERT_DBL_LE(test_now() - t0, test_slack());

  /* Closing the sender: still ready at once, two messages, then EOF. */
  ASSERT_OK(mproc_connection_close(w));
  ASSERT_EQ(mproc_connection_poll(r, 0), 1);
  expect_str(r, "two");
  ASSERT_EQ(mproc_connection_poll(r, 0), 1);
  expect_str(r, "three");
  ASSERT_EQ(mproc_connection_poll(r, 0), 1); /* end of file */
  void *m = NULL;
  size_t n = 0;
  ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
             MPROC_EOF);
  ASSERT_OK(mproc_connection_close(r));

  /* Beyond wait's 16 stack slots: the 20th of 20 connections has a
   * buffered message. */
  enum { MANY = 20 };
  mproc_connection *rs[MANY], *ws[MANY];
  mproc_wait_item many[MANY];
  for (int i = 0; i < MANY; i++) {
    ASSERT_OK(mproc_pipe(&rs[i], &ws[i], 0));
    many[i] = (mproc_wait_item){.conn = rs[i]};
  }
  send_str(ws[MANY - 1], "a");
  send_str(ws[MANY - 1], "b");
  expect_str(rs[MANY - 1], "a");
  ASSERT_EQ(fd_readable(mproc_connection_fileno(rs[MANY - 1])), 0);
  ASSERT_EQ(mproc_connection_wait(many, MANY, 5.0), 1);
  ASSERT_EQ(many[MANY - 1].ready, 1);
  send_str(ws[0], "c");
  ASSERT_EQ(mproc_connection_wait(many, MANY, 5.0), 2);
  ASSERT_EQ(many[0].ready, 1);
  expect_str(rs[MANY - 1], "b");
  expect_str(rs[0], "c");
  ASSERT_EQ(mproc_connection_wait(many, MANY, 0), 0);
  for (int i = 0; i < MANY; i++) {
    ASSERT_OK(mproc_connection_close(rs[i]));
    ASSERT_OK(mproc_connection_close(ws[i]));
  }

  /* A whole frame and part of the next in one write: after the first,
   * the partial frame is buffered and the fd empty: not ready, until
   * the rest comes. */
  int fds[2];
  for (int variant = 0; variant < 3; variant++) {
    ASSERT_OK(mproc__socketpair(fds));
    ASSERT_OK(mproc_connection_from_fd(&r, fds[0], 1, 1));
    if (variant == 0) {
      raw_write(fds[1], "\0\0\0\x01" "A" "\0\0\0\x05" "ab", 11);
    } else if (variant == 1) {
      raw_write(fds[1], "\0\0\0\x01" "A" "\0\0", 7);
    } else {
      raw_write(fds[1], "\0\0\0\x01" "A" "\xff\xff\xff\xff\0\0\0", 12);
    }
    expect_str(r, "A");
    ASSERT_EQ(fd_readable(fds[0]), 0);
    ASSERT_EQ(mproc_connection_poll(r, 0), 0);
    t0 = test_now();
    ASSERT_EQ(mproc_connection_poll(r, 0.05), 0);
    ASSERT_DBL_GE(test_now() - t0, 0.05);
    mproc_wait_item it = {.conn = r};
    ASSERT_EQ(mproc_connection_wait(&it, 1, 0), 0);
    if (variant == 0) {
      raw_write(fds[1], "cd", 2); /* still one byte short */
      ASSERT_EQ(mproc_connection_poll(r, 0), 1); /* the fd has bytes */
      raw_write(fds[1], "e", 1);
    } else if (variant == 1) {
      raw_write(fds[1], "\0\x05" "abcde", 7);
    } else {
      raw_write(fds[1], "\0\0\0\0\x05" "abcde", 10);
    }
    ASSERT_EQ(mproc_connection_poll(r, 0), 1);
    expect_str(r, "abcde");
    ASSERT_EQ(mproc_connection_poll(r, 0), 0);
    ASSERT_OK(mproc_connection_close(r));
    mproc__close(fds[1]);
  }

  /* A malformed header waiting in the buffer is ready (the receive
   * returns MPROC_EPROTO at once). */
  ASSERT_OK(mproc__socketpair(fds));
  ASSERT_OK(mproc_connection_from_fd(&r, fds[0], 1, 1));
  raw_write(fds[1], "\0\0\0\x01" "A" "\xff\xff\xff\xfe", 9);
  expect_str(r, "A");
  ASSERT_EQ(fd_readable(fds[0]), 0);
  ASSERT_EQ(mproc_connection_poll(r, 5.0), 1);
  ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
             MPROC_EPROTO);
  ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
             MPROC_EBROKEN);
  ASSERT_EQ(mproc_connection_poll(r, 0), 1);
  ASSERT_OK(mproc_connection_close(r));
  mproc__close(fds[1]);

  ASSERT_OK(mproc_connection_close(other));
  ASSERT_OK(mproc_connection_close(ow));
  return 0;
}

/* MPROC_ENOBUFS with the message already in the buffer: kept, ready, and
 * taken whole by the next receive; the messages after it too. */
TEST_IMPL(connection_buffered_enobufs) {
  for (int duplex = 0; duplex <= 1; duplex++) {
    mproc_connection *r = NULL, *w = NULL;
    ASSERT_OK(mproc_pipe(&r, &w, duplex));
    const char *longer = "a message longer than sixteen bytes";
    send_str(w, "short");
    send_str(w, longer);
    send_str(w, "");
    send_str(w, "x");
    char buf[64];
    size_t n = 0;
    ASSERT_OK(mproc_connection_recv_bytes_into(r, buf, 16, 0, &n));
    ASSERT_UEQ(n, 5);
    ASSERT_EQ(fd_readable(mproc_connection_fileno(r)), 0);
    ASSERT_ERR(mproc_connection_recv_bytes_into(r, buf, 16, 0, &n),
               MPROC_ENOBUFS);
    ASSERT_UEQ(n, strlen(longer));
    ASSERT_EQ(mproc_connection_poll(r, 0), 1);
    mproc_wait_item it = {.conn = r};
    ASSERT_EQ(mproc_connection_wait(&it, 1, 5.0), 1);
    ASSERT_ERR(mproc_connection_recv_bytes_into(r, buf, sizeof buf, 40, &n),
               MPROC_ENOBUFS);
    ASSERT_OK(mproc_connection_recv_bytes_into(r, buf, sizeof buf, 0, &n));
    ASSERT_UEQ(n, strlen(longer));
    ASSERT_EQ(memcmp(buf, longer, n), 0);
    /* An empty message fits a zero-byte room, even with no buffer. */
    ASSERT_OK(mproc_connection_recv_bytes_into(r, NULL, 0, 0, &n));
    ASSERT_UEQ(n, 0);
    ASSERT_ERR(mproc_connection_recv_bytes_into(r, NULL, 0, 0, &n),
               MPROC_ENOBUFS);
    ASSERT_UEQ(n, 1);
    expect_str(r, "x");
    ASSERT_EQ(mproc_connection_poll(r, 0), 0);
    ASSERT_OK(mproc_connection_close(r));
    ASSERT_OK(mproc_connection_close(w));
  }
  return 0;
}

/* End of file inside a frame whose start is buffered behind a whole
 * message: MPROC_ECONNRESET, then MPROC_EBROKEN; in the header, in the
 * escape, in a gathered payload and in a payload read straight into the
 * destination. */
TEST_IMPL(connection_buffered_eof_inside_frame) {
  size_t big = 100000;
  char *tail = calloc(1, big);
  ASSERT_NOT_NULL(tail);
  for (int variant = 0; variant < 5; variant++) {
    int fds[2];
    ASSERT_OK(mproc__socketpair(fds));
    mproc_connection *r = NULL;
    ASSERT_OK(mproc_connection_from_fd(&r, fds[0], 1, 0));
    raw_write(fds[1], "\0\0\0\x02" "ok", 6);
    if (variant == 0) {
      raw_write(fds[1], "\0\0", 2);
    } else if (variant == 1) {
      raw_write(fds[1], "\xff\xff\xff\xff\0\0", 6);
    } else if (variant == 2) {
      raw_write(fds[1], "\0\0\0\x64" "0123456789", 14);
    } else if (variant == 3) {
      raw_write(fds[1], "\0\0\0\x64", 4); /* no payload byte at all */
    } else {
      raw_write(fds[1], "\0\x01\x86\xa0", 4); /* 100000 bytes... */
      raw_write(fds[1], tail, 20000);         /* ...of which 20000 */
    }
    mproc__close(fds[1]);
    expect_str(r, "ok");
    void *m = (void *)1;
    size_t n = 1;
    ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
               MPROC_ECONNRESET);
    ASSERT_NULL(m);
    ASSERT_UEQ(n, 0);
    ASSERT_ERR(mproc_connection_recv_bytes(r, &m, &n, MPROC_NOLIMIT),
               MPROC_EBROKEN);
    ASSERT_EQ(mproc_connection_poll(r, 0), 1);
    ASSERT_OK(mproc_connection_close(r));
  }
  free(tail);
  return 0;
}

/* The limits with buffered bytes: maxlength exactly met and exceeded by
 * messages waiting in the buffer; internal receives with a deadline that
 * has passed are served from the buffer; the pre-authentication cap. */
TEST_IMPL(connection_buffered_limits) {
  mproc_connection *a = NULL, *b = NULL;
  ASSERT_OK(mproc_pipe(&a, &b, 1));
  send_str(b, "0123456789");
  send_str(b, "0123456789");
  send_str(b, "0123456789");
  void *m = NULL;
  size_t n = 0;
  ASSERT_OK(mproc_connection_recv_bytes(a, &m, &n, 10));
  free(m);
  ASSERT_EQ(fd_readable(mproc_connection_fileno(a)), 0);
  ASSERT_OK(mproc_connection_recv_bytes(a, &m, &n, 10));
  free(m);
  ASSERT_ERR(mproc_connection_recv_bytes(a, &m, &n, 9), MPROC_EMSGSIZE);
  ASSERT_ERR(mproc_connection_recv_bytes(a, &m, &n, 100), MPROC_EBROKEN);
  ASSERT_EQ(mproc_connection_poll(a, 0), 1);
  ASSERT_OK(mproc_connection_close(a));
  ASSERT_OK(mproc_connection_close(b));

  ASSERT_OK(mproc_pipe(&a, &b, 1));
  mproc__deadline d;
  ASSERT_OK(mproc__deadline_init(&d, 1.0));
  ASSERT_OK(mproc__conn_send_frame(b, "#CHALLENGE#", 11, &d));
  ASSERT_OK(mproc__conn_send_frame(b, "second", 6, &d));
  char big[300];
  memset(big, 'x', sizeof big);
  ASSERT_OK(mproc__conn_send_frame(b, big, sizeof big, &d));
  ASSERT_OK(mproc__conn_recv_frame(a, &m, &n, MPROC__AUTH_MAX_MESSAGE, &d));
  ASSERT_UEQ(n, 11);
  free(m);
  /* A deadline already passed: the buffered frame still comes. */
  ASSERT_OK(mproc__deadline_init(&d, 0));
  test_sleep(0.01);
  ASSERT_OK(mproc__conn_recv_frame(a, &m, &n, MPROC__AUTH_MAX_MESSAGE, &d));
  ASSERT_UEQ(n, 6);
  ASSERT_EQ(memcmp(m, "second", 6), 0);
  free(m);
  /* Over the cap, though all its bytes are buffered. */
  ASSERT_ERR(mproc__conn_recv_frame(a, &m, &n, MPROC__AUTH_MAX_MESSAGE, &d),
             MPROC_EMSGSIZE);
  ASSERT_OK(mproc_connection_close(a));
  ASSERT_OK(mproc_connection_close(b));

  /* A gathered payload whose rest does not come in time: the frame was
   * started, so the stream is broken (as without the buffer); one whose
   * payload had not begun stays pending. */
  int fds[2];
  ASSERT_OK(mproc__socketpair(fds));
  ASSERT_OK(mproc__conn_wrap(&a, fds[0], 1, 1));
  raw_write(fds[1], "\0\0\0\x01" "A" "\0\0\0\x05" "ab", 11);
  ASSERT_OK(mproc__deadline_init(&d, 0.05));
  ASSERT_OK(mproc__conn_recv_frame(a, &m, &n, 100, &d));
  free(m);
  ASSERT_ERR(mproc__conn_recv_frame(a, &m, &n, 100, &d), MPROC_ETIMEDOUT);
  ASSERT_ERR(mproc__conn_recv_frame(a, &m, &n, 100, NULL), MPROC_EBROKEN);
  ASSERT_OK(mproc_connection_close(a));
  mproc__close(fds[1]);
  ASSERT_OK(mproc__socketpair(fds));
  ASSERT_OK(mproc__conn_wrap(&a, fds[0], 1, 1));
  raw_write(fds[1], "\0\0\0\x01" "A" "\0\0\0\x05", 9);
  ASSERT_OK(mproc__deadline_init(&d, 0.05));
  ASSERT_OK(mproc__conn_recv_frame(a, &m, &n, 100, &d));
  free(m);
  ASSERT_ERR(mproc__conn_recv_frame(a, &m, &n, 100, &d), MPROC_ETIMEDOUT);
  ASSERT_EQ(mproc_connection_poll(a, 0), 1); /* pending */
  raw_write(fds[1], "abcde", 5);
  expect_str(a, "abcde");
  ASSERT_OK(mproc_connection_close(a));
  mproc__close(fds[1]);
  return 0;
}

/* A header over the connection's receive limit, already read ahead into
 * the buffer with nothing more in the fd, is a receive that fails at
 * once: poll and wait say ready, and the receive returns MPROC_EMSGSIZE
 * (a server that polls before it receives must see the refusal). */
TEST_IMPL(connection_poll_header_over_limit) {
  for (int use_wait = 0; use_wait < 2; use_wait++) {
    int fds[2];
    mproc_connection *a = NULL;
    ASSERT_OK(mproc__socketpair(fds));
    ASSERT_OK(mproc__conn_wrap(&a, fds[0], 1, 1));
    size_t lim = 99;
    ASSERT_OK(mproc_connection_get_maxlength(a, &lim));
    ASSERT_UEQ(lim, MPROC_NOLIMIT);
    ASSERT_OK(mproc_connection_set_maxlength(a, 100));
    ASSERT_OK(mproc_connection_get_maxlength(a, &lim));
    ASSERT_UEQ(lim, 100);
    /* "hi", then the header of a 1000-byte message whose payload never
     * comes, in one write: the first receive reads both. */
    raw_write(fds[1], "\0\0\0\x02" "hi" "\0\0\x03\xe8", 10);
    expect_str(a, "hi");
    ASSERT_EQ(fd_readable(fds[0]), 0);
    if (use_wait) {
      mproc_wait_item it = {.conn = a};
      ASSERT_EQ(mproc_connection_wait(&it, 1, 0), 1);
      ASSERT_EQ(it.ready, 1);
      ASSERT_EQ(mproc_connection_wait(&it, 1, MPROC_FOREVER), 1);
    } else {
      ASSERT_EQ(mproc_connection_poll(a, 0), 1);
      ASSERT_EQ(mproc_connection_poll(a, MPROC_FOREVER), 1);
    }
    void *m = NULL;
    size_t n = 0;
    ASSERT_ERR(mproc_connection_recv_bytes(a, &m, &n, MPROC_NOLIMIT),
               MPROC_EMSGSIZE);
    ASSERT_EQ(mproc_connection_poll(a, 0), 1);
    ASSERT_ERR(mproc_connection_recv_bytes(a, &m, &n, MPROC_NOLIMIT),
               MPROC_EBROKEN);
    ASSERT_OK(mproc_connection_close(a));
    mproc__close(fds[1]);
  }
  /* recv_bytes_into applies the connection's limit too, though the room
   * would take the message. */
  mproc_connection *a = NULL, *b = NULL;
  ASSERT_OK(mproc_pipe(&a, &b, 1));
  ASSERT_OK(mproc_connection_set_maxlength(a, 3));
  send_str(b, "four");
  char buf[16];
  size_t n = 0;
  ASSERT_ERR(mproc_connection_recv_bytes_into(a, buf, sizeof buf, 0, &n),
             MPROC_EMSGSIZE);
  ASSERT_ERR(mproc_connection_set_maxlength(NULL, 3), MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_get_maxlength(a, NULL), MPROC_EINVAL);
  ASSERT_OK(mproc_connection_close(a));
  ASSERT_OK(mproc_connection_close(b));
  return 0;
}

/* recv_bytes_timeout: nothing in time is MPROC_ETIMEDOUT and changes
 * nothing; a message that is there comes; 0 polls; a stall inside a
 * message breaks the stream. */
TEST_IMPL(connection_recv_timeout) {
  mproc_connection *a = NULL, *b = NULL;
  ASSERT_OK(mproc_pipe(&a, &b, 1));
  void *m = NULL;
  size_t n = 7;
  double t0 = test_now();
  ASSERT_ERR(mproc_connection_recv_bytes_timeout(a, &m, &n, 100, 0.1),
             MPROC_ETIMEDOUT);
  /* It waited (no upper bound: a busy machine may wake it late). */
  ASSERT_DBL_GE(test_now() - t0, 0.1);
  ASSERT_NULL(m);
  ASSERT_UEQ(n, 0);
  ASSERT_ERR(mproc_connection_recv_bytes_timeout(a, &m, &n, 100, 0),
             MPROC_ETIMEDOUT);
  ASSERT_ERR(mproc_connection_recv_bytes_timeout(a, &m, &n, 100, NAN),
             MPROC_EINVAL);
  send_str(b, "hello");
  ASSERT_OK(mproc_connection_recv_bytes_timeout(a, &m, &n, 100, 0));
  ASSERT_UEQ(n, 5);
  ASSERT_EQ(memcmp(m, "hello", 5), 0);
  free(m);
  send_str(b, "again");
  ASSERT_OK(mproc_connection_recv_bytes_timeout(a, &m, &n, 100,
                                                MPROC_FOREVER));
  free(m);
  ASSERT_OK(mproc_connection_close(a));
  ASSERT_OK(mproc_connection_close(b));

  /* A peer that stops inside a message. */
  int fds[2];
  ASSERT_OK(mproc__socketpair(fds));
  ASSERT_OK(mproc__conn_wrap(&a, fds[0], 1, 1));
  raw_write(fds[1], "\0\0\0\x05" "ab", 6);
  ASSERT_ERR(mproc_connection_recv_bytes_timeout(a, &m, &n, 100, 0.05),
             MPROC_ETIMEDOUT);
  ASSERT_ERR(mproc_connection_recv_bytes(a, &m, &n, 100), MPROC_EBROKEN);
  ASSERT_OK(mproc_connection_close(a));
  mproc__close(fds[1]);
  return 0;
}

/* A child that inherits a connection with buffered messages gets its own
 * copy of them (the parent keeps its own). */
static int buffered_fork_child(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  mproc_connection *conns[2];
  memcpy(conns, arg, sizeof conns);
  mproc_connection_close(conns[1]);
  ASSERT_EQ(mproc_connection_poll(conns[0], 0), 1);
  expect_str(conns[0], "two");
  expect_str(conns[0], "three");
  mproc_connection_close(conns[0]);
  return 0;
}

TEST_IMPL(connection_buffered_fork) {
  mproc_connection *r = NULL, *w = NULL;
  ASSERT_OK(mproc_pipe(&r, &w, 0));
  send_str(w, "one");
  send_str(w, "two");
  send_str(w, "three");
  expect_str(r, "one");
  mproc_connection *conns[2] = {r, w};
  mproc_process *p = test_start_proc(buffered_fork_child, conns,
                                     sizeof conns);
  ASSERT_EQ(test_finish_proc(p), 0);
  expect_str(r, "two");
  expect_str(r, "three");
  ASSERT_EQ(mproc_connection_poll(r, 0), 0);
  ASSERT_OK(mproc_connection_close(r));
  ASSERT_OK(mproc_connection_close(w));
  return 0;
}

/* ---- read-ahead across the handshake ---- */

static const char hs_key[] = "read-ahead key";

/*
 * A client written by hand on mproc's internal calls: it authenticates
 * as Python's Client does, then sends its final #WELCOME# and three
 * messages in one write, so the listener's last handshake read takes
 * them all into its buffer.  It then waits for "bye".
 */
static void *ahead_client(void *p) {
  const char *path = p;
  mproc__sockaddr sa;
  ASSERT_OK(mproc__sockaddr_unix(&sa, path));
  mproc__deadline d;
  ASSERT_OK(mproc__deadline_init(&d, 10.0));
  int fd = mproc__net_connect(&sa, &d);
  ASSERT_GE(fd, 0);
  mproc_connection *c = NULL;
  ASSERT_OK(mproc__conn_wrap(&c, fd, 1, 1));
  size_t keylen = strlen(hs_key);
  /* Answer the listener's challenge. */
  void *m = NULL;
  size_t n = 0;
  ASSERT_OK(mproc__conn_recv_frame(c, &m, &n, MPROC__AUTH_MAX_MESSAGE, &d));
  unsigned char ans[MPROC__AUTH_ANSWER_MAX];
  size_t alen = 0;
  ASSERT_OK(mproc__auth_answer(hs_key, keylen, m, n, 1, ans, &alen));
  free(m);
  ASSERT_OK(mproc__conn_send_frame(c, ans, alen, &d));
  ASSERT_OK(mproc__conn_recv_frame(c, &m, &n, MPROC__AUTH_MAX_MESSAGE, &d));
  ASSERT_OK(mproc__auth_check_reply(m, n));
  free(m);
  /* Challenge it and check its answer. */
  unsigned char rnd[40], chal[MPROC__AUTH_CHALLENGE_MAX];
  memset(rnd, 0x5a, sizeof rnd);
  size_t clen = mproc__auth_make_challenge(chal, rnd);
  ASSERT_OK(mproc__conn_send_frame(c, chal, clen, &d));
  ASSERT_OK(mproc__conn_recv_frame(c, &m, &n, MPROC__AUTH_MAX_MESSAGE, &d));
  ASSERT_OK(mproc__auth_verify(hs_key, keylen, chal + 11, clen - 11, m, n,
                               1));
  free(m);
  /* #WELCOME# and the first messages, in one write. */
  unsigned char out[64];
  size_t o = 0;
  static const char *const msgs[] = {MPROC__AUTH_WELCOME, "first", "",
                                     "third"};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(msgs); i++) {
    size_t len = strlen(msgs[i]);
    o += mproc__frame_make_header(out + o, len);
    memcpy(out + o, msgs[i], len);
    o += len;
  }
  raw_write(mproc_connection_fileno(c), out, o);
  expect_str(c, "bye");
  ASSERT_OK(mproc_connection_close(c));
  return NULL;
}

/* Messages that came in the same write as the handshake's last frame are
 * the caller's: the listener's handshake reads no further than its own
 * frames, so they wait in the socket; poll reports them, and they arrive
 * in order. */
TEST_IMPL(connection_buffered_after_handshake) {
  mproc_listener_opts o;
  memset(&o, 0, sizeof o);
  o.authkey = hs_key;
  o.authkey_len = strlen(hs_key);
  mproc_listener *l = NULL;
  ASSERT_OK(mproc_listener_new(&l, &o));
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  pthread_t th;
  ASSERT_OK(pthread_create(&th, NULL, ahead_client, addr));
  mproc_connection *c = NULL;
  ASSERT_OK(mproc_listener_accept(l, &c, 10.0));
  ASSERT_EQ(mproc_connection_poll(c, 0), 1);
  expect_str(c, "first");
  expect_str(c, "");
  expect_str(c, "third");
  ASSERT_EQ(mproc_connection_poll(c, 0), 0);
  send_str(c, "bye");
  ASSERT_OK(pthread_join(th, NULL));
  ASSERT_OK(mproc_connection_close(c));
  ASSERT_OK(mproc_listener_close(l));
  return 0;
}
