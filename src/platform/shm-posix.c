/*
 * shm-posix.c - named POSIX shared memory (shm_open, shm_unlink), the file
 * checks made on it (fstat, fchmod, posix_fallocate) and random bytes for
 * its names (getrandom).
 *
 * glibc's shm_open opens /dev/shm/NAME with O_NOFOLLOW | O_CLOEXEC added;
 * the flags are passed again here so that a C library that does not add
 * them still gives a close-on-exec fd that never follows a symbolic link.
 */
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* "/" + name + NUL; a longer name is refused before the call. */
static int slash_name(char *buf, size_t cap, const char *name) {
  size_t len = strlen(name);
  if (len + 2 > cap) {
    return -ENAMETOOLONG;
  }
  buf[0] = '/';
  memcpy(buf + 1, name, len + 1);
  return 0;
}

int mproc__shm_open(const char *name, int oflag, mode_t mode) {
  char path[NAME_MAX + 2];
  int r = slash_name(path, sizeof path, name);
  if (r < 0) {
    return r;
  }
  int fd;
  do {
    fd = shm_open(path, oflag | O_NOFOLLOW | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    return -errno;
  }
  return mproc__fd_above_stdio(fd);
}

int mproc__shm_unlink(const char *name) {
  char path[NAME_MAX + 2];
  int r = slash_name(path, sizeof path, name);
  if (r < 0) {
    return r;
  }
  return shm_unlink(path) == 0 ? 0 : -errno;
}

int mproc__fchmod(int fd, mode_t mode) {
  return fchmod(fd, mode) == 0 ? 0 : -errno;
}

int mproc__fallocate(int fd, uint64_t size) {
  if (size > (uint64_t)INT64_MAX) {
    return -EFBIG;
  }
  int r;
  do {
    /* posix_fallocate returns the error number, it does not set errno. */
    r = posix_fallocate(fd, 0, (off_t)size);
  } while (r == EINTR);
  return -r;
}

int mproc__fstat(int fd, mproc__file_info *out) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    return -errno;
  }
  out->dev = (uint64_t)st.st_dev;
  out->ino = (uint64_t)st.st_ino;
  out->size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
  out->blocks = st.st_blocks > 0 ? (uint64_t)st.st_blocks : 0;
  out->uid = (uint32_t)st.st_uid;
  out->mode = (uint32_t)(st.st_mode & 07777);
  out->regular = S_ISREG(st.st_mode) ? 1 : 0;
  return 0;
}

uid_t mproc__geteuid(void) { return geteuid(); }

int mproc__random_bytes(void *buf, size_t n) {
  unsigned char *p = buf;
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(p + got, n - got, 0);
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r < 0 && errno == ENOSYS) {
      break; /* a kernel before 3.17: read /dev/urandom */
    }
    return r < 0 ? -errno : -EIO;
  }
  if (got == n) {
    return 0;
  }
  int fd = mproc__open("/dev/urandom", O_RDONLY, 0);
  if (fd < 0) {
    return fd;
  }
  ssize_t r = mproc__read_full(fd, p + got, n - got);
  mproc__close(fd);
  if (r < 0) {
    return (int)r;
  }
  return (size_t)r == n - got ? 0 : -EIO;
}
