/*
 * connection.c - Python's Pipe and Connection, connection.wait, and the
 * framed I/O with deadlines that listener.c and auth.c build on.
 *
 * DESIGN
 * A connection is a small malloc'd object around one fd: a stream socket
 * (Pipe(True), Listener/Client) or one end of a pipe (Pipe(False)).  It
 * is process-local; a forked child inherits it with the fd.  All OS work
 * goes through src/platform/sock.h: complete writes, exact reads, reads
 * of what is there, poll, with EINTR retried against a deadline fixed
 * once, and SIGPIPE never delivered.
 *
 * The wire format is Python's (multiprocessing/connection.py), byte for
 * byte: a 4-byte big-endian signed length, or -1 and an 8-byte big-endian
 * length for payloads over 0x7fffffff, then the payload.  The header and
 * payload go out in one writev, so a frame of up to 16 KiB is one write
 * as Python's is (and up to PIPE_BUF bytes, atomic on a pipe).
 *
 * Read buffer.  Unlike Python, which reads the header and then the
 * payload, each a read of its own, a connection reads ahead: the first
 * receive allocates a RBUF_SIZE-byte buffer (freed at close, or when
 * receiving breaks), and a receive that needs bytes takes, in one read,
 * whatever the fd has, up to the buffer's room.  So a small message costs
 * one system call, and messages that arrived together are served from
 * the buffer with none.  Frames are parsed from rbuf[rpos .. rend); the
 * unread bytes move to the buffer's start before a read.  A payload of up
 * to RBUF_GATHER_MAX bytes is gathered in the buffer and copied out; a
 * longer one gets its buffered part copied and the rest read straight
 * into the destination, so big payloads are never copied twice and never
 * read ahead past.  Consequences: poll(2) on the fd no longer tells
 * everything (a whole message may wait in the buffer with the fd empty),
 * which is why poll and wait look at the buffer first (see below); and a
 * forked child inherits the buffered bytes in its copy of the object, so,
 * as in Python, one end must be read by one process only.  Bytes a
 * client's handshake read ahead stay in the object mproc_client_connect
 * returns (the server's handshake, in listener.c, reads no further than
 * its own frames).
 *
 * Receive state.  Besides the fd, its directions and the buffer, a
 * connection keeps:
 *   - pending: a frame header has been taken from the buffer and its
 *     payload (pending_len bytes, the first of which may be buffered) has
 *     not.  This is how recv_bytes_into's MPROC_ENOBUFS keeps the message
 *     for the next receive, how a failed allocation (MPROC_ENOMEM) keeps
 *     it for a retry, and how a deadline that passes between header and
 *     payload leaves the stream usable.
 *   - rbroken: the stream is out of step with the frames (a message over
 *     maxlength whose bytes were left unread, a malformed header, end of
 *     file or a timeout inside a frame): every later receive is
 *     MPROC_EBROKEN, as there is no way to find the next frame.  The
 *     buffer is freed then.  Whether a timeout or error inside a frame
 *     breaks does not depend on the buffering: it breaks when some of the
 *     frame's bytes (a part of the header, or any payload byte) had come,
 *     as when reads were unbuffered.
 *   - wbroken: a send stopped inside a frame (deadline, error): the peer
 *     would read our next frame as the rest of this one, so later sends
 *     are MPROC_EBROKEN.
 * Receive limit.  Each connection has a maxlength (MPROC_NOLIMIT for
 * pipes and wrapped fds; Listener/Client set their opts' limit, by
 * default MPROC_NET_MAXLENGTH), which every receive applies together with
 * its own argument (the smaller wins).  It lives in the object rather
 * than only in recv_bytes' argument because poll and wait must know it:
 * a header over the limit is a receive that fails at once, so a
 * connection holding one is ready.
 * Ready.  poll and wait report a connection ready without asking the
 * kernel when a receive returns without reading: a whole frame, a
 * malformed header or a header over the connection's limit is in the
 * buffer, a frame is pending, or the stream is broken (a receive returns
 * MPROC_EBROKEN at once, and a loop that waits before receiving must see
 * that rather than sleep forever).  Ready means "a receive would not
 * block", with a message or with an error.
 * Otherwise the fd decides, as before: readable means bytes (possibly the
 * rest of a buffered partial frame) or end of file.  A partial frame in
 * the buffer with nothing more in the fd is not ready: a receive would
 * block.
 */
#include "connection-internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct mproc_connection {
  int fd;                  /* owned; -1 never happens for a live object */
  unsigned char readable;  /* may receive */
  unsigned char writable;  /* may send */
  unsigned char is_socket; /* send with MSG_NOSIGNAL; else SIGPIPE guard */
  unsigned char rbroken;   /* receives are MPROC_EBROKEN (see DESIGN) */
  unsigned char wbroken;   /* sends are MPROC_EBROKEN (see DESIGN) */
  unsigned char pending;   /* a header was read, its payload was not */
  uint64_t pending_len;    /* that payload's length */
  size_t maxlength;        /* the receive limit (see Ready in DESIGN) */
  unsigned char *rbuf;     /* RBUF_SIZE bytes, or NULL before a receive */
  size_t rpos, rend;       /* the unread bytes are rbuf[rpos .. rend) */
};

/* The read buffer's size: room for a 16 KiB frame as Python writes it in
 * one write, with its header. */
#define RBUF_SIZE (((size_t)16 << 10) + 16)

/* Payloads up to this many bytes are gathered in the buffer (with what
 * follows them); longer ones are read straight into the destination. */
#define RBUF_GATHER_MAX ((size_t)8 << 10)

/* Python's limit between the 4-byte and the escaped 12-byte header. */
#define FRAME_SHORT_MAX UINT64_C(0x7fffffff)

/* ==================== frame headers (pure) ==================== */

int mproc__frame_parse_header(const unsigned char *p, size_t n,
                              uint64_t *len) {
  if (n < 4 || p == NULL) {
    return 0;
  }
  uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
               (uint32_t)p[2] << 8 | (uint32_t)p[3];
  if ((v & UINT32_C(0x80000000)) == 0) {
    if (len != NULL) {
      *len = v;
    }
    return 4;
  }
  /* Negative: only -1, the escape to an 8-byte length, is a header. */
  if (v != UINT32_MAX) {
    return MPROC_EPROTO;
  }
  if (n < 12) {
    return 0;
  }
  uint64_t l = 0;
  for (int i = 4; i < 12; i++) {
    l = l << 8 | p[i];
  }
  if (len != NULL) {
    *len = l;
  }
  return 12;
}

size_t mproc__frame_make_header(unsigned char *out, uint64_t len) {
  if (len <= FRAME_SHORT_MAX) {
    for (int i = 0; i < 4; i++) {
      out[i] = (unsigned char)(len >> (24 - 8 * i));
    }
    return 4;
  }
  out[0] = out[1] = out[2] = out[3] = 0xff;
  for (int i = 0; i < 8; i++) {
    out[4 + i] = (unsigned char)(len >> (56 - 8 * i));
  }
  return 12;
}

/* ==================== the object ==================== */

/* Make the object for fd (not closed on failure).  Returns 0 or
 * MPROC_ENOMEM. */
static int conn_new(mproc_connection **out, int fd, int readable,
                    int writable, int is_socket) {
  mproc_connection *c = calloc(1, sizeof *c);
  if (c == NULL) {
    return MPROC_ENOMEM;
  }
  c->fd = fd;
  c->readable = readable != 0;
  c->writable = writable != 0;
  c->is_socket = is_socket != 0;
  c->maxlength = MPROC_NOLIMIT;
  *out = c;
  return 0;
}

/* Validate fd and learn whether it is a socket.  Returns 0/1 (socket) or
 * a negative code; the fd is left alone. */
static int check_fd(int fd, int readable, int writable) {
  if (fd < 0 || (!readable && !writable)) {
    return MPROC_EINVAL;
  }
  return mproc__fd_is_socket(fd);
}

int mproc__conn_wrap(mproc_connection **out, int fd, int readable,
                     int writable) {
  if (out == NULL) {
    mproc__close(fd);
    return MPROC_EINVAL;
  }
  *out = NULL;
  int sock = check_fd(fd, readable, writable);
  int r = sock < 0 ? sock : conn_new(out, fd, readable, writable, sock);
  if (r < 0) {
    mproc__close(fd);
  }
  return r;
}

/*
 * Unlike mproc__conn_wrap, a failed mproc_connection_from_fd leaves the fd
 * open and the caller's: a public call that fails should change nothing
 * (and Python's Connection() raises without closing the handle).
 */
int mproc_connection_from_fd(mproc_connection **out, int fd, int readable,
                             int writable) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  int sock = check_fd(fd, readable, writable);
  if (sock < 0) {
    return sock;
  }
  return conn_new(out, fd, readable, writable, sock);
}

int mproc_pipe(mproc_connection **c1, mproc_connection **c2, int duplex) {
  if (c1 == NULL || c2 == NULL) {
    return MPROC_EINVAL;
  }
  *c1 = *c2 = NULL;
  int fds[2];
  int r = duplex ? mproc__socketpair(fds) : mproc__pipe(fds, 0);
  if (r < 0) {
    return r;
  }
  /* Python's order for Pipe(False): (reader, writer). */
  r = conn_new(c1, fds[0], 1, duplex, duplex);
  if (r == 0) {
    r = conn_new(c2, fds[1], duplex, 1, duplex);
    if (r < 0) {
      free(*c1);
      *c1 = NULL;
    }
  }
  if (r < 0) {
    mproc__close(fds[0]);
    mproc__close(fds[1]);
  }
  return r;
}

int mproc_connection_close(mproc_connection *c) {
  if (c == NULL) {
    return 0;
  }
  mproc__close(c->fd);
  free(c->rbuf);
  free(c);
  return 0;
}

int mproc_connection_fileno(const mproc_connection *c) {
  return (c == NULL || c->fd < 0) ? MPROC_EINVAL : c->fd;
}

int mproc_connection_set_maxlength(mproc_connection *c, size_t maxlength) {
  if (c == NULL || c->fd < 0) {
    return MPROC_EINVAL;
  }
  c->maxlength = maxlength;
  return 0;
}

int mproc_connection_get_maxlength(const mproc_connection *c, size_t *out) {
  if (c == NULL || c->fd < 0 || out == NULL) {
    return MPROC_EINVAL;
  }
  *out = c->maxlength;
  return 0;
}

int mproc_connection_readable(const mproc_connection *c) {
  return c == NULL ? MPROC_EINVAL : c->readable;
}

int mproc_connection_writable(const mproc_connection *c) {
  return c == NULL ? MPROC_EINVAL : c->writable;
}

/* ==================== sending ==================== */

int mproc__conn_send_frame(mproc_connection *c, const void *buf, size_t len,
                           const mproc__deadline *d) {
  if (c == NULL || c->fd < 0 || (buf == NULL && len > 0)) {
    return MPROC_EINVAL;
  }
  if (!c->writable) {
    return MPROC_EPERM;
  }
  if (c->wbroken) {
    return MPROC_EBROKEN;
  }
  unsigned char hdr[12];
  size_t hlen = mproc__frame_make_header(hdr, len);
  size_t done = 0;
  int r = mproc__stream_write2(c->fd, c->is_socket, hdr, hlen, buf, len, d,
                               &done);
  if (r < 0 && done > 0) {
    /* Part of a frame is out: whatever we sent next would be read as its
     * rest. */
    c->wbroken = 1;
    MPROC__DEBUG("connection %d: send stopped inside a frame (%s)", c->fd,
                 mproc_err_name(r));
  }
  return r;
}

int mproc_connection_send_bytes(mproc_connection *c, const void *buf,
                                size_t buflen, ptrdiff_t offset,
                                ptrdiff_t size) {
  /* Python's order of checks: closed, direction, then the bounds. */
  if (c == NULL || c->fd < 0) {
    return MPROC_EINVAL;
  }
  if (!c->writable) {
    return MPROC_EPERM;
  }
  /* Negative values are Python's ValueError; MPROC_REST is the one
   * negative size that means something. */
  if (offset < 0 || (size < 0 && size != MPROC_REST) ||
      (size_t)offset > buflen) {
    return MPROC_EINVAL;
  }
  size_t off = (size_t)offset;
  size_t n;
  if (size == MPROC_REST) {
    n = buflen - off;
  } else if ((size_t)size > buflen - off) { /* offset + size > buflen */
    return MPROC_EINVAL;
  } else {
    n = (size_t)size;
  }
  if (buf == NULL && n > 0) {
    return MPROC_EINVAL;
  }
  /* No arithmetic on a NULL buffer (undefined even with offset 0). */
  const char *start = buf == NULL ? NULL : (const char *)buf + off;
  return mproc__conn_send_frame(c, start, n, NULL);
}

int mproc_connection_send(mproc_connection *c, const void *buf, size_t len) {
  return mproc_connection_send_bytes(c, buf, len, 0, MPROC_REST);
}

/* ==================== receiving ==================== */

/* The checks every receive makes first.  Returns 0 or the code. */
static int recv_check(const mproc_connection *c) {
  if (c == NULL || c->fd < 0) {
    return MPROC_EINVAL;
  }
  if (!c->readable) {
    return MPROC_EPERM;
  }
  if (c->rbroken) {
    return MPROC_EBROKEN;
  }
  return 0;
}

/* Mark the stream unusable for receiving (see DESIGN); the buffered
 * bytes can never be used, so the buffer goes. */
static void break_reading(mproc_connection *c, int why) {
  c->rbroken = 1;
  c->pending = 0;
  free(c->rbuf);
  c->rbuf = NULL;
  c->rpos = c->rend = 0;
  MPROC__DEBUG("connection %d: receiving is broken (%s)", c->fd,
               mproc_err_name(why));
}

/* The number of buffered unread bytes. */
static size_t rbuf_avail(const mproc_connection *c) {
  return c->rend - c->rpos;
}

/*
 * Parse the header at the start of the buffered bytes, without taking it.
 * Returns as mproc__frame_parse_header (0: not all of it is buffered).
 */
static int rbuf_peek_header(const mproc_connection *c, uint64_t *len) {
  size_t avail = rbuf_avail(c);
  if (avail < 4) {
    return 0; /* also keeps a NULL rbuf out of the arithmetic */
  }
  return mproc__frame_parse_header(c->rbuf + c->rpos, avail, len);
}

/*
 * Read what the fd has (waiting before the deadline while it has nothing)
 * into the buffer's free end: allocate the buffer on first use, and move
 * the unread bytes to its start first.  The caller makes sure that fewer
 * than RBUF_SIZE bytes are buffered.  Returns 0 (at least one byte more
 * is buffered); 1 (end of file); MPROC_ENOMEM (no buffer); MPROC_ETIMEDOUT
 * or another negative errno.  Nothing buffered is lost on any result.
 */
static int rbuf_fill(mproc_connection *c, const mproc__deadline *d) {
  if (c->rbuf == NULL) {
    c->rbuf = malloc(RBUF_SIZE);
    if (c->rbuf == NULL) {
      return MPROC_ENOMEM;
    }
    c->rpos = c->rend = 0;
  }
  if (c->rpos > 0) {
    size_t avail = rbuf_avail(c);
    memmove(c->rbuf, c->rbuf + c->rpos, avail);
    c->rpos = 0;
    c->rend = avail;
  }
  size_t got = 0;
  int r = mproc__stream_read_some(c->fd, c->is_socket, c->rbuf + c->rend,
                                  RBUF_SIZE - c->rend, d, &got);
  if (r == 0) {
    c->rend += got;
  }
  return r;
}

/*
 * Get the next frame's payload length: the pending frame's, or take a new
 * header from the buffer, reading into it while the header is not whole
 * (which makes that frame pending).  Returns 0 and *len; MPROC_EOF (the
 * peer closed before a header byte); MPROC_ECONNRESET (closed inside the
 * header); MPROC_EPROTO (a malformed header); MPROC_ENOMEM (no buffer);
 * MPROC_ETIMEDOUT; or another negative errno.  Everything but MPROC_EOF,
 * and a timeout or error before any header byte, breaks reading.
 */
static int recv_header(mproc_connection *c, uint64_t *len,
                       const mproc__deadline *d) {
  if (c->pending) {
    *len = c->pending_len;
    return 0;
  }
  for (;;) {
    int h = rbuf_peek_header(c, len);
    if (h > 0) {
      c->rpos += (size_t)h;
      c->pending = 1;
      c->pending_len = *len;
      return 0;
    }
    if (h < 0) {
      break_reading(c, h);
      return h;
    }
    /* Fewer than 12 bytes are buffered: there is room for more. */
    size_t had = rbuf_avail(c);
    int r = rbuf_fill(c, d);
    if (r == 1 && had == 0) {
      return MPROC_EOF;
    }
    if (r != 0) {
      int code = r == 1 ? MPROC_ECONNRESET : r;
      if (had > 0) {
        break_reading(c, code);
      }
      return code;
    }
  }
}

/* The end of a failed payload read: r is rbuf_fill's or
 * mproc__stream_read_exact's result, some whether any payload byte had
 * come.  Returns the code (see recv_payload). */
static int payload_failed(mproc_connection *c, int r, int some) {
  int code = r == 1 ? MPROC_ECONNRESET : r;
  if (some || r == 1) {
    break_reading(c, code);
  }
  return code;
}

/*
 * Take the pending frame's payload (len bytes) into dst: from the buffer,
 * after reading it all there (len <= RBUF_GATHER_MAX), or its buffered
 * part and then the rest straight from the fd.  Returns 0 (the frame is
 * consumed), MPROC_ECONNRESET (end of file inside it), MPROC_ETIMEDOUT or
 * another negative errno.  A failure before any payload byte came keeps
 * the frame pending; after some, reading is broken.
 */
static int recv_payload(mproc_connection *c, void *dst, size_t len,
                        const mproc__deadline *d) {
  size_t avail = rbuf_avail(c);
  if (len > avail && len <= RBUF_GATHER_MAX) {
    /* Fewer than len <= RBUF_GATHER_MAX bytes are buffered: after the
     * move to the buffer's start, the rest has room. */
    while (avail < len) {
      int r = rbuf_fill(c, d);
      if (r != 0) {
        return payload_failed(c, r, avail > 0);
      }
      avail = rbuf_avail(c);
    }
  }
  size_t take = len < avail ? len : avail;
  if (take > 0) {
    memcpy(dst, c->rbuf + c->rpos, take);
    c->rpos += take;
  }
  if (take < len) {
    size_t got = 0;
    int r = mproc__stream_read_exact(c->fd, c->is_socket, (char *)dst + take,
                                     len - take, d, &got);
    if (r != 0) {
      return payload_failed(c, r, take + got > 0);
    }
  }
  c->pending = 0;
  if (c->rpos == c->rend) {
    c->rpos = c->rend = 0; /* no move needed before the next read */
  }
  return 0;
}

int mproc__conn_recv_frame(mproc_connection *c, void **out, size_t *len,
                           size_t max, const mproc__deadline *d) {
  if (out != NULL) {
    *out = NULL;
  }
  if (len != NULL) {
    *len = 0;
  }
  if (out == NULL || len == NULL) {
    return MPROC_EINVAL;
  }
  int r = recv_check(c);
  if (r < 0) {
    return r;
  }
  uint64_t n;
  r = recv_header(c, &n, d);
  if (r < 0) {
    return r;
  }
  /* Decided from the header, before allocating: the length may be 2^63.
   * Nothing larger than PTRDIFF_MAX can ever be allocated, so such a
   * length is over every limit. */
  if (n > max || n > c->maxlength || n > (uint64_t)PTRDIFF_MAX) {
    break_reading(c, MPROC_EMSGSIZE);
    return MPROC_EMSGSIZE;
  }
  /* One byte at least, so an empty message is a non-NULL buffer. */
  void *buf = malloc(n > 0 ? (size_t)n : 1);
  if (buf == NULL) {
    return MPROC_ENOMEM; /* the frame stays pending: a retry may work */
  }
  r = recv_payload(c, buf, (size_t)n, d);
  if (r < 0) {
    free(buf);
    return r;
  }
  *out = buf;
  *len = (size_t)n;
  return 0;
}

int mproc_connection_recv_bytes(mproc_connection *c, void **out, size_t *len,
                                size_t maxlength) {
  return mproc__conn_recv_frame(c, out, len, maxlength, NULL);
}

int mproc_connection_recv_bytes_timeout(mproc_connection *c, void **out,
                                        size_t *len, size_t maxlength,
                                        double timeout) {
  mproc__deadline d;
  if (mproc__deadline_init(&d, timeout) < 0) {
    if (out != NULL) {
      *out = NULL;
    }
    if (len != NULL) {
      *len = 0;
    }
    return MPROC_EINVAL;
  }
  return mproc__conn_recv_frame(c, out, len, maxlength, &d);
}

int mproc_connection_recv_bytes_into(mproc_connection *c, void *buf,
                                     size_t cap, size_t offset, size_t *len) {
  if (len != NULL) {
    *len = 0;
  }
  if (len == NULL || (buf == NULL && cap > 0)) {
    return MPROC_EINVAL;
  }
  int r = recv_check(c);
  if (r < 0) {
    return r;
  }
  if (offset > cap) {
    return MPROC_EINVAL; /* Python's "offset too large" */
  }
  uint64_t n;
  r = recv_header(c, &n, NULL);
  if (r < 0) {
    return r;
  }
  if (n > c->maxlength) {
    /* Over the connection's limit: refused as recv_bytes refuses it. */
    break_reading(c, MPROC_EMSGSIZE);
    return MPROC_EMSGSIZE;
  }
  if (n > cap - offset) {
    /* Too long for the room: it stays pending for the next receive. */
    *len = n > SIZE_MAX ? SIZE_MAX : (size_t)n;
    return MPROC_ENOBUFS;
  }
  char *dst = buf == NULL ? NULL : (char *)buf + offset;
  r = recv_payload(c, dst, (size_t)n, NULL);
  if (r < 0) {
    return r;
  }
  *len = (size_t)n;
  return 0;
}

/* ==================== poll and wait ==================== */

/* Whether a receive on c returns without touching the fd: a pending
 * frame, a whole frame, a malformed header or a header over the
 * connection's limit in the buffer, or a broken stream (see DESIGN). */
static int ready_without_fd(const mproc_connection *c) {
  if (c->pending || c->rbroken) {
    return 1;
  }
  uint64_t len = 0;
  int h = rbuf_peek_header(c, &len);
  return h < 0 ||
         (h > 0 && (len > c->maxlength || len <= rbuf_avail(c) - (size_t)h));
}

int mproc_connection_poll(mproc_connection *c, double timeout) {
  if (c == NULL || c->fd < 0) {
    return MPROC_EINVAL;
  }
  if (!c->readable) {
    return MPROC_EPERM;
  }
  mproc__deadline d;
  int r = mproc__deadline_init(&d, timeout);
  if (r < 0) {
    return MPROC_EINVAL;
  }
  if (ready_without_fd(c)) {
    return 1;
  }
  int ready = 0;
  r = mproc__poll_readable(&c->fd, 1, &ready, &d);
  return r < 0 ? r : (r > 0 ? 1 : 0);
}

int mproc_connection_wait(mproc_wait_item *items, size_t n, double timeout) {
  if (items == NULL && n > 0) {
    return MPROC_EINVAL;
  }
  mproc__deadline d;
  if (mproc__deadline_init(&d, timeout) < 0) {
    return MPROC_EINVAL;
  }
  /* Validate everything before waiting, and count the items that are
   * ready without the kernel's word. */
  size_t early = 0;
  for (size_t i = 0; i < n; i++) {
    mproc_connection *c = items[i].conn;
    items[i].ready = 0;
    if (c != NULL) {
      if (c->fd < 0 || !c->readable) {
        return MPROC_EINVAL;
      }
      early += ready_without_fd(c) != 0;
    } else if (items[i].fd < 0) {
      return MPROC_EINVAL;
    }
  }
  int stack_fds[16], stack_ready[16];
  int *fds = stack_fds, *ready = stack_ready;
  if (n > MPROC__ARRAY_SIZE(stack_fds)) {
    fds = malloc(n * sizeof *fds);
    ready = malloc(n * sizeof *ready);
    if (fds == NULL || ready == NULL) {
      free(fds);
      free(ready);
      return MPROC_ENOMEM;
    }
  }
  for (size_t i = 0; i < n; i++) {
    fds[i] = items[i].conn != NULL ? items[i].conn->fd : items[i].fd;
  }
  /* With some already ready, only look at the others, without waiting. */
  mproc__deadline now;
  if (early > 0) {
    (void)mproc__deadline_init(&now, 0.0);
  }
  int r = mproc__poll_readable(fds, n, ready, early > 0 ? &now : &d);
  if (r >= 0) {
    r = 0;
    for (size_t i = 0; i < n; i++) {
      mproc_connection *c = items[i].conn;
      items[i].ready = ready[i] || (c != NULL && ready_without_fd(c));
      r += items[i].ready;
    }
  }
  if (fds != stack_fds) {
    free(fds);
    free(ready);
  }
  return r;
}
