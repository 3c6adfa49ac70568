/*
 * net.c - listening and connecting sockets for Listener/Client: Unix paths
 * and TCP, accept and connect with deadlines, peer credentials, and the
 * private directory a default Unix listener lives in.
 *
 * DESIGN
 * One OS operation per function, no policy: listener.c decides which
 * address to use and which checks to make; this file makes the calls with
 * the platform layer's rules (close-on-exec fds above 2, EINTR loops
 * keeping the deadline, -errno results).
 *
 * Deadlines.  A blocking accept(2) or connect(2) cannot be bounded, so both
 * go through non-blocking sockets and poll(2): the listening fd is
 * non-blocking for good (a client may vanish between poll and accept,
 * which would otherwise block the server), and a connecting fd is
 * non-blocking only until the connection is made, then blocking again, as
 * every mproc connection fd is.
 *
 * The abstract namespace is refused outright: its names carry no
 * permissions, so any process of any user in the network namespace can
 * connect (CVE-2022-42919 in Python's forkserver).
 */
#include "platform.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* listen(2)'s backlog when the caller gives none: SOMAXCONN (4096 since
 * Linux 5.4), which the kernel caps at net.core.somaxconn anyway.  A
 * small backlog makes a burst of clients fail: a Unix connect to a full
 * queue is refused at once (EAGAIN) when non-blocking, and TCP drops the
 * SYNs.  Each queued connection costs the kernel a socket, nothing in
 * mproc. */
#define DEFAULT_BACKLOG SOMAXCONN

/* How long a connect to a Unix socket whose backlog is full waits before
 * trying again (the kernel offers no readiness event for it). */
#define UNIX_BACKLOG_RETRY_NS 2000000u /* 2 ms */

size_t mproc__unix_path_max(void) {
  return sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
}

int mproc__sockaddr_unix(mproc__sockaddr *out, const char *path) {
  if (path == NULL || path[0] == '\0' || path[0] == '@') {
    return -EINVAL;
  }
  size_t len = strlen(path);
  if (len > mproc__unix_path_max()) {
    return -ENAMETOOLONG;
  }
  memset(out, 0, sizeof *out);
  struct sockaddr_un *un = (struct sockaddr_un *)&out->ss;
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, path, len + 1);
  out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
  return 0;
}

/* getaddrinfo's EAI_* codes as -errno. */
static int eai_errno(int rc, int saved_errno) {
  switch (rc) {
  case EAI_AGAIN:
    return -EAGAIN;
  case EAI_MEMORY:
    return -ENOMEM;
  case EAI_SYSTEM:
    return saved_errno != 0 ? -saved_errno : -EIO;
  default: /* EAI_NONAME, EAI_SERVICE, EAI_FAMILY, EAI_FAIL, ... */
    return -EINVAL;
  }
}

int mproc__sockaddr_inet(mproc__sockaddr *out, const char *host,
                         const char *port, int v6) {
  if (host == NULL || port == NULL || host[0] == '\0' || port[0] == '\0') {
    return -EINVAL;
  }
  /* Decimal digits only, 0-65535: getaddrinfo alone would take a service
   * name or a leading sign. */
  unsigned long p = 0;
  for (const char *c = port; *c != '\0'; c++) {
    if (*c < '0' || *c > '9' || c - port >= 5) {
      return -EINVAL;
    }
    p = p * 10 + (unsigned long)(*c - '0');
  }
  if (p > 65535) {
    return -EINVAL;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = v6 ? AF_INET6 : AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (v6 ? AI_NUMERICHOST : 0);
  struct addrinfo *res = NULL;
  errno = 0;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    return eai_errno(rc, errno);
  }
  int r = -EINVAL;
  for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    if (ai->ai_family == hints.ai_family &&
        ai->ai_addrlen <= sizeof out->ss) {
      memset(out, 0, sizeof *out);
      memcpy(&out->ss, ai->ai_addr, ai->ai_addrlen);
      out->len = ai->ai_addrlen;
      r = 0;
      break;
    }
  }
  freeaddrinfo(res);
  return r;
}

int mproc__sockaddr_family(const mproc__sockaddr *a) {
  switch (a->ss.ss_family) {
  case AF_UNIX:
    return MPROC__NET_UNIX;
  case AF_INET:
    return MPROC__NET_INET4;
  case AF_INET6:
    return MPROC__NET_INET6;
  default:
    return MPROC__NET_NONE;
  }
}

int mproc__sockaddr_format(const mproc__sockaddr *a, char *buf, size_t cap) {
  char text[INET6_ADDRSTRLEN];
  int n;
  switch (a->ss.ss_family) {
  case AF_UNIX: {
    const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;
    /* getsockname's length may or may not count the NUL; the path is
     * never longer than what is left of sun_path. */
    size_t max = a->len > offsetof(struct sockaddr_un, sun_path)
                     ? a->len - offsetof(struct sockaddr_un, sun_path)
                     : 0;
    if (max > sizeof un->sun_path) {
      max = sizeof un->sun_path;
    }
    n = snprintf(buf, cap, "%.*s", (int)strnlen(un->sun_path, max),
                 un->sun_path);
    break;
  }
  case AF_INET: {
    const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
    if (inet_ntop(AF_INET, &in->sin_addr, text, sizeof text) == NULL) {
      return -EINVAL;
    }
    n = snprintf(buf, cap, "%s:%u", text, (unsigned)ntohs(in->sin_port));
    break;
  }
  case AF_INET6: {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
    if (inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text) == NULL) {
      return -EINVAL;
    }
    n = snprintf(buf, cap, "[%s]:%u", text, (unsigned)ntohs(in6->sin6_port));
    break;
  }
  default:
    return -EINVAL;
  }
  if (n < 0) {
    return -EINVAL;
  }
  if ((size_t)n >= cap) {
    return -ENAMETOOLONG;
  }
  return n;
}

/* A new stream socket of a's family, close-on-exec, >= 3. */
static int new_socket(const mproc__sockaddr *a, int nonblock) {
  int fd = socket(a->ss.ss_family,
                  SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0),
                  0);
  if (fd < 0) {
    return -errno;
  }
  return mproc__fd_above_stdio(fd);
}

/* Small TCP messages (a handshake, a request) go out at once instead of
 * waiting for the peer's delayed ACK (Nagle).  Not a Unix socket option,
 * and its failure costs only latency, so it is not reported. */
static void set_nodelay(int fd, int family) {
  if (family == AF_INET || family == AF_INET6) {
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
}

static int set_blocking(int fd, int blocking) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) {
    return -errno;
  }
  int nfl = blocking ? (fl & ~O_NONBLOCK) : (fl | O_NONBLOCK);
  if (nfl != fl && fcntl(fd, F_SETFL, nfl) != 0) {
    return -errno;
  }
  return 0;
}

int mproc__net_listen(const mproc__sockaddr *a, int backlog) {
  int fd = new_socket(a, 1);
  if (fd < 0) {
    return fd;
  }
  int family = a->ss.ss_family;
  if (family == AF_INET || family == AF_INET6) {
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
      int err = -errno;
      mproc__close(fd);
      return err;
    }
  }
  if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0 ||
      listen(fd, backlog > 0 ? backlog : DEFAULT_BACKLOG) != 0) {
    int err = -errno;
    mproc__close(fd);
    return err;
  }
  return fd;
}

/* accept(2) errors that mean "this queued connection died; try the
 * next": ECONNABORTED, and the pending network errors Linux passes on
 * (accept(2), "Error handling"). */
static int accept_retryable(int err) {
  switch (err) {
  case EAGAIN:
#if EWOULDBLOCK != EAGAIN
  case EWOULDBLOCK:
#endif
  case ECONNABORTED:
  case EPROTO:
  case ENETDOWN:
  case ENOPROTOOPT:
  case EHOSTDOWN:
  case ENONET:
  case EHOSTUNREACH:
  case EOPNOTSUPP:
  case ENETUNREACH:
    return 1;
  default:
    return 0;
  }
}

int mproc__net_accept_one(int lfd, mproc__sockaddr *peer) {
  for (;;) {
    mproc__sockaddr tmp;
    mproc__sockaddr *a = peer != NULL ? peer : &tmp;
    memset(a, 0, sizeof *a);
    a->len = sizeof a->ss;
    int fd = accept4(lfd, (struct sockaddr *)&a->ss, &a->len, SOCK_CLOEXEC);
    if (fd >= 0) {
      fd = mproc__fd_above_stdio(fd);
      if (fd >= 0) {
        set_nodelay(fd, a->ss.ss_family);
      }
      return fd;
    }
    int err = errno;
    if (err == EINTR || (accept_retryable(err) && err != EAGAIN &&
                         err != EWOULDBLOCK)) {
      continue; /* a dead connection: the next one may be there already */
    }
    return (err == EWOULDBLOCK) ? -EAGAIN : -err;
  }
}

int mproc__net_accept(int lfd, const mproc__deadline *d) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
      fd = mproc__fd_above_stdio(fd);
      if (fd < 0) {
        return fd;
      }
      struct sockaddr_storage ss;
      socklen_t len = sizeof ss;
      if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        set_nodelay(fd, ss.ss_family);
      }
      return fd;
    }
    int err = errno;
    if (err == EINTR) {
      continue;
    }
    if (!accept_retryable(err)) {
      return -err;
    }
    if (err != EAGAIN && err != EWOULDBLOCK) {
      continue; /* a dead connection: the next one may be there already */
    }
    int r = mproc__wait_readable(lfd, d);
    if (r < 0) {
      return r;
    }
    if (r == 0) {
      return -ETIMEDOUT;
    }
  }
}

/* Wait until a non-blocking connect on fd completes; its result. */
static int finish_connect(int fd, const mproc__deadline *d) {
  for (;;) {
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int r = poll(&pfd, 1, mproc__deadline_left_ms(d));
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    if (r == 0) {
      if (mproc__deadline_left_ns(d) == 0) {
        return -ETIMEDOUT;
      }
      continue;
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) {
      return -errno;
    }
    return -soerr;
  }
}

int mproc__net_connect(const mproc__sockaddr *a, const mproc__deadline *d) {
  int family = a->ss.ss_family;
  for (;;) {
    int fd = new_socket(a, 1);
    if (fd < 0) {
      return fd;
    }
    int r = 0;
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) != 0) {
      int err = errno;
      if (err == EINPROGRESS || err == EINTR) {
        /* A connect interrupted by a signal goes on in the background,
         * as one in progress does; both end in POLLOUT. */
        r = finish_connect(fd, d);
      } else if (err == EAGAIN && family == AF_UNIX) {
        /* The listener's backlog is full: a blocking connect would sleep
         * until there is room; wait a little, within the deadline, and
         * try again with a new socket. */
        mproc__close(fd);
        uint64_t left = mproc__deadline_left_ns(d);
        if (left == 0) {
          return -ETIMEDOUT;
        }
        mproc__sleep_ns(left < UNIX_BACKLOG_RETRY_NS ? left
                                                     : UNIX_BACKLOG_RETRY_NS);
        continue;
      } else {
        r = -err;
      }
    }
    if (r == 0) {
      r = set_blocking(fd, 1);
    }
    if (r < 0) {
      mproc__close(fd);
      return r;
    }
    set_nodelay(fd, family);
    return fd;
  }
}

int mproc__net_sockname(int fd, mproc__sockaddr *out) {
  memset(out, 0, sizeof *out);
  socklen_t len = sizeof out->ss;
  if (getsockname(fd, (struct sockaddr *)&out->ss, &len) != 0) {
    return -errno;
  }
  out->len = len;
  return 0;
}

int mproc__net_peer_cred(int fd, mproc__peer_cred *out) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return -errno;
  }
  if (len < sizeof cred) {
    return -EPROTO;
  }
  out->pid = (int32_t)cred.pid;
  out->uid = (uint32_t)cred.uid;
  out->gid = (uint32_t)cred.gid;
  return 0;
}

int mproc__net_peer_uid(int fd, uint32_t *uid) {
  mproc__peer_cred cred = {0, 0, 0};
  int r = mproc__net_peer_cred(fd, &cred);
  if (r == 0) {
    *uid = cred.uid;
  }
  return r;
}

int mproc__mkdtemp(char *tmpl) {
  return mkdtemp(tmpl) != NULL ? 0 : -errno;
}

int mproc__path_stat(const char *path, int follow, mproc__path_info *out) {
  struct stat st;
  if ((follow ? stat(path, &st) : lstat(path, &st)) != 0) {
    return -errno;
  }
  out->dev = (uint64_t)st.st_dev;
  out->ino = (uint64_t)st.st_ino;
  out->uid = (uint32_t)st.st_uid;
  out->mode = (uint32_t)(st.st_mode & 07777);
  out->type = S_ISDIR(st.st_mode)    ? MPROC__PATH_DIR
              : S_ISSOCK(st.st_mode) ? MPROC__PATH_SOCKET
                                     : MPROC__PATH_OTHER;
  return 0;
}

int mproc__unlink(const char *path) {
  return unlink(path) == 0 ? 0 : -errno;
}

int mproc__rmdir(const char *path) { return rmdir(path) == 0 ? 0 : -errno; }
