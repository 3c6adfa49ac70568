/*
 * tests/unit/test-connection.c - the pure parts of connection.c: frame
 * headers byte for byte as Python's struct.pack("!i") / "!Q" writes them,
 * malformed headers, argument checks that touch no peer, and
 * mproc__stream_read_some, the read that fills the receive buffer.
 */
#include "connection-internal.h"
#include "task.h"

#include <errno.h>
#include <math.h>
#include <unistd.h>

/* Make a header and compare it with the expected bytes; parse it back. */
static void check_header(uint64_t len, const unsigned char *want,
                         size_t want_n) {
  unsigned char out[12];
  memset(out, 0xAA, sizeof out);
  size_t n = mproc__frame_make_header(out, len);
  ASSERT_UEQ(n, want_n);
  ASSERT_EQ(memcmp(out, want, want_n), 0);
  uint64_t back = 0;
  ASSERT_EQ(mproc__frame_parse_header(out, n, &back), (int)n);
  ASSERT_UEQ(back, len);
  /* Any prefix of the header is "need more bytes". */
  for (size_t k = 0; k < n; k++) {
    ASSERT_EQ(mproc__frame_parse_header(out, k, &back), 0);
  }
}

TEST_IMPL(connection_frame_header_vectors) {
  /* struct.pack("!i", n) for n <= 0x7fffffff. */
  check_header(0, (const unsigned char[]){0, 0, 0, 0}, 4);
  check_header(5, (const unsigned char[]){0, 0, 0, 5}, 4);
  check_header(256, (const unsigned char[]){0, 0, 1, 0}, 4);
  check_header(16384, (const unsigned char[]){0, 0, 0x40, 0}, 4);
  check_header(0x7fffffff, (const unsigned char[]){0x7f, 0xff, 0xff, 0xff},
               4);
  /* Above: struct.pack("!i", -1) + struct.pack("!Q", n). */
  check_header(0x80000000u,
               (const unsigned char[]){0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0,
                                       0x80, 0, 0, 0},
               12);
  check_header(UINT64_C(1) << 62,
               (const unsigned char[]){0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0,
                                       0, 0, 0, 0},
               12);
  check_header(UINT64_MAX,
               (const unsigned char[]){0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
               12);
  check_header(UINT64_C(0x0102030405060708),
               (const unsigned char[]){0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5,
                                       6, 7, 8},
               12);
  return 0;
}

TEST_IMPL(connection_frame_header_parse_edge_cases) {
  uint64_t len = 12345;
  /* An escaped header carrying a small length is still a header: Python
   * would read it the same way. */
  const unsigned char small_escaped[] = {0xff, 0xff, 0xff, 0xff, 0, 0,
                                         0,    0,    0,    0,    0, 5};
  ASSERT_EQ(mproc__frame_parse_header(small_escaped, 12, &len), 12);
  ASSERT_UEQ(len, 5);
  /* Extra bytes after the header are not the header's business. */
  const unsigned char with_payload[] = {0, 0, 0, 2, 'h', 'i'};
  ASSERT_EQ(mproc__frame_parse_header(with_payload, 6, &len), 4);
  ASSERT_UEQ(len, 2);
  /* Negative lengths other than -1 are malformed, even with few bytes. */
  const unsigned char minus2[] = {0xff, 0xff, 0xff, 0xfe};
  const unsigned char int_min[] = {0x80, 0, 0, 0};
  const unsigned char minus256[] = {0xff, 0xff, 0xff, 0x00};
  len = 777;
  ASSERT_ERR(mproc__frame_parse_header(minus2, 4, &len), MPROC_EPROTO);
  ASSERT_ERR(mproc__frame_parse_header(int_min, 4, &len), MPROC_EPROTO);
  ASSERT_ERR(mproc__frame_parse_header(minus256, 4, &len), MPROC_EPROTO);
  ASSERT_UEQ(len, 777); /* untouched on error */
  /* -1 with the 8-byte length still missing. */
  const unsigned char escape[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0};
  ASSERT_EQ(mproc__frame_parse_header(escape, 4, &len), 0);
  ASSERT_EQ(mproc__frame_parse_header(escape, 7, &len), 0);
  /* Nothing at all. */
  ASSERT_EQ(mproc__frame_parse_header(NULL, 0, &len), 0);
  /* The 4/12 boundary both ways. */
  unsigned char out[12];
  ASSERT_UEQ(mproc__frame_make_header(out, 0x7fffffff), 4);
  ASSERT_UEQ(mproc__frame_make_header(out, 0x80000000u), 12);
  return 0;
}

/* Every parse of random bytes either asks for more, fails with
 * MPROC_EPROTO, or returns 4/12 with a length that round-trips. */
TEST_IMPL(connection_frame_header_random_bytes) {
  uint64_t seed = 0x9e3779b97f4a7c15u;
  for (int i = 0; i < 20000; i++) {
    unsigned char in[12];
    uint64_t a = test_rand(&seed), b = test_rand(&seed);
    memcpy(in, &a, 8);
    memcpy(in + 8, &b, 4);
    if (i % 3 == 0) {
      in[0] = in[1] = in[2] = in[3] = 0xff; /* exercise the escape */
    }
    size_t n = (size_t)(test_rand(&seed) % 13);
    uint64_t len = 0;
    int r = mproc__frame_parse_header(in, n, &len);
    if (r == 0) {
      ASSERT(n < 12);
      continue;
    }
    if (r == MPROC_EPROTO) {
      ASSERT((in[0] & 0x80) && !(in[0] == 0xff && in[1] == 0xff &&
                                 in[2] == 0xff && in[3] == 0xff));
      continue;
    }
    ASSERT(r == 4 || r == 12);
    ASSERT_LE(r, (int)n);
    if (r == 4) {
      unsigned char out[12];
      ASSERT_UEQ(mproc__frame_make_header(out, len), 4);
      ASSERT_EQ(memcmp(out, in, 4), 0);
    }
  }
  return 0;
}

TEST_IMPL(connection_bad_input) {
  mproc_connection *a = NULL, *b = NULL;
  ASSERT_ERR(mproc_pipe(NULL, &b, 1), MPROC_EINVAL);
  ASSERT_ERR(mproc_pipe(&a, NULL, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_from_fd(NULL, 5, 1, 1), MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_from_fd(&a, -1, 1, 1), MPROC_EINVAL);
  ASSERT_NULL(a);

  /* Neither direction: refused, and the fd stays the caller's. */
  int fds[2];
  ASSERT_OK(mproc__pipe(fds, 0));
  ASSERT_ERR(mproc_connection_from_fd(&a, fds[0], 0, 0), MPROC_EINVAL);
  ASSERT_NULL(a);
  ASSERT_OK(mproc_connection_from_fd(&a, fds[0], 1, 0));
  ASSERT_OK(mproc_connection_from_fd(&b, fds[1], 0, 1));
  ASSERT_EQ(mproc_connection_fileno(a), fds[0]);
  ASSERT_EQ(mproc_connection_readable(a), 1);
  ASSERT_EQ(mproc_connection_writable(a), 0);
  ASSERT_EQ(mproc_connection_readable(b), 0);
  ASSERT_EQ(mproc_connection_writable(b), 1);

  /* An fd that is not open. */
  mproc_connection *c = NULL;
  ASSERT_ERR(mproc_connection_from_fd(&c, 100000, 1, 1), MPROC_EBADF);
  ASSERT_NULL(c);

  /* NULL objects and out-pointers. */
  void *out = (void *)1;
  size_t len = 99;
  char buf[8];
  ASSERT_ERR(mproc_connection_fileno(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_readable(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_writable(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_send(NULL, "x", 1), MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_send_bytes(NULL, "x", 1, 0, 1), MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_recv_bytes(NULL, &out, &len, MPROC_NOLIMIT),
             MPROC_EINVAL);
  ASSERT_NULL(out);
  ASSERT_UEQ(len, 0);
  ASSERT_ERR(mproc_connection_recv_bytes(a, NULL, &len, MPROC_NOLIMIT),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_recv_bytes(a, &out, NULL, MPROC_NOLIMIT),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_recv_bytes_into(NULL, buf, 8, 0, &len),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_recv_bytes_into(a, buf, 8, 0, NULL),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_recv_bytes_into(a, NULL, 8, 0, &len),
             MPROC_EINVAL);
  /* Python's "offset too large". */
  ASSERT_ERR(mproc_connection_recv_bytes_into(a, buf, 8, 9, &len),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_poll(NULL, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_connection_poll(a, NAN), MPROC_EINVAL);
  /* A message with bytes needs a buffer. */
  ASSERT_ERR(mproc_connection_send_bytes(b, NULL, 4, 0, MPROC_REST),
             MPROC_EINVAL);
  ASSERT_EQ(mproc_connection_poll(a, 0), 0); /* nothing went out */

  /* wait's arguments. */
  ASSERT_ERR(mproc_connection_wait(NULL, 1, 0), MPROC_EINVAL);
  ASSERT_EQ(mproc_connection_wait(NULL, 0, 0), 0);
  mproc_wait_item it = {.conn = NULL, .fd = -1};
  ASSERT_ERR(mproc_connection_wait(&it, 1, 0), MPROC_EINVAL);
  it.conn = b; /* write-only */
  ASSERT_ERR(mproc_connection_wait(&it, 1, 0), MPROC_EINVAL);
  it.conn = a;
  ASSERT_ERR(mproc_connection_wait(&it, 1, NAN), MPROC_EINVAL);

  /* Internal calls. */
  ASSERT_ERR(mproc__conn_send_frame(NULL, "x", 1, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc__conn_send_frame(b, NULL, 1, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc__conn_recv_frame(NULL, &out, &len, 10, NULL),
             MPROC_EINVAL);
  ASSERT_ERR(mproc__conn_wrap(NULL, -1, 1, 1), MPROC_EINVAL);
  ASSERT_ERR(mproc__conn_wrap(&c, -1, 1, 1), MPROC_EINVAL);
  ASSERT_NULL(c);

  ASSERT_OK(mproc_connection_close(a));
  ASSERT_OK(mproc_connection_close(b));
  ASSERT_OK(mproc_connection_close(NULL));
  return 0;
}

/* mproc__conn_wrap owns the fd from the call on: closed on failure. */
TEST_IMPL(connection_wrap_owns_fd) {
  int before = test_fd_count();
  int fds[2];
  ASSERT_OK(mproc__socketpair(fds));
  ASSERT_GE(fds[0], 3);
  ASSERT_GE(fds[1], 3);
  ASSERT_EQ(mproc__fd_is_socket(fds[0]), 1);
  mproc_connection *c = NULL;
  ASSERT_ERR(mproc__conn_wrap(&c, fds[0], 0, 0), MPROC_EINVAL);
  ASSERT_NULL(c);
  ASSERT_OK(mproc__conn_wrap(&c, fds[1], 1, 1));
  ASSERT_OK(mproc_connection_close(c));
  ASSERT_EQ(test_fd_count(), before);

  int p[2];
  ASSERT_OK(mproc__pipe(p, 0));
  ASSERT_EQ(mproc__fd_is_socket(p[0]), 0);
  mproc__close(p[0]);
  mproc__close(p[1]);
  ASSERT_ERR(mproc__fd_is_socket(p[0]), MPROC_EBADF);
  return 0;
}

/* The read the connection's buffer is filled with: what is there, in one
 * call, up to the room; a timeout when nothing comes; 1 at end of file. */
TEST_IMPL(connection_stream_read_some) {
  for (int sock = 0; sock <= 1; sock++) {
    int fds[2];
    ASSERT_OK(sock ? mproc__socketpair(fds) : mproc__pipe(fds, 0));
    char buf[100];
    size_t got = 99;
    ASSERT_ERR(mproc__stream_read_some(fds[0], sock, buf, 0, NULL, &got),
               -EINVAL);
    ASSERT_UEQ(got, 0);
    ASSERT_EQ(write(fds[1], "hello", 5), 5);
    ASSERT_EQ(write(fds[1], "world", 5), 5);
    ASSERT_OK(mproc__stream_read_some(fds[0], sock, buf, 3, NULL, &got));
    ASSERT_UEQ(got, 3);
    ASSERT_OK(mproc__stream_read_some(fds[0], sock, buf, sizeof buf, NULL,
                                      &got));
    ASSERT_UEQ(got, 7);
    ASSERT_EQ(memcmp(buf, "loworld", 7), 0);
    mproc__deadline d;
    ASSERT_OK(mproc__deadline_init(&d, 0.02));
    got = 99;
    ASSERT_ERR(mproc__stream_read_some(fds[0], sock, buf, sizeof buf, &d,
                                       &got),
               -ETIMEDOUT);
    ASSERT_UEQ(got, 0);
    ASSERT_EQ(write(fds[1], "x", 1), 1);
    ASSERT_OK(mproc__deadline_init(&d, 1.0));
    ASSERT_OK(mproc__stream_read_some(fds[0], sock, buf, sizeof buf, &d,
                                      &got));
    ASSERT_UEQ(got, 1);
    mproc__close(fds[1]);
    ASSERT_EQ(mproc__stream_read_some(fds[0], sock, buf, sizeof buf, &d,
                                      &got),
              1);
    ASSERT_UEQ(got, 0);
    ASSERT_EQ(mproc__stream_read_some(fds[0], sock, buf, sizeof buf, NULL,
                                      &got),
              1);
    mproc__close(fds[0]);
  }
  return 0;
}
