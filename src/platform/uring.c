/*
 * uring.c - a minimal io_uring, for one job: reaping children in the
 * background without a thread.
 *
 * Why: mproc must reap every child it starts even when the program never
 * joins it, and a reaper thread would do that, but any second thread makes
 * glibc take its slower multi-threaded fork path for every later fork
 * (measured: +24% per start+join), for the life of the process.  An
 * IORING_OP_WAITID request (Linux 6.7) is a waitid(2) the kernel completes
 * on its own when the child exits: it reaps the child in task work of the
 * submitting thread (interrupting a blocking syscall the way a signal with
 * SA_RESTART would, so the syscall restarts) and writes the siginfo to the
 * memory given at submission.  No thread, no signal handler.
 *
 * Only what that needs is here: setup with a probe for IORING_OP_WAITID,
 * one submission at a time, and a non-blocking drain of completions.  No
 * liburing: Debian's package would be one more dependency for 150 lines.
 * Kernels without io_uring or without IORING_OP_WAITID, and systems where
 * io_uring is disabled (sysctl kernel.io_uring_disabled, seccomp), get
 * -ENOSYS from mproc__uring_open and mproc uses its reaper thread.
 */
#include "platform.h"

#include <errno.h>
#include <linux/io_uring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Linux 6.7's opcode; the build machine's headers may predate it. */
#define MPROC__IORING_OP_WAITID 50

#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#define SYS_io_uring_enter 426
#define SYS_io_uring_register 427
#endif

static int probe_waitid(int fd) {
  size_t len = sizeof(struct io_uring_probe) +
               256 * sizeof(struct io_uring_probe_op);
  struct io_uring_probe *pr = calloc(1, len);
  if (pr == NULL) {
    return -ENOMEM;
  }
  long r = syscall(SYS_io_uring_register, fd, IORING_REGISTER_PROBE, pr, 256);
  int ok = r == 0 && pr->last_op >= MPROC__IORING_OP_WAITID &&
           (pr->ops[MPROC__IORING_OP_WAITID].flags & IO_URING_OP_SUPPORTED);
  free(pr);
  return ok ? 0 : -ENOSYS;
}

int mproc__uring_open(mproc__uring *u, unsigned entries) {
  static int disabled = -1;
  if (disabled < 0) {
    const char *e = getenv("MPROC_NO_URING");
    disabled = (e != NULL && e[0] != '\0' && e[0] != '0') ? 1 : 0;
  }
  memset(u, 0, sizeof *u);
  u->fd = -1;
  if (disabled) {
    return -ENOSYS;
  }
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  /* No IORING_SETUP_COOP_TASKRUN or DEFER_TASKRUN: completion work must
   * run promptly in the submitting thread, or a zombie would wait for the
   * program's next mproc call. */
  int fd = (int)syscall(SYS_io_uring_setup, entries, &p);
  if (fd < 0) {
    int e = errno;
    return (e == EPERM || e == EACCES || e == EINVAL) ? -ENOSYS : -e;
  }
  fd = mproc__fd_above_stdio(fd); /* io_uring fds are always O_CLOEXEC */
  if (fd < 0) {
    return fd;
  }
  int r = -ENOSYS;
  if (!(p.features & IORING_FEAT_SINGLE_MMAP) ||
      !(p.features & IORING_FEAT_NODROP)) {
    goto fail;
  }
  r = probe_waitid(fd);
  if (r != 0) {
    goto fail;
  }
  size_t sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  size_t cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  size_t ring_sz = sq_sz > cq_sz ? sq_sz : cq_sz;
  void *ring = mmap(NULL, ring_sz, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
  if (ring == MAP_FAILED) {
    r = -errno;
    goto fail;
  }
  size_t sqes_sz = p.sq_entries * sizeof(struct io_uring_sqe);
  void *sqes = mmap(NULL, sqes_sz, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
  if (sqes == MAP_FAILED) {
    r = -errno;
    munmap(ring, ring_sz);
    goto fail;
  }
  char *b = ring;
  u->fd = fd;
  u->ring = ring;
  u->ring_sz = ring_sz;
  u->sqes = sqes;
  u->sqes_sz = sqes_sz;
  u->sq_head = (unsigned *)(b + p.sq_off.head);
  u->sq_tail = (unsigned *)(b + p.sq_off.tail);
  u->sq_mask = (unsigned *)(b + p.sq_off.ring_mask);
  u->sq_array = (unsigned *)(b + p.sq_off.array);
  u->sq_flags = (unsigned *)(b + p.sq_off.flags);
  u->cq_head = (unsigned *)(b + p.cq_off.head);
  u->cq_tail = (unsigned *)(b + p.cq_off.tail);
  u->cq_mask = (unsigned *)(b + p.cq_off.ring_mask);
  u->cqes = b + p.cq_off.cqes;
  return 0;
fail:
  mproc__close(fd);
  return r;
}

int mproc__uring_waitid(mproc__uring *u, pid_t pid, siginfo_t *si,
                        uint64_t data) {
  /* One submission at a time, entered at once, so the SQ is always empty
   * here: the kernel consumed the previous entry in io_uring_enter. */
  unsigned tail = *u->sq_tail;
  unsigned idx = tail & *u->sq_mask;
  struct io_uring_sqe *sqe = &((struct io_uring_sqe *)u->sqes)[idx];
  memset(sqe, 0, sizeof *sqe);
  sqe->opcode = MPROC__IORING_OP_WAITID;
  sqe->fd = (int)pid;             /* upid */
  sqe->len = P_PID;               /* which */
  sqe->file_index = WEXITED;      /* options */
  sqe->addr2 = (uint64_t)(uintptr_t)si; /* infop */
  sqe->user_data = data;
  u->sq_array[idx] = idx;
  /* Publish the entry before the tail that makes it visible. */
  __atomic_store_n(u->sq_tail, tail + 1, __ATOMIC_RELEASE);
  for (;;) {
    long r = syscall(SYS_io_uring_enter, u->fd, 1, 0, 0, NULL, 0);
    if (r == 1) {
      return 0;
    }
    if (r < 0 && errno == EINTR) {
      continue;
    }
    int e = r < 0 ? errno : EAGAIN;
    /* Not consumed: take the entry back so the ring stays empty. */
    __atomic_store_n(u->sq_tail, tail, __ATOMIC_RELEASE);
    return -e;
  }
}

int mproc__uring_drain(mproc__uring *u, uint64_t *data, int32_t *res,
                       int max) {
  if (__atomic_load_n(u->sq_flags, __ATOMIC_ACQUIRE) & IORING_SQ_CQ_OVERFLOW) {
    /* Completions the CQ had no room for wait in the kernel; entering
     * with GETEVENTS moves them into the ring. */
    (void)syscall(SYS_io_uring_enter, u->fd, 0, 0, IORING_ENTER_GETEVENTS,
                  NULL, 0);
  }
  int n = 0;
  unsigned head = *u->cq_head;
  /* Acquire: the entries are written before the tail is published. */
  unsigned tail = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);
  const struct io_uring_cqe *cqes = u->cqes;
  while (head != tail && n < max) {
    const struct io_uring_cqe *c = &cqes[head & *u->cq_mask];
    data[n] = c->user_data;
    res[n] = c->res;
    n++;
    head++;
  }
  /* Release: we are done reading the entries we hand back. */
  __atomic_store_n(u->cq_head, head, __ATOMIC_RELEASE);
  return n;
}

void mproc__uring_close(mproc__uring *u) {
  if (u->ring != NULL) {
    munmap(u->ring, u->ring_sz);
  }
  if (u->sqes != NULL) {
    munmap(u->sqes, u->sqes_sz);
  }
  mproc__close(u->fd);
  memset(u, 0, sizeof *u);
  u->fd = -1;
}
