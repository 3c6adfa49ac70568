/*
 * memfd.c - anonymous shared memory: memfd_create and shared mappings.
 *
 * A memfd has no name to collide with, leak or hijack, and is freed with
 * its last fd and mapping, so a crash leaves nothing in /dev/shm.  On
 * kernels without memfd_create (before 3.17) an O_TMPFILE file in /dev/shm
 * gives the same properties.
 */
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

int mproc__memfd_create(const char *name) {
  int fd = (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC);
  if (fd < 0 && errno == ENOSYS) {
    fd = open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  }
  if (fd < 0) {
    return -errno;
  }
  return mproc__fd_above_stdio(fd);
}

int mproc__truncate(int fd, uint64_t size) {
  int r;
  do {
    r = ftruncate(fd, (off_t)size);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : 0;
}

int mproc__map_shared(int fd, size_t size, void *hint, int fixed, void **out) {
  int flags = MAP_SHARED | MAP_NORESERVE;
  void *p = MAP_FAILED;
  if (hint != NULL) {
    p = mmap(hint, size, PROT_READ | PROT_WRITE, flags | MAP_FIXED_NOREPLACE,
             fd, 0);
    /* Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat the address
     * as a hint: a mapping elsewhere is not what was asked for. */
    if (p != MAP_FAILED && p != hint) {
      munmap(p, size);
      p = MAP_FAILED;
      errno = EEXIST;
    }
    if (p == MAP_FAILED && fixed) {
      return -errno;
    }
  }
  if (p == MAP_FAILED) {
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, fd, 0);
  }
  if (p == MAP_FAILED) {
    return -errno;
  }
  *out = p;
  return 0;
}

int mproc__unmap(void *addr, size_t size) {
  return munmap(addr, size) == 0 ? 0 : -errno;
}

size_t mproc__page_size(void) {
  long ps = sysconf(_SC_PAGESIZE);
  return ps > 0 ? (size_t)ps : 4096;
}

int mproc__map_private_nofork(size_t size, void **out) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return -errno;
  }
  if (madvise(p, size, MADV_DONTFORK) != 0) {
    int e = errno;
    munmap(p, size);
    return -e;
  }
  *out = p;
  return 0;
}
