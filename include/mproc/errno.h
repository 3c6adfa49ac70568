/*
 * mproc/errno.h - the one table of mproc error codes.
 *
 * Every mproc function that can fail returns 0 (or a non-negative count) on
 * success and a negative code from this table on failure.  Codes that have a
 * POSIX errno equivalent are exactly -errno (MPROC_ETIMEDOUT == -ETIMEDOUT),
 * so a caller may compare against either.  Codes with no errno equivalent
 * live in the private range -5000 .. -5999, which no Linux errno reaches
 * (Linux errno values stop below 200).
 *
 * The table is an X-macro so that the enum, mproc_strerror() and
 * mproc_err_name() are generated from one place and can never disagree.
 * Adding a code: append one XX() line; never renumber an existing code,
 * because programs compiled against an older header keep the old values.
 */
#ifndef MPROC_ERRNO_H
#define MPROC_ERRNO_H

#include <errno.h>

#include "mproc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Base of the library's private range.  No errno value is this large. */
#define MPROC__ERRBASE (-5000)

/*
 * XX(name, value, message).  The message is what mproc_strerror() returns;
 * where a code mirrors a Python exception message, the message is Python's.
 */
#define MPROC_ERRNO_MAP(XX)                                                   \
  XX(EPERM, -EPERM, "operation not permitted")                                \
  XX(ENOENT, -ENOENT, "no such file or directory")                            \
  XX(ESRCH, -ESRCH, "no such process")                                        \
  XX(EINTR, -EINTR, "interrupted system call")                                \
  XX(EIO, -EIO, "i/o error")                                                  \
  XX(EBADF, -EBADF, "bad file descriptor")                                    \
  XX(ECHILD, -ECHILD, "no child processes")                                   \
  XX(EAGAIN, -EAGAIN, "resource temporarily unavailable")                     \
  XX(ENOMEM, -ENOMEM, "not enough memory")                                    \
  XX(EACCES, -EACCES, "permission denied")                                    \
  XX(EFAULT, -EFAULT, "bad address")                                          \
  XX(EBUSY, -EBUSY, "resource busy or locked")                                \
  XX(EEXIST, -EEXIST, "file already exists")                                  \
  XX(EINVAL, -EINVAL, "invalid argument")                                     \
  XX(ENFILE, -ENFILE, "file table overflow")                                  \
  XX(EMFILE, -EMFILE, "too many open files")                                  \
  XX(ENOSPC, -ENOSPC, "no space left on device")                              \
  XX(EPIPE, -EPIPE, "broken pipe")                                            \
  XX(ERANGE, -ERANGE, "result out of range")                                  \
  XX(ENAMETOOLONG, -ENAMETOOLONG, "name too long")                            \
  XX(ENOSYS, -ENOSYS, "function not implemented")                             \
  XX(EOVERFLOW, -EOVERFLOW, "value too large for defined data type")          \
  XX(EPROTO, -EPROTO, "protocol error")                                       \
  XX(EMSGSIZE, -EMSGSIZE, "message too long")                                 \
  XX(ENOTSUP, -ENOTSUP, "operation not supported")                            \
  XX(EADDRINUSE, -EADDRINUSE, "address already in use")                       \
  XX(ENOBUFS, -ENOBUFS, "no buffer space available")                          \
  XX(ENOTCONN, -ENOTCONN, "socket is not connected")                          \
  XX(ECONNABORTED, -ECONNABORTED, "connection aborted")                       \
  XX(EADDRNOTAVAIL, -EADDRNOTAVAIL, "address not available")                  \
  XX(EAFNOSUPPORT, -EAFNOSUPPORT, "address family not supported")             \
  XX(ENETUNREACH, -ENETUNREACH, "network is unreachable")                     \
  XX(EHOSTUNREACH, -EHOSTUNREACH, "host is unreachable")                      \
  XX(ECONNRESET, -ECONNRESET, "connection reset by peer")                     \
  XX(ECONNREFUSED, -ECONNREFUSED, "connection refused")                       \
  XX(ETIMEDOUT, -ETIMEDOUT, "timed out")                                      \
  XX(EALREADY, -EALREADY, "operation already in progress")                    \
  XX(ECANCELED, -ECANCELED, "operation canceled")                             \
  XX(EOWNERDEAD, -EOWNERDEAD, "previous owner died")                          \
  XX(ENOTRECOVERABLE, -ENOTRECOVERABLE, "state not recoverable")              \
  XX(EOF, MPROC__ERRBASE - 1, "end of file")                                  \
  XX(EEMPTY, MPROC__ERRBASE - 2, "queue is empty")                            \
  XX(EFULL, MPROC__ERRBASE - 3, "queue is full")                              \
  XX(ECLOSED, MPROC__ERRBASE - 4, "object is closed")                         \
  XX(ESTARTED, MPROC__ERRBASE - 5, "cannot start a process twice")            \
  XX(ENOTSTARTED, MPROC__ERRBASE - 6, "process has not been started")         \
  XX(ERUNNING, MPROC__ERRBASE - 7, "process is still running")                \
  XX(ENOTCHILD, MPROC__ERRBASE - 8, "can only operate on a child process")    \
  XX(EDAEMONIC, MPROC__ERRBASE - 9,                                           \
     "daemonic processes are not allowed to have children")                   \
  XX(EFORKED, MPROC__ERRBASE - 10,                                            \
     "object belongs to the process that created it")                         \
  XX(EWORKERDIED, MPROC__ERRBASE - 11, "worker process died")                 \
  XX(ETASK, MPROC__ERRBASE - 12, "task failed")                               \
  XX(EAUTH, MPROC__ERRBASE - 13, "authentication failed")                     \
  XX(EBROKEN, MPROC__ERRBASE - 14, "object is broken")                        \
  XX(EINIT, MPROC__ERRBASE - 15, "initializer failed")                        \
  XX(ESTATE, MPROC__ERRBASE - 16, "operation not valid in the current state") \
  XX(ECORRUPT, MPROC__ERRBASE - 17, "shared data structure is corrupt")    \
  XX(EUNLOCKED, MPROC__ERRBASE - 18,                                          \
     "semaphore or lock released too many times")                            \
  XX(ETASKDONE, MPROC__ERRBASE - 19, "task_done() called too many times")  \
  XX(ESTALLED, MPROC__ERRBASE - 20, "peer stalled the handshake")         \
  XX(EBUILD, MPROC__ERRBASE - 21, "the other process runs a different build") \
  XX(ENOFUNC, MPROC__ERRBASE - 22, "function not found in the other process") \
  XX(EARENAMAP, MPROC__ERRBASE - 23,                                          \
     "cannot map the shared arena at its address")                          \
  XX(ELOST, MPROC__ERRBASE - 24, "exit status lost with the forkserver")      \
  XX(ESPAWN, MPROC__ERRBASE - 25, "spawned process failed to start")

/* MPROC_EPERM, MPROC_ETIMEDOUT, MPROC_EOF, ... */
typedef enum mproc_errno {
#define MPROC__ERR_ENUM(name, value, msg) MPROC_##name = (value),
  MPROC_ERRNO_MAP(MPROC__ERR_ENUM)
#undef MPROC__ERR_ENUM
  MPROC_ERRNO_MAX = MPROC__ERRBASE - 1000
} mproc_errno;

/*
 * mproc_strerror - a static, human-readable message for an mproc code.
 *
 * Returns the table's message for a known code; for an unknown negative
 * value that is some other -errno, strerror()'s text is not used (it is not
 * thread-safe everywhere) and "unknown error" is returned instead.
 * Never returns NULL.  Threads: safe.  Async-signal-safe: yes.
 */
MPROC_EXTERN const char *mproc_strerror(int code);

/*
 * mproc_err_name - the code's symbolic name, e.g. "MPROC_ETIMEDOUT".
 *
 * Returns "MPROC_OK" for 0 and "MPROC_UNKNOWN" for a value not in the
 * table.  Never returns NULL.  Threads: safe.  Async-signal-safe: yes.
 */
MPROC_EXTERN const char *mproc_err_name(int code);

#ifdef __cplusplus
}
#endif
#endif /* MPROC_ERRNO_H */
