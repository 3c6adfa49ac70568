/*
 * sock.c - stream sockets and pipes: socketpairs, exact reads, reads of
 * what is there, and complete writes with deadlines, and poll of many fds
 * (declared in sock.h).
 *
 * DESIGN
 * The fds a connection uses are normally blocking, as Python's are.  With
 * no deadline the I/O is a plain blocking loop: the kernel sleeps in
 * read/write, and EINTR (a handler installed without SA_RESTART) or a
 * short transfer simply continues the loop.  With a deadline nothing may
 * sleep inside read/write past it, so every transfer is preceded by a
 * poll(2) for the fd with the time left, and sized so that it cannot
 * block once poll said the fd is ready: sockets use MSG_DONTWAIT, and a
 * write to a pipe is at most PIPE_BUF bytes (POLLOUT on a Linux pipe means
 * at least one free page slot).  EAGAIN, which a non-blocking fd handed to
 * us may give, is answered the same way: poll, then try again.
 *
 * SIGPIPE.  A write to a socket whose peer is gone would raise SIGPIPE,
 * whose default action kills the process; sockets are written with
 * send(MSG_NOSIGNAL).  Pipes have no such flag, so SIGPIPE is blocked in
 * the calling thread around the write, and a SIGPIPE the write generated
 * (thread-directed, so it stays pending on this thread) is consumed with
 * sigtimedwait and a zero timeout before the old mask comes back, unless
 * one was already pending before: that one belongs to someone else and
 * must stay.  The write then reports EPIPE and nothing else happens.
 */
#include "platform.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* The most one read or write asks for: far below SSIZE_MAX, so the
 * kernel's result always fits, and large enough to cost nothing. */
#define MPROC__IO_CHUNK ((size_t)1 << 30)

int mproc__socketpair(int fds[2]) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return -errno;
  }
  sv[0] = mproc__fd_above_stdio(sv[0]);
  sv[1] = mproc__fd_above_stdio(sv[1]);
  if (sv[0] < 0 || sv[1] < 0) {
    int err = sv[0] < 0 ? sv[0] : sv[1];
    mproc__close(sv[0]);
    mproc__close(sv[1]);
    return err;
  }
  fds[0] = sv[0];
  fds[1] = sv[1];
  return 0;
}

int mproc__fd_is_socket(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    return -errno;
  }
  return S_ISSOCK(st.st_mode) ? 1 : 0;
}

/*
 * Wait until fd reports one of events (or an error or hang-up, which the
 * following read or write will turn into its own error) or the deadline
 * passes.  Returns 1 ready, 0 the deadline passed, -EBADF for a closed fd,
 * another -errno.  poll's millisecond timeout is rounded up, and an early
 * return with nothing ready is waited out, so 0 means the deadline really
 * passed.
 */
static int wait_fd(int fd, short events, const mproc__deadline *d) {
  for (;;) {
    struct pollfd pfd = {.fd = fd, .events = events};
    int r = poll(&pfd, 1, mproc__deadline_left_ms(d));
    if (r > 0) {
      return (pfd.revents & POLLNVAL) ? -EBADF : 1;
    }
    if (r == 0) {
      if (mproc__deadline_left_ns(d) == 0) {
        return 0;
      }
      continue;
    }
    if (errno != EINTR) {
      return -errno;
    }
  }
}

/* State of the SIGPIPE guard around a write to a pipe. */
typedef struct sigpipe_guard {
  int was_pending; /* a SIGPIPE was pending before: not ours to consume */
  sigset_t old;    /* the thread's mask to restore */
} sigpipe_guard;

static void sigpipe_block(sigpipe_guard *g) {
  sigset_t set, pending;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  sigemptyset(&pending);
  (void)sigpending(&pending);
  g->was_pending = sigismember(&pending, SIGPIPE) == 1;
  (void)pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

/* Restore the mask; first consume the SIGPIPE our write raised (epipe),
 * so that unblocking does not deliver it. */
static void sigpipe_restore(sigpipe_guard *g, int epipe) {
  if (epipe && !g->was_pending) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    struct timespec zero = {0, 0};
    int r;
    do {
      r = sigtimedwait(&set, NULL, &zero);
    } while (r < 0 && errno == EINTR);
  }
  (void)pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* Trim iov[0..cnt) so that it covers at most limit bytes; returns the new
 * count. */
static int iov_limit(struct iovec *iov, int cnt, size_t limit) {
  size_t sum = 0;
  for (int i = 0; i < cnt; i++) {
    if (sum + iov[i].iov_len >= limit) {
      iov[i].iov_len = limit - sum;
      return iov[i].iov_len > 0 ? i + 1 : i;
    }
    sum += iov[i].iov_len;
  }
  return cnt;
}

/* The write loop of mproc__stream_write2, without the SIGPIPE guard.
 * Returns 0 or -errno; *off advances with every byte written. */
static int write2_loop(int fd, int is_socket, const char *a, size_t alen,
                       const char *b, size_t blen, const mproc__deadline *d,
                       size_t *off) {
  int timed = d != NULL && !d->forever;
  size_t total = alen + blen;
  while (*off < total) {
    if (timed) {
      int w = wait_fd(fd, POLLOUT, d);
      if (w <= 0) {
        return w == 0 ? -ETIMEDOUT : w;
      }
    }
    struct iovec iov[2];
    int cnt = 0;
    if (*off < alen) {
      iov[cnt].iov_base = (void *)(a + *off);
      iov[cnt++].iov_len = alen - *off;
      if (blen > 0) {
        iov[cnt].iov_base = (void *)b;
        iov[cnt++].iov_len = blen;
      }
    } else {
      iov[cnt].iov_base = (void *)(b + (*off - alen));
      iov[cnt++].iov_len = blen - (*off - alen);
    }
    /* A timed write to a pipe must not block after POLLOUT: one page. */
    cnt = iov_limit(iov, cnt,
                    (timed && !is_socket) ? (size_t)PIPE_BUF : MPROC__IO_CHUNK);
    ssize_t n;
    if (is_socket) {
      struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
      n = sendmsg(fd, &m, MSG_NOSIGNAL | (timed ? MSG_DONTWAIT : 0));
    } else {
      n = writev(fd, iov, cnt);
    }
    if (n < 0) {
      int err = errno;
      if (err == EINTR) {
        continue;
      }
      if (err == EAGAIN || err == EWOULDBLOCK) {
        int w = wait_fd(fd, POLLOUT, d);
        if (w <= 0) {
          return w == 0 ? -ETIMEDOUT : w;
        }
        continue;
      }
      return -err;
    }
    *off += (size_t)n;
  }
  return 0;
}

int mproc__stream_write2(int fd, int is_socket, const void *a, size_t alen,
                         const void *b, size_t blen, const mproc__deadline *d,
                         size_t *done) {
  size_t off = 0;
  int r;
  if (alen > SIZE_MAX - blen) {
    r = -EINVAL;
  } else if (is_socket) {
    r = write2_loop(fd, 1, a, alen, b, blen, d, &off);
  } else {
    sigpipe_guard g;
    sigpipe_block(&g);
    r = write2_loop(fd, 0, a, alen, b, blen, d, &off);
    sigpipe_restore(&g, r == -EPIPE);
  }
  if (done != NULL) {
    *done = off;
  }
  return r;
}

int mproc__stream_read_exact(int fd, int is_socket, void *buf, size_t len,
                             const mproc__deadline *d, size_t *done) {
  int timed = d != NULL && !d->forever;
  size_t got = 0;
  int r = 0;
  while (got < len) {
    if (timed) {
      int w = wait_fd(fd, POLLIN, d);
      if (w <= 0) {
        r = w == 0 ? -ETIMEDOUT : w;
        break;
      }
    }
    size_t want = len - got;
    if (want > MPROC__IO_CHUNK) {
      want = MPROC__IO_CHUNK;
    }
    ssize_t n;
    if (is_socket) {
      n = recv(fd, (char *)buf + got, want, timed ? MSG_DONTWAIT : 0);
    } else {
      /* After POLLIN a pipe read returns what is there without blocking. */
      n = read(fd, (char *)buf + got, want);
    }
    if (n < 0) {
      int err = errno;
      if (err == EINTR) {
        continue;
      }
      if (err == EAGAIN || err == EWOULDBLOCK) {
        int w = wait_fd(fd, POLLIN, d);
        if (w <= 0) {
          r = w == 0 ? -ETIMEDOUT : w;
          break;
        }
        continue;
      }
      r = -err;
      break;
    }
    if (n == 0) {
      r = 1;
      break;
    }
    got += (size_t)n;
  }
  if (done != NULL) {
    *done = got;
  }
  return r;
}

int mproc__stream_read_some(int fd, int is_socket, void *buf, size_t len,
                            const mproc__deadline *d, size_t *got) {
  int timed = d != NULL && !d->forever;
  *got = 0;
  if (len == 0) {
    return -EINVAL; /* a read of 0 bytes would look like end of file */
  }
  if (len > MPROC__IO_CHUNK) {
    len = MPROC__IO_CHUNK;
  }
  for (;;) {
    if (timed) {
      int w = wait_fd(fd, POLLIN, d);
      if (w <= 0) {
        return w == 0 ? -ETIMEDOUT : w;
      }
    }
    ssize_t n;
    if (is_socket) {
      n = recv(fd, buf, len, timed ? MSG_DONTWAIT : 0);
    } else {
      /* After POLLIN a pipe read returns what is there without blocking. */
      n = read(fd, buf, len);
    }
    if (n < 0) {
      int err = errno;
      if (err == EINTR) {
        continue;
      }
      if (err == EAGAIN || err == EWOULDBLOCK) {
        int w = wait_fd(fd, POLLIN, d);
        if (w <= 0) {
          return w == 0 ? -ETIMEDOUT : w;
        }
        continue;
      }
      return -err;
    }
    if (n == 0) {
      return 1;
    }
    *got = (size_t)n;
    return 0;
  }
}

int mproc__poll_readable(const int *fds, size_t n, int *ready,
                         const mproc__deadline *d) {
  return mproc__poll_rw(fds, NULL, n, ready, d);
}

int mproc__poll_rw(const int *fds, const unsigned char *want_write, size_t n,
                   int *ready, const mproc__deadline *d) {
  struct pollfd stack[16];
  struct pollfd *pfds = stack;
  if (n > sizeof stack / sizeof stack[0]) {
    if (n > (size_t)INT_MAX) {
      return -EINVAL;
    }
    pfds = malloc(n * sizeof *pfds);
    if (pfds == NULL) {
      return -ENOMEM;
    }
  }
  int r;
  for (;;) {
    for (size_t i = 0; i < n; i++) {
      pfds[i].fd = fds[i];
      pfds[i].events =
          (want_write != NULL && want_write[i]) ? POLLOUT : POLLIN;
      pfds[i].revents = 0;
    }
    r = poll(pfds, (nfds_t)n, mproc__deadline_left_ms(d));
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      r = -errno;
      break;
    }
    if (r == 0) {
      /* poll rounds to milliseconds and may return early: only a deadline
       * that really passed is a timeout. */
      if (mproc__deadline_left_ns(d) == 0) {
        break;
      }
      continue;
    }
    int count = 0;
    for (size_t i = 0; i < n; i++) {
      if (pfds[i].revents & POLLNVAL) {
        count = -EBADF;
        break;
      }
      ready[i] =
          (pfds[i].revents & (POLLIN | POLLOUT | POLLHUP | POLLERR)) ? 1 : 0;
      count += ready[i];
    }
    if (count == 0) {
      continue; /* only events we did not ask for: keep waiting */
    }
    r = count;
    break;
  }
  if (r <= 0) {
    for (size_t i = 0; i < n; i++) {
      ready[i] = 0;
    }
  }
  if (pfds != stack) {
    free(pfds);
  }
  return r;
}

int mproc__sock_send_nb(int fd, const void *buf, size_t len) {
  for (;;) {
    ssize_t r = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r >= 0) {
      return r > INT_MAX ? INT_MAX : (int)r;
    }
    if (errno == EINTR) {
      continue;
    }
    return (errno == EWOULDBLOCK) ? -EAGAIN : -errno;
  }
}

int mproc__sock_recv_nb(int fd, void *buf, size_t len) {
  for (;;) {
    ssize_t r = recv(fd, buf, len, MSG_DONTWAIT);
    if (r >= 0) {
      return r > INT_MAX ? INT_MAX : (int)r;
    }
    if (errno == EINTR) {
      continue;
    }
    return (errno == EWOULDBLOCK) ? -EAGAIN : -errno;
  }
}
