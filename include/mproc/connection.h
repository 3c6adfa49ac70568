/*
 * mproc/connection.h - Python's Pipe and Connection, connection.wait, and
 * Listener/Client over Unix and TCP sockets, speaking Python's own framing
 * and authentication, so a C process and a Python process can talk.
 *
 * DESIGN
 * A connection is a process-local object owning one file descriptor (a
 * socket or one end of a pipe); it is not in the arena.  A forked child
 * inherits it with the fd, as Python's connections are inherited; one end
 * must not be used by two processes or threads at once (as in Python).
 *
 * Read-ahead.  Unlike Python's, a connection reads ahead: a receive takes
 * whatever the fd has (up to a 16 KiB per-connection buffer, allocated on
 * the first receive and freed at close) in one read, and later messages
 * that came with it are served from the buffer without a system call.  So
 * a message may be waiting in the buffer while poll(2) on
 * mproc_connection_fileno says the fd is empty: to know whether a
 * connection has a message, use mproc_connection_poll or
 * mproc_connection_wait, which look at the buffer first.  A forked child
 * inherits the buffered bytes in its copy of the object, which is one
 * more reason for the rule above: the parent and the child would both
 * read them.
 *
 * Wire format, byte for byte Python's (multiprocessing/connection.py):
 * a message is a 4-byte big-endian signed length and the payload; a
 * payload longer than 0x7fffffff bytes is announced as -1 followed by an
 * 8-byte big-endian length.  Zero-length messages are legal.  Header and
 * payload up to 16 KiB go in one write.  A peer that closes at a frame
 * boundary is MPROC_EOF; one that closes inside a frame is
 * MPROC_ECONNRESET.  SIGPIPE never kills the caller (MSG_NOSIGNAL on
 * sockets, SIGPIPE blocked around writes to pipes): a write to a closed
 * peer is MPROC_EPIPE.  Every call retries on EINTR, keeping its deadline.
 *
 * Receiving limits.  recv_bytes takes a maximum length; a longer message
 * is MPROC_EMSGSIZE, decided from the header before anything is
 * allocated, and the connection is then unreadable (later receives are
 * MPROC_EBROKEN): the stream cannot be resynchronized without reading the
 * announced bytes, which may be 2^63.  Python raises OSError("bad message
 * length") and does the same.
 *
 * Authentication (Listener/Client with an authkey), as Python 3.12+:
 * the server sends "#CHALLENGE#" "{sha256}" and 40 random bytes; the
 * client answers "{sha256}" + HMAC-SHA256(key, "{sha256}" + random); the
 * server answers "#WELCOME#" or "#FAILURE#"; then the same the other way.
 * Like Python 3.12, a server also accepts a legacy (Python <= 3.11) raw
 * HMAC-MD5 answer, and a client answers a legacy challenge (20 random
 * bytes, no digest prefix) with HMAC-MD5, unless opts.strict_auth refuses
 * both (no downgrade to MD5).  Digests are compared in constant time.
 * Before authentication, messages are capped at 256 bytes and the whole
 * handshake at a deadline (opts.handshake_timeout, default 5 s); a
 * listener runs many handshakes at once (see mproc_listener_accept).  A
 * wrong key is MPROC_EAUTH on both sides.  HMAC and random bytes come from
 * OpenSSL's libcrypto.  There is no encryption and no per-message MAC
 * after the handshake (Python has neither): use Unix sockets, or TCP on
 * loopback or a trusted network.
 *
 * Addresses.  AF_UNIX: a filesystem path, never the abstract namespace
 * (a name starting with NUL or '@' is MPROC_EINVAL).  With no address the
 * listener creates a new 0700 directory (mkdtemp under $TMPDIR or /tmp)
 * and a socket in it, and removes both at close.  A given path's directory
 * must not be accessible to other users (mode & 077 == 0), unless
 * opts.allow_other_users; else MPROC_EACCES.  A Unix listener accepts only
 * peers of its own uid (SO_PEERCRED; root's peers too), unless
 * opts.allow_other_users.  AF_INET: "host:port" (IPv4 or a name), or
 * "[v6addr]:port"; with no address, "127.0.0.1:0" (loopback, a free port):
 * any other interface must be asked for.
 *
 * Errors are negative codes from mproc/errno.h.  Timeouts are double
 * seconds (mproc/common.h): MPROC_FOREVER waits, 0 polls.
 */
#ifndef MPROC_CONNECTION_H
#define MPROC_CONNECTION_H

#include "mproc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_connection mproc_connection;
typedef struct mproc_listener mproc_listener;

/* "To the end of the buffer" for send_bytes' size: PTRDIFF_MIN, a value
 * no small negative number (a size computed as -1, or a size_t -1 cast to
 * ptrdiff_t) can turn into, so that a negative size stays a detectable
 * error, as Python's send_bytes(buf, 4, -1) is a ValueError. */
#define MPROC_REST PTRDIFF_MIN
/* "No limit" for recv_bytes' maxlength and the connection's receive
 * limit. */
#define MPROC_NOLIMIT SIZE_MAX
/* The receive limit of connections made by Listener and Client when
 * their opts.maxlength is 0: 64 MiB.  Raise it (opts.maxlength, or
 * mproc_connection_set_maxlength) for bigger messages. */
#define MPROC_NET_MAXLENGTH ((size_t)64 << 20)

/* ==================== Pipe and Connection ==================== */

/*
 * mproc_pipe - Python's Pipe(duplex).  duplex != 0: a connected pair of
 * Unix stream sockets, both ends read and write.  duplex == 0: a pipe,
 * *c1 only receives and *c2 only sends (Python's order: reader, writer).
 * Both fds are close-on-exec.
 *
 * CONSTRUCTOR: two mproc_connection (close each with
 * mproc_connection_close).  Returns 0; MPROC_EINVAL (NULL out);
 * MPROC_EMFILE, MPROC_ENFILE, MPROC_ENOMEM.  On failure both are NULL.
 */
MPROC_EXTERN int mproc_pipe(mproc_connection **c1, mproc_connection **c2,
                            int duplex);

/*
 * mproc_connection_from_fd - wrap an fd (a stream socket or a pipe end)
 * as a connection that owns it (Python's Connection(handle, readable,
 * writable)).  fd < 0, or neither readable nor writable: MPROC_EINVAL.
 */
MPROC_EXTERN int mproc_connection_from_fd(mproc_connection **out, int fd,
                                          int readable, int writable);

/* Close the fd and free the object.  NULL: no-op.  Returns 0. */
MPROC_EXTERN int mproc_connection_close(mproc_connection *c);

/*
 * mproc_connection_set_maxlength - the connection's receive limit: every
 * receive refuses a message longer than it (MPROC_EMSGSIZE, decided from
 * the header, the connection then unreadable), whatever the maxlength
 * passed to the receive (the smaller of the two applies), and
 * recv_bytes_into too.  Poll and wait know it, so a header over it is
 * "ready" (a receive returns the error at once).  Connections made by
 * mproc_pipe and mproc_connection_from_fd start with MPROC_NOLIMIT;
 * those from mproc_listener_accept and mproc_client_connect with their
 * opts.maxlength (default MPROC_NET_MAXLENGTH), so that a peer's header
 * alone cannot make mproc reserve gigabytes.  Returns 0 or MPROC_EINVAL.
 * _get_maxlength stores it in *out.
 */
MPROC_EXTERN int mproc_connection_set_maxlength(mproc_connection *c,
                                                size_t maxlength);
MPROC_EXTERN int mproc_connection_get_maxlength(const mproc_connection *c,
                                                size_t *out);

/* The fd, or MPROC_EINVAL.  1 or 0 for the directions.  poll(2) on the
 * fd misses messages already read ahead into the connection's buffer
 * (see the top): wait with mproc_connection_poll or _wait instead. */
MPROC_EXTERN int mproc_connection_fileno(const mproc_connection *c);
MPROC_EXTERN int mproc_connection_readable(const mproc_connection *c);
MPROC_EXTERN int mproc_connection_writable(const mproc_connection *c);

/*
 * mproc_connection_send_bytes - send buf[offset .. offset+size) of a
 * buffer of buflen bytes as one message (size MPROC_REST: to the end).
 * offset and size are signed, as Python's are, so that a negative value
 * is an error rather than a huge unsigned one.  Checked as Python checks
 * them: a negative offset, a negative size other than MPROC_REST,
 * offset > buflen, or offset + size > buflen, is MPROC_EINVAL, and
 * nothing is sent.  buf may be NULL only when the message is empty.
 *
 * Returns 0; MPROC_EINVAL; MPROC_EPERM (a read-only end: Python's
 * "connection is read-only"); MPROC_EPIPE (the peer is gone);
 * MPROC_ECONNRESET; other negative errno.
 */
MPROC_EXTERN int mproc_connection_send_bytes(mproc_connection *c,
                                             const void *buf, size_t buflen,
                                             ptrdiff_t offset, ptrdiff_t size);
/* send_bytes(c, buf, len, 0, MPROC_REST). */
MPROC_EXTERN int mproc_connection_send(mproc_connection *c, const void *buf,
                                       size_t len);

/*
 * mproc_connection_recv_bytes - wait for and receive one message into a
 * new buffer (*out, malloc'd, free it with free(); an empty message gives
 * a non-NULL 1-byte buffer and *len 0).  maxlength: the longest message
 * accepted (MPROC_NOLIMIT: any).
 *
 * Returns 0; MPROC_EOF (the peer closed, at a message boundary);
 * MPROC_ECONNRESET (closed inside a message); MPROC_EMSGSIZE (longer than
 * maxlength; the connection becomes unreadable); MPROC_EBROKEN (unreadable
 * since an earlier MPROC_EMSGSIZE); MPROC_EPERM (a write-only end);
 * MPROC_ENOMEM; other negative errno.  On failure *out is NULL, *len 0.
 */
MPROC_EXTERN int mproc_connection_recv_bytes(mproc_connection *c, void **out,
                                             size_t *len, size_t maxlength);

/*
 * mproc_connection_recv_bytes_timeout - recv_bytes that waits at most
 * timeout seconds (MPROC_FOREVER: no limit, as recv_bytes; 0: only what
 * has already arrived) for the whole message.  Returns MPROC_ETIMEDOUT
 * when it did not come in time; if no byte of it had come, nothing
 * changed and a later receive gets it, but if the time ran out inside the
 * message (the peer stalled mid-message) the stream cannot be resumed
 * and later receives are MPROC_EBROKEN.  A NaN timeout is MPROC_EINVAL.
 * Other results as recv_bytes.
 */
MPROC_EXTERN int mproc_connection_recv_bytes_timeout(mproc_connection *c,
                                                     void **out, size_t *len,
                                                     size_t maxlength,
                                                     double timeout);

/*
 * mproc_connection_recv_bytes_into - receive one message into buf[offset
 * .. cap).  offset > cap: MPROC_EINVAL (Python's "offset too large").  A
 * message longer than cap - offset stays pending (not consumed, unlike
 * Python's BufferTooShort): *len is its length and the result is
 * MPROC_ENOBUFS; a later receive (or recv_bytes) gets it.  Otherwise *len
 * is the message's length.  Other results as recv_bytes.
 */
MPROC_EXTERN int mproc_connection_recv_bytes_into(mproc_connection *c,
                                                  void *buf, size_t cap,
                                                  size_t offset, size_t *len);

/*
 * mproc_connection_poll - whether a receive would return without
 * blocking, with a message or with an error (end of file, a header over
 * the connection's receive limit, a malformed header, a broken end),
 * waiting up to timeout.  Never consumes anything.  A whole message in
 * the connection's read buffer, a message kept by MPROC_ENOBUFS, a header
 * over the limit (mproc_connection_set_maxlength) or a malformed one, and
 * a broken end are ready at once, without a system call; otherwise the
 * fd decides (bytes or end of file readable).  Poll knows only the
 * connection's limit: a smaller maxlength passed to recv_bytes is not
 * seen.
 * Returns 1, 0 (not within the timeout), or a negative error (MPROC_EPERM
 * on a write-only end).
 */
MPROC_EXTERN int mproc_connection_poll(mproc_connection *c, double timeout);

/* ==================== wait ==================== */

/* One object for mproc_connection_wait: a connection, or (conn NULL) any
 * fd, such as mproc_process_sentinel(p). */
typedef struct mproc_wait_item {
  mproc_connection *conn;
  int fd;    /* used when conn is NULL */
  int ready; /* out: 1 if ready (data, end of file, or the process ended) */
} mproc_wait_item;

/*
 * mproc_connection_wait - Python's multiprocessing.connection.wait: wait
 * until at least one item is ready or the timeout passes (MPROC_FOREVER:
 * no limit; note Python treats a negative timeout as 0), and mark every
 * ready item.  A connection is ready as for mproc_connection_poll; when
 * one is ready without a system call (a whole message buffered), wait
 * returns at once, marking too the other items ready at that moment.  Returns the number of ready items (0: timed out), or
 * MPROC_EINVAL (items NULL with n > 0, a negative fd, a closed or
 * write-only connection), or another negative error.
 */
MPROC_EXTERN int mproc_connection_wait(mproc_wait_item *items, size_t n,
                                       double timeout);

/* ==================== Listener and Client ==================== */

enum {
  MPROC_AF_DEFAULT = 0, /* from the address: "host:port" or "[v6]:port" is
                           AF_INET, anything else a path; no address: Unix */
  MPROC_AF_UNIX = 1,
  MPROC_AF_INET = 2
};

/* The most unfinished handshakes opts.max_pending may ask for. */
#define MPROC_LISTENER_MAX_PENDING 4096

typedef struct mproc_listener_opts {
  int family;            /* MPROC_AF_* */
  const char *address;   /* see the top; NULL: a new private address */
  int backlog;           /* listen(2) backlog; 0: SOMAXCONN (the kernel
                            caps it at net.core.somaxconn, 4096 by
                            default), so a burst of clients is queued */
  const void *authkey;   /* NULL: no authentication; else authkey_len
                            bytes (an empty key is a key, as Python 3.13) */
  size_t authkey_len;
  double handshake_timeout; /* seconds for a whole handshake, a limit: 0
                               (the default): 5; < 0 (MPROC_FOREVER): no
                               limit; NaN: MPROC_EINVAL */
  int strict_auth;       /* refuse legacy MD5 handshakes */
  int allow_other_users; /* Unix: accept peers of other uids, and a path in
                            a directory others can reach */
  size_t maxlength;      /* receive limit of accepted connections (see
                            mproc_connection_set_maxlength); 0:
                            MPROC_NET_MAXLENGTH */
  size_t max_pending;    /* unfinished handshakes held at once; 0: 128;
                            at most MPROC_LISTENER_MAX_PENDING */
} mproc_listener_opts;

/* Who is at the other end of an accepted connection. */
typedef struct mproc_peer_info {
  char address[128]; /* TCP: "a.b.c.d:port" or "[v6]:port"; Unix: the
                        path the client bound, "" when it bound none (the
                        usual case), as Python's last_accepted */
  int has_cred;      /* 1 on Unix sockets: pid, uid, gid are set */
  pid_t pid;         /* the client's, at connect time (SO_PEERCRED) */
  uint32_t uid, gid;
} mproc_peer_info;

/*
 * mproc_listener_new - bind and listen.  Returns 0 and *out;
 * MPROC_EINVAL (bad family or address, abstract name); MPROC_EADDRINUSE;
 * MPROC_EACCES (see the top); other negative errno.
 */
MPROC_EXTERN int mproc_listener_new(mproc_listener **out,
                                    const mproc_listener_opts *opts);

/* The bound address as a string ("path", "127.0.0.1:41234" with the real
 * port, "[::1]:41234") into buf of cap bytes.  Returns its length, or
 * MPROC_ENAMETOOLONG (cap too small), MPROC_EINVAL. */
MPROC_EXTERN int mproc_listener_address(const mproc_listener *l, char *buf,
                                        size_t cap);
/* The listening fd (for poll(2)), or MPROC_EINVAL. */
MPROC_EXTERN int mproc_listener_fileno(const mproc_listener *l);

/*
 * mproc_listener_accept - wait up to timeout for a connection that is
 * ready to hand out, or for one to report as failed.
 *
 * With an authkey, handshakes run concurrently, inside accept and across
 * accept calls: accept takes every connection the kernel has queued,
 * starts its handshake (non-blocking socket I/O and one poll for all),
 * and keeps the unfinished ones in the listener, each under its own
 * deadline (opts.handshake_timeout from the moment it was taken), so a
 * client waits for its own handshake only, whatever silent or slow peers
 * came before it.  At most opts.max_pending handshakes are held; a new
 * connection beyond that pushes out the oldest unfinished one (reported
 * as MPROC_ESTALLED), so that a flood of silent peers cannot lock honest
 * clients out for longer than the flood lasts.  Without an authkey a
 * queued connection is handed out at once.  Results come out in the
 * order they were decided.
 *
 * Returns 0 and *out (its receive limit is opts.maxlength); a failure of
 * one client, after which the listener goes on: MPROC_EAUTH (it failed
 * authentication or spoke out of protocol: it was told #FAILURE# where
 * the protocol allows, and closed), MPROC_ESTALLED (it did not finish the
 * handshake within handshake_timeout, or was pushed out), MPROC_ECONNRESET
 * (it closed during the handshake), MPROC_EACCES (a Unix peer of another
 * uid, closed); MPROC_ETIMEDOUT (nobody came, or no handshake finished,
 * within timeout); MPROC_EINVAL; MPROC_ENOMEM; the errors of accept(2)
 * (MPROC_EMFILE, MPROC_ENFILE).
 */
MPROC_EXTERN int mproc_listener_accept(mproc_listener *l,
                                       mproc_connection **out, double timeout);

/*
 * mproc_listener_last_accepted - Python's Listener.last_accepted: the
 * peer of the connection the last mproc_listener_accept reported (handed
 * out, or failed: a failed client's address is what a server logs).
 * Returns 0 and *out; MPROC_ESTATE before accept reported any;
 * MPROC_EINVAL.
 */
MPROC_EXTERN int mproc_listener_last_accepted(const mproc_listener *l,
                                              mproc_peer_info *out);

/* Stop listening, close unfinished handshakes and connections not yet
 * handed out, unlink a Unix socket path (and the directory the
 * listener created), free.  NULL: no-op.  Returns 0. */
MPROC_EXTERN int mproc_listener_close(mproc_listener *l);

typedef struct mproc_client_opts {
  int family;           /* MPROC_AF_* */
  const void *authkey;  /* NULL: none */
  size_t authkey_len;
  double timeout;       /* connect + handshake, a limit: 0 (the
                           default): 5 s for the connect and 5 s for the
                           handshake; < 0 (MPROC_FOREVER): no limit; NaN:
                           MPROC_EINVAL */
  int strict_auth;      /* refuse a legacy MD5 challenge */
  size_t maxlength;     /* receive limit of the connection; 0:
                           MPROC_NET_MAXLENGTH */
} mproc_client_opts;

/*
 * mproc_client_connect - connect to a Listener (mproc's or Python's) and,
 * with an authkey, authenticate both ways.  Returns 0 and *out;
 * MPROC_ECONNREFUSED; MPROC_ENOENT (no such Unix path); MPROC_EAUTH
 * (either side refused); MPROC_ETIMEDOUT; MPROC_EINVAL; other errno.
 */
MPROC_EXTERN int mproc_client_connect(mproc_connection **out,
                                      const char *address,
                                      const mproc_client_opts *opts);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_CONNECTION_H */
