/*
 * spawn.c - starting a program image: posix_spawn with a chosen set of
 * inherited fds, and Unix socket pairs that carry fds (SCM_RIGHTS) and
 * the sender's credentials (SCM_CREDENTIALS).
 *
 * posix_spawn rather than fork + exec: glibc implements it with
 * clone(CLONE_VM | CLONE_VFORK), so the parent's page tables are not
 * copied and no atfork handler runs; the cost is the exec alone.  Every fd
 * mproc opens is close-on-exec; the ones the new image must keep are
 * named in `keep` and dup2'ed onto themselves, which clears their
 * FD_CLOEXEC in the child only (POSIX 2024; glibc since 2.29), so no
 * other thread's concurrent fork or exec can inherit them.
 */
#include "platform.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int mproc__spawn_image(pid_t *pid, const char *path, char *const argv[],
                       char *const envp[], const int *keep, int nkeep,
                       int stdin_fd, const sigset_t *mask) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  int r = posix_spawn_file_actions_init(&fa);
  if (r != 0) {
    return -r;
  }
  r = posix_spawnattr_init(&at);
  if (r != 0) {
    posix_spawn_file_actions_destroy(&fa);
    return -r;
  }
  for (int i = 0; i < nkeep && r == 0; i++) {
    if (keep[i] >= 0) {
      r = posix_spawn_file_actions_adddup2(&fa, keep[i], keep[i]);
    }
  }
  if (r == 0 && stdin_fd >= 0) {
    r = posix_spawn_file_actions_adddup2(&fa, stdin_fd, 0);
  }
  if (r == 0 && mask != NULL) {
    r = posix_spawnattr_setsigmask(&at, mask);
    if (r == 0) {
      r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
    }
  }
  if (r == 0) {
    r = posix_spawn(pid, path, &fa, &at, argv, envp);
  }
  posix_spawnattr_destroy(&at);
  posix_spawn_file_actions_destroy(&fa);
  return -r;
}

int mproc__socketpair_seq(int fds[2]) {
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    return -errno;
  }
  return 0;
}

int mproc__sock_passcred(int fd) {
  int one = 1;
  return setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0
             ? 0
             : -errno;
}

ssize_t mproc__send_fds(int sock, const void *buf, size_t len,
                        const int *fds, int nfds) {
  return mproc__send_fds2(sock, buf, len, NULL, 0, fds, nfds);
}

ssize_t mproc__send_fds2(int sock, const void *a, size_t alen, const void *b,
                         size_t blen, const int *fds, int nfds) {
  struct iovec iov[2] = {{.iov_base = (void *)a, .iov_len = alen},
                         {.iov_base = (void *)b, .iov_len = blen}};
  union {
    struct cmsghdr h;
    char b[CMSG_SPACE(sizeof(int) * MPROC__MAX_PASS_FDS)];
  } u;
  struct msghdr m = {.msg_iov = iov, .msg_iovlen = b != NULL ? 2 : 1};
  if (nfds > MPROC__MAX_PASS_FDS) {
    return -EINVAL;
  }
  if (nfds > 0) {
    memset(&u, 0, sizeof u);
    m.msg_control = u.b;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
  }
  ssize_t n;
  do {
    n = sendmsg(sock, &m, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

ssize_t mproc__recv_fds(int sock, void *buf, size_t len, int *fds,
                        int *nfds, uid_t *uid) {
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  union {
    struct cmsghdr h;
    char b[CMSG_SPACE(sizeof(int) * MPROC__MAX_PASS_FDS) +
           CMSG_SPACE(sizeof(struct ucred))];
  } u;
  struct msghdr m = {.msg_iov = &iov,
                     .msg_iovlen = 1,
                     .msg_control = u.b,
                     .msg_controllen = sizeof u.b};
  ssize_t n;
  do {
    n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  int got = 0;
  if (uid != NULL) {
    *uid = (uid_t)-1;
  }
  if (n >= 0) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL;
         c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k; i++) {
          int fd;
          memcpy(&fd, CMSG_DATA(c) + sizeof(int) * (size_t)i, sizeof fd);
          if (fds != NULL && got < *nfds) {
            fds[got++] = fd;
          } else {
            close(fd); /* more than asked for: never leak them */
          }
        }
      } else if (c->cmsg_level == SOL_SOCKET &&
                 c->cmsg_type == SCM_CREDENTIALS && uid != NULL) {
        struct ucred cr;
        memcpy(&cr, CMSG_DATA(c), sizeof cr);
        *uid = cr.uid;
      }
    }
    if (m.msg_flags & MSG_CTRUNC) {
      for (int i = 0; i < got; i++) {
        close(fds[i]);
      }
      got = 0;
      n = -EPROTO;
    }
  }
  if (nfds != NULL) {
    *nfds = got;
  }
  return n < 0 ? (n == -1 ? -errno : n) : n;
}
