/*
 * src/platform/net.h - listening and connecting sockets: Unix paths (never
 * the abstract namespace), TCP, peer credentials, private directories.
 * Part of platform.h (include that).
 *
 * Owned by net.c.  Every fd is close-on-exec; every call loops on EINTR
 * keeping its deadline; errors are -errno.
 */
#ifndef MPROC_PLATFORM_NET_H
#define MPROC_PLATFORM_NET_H

#endif /* MPROC_PLATFORM_NET_H */
