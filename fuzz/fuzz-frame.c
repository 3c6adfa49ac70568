/*
 * fuzz/fuzz-frame.c - libFuzzer target for Python's message framing
 * (connection.c): the pure header parser, and the whole receive path fed
 * through a socketpair.
 *
 * Input: two bytes of maximum length (big-endian, 0-65535), then the byte
 * stream a peer sends.  The stream is written into one end of a Unix
 * socketpair, that end is shut down, and the other end, wrapped as an
 * mproc connection, receives frames until it reports an error or end of
 * file.  An input whose first byte has its top bit set (a maximum of
 * 32 KiB or more) receives with recv_bytes_into and a 64-byte buffer
 * first, which leaves a longer message pending for recv_bytes.  Nothing may crash,
 * leak, hang or allocate more than the announced lengths allow: run with
 * -malloc_limit_mb (fuzz/run.sh does), so a 2^63-byte header that reached
 * malloc would be reported.
 *
 * Invariants checked (abort() on violation, so libFuzzer reports it):
 *   - the parser returns 0, 4, 12 or MPROC_EPROTO, never more than the
 *     bytes it was given, and a 4-byte header's length fits in 31 bits;
 *   - a header mproc makes parses back to the same length;
 *   - a received message is never longer than the maximum asked for.
 */
#include "connection-internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The most stream bytes used: a Unix socket buffer holds this many
 * without a reader, so the write below never blocks. */
#define STREAM_MAX 65536

static void check_parser(const uint8_t *data, size_t size) {
  uint64_t len = 0;
  int h = mproc__frame_parse_header(data, size, &len);
  if (h != 0 && h != 4 && h != 12 && h != MPROC_EPROTO) {
    abort();
  }
  if (h > 0 && (size_t)h > size) {
    abort();
  }
  if (h == 4 && len > 0x7fffffffu) {
    abort();
  }
  if (size >= 8) {
    uint64_t want = 0;
    memcpy(&want, data, 8);
    unsigned char hdr[12];
    size_t hl = mproc__frame_make_header(hdr, want);
    uint64_t back = 0;
    if (mproc__frame_parse_header(hdr, hl, &back) != (int)hl || back != want) {
      abort();
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_parser(data, size);
  if (size < 2) {
    return 0;
  }
  size_t max = (size_t)data[0] << 8 | data[1];
  const uint8_t *stream = data + 2;
  size_t n = size - 2 > STREAM_MAX ? STREAM_MAX : size - 2;

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return 0;
  }
  int bufsize = 4 * STREAM_MAX;
  (void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
  size_t done = 0;
  while (done < n) {
    ssize_t w = send(sv[1], stream + done, n - done, MSG_NOSIGNAL);
    if (w <= 0) {
      break;
    }
    done += (size_t)w;
  }
  shutdown(sv[1], SHUT_WR);

  mproc_connection *c = NULL;
  if (mproc__conn_wrap(&c, sv[0], 1, 1) != 0) {
    close(sv[1]);
    return 0;
  }
  /* Everything is already in the socket and the writer has shut down, so
   * no receive can wait; the deadline is a guard against a hang bug. */
  mproc__deadline d;
  mproc__deadline_init(&d, 5.0);
  int use_into = (data[0] & 0x80) != 0;
  for (int i = 0; i < 10000; i++) {
    int r;
    if (use_into) {
      unsigned char small[64];
      size_t got = 0;
      r = mproc_connection_recv_bytes_into(c, small, sizeof small, 0, &got);
      if (r == 0 && got > sizeof small) {
        abort();
      }
      if (r == MPROC_ENOBUFS) {
        use_into = 0; /* take the pending message with recv_bytes */
        continue;
      }
    } else {
      void *buf = NULL;
      size_t len = 0;
      r = mproc__conn_recv_frame(c, &buf, &len, max, &d);
      if (r == 0 && (buf == NULL || len > max)) {
        abort();
      }
      free(buf);
    }
    if (r != 0) {
      if (r == MPROC_ETIMEDOUT) {
        abort(); /* everything was there: nothing should wait */
      }
      break;
    }
  }
  mproc_connection_close(c);
  close(sv[1]);
  return 0;
}
