/*
 * mproc/context.h - start methods and contexts: Python's
 * set_start_method, get_start_method, get_context,
 * set_forkserver_preload and set_executable.
 *
 * DESIGN
 * A start method says how a new process (a Process, a pool's worker) comes
 * to exist.  There are Python's three:
 *
 *   "fork"        the child is a fork(2) of the caller: fastest, and it
 *                 inherits everything (the memory as it is, every global
 *                 set at run time).  The default, as Python's on Linux
 *                 before 3.14.  A fork taken while another thread of the
 *                 caller holds a lock (the program's own mutex, a
 *                 library's) leaves that lock held forever in the child:
 *                 a program with threads should use forkserver or spawn.
 *   "spawn"       the child is a fresh exec of the same program
 *                 (/proc/self/exe, or the one mproc_set_executable names).
 *                 mproc takes it over before main() runs (a constructor in
 *                 the library), maps the shared arena at the same address,
 *                 finds the target in its own copy of the program (checked
 *                 against the parent's GNU build-id), runs it and exits.
 *                 Safe with threads; slowest (an exec per child).
 *   "forkserver"  a server process, itself spawned (so it has one thread,
 *                 whenever it is started), forks each child on request.
 *                 Safe with threads and nearly as fast as fork.
 *
 * The process-wide default is, in order: what mproc_set_start_method
 * set; else the MPROC_START_METHOD environment variable ("fork", "spawn"
 * or "forkserver"; any other value makes starts fail with MPROC_EINVAL, so
 * a typo is not silently ignored); else "fork".  A context is a borrowed,
 * static object naming one method; giving it in mproc_process_opts or
 * mproc_pool_opts starts that object's processes with that method,
 * whatever the default is.  Everything else of the library (the arena and
 * every object in it, pipes, queues, SharedMemory) works the same under
 * every method, so, unlike Python, there is no per-context Queue or Lock:
 * only the start differs.  A started child (by any method) inherits its
 * parent's default start method.
 *
 * What a spawned child receives: the target (as a function of its own
 * copy of the program), ctx (see mproc_target_fn), a copy of the argument
 * bytes, its name, daemon flag and parent, the shared arena, the start
 * method, and the fds named in pass_fds (mproc/process.h).  It does not
 * receive anything set at run time in the parent's memory (globals, heap,
 * open FILE buffers, atexit handlers, threads) - Python's spawn rules.
 * docs/process.md compares the methods side by side.
 *
 * Threads: every function here may be called from any thread.
 */
#ifndef MPROC_CONTEXT_H
#define MPROC_CONTEXT_H

#include "mproc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_context mproc_context;

/*
 * mproc_set_start_method - set the default start method, Python's
 * multiprocessing.set_start_method(method, force).
 *
 * method: "fork", "spawn" or "forkserver"; NULL (with force) makes the
 * default unset again.  Returns 0; MPROC_EINVAL for another name (or NULL
 * without force); MPROC_EALREADY when the default was already fixed (set
 * before, or read with mproc_get_start_method(0)) and force is 0,
 * Python's "context has already been set".
 */
MPROC_EXTERN int mproc_set_start_method(const char *method, int force);

/*
 * mproc_get_start_method - the default start method's name, Python's
 * get_start_method(allow_none).
 *
 * When none was set: with allow_none, returns NULL; without, fixes the
 * default (MPROC_START_METHOD, else "fork") and returns it, or NULL when
 * MPROC_START_METHOD holds an unknown name.  The string is static.
 */
MPROC_EXTERN const char *mproc_get_start_method(int allow_none);

/*
 * mproc_get_all_start_methods - Python's get_all_start_methods(): the
 * names, the default first.  Writes up to cap static strings to out and
 * returns how many there are (3).
 */
MPROC_EXTERN int mproc_get_all_start_methods(const char **out, size_t cap);

/*
 * mproc_get_context - Python's get_context(method).
 *
 * method NULL: the default context, whose method is resolved at each
 * start (it follows later mproc_set_start_method calls).  Returns 0 and a
 * borrowed, static *out (never freed); MPROC_EINVAL for an unknown name
 * or a NULL out.
 */
MPROC_EXTERN int mproc_get_context(mproc_context **out, const char *method);

/*
 * mproc_context_start_method - the method a context starts processes
 * with ("fork", "spawn", "forkserver"; for the default context, the
 * default's current name, or NULL when MPROC_START_METHOD is invalid).
 */
MPROC_EXTERN const char *mproc_context_start_method(const mproc_context *ctx);

/*
 * mproc_set_forkserver_preload - shared libraries the forkserver loads
 * (dlopen) when it starts, Python's set_forkserver_preload(module_names):
 * children forked from it then find them loaded, and a target in one of
 * them costs no load per child.  paths: n file paths, copied; n == 0
 * clears the list.  Applies to a server started after the call.
 * Returns 0; MPROC_EINVAL for a NULL path or paths NULL with n > 0;
 * MPROC_ENOMEM.  A path the server cannot load is skipped (logged), as
 * Python skips a module that fails to import.
 */
MPROC_EXTERN int mproc_set_forkserver_preload(const char *const *paths,
                                              size_t n);

/*
 * mproc_forkserver_start - start the forkserver now, if it is not
 * running (Python's forkserver.ensure_running()).  Optional: the first
 * forkserver start does it; calling it early takes the server's start
 * (one exec) off the first child's start.
 * Returns 0; MPROC_EDAEMONIC in a daemon process; MPROC_ENOSYS without
 * pidfds (Linux before 5.3, or MPROC_NO_PIDFD set): the forkserver needs
 * them, and every forkserver start fails the same way there; the start's
 * errors.
 */
MPROC_EXTERN int mproc_forkserver_start(void);

/*
 * mproc_set_executable - the program spawn (and the forkserver) execs,
 * Python's set_executable(path).  NULL: this program itself
 * (/proc/self/exe, the default; it stays valid even when the file was
 * replaced on disk since this process started).  Another path must be
 * the same build of this program: its GNU build-id is checked in the
 * child, and a different build makes the start fail with MPROC_EBUILD.
 * Useful where /proc is not mounted.  Returns 0; MPROC_ENOMEM;
 * MPROC_ENAMETOOLONG.
 */
MPROC_EXTERN int mproc_set_executable(const char *path);

#ifdef __cplusplus
}
#endif
#endif /* MPROC_CONTEXT_H */
