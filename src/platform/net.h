/*
 * src/platform/net.h - listening and connecting sockets: Unix paths (never
 * the abstract namespace), TCP, peer credentials, private directories.
 * Part of platform.h (include that).
 *
 * Owned by net.c.  Every fd is close-on-exec and >= 3; every call loops on
 * EINTR keeping its deadline; errors are -errno.  listener.c is the user:
 * it decides policy (which address, which checks), this layer only does
 * what the OS offers, one call at a time.
 */
#ifndef MPROC_PLATFORM_NET_H
#define MPROC_PLATFORM_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* A socket address of any family mproc uses, with its length. */
typedef struct mproc__sockaddr {
  struct sockaddr_storage ss;
  socklen_t len;
} mproc__sockaddr;

/* The families, as mproc__sockaddr_family reports them. */
enum {
  MPROC__NET_NONE = 0,
  MPROC__NET_UNIX = 1,
  MPROC__NET_INET4 = 2,
  MPROC__NET_INET6 = 3
};

/* The longest Unix socket path the kernel takes, without its NUL (107 on
 * Linux). */
size_t mproc__unix_path_max(void);

/*
 * A Unix socket address for the filesystem path `path`.  Returns 0;
 * -EINVAL for an empty path or an abstract name (one starting with '@',
 * the notation of ss(8) and Python's repr; a leading NUL cannot be passed
 * in a C string and reads as empty); -ENAMETOOLONG if it does not fit in
 * sun_path.
 */
int mproc__sockaddr_unix(mproc__sockaddr *out, const char *path);

/*
 * A TCP address for host (an IPv4 address or a name, resolved to IPv4 as
 * Python's AF_INET; or, with v6 set, a numeric IPv6 address without
 * brackets) and port (decimal digits, 0-65535), through getaddrinfo; the
 * first result is used.  Returns 0; -EINVAL (bad port, unknown host, not
 * an address of that family); -EAGAIN (the resolver could not answer
 * now); -ENOMEM; another -errno.
 */
int mproc__sockaddr_inet(mproc__sockaddr *out, const char *host,
                         const char *port, int v6);

/* MPROC__NET_UNIX, _INET4, _INET6, or _NONE. */
int mproc__sockaddr_family(const mproc__sockaddr *a);

/*
 * The address as text: the path; "a.b.c.d:port"; "[v6]:port".  Writes at
 * most cap bytes with the NUL.  Returns the length; -ENAMETOOLONG when cap
 * is too small; -EINVAL for an unknown family.
 */
int mproc__sockaddr_format(const mproc__sockaddr *a, char *buf, size_t cap);

/*
 * socket + bind + listen.  TCP sockets get SO_REUSEADDR first (a restarted
 * server can bind while old connections sit in TIME_WAIT; it never lets
 * two listeners share a port on Linux).  The listening fd is non-blocking,
 * so that accept after a poll cannot block on a client that went away in
 * between.  backlog <= 0: SOMAXCONN (the kernel caps any value at
 * net.core.somaxconn).  Returns the fd; -EADDRINUSE; -EACCES;
 * -EADDRNOTAVAIL; -ENOENT (a Unix path in a missing directory); -errno.
 */
int mproc__net_listen(const mproc__sockaddr *a, int backlog);

/*
 * Wait (up to the deadline; NULL: forever) for a connection on the
 * listening fd and accept it: a blocking, close-on-exec fd >= 3, with
 * TCP_NODELAY on TCP.  Errors the kernel reports for a connection that
 * died in the queue (ECONNABORTED, and the network errors accept(2) says
 * to treat as EAGAIN) are skipped.  Returns the fd; -ETIMEDOUT; -EMFILE,
 * -ENFILE, -ENOMEM; -errno.
 */
int mproc__net_accept(int lfd, const mproc__deadline *d);

/*
 * Connect to a, within the deadline (NULL: forever): a non-blocking
 * connect and a poll, so that neither an unreachable TCP host nor a full
 * Unix backlog (which makes a non-blocking Unix connect fail with EAGAIN,
 * retried here every few milliseconds) holds the caller past it.  The fd
 * returned is blocking again, close-on-exec, >= 3, with TCP_NODELAY on
 * TCP.  Returns the fd; -ETIMEDOUT; -ECONNREFUSED; -ENOENT (no such Unix
 * path); -EACCES; -errno.
 */
int mproc__net_connect(const mproc__sockaddr *a, const mproc__deadline *d);

/* getsockname(2): the address fd is bound to (the real port after a bind
 * to port 0).  Returns 0 or -errno. */
int mproc__net_sockname(int fd, mproc__sockaddr *out);

/*
 * One accept4(2) on a non-blocking listening fd, no waiting: a blocking,
 * close-on-exec fd >= 3 (TCP_NODELAY on TCP), and the peer's address in
 * *peer (may be NULL; for a Unix peer usually an unnamed address, which
 * mproc__sockaddr_format writes as "").  Connections that died in the
 * queue are skipped as mproc__net_accept skips them.  Returns the fd;
 * -EAGAIN (none queued); -EMFILE, -ENFILE, -ENOMEM; -errno.
 */
int mproc__net_accept_one(int lfd, mproc__sockaddr *peer);

/* The credentials of the process at the other end of a connected Unix
 * socket, as the kernel recorded them at connect (SO_PEERCRED). */
typedef struct mproc__peer_cred {
  int32_t pid;
  uint32_t uid, gid;
} mproc__peer_cred;

/* Returns 0 and *out, or -errno (-ENOTSOCK, -EOPNOTSUPP on TCP). */
int mproc__net_peer_cred(int fd, mproc__peer_cred *out);

/* The effective uid of the process at the other end of a connected Unix
 * socket, as the kernel recorded it at connect (SO_PEERCRED).  Returns 0
 * or -errno. */
int mproc__net_peer_uid(int fd, uint32_t *uid);

/* mkdtemp(3): tmpl ends in "XXXXXX", replaced in place; the directory is
 * made with mode 0700.  Returns 0 or -errno. */
int mproc__mkdtemp(char *tmpl);

/* What listener.c checks of a path. */
enum { MPROC__PATH_OTHER = 0, MPROC__PATH_DIR = 1, MPROC__PATH_SOCKET = 2 };
typedef struct mproc__path_info {
  uint64_t dev, ino; /* identity */
  uint32_t uid;      /* owner */
  uint32_t mode;     /* permission bits (st_mode & 07777) */
  int type;          /* MPROC__PATH_* */
} mproc__path_info;

/* stat(2) (follow != 0) or lstat(2) of path.  Returns 0 or -errno. */
int mproc__path_stat(const char *path, int follow, mproc__path_info *out);

/* unlink(2), rmdir(2).  Return 0 or -errno. */
int mproc__unlink(const char *path);
int mproc__rmdir(const char *path);

#endif /* MPROC_PLATFORM_NET_H */
