/*
 * fd.c - file descriptors: close-on-exec always, EINTR loops, and never a
 * retried close().
 *
 * Why fds 0-2 are refused for internal use: a daemon that closed its stdio
 * would otherwise get an mproc pipe or memfd as fd 1, and its next printf
 * would write into it (SQLite's robust_open makes the same rule).
 */
#include "platform.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

void mproc__close(int fd) {
  if (fd < 0) {
    return;
  }
  /* Linux releases the fd even when close reports EINTR: retrying could
   * close an fd another thread just opened. */
  (void)close(fd);
}

int mproc__fd_above_stdio(int fd) {
  if (fd < 0 || fd > 2) {
    return fd;
  }
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int err = errno;
  mproc__close(fd);
  return nfd < 0 ? -err : nfd;
}

int mproc__open(const char *path, int flags, mode_t mode) {
  int fd;
  do {
    fd = open(path, flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    return -errno;
  }
  return mproc__fd_above_stdio(fd);
}

int mproc__pipe(int fds[2], int extra_flags) {
  int p[2];
  if (pipe2(p, O_CLOEXEC | extra_flags) != 0) {
    return -errno;
  }
  p[0] = mproc__fd_above_stdio(p[0]);
  p[1] = mproc__fd_above_stdio(p[1]);
  if (p[0] < 0 || p[1] < 0) {
    int err = p[0] < 0 ? p[0] : p[1];
    mproc__close(p[0]);
    mproc__close(p[1]);
    return err;
  }
  fds[0] = p[0];
  fds[1] = p[1];
  return 0;
}

int mproc__dup2(int from, int to) {
  int r;
  do {
    r = dup2(from, to);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : r;
}

ssize_t mproc__read_full(int fd, void *buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = read(fd, (char *)buf + done, len - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    if (n == 0) {
      break;
    }
    done += (size_t)n;
  }
  return (ssize_t)done;
}

ssize_t mproc__write_full(int fd, const void *buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(fd, (const char *)buf + done, len - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    done += (size_t)n;
  }
  return (ssize_t)done;
}

int mproc__wait_readable(int fd, const mproc__deadline *d) {
  for (;;) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r = poll(&pfd, 1, mproc__deadline_left_ms(d));
    if (r > 0) {
      return 1;
    }
    if (r == 0) {
      /* poll rounds to milliseconds; only report a timeout once the
       * deadline has really passed. */
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

int mproc__epoll_create(void) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    return -errno;
  }
  return mproc__fd_above_stdio(ep);
}

int mproc__epoll_add(int ep, int fd, uint64_t data) {
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = data};
  return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

int mproc__epoll_del(int ep, int fd) {
  return epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) == 0 ? 0 : -errno;
}

int mproc__epoll_wait(int ep, uint64_t *data, int max, int timeout_ms) {
  struct epoll_event evs[32];
  if (max > 32) {
    max = 32;
  }
  int n = epoll_wait(ep, evs, max, timeout_ms);
  if (n < 0) {
    return errno == EINTR ? 0 : -errno;
  }
  for (int i = 0; i < n; i++) {
    data[i] = evs[i].data.u64;
  }
  return n;
}

int mproc__eventfd(void) {
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) {
    return -errno;
  }
  return mproc__fd_above_stdio(fd);
}

void mproc__eventfd_signal(int fd) {
  uint64_t one = 1;
  ssize_t r;
  do {
    r = write(fd, &one, sizeof one);
  } while (r < 0 && errno == EINTR);
}

void mproc__eventfd_drain(int fd) {
  uint64_t v;
  ssize_t r;
  do {
    r = read(fd, &v, sizeof v);
  } while (r < 0 && errno == EINTR);
}

int mproc__fd_count(void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) {
    return -errno;
  }
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] != '.') {
      n++;
    }
  }
  closedir(d);
  return n - 1; /* the directory's own fd */
}

int mproc__fd_set_cloexec(int fd, int on) {
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) {
    return -errno;
  }
  flags = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
  return fcntl(fd, F_SETFD, flags) == 0 ? 0 : -errno;
}

int mproc__close_inherited_except(const int *keep, int n) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) {
    return -errno;
  }
  int dfd = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char *end;
    long fd = strtol(e->d_name, &end, 10);
    if (*end != '\0' || end == e->d_name || fd <= 2 || fd == dfd) {
      continue;
    }
    int kept = 0;
    for (int i = 0; i < n && !kept; i++) {
      kept = keep[i] == fd;
    }
    int fl = kept ? 0 : fcntl((int)fd, F_GETFD);
    if (!kept && fl >= 0 && !(fl & FD_CLOEXEC)) {
      close((int)fd);
    }
  }
  closedir(d);
  return 0;
}

int mproc__fd_dup_above(int fd, int min) {
  int r = fcntl(fd, F_DUPFD_CLOEXEC, min);
  return r < 0 ? -errno : r;
}

int mproc__fd_valid(int fd) {
  return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}
