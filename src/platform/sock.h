/*
 * src/platform/sock.h - stream sockets and pipes: creation, I/O with
 * deadlines, poll of many fds.  Part of platform.h (include that).
 *
 * Owned by sock.c.  Every fd is close-on-exec; every call loops on EINTR
 * keeping its deadline; writes never raise SIGPIPE; errors are -errno.
 */
#ifndef MPROC_PLATFORM_SOCK_H
#define MPROC_PLATFORM_SOCK_H

#endif /* MPROC_PLATFORM_SOCK_H */
