/*
 * mproc/process.h - Python's multiprocessing.Process, in C.
 *
 * DESIGN
 * A process object runs a target function in a new process started by
 * its start method (mproc/context.h): fork(2) by default (Python's default
 * on Linux), spawn (a fresh exec of the program) or the forkserver.  The
 * argument is given as bytes and copied when the object is made, so the
 * same call works unchanged under every method: the child receives its
 * own copy, the caller may free its buffer at once.
 *
 * Lifecycle, as Python's:
 *
 *     mproc_process_new -> start -> join / terminate / kill -> free
 *
 * exitcode: the target's return value (only its low 8 bits, as for exit(3))
 * or N when the target calls exit(N); -N when the child was killed by signal
 * N (SIGTERM from mproc_process_terminate gives -15, SIGKILL -9).
 *
 * Names follow Python: the main process is "MainProcess"; the n-th process
 * object a process creates is "Process-n" in the main process and
 * "<parent's numbers>:n" below it, so the first child made by Process-2 is
 * "Process-2:1".  The counter counts objects created, started or not.
 *
 * In the child: stdin is /dev/null; stdout and stderr are flushed before
 * fork so nothing buffered is written twice; the child leaves with _exit()
 * after flushing its own stdio, so the parent's atexit handlers do not run
 * again in it (a target that calls exit() itself does run them, as any C
 * program's child would).  The child starts with an empty list of children.
 *
 * Reaping: no zombies, ever.  mproc keeps a pidfd for every started child
 * (a pipe that closes at the child's exit on kernels without pidfd) and
 * reaps every child in the background as it ends, so a child whose object
 * is never joined is still reaped, and its exitcode is kept for a later
 * join.  On Linux 6.7 and later the kernel itself does it, through one
 * io_uring waitid request per child, and mproc creates no thread (a second
 * thread would make every later fork of the process slower).  The kernel
 * runs that reaping in the thread that started the child, the way it runs
 * a signal handler: a blocking call there that is never restarted after a
 * signal (epoll_wait, sigtimedwait, ...; see signal(7)) may return EINTR
 * when a child ends, exactly as if a SIGCHLD handler with SA_RESTART were
 * installed.  Elsewhere, or with MPROC_NO_URING=1 in the environment, a
 * reaper thread does the work and no call is interrupted.  mproc reaps only its own children, by pid.  Do not call
 * waitpid(-1) or set SIGCHLD to SIG_IGN in a program that uses mproc: that
 * steals the statuses mproc needs (a child reaped behind mproc's back gets
 * exitcode 255, as Python's forkserver reports an unreadable status).
 * Signals are sent through the pidfd, so a signal can never hit a recycled
 * pid.
 *
 * Daemons: a daemon child is terminated (SIGTERM, then joined) when its
 * parent exits normally, and is killed (SIGKILL, via PR_SET_PDEATHSIG) when
 * the parent dies any other way, SIGKILL included; Python leaves orphans in
 * that case.  The death signal is tied to the thread that forked the child,
 * so children started from a thread other than the main thread are forked
 * by a long-lived internal thread instead, and do not die with the thread
 * that asked for them.  Non-daemon children are joined when the parent exits
 * normally (from main's return or exit()), as in Python; a non-daemon child
 * outlives a parent that is killed.  As in Python, a daemon process may not
 * start children (MPROC_EDAEMONIC).
 *
 * Threads: every function may be called from several threads at once on the
 * same object.  Only the process that created an object may start, join,
 * signal or free it (MPROC_EFORKED in any other process, Python's "can only
 * join a child process").  fork(2) from several threads at once is the
 * program's risk, as always with the fork start method.
 */
#ifndef MPROC_PROCESS_H
#define MPROC_PROCESS_H

#include "mproc/common.h"
#include "mproc/context.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_process mproc_process;

/*
 * A target: called in the child with the child's copy of the argument
 * bytes (NULL and 0 when none was given) and the ctx given to
 * mproc_process_new, passed as is.  The return value becomes the child's
 * exit status (low 8 bits).
 *
 * Under fork, ctx reaches the child as the same address, not as a copy
 * of what it points to: it must point at arena memory (mproc_shm_alloc,
 * the shared objects of sync.h, shared.h, queue.h), shared with the
 * parent both ways, at static data, or at memory the parent set up before
 * mproc_process_start (the child sees the parent's memory as it was at
 * the fork; later changes on either side stay on that side).  Under spawn
 * and the forkserver the child is a fresh image of the program: target
 * and a ctx in static data are found again in it (by object and GNU
 * build-id, docs/process.md), arena memory is mapped at the same address,
 * and any other ctx (heap, stack) makes mproc_process_start fail with
 * MPROC_EINVAL.  NULL is fine.  Bytes the child needs as a copy go in arg.
 */
typedef int (*mproc_target_fn)(const void *arg, size_t len, void *ctx);

/* Names are cut at this many bytes, NUL excluded. */
#define MPROC_NAME_MAX 127

typedef struct mproc_process_opts {
  const char *name;  /* NULL: "Process-N" as Python names it; copied */
  int daemon;        /* nonzero: a daemon child (see above) */
  const mproc_context *context; /* the start method (mproc/context.h);
                                   NULL: the default context */
  const int *pass_fds;  /* spawn and forkserver: fds the child keeps, at
                           the same numbers (Python's pass_fds); every
                           other fd above 2 is closed in it.  Under fork
                           the child inherits every fd anyway.  At most
                           MPROC_PASS_FDS_MAX; copied at new */
  size_t npass_fds;
} mproc_process_opts;

/* The most fds one process object passes to a spawned child. */
#define MPROC_PASS_FDS_MAX 16

/*
 * mproc_process_new - make a process object (not started yet).
 *
 * CONSTRUCTOR: mproc_process
 * target: the function to run in the child, not NULL.  ctx: passed to it
 * as is (see mproc_target_fn).  arg/len: bytes copied into the object
 * (arg may be NULL only when len is 0).  opts: NULL for defaults.
 *
 * Returns 0 and *out; MPROC_EINVAL for a NULL out or target, or a NULL arg
 * with len > 0; MPROC_ENOMEM.  On failure *out is NULL and nothing needs
 * freeing.  Creating the object takes the next number of this process's
 * counter, as Python does.
 */
MPROC_EXTERN int mproc_process_new(mproc_process **out, mproc_target_fn target,
                                   void *ctx, const void *arg, size_t len,
                                   const mproc_process_opts *opts);

/*
 * mproc_process_start - start the child.
 *
 * METHOD: mproc_process
 * Flushes stdio, starts the child by the object's start method, and
 * returns in the parent once the child exists (its pid is known and it is
 * being watched; under spawn and the forkserver, once it has set itself
 * up and is about to call the target).  Creates the shared arena first if
 * it does not exist yet, so the child shares it.
 *
 * Returns 0; MPROC_ESTARTED if already started; MPROC_EDAEMONIC in a daemon
 * process; MPROC_EFORKED if the object belongs to another process;
 * MPROC_ECLOSED after close; MPROC_EAGAIN when fork fails for lack of
 * processes or memory (the object stays unstarted and may be started
 * again); MPROC_EMFILE when no fd is left to watch the child.  Under spawn
 * and the forkserver also (the object stays unstarted): MPROC_EINVAL for a
 * ctx that is neither arena memory nor static data, or an invalid
 * MPROC_START_METHOD; MPROC_ENOFUNC when the target is in no loaded object
 * or its library cannot be loaded in the child; MPROC_EBUILD when the
 * child runs another build of the program; MPROC_EARENAMAP when the
 * arena's address is taken in the child; MPROC_ESPAWN when the child
 * ended before it set itself up (the executable is not this program);
 * MPROC_ENOENT and the other exec errors; MPROC_ENOSYS for the forkserver
 * without pidfds; MPROC_EPERM when the forkserver refused the request.
 */
MPROC_EXTERN int mproc_process_start(mproc_process *p);

/*
 * mproc_process_join - wait for the child to end, at most timeout seconds.
 *
 * METHOD: mproc_process
 * Returns 0 once the child has ended (it is reaped; mproc_process_exitcode
 * then succeeds); MPROC_ETIMEDOUT if it is still running when the timeout
 * expires (join(0) polls); MPROC_ENOTSTARTED before start; MPROC_ENOTCHILD
 * for the current process's own object (a process cannot join itself);
 * MPROC_EFORKED in a process that did not create the object; MPROC_ECLOSED.
 * Joining again after the child ended returns 0 at once.  EINTR does not
 * end the wait.
 */
MPROC_EXTERN int mproc_process_join(mproc_process *p, double timeout);

/*
 * mproc_process_is_alive - 1 while the child runs, 0 before start and after
 * it ended (reaping it if it just did), or a negative error (MPROC_EINVAL,
 * MPROC_ECLOSED).  The current process's object is always alive; the parent
 * object is alive while the parent runs.
 */
MPROC_EXTERN int mproc_process_is_alive(mproc_process *p);

/*
 * mproc_process_exitcode - the child's exit code, Python's Process.exitcode.
 *
 * Returns 0 and *code once the child has ended; MPROC_ERUNNING while it
 * runs (Python's None); MPROC_ENOTSTARTED before start (also None in
 * Python).  Polls: a child that just ended is reaped by this call.
 */
MPROC_EXTERN int mproc_process_exitcode(mproc_process *p, int *code);

/*
 * mproc_process_terminate / mproc_process_kill / mproc_process_signal -
 * send SIGTERM / SIGKILL / any signal to the child.
 *
 * Sent through the pidfd: never to a recycled pid.  Signalling a child that
 * already ended is not an error (returns 0), as in Python.
 * Returns 0; MPROC_ENOTSTARTED; MPROC_ENOTCHILD for the current or parent
 * process object; MPROC_EFORKED; MPROC_EINVAL for a bad signal number;
 * MPROC_ECLOSED.
 */
MPROC_EXTERN int mproc_process_terminate(mproc_process *p);
MPROC_EXTERN int mproc_process_kill(mproc_process *p);
MPROC_EXTERN int mproc_process_signal(mproc_process *p, int sig);

/*
 * mproc_process_pid - the child's pid; 0 before start (Python's None).
 * Keeps its value after the child ended and after close.
 */
MPROC_EXTERN pid_t mproc_process_pid(const mproc_process *p);

/*
 * mproc_process_name - the process's name; valid until the object is
 * freed.  "" for NULL.
 */
MPROC_EXTERN const char *mproc_process_name(const mproc_process *p);

/* mproc_process_daemon - 1 for a daemon, 0 otherwise (0 for NULL). */
MPROC_EXTERN int mproc_process_daemon(const mproc_process *p);

/*
 * mproc_process_sentinel - an fd that becomes readable when the child ends
 * (Python's Process.sentinel), for poll(2) or mproc_connection_wait().
 * Owned by the object; valid until close or free.
 * Returns the fd (>= 0); MPROC_ENOTSTARTED before start; MPROC_ECLOSED.
 */
MPROC_EXTERN int mproc_process_sentinel(const mproc_process *p);

/*
 * mproc_process_close - release the object's OS resources (Python's
 * Process.close()); afterwards every method but pid, name, daemon and free
 * returns MPROC_ECLOSED.  Closing twice is harmless.
 *
 * Returns 0; MPROC_ERUNNING while the child runs ("Cannot close a process
 * while it is still running. You should first call join() or
 * terminate()."), and the object is unchanged; MPROC_EFORKED.
 */
MPROC_EXTERN int mproc_process_close(mproc_process *p);

/*
 * mproc_process_free - close (as above) and free the object.
 *
 * DESTRUCTOR: mproc_process
 * Returns 0 (also for NULL, a no-op); MPROC_ERUNNING while the child runs,
 * and then nothing is freed.  Never free the objects returned by
 * mproc_current_process() or mproc_parent_process() (MPROC_EINVAL).
 */
MPROC_EXTERN int mproc_process_free(mproc_process *p);

/*
 * mproc_current_process - this process, Python's current_process().
 *
 * A borrowed object owned by mproc: name ("MainProcess" in the main
 * process), pid and daemon flag; is_alive is 1.  Never NULL.
 */
MPROC_EXTERN mproc_process *mproc_current_process(void);

/*
 * mproc_parent_process - the process that started this one, Python's
 * parent_process(); NULL in the main process (a process mproc did not
 * start).
 *
 * A borrowed object owned by mproc: name and pid of the parent; is_alive
 * tells whether it still runs; join(timeout) waits for it to end.
 */
MPROC_EXTERN mproc_process *mproc_parent_process(void);

/*
 * mproc_active_children - the children of this process that are still
 * running, Python's active_children(); children that ended are reaped as a
 * side effect.
 *
 * Writes up to cap borrowed pointers to out (out may be NULL when cap is
 * 0) and returns how many children are running, which may exceed cap.
 */
MPROC_EXTERN int mproc_active_children(mproc_process **out, size_t cap);

/*
 * mproc_cpu_count - the number of CPUs this process may run on (its
 * affinity mask, so taskset and cgroup cpusets are honoured), at least 1.
 */
MPROC_EXTERN int mproc_cpu_count(void);

#ifdef __cplusplus
}
#endif
#endif /* MPROC_PROCESS_H */
