/*
 * src/platform/sock.h - stream sockets and pipes: creation, I/O with
 * deadlines, poll of many fds.  Part of platform.h (include that).
 *
 * Owned by sock.c.  Every fd is close-on-exec; every call loops on EINTR
 * keeping its deadline; writes never raise SIGPIPE; errors are -errno.
 *
 * A deadline pointer may be NULL: no limit.  The fds may be blocking or
 * non-blocking: EAGAIN is answered by waiting in poll(2) for the fd.
 */
#ifndef MPROC_PLATFORM_SOCK_H
#define MPROC_PLATFORM_SOCK_H

#include <stddef.h>

struct mproc__deadline;

/* socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC), both ends >= 3.
 * Returns 0 and fds[0..1], or -errno (nothing left open). */
int mproc__socketpair(int fds[2]);

/* Whether fd is a socket (fstat S_ISSOCK): 1, 0, or -errno (-EBADF). */
int mproc__fd_is_socket(int fd);

/*
 * Write a then b (alen + blen bytes; either may be empty) completely, in
 * as few system calls as the kernel allows (writev / sendmsg), before the
 * deadline.  is_socket: the fd is a socket (send with MSG_NOSIGNAL); else
 * a pipe or file, written with SIGPIPE blocked in the calling thread and
 * a SIGPIPE the write raised consumed.  Total alen + blen <= PIPE_BUF on
 * a pipe is one atomic write when there is no deadline.
 *
 * Returns 0 (all written); -ETIMEDOUT; -EPIPE (the reader is gone);
 * -ECONNRESET; another -errno.  *done (may be NULL): the bytes written,
 * also on failure.
 */
int mproc__stream_write2(int fd, int is_socket, const void *a, size_t alen,
                         const void *b, size_t blen,
                         const struct mproc__deadline *d, size_t *done);

/*
 * Read exactly len bytes into buf before the deadline.  Returns 0 (all
 * read); 1 at end of file before len bytes (*done says how many came
 * first); -ETIMEDOUT; -ECONNRESET; another -errno.  *done (may be NULL):
 * the bytes read, also on failure.
 */
int mproc__stream_read_exact(int fd, int is_socket, void *buf, size_t len,
                             const struct mproc__deadline *d, size_t *done);

/*
 * Read what is there, at most len (> 0) bytes, into buf: one read(2) or
 * recv(2) when bytes are waiting, else wait (before the deadline) until
 * some are.  Returns 0 with *got > 0 bytes read; 1 at end of file;
 * -ETIMEDOUT (nothing came in time); -EINVAL (len 0); -ECONNRESET;
 * another -errno.  *got (required) is 0 on every result but 0.
 */
int mproc__stream_read_some(int fd, int is_socket, void *buf, size_t len,
                            const struct mproc__deadline *d, size_t *got);

/*
 * Wait until at least one of fds[0..n) is readable or hung up (or in
 * error), or the deadline passes; ready[i] is set to 1 or 0 for each.
 * A deadline in the past polls once.  Early wakeups that report nothing
 * are waited out until the deadline really passed.  Returns the number
 * ready (0: the deadline passed); -EBADF when an fd is not open (POLLNVAL);
 * -ENOMEM; another -errno.
 */
int mproc__poll_readable(const int *fds, size_t n, int *ready,
                         const struct mproc__deadline *d);

/*
 * mproc__poll_readable, but each fd is waited for in one direction:
 * writable (POLLOUT) where want_write[i] is nonzero, else readable;
 * want_write NULL: all readable.  Hang-ups and errors count as ready in
 * either direction.  Returns as mproc__poll_readable.
 */
int mproc__poll_rw(const int *fds, const unsigned char *want_write, size_t n,
                   int *ready, const struct mproc__deadline *d);

/*
 * One send(2) or recv(2) on a socket that never blocks (MSG_DONTWAIT, so
 * the fd itself may stay blocking) and never raises SIGPIPE; EINTR is
 * retried.  len should be at most INT_MAX.  send: the bytes sent (>= 0);
 * recv: the bytes read (> 0) or 0 at end of file.  Both: -EAGAIN when the
 * socket cannot take or give anything now; -EPIPE, -ECONNRESET, another
 * -errno.
 */
int mproc__sock_send_nb(int fd, const void *buf, size_t len);
int mproc__sock_recv_nb(int fd, void *buf, size_t len);

#endif /* MPROC_PLATFORM_SOCK_H */
