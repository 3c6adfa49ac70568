/*
 * src/internal.h - what mproc's modules share and nobody else sees.
 *
 * Internal, non-static functions are prefixed mproc__ (two underscores).
 * The library is built with hidden visibility, so none of them is exported
 * from the shared library; the test suite links the static library and may
 * call them (fault injection, consistency checks).
 */
#ifndef MPROC_INTERNAL_H
#define MPROC_INTERNAL_H

#include "mproc.h"
#include "fault.h"
#include "platform/platform.h"

#include <pthread.h>
#include <stddef.h>

#define MPROC__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MPROC__STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)

/* Branch hints for fast paths. */
#define MPROC__LIKELY(x) __builtin_expect(!!(x), 1)
#define MPROC__UNLIKELY(x) __builtin_expect(!!(x), 0)

/*
 * For pthread_atfork child handlers: make *m an unlocked default mutex
 * again (another thread may have held it at the fork), writing it only if
 * it differs from one.  A write after fork is a copy-on-write fault of the
 * page in the new child, tens of microseconds each in some virtual
 * machines, and an unused mutex, or one used and released, is already
 * equal to the initializer byte for byte.  A plain loop, not memcmp: a
 * libc code page touched for the first time in the child is a fault too.
 */
static inline void mproc__mutex_reset_in_child(pthread_mutex_t *m) {
  /* Built on the stack: a static copy would sit in .rodata, a page the
   * child has not touched yet. */
  const pthread_mutex_t init = PTHREAD_MUTEX_INITIALIZER;
  const unsigned char *a = (const unsigned char *)m;
  const unsigned char *b = (const unsigned char *)&init;
  for (size_t i = 0; i < sizeof init; i++) {
    if (a[i] != b[i]) {
      *m = init;
      return;
    }
  }
}

/* ---- log.c ---- */

/* Log at a level, if on.  Cheap when off: one load and a compare. */
extern int mproc__log_level; /* -1 until MPROC_LOG was read */
void mproc__log_init(void);
#define MPROC__LOG(level, ...)                                                \
  do {                                                                        \
    if (MPROC__UNLIKELY(mproc__log_level != 0)) {                             \
      mproc_log((level), __VA_ARGS__);                                        \
    }                                                                         \
  } while (0)
#define MPROC__DEBUG(...) MPROC__LOG(MPROC_LOG_DEBUG, __VA_ARGS__)
#define MPROC__INFO(...) MPROC__LOG(MPROC_LOG_INFO, __VA_ARGS__)
#define MPROC__WARN(...) MPROC__LOG(MPROC_LOG_WARN, __VA_ARGS__)

/* ---- process/process.c ---- */

/* Threads mproc itself runs in this process (the reaper, the starter, a
 * result thread per pool): the fork-with-threads warning counts only the
 * program's own.  Zero again in a forked child. */
extern int mproc__own_threads;

/* This process's name ("MainProcess" in the main process). */
const char *mproc__current_name(void);

/* How this process reaps children in the background: "io_uring",
 * "thread" or "none yet" (before the first start).  For tests and logs. */
const char *mproc__process_reaping_mode(void);

/* Reap slots on this process's free list (see process.c).  For tests: a
 * new child must start with none, its parent's are not mapped in it. */
int mproc__process_free_slots(void);

/*
 * The fds mproc keeps open for the life of the process (arena memfd, the
 * reaper's epoll fd and eventfd, pidfds of live children).  Test harnesses
 * exclude them from fd-leak checks.  Writes up to max fds to out and
 * returns how many there are.
 */
int mproc__internal_fds(int *out, int max);

/* ---- process/context.c ---- */

/* Start methods, as numbers (0 is "the default"). */
#define MPROC__START_FORK 1
#define MPROC__START_SPAWN 2
#define MPROC__START_FORKSERVER 3

/* Longest path mproc execs or loads, NUL included. */
#define MPROC__PATH_MAX 4096

/* "fork"/"spawn"/"forkserver" -> MPROC__START_*; MPROC_EINVAL. */
int mproc__start_method_parse(const char *name);
/* MPROC__START_* -> its name; NULL for anything else. */
const char *mproc__start_method_name(int method);
/* The method c starts with (NULL or the default context: the default,
 * fixed by this call if unset); MPROC_EINVAL when MPROC_START_METHOD
 * holds an unknown name. */
int mproc__start_method(const mproc_context *c);
/* A spawned child takes its parent's default. */
void mproc__start_method_inherit(int method);
/* The program spawn execs (mproc_set_executable, else /proc/self/exe),
 * copied to buf.  0 or MPROC_ENAMETOOLONG. */
int mproc__executable(char *buf, size_t cap);
/* The forkserver preload list as NUL-terminated paths back to back in
 * buf; *len bytes.  0 or MPROC_ENAMETOOLONG when cap is short. */
int mproc__forkserver_preload(char *buf, size_t cap, size_t *len);

/* ---- process/funcref.c: functions across exec ---- */

typedef struct mproc__funcmap mproc__funcmap;
int mproc__objtab_build(void **out, size_t *len);
uint64_t mproc__objtab_generation(void);
int mproc__objtab_contains(const void *addr);
int mproc__funcmap_new(mproc__funcmap **out, const void *tab, size_t len);
int mproc__funcmap_update(mproc__funcmap *m, const void *tab, size_t len);
int mproc__funcmap_resolve(mproc__funcmap *m, uint64_t peer_addr,
                           void **local);
const char *mproc__funcmap_error(const mproc__funcmap *m);
void mproc__funcmap_free(mproc__funcmap *m);

/*
 * A function or static-data address kept in shared memory, valid in every
 * process of the program whatever its start method: an offset in an
 * object named by its build-id (the main program or a library), or, for
 * an address in no object (arena memory, heap), the address as it is.
 * make never fails (an address it cannot name stays raw); get returns the
 * address here, or NULL with *err MPROC_EBUILD (this process runs another
 * build of the program), MPROC_ENOFUNC (the library is not loaded here).
 * Neither takes a lock (both may run in a forked child at any time).
 */
typedef struct mproc__fnref {
  uint64_t off;
  uint8_t kind, is_main, idlen, pad;
  uint8_t id[40];
} mproc__fnref;
void mproc__fnref_make(mproc__fnref *r, const void *addr);
void *mproc__fnref_get(const mproc__fnref *r, int *err);

/* ---- process/spawn.c: the spawn method and the child bootstrap ---- */

/* What a child started by spawn or the forkserver is told. */
typedef struct mproc__boot_info {
  uint64_t target;         /* the target's address here */
  void *ctx;               /* arena memory, static data, or NULL */
  const void *arg;         /* argument bytes */
  size_t len;
  const char *name, *ident, *parent_name;
  int daemon;
  int method;              /* this process's default start method */
  pid_t parent_pid;        /* this process */
  const int *pass_fds;     /* fds the child keeps (at these numbers) */
  int npass;
  int wfd;                 /* a sentinel pipe's write end it keeps, -1 */
} mproc__boot_info;

/* The bootstrap record for a child (malloc'd).  arena_fd_in_child: the
 * memfd's number there, -1 when the child inherits the mapping (the
 * forkserver's children).  MPROC_EINVAL for a ctx that is neither arena
 * memory nor static data; MPROC_ENOFUNC for a target in no loaded
 * object; MPROC_ENOMEM. */
int mproc__boot_record(const mproc__boot_info *bi, int arena_fd_in_child,
                       void **out, size_t *len);
/* Send the record on sock and read the child's reply: 0 once it is about
 * to run the target; its error code (msg: its reason); MPROC_ESPAWN when
 * it ended without replying. */
int mproc__boot_handshake(int sock, const void *rec, size_t len, char *msg,
                          size_t cap);
/* Exec the program for a spawned child: boot_fd, the arena's memfd and
 * keep_wfd (-1: none) and pass_fds[0..npass) stay open in it, devnull becomes its stdin, mask
 * its signal mask.  0 and *pid, or a negative code. */
int mproc__spawn_exec(const char *exe, int boot_fd, int keep_wfd,
                      const int *pass_fds, int npass, int devnull,
                      const sigset_t *mask, pid_t *pid);
/* The child's side: read the record from sock, set up (mapping the arena
 * when attach), reply, run the target, exit.  real_ppid: the process
 * whose death a daemon child dies with: the server for the forkserver, 0
 * for the record's parent (spawn). */
__attribute__((noreturn)) void mproc__boot_child(int sock, int attach,
                                                 pid_t real_ppid);
/* The parent's loaded objects as resolved here (NULL in a forked child:
 * the parent's addresses are valid as they are). */
mproc__funcmap *mproc__parent_funcmap(void);
/* The forkserver's side.  mproc__boot_serve: this process is a
 * forkserver (its children keep the map of the requester's objects it
 * built).  mproc__boot_hdr_size: the bytes before a record's body (the
 * server places records so that the body is aligned).
 * mproc__boot_server_check: a whole record received in a request; its
 * target and ctx resolved here (0), or why not (msg: the reason).
 * mproc__boot_server_child: in the child forked for it, run it. */
void mproc__boot_serve(void);
size_t mproc__boot_hdr_size(void);
int mproc__boot_server_check(const void *rec, size_t len, void **fn,
                             void **ctx, char *msg, size_t cap);
__attribute__((noreturn)) void mproc__boot_server_child(const void *rec,
                                                        void *fn, void *ctx,
                                                        pid_t real_ppid);
void mproc__spawn_atfork_child(void);

/* ---- process/process.c: for the child bootstrap ---- */

/* Take the identity of a started child (before its target runs). */
void mproc__process_become(const char *name, const char *ident, int daemon,
                           pid_t parent_pid, const char *parent_name,
                           pid_t real_ppid);

/* A process object mproc uses itself (the forkserver): no Process-N
 * number, never listed by mproc_active_children, always spawned. */
typedef struct mproc__process_opts_internal {
  const char *name;
  int daemon;
  const int *pass_fds;
  size_t npass_fds;
} mproc__process_opts_internal;
int mproc__process_new_internal(mproc_process **out, mproc_target_fn target,
                                const void *arg, size_t len,
                                const mproc__process_opts_internal *o);

/* ---- process/forkserver.c ---- */

/* The largest bootstrap record a request carries itself, and the room
 * for the server's reason when it refuses one. */
#define MPROC__FS_INLINE_MAX ((size_t)64 << 10)
#define MPROC__FS_MSG_MAX 256
/* Ask the forkserver (started now if needed, restarted once if it died)
 * for a child with the signal mask mask, that runs the bootstrap record
 * rec (rec_len <= MPROC__FS_INLINE_MAX) or, rec NULL, boots from boot_fd.
 * 0 with its pid, a pidfd and the status socket; or a negative code (msg:
 * the server's reason, when it gave one); MPROC_EMSGSIZE when the control
 * socket takes no message as large as the record. */
int mproc__forkserver_fork(int boot_fd, const void *rec, size_t rec_len,
                           const int *pass_fds, int npass,
                           const sigset_t *mask, pid_t *pid, int *pidfd,
                           int *status_fd, char *msg, size_t cap);
/* The server's pid, 0 when none runs.  For tests. */
pid_t mproc__forkserver_pid(void);
/* For tests: the control socket (-1 when no server runs), and a plain
 * request (a bootstrap socket, no passed fds) on a given control socket,
 * without a restart: 0 and the child's pid, pidfd and status socket, or
 * the server's refusal (MPROC_EPERM for another uid), MPROC_ESPAWN. */
int mproc__forkserver_ctl(void);
/* Stop the server, if one runs, and reap it (Python's _forkserver._stop):
 * the test runner's, so a case's leak checks see only the case's own
 * processes and fds.  The next forkserver start starts a new one. */
void mproc__forkserver_stop(void);
int mproc__forkserver_request(int ctl, int boot_fd, const sigset_t *mask,
                              pid_t *pid, int *pidfd, int *status_fd);
void mproc__forkserver_atfork_child(void);
/* Run the target as a started child does, then leave with its code. */
__attribute__((noreturn)) void mproc__process_run(mproc_target_fn fn,
                                                  const void *arg,
                                                  size_t len, void *ctx);

/* ---- arena.c ---- */

/* Create the arena if it does not exist yet (called before the first fork
 * so that every child shares it).  Returns 0 or a negative code. */
int mproc__arena_ensure(void);

/* The arena's memfd, or -1 if there is no arena. */
int mproc__arena_fd(void);

/* Where the arena is mapped: 0, or MPROC_ENOENT before it exists. */
int mproc__arena_where(uint64_t *base, uint64_t *size);

/* 1 if ptr lies in the arena. */
int mproc__arena_contains(const void *ptr);

/* Map the parent's arena (memfd fd) at base in a spawned process.
 * 0; MPROC_EARENAMAP when that address is taken or the memfd is not an
 * arena of this layout there; MPROC_EALREADY if this process has one. */
int mproc__arena_attach(int fd, uint64_t base, uint64_t size);

/*
 * Program-wide slots in the arena header, zero when the arena is made, for
 * objects a module needs every process to find (the sync module's table
 * of process tokens).  A module claims its index below and publishes its
 * object with a compare-and-swap from NULL, so two processes racing to
 * create it agree on one.  Returns the slot's address (creating the arena
 * if needed), or NULL on error.
 */
#define MPROC__ARENA_ROOTS 8
#define MPROC__ROOT_SYNC_OWNERS 0 /* sync.c: the process token table */
void **mproc__arena_root(int index);

/*
 * Walk the whole heap and check every invariant (block chain, footers,
 * free lists, counters).  Returns 0 if consistent, MPROC_ECORRUPT if not.
 * For tests.
 */
int mproc__arena_check(void);

/*
 * A process waiting for the allocator's lock longer than
 * MPROC__ARENA_STUCK_NS calls fn(holder) (the holding thread's id), and
 * again every 20 ms while it waits.  The pool sets it to end a worker of
 * its own that is stopped while it holds the lock; NULL: wait as long as
 * it takes.  Program-wide; inherited by forked children.
 */
#define MPROC__ARENA_STUCK_NS 1000000000ull
void mproc__arena_set_stuck_hook(void (*fn)(pid_t holder));

/*
 * mproc_shm_free, giving up on the allocator's lock when d passes (NULL:
 * wait as mproc_shm_free does): MPROC_ETIMEDOUT, and the block is still
 * the caller's.  For a thread that frees on behalf of a caller with a
 * timeout (a pool's waiter collecting results) and can hand the block to
 * someone without one.
 */
int mproc__shm_free_until(void *ptr, const mproc__deadline *d);

/* Fault injection for tests: src/fault.h (the ARENA_* points). */

/* ---- sync (src/sync/) ---- */

/*
 * A Lock or RLock made in place inside another arena object, so that the
 * lock word and the data it guards share a cache line (a Value's own
 * lock): MPROC__LOCK_BYTES of 8-aligned memory.  mproc_lock_free refuses
 * it (MPROC_EINVAL); the owner retires it, which fails with MPROC_EBUSY
 * while a live process holds it (a holder that died does not keep it
 * busy; the check allocates nothing and is not rate-limited).
 */
#define MPROC__LOCK_BYTES 32
void mproc__lock_init_embedded(void *mem, int recursive);
int mproc__lock_retire_embedded(void *mem);
/* 1 if a live process (this one included) holds the lock, checked now (no
 * rate limit) and without allocating; 0 if it is free, not recoverable,
 * or held by a process that died.  For the free paths. */
int mproc__lock_busy(const mproc_lock *l);

/*
 * An "asym" Lock: a plain Lock embedded in another arena object whose
 * owner module (the queue) wants its hot path without a second locked
 * instruction.  It differs from a plain Lock in one way: a waiter does
 * not announce itself with a bit in the lock word but by raising a flag
 * in the next 32-bit word, and then calls mproc__membarrier() before it
 * looks at the word a last time and sleeps on the flag (not the word,
 * which a release and a new acquire by the same process can put back
 * unchanged).  So the holder may release
 * with a plain store of 0 followed by a plain load of the flag: the
 * membarrier on the rare, sleeping side stands in for the store-load
 * fence the release would otherwise need (membarrier(2)'s "asymmetric"
 * use).  A release that finds the flag raised lowers it and wakes every
 * sleeper (each raises it again if it must sleep again), so the flag of a
 * waiter killed in its sleep costs one wasted wake, not one per release
 * for ever.  A process whose registration for membarrier failed releases
 * with an exchange instead, and a waiter whose membarrier call fails
 * sleeps in 1 ms slices, so a missed wake costs at most that.
 * mproc_lock_acquire/_release and every other Lock call work on it as on
 * a plain Lock.
 *
 * mproc__lock_try_fast: 1 if it took the free lock with one CAS, else 0
 * (busy, or this process has no token yet): then call mproc_lock_acquire,
 * which also handles a dead holder.  For any plain Lock.
 * mproc__lock_release_asym: release an asym lock the caller holds and
 * has not left inconsistent (after MPROC_EOWNERDEAD it called
 * mproc_lock_consistent).
 */
#define MPROC__LOCK_WAITERS 0x80000000u
extern uint32_t mproc__sync_self_token __attribute__((visibility("hidden")));
/* 1 once this process registered for membarrier (owner.c; reset in a
 * forked child, which registers again with its token). */
extern int mproc__sync_asym_ok __attribute__((visibility("hidden")));
/* How long an asym lock's sleeper sleeps before it looks again on its own
 * (50 ms; lock.c).  Tests lengthen it so that a lost wake shows as a wait
 * of many seconds instead of a 50 ms delay that load could also cause. */
extern uint64_t mproc__sync_asym_slice_ns __attribute__((visibility("hidden")));
void mproc__lock_init_embedded_asym(void *mem);
/* Lower an asym lock's flag and wake all its sleepers (lock.c). */
void mproc__lock_wake_sleepers(void *mem);
static inline int mproc__lock_try_fast(void *mem) {
  uint32_t tok = __atomic_load_n(&mproc__sync_self_token, __ATOMIC_RELAXED);
  uint32_t v = 0;
  return tok != 0 &&
         __atomic_compare_exchange_n((uint32_t *)mem, &v, tok, 0,
                                     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}
static inline void mproc__lock_release_asym(void *mem) {
  uint32_t *word = (uint32_t *)mem;
  uint32_t *sleeping = word + 1;
  if (MPROC__LIKELY(__atomic_load_n(&mproc__sync_asym_ok, __ATOMIC_RELAXED))) {
    __atomic_store_n(word, 0, __ATOMIC_RELEASE);
    /* Only the compiler must not move the load above the store; the
     * sleeper's membarrier orders the CPU. */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
  } else {
    (void)__atomic_exchange_n(word, 0, __ATOMIC_SEQ_CST);
  }
  if (MPROC__UNLIKELY(__atomic_load_n(sleeping, __ATOMIC_SEQ_CST) != 0)) {
    mproc__lock_wake_sleepers(mem);
  }
}

/* One pause of a spin-wait loop: tells the CPU (and a hyperthread
 * sibling) that this is a spin, and costs some tens of nanoseconds. */
static inline void mproc__cpu_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* ---- shm.c ---- */

/* Unlink the segments this process created with MPROC_SHM_UNLINK_ON_EXIT
 * and has not unlinked or closed.  Registered with atexit(); process.c
 * also calls it at the end of an mproc child, which leaves with _exit(). */
void mproc__shm_exit_cleanup(void);

#endif /* MPROC_INTERNAL_H */
