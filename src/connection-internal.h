/*
 * src/connection-internal.h - what connection.c shares with listener.c and
 * auth.c: the connection object and framed I/O with deadlines.
 *
 * connection.c implements everything declared here.  The public calls of
 * mproc/connection.h are these with an unlimited deadline.  Receives read
 * ahead into the connection's buffer (connection.c's DESIGN): bytes a
 * handshake read beyond its own frames stay in the object, for the
 * caller's next receive.
 */
#ifndef MPROC_CONNECTION_INTERNAL_H
#define MPROC_CONNECTION_INTERNAL_H

#include "internal.h"

/* The largest message accepted before authentication (Python's
 * recv_bytes(256) in the handshake). */
#define MPROC__AUTH_MAX_MESSAGE 256

/* Wrap fd (owned from now on, also on failure: then it is closed). */
int mproc__conn_wrap(mproc_connection **out, int fd, int readable,
                     int writable);

/* Send one frame of len bytes, within the deadline (NULL: none).
 * Returns 0, MPROC_ETIMEDOUT (the frame may be partly sent: the
 * connection is then unusable), or the errors of send_bytes. */
int mproc__conn_send_frame(mproc_connection *c, const void *buf, size_t len,
                           const mproc__deadline *d);

/* Receive one frame of at most max bytes into a new buffer, within the
 * deadline (NULL: none).  Returns 0, MPROC_ETIMEDOUT, or the errors of
 * recv_bytes. */
int mproc__conn_recv_frame(mproc_connection *c, void **out, size_t *len,
                           size_t max, const mproc__deadline *d);

/* Parse a frame header from the n bytes at p.  Returns the header's size
 * (4 or 12) and *len, 0 if more bytes are needed, or MPROC_EPROTO (a
 * negative length other than -1, or an 8-byte length that needed no
 * escape is still accepted as Python sends it: only malformed headers are
 * errors).  Pure: the fuzz target calls it directly. */
int mproc__frame_parse_header(const unsigned char *p, size_t n,
                              uint64_t *len);

/* Write the header for a payload of len bytes into out (12 bytes room).
 * Returns its size (4 or 12). */
size_t mproc__frame_make_header(unsigned char *out, uint64_t len);

#endif /* MPROC_CONNECTION_INTERNAL_H */
