/*
 * src/platform/platform.h - layer 0: the only door from mproc to the OS.
 *
 * Everything in src/ outside src/platform/ reaches the kernel through these
 * functions: no other file calls syscall(), includes a <linux/...> header or
 * tests __linux__.  The rules every function here keeps:
 *
 *   - every fd is created close-on-exec, atomically (O_CLOEXEC, pipe2,
 *     MFD_CLOEXEC, EPOLL_CLOEXEC, ...), and fds 0-2 are never handed out for
 *     internal use (if a daemon closed its stdio, a later printf must not
 *     write into an mproc pipe);
 *   - blocking calls loop on EINTR, recomputing what is left of a deadline
 *     fixed once on CLOCK_MONOTONIC;
 *   - close() is never retried: on Linux the fd is gone even when close
 *     reports EINTR;
 *   - errors are returned as -errno, captured right after the failing call.
 *
 * The files: clock.c (deadlines), futex.c, fd.c (fds, poll, epoll, eventfd),
 * proc.c (fork, pidfd, waitid, signals, prctl, cpu count), memfd.c (memfd
 * and shared mappings), rmutex.c (robust process-shared mutexes),
 * shm-posix.c (named POSIX shared memory, file checks, random bytes),
 * uring.c (io_uring waitid), procinfo.c (other processes' /proc facts),
 * sock.c (socketpairs, pipes, stream I/O, poll; declared in sock.h),
 * net.c (listening and connecting sockets; declared in net.h).
 */
#ifndef MPROC_PLATFORM_H
#define MPROC_PLATFORM_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

/* ==================== clock.c: monotonic deadlines ==================== */

/* A point on CLOCK_MONOTONIC, or "never" (forever). */
typedef struct mproc__deadline {
  int forever;     /* 1: no deadline */
  uint64_t at_ns;  /* CLOCK_MONOTONIC time at which the wait ends */
} mproc__deadline;

/* Nanoseconds on CLOCK_MONOTONIC. */
uint64_t mproc__now_ns(void);

/*
 * Fix a deadline from a Python-style timeout (seconds; < 0 forever; 0 now).
 * Returns 0, or -EINVAL for NaN.
 */
int mproc__deadline_init(mproc__deadline *d, double timeout);

/* Nanoseconds left (0 when passed); UINT64_MAX for forever. */
uint64_t mproc__deadline_left_ns(const mproc__deadline *d);

/* Milliseconds left for poll(2), rounded up; -1 for forever. */
int mproc__deadline_left_ms(const mproc__deadline *d);

/* Sleep for ns nanoseconds, whatever signals arrive. */
void mproc__sleep_ns(uint64_t ns);

/* ==================== futex.c: futex wait and wake ==================== */

/*
 * Wait while *addr == val, until woken or the deadline passes.  Always the
 * shared (not FUTEX_PRIVATE) operation: the word may live in the arena.
 * Returns 0 when woken (or spuriously), -EAGAIN if *addr != val on entry,
 * -ETIMEDOUT at the deadline.  EINTR is absorbed: the wait resumes with
 * the time left.
 */
int mproc__futex_wait(uint32_t *addr, uint32_t val, const mproc__deadline *d);

/* Wake up to n waiters on addr (INT32_MAX: all).  Returns the number woken. */
int mproc__futex_wake(uint32_t *addr, int n);

/*
 * Asymmetric memory barriers (membarrier(2), MEMBARRIER_CMD_GLOBAL_EXPEDITED):
 * a process registers once; afterwards mproc__membarrier() makes every
 * thread of every registered process that runs at that moment execute a
 * full memory barrier, so a fast path in those processes can use a plain
 * store where it would need a store-load fence, and the rare slow side
 * calls this instead.  Returns 0 or -errno (-ENOSYS, -EINVAL or -EPERM
 * where the kernel or a seccomp filter does not allow it, and always when
 * the environment variable MPROC_NO_MEMBARRIER=1 is set, so the fallback
 * can be tested).  Registration does not survive fork or exec: a child
 * registers again.
 */
int mproc__membarrier_register(void);
int mproc__membarrier(void);

/* ==================== fd.c: file descriptors ==================== */

/* close(2), never retried.  Ignores fd < 0.  Leaves errno alone only as
 * far as close does: mproc captures errno right after each failing call
 * and never reads it later, and not touching errno here keeps a forked
 * child from faulting in the page errno lives in. */
void mproc__close(int fd);

/* open(2) with O_CLOEXEC, EINTR loop, result >= 3.  Returns fd or -errno. */
int mproc__open(const char *path, int flags, mode_t mode);

/* pipe2(O_CLOEXEC | extra), both ends >= 3.  Returns 0 or -errno. */
int mproc__pipe(int fds[2], int extra_flags);

/* Move fd to a number >= 3 if it is 0, 1 or 2 (CLOEXEC).  Returns fd or
 * -errno (the original is closed either way when it had to move). */
int mproc__fd_above_stdio(int fd);

/* Set or clear FD_CLOEXEC.  Returns 0 or -errno. */
int mproc__fd_set_cloexec(int fd, int on);

/* dup2 with EINTR loop (the target keeps no CLOEXEC: used for stdio). */
int mproc__dup2(int from, int to);

/* read/write the whole buffer, looping on EINTR and short transfers.
 * read_full returns bytes read (< len only at EOF) or -errno. */
ssize_t mproc__read_full(int fd, void *buf, size_t len);
ssize_t mproc__write_full(int fd, const void *buf, size_t len);

/* Wait until fd is readable (or hung up) or the deadline passes.
 * Returns 1 readable, 0 timed out, -errno. */
int mproc__wait_readable(int fd, const mproc__deadline *d);

/* epoll_create1(EPOLL_CLOEXEC); add fd for input with 64-bit user data;
 * delete fd; wait (timeout_ms -1 forever; EINTR returns 0 events). */
int mproc__epoll_create(void);
int mproc__epoll_add(int ep, int fd, uint64_t data);
int mproc__epoll_del(int ep, int fd);
int mproc__epoll_wait(int ep, uint64_t *data, int max, int timeout_ms);

/* eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); signal it; drain it. */
int mproc__eventfd(void);
void mproc__eventfd_signal(int fd);
void mproc__eventfd_drain(int fd);

/* Number of open fds of this process (for leak checks and logs). */
int mproc__fd_count(void);

/* In a new program image: close every fd above 2 that came through the
 * exec (those without close-on-exec; one with it was opened since, by a
 * constructor) except keep[0..n).  0 or -errno. */
int mproc__close_inherited_except(const int *keep, int n);

/* 1 if fd is an open file descriptor, else 0. */
int mproc__fd_valid(int fd);

/* A close-on-exec duplicate of fd numbered min or above, or -errno. */
int mproc__fd_dup_above(int fd, int min);

/* ==================== proc.c: processes and signals ==================== */

/* getpid/gettid without caching surprises. */
pid_t mproc__getpid(void);
pid_t mproc__gettid(void);
pid_t mproc__getppid(void);

/* fork(2) through libc (so libc's own atfork work runs).
 * Returns the pid, 0 in the child, or -errno. */
pid_t mproc__fork(void);
/* Whether this process has only ever had one thread (glibc's
 * __libc_single_threaded: it turns false at the first thread's creation
 * and stays so), so that nothing can race the caller. */
int mproc__single_threaded(void);

/* _exit(2). */
__attribute__((noreturn)) void mproc__exit_now(int status);

/* pidfd_open(2).  Returns the fd (CLOEXEC, >= 3), or -ENOSYS when the
 * kernel has none (or MPROC_NO_PIDFD is set in the environment, which tests
 * use to exercise the fallback), or another -errno. */
int mproc__pidfd_open(pid_t pid);
/* This process's threads (procfs), or -1 when unknown. */
int mproc__thread_count(void);
/* 1 if pidfds work here (and MPROC_NO_PIDFD is not set), else 0. */
int mproc__pidfd_supported(void);

/* pidfd_send_signal(2).  Returns 0 or -errno (-ESRCH once reaped). */
int mproc__pidfd_signal(int pidfd, int sig);

/* kill(2).  Returns 0 or -errno. */
int mproc__kill(pid_t pid, int sig);

/* Make the calling process the leader of a new process group (its pgid
 * becomes its pid).  Returns 0 or -errno. */
int mproc__pgrp_new(void);
/* Send sig to every process of process group pgid (kill(-pgid)).
 * Returns 0 or -errno (-ESRCH: no process in that group). */
int mproc__pgrp_kill(pid_t pgid, int sig);

/* The thread id in a robust mutex's lock word: the thread that holds it
 * (0 when free).  Read without locking, for a diagnosis or to end a
 * holder that is stuck; the holder may release it at any moment. */
pid_t mproc__rmutex_holder(const pthread_mutex_t *m);

/*
 * Reap pid if it has ended.  nohang: do not wait.  Returns 1 and the
 * Python-style exit code in *code (status, or -signal) when reaped; 0 when
 * still running (nohang); -ECHILD when the child is not ours or was reaped
 * by someone else; another -errno.  EINTR loops.
 */
int mproc__reap(pid_t pid, int nohang, int *code);

/*
 * For a forked child between fork and its target: close(2), dup2(2) and
 * restoring a signal mask saved by mproc__signals_block_all, as direct
 * system calls where the architecture allows (x86-64, AArch64), else
 * through libc.  A libc function's code page that the child runs for the
 * first time is a page fault in the child (fork does not copy page table
 * entries of file mappings), tens of microseconds in some virtual
 * machines; these run in every new child.  Same results as mproc__close,
 * mproc__dup2 (from == to does nothing) and mproc__signals_restore.
 */
void mproc__child_close(int fd);
int mproc__child_dup2(int from, int to);
void mproc__child_signals_restore(const sigset_t *old);

/*
 * fflush(NULL), done cheaply when glibc's list of open streams holds only
 * stdin, stdout and stderr: then only those of stdout and stderr that have
 * output pending are flushed, which is the same thing without a write to
 * libc's memory.  fflush(NULL) always takes libc's stream-list lock; every
 * page written after a fork (by either process) is a copy-on-write fault,
 * and process starts call this before each fork and in each child at its
 * end.  Elsewhere (another libc, other streams open): fflush(NULL).
 */
void mproc__stdio_flush_all(void);

/* __fpending(f) > 0, read from glibc's FILE fields where it can be (no
 * libc code page to fault in, in a new child). */
int mproc__stdio_pending(FILE *f);

/* Block every signal this thread may block; the old mask goes to *old. */
void mproc__signals_block_all(sigset_t *old);
/* Restore a mask saved by mproc__signals_block_all. */
void mproc__signals_restore(const sigset_t *old);

/* Ask for sig when the parent (thread) dies; then re-check that the parent
 * is still expected_ppid.  Returns 0, or -ESRCH if the parent is already
 * gone (the caller should exit), or -errno. */
int mproc__set_parent_death_signal(int sig, pid_t expected_ppid);

/* CPUs in this process's affinity mask (>= 1). */
int mproc__cpu_count(void);
/* CPUs online in the machine (>= 1): where other processes may run,
 * whatever this one's affinity. */
int mproc__cpus_online(void);

/* Whether the calling thread is the process's main thread. */
int mproc__is_main_thread(void);

/*
 * Crash notes (reliability.md row 2).  In this process, a SIGSEGV, SIGBUS,
 * SIGFPE or SIGILL first stores the signal in *sig and the faulting
 * address in *addr (both usually in shared memory, so the parent can read
 * them after the death), then the process dies of that signal as it would
 * have anyway (the handler is reset and the signal raised again).  Runs
 * on an alternate stack, so a stack overflow is noted too.  Only
 * async-signal-safe work in the handler: two atomic stores and raise().
 * A handler the program installs later replaces it.  Returns 0 or a
 * negative errno.
 */
int mproc__crash_note_install(_Atomic int *sig, _Atomic uintptr_t *addr);
/* Forget per-thread cached facts; call in a forked child. */
void mproc__thread_forget(void);

/* ==================== memfd.c: shared memory ==================== */

/* memfd_create(name, MFD_CLOEXEC), with an O_TMPFILE fallback on /dev/shm
 * for old kernels.  Returns fd (>= 3) or -errno. */
int mproc__memfd_create(const char *name);

/* ftruncate with EINTR loop.  Returns 0 or -errno. */
int mproc__truncate(int fd, uint64_t size);

/*
 * Map fd shared, read-write, size bytes, without reserving swap
 * (MAP_NORESERVE: pages are committed on touch).  hint: an address to try
 * with MAP_FIXED_NOREPLACE first (NULL: none); fixed: fail with -EEXIST
 * instead of falling back to another address.  Returns 0 and *out, or
 * -errno.
 */
int mproc__map_shared(int fd, size_t size, void *hint, int fixed, void **out);

/* Private anonymous memory that a forked child does not inherit
 * (MADV_DONTFORK), so a fork does not make its pages copy-on-write.
 * Returns 0 and *out, or -errno. */
int mproc__map_private_nofork(size_t size, void **out);

/* munmap.  Returns 0 or -errno. */
int mproc__unmap(void *addr, size_t size);

/* Page size. */
size_t mproc__page_size(void);

/* ==================== uring.c: background reaping ==================== */

/* A minimal io_uring used only for IORING_OP_WAITID (see uring.c). */
typedef struct mproc__uring {
  int fd;            /* the ring's fd (CLOEXEC), -1 when closed */
  void *ring;        /* SQ and CQ rings, one mapping */
  size_t ring_sz;
  void *sqes;        /* the submission entries */
  size_t sqes_sz;
  unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *sq_flags;
  unsigned *cq_head, *cq_tail, *cq_mask;
  void *cqes;        /* struct io_uring_cqe[] */
} mproc__uring;

/* Set up a ring of `entries` entries that supports IORING_OP_WAITID.
 * Returns 0, -ENOSYS when the kernel has no such ring (or MPROC_NO_URING is
 * set in the environment), or -errno. */
int mproc__uring_open(mproc__uring *u, unsigned entries);

/* Ask the kernel to reap pid (waitid P_PID, WEXITED) when it exits,
 * writing the result into *si, which must stay valid until the completion
 * with `data` is drained.  Completions run in the calling thread's task
 * work, so call it from a thread that lives as long as the process.
 * Returns 0 or -errno. */
int mproc__uring_waitid(mproc__uring *u, pid_t pid, siginfo_t *si,
                        uint64_t data);

/* Take up to max completions without blocking.  Returns how many. */
int mproc__uring_drain(mproc__uring *u, uint64_t *data, int32_t *res,
                       int max);

/* Unmap and close (also in a forked child, which must not use the
 * parent's ring).  Async-signal-safe. */
void mproc__uring_close(mproc__uring *u);

/* ==================== rmutex.c: robust process-shared mutex ============ */

/*
 * A pthread mutex that is process-shared and robust: when its holder dies,
 * the kernel marks it and the next locker gets it with -EOWNERDEAD.  The
 * caller then repairs the state the mutex protects and calls
 * mproc__rmutex_consistent() before unlocking; unlocking without that makes
 * the mutex unusable for good (-ENOTRECOVERABLE), as POSIX defines.
 */
int mproc__rmutex_init(pthread_mutex_t *m);
/* Returns 0, -EOWNERDEAD (locked, repair needed), -ETIMEDOUT,
 * -ENOTRECOVERABLE, -EDEADLK or -errno. */
int mproc__rmutex_lock(pthread_mutex_t *m, const mproc__deadline *d);
int mproc__rmutex_consistent(pthread_mutex_t *m);
int mproc__rmutex_unlock(pthread_mutex_t *m);

/* ==================== shm-posix.c: named shared memory ================ */

/*
 * shm_open(2) of "/" + name (name without the slash, already validated by
 * the caller), adding O_NOFOLLOW and O_CLOEXEC; the fd is >= 3.  oflag:
 * O_RDWR or O_RDONLY, with O_CREAT | O_EXCL to create (then mode is used,
 * minus the umask: follow with mproc__fchmod).  Returns the fd or -errno
 * (-ENAMETOOLONG for a name longer than the file system takes).
 */
int mproc__shm_open(const char *name, int oflag, mode_t mode);

/* shm_unlink(2) of "/" + name.  Returns 0 or -errno. */
int mproc__shm_unlink(const char *name);

/* fchmod(2).  Returns 0 or -errno. */
int mproc__fchmod(int fd, mode_t mode);

/*
 * Reserve size bytes from offset 0 (posix_fallocate): the file grows to
 * size and its blocks are allocated now, so a full file system is -ENOSPC
 * here rather than SIGBUS at the first write through a mapping.  EINTR is
 * retried.  Returns 0 or -errno.
 */
int mproc__fallocate(int fd, uint64_t size);

/* What mproc checks of an open file. */
typedef struct mproc__file_info {
  uint64_t dev, ino; /* identity: (dev, ino) */
  uint64_t size;     /* st_size */
  uint64_t blocks;   /* st_blocks, 512-byte units */
  uint32_t uid;      /* owner */
  uint32_t mode;     /* permission bits (st_mode & 07777) */
  int regular;       /* 1: a regular file */
} mproc__file_info;

/* fstat(2) into *out.  Returns 0 or -errno. */
int mproc__fstat(int fd, mproc__file_info *out);

/* geteuid(2). */
uid_t mproc__geteuid(void);

/* n bytes from the kernel's random source (getrandom(2), /dev/urandom on
 * kernels without it).  Returns 0 or -errno. */
int mproc__random_bytes(void *buf, size_t n);

/* ==================== procinfo.c: other processes ================ */

/* Read /proc/PID/stat: start time (clock ticks after boot), state letter,
 * thread count (any out pointer may be NULL).  Returns 0, -ESRCH (no such
 * process) or -errno. */
int mproc__proc_stat(pid_t pid, uint64_t *start_ticks, char *state,
                     long *nthreads);

/* 1 if pid is alive with that start time, 0 if provably gone (no such
 * process, a zombie, another start time: a recycled pid).  Other errors
 * count as alive. */
int mproc__proc_alive(pid_t pid, uint64_t start_ticks);

/* ==================== sock.c, net.c: sockets and pipes ============ */

/* Stream sockets, pipes and their I/O (sock.h: socketpair, pipe, send and
 * receive with deadlines, poll of many fds), and listening / connecting
 * sockets (net.h: Unix paths, TCP, peer credentials, private directories). */
#include "sock.h"
#include "net.h"

/* ==================== spawn.c: program images and fd passing ====== */

/* Start path as a new program (posix_spawn): keep[0..nkeep) stay open at
 * their numbers in it (their FD_CLOEXEC cleared there only; -1 entries
 * are skipped), stdin_fd (>= 0) becomes its fd 0, mask (non-NULL) its
 * signal mask.  0 and *pid, or -errno (the exec's own failure too). */
int mproc__spawn_image(pid_t *pid, const char *path, char *const argv[],
                       char *const envp[], const int *keep, int nkeep,
                       int stdin_fd, const sigset_t *mask);

/* A close-on-exec AF_UNIX SOCK_SEQPACKET pair (sock.h has the stream
 * one). */
int mproc__socketpair_seq(int fds[2]);
/* Ask for the sender's credentials on every message received on fd. */
int mproc__sock_passcred(int fd);

#define MPROC__MAX_PASS_FDS 24
/* One message with nfds fds attached (SCM_RIGHTS); never SIGPIPE.
 * Returns bytes sent or -errno. */
ssize_t mproc__send_fds(int sock, const void *buf, size_t len,
                        const int *fds, int nfds);
/* The same, the message's bytes from two buffers (b may be NULL). */
ssize_t mproc__send_fds2(int sock, const void *a, size_t alen, const void *b,
                         size_t blen, const int *fds, int nfds);
/* One message: up to *nfds fds received into fds (close-on-exec; extra
 * ones are closed), *nfds set to how many; *uid the sender's uid when
 * SO_PASSCRED is on ((uid_t)-1 when none came).  Bytes read (0 at EOF) or
 * -errno; -EPROTO when the control data was cut (no fd is kept then). */
ssize_t mproc__recv_fds(int sock, void *buf, size_t len, int *fds,
                        int *nfds, uid_t *uid);

/* ==================== dl.c: loaded objects ==================== */

/* One object loaded in this process (the main program, a shared library,
 * the vDSO).  lo..hi spans its PT_LOAD segments at their run-time
 * addresses; bias is what was added to its link-time addresses. */
typedef struct mproc__dlobj {
  uintptr_t bias;
  uintptr_t lo, hi;
  const char *path;         /* "" for the main program (see is_main) */
  int is_main;
  int is_vdso;              /* the kernel's; never a target */
  uint8_t build_id[40];     /* NT_GNU_BUILD_ID, build_id_len bytes */
  size_t build_id_len;
} mproc__dlobj;

/* Call fn for every loaded object with a PT_LOAD segment, in the loader's
 * order (main program first); stop at fn's first nonzero return and
 * return it.  0 when all were visited. */
int mproc__dl_each(int (*fn)(const mproc__dlobj *o, void *ctx), void *ctx);
/* A number that changes whenever an object is loaded or unloaded. */
uint64_t mproc__dl_generation(void);
/* Load path now (RTLD_NOW | RTLD_LOCAL), for good: never unloaded.  0, or
 * MPROC_ENOFUNC with the loader's reason copied to err. */
int mproc__dl_open(const char *path, char *err, size_t errlen);
/* The running program's file (readlink /proc/self/exe).  0 or -errno. */
int mproc__self_exe(char *buf, size_t cap);

#endif /* MPROC_PLATFORM_H */
