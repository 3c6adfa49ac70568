/*
 * process.c - Process objects: start (fork), join, signals, exit codes,
 * names, daemons, and reaping.
 *
 * DESIGN
 *
 * Objects.  A process object (struct mproc_process) lives in the memory of
 * the process that created it (its "owner"); only the owner may start,
 * join, signal or free it.  Two more objects exist per process, owned by
 * mproc: the current process and, in a child mproc started, its parent.
 *
 * One lock.  Every object's state and the list of started children are
 * guarded by one mutex per process, reg.mu.  Process starts and joins are
 * heavyweight operations, so one lock costs nothing measurable and leaves
 * no lock-ordering rule to get wrong.  Nobody sleeps while holding it:
 * joins poll the child's pidfd outside the lock, then take the lock to
 * reap.  A pthread_atfork handler takes reg.mu around every fork in the
 * process (ours or the program's), so a child never inherits it locked, and
 * the child's handler resets the registry: a new process starts with no
 * children, closes the inherited pidfds of its siblings, and counts its
 * own Process-N names from 1, as Python does.
 *
 * Watching a child.  After fork the parent opens a pidfd for the child
 * (under reg.mu, so no concurrent fork can inherit it unregistered).  The
 * pidfd is the object's sentinel: it becomes readable when the child ends.
 * On kernels without pidfd_open (before 5.3) a pipe does the same job: the
 * child holds the write end, so the read end sees end-of-file when the
 * child has exited (Python's sentinel).
 *
 * Reaping.  A child whose object is never joined must still never stay a
 * zombie, so every child is reaped in the background as it ends.  Where
 * the kernel has IORING_OP_WAITID (Linux 6.7), an io_uring request per
 * child does it without any thread: the kernel reaps the child in task
 * work of the thread that forked it and leaves the siginfo in a reap slot
 * (see src/platform/uring.c for why a thread is worth avoiding: any second
 * thread makes every later fork in the process slower).  Elsewhere a
 * reaper thread waits in epoll on the sentinels of the running children.
 * A request only works while the thread that submitted it lives: the
 * main thread may leave with pthread_exit while the process goes on, so a
 * submitting thread's exit (a thread-specific value's destructor) hands
 * its children that are still running to the reaper thread.
 * Reaping is by pid (waitid P_PID, never waitpid(-1)) and, in user space,
 * always under reg.mu, so a pid can never be recycled between a check and
 * a kill(2): only we reap our children.  join() does not wait for the
 * background: it polls the sentinel itself and reaps at once, or takes the
 * io_uring completion, so a join costs no thread hop.
 *
 * Daemons and the parent's death.  A daemon child asks the kernel for
 * SIGKILL when its parent dies (PR_SET_PDEATHSIG) and re-checks getppid()
 * against the expected parent to close the race with a parent that died
 * before the prctl.  The signal is tied to the thread that forked the
 * child, not the process, so children asked for by a thread other than the
 * main thread are forked by a long-lived internal "starter" thread instead;
 * a short-lived thread that starts a daemon does not kill it by exiting.
 * (PR_SET_PDEATHSIG(2const) documents the per-thread rule, which kernels
 * have applied for years; the 6.18 kernel this was tested on no longer
 * sends the signal when another thread of the parent survives, and the
 * test process_daemon_from_thread_dies_with_killed_parent passes either
 * way.)
 * At normal exit (atexit in the main program, and explicitly at the end of
 * every child's target) daemon children get SIGTERM and every child is
 * joined, Python's util._exit_function.
 *
 * The child.  Between fork and the target the child runs only mproc code:
 * it restores the signal mask the parent blocked around fork, sets its
 * identity (name, daemon flag, parent), asks for the death signal if it is a
 * daemon, and points stdin at /dev/null.  It leaves with _exit() after
 * flushing its own stdio, so buffers and atexit handlers it inherited from
 * the parent are not run twice (stdio was flushed before fork).
 */
#include "../internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>

/*
 * The state a forked child writes while it sets itself up (the registry
 * it resets, its identity) and the state the parent writes right after
 * the fork (the registry, the child's object: see spare_obj) sit together
 * in one page-aligned section, one page: after fork every page either
 * process writes costs a copy-on-write fault, from a few microseconds on
 * bare metal to tens in a virtual machine with shadowed page tables
 * (docs/benchmarks.md, process_start_join), so scattering this state over
 * several pages would show directly in the cost of a process start.  For
 * the same reason the fork path avoids what writes other pages: libc
 * calls that take locks or grow the stack (snprintf), malloc, and code
 * the child would run for the first time.
 */
#if defined(__GNUC__) && !defined(__clang__)
/* no_reorder: emitted in source order, reg (page-aligned) first, so that
 * the whole section is one page.  (Clang keeps source order anyway.) */
#define HOT __attribute__((section(".data.mproc_process_hot"), no_reorder))
#else
#define HOT __attribute__((section(".data.mproc_process_hot")))
#endif

#define PROCESS_MAGIC 0x50524f43u /* "PROC" */
#define PROCESS_DEAD_MAGIC 0x64656164u

enum kind { KIND_CHILD = 0, KIND_CURRENT = 1, KIND_PARENT = 2 };
enum state { ST_INITIAL = 0, ST_STARTING, ST_STARTED, ST_ENDED };

struct mproc_process {
  uint32_t magic;          /* PROCESS_MAGIC while the object is valid */
  int kind;                /* enum kind; never changes */
  int state;               /* enum state; reg.mu */
  int closed;              /* close() was called; reg.mu */
  int daemon;              /* daemon flag; set at new */
  int exitcode;            /* valid in ST_ENDED; reg.mu */
  int sentinel;            /* pidfd or pipe read end, -1; reg.mu */
  int sentinel_is_pipe;    /* 1 on kernels without pidfd */
  int waiters;             /* threads inside join's poll; reg.mu */
  int in_epoll;            /* watched by the reaper thread; reg.mu */
  struct reap_slot *slot;  /* pending io_uring waitid, or NULL; reg.mu */
  int purge_stdin;         /* the child must drop stdin's buffer; start */
  pid_t pid;               /* 0 before start; kept after the end */
  pid_t owner;             /* pid of the creating process */
  uint64_t id;             /* epoll key, unique in this process */
  const mproc_context *context; /* start method; NULL: the default */
  int method;              /* MPROC__START_*, resolved at start */
  int boot_fd;             /* spawn: the child's end of the bootstrap
                              socket, during start only */
  const char *exe;         /* spawn: the program to exec, during start */
  int pass_fds[MPROC_PASS_FDS_MAX]; /* kept by a spawned child */
  int npass;
  int hidden;              /* internal: not listed, not numbered */
  int via_server;          /* started by the forkserver: not our child;
                              sentinel is its pidfd, the exit code comes
                              on status_fd */
  int status_fd;           /* forkserver: the status socket, -1 */
  int lost;                /* forkserver: ended, its code was lost */
  mproc_target_fn target;  /* the child's entry point */
  void *ctx;               /* target's ctx, passed as is */
  void *arg;               /* the copied argument bytes (malloc) */
  size_t len;              /* their length */
  struct mproc_process *next; /* started, not yet closed; reg.mu */
  struct mproc_process *prev;
  char ident[64];          /* Python's _identity, "2:1"; "" for main */
  char name[MPROC_NAME_MAX + 1];
};

/*
 * The memory an io_uring waitid writes its result to.  It must outlive the
 * request, which may complete after the process object was freed (when a
 * join reaped the child first, the request ends with ECHILD later), so it
 * is not part of the object: slots are recycled only once their completion
 * was drained.
 */
struct reap_slot {
  siginfo_t si;            /* written by the kernel at completion */
  mproc_process *p;        /* the child, or NULL once it no longer cares */
  struct reap_slot *next;  /* free list */
};

/*
 * The registry of this process's children.  Lock rules: everything here
 * and every field of every process object marked "reg.mu" is read and
 * written with mu held.  mu is never held across fork (the atfork handlers
 * take it) nor across a blocking wait.
 */
static struct {
  pthread_mutex_t mu;
  struct mproc_process *head; /* started children not yet closed */
  int uring_state;            /* -1 unknown, 0 none, 1 reg.uring is open */
  mproc__uring uring;         /* background reaping without a thread */
  struct reap_slot *free_slots;
  int epfd;                   /* the reaper's epoll set, -1 */
  int reaper_started;         /* the reaper thread exists */
  int exit_registered;        /* atexit(exit_cleanup) done */
  unsigned counter;           /* process objects created (Python's
                                 _process_counter) */
  uint64_t next_id;           /* next epoll key */
  int pidfd_ok;               /* -1 unknown, 0 no, 1 yes */
  int pending[16];            /* pipe write ends between pipe and fork */
  int devnull;                /* /dev/null, the children's stdin, -1 */
  pid_t pid;                  /* this process's pid, cached (self_pid) */
  unsigned spare_used;        /* bit i: spare_obj[i] is in use */
} reg HOT __attribute__((aligned(4096))) = {.mu = PTHREAD_MUTEX_INITIALIZER,
         .epfd = -1,
         .uring_state = -1,
         .devnull = -1,
         .pidfd_ok = -1,
         .pending = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                     -1, -1}};

/* Who this process is.  Written before any thread exists in a child, and
 * in the main process never; read freely. */
static struct {
  char name[MPROC_NAME_MAX + 1]; /* "MainProcess" */
  char ident[64];                /* "" in the main process */
  int daemon;                    /* this process is a daemon child */
  int is_child;                  /* started by mproc */
  pid_t parent_pid;              /* 0 in the main process */
  pid_t real_ppid;               /* getppid() while the parent lives: the
                                    parent, or the forkserver (which dies
                                    with it) */
  char parent_name[MPROC_NAME_MAX + 1];
} self HOT = {.name = "MainProcess"};

static struct mproc_process current_obj HOT = {.magic = PROCESS_MAGIC,
                                           .kind = KIND_CURRENT,
                                           .sentinel = -1};
static struct mproc_process parent_obj HOT = {.magic = PROCESS_MAGIC,
                                          .kind = KIND_PARENT,
                                          .sentinel = -1};

/*
 * Process objects are taken from these first, malloc'd only when all are
 * in use.  A parent writes its child's object right after the fork (pid,
 * state, sentinel): here that write lands on the page of reg, which it
 * writes then anyway, where a malloc'd object would cost a copy-on-write
 * fault for its heap page, and malloc and free more for the allocator's
 * state, on every start.
 */
#define SPARE_OBJS 4
static struct mproc_process spare_obj[SPARE_OBJS] HOT;

/* The sentinel write end that the forking thread's child must keep; the
 * fork child handler closes every other pending write end.  Thread-local,
 * because only the forking thread survives in the child. */
static __thread int keep_wfd = -1;

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* This process's pid, cached in reg.pid: getpid() is a system call, and
 * the owner checks ask for it on every operation.  Reset by the fork child
 * handler, so only a fork that bypasses libc (a raw clone) could make it
 * stale. */
static pid_t self_pid(void) {
  pid_t pid = __atomic_load_n(&reg.pid, __ATOMIC_RELAXED);
  if (pid == 0) {
    pid = mproc__getpid();
    __atomic_store_n(&reg.pid, pid, __ATOMIC_RELAXED);
  }
  return pid;
}

static void exit_cleanup(void);
static void *reaper_main(void *unused);

/* ==================== fork hooks ==================== */

/*
 * reg.mu is held across the fork so that the child's copy of the
 * registry is not caught mid-update by another thread.  A process with
 * one thread has no other thread to fear: it forks without it, and the
 * parent then writes nothing after the fork (an unlock there is a
 * copy-on-write fault on the registry's page, in every fork; the
 * forkserver, single-threaded, forks for every start).
 */
static int atfork_locked;

static void atfork_prepare(void) {
  int lock = !mproc__single_threaded();
  if (atfork_locked != lock) {
    atfork_locked = lock;
  }
  if (lock) {
    pthread_mutex_lock(&reg.mu);
  }
}

static void atfork_parent(void) {
  if (atfork_locked) {
    pthread_mutex_unlock(&reg.mu);
  }
}

static void starter_reset_in_child(void);

/*
 * The new process has one thread and a copy of the registry: it is not the
 * owner of any of those children.  Close the copied fds (so siblings do not
 * hold each other's sentinels) and start over.  Async-signal-safe calls
 * only, apart from re-initializing our own mutex.
 */
static void atfork_child(void) {
  /* Every field is written only where it differs: a page written after
   * fork is a copy-on-write fault in every new child, and a forkserver's
   * child (mproc__forked_bare_child), whose registry is empty, then
   * writes nothing here at all. */
  if (reg.pid != 0) {
    reg.pid = 0;
  }
  if (mproc__own_threads != 0) {
    mproc__own_threads = 0;
  }
  mproc__thread_forget();
  for (struct mproc_process *p = reg.head; p != NULL; p = p->next) {
    mproc__child_close(p->sentinel);
  }
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(reg.pending); i++) {
    if (reg.pending[i] >= 0) {
      if (reg.pending[i] != keep_wfd) {
        mproc__child_close(reg.pending[i]);
      }
      reg.pending[i] = -1;
    }
  }
  if (reg.epfd >= 0) {
    mproc__child_close(reg.epfd);
    reg.epfd = -1;
  }
  if (reg.uring_state == 1) {
    /* The parent's ring is not ours.  Closing the fd is enough: its
     * mappings go with the child, and unmapping them would only cost
     * page writes on every start. */
    mproc__child_close(reg.uring.fd);
  }
  if (reg.uring_state != -1) {
    reg.uring_state = -1;
  }
  /* The parent's reap slots live in MADV_DONTFORK pages, absent here: the
   * free list must not lead into them (the address may be reused by this
   * child's own mappings). */
  if (reg.free_slots != NULL || reg.head != NULL || reg.reaper_started ||
      reg.counter != 0) {
    reg.free_slots = NULL;
    reg.head = NULL;
    reg.reaper_started = 0;
    reg.counter = 0;
  }
  /* Re-initialized by assignment, not pthread_mutex_init: no libc call
   * (and no code page to fault in) in every new child. */
  mproc__mutex_reset_in_child(&reg.mu);
  starter_reset_in_child();
  mproc__spawn_atfork_child();
  mproc__forkserver_atfork_child();
}

static void install_atfork(void) {
  pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}


/* ==================== small helpers ==================== */

static int valid(const mproc_process *p) {
  return p != NULL && p->magic == PROCESS_MAGIC;
}

/* Not started yet (or being started right now): Python's "not started". */
static int unstarted(const mproc_process *p) {
  return p->state == ST_INITIAL || p->state == ST_STARTING;
}

/* Checks for operations only the owner may do on a child object. */
static int check_child_op(const mproc_process *p) {
  if (!valid(p)) {
    return MPROC_EINVAL;
  }
  if (p->kind != KIND_CHILD) {
    return MPROC_ENOTCHILD;
  }
  if (p->owner != self_pid()) {
    return MPROC_EFORKED;
  }
  return 0;
}

/* The Python-style exit code in an io_uring waitid's siginfo. */
static int code_from_siginfo(const siginfo_t *si) {
  if (si->si_code == CLD_EXITED) {
    return si->si_status;
  }
  if (si->si_code == CLD_KILLED || si->si_code == CLD_DUMPED) {
    return -si->si_status;
  }
  return 255;
}

/* Record that p ended with code (reg.mu held). */
static void mark_ended(mproc_process *p, int code) {
  p->exitcode = code;
  p->state = ST_ENDED;
  if (p->in_epoll) {
    /* A reaped pidfd stays readable: leave the reaper's set, or it would
     * spin on it. */
    (void)mproc__epoll_del(reg.epfd, p->sentinel);
    p->in_epoll = 0;
  }
  if (p->slot != NULL) {
    p->slot->p = NULL; /* its completion (ECHILD) is drained later */
    p->slot = NULL;
  }
  MPROC__INFO("process %s (pid %d) ended with exitcode %d", p->name,
              (int)p->pid, code);
}

static int watch_with_thread(mproc_process *p);

/*
 * Take the io_uring completions that arrived (reg.mu held): each is a
 * child the kernel reaped for us, or a request that ended without reaping
 * (ECHILD because a join reaped first; ECANCELED), whose child, if still
 * running, the reaper thread then watches instead.
 */
static void drain_completions(void) {
  if (reg.uring_state != 1) {
    return;
  }
  uint64_t data[32];
  int32_t res[32];
  int n;
  while ((n = mproc__uring_drain(&reg.uring, data, res, 32)) > 0) {
    for (int i = 0; i < n; i++) {
      struct reap_slot *slot = (struct reap_slot *)(uintptr_t)data[i];
      mproc_process *p = slot->p;
      if (p != NULL) {
        p->slot = NULL;
        if (p->state == ST_STARTED) {
          if (res[i] == 0) {
            mark_ended(p, code_from_siginfo(&slot->si));
          } else if (watch_with_thread(p) != 0) {
            MPROC__WARN("cannot watch %s in the background", p->name);
          }
        }
      }
      slot->p = NULL;
      slot->next = reg.free_slots;
      reg.free_slots = slot;
    }
  }
}

/*
 * try_reap for a forkserver child (reg.mu held): it has ended when its
 * pidfd is readable, and its code is what the server wrote on the status
 * socket (EOF there: the server died, the code is lost).  The server
 * writes the code right after the child ends; block waits for it (only
 * once the caller saw the pidfd readable, and, in join, only after
 * waiting for the status socket within its deadline).
 */
static int server_child_reap(mproc_process *p, int block) {
  if (!block && mproc__wait_readable(p->sentinel, &(mproc__deadline){0}) <= 0) {
    return 0;
  }
  if (!block) {
    /* It has ended (its pidfd says so): the server reaps it and writes
     * its code at once.  Wait for that, within bounds, so that a child
     * seen as ended has an exit code; a server that does not answer in
     * time (stopped, swapped out) leaves it "running" a while longer. */
    mproc__deadline d;
    (void)mproc__deadline_init(&d, 2.0);
    if (mproc__wait_readable(p->status_fd, &d) <= 0) {
      return 0;
    }
  }
  int32_t c = 0;
  ssize_t n = mproc__read_full(p->status_fd, &c, sizeof c);
  p->lost = n != (ssize_t)sizeof c;
  if (p->lost) {
    MPROC__WARN("%s (pid %d): the forkserver died; its exit code is lost",
                p->name, (int)p->pid);
  }
  mark_ended(p, p->lost ? 255 : c);
  return 1;
}

/*
 * Reap p if it has ended (reg.mu held).  block: wait for the exit (only
 * used once the sentinel said the child is exiting).  Returns 1 if p is
 * now ST_ENDED.
 */
static int try_reap(mproc_process *p, int block) {
  if (p->state != ST_STARTED) {
    return p->state == ST_ENDED;
  }
  if (p->via_server) {
    return server_child_reap(p, block);
  }
  drain_completions();
  if (p->state != ST_STARTED) {
    return p->state == ST_ENDED;
  }
  int code = 0;
  int r = mproc__reap(p->pid, !block, &code);
  if (r == 0) {
    return 0;
  }
  if (r == -ECHILD && p->slot != NULL) {
    /* The kernel reaped it for our io_uring request, in the task work of
     * the thread that submitted it; the completion follows at once. */
    for (int i = 0; i < 2000 && p->state == ST_STARTED; i++) {
      drain_completions();
      if (p->state == ST_STARTED) {
        mproc__sleep_ns(500000u);
      }
    }
    if (p->state != ST_STARTED) {
      return p->state == ST_ENDED;
    }
  }
  if (r < 0) {
    /* ECHILD: somebody else reaped our child (waitpid(-1), SIGCHLD set to
     * SIG_IGN).  The status is lost; report 255 as Python's forkserver
     * does for an unreadable status. */
    MPROC__WARN("cannot reap %s (pid %d): %s; exitcode 255", p->name,
                (int)p->pid, mproc_strerror(r));
    code = 255;
  }
  mark_ended(p, code);
  return 1;
}

static void list_insert(mproc_process *p) {
  p->prev = NULL;
  p->next = reg.head;
  if (reg.head != NULL) {
    reg.head->prev = p;
  }
  reg.head = p;
}

static void list_remove(mproc_process *p) {
  if (p->prev != NULL) {
    p->prev->next = p->next;
  } else if (reg.head == p) {
    reg.head = p->next;
  }
  if (p->next != NULL) {
    p->next->prev = p->prev;
  }
  p->next = p->prev = NULL;
}

/* Copy a name, cut at MPROC_NAME_MAX.  A plain loop rather than libc's
 * strlen/memcpy: it runs in every new child, where each libc code page
 * touched for the first time is a page fault. */
static void copy_name(char *dst, const char *src) {
  size_t n = 0;
  while (n < MPROC_NAME_MAX && src[n] != '\0') {
    dst[n] = src[n];
    n++;
  }
  dst[n] = '\0';
}

/*
 * Undo a start that failed before fork: close the sentinel pipe (if any,
 * releasing its reg.pending slot) and make p unstarted again.  Takes
 * reg.mu.
 */
static void undo_start(mproc_process *p, const int *pfd, size_t pend) {
  pthread_mutex_lock(&reg.mu);
  if (pfd[1] >= 0) {
    reg.pending[pend] = -1;
  }
  mproc__close(pfd[0]);
  mproc__close(pfd[1]);
  p->state = ST_INITIAL;
  pthread_mutex_unlock(&reg.mu);
}

/* ==================== the reaper thread ==================== */

/*
 * Make sure children started from now on are reaped in the background
 * (reg.mu held): through io_uring when the kernel has IORING_OP_WAITID,
 * else by the reaper thread.  Also registers the exit handler.
 */
static int ensure_watcher(void) {
  if (!reg.exit_registered) {
    if (atexit(exit_cleanup) != 0) {
      return MPROC_ENOMEM;
    }
    reg.exit_registered = 1;
  }
  if (reg.uring_state < 0) {
    reg.uring_state = mproc__uring_open(&reg.uring, 64) == 0;
    MPROC__DEBUG("background reaping by %s",
                 reg.uring_state ? "io_uring waitid" : "a reaper thread");
  }
  return 0;
}

/*
 * Start a detached internal thread with every signal blocked (it inherits
 * the creating thread's mask, and mproc's threads never handle signals).
 * Returns 0 or -errno.
 */
static int start_internal_thread(void *(*fn)(void *), size_t stack) {
  sigset_t old;
  mproc__signals_block_all(&old);
  pthread_t t;
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  if (stack > 0) {
    pthread_attr_setstacksize(&a, stack);
  }
  int r = pthread_create(&t, &a, fn, NULL);
  if (r == 0) {
    __atomic_add_fetch(&mproc__own_threads, 1, __ATOMIC_RELAXED);
  }
  pthread_attr_destroy(&a);
  mproc__signals_restore(&old);
  return -r;
}

/* Start the reaper thread if it is not running (reg.mu held). */
static int ensure_reaper_thread(void) {
  if (reg.reaper_started) {
    return 0;
  }
  if (reg.epfd < 0) {
    int ep = mproc__epoll_create();
    if (ep < 0) {
      return ep;
    }
    reg.epfd = ep;
  }
  int r = start_internal_thread(reaper_main, 64 * 1024);
  if (r != 0) {
    return r;
  }
  reg.reaper_started = 1;
  return 0;
}

/* Have the reaper thread watch p's sentinel (reg.mu held). */
static int watch_with_thread(mproc_process *p) {
  int r = ensure_reaper_thread();
  if (r == 0 && !p->in_epoll) {
    r = mproc__epoll_add(reg.epfd, p->sentinel, p->id);
    p->in_epoll = r == 0;
  }
  return r;
}

/*
 * Add a page of reap slots to the free list (reg.mu held).  The page is
 * not inherited by children (MADV_DONTFORK): the kernel writes each
 * child's siginfo into it right after a fork, and a page shared
 * copy-on-write with the new child would cost a fault on every start.
 * Slot pages are never unmapped; a child never looks at its parent's.
 */
static void grow_slots(void) {
  void *page = NULL;
  size_t size = mproc__page_size();
  if (mproc__map_private_nofork(size, &page) != 0) {
    return;
  }
  struct reap_slot *slots = page;
  for (size_t i = 0; i < size / sizeof *slots; i++) {
    slots[i].next = reg.free_slots;
    reg.free_slots = &slots[i];
  }
}

/*
 * The waitid requests a thread submitted stop working when that thread
 * exits: the kernel runs their completion work in the submitting thread
 * only, and a request whose thread is gone ends without reaping (or never
 * ends).  The starter thread never exits, but the main thread can, with
 * pthread_exit while the process goes on in other threads; its children
 * would then stay zombies until some later mproc call drained the ring.
 * So a thread that submitted a request carries a thread-specific value
 * whose destructor (run by pthread_exit and by cancellation, not by
 * exit()) hands every child still waiting on the ring to the reaper
 * thread before the thread goes.  Arming costs one pthread_setspecific
 * per thread, once; the destructor runs only when such a thread exits.
 */
static pthread_key_t ring_key;
static int ring_key_ok;                    /* ring_key exists */
static pthread_once_t ring_key_once = PTHREAD_ONCE_INIT;
static __thread int ring_armed;            /* this thread set ring_key */

static void ring_thread_exit(void *unused);

static void ring_key_create(void) {
  ring_key_ok = pthread_key_create(&ring_key, ring_thread_exit) == 0;
}

/* Make sure this thread's exit hands its requests over (reg.mu held). */
static void arm_ring_thread(void) {
  if (ring_armed) {
    return;
  }
  pthread_once(&ring_key_once, ring_key_create);
  if (ring_key_ok && pthread_setspecific(ring_key, &ring_armed) == 0) {
    ring_armed = 1;
  }
}

/*
 * The destructor: this thread, which submitted waitid requests, is
 * exiting.  Children whose request has completed are marked ended; every
 * other child with a pending request is also watched by the reaper
 * thread from now on.  Its request stays pending: should the kernel still
 * complete it (reaping the child in this thread's last task work), the
 * reaper's try_reap sees ECHILD with the slot set and takes the
 * completion; otherwise the request ends cancelled, or never, and the
 * reaper thread reaps the child by pid.  Either way one reaps it, once.
 */
static void ring_thread_exit(void *unused) {
  (void)unused;
  ring_armed = 0;
  pthread_mutex_lock(&reg.mu);
  drain_completions();
  for (mproc_process *p = reg.head; p != NULL; p = p->next) {
    if (p->state == ST_STARTED && p->slot != NULL &&
        watch_with_thread(p) != 0) {
      MPROC__WARN("cannot watch %s in the background", p->name);
    }
  }
  pthread_mutex_unlock(&reg.mu);
}

/* Watch a just-started child in the background (reg.mu held).  Runs in
 * the thread that forked it (the main thread or the starter thread):
 * io_uring completions run there, and should that thread exit first,
 * ring_thread_exit hands the child to the reaper thread. */
static void watch_child(mproc_process *p) {
  if (reg.uring_state == 1) {
    arm_ring_thread();
    if (reg.free_slots == NULL) {
      grow_slots();
    }
    struct reap_slot *slot = reg.free_slots;
    if (slot != NULL) {
      reg.free_slots = slot->next;
    }
    if (slot != NULL) {
      memset(slot, 0, sizeof *slot);
      slot->p = p;
      if (mproc__uring_waitid(&reg.uring, p->pid, &slot->si,
                              (uint64_t)(uintptr_t)slot) == 0) {
        p->slot = slot;
        return;
      }
      slot->p = NULL;
      slot->next = reg.free_slots;
      reg.free_slots = slot;
    }
  }
  if (watch_with_thread(p) != 0) {
    /* Still joinable; only the background reaping is lost for it. */
    MPROC__WARN("cannot watch %s in the background", p->name);
  }
}

static void *reaper_main(void *unused) {
  (void)unused;
  pthread_mutex_lock(&reg.mu);
  int ep = reg.epfd;
  pthread_mutex_unlock(&reg.mu);
  uint64_t keys[32];
  for (;;) {
    int n = mproc__epoll_wait(ep, keys, 32, -1);
    if (n < 0) {
      /* Cannot happen with a valid epoll fd; do not spin if it does. */
      mproc__sleep_ns(100000000u);
      continue;
    }
    if (n == 0) {
      continue;
    }
    pthread_mutex_lock(&reg.mu);
    for (int i = 0; i < n; i++) {
      for (mproc_process *p = reg.head; p != NULL; p = p->next) {
        if (p->id == keys[i]) {
          /* Readable sentinel: the child has ended, or (pipe fallback)
           * is in the last steps of exiting; a blocking reap is short. */
          try_reap(p, !p->sentinel_is_pipe ? 0 : 1);
          break;
        }
      }
    }
    pthread_mutex_unlock(&reg.mu);
  }
  return NULL;
}

/* ==================== the starter thread ==================== */

/*
 * Children requested from a thread other than the main thread are forked
 * by this long-lived thread, so that their parent-death signal is tied to a
 * thread that lives as long as the process.
 */
typedef struct start_req {
  mproc_process *p;
  const sigset_t *mask; /* the requesting thread's signal mask */
  const int *pfd;       /* sentinel pipe or {-1, -1} */
  size_t pend;          /* its slot in reg.pending */
  int result;           /* fork_child's result */
  int done;
  struct start_req *next;
} start_req;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int running;
  start_req *queue;
} starter HOT = {.mu = PTHREAD_MUTEX_INITIALIZER,
                .cv = PTHREAD_COND_INITIALIZER};

MPROC__STATIC_ASSERT(sizeof reg + sizeof self + sizeof current_obj +
                             sizeof parent_obj + sizeof spare_obj +
                             sizeof starter + 5 * 64 <=
                         4096,
                     "the HOT section must fit one page");

/* Writes only what differs from the reset state: in a process that never
 * started the thread nothing is written (see mproc__mutex_reset_in_child). */
static void starter_reset_in_child(void) {
  mproc__mutex_reset_in_child(&starter.mu);
  if (starter.running || starter.queue != NULL) {
    starter.cv = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
    starter.running = 0;
    starter.queue = NULL;
  }
}

static int fork_child(mproc_process *p, const sigset_t *mask, const int *pfd,
                      size_t pend);

static void *starter_main(void *unused) {
  (void)unused;
  pthread_mutex_lock(&starter.mu);
  for (;;) {
    while (starter.queue == NULL) {
      pthread_cond_wait(&starter.cv, &starter.mu);
    }
    start_req *r = starter.queue;
    starter.queue = r->next;
    pthread_mutex_unlock(&starter.mu);
    int res = fork_child(r->p, r->mask, r->pfd, r->pend);
    pthread_mutex_lock(&starter.mu);
    r->result = res;
    r->done = 1;
    pthread_cond_broadcast(&starter.cv);
  }
  return NULL;
}

static int fork_on_starter(mproc_process *p, const sigset_t *mask,
                           const int *pfd, size_t pend) {
  start_req req = {.p = p, .mask = mask, .pfd = pfd, .pend = pend};
  pthread_mutex_lock(&starter.mu);
  if (!starter.running) {
    /* The default stack: targets of children it forks run on it. */
    int r = start_internal_thread(starter_main, 0);
    if (r != 0) {
      pthread_mutex_unlock(&starter.mu);
      undo_start(p, pfd, pend);
      return r == -EAGAIN ? MPROC_EAGAIN : r;
    }
    starter.running = 1;
  }
  req.next = starter.queue;
  starter.queue = &req;
  pthread_cond_broadcast(&starter.cv);
  while (!req.done) {
    pthread_cond_wait(&starter.cv, &starter.mu);
  }
  pthread_mutex_unlock(&starter.mu);
  return req.result;
}

/* ==================== the child's side ==================== */

/* Python's util._exit_function for our children: SIGTERM every running
 * daemon child, then join every running child. */
static void exit_cleanup(void) {
  if (__atomic_load_n(&reg.head, __ATOMIC_ACQUIRE) == NULL) {
    /* No child was started, or all were closed: nothing to wait for, and
     * no lock to take (a child that started none leaves faster). */
    return;
  }
  pthread_mutex_lock(&reg.mu);
  for (mproc_process *p = reg.head; p != NULL; p = p->next) {
    if (p->state == ST_STARTED && p->daemon && !try_reap(p, 0)) {
      MPROC__INFO("calling terminate() for daemon %s", p->name);
      if (p->sentinel_is_pipe) {
        (void)mproc__kill(p->pid, SIGTERM);
      } else {
        (void)mproc__pidfd_signal(p->sentinel, SIGTERM);
      }
    }
  }
  for (;;) {
    mproc_process *p = reg.head;
    while (p != NULL && p->state != ST_STARTED) {
      p = p->next;
    }
    if (p == NULL) {
      break;
    }
    MPROC__INFO("calling join() for process %s", p->name);
    int fd = p->sentinel;
    p->waiters++;
    pthread_mutex_unlock(&reg.mu);
    (void)mproc__wait_readable(fd, NULL);
    if (p->via_server) {
      (void)mproc__wait_readable(p->status_fd, NULL);
    }
    pthread_mutex_lock(&reg.mu);
    p->waiters--;
    try_reap(p, 1);
  }
  pthread_mutex_unlock(&reg.mu);
}

void mproc__process_become(const char *name, const char *ident, int daemon,
                           pid_t parent_pid, const char *parent_name,
                           pid_t real_ppid) {
  /* A forkserver child is a fork of the server, whose pid may be cached
   * here without the atfork handler that would clear it (the server
   * starts no process of its own). */
  __atomic_store_n(&reg.pid, 0, __ATOMIC_RELAXED);
  copy_name(self.parent_name, parent_name);
  copy_name(self.name, name);
  size_t n = 0;
  while (n + 1 < sizeof self.ident && ident[n] != '\0') {
    self.ident[n] = ident[n];
    n++;
  }
  self.ident[n] = '\0';
  self.daemon = daemon;
  self.is_child = 1;
  self.parent_pid = parent_pid;
  self.real_ppid = real_ppid;
  parent_obj.pid = parent_pid;
  copy_name(parent_obj.name, self.parent_name);
}

__attribute__((noreturn)) void mproc__process_run(mproc_target_fn fn,
                                                  const void *arg,
                                                  size_t len, void *ctx) {
  MPROC__INFO("child process calling target (pid %d)", (int)self_pid());
  int rc = fn(arg, len, ctx);
  exit_cleanup();
  mproc__shm_exit_cleanup();
  MPROC__INFO("process exiting with exitcode %d", rc & 0xff);
  mproc__stdio_flush_all();
  mproc__exit_now(rc & 0xff);
}

__attribute__((noreturn)) static void child_main(mproc_process *p,
                                                 const sigset_t *mask,
                                                 pid_t parent_pid, int wfd) {
  /* Identity first, so log lines from here on name the child. */
  mproc__process_become(p->name, p->ident, p->daemon, parent_pid, self.name,
                        parent_pid);

  if (p->daemon &&
      mproc__set_parent_death_signal(SIGKILL, parent_pid) == -ESRCH) {
    /* The parent died before we could ask to die with it. */
    mproc__exit_now(1);
  }
  if (wfd >= 0) {
    /* Pipe fallback: keep the sentinel's write end open until we really
     * exit, also across an exec the target may do. */
    (void)mproc__fd_set_cloexec(wfd, 0);
  }
  mproc__child_signals_restore(mask);

  /* stdin is /dev/null, as in Python's child bootstrap: fd 0 becomes the
   * /dev/null the parent opened once, and whatever the parent's stdin
   * buffer held is dropped. */
  if (reg.devnull >= 0) {
    (void)mproc__child_dup2(reg.devnull, 0);
  }
  if (p->purge_stdin) {
    /* Only then (the parent looked): these write to the FILE. */
    __fpurge(stdin);
    clearerr(stdin);
  }
  /* Output the parent buffered after its fflush(NULL) and before the fork
   * (another of its threads printing meanwhile, or a child forked by the
   * starter thread) is the parent's to write: dropped here, or the child
   * would write it a second time when it flushes at its end. */
  if (mproc__stdio_pending(stdout)) {
    __fpurge(stdout);
  }
  if (mproc__stdio_pending(stderr)) {
    __fpurge(stderr);
  }
  mproc__process_run(p->target, p->arg, p->len, p->ctx);
}

/*
 * Fork and run the child, then, in the parent, register and watch it.
 * Runs in the caller's thread when that is the main thread, else in the
 * starter thread: the thread that forks must live as long as the process
 * (the child's death signal and the io_uring completions follow it).
 * pfd: the sentinel pipe on kernels without pidfd ({-1, -1} otherwise),
 * parked in reg.pending[pend].  Returns 0 or a negative code, with p back
 * in ST_INITIAL and nothing left behind on failure.
 */
static int fork_child(mproc_process *p, const sigset_t *mask, const int *pfd,
                      size_t pend) {
  pid_t parent = self_pid();
  if (pfd[1] >= 0) {
    keep_wfd = pfd[1];
  }
  /* Signals stay blocked from fork until the child has set itself up, so
   * no handler runs in the child between fork and that point. */
  pid_t pid;
  if (p->method == MPROC__START_SPAWN) {
    /* No signal games: posix_spawn sets the new image's mask itself. */
    sigset_t cur;
    if (mask == NULL) {
      pthread_sigmask(SIG_SETMASK, NULL, &cur);
      mask = &cur;
    }
    int r = mproc__spawn_exec(p->exe, p->boot_fd, pfd[1], p->pass_fds,
                              p->npass, reg.devnull, mask, &pid);
    if (r != 0) {
      pid = r;
    }
  } else {
    sigset_t old;
    mproc__signals_block_all(&old);
    pid = mproc__fork();
    if (pid == 0) {
      child_main(p, mask != NULL ? mask : &old, parent, pfd[1]);
    }
    mproc__signals_restore(&old);
  }
  if (pfd[1] >= 0) {
    keep_wfd = -1;
  }

  pthread_mutex_lock(&reg.mu);
  if (pfd[1] >= 0) {
    reg.pending[pend] = -1;
    mproc__close(pfd[1]);
  }
  int r = 0;
  if (pid < 0) {
    r = (pid == -EAGAIN || (pid == -ENOMEM && p->method != MPROC__START_SPAWN))
            ? MPROC_EAGAIN
            : (int)pid;
  } else if (pfd[0] >= 0) {
    p->sentinel = pfd[0];
    p->sentinel_is_pipe = 1;
  } else {
    /* Opened under reg.mu: no concurrent fork can inherit it unseen. */
    int fd = mproc__pidfd_open(pid);
    if (fd >= 0) {
      p->sentinel = fd;
    } else {
      /* The child exists but cannot be watched (EMFILE): stop it rather
       * than leave an unwatched process behind. */
      int code;
      (void)mproc__kill(pid, SIGKILL);
      (void)mproc__reap(pid, 0, &code);
      r = fd;
    }
  }
  if (r != 0) {
    mproc__close(pfd[0]);
    p->state = ST_INITIAL;
    pthread_mutex_unlock(&reg.mu);
    return r;
  }
  p->pid = pid;
  p->state = ST_STARTED;
  list_insert(p);
  watch_child(p);
  pthread_mutex_unlock(&reg.mu);
  return 0;
}

/* ==================== public API ==================== */

static int process_new(mproc_process **out, mproc_target_fn target,
                       void *ctx, const void *arg, size_t len,
                       const mproc_process_opts *opts, int numbered);

/* A zeroed process object: a free spare_obj, else calloc'd.  NULL if out
 * of memory. */
static mproc_process *obj_alloc(void) {
  pthread_mutex_lock(&reg.mu);
  for (unsigned i = 0; i < SPARE_OBJS; i++) {
    if (!(reg.spare_used & (1u << i))) {
      reg.spare_used |= 1u << i;
      pthread_mutex_unlock(&reg.mu);
      memset(&spare_obj[i], 0, sizeof spare_obj[i]);
      return &spare_obj[i];
    }
  }
  pthread_mutex_unlock(&reg.mu);
  return calloc(1, sizeof(mproc_process));
}

static void obj_free(mproc_process *p) {
  if (p >= spare_obj && p < spare_obj + SPARE_OBJS) {
    pthread_mutex_lock(&reg.mu);
    reg.spare_used &= ~(1u << (unsigned)(p - spare_obj));
    pthread_mutex_unlock(&reg.mu);
  } else {
    free(p);
  }
}

int mproc_process_new(mproc_process **out, mproc_target_fn target,
                      void *ctx, const void *arg, size_t len,
                      const mproc_process_opts *opts) {
  return process_new(out, target, ctx, arg, len, opts, 1);
}

static int process_new(mproc_process **out, mproc_target_fn target,
                       void *ctx, const void *arg, size_t len,
                       const mproc_process_opts *opts, int numbered) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  if (target == NULL || (arg == NULL && len > 0)) {
    return MPROC_EINVAL;
  }
  if (opts != NULL && opts->npass_fds > 0) {
    if (opts->pass_fds == NULL || opts->npass_fds > MPROC_PASS_FDS_MAX) {
      return MPROC_EINVAL;
    }
    for (size_t i = 0; i < opts->npass_fds; i++) {
      if (opts->pass_fds[i] < 0) {
        return MPROC_EINVAL;
      }
    }
  }
  mproc_process *p = obj_alloc();
  if (p == NULL) {
    return MPROC_ENOMEM;
  }
  if (len > 0) {
    p->arg = malloc(len);
    if (p->arg == NULL) {
      obj_free(p);
      return MPROC_ENOMEM;
    }
    memcpy(p->arg, arg, len);
  }
  p->magic = PROCESS_MAGIC;
  p->kind = KIND_CHILD;
  p->state = ST_INITIAL;
  p->sentinel = -1;
  p->boot_fd = -1;
  p->status_fd = -1;
  p->owner = self_pid();
  p->target = target;
  p->ctx = ctx;
  p->len = len;
  p->daemon = (opts != NULL && opts->daemon) ? 1 : 0;
  p->context = opts != NULL ? opts->context : NULL;
  if (opts != NULL && opts->npass_fds > 0) {
    for (size_t i = 0; i < opts->npass_fds; i++) {
      p->pass_fds[i] = opts->pass_fds[i];
    }
    p->npass = (int)opts->npass_fds;
  }

  pthread_mutex_lock(&reg.mu);
  unsigned n = numbered ? ++reg.counter : 0;
  p->id = ++reg.next_id;
  pthread_mutex_unlock(&reg.mu);
  /* "%.48s:%u" and "Process-%s" by hand: snprintf's frame is deep enough
   * to reach one more stack page, a copy-on-write fault after every fork
   * in a program that starts processes in a loop. */
  size_t k = 0;
  while (k < 48 && self.ident[k] != '\0') {
    p->ident[k] = self.ident[k];
    k++;
  }
  if (k > 0) {
    p->ident[k++] = ':';
  }
  char digits[16];
  size_t nd = 0;
  do {
    digits[nd++] = (char)('0' + n % 10);
    n /= 10;
  } while (n > 0);
  while (nd > 0) {
    p->ident[k++] = digits[--nd];
  }
  p->ident[k] = '\0';
  if (opts != NULL && opts->name != NULL) {
    copy_name(p->name, opts->name);
  } else {
    static const char prefix[] = "Process-"; /* + ident: < 70 bytes */
    memcpy(p->name, prefix, sizeof prefix - 1);
    memcpy(p->name + sizeof prefix - 1, p->ident, k + 1);
  }
  *out = p;
  return 0;
}

/* ==================== spawn ==================== */

/* What a spawn start holds between its steps. */
typedef struct spawn_prep {
  int boot[2];              /* bootstrap socket: ours, the child's */
  size_t pend;              /* boot[1]'s slot in reg.pending */
  void *rec;                /* the bootstrap record */
  size_t len;
  char *exe;                /* the program (malloc, MPROC__PATH_MAX): not
                               on the stack, where 4 KiB in the frame of
                               mproc_process_start would spread a fork
                               start's stack over more pages, each a
                               copy-on-write fault after the fork */
} spawn_prep;

/* p's bootstrap record (malloc'd, in *rec and *len). */
static int spawn_record(mproc_process *p, int arena_fd, int wfd, void **rec,
                        size_t *len) {
  const char *dm = mproc_get_start_method(1);
  mproc__boot_info bi = {.target = (uint64_t)(uintptr_t)p->target,
                         .ctx = p->ctx,
                         .arg = p->arg,
                         .len = p->len,
                         .name = p->name,
                         .ident = p->ident,
                         .parent_name = self.name,
                         .daemon = p->daemon,
                         .method = dm != NULL ? mproc__start_method_parse(dm)
                                              : 0,
                         .parent_pid = self_pid(),
                         .pass_fds = p->pass_fds,
                         .npass = p->npass,
                         .wfd = wfd};
  return mproc__boot_record(&bi, arena_fd, rec, len);
}

/* Build p's bootstrap record (unless sp->rec has it already) and its
 * socket; with_exe: look up the program to exec too.  The child's end is
 * parked in reg.pending like a sentinel pipe's write end, so a concurrent
 * fork in another thread does not keep it open (its EOF is how a child
 * that dies before replying is noticed).  0, or an error with nothing
 * left. */
static int spawn_prepare(mproc_process *p, spawn_prep *sp, int arena_fd,
                         int wfd, int with_exe) {
  int r = 0;
  if (with_exe) {
    sp->exe = malloc(MPROC__PATH_MAX);
    if (sp->exe == NULL) {
      return MPROC_ENOMEM;
    }
    r = mproc__executable(sp->exe, MPROC__PATH_MAX);
    if (r != 0) {
      return r;
    }
  }
  if (sp->rec == NULL) {
    r = spawn_record(p, arena_fd, wfd, &sp->rec, &sp->len);
    if (r != 0) {
      return r;
    }
  }
  pthread_mutex_lock(&reg.mu);
  for (sp->pend = 0; sp->pend < MPROC__ARRAY_SIZE(reg.pending); sp->pend++) {
    if (reg.pending[sp->pend] < 0) {
      break;
    }
  }
  r = sp->pend == MPROC__ARRAY_SIZE(reg.pending) ? MPROC_EAGAIN
                                                 : mproc__socketpair(sp->boot);
  if (r == 0) {
    reg.pending[sp->pend] = sp->boot[1];
    p->boot_fd = sp->boot[1];
    p->exe = sp->exe;
  }
  pthread_mutex_unlock(&reg.mu);
  if (r != 0) {
    free(sp->rec);
    sp->rec = NULL;
  }
  return r;
}

/*
 * After the exec (r: its result): close the child's end, then tell the
 * child what to run and wait for its reply.  A child that refuses (or
 * dies first) is killed if need be and reaped, and p is unstarted again:
 * the start fails with the child's reason, and no process is left.
 */
static int spawn_finish(mproc_process *p, spawn_prep *sp, int r) {
  pthread_mutex_lock(&reg.mu);
  if (sp->boot[1] >= 0) {
    reg.pending[sp->pend] = -1;
    mproc__close(sp->boot[1]);
  }
  p->boot_fd = -1;
  p->exe = NULL;
  pthread_mutex_unlock(&reg.mu);
  if (r == 0) {
    char msg[256];
    r = mproc__boot_handshake(sp->boot[0], sp->rec, sp->len, msg,
                              sizeof msg);
    if (r != 0) {
      MPROC__WARN("%s (pid %d) did not start: %s%s%s", p->name, (int)p->pid,
                  mproc_strerror(r), msg[0] ? ": " : "", msg);
      (void)mproc_process_kill(p);
      (void)mproc_process_join(p, MPROC_FOREVER);
      pthread_mutex_lock(&reg.mu);
      list_remove(p);
      mproc__close(p->sentinel);
      p->sentinel = -1;
      mproc__close(p->status_fd);
      p->status_fd = -1;
      p->via_server = 0;
      p->lost = 0;
      p->state = ST_INITIAL;
      p->pid = 0;
      pthread_mutex_unlock(&reg.mu);
    }
  }
  mproc__close(sp->boot[0]);
  free(sp->rec);
  free(sp->exe);
  return r;
}

/*
 * Start p through the forkserver (p is ST_STARTING).  The whole
 * bootstrap record goes with the request when it fits in one message
 * (MPROC__FS_INLINE_MAX): the server resolves the target, forks, and its
 * child runs the target with nothing more to read or answer, so the
 * start is one round trip.  A larger record (large argument bytes) goes
 * over p's own bootstrap socket to the child, as under spawn.  Needs
 * pidfds (Linux 5.3): the child is not ours to wait for.
 */
static int start_via_server(mproc_process *p) {
  spawn_prep sp = {.boot = {-1, -1}};
  int r = reg.pidfd_ok ? mproc__arena_ensure() : MPROC_ENOSYS;
  if (r == 0) {
    r = spawn_record(p, -1, -1, &sp.rec, &sp.len);
  }
  pid_t pid = 0;
  int pidfd = -1, stfd = -1;
  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, NULL, &mask);
  int inline_rec = 0;
  char msg[MPROC__FS_MSG_MAX];
  msg[0] = '\0';
  if (r == 0) {
    fflush(NULL);
    if (sp.len <= MPROC__FS_INLINE_MAX) {
      r = mproc__forkserver_fork(-1, sp.rec, sp.len, p->pass_fds, p->npass,
                                 &mask, &pid, &pidfd, &stfd, msg, sizeof msg);
      /* EMSGSIZE: the socket takes less than that (a small
       * net.core.wmem_default): the bootstrap socket then. */
      inline_rec = r != MPROC_EMSGSIZE;
    }
    if (!inline_rec) {
      r = spawn_prepare(p, &sp, -1, -1, 0);
      if (r == 0) {
        r = mproc__forkserver_fork(sp.boot[1], NULL, 0, p->pass_fds,
                                   p->npass, &mask, &pid, &pidfd, &stfd, msg,
                                   sizeof msg);
      }
    }
  }
  pthread_mutex_lock(&reg.mu);
  if (r == 0) {
    p->pid = pid;
    p->sentinel = pidfd;
    p->status_fd = stfd;
    p->via_server = 1;
    p->state = ST_STARTED;
    list_insert(p);
  } else {
    p->state = ST_INITIAL;
  }
  pthread_mutex_unlock(&reg.mu);
  if (inline_rec || sp.boot[0] < 0) {
    free(sp.rec);
  } else {
    r = spawn_finish(p, &sp, r);
  }
  if (r != 0) {
    MPROC__WARN("cannot start %s: %s%s%s", p->name, mproc_strerror(r),
                msg[0] ? ": " : "", msg);
    return r;
  }
  MPROC__INFO("started %s, pid %d, by the forkserver%s", p->name, (int)p->pid,
              p->daemon ? " (daemon)" : "");
  return 0;
}

int mproc__process_new_internal(mproc_process **out, mproc_target_fn target,
                                const void *arg, size_t len,
                                const mproc__process_opts_internal *o) {
  static mproc_context *spawn_ctx;
  if (spawn_ctx == NULL) {
    (void)mproc_get_context(&spawn_ctx, "spawn");
  }
  mproc_process_opts po = {o->name, o->daemon, spawn_ctx, o->pass_fds,
                           o->npass_fds};
  int r = process_new(out, target, NULL, arg, len, &po, 0);
  if (r == 0) {
    (*out)->hidden = 1;
  }
  return r;
}

/* Python 3.12 warns when it forks a process with threads; so does mproc,
 * once per process and only with logging on (counting threads costs a
 * stat of procfs, not paid when nobody would read the line).  mproc's own
 * threads do not count: they hold no lock across a fork. */
int mproc__own_threads;

static void warn_fork_with_threads(void) {
  static int warned;
  if (MPROC__LIKELY(mproc__log_level == 0) ||
      __atomic_load_n(&warned, __ATOMIC_RELAXED) ||
      mproc_log_get_level() == MPROC_LOG_OFF) {
    return;
  }
  int n = mproc__thread_count() -
          __atomic_load_n(&mproc__own_threads, __ATOMIC_RELAXED);
  if (n > 1 && !__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED)) {
    MPROC__WARN("fork start in a process with %d threads: a lock another "
                "thread holds stays held in the child; the forkserver or "
                "spawn start method avoids this",
                n);
  }
}

int mproc_process_start(mproc_process *p) {
  int r = check_child_op(p);
  if (r != 0) {
    return r;
  }
  pthread_once(&atfork_once, install_atfork);
  int method = mproc__start_method(p->context);
  if (method < 0) {
    return method;
  }
  pthread_mutex_lock(&reg.mu);
  if (p->closed) {
    r = MPROC_ECLOSED;
  } else if (p->state != ST_INITIAL) {
    r = MPROC_ESTARTED;
  } else if (self.daemon) {
    r = MPROC_EDAEMONIC;
  } else {
    r = ensure_watcher();
  }
  if (r != 0) {
    pthread_mutex_unlock(&reg.mu);
    return r;
  }
  p->state = ST_STARTING;
  p->method = method;
  if (reg.pidfd_ok < 0) {
    int fd = mproc__pidfd_open(self_pid());
    reg.pidfd_ok = fd >= 0;
    mproc__close(fd);
  }
  if (reg.devnull < 0) {
    reg.devnull = mproc__open("/dev/null", 0 /* O_RDONLY */, 0);
    if (reg.devnull < 0) {
      r = reg.devnull;
      reg.devnull = -1;
      p->state = ST_INITIAL;
      pthread_mutex_unlock(&reg.mu);
      return r;
    }
  }
  if (method == MPROC__START_FORKSERVER) {
    pthread_mutex_unlock(&reg.mu);
    return start_via_server(p);
  }
  if (method == MPROC__START_FORK && !p->hidden) {
    warn_fork_with_threads();
  }
  /* Without pidfd, the sentinel is a pipe whose write end the child
   * keeps.  It is created under the lock and parked in reg.pending, so a
   * concurrent fork's child closes it instead of holding it open. */
  int pfd[2] = {-1, -1};
  size_t slot = 0;
  if (!reg.pidfd_ok) {
    for (slot = 0; slot < MPROC__ARRAY_SIZE(reg.pending); slot++) {
      if (reg.pending[slot] < 0) {
        break;
      }
    }
    r = slot == MPROC__ARRAY_SIZE(reg.pending) ? MPROC_EAGAIN
                                               : mproc__pipe(pfd, 0);
    if (r != 0) {
      p->state = ST_INITIAL;
      pthread_mutex_unlock(&reg.mu);
      return r;
    }
    reg.pending[slot] = pfd[1];
  }
  pthread_mutex_unlock(&reg.mu);

  /* The arena must exist before the first child, so that it is shared. */
  r = mproc__arena_ensure();
  spawn_prep sp = {.boot = {-1, -1}};
  if (r == 0 && method == MPROC__START_SPAWN) {
    r = spawn_prepare(p, &sp, mproc__arena_fd(), pfd[1], 1);
  }
  if (r == 0) {
    mproc__stdio_flush_all();
    p->purge_stdin = __fbufsize(stdin) > 0 || feof(stdin) || ferror(stdin);
    if (mproc__is_main_thread()) {
      /* The child restores the mask fork_child saved: this thread's. */
      r = fork_child(p, NULL, pfd, slot);
    } else {
      sigset_t mask;
      pthread_sigmask(SIG_SETMASK, NULL, &mask);
      r = fork_on_starter(p, &mask, pfd, slot);
    }
  } else {
    undo_start(p, pfd, slot);
  }
  if (method == MPROC__START_SPAWN) {
    r = spawn_finish(p, &sp, r);
  }
  if (r != 0) {
    MPROC__WARN("cannot start %s: %s", p->name, mproc_strerror(r));
    return r;
  }
  MPROC__INFO("started %s, pid %d%s", p->name, (int)p->pid,
              p->daemon ? " (daemon)" : "");
  return 0;
}

/* join() for the parent object: wait until the parent process ends. */
static int join_parent(double timeout) {
  mproc__deadline d;
  if (mproc__deadline_init(&d, timeout) != 0) {
    return MPROC_EINVAL;
  }
  int fd = mproc__pidfd_open(parent_obj.pid);
  if (fd >= 0) {
    int r = mproc__getppid() == self.real_ppid ? mproc__wait_readable(fd, &d)
                                               : 1;
    mproc__close(fd);
    return r > 0 ? 0 : r == 0 ? MPROC_ETIMEDOUT : r;
  }
  /* No pidfd: we were reparented when the parent died. */
  while (mproc__getppid() == self.real_ppid) {
    if (mproc__deadline_left_ns(&d) == 0) {
      return MPROC_ETIMEDOUT;
    }
    mproc__sleep_ns(2000000u);
  }
  return 0;
}

int mproc_process_join(mproc_process *p, double timeout) {
  if (!valid(p)) {
    return MPROC_EINVAL;
  }
  if (p->kind == KIND_PARENT && self.is_child) {
    return join_parent(timeout);
  }
  int r = check_child_op(p);
  if (r != 0) {
    return r;
  }
  mproc__deadline d;
  if (mproc__deadline_init(&d, timeout) != 0) {
    return MPROC_EINVAL;
  }
  pthread_mutex_lock(&reg.mu);
  if (p->closed) {
    r = MPROC_ECLOSED;
  } else if (unstarted(p)) {
    r = MPROC_ENOTSTARTED;
  } else if ((drain_completions(), p->state == ST_ENDED)) {
    r = 0;
  } else {
    /* No waitid(WNOHANG) first: the sentinel tells when there is
     * something to reap, and a start+join pair is one syscall shorter. */
    int fd = p->sentinel;
    p->waiters++;
    pthread_mutex_unlock(&reg.mu);
    int w = mproc__wait_readable(fd, &d);
    if (w > 0 && p->via_server) {
      /* Ended; the server writes its code right after reaping it. */
      w = mproc__wait_readable(p->status_fd, &d);
    }
    pthread_mutex_lock(&reg.mu);
    p->waiters--;
    if (w > 0) {
      try_reap(p, 1);
      r = 0;
    } else if (w == 0) {
      r = try_reap(p, 0) ? 0 : MPROC_ETIMEDOUT;
    } else {
      r = w;
    }
  }
  pthread_mutex_unlock(&reg.mu);
  return r;
}

int mproc_process_is_alive(mproc_process *p) {
  if (!valid(p)) {
    return MPROC_EINVAL;
  }
  if (p->kind == KIND_CURRENT) {
    return 1;
  }
  if (p->kind == KIND_PARENT) {
    return self.is_child && mproc__getppid() == self.real_ppid;
  }
  if (p->owner != self_pid()) {
    return MPROC_EFORKED;
  }
  pthread_mutex_lock(&reg.mu);
  int r;
  if (p->closed) {
    r = MPROC_ECLOSED;
  } else {
    r = p->state == ST_STARTED && !try_reap(p, 0);
  }
  pthread_mutex_unlock(&reg.mu);
  return r;
}

int mproc_process_exitcode(mproc_process *p, int *code) {
  if (!valid(p) || code == NULL) {
    return MPROC_EINVAL;
  }
  if (p->kind != KIND_CHILD) {
    return MPROC_ERUNNING; /* the current and the parent process run */
  }
  if (p->owner != self_pid()) {
    return MPROC_EFORKED;
  }
  pthread_mutex_lock(&reg.mu);
  int r;
  if (p->closed) {
    r = MPROC_ECLOSED;
  } else if (unstarted(p)) {
    r = MPROC_ENOTSTARTED;
  } else if (try_reap(p, 0)) {
    *code = p->exitcode;
    r = p->lost ? MPROC_ELOST : 0;
  } else {
    r = MPROC_ERUNNING;
  }
  pthread_mutex_unlock(&reg.mu);
  return r;
}

int mproc_process_signal(mproc_process *p, int sig) {
  int r = check_child_op(p);
  if (r != 0) {
    return r;
  }
  if (sig <= 0 || sig >= NSIG) {
    return MPROC_EINVAL;
  }
  pthread_mutex_lock(&reg.mu);
  if (p->closed) {
    r = MPROC_ECLOSED;
  } else if (unstarted(p)) {
    r = MPROC_ENOTSTARTED;
  } else if (p->state == ST_STARTED && !try_reap(p, 0)) {
    /* Not reaped, and only we reap under this lock: the pid is still
     * ours even on the pipe fallback. */
    r = p->sentinel_is_pipe ? mproc__kill(p->pid, sig)
                            : mproc__pidfd_signal(p->sentinel, sig);
    if (r == -ESRCH) {
      r = 0; /* it is exiting right now */
    }
    MPROC__DEBUG("sent signal %d to %s (pid %d)", sig, p->name, (int)p->pid);
  }
  pthread_mutex_unlock(&reg.mu);
  return r;
}

int mproc_process_terminate(mproc_process *p) {
  return mproc_process_signal(p, SIGTERM);
}

int mproc_process_kill(mproc_process *p) {
  return mproc_process_signal(p, SIGKILL);
}

pid_t mproc_process_pid(const mproc_process *p) {
  if (!valid(p)) {
    return 0;
  }
  if (p->kind == KIND_CURRENT) {
    return self_pid();
  }
  return p->pid;
}

const char *mproc_process_name(const mproc_process *p) {
  if (!valid(p)) {
    return "";
  }
  if (p->kind == KIND_CURRENT) {
    return self.name;
  }
  return p->name;
}

int mproc_process_daemon(const mproc_process *p) {
  if (!valid(p)) {
    return 0;
  }
  return p->kind == KIND_CURRENT ? self.daemon : p->daemon;
}

int mproc_process_sentinel(const mproc_process *p) {
  if (!valid(p)) {
    return MPROC_EINVAL;
  }
  if (p->kind != KIND_CHILD) {
    return MPROC_ENOTCHILD;
  }
  pthread_mutex_lock(&reg.mu);
  int r = p->closed                                             ? MPROC_ECLOSED
          : unstarted(p) ? MPROC_ENOTSTARTED
                                                                : p->sentinel;
  pthread_mutex_unlock(&reg.mu);
  return r;
}

int mproc_process_close(mproc_process *p) {
  int r = check_child_op(p);
  if (r != 0) {
    return r == MPROC_ENOTCHILD ? MPROC_EINVAL : r;
  }
  pthread_mutex_lock(&reg.mu);
  if (p->closed) {
    r = 0;
  } else if (p->state == ST_STARTING ||
             (p->state == ST_STARTED && !try_reap(p, 0))) {
    r = MPROC_ERUNNING;
  } else if (p->waiters > 0) {
    r = MPROC_EBUSY;
  } else {
    if (p->state == ST_ENDED) {
      list_remove(p);
    }
    mproc__close(p->sentinel);
    p->sentinel = -1;
    mproc__close(p->status_fd);
    p->status_fd = -1;
    p->closed = 1;
  }
  pthread_mutex_unlock(&reg.mu);
  return r;
}

int mproc_process_free(mproc_process *p) {
  if (p == NULL) {
    return 0;
  }
  int r = mproc_process_close(p);
  if (r != 0) {
    return r;
  }
  p->magic = PROCESS_DEAD_MAGIC;
  free(p->arg);
  obj_free(p);
  return 0;
}

mproc_process *mproc_current_process(void) { return &current_obj; }

mproc_process *mproc_parent_process(void) {
  return self.is_child ? &parent_obj : NULL;
}

int mproc_active_children(mproc_process **out, size_t cap) {
  if (out == NULL && cap > 0) {
    return MPROC_EINVAL;
  }
  pid_t me = self_pid();
  int n = 0;
  pthread_mutex_lock(&reg.mu);
  for (mproc_process *p = reg.head; p != NULL; p = p->next) {
    if (p->owner == me && !p->hidden && p->state == ST_STARTED &&
        !try_reap(p, 0)) {
      if ((size_t)n < cap) {
        out[n] = p;
      }
      n++;
    }
  }
  pthread_mutex_unlock(&reg.mu);
  return n;
}

int mproc_cpu_count(void) { return mproc__cpu_count(); }

/* ==================== internal ==================== */

const char *mproc__current_name(void) { return self.name; }

int mproc__process_free_slots(void) {
  int n = 0;
  pthread_mutex_lock(&reg.mu);
  for (struct reap_slot *s = reg.free_slots; s != NULL; s = s->next) {
    n++;
  }
  pthread_mutex_unlock(&reg.mu);
  return n;
}

const char *mproc__process_reaping_mode(void) {
  pthread_mutex_lock(&reg.mu);
  const char *m = reg.uring_state == 1 ? "io_uring"
                  : reg.uring_state == 0 ? "thread"
                                         : "none yet";
  pthread_mutex_unlock(&reg.mu);
  return m;
}

int mproc__internal_fds(int *out, int max) {
  int fds[4];
  int n = 0;
  pthread_mutex_lock(&reg.mu);
  if (reg.devnull >= 0) {
    fds[n++] = reg.devnull;
  }
  if (reg.epfd >= 0) {
    fds[n++] = reg.epfd;
  }
  if (reg.uring_state == 1) {
    fds[n++] = reg.uring.fd;
  }
  pthread_mutex_unlock(&reg.mu);
  int afd = mproc__arena_fd();
  if (afd >= 0) {
    fds[n++] = afd;
  }
  for (int i = 0; i < n && i < max; i++) {
    out[i] = fds[i];
  }
  return n;
}
