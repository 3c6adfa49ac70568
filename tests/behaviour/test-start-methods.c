/*
 * tests/behaviour/test-start-methods.c - the three start methods (fork,
 * spawn, forkserver) and contexts (mproc/context.h), end to end with real
 * processes: what a child receives under each method, what it does not,
 * how each start fails, and the forkserver's faults (the server killed,
 * its parent killed, a request from another user).
 *
 * A spawned child is a fresh exec of this test program: mproc takes it
 * over before main() (a constructor in the library), so the runner's
 * main never runs there.  Children report through arena memory (the ctx,
 * mapped at the same address under every method) or a passed pipe.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "internal.h"
#include "mproc/arena.h"
#include "mproc/context.h"
#include "mproc/log.h"
#include "mproc/pool.h"
#include "mproc/connection.h"
#include "mproc/process.h"
#include "mproc/shm.h"
#include "mproc/sync.h"
#include "task.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MPROC_TEST_HAS_ASAN 1
#endif
#endif
#ifndef MPROC_TEST_HAS_ASAN
#define MPROC_TEST_HAS_ASAN 0
#endif

static const char *const methods[] = {"fork", "spawn", "forkserver"};
#define NMETHODS 3

/* Whether method k runs here: the forkserver needs pidfds (skipped in the
 * suite's run without them). */
static int method_ok(int k) {
  if (k != 2) {
    return 1;
  }
  int r = mproc_forkserver_start();
  if (r == MPROC_ENOSYS) {
    printf("# no forkserver without pidfds: its part is skipped\n");
    return 0;
  }
  ASSERT_OK(r);
  return 1;
}

static const mproc_context *ctx_of(const char *m) {
  mproc_context *c = NULL;
  ASSERT_OK(mproc_get_context(&c, m));
  ASSERT_NOT_NULL(c);
  return c;
}

/* What a child tells the parent, in the arena. */
typedef struct report {
  _Atomic int started;
  _Atomic int release;
  int pid, ppid, parent_pid;
  int global;
  int trylock;
  char name[64];
  char method[16];
  char arg[16];
} report;

static report *new_report(void) {
  report *r;
  ASSERT_OK(mproc_shm_calloc((void **)&r, 1, sizeof *r));
  return r;
}

/* Set at run time in the parent: a fork child sees 2, a fresh image 1. */
static int global_value = 1;

static const int static_data = 4242;

/* Wait (bounded) until a child set *flag. */
static void wait_flag(_Atomic int *flag) {
  double end = test_now() + 30 * test_timeout_mult();
  while (atomic_load(flag) == 0) {
    ASSERT(test_now() < end);
    test_sleep(0.001);
  }
}

/* A pool of 2 workers started by method m, with base's other options
 * (NULL: none). */
static mproc_pool *pool_of(const char *m, const mproc_pool_opts *base) {
  mproc_pool_opts o;
  if (base != NULL) {
    o = *base;
  } else {
    memset(&o, 0, sizeof o);
  }
  o.processes = 2;
  o.context = ctx_of(m);
  mproc_pool *p = NULL;
  ASSERT_OK(mproc_pool_new(&p, &o));
  return p;
}

static mproc_process *start_with(const char *m, mproc_target_fn fn,
                                 void *ctx, const void *arg, size_t len,
                                 const char *name, int daemon) {
  mproc_process_opts o;
  memset(&o, 0, sizeof o);
  o.context = ctx_of(m);
  o.name = name;
  o.daemon = daemon;
  mproc_process *p = NULL;
  ASSERT_OK(mproc_process_new(&p, fn, ctx, arg, len, &o));
  ASSERT_OK(mproc_process_start(p));
  return p;
}

static int finish(mproc_process *p) {
  ASSERT_OK(mproc_process_join(p, 60 * test_timeout_mult()));
  int code = -1000;
  ASSERT_OK(mproc_process_exitcode(p, &code));
  ASSERT_OK(mproc_process_free(p));
  return code;
}

static int t_exit(const void *arg, size_t len, void *ctx);

/* ---- the API ---- */

TEST_IMPL(start_methods_api) {
  const char *all[4] = {NULL, NULL, NULL, NULL};
  ASSERT_EQ(mproc_get_all_start_methods(all, 4), 3);
  int seen = 0;
  for (int i = 0; i < 3; i++) {
    for (int k = 0; k < NMETHODS; k++) {
      if (all[i] != NULL && strcmp(all[i], methods[k]) == 0) {
        seen |= 1 << k;
      }
    }
  }
  ASSERT_EQ(seen, 7);
  mproc_context *c = NULL;
  ASSERT_ERR(mproc_get_context(&c, "vfork"), MPROC_EINVAL);
  ASSERT_ERR(mproc_get_context(NULL, "fork"), MPROC_EINVAL);
  for (int k = 0; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    ASSERT_STR_EQ(mproc_context_start_method(ctx_of(methods[k])), methods[k]);
  }
  /* The default, fixed once read; a second set needs force. */
  ASSERT_OK(mproc_set_start_method(NULL, 1));
  ASSERT_NULL(mproc_get_start_method(1));
  ASSERT_ERR(mproc_set_start_method("thread", 0), MPROC_EINVAL);
  ASSERT_OK(mproc_set_start_method("spawn", 0));
  ASSERT_STR_EQ(mproc_get_start_method(0), "spawn");
  ASSERT_ERR(mproc_set_start_method("fork", 0), MPROC_EALREADY);
  ASSERT_OK(mproc_set_start_method("forkserver", 1));
  ASSERT_STR_EQ(mproc_get_start_method(0), "forkserver");
  /* The default context follows the default. */
  ASSERT_OK(mproc_get_context(&c, NULL));
  ASSERT_STR_EQ(mproc_context_start_method(c), "forkserver");
  ASSERT_OK(mproc_set_start_method(NULL, 1));
  /* Bad option values. */
  mproc_process_opts o;
  memset(&o, 0, sizeof o);
  int fds[MPROC_PASS_FDS_MAX + 1];
  for (int i = 0; i <= MPROC_PASS_FDS_MAX; i++) {
    fds[i] = 1;
  }
  o.pass_fds = fds;
  o.npass_fds = MPROC_PASS_FDS_MAX + 1;
  mproc_process *p = NULL;
  ASSERT_ERR(mproc_process_new(&p, t_exit, NULL, NULL, 0, &o),
             MPROC_EINVAL);
  fds[0] = -1;
  o.npass_fds = 1;
  ASSERT_ERR(mproc_process_new(&p, t_exit, NULL, NULL, 0, &o),
             MPROC_EINVAL);
  return 0;
}

/* MPROC_START_METHOD: a typo is an error, not fork in disguise. */
TEST_IMPL(start_methods_env_invalid) {
  ASSERT_EQ(setenv("MPROC_START_METHOD", "spwan", 1), 0);
  ASSERT_OK(mproc_set_start_method(NULL, 1));
  ASSERT_NULL(mproc_get_start_method(0));
  mproc_process *p = NULL;
  ASSERT_OK(mproc_process_new(&p, t_exit, NULL, NULL, 0,
                              NULL));
  ASSERT_ERR(mproc_process_start(p), MPROC_EINVAL);
  ASSERT_OK(mproc_process_free(p));
  ASSERT_EQ(setenv("MPROC_START_METHOD", "forkserver", 1), 0);
  ASSERT_OK(mproc_set_start_method(NULL, 1));
  ASSERT_STR_EQ(mproc_get_start_method(0), "forkserver");
  ASSERT_EQ(unsetenv("MPROC_START_METHOD"), 0);
  return 0;
}

/* ---- what a child receives ---- */

static int t_report(const void *arg, size_t len, void *ctx) {
  report *r = ctx;
  r->pid = (int)getpid();
  r->ppid = (int)getppid();
  mproc_process *parent = mproc_parent_process();
  r->parent_pid = parent != NULL ? (int)mproc_process_pid(parent) : -1;
  r->global = global_value;
  snprintf(r->name, sizeof r->name, "%s",
           mproc_process_name(mproc_current_process()));
  const char *m = mproc_get_start_method(1);
  snprintf(r->method, sizeof r->method, "%s", m != NULL ? m : "(none)");
  if (len < sizeof r->arg) {
    memcpy(r->arg, arg, len);
  }
  return 7;
}

TEST_IMPL(start_methods_child_receives) {
  global_value = 2;
  for (int k = 0; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    report *r = new_report();
    /* The child inherits the parent's default method. */
    ASSERT_OK(mproc_set_start_method(methods[(k + 1) % NMETHODS], 1));
    mproc_process *p =
        start_with(methods[k], t_report, r, "hello", 5, "kid", 0);
    pid_t pid = mproc_process_pid(p);
    ASSERT_EQ(finish(p), 7);
    ASSERT_EQ(r->pid, pid);
    ASSERT_EQ(r->parent_pid, getpid());
    ASSERT_STR_EQ(r->name, "kid");
    ASSERT_STR_EQ(r->arg, "hello");
    ASSERT_STR_EQ(r->method, methods[(k + 1) % NMETHODS]);
    if (k == 0) {
      ASSERT_EQ(r->ppid, getpid());
      ASSERT_EQ(r->global, 2); /* fork: the memory as it is */
    } else {
      ASSERT_EQ(r->global, 1); /* a fresh image */
    }
    if (k == 1) {
      ASSERT_EQ(r->ppid, getpid());
    }
    if (k == 2) {
      ASSERT_EQ(r->ppid, mproc__forkserver_pid()); /* forked by the server */
    }
    ASSERT_OK(mproc_shm_free(r));
  }
  ASSERT_OK(mproc_set_start_method(NULL, 1));
  return 0;
}

/* A ctx in static data reaches a spawned child as its own copy's address;
 * arena memory is shared both ways. */
static int t_static_ctx(const void *arg, size_t len, void *ctx) {
  report *r;
  if (len != sizeof r) {
    return 90;
  }
  memcpy(&r, arg, sizeof r);
  if (ctx != &static_data) {
    return 91;
  }
  r->global = *(const int *)ctx;
  return 0;
}

TEST_IMPL(start_methods_static_and_arena_ctx) {
  for (int k = 0; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    report *r = new_report();
    mproc_process *p = start_with(methods[k], t_static_ctx,
                                  (void *)&static_data, &r, sizeof r, NULL, 0);
    ASSERT_EQ(finish(p), 0);
    ASSERT_EQ(r->global, 4242);
    ASSERT_OK(mproc_shm_free(r));
  }
  return 0;
}

/* A heap ctx means nothing in a fresh image: refused at the start. */
TEST_IMPL(start_methods_heap_pointers_refused) {
  int *heap = malloc(sizeof *heap);
  ASSERT_NOT_NULL(heap);
  *heap = 1;
  for (int k = 1; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    mproc_process_opts o;
    memset(&o, 0, sizeof o);
    o.context = ctx_of(methods[k]);
    mproc_process *p = NULL;
    ASSERT_OK(mproc_process_new(&p, t_static_ctx, heap, NULL, 0, &o));
    ASSERT_ERR(mproc_process_start(p), MPROC_EINVAL);
    ASSERT_OK(mproc_process_free(p));
    /* A "function" on the heap is in no loaded object. */
    ASSERT_OK(mproc_process_new(&p, (mproc_target_fn)(void *)heap, NULL,
                                NULL, 0, &o));
    ASSERT_ERR(mproc_process_start(p), MPROC_ENOFUNC);
    ASSERT_OK(mproc_process_free(p));
  }
  free(heap);
  return 0;
}

/* Argument bytes of every size arrive whole and aligned for any type, as
 * a forked child's do: small ones travel inside the forkserver's request,
 * large ones over the child's bootstrap socket. */
static int t_check_arg(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  if (len > 0 && (uintptr_t)arg % _Alignof(max_align_t) != 0) {
    return 90;
  }
  const unsigned char *b = arg;
  for (size_t i = 0; i < len; i++) {
    if (b[i] != (unsigned char)(i * 7 + len)) {
      return 91;
    }
  }
  return (int)(len % 200);
}

TEST_IMPL(start_methods_argument_sizes) {
  const size_t sizes[] = {0, 1, 100, 60000, (64u << 10) - 2000, 70000,
                          1u << 20};
  for (int k = 0; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
      size_t len = sizes[j];
      unsigned char *b = malloc(len + 1);
      ASSERT_NOT_NULL(b);
      for (size_t i = 0; i < len; i++) {
        b[i] = (unsigned char)(i * 7 + len);
      }
      mproc_process *p = start_with(methods[k], t_check_arg, NULL, b, len,
                                    NULL, 0);
      free(b);
      ASSERT_EQ(finish(p), (int)(len % 200));
    }
  }
  return 0;
}

/* A spawned or forkserver child turns its parent's addresses into its own
 * (what its pools do with their owner's task functions): the map of the
 * parent's objects is there, the forkserver's kept from the server. */
static int t_translate(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  uint64_t theirs;
  if (len != sizeof theirs) {
    return 90;
  }
  memcpy(&theirs, arg, sizeof theirs);
  mproc__funcmap *m = mproc__parent_funcmap();
  if (m == NULL) {
    return 91;
  }
  void *local = NULL;
  if (mproc__funcmap_resolve(m, theirs, &local) != 0) {
    return 92;
  }
  return local == (void *)(uintptr_t)t_translate ? 0 : 93;
}

TEST_IMPL(start_methods_child_translates_parent_addresses) {
  uint64_t mine = (uint64_t)(uintptr_t)t_translate;
  for (int k = 1; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    for (int i = 0; i < 2; i++) { /* the second from the server's kept map */
      ASSERT_EQ(finish(start_with(methods[k], t_translate, NULL, &mine,
                                  sizeof mine, NULL, 0)),
                0);
    }
  }
  return 0;
}

/* ---- exits and signals ---- */

static int t_block(const void *arg, size_t len, void *ctx) {
  (void)arg;
  (void)len;
  report *r = ctx;
  atomic_store(&r->started, 1);
  while (atomic_load(&r->release) == 0) {
    test_sleep(0.001);
  }
  return 3;
}

static int t_exit(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  int code = 0;
  if (len == sizeof code) {
    memcpy(&code, arg, sizeof code);
  }
  exit(code);
}

TEST_IMPL(start_methods_exit_codes_and_signals) {
  for (int k = 0; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    report *r = new_report();
    mproc_process *p = start_with(methods[k], t_block, r, NULL, 0, NULL, 0);
    wait_flag(&r->started);
    ASSERT_EQ(mproc_process_is_alive(p), 1);
    int code;
    ASSERT_ERR(mproc_process_exitcode(p, &code), MPROC_ERUNNING);
    ASSERT_OK(mproc_process_terminate(p));
    ASSERT_EQ(finish(p), -SIGTERM);

    memset(r, 0, sizeof *r);
    p = start_with(methods[k], t_block, r, NULL, 0, NULL, 0);
    wait_flag(&r->started);
    ASSERT_OK(mproc_process_kill(p));
    ASSERT_EQ(finish(p), -SIGKILL);

    memset(r, 0, sizeof *r);
    p = start_with(methods[k], t_block, r, NULL, 0, NULL, 0);
    wait_flag(&r->started);
    atomic_store(&r->release, 1);
    ASSERT_EQ(finish(p), 3);

    int want = 42;
    p = start_with(methods[k], t_exit, NULL, &want, sizeof want, NULL, 0);
    ASSERT_EQ(finish(p), 42);
    ASSERT_OK(mproc_shm_free(r));
  }
  return 0;
}

/* ---- fds ---- */

static int t_fds(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  int fd[2];
  if (len != sizeof fd) {
    return 90;
  }
  memcpy(fd, arg, sizeof fd);
  /* fd[0]: passed, write end of a pipe; fd[1]: open in the parent, not
   * passed: closed here under spawn and forkserver. */
  int closed = fcntl(fd[1], F_GETFD) < 0 && errno == EBADF;
  /* Any other fd open here besides stdio, the passed one and the arena's
   * (the library's, close-on-exec)?  Without pidfds the parent watches
   * the child through a pipe whose write end the child keeps: one more. */
  int others = mproc__pidfd_supported() ? 0 : -1;
  for (int i = 3; i < 1024; i++) {
    if (i != fd[0] && i != mproc__arena_fd() && fcntl(i, F_GETFD) >= 0) {
      others++;
    }
  }
  int v = 1000 + closed + 100 * (others > 0);
  return write(fd[0], &v, sizeof v) == (ssize_t)sizeof v ? 0 : 92;
}

TEST_IMPL(start_methods_pass_fds) {
  for (int k = 0; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    int other = dup(0); /* no close-on-exec */
    ASSERT_GE(other, 0);
    int fd[2] = {pp[1], other};
    mproc_process_opts o;
    memset(&o, 0, sizeof o);
    o.context = ctx_of(methods[k]);
    o.pass_fds = &pp[1];
    o.npass_fds = 1;
    mproc_process *p = NULL;
    ASSERT_OK(mproc_process_new(&p, t_fds, NULL, fd, sizeof fd, &o));
    ASSERT_OK(mproc_process_start(p));
    ASSERT_EQ(close(pp[1]), 0);
    int v = 0;
    ASSERT(test_read_int(pp[0], &v, 30 * test_timeout_mult()));
    /* Under fork every fd is inherited (the test's own among them); a
     * spawned or forkserver child has only what it was given. */
    if (k == 0) {
      ASSERT_EQ(v % 100, 0);
    } else {
      ASSERT_EQ(v, 1001);
    }
    ASSERT_EQ(finish(p), 0);
    ASSERT_EQ(close(pp[0]), 0);
    ASSERT_EQ(close(other), 0);
  }
  return 0;
}

/* ---- threads: the reason for spawn and forkserver ---- */

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int holding;
static int hold_pipe[2];

static void *hold_lock(void *arg) {
  (void)arg;
  pthread_mutex_lock(&held);
  atomic_store(&holding, 1);
  char c;
  ssize_t n = read(hold_pipe[0], &c, 1); /* until the test is done */
  (void)n;
  pthread_mutex_unlock(&held);
  return NULL;
}

static int t_trylock(const void *arg, size_t len, void *ctx) {
  (void)arg;
  (void)len;
  (void)ctx;
  int r = pthread_mutex_trylock(&held);
  return r == 0 ? 0 : 1;
}

TEST_IMPL(start_methods_thread_holding_a_lock) {
  ASSERT_EQ(pipe(hold_pipe), 0);
  pthread_t th;
  test_start_threads(&th, 1, hold_lock, NULL);
  wait_flag(&holding);
  /* fork copies the lock as it is: held, by a thread that is not there. */
  ASSERT_EQ(finish(start_with("fork", t_trylock, NULL, NULL, 0, NULL, 0)), 1);
  /* A fresh image (spawn), or a fork of the single-threaded server. */
  ASSERT_EQ(finish(start_with("spawn", t_trylock, NULL, NULL, 0, NULL, 0)), 0);
  if (method_ok(2)) {
    ASSERT_EQ(
        finish(start_with("forkserver", t_trylock, NULL, NULL, 0, NULL, 0)),
        0);
  }
  ASSERT_EQ(write(hold_pipe[1], "x", 1), 1);
  test_join_threads_ok(&th, 1);
  close(hold_pipe[0]);
  close(hold_pipe[1]);
  return 0;
}

/* ---- how a spawn fails ---- */

/* A copy of this program with one byte of its build-id changed: the same
 * code, but by its build-id another build. */
static void write_other_build(const char *path) {
  char exe[4096];
  ASSERT_OK(mproc__self_exe(exe, sizeof exe));
  FILE *in = fopen(exe, "rb");
  ASSERT_NOT_NULL(in);
  ASSERT_EQ(fseek(in, 0, SEEK_END), 0);
  long size = ftell(in);
  ASSERT_GT(size, 0);
  rewind(in);
  unsigned char *buf = malloc((size_t)size);
  ASSERT_NOT_NULL(buf);
  ASSERT_EQ(fread(buf, 1, (size_t)size, in), (size_t)size);
  fclose(in);
  void *tab;
  size_t tlen;
  ASSERT_OK(mproc__objtab_build(&tab, &tlen));
  /* The first object is the main program: its build-id follows the
   * 16-byte header and the object's fixed 32 bytes. */
  const unsigned char *t = tab;
  size_t idlen = (size_t)(t[16 + 28] | (t[16 + 29] << 8));
  ASSERT_GT(idlen, 0);
  const unsigned char *id = t + 16 + 32;
  long at = -1;
  for (long i = 0; i + (long)idlen <= size; i++) {
    if (memcmp(buf + i, id, idlen) == 0) {
      at = i;
      break;
    }
  }
  ASSERT_GE(at, 0);
  buf[at] ^= 0xff;
  free(tab);
  FILE *out = fopen(path, "wb");
  ASSERT_NOT_NULL(out);
  ASSERT_EQ(fwrite(buf, 1, (size_t)size, out), (size_t)size);
  ASSERT_EQ(fclose(out), 0);
  ASSERT_EQ(chmod(path, 0700), 0);
  free(buf);
}

TEST_IMPL(spawn_executable_errors) {
  char dir[] = "/tmp/mproc-exe-XXXXXX";
  ASSERT_NOT_NULL(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/other-build", dir);
  write_other_build(path);
  for (int k = 1; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    mproc_process *p;
    mproc_process_opts o;
    memset(&o, 0, sizeof o);
    o.context = ctx_of(methods[k]);
    /* Another build of the program: its code cannot be trusted to hold
     * the target at the same offset.  (The executable applies to a
     * forkserver started later: stop the running one before each.) */
    mproc__forkserver_stop();
    ASSERT_OK(mproc_set_executable(path));
    ASSERT_OK(mproc_process_new(&p, t_exit, NULL, NULL, 0, &o));
    ASSERT_ERR(mproc_process_start(p), MPROC_EBUILD);
    ASSERT_OK(mproc_process_free(p));
    /* A program that is not mproc's: it exits without answering.  With
     * argument bytes larger than the socket's buffer the record's write
     * is still under way when it exits: EPIPE, never a SIGPIPE here. */
    mproc__forkserver_stop();
    ASSERT_OK(mproc_set_executable("/bin/true"));
    ASSERT_OK(mproc_process_new(&p, t_exit, NULL, NULL, 0, &o));
    ASSERT_ERR(mproc_process_start(p), MPROC_ESPAWN);
    ASSERT_OK(mproc_process_free(p));
    size_t big = 8u << 20;
    char *bytes = calloc(1, big);
    ASSERT_NOT_NULL(bytes);
    ASSERT_OK(mproc_process_new(&p, t_exit, NULL, bytes, big, &o));
    free(bytes);
    ASSERT_ERR(mproc_process_start(p), MPROC_ESPAWN);
    ASSERT_OK(mproc_process_free(p));
    /* No such file. */
    mproc__forkserver_stop();
    ASSERT_OK(mproc_set_executable("/nonexistent/mproc-program"));
    ASSERT_OK(mproc_process_new(&p, t_exit, NULL, NULL, 0, &o));
    int r = mproc_process_start(p);
    ASSERT(r == MPROC_ENOENT || r == MPROC_ESPAWN);
    ASSERT_OK(mproc_process_free(p));
    /* The program itself again: a start works. */
    mproc__forkserver_stop();
    ASSERT_OK(mproc_set_executable(NULL));
    int want = 5;
    ASSERT_EQ(finish(start_with(methods[k], t_exit, NULL, &want, sizeof want,
                                NULL, 0)),
              5);
    /* The forkserver was started from the good program; make the next
     * method's starts begin from a fresh state. */
  }
  ASSERT_EQ(unlink(path), 0);
  ASSERT_EQ(rmdir(dir), 0);
  return 0;
}

/*
 * The arena's address taken in the child before mproc could map it: a
 * function in this program's .preinit_array (run before every
 * constructor, the library's takeover included) maps a page there when
 * MPROC_TEST_SQUAT names the address and the process is a spawned child.
 */
static void squat_arena(int argc, char **argv, char **envp) {
  (void)argc;
  (void)argv;
  const char *addr = NULL;
  int spawned = 0;
  for (char **e = envp; e != NULL && *e != NULL; e++) {
    if (strncmp(*e, "MPROC_TEST_SQUAT=", 17) == 0) {
      addr = *e + 17;
    } else if (strncmp(*e, "MPROC_SPAWN_FD=", 15) == 0) {
      spawned = 1;
    }
  }
  if (addr == NULL || !spawned) {
    return;
  }
  uintptr_t a = (uintptr_t)strtoull(addr, NULL, 16);
  (void)mmap((void *)a, 4096, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
}
__attribute__((section(".preinit_array"), used)) static void (
    *const squat_arena_entry)(int, char **, char **) = squat_arena;

TEST_IMPL(spawn_arena_address_taken) {
  report *r = new_report(); /* the arena exists */
  uint64_t base, size;
  ASSERT_OK(mproc__arena_where(&base, &size));
  char hexaddr[32];
  snprintf(hexaddr, sizeof hexaddr, "%llx", (unsigned long long)base);
  ASSERT_EQ(setenv("MPROC_TEST_SQUAT", hexaddr, 1), 0);
  mproc_process_opts o;
  memset(&o, 0, sizeof o);
  o.context = ctx_of("spawn");
  mproc_process *p;
  ASSERT_OK(mproc_process_new(&p, t_exit, NULL, NULL, 0, &o));
  ASSERT_ERR(mproc_process_start(p), MPROC_EARENAMAP);
  ASSERT_OK(mproc_process_free(p));
  ASSERT_EQ(unsetenv("MPROC_TEST_SQUAT"), 0);
  ASSERT_EQ(finish(start_with("spawn", t_report, r, NULL, 0, NULL, 0)), 7);
  ASSERT_OK(mproc_shm_free(r));
  return 0;
}

/* ---- the forkserver's faults ---- */

/* The server SIGKILLed: a running non-daemon child goes on and its end is
 * still seen, but its exit code is lost; a daemon child dies with the
 * server; the next start starts a new server. */
TEST_IMPL(forkserver_server_killed) {
  if (!method_ok(2)) {
    return TEST_SKIP;
  }
  report *r = new_report();
  report *d = new_report();
  mproc_process *p = start_with("forkserver", t_block, r, NULL, 0, NULL, 0);
  mproc_process *dp = start_with("forkserver", t_block, d, NULL, 0, NULL, 1);
  wait_flag(&r->started);
  wait_flag(&d->started);
  pid_t server = mproc__forkserver_pid();
  ASSERT_GT(server, 0);
  pid_t child = mproc_process_pid(p);
  ASSERT_EQ(kill(server, SIGKILL), 0);
  /* The daemon dies with the server: its end is seen through its pidfd.
   * It is reparented to this process (a subreaper): reap it. */
  ASSERT_OK(mproc_process_join(dp, 60 * test_timeout_mult()));
  int code = 0;
  ASSERT_ERR(mproc_process_exitcode(dp, &code), MPROC_ELOST);
  ASSERT_OK(mproc_process_free(dp));
  ASSERT_EQ(mproc_process_is_alive(p), 1);
  atomic_store(&r->release, 1);
  ASSERT_OK(mproc_process_join(p, 60 * test_timeout_mult()));
  ASSERT_ERR(mproc_process_exitcode(p, &code), MPROC_ELOST);
  ASSERT_OK(mproc_process_free(p));
  ASSERT_EQ(test_wait_pid(child, 30 * test_timeout_mult()), 3);
  /* The reparented daemon: gone, whether reaped here or not yet. */
  pid_t any;
  while ((any = waitpid(-1, NULL, WNOHANG)) > 0) {
  }
  /* A new server for the next child. */
  int want = 9;
  ASSERT_EQ(finish(start_with("forkserver", t_exit, NULL, &want, sizeof want,
                              NULL, 0)),
            9);
  ASSERT_GT(mproc__forkserver_pid(), 0);
  ASSERT_NE(mproc__forkserver_pid(), server);
  ASSERT_OK(mproc_shm_free(r));
  ASSERT_OK(mproc_shm_free(d));
  return 0;
}

/* The parent SIGKILLed: the server and every daemon child (of spawn and
 * of the forkserver) end with it. */
typedef struct pids {
  _Atomic int ready;
  int server, fs_daemon, spawn_daemon;
  report r1, r2;
} pids;

TEST_IMPL(forkserver_parent_killed) {
  if (!method_ok(2)) {
    return TEST_SKIP;
  }
  pids *s;
  ASSERT_OK(mproc_shm_calloc((void **)&s, 1, sizeof *s));
  pid_t sub = test_fork();
  if (sub == 0) {
    mproc_process *a = start_with("forkserver", t_block, &s->r1, NULL, 0,
                                  NULL, 1);
    mproc_process *b = start_with("spawn", t_block, &s->r2, NULL, 0, NULL, 1);
    wait_flag(&s->r1.started);
    wait_flag(&s->r2.started);
    s->server = (int)mproc__forkserver_pid();
    s->fs_daemon = (int)mproc_process_pid(a);
    s->spawn_daemon = (int)mproc_process_pid(b);
    atomic_store(&s->ready, 1);
    for (;;) {
      pause();
    }
  }
  wait_flag(&s->ready);
  ASSERT_EQ(kill(sub, SIGKILL), 0);
  ASSERT_EQ(test_wait_pid(sub, 30 * test_timeout_mult()), -SIGKILL);
  /* Each is reparented to this process (a subreaper) and reaped here. */
  int w = test_wait_pid(s->server, 30 * test_timeout_mult());
  ASSERT_NE(w, INT32_MIN);
  w = test_wait_pid(s->spawn_daemon, 30 * test_timeout_mult());
  ASSERT_EQ(w, -SIGKILL);
  w = test_wait_pid(s->fs_daemon, 30 * test_timeout_mult());
  ASSERT_EQ(w, -SIGKILL);
  ASSERT_OK(mproc_shm_free(s));
  return 0;
}

/* A request that comes from another user's process is refused, should the
 * control socket ever reach one. */
TEST_IMPL(forkserver_other_user_refused) {
  if (!method_ok(2)) {
    return TEST_SKIP;
  }
  if (geteuid() != 0) {
    printf("# skip: needs root to switch to another uid\n");
    return TEST_SKIP;
  }
  ASSERT_OK(mproc_forkserver_start());
  int ctl = mproc__forkserver_ctl();
  ASSERT_GE(ctl, 0);
  int c2 = dup(ctl); /* a forked child closes the library's own copy */
  ASSERT_GE(c2, 0);
  pid_t sub = test_fork();
  if (sub == 0) {
    if (setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0) {
      _exit(10);
    }
    int sv[2];
    if (mproc__socketpair_seq(sv) != 0) {
      _exit(11);
    }
    sigset_t mask;
    sigemptyset(&mask);
    pid_t pid;
    int pidfd, st;
    int r = mproc__forkserver_request(c2, sv[1], &mask, &pid, &pidfd, &st);
    _exit(r == MPROC_EPERM ? 0 : 12);
  }
  ASSERT_EQ(test_wait_pid(sub, 30 * test_timeout_mult()), 0);
  close(c2);
  /* The server still serves its own user. */
  int want = 4;
  ASSERT_EQ(finish(start_with("forkserver", t_exit, NULL, &want, sizeof want,
                              NULL, 0)),
            4);
  return 0;
}

/* ---- the pool under every method ---- */

static int worker_global; /* set by the initializer, in the worker */

static int pool_init(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)t;
  (void)ctx;
  if (len != sizeof worker_global) {
    return 1;
  }
  memcpy(&worker_global, arg, len);
  return 0;
}

static int pool_sq(const void *in, void *out, void *ctx) {
  long x;
  memcpy(&x, in, sizeof x);
  x = x * x + *(const int *)ctx + worker_global;
  memcpy(out, &x, sizeof x);
  return 0;
}

static int pool_die(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)t;
  (void)arg;
  (void)len;
  (void)ctx;
  raise(SIGKILL);
  return 0;
}

static int pool_pid(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)arg;
  (void)len;
  (void)ctx;
  int pid = (int)getpid();
  return mproc_task_return(t, &pid, sizeof pid);
}

TEST_IMPL(start_methods_pool) {
  for (int k = 0; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    mproc_pool_opts o;
    memset(&o, 0, sizeof o);
    o.initializer = pool_init;
    int init = 100;
    o.initarg = &init;
    o.initarg_len = sizeof init;
    /* Heap memory set up before the workers start: a fork worker has
     * it, a fresh image does not. */
    int *heap = malloc(sizeof *heap);
    ASSERT_NOT_NULL(heap);
    *heap = 0;
    mproc_pool *p = pool_of(methods[k], &o);
    long in[200], out[200];
    for (int i = 0; i < 200; i++) {
      in[i] = i;
    }
    ASSERT_OK(mproc_pool_map(p, pool_sq, (void *)&static_data, in, 200,
                             sizeof(long), out, sizeof(long), NULL, NULL));
    for (int i = 0; i < 200; i++) {
      ASSERT_EQ(out[i], (long)i * i + 4242 + 100);
    }
    ASSERT_ERR(mproc_pool_map(p, pool_sq, heap, in, 200, sizeof(long), out,
                              sizeof(long), NULL, NULL),
               k == 0 ? 0 : MPROC_EINVAL);
    free(heap);
    /* A worker that dies fails its task; the pool replaces it. */
    void *res = NULL;
    size_t rlen = 0;
    ASSERT_ERR(mproc_pool_apply(p, pool_die, NULL, NULL, 0, &res, &rlen),
               MPROC_EWORKERDIED);
    ASSERT_OK(mproc_pool_apply(p, pool_pid, NULL, NULL, 0, &res, &rlen));
    ASSERT_EQ(rlen, sizeof(int));
    ASSERT_GT(*(int *)res, 0);
    free(res);
    ASSERT_OK(mproc_pool_close(p));
    ASSERT_OK(mproc_pool_join(p, 60 * test_timeout_mult()));
    ASSERT_OK(mproc_pool_free(p));
  }
  return 0;
}

/* ---- a function kept in shared memory: the barrier's action ---- */

static void count_action(void *ctx) {
  report *r = ctx;
  r->pid = (int)getpid();
  atomic_fetch_add(&r->started, 1);
}

static int t_barrier(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  mproc_barrier *b;
  if (len != sizeof b) {
    return 90;
  }
  memcpy(&b, arg, sizeof b);
  return mproc_barrier_wait(b, 60) >= 0 ? 0 : 91;
}

/* The action was given in this process; the party that runs it is a
 * child of spawn (then of the forkserver), with the program elsewhere. */
TEST_IMPL(start_methods_barrier_action_in_child) {
  for (int k = 0; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    report *r = new_report();
    mproc_barrier_opts o = {.action = count_action, .action_ctx = r,
                            .timeout = MPROC_FOREVER};
    mproc_barrier *b;
    ASSERT_OK(mproc_barrier_new(&b, 2, &o));
    mproc_process *first = start_with(methods[k], t_barrier, NULL, &b,
                                      sizeof b, NULL, 0);
    double end = test_now() + 30 * test_timeout_mult();
    while (mproc_barrier_n_waiting(b) < 1) {
      ASSERT(test_now() < end);
      test_sleep(0.001);
    }
    mproc_process *last = start_with(methods[k], t_barrier, NULL, &b,
                                     sizeof b, NULL, 0);
    pid_t last_pid = mproc_process_pid(last);
    ASSERT_EQ(finish(first), 0);
    ASSERT_EQ(finish(last), 0);
    ASSERT_EQ(atomic_load(&r->started), 1);
    ASSERT_EQ(r->pid, last_pid);
    ASSERT_OK(mproc_barrier_free(b));
    ASSERT_OK(mproc_shm_free(r));
  }
  return 0;
}

/* ---- children that start children ---- */

static int t_nested(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  int k;
  if (len != sizeof k) {
    return 90;
  }
  memcpy(&k, arg, sizeof k);
  mproc_context *c = NULL;
  if (mproc_get_context(&c, methods[k]) != 0) {
    return 91;
  }
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = 2;
  o.context = c;
  mproc_pool *p;
  if (mproc_pool_new(&p, &o) != 0) {
    return 92;
  }
  long in[50], out[50];
  for (int i = 0; i < 50; i++) {
    in[i] = i;
  }
  int rc = mproc_pool_map(p, pool_sq, (void *)&static_data, in, 50,
                          sizeof(long), out, sizeof(long), NULL, NULL);
  if (rc != 0) {
    fprintf(stderr, "# map: %s\n", mproc_err_name(rc));
  }
  int bad = rc != 0;
  for (int i = 0; i < 50 && !bad; i++) {
    bad = out[i] != (long)i * i + 4242;
    if (bad) {
      fprintf(stderr, "# out[%d] = %ld\n", i, out[i]);
    }
  }
  mproc_pool_close(p);
  mproc_pool_join(p, MPROC_FOREVER);
  mproc_pool_free(p);
  if (bad) {
    return 93;
  }
  /* And a process of the same method, whose pid and parent it knows. */
  mproc_process_opts po;
  memset(&po, 0, sizeof po);
  po.context = c;
  mproc_process *q;
  int want = 6;
  if (mproc_process_new(&q, t_exit, NULL, &want, sizeof want, &po) != 0 ||
      mproc_process_start(q) != 0) {
    return 94;
  }
  int code = -1;
  mproc_process_join(q, MPROC_FOREVER);
  mproc_process_exitcode(q, &code);
  mproc_process_free(q);
  return code == 6 ? 0 : 95;
}

/* Every method inside a child of every method: a child of the forkserver
 * is a fork of the server and must not take the server's identity. */
TEST_IMPL(start_methods_nested) {
  for (int outer = 0; outer < NMETHODS; outer++) {
    for (int inner = 0; inner < NMETHODS; inner++) {
      if (!method_ok(outer) || !method_ok(inner)) {
        continue;
      }
      mproc_process *p = start_with(methods[outer], t_nested, NULL, &inner,
                                    sizeof inner, NULL, 0);
      int code = finish(p);
      if (code != 0) {
        fprintf(stderr, "# %s inside %s: exit code %d\n", methods[inner],
                methods[outer], code);
      }
      ASSERT_EQ(code, 0);
    }
  }
  return 0;
}

/* ---- the fork-with-threads warning ---- */

/* Start a fork child with stderr on a pipe and logging at warn; what
 * mproc wrote there. */
static void fork_logged(char *buf, size_t cap) {
  ASSERT_OK(mproc_log_set_level(MPROC_LOG_WARN));
  int pp[2];
  ASSERT_EQ(pipe(pp), 0);
  fflush(stderr);
  int saved = dup(2);
  ASSERT_GE(saved, 0);
  ASSERT_GE(dup2(pp[1], 2), 0);
  ASSERT_EQ(finish(start_with("fork", t_trylock, NULL, NULL, 0, NULL, 0)), 0);
  fflush(stderr);
  ASSERT_GE(dup2(saved, 2), 0);
  close(saved);
  close(pp[1]);
  size_t got = 0;
  ssize_t n;
  while (got + 1 < cap && (n = read(pp[0], buf + got, cap - 1 - got)) > 0) {
    got += (size_t)n;
  }
  buf[got] = '\0';
  close(pp[0]);
  ASSERT_OK(mproc_log_set_level(MPROC_LOG_OFF));
}

static void *idle_thread(void *arg) {
  char c;
  ssize_t n = read(*(int *)arg, &c, 1);
  (void)n;
  return NULL;
}

TEST_IMPL(start_methods_fork_with_threads_warns) {
  char buf[4096];
  fork_logged(buf, sizeof buf); /* one thread: no warning */
  ASSERT_NULL(strstr(buf, "fork start in a process with"));
  int pp[2];
  ASSERT_EQ(pipe(pp), 0);
  pthread_t th;
  test_start_threads(&th, 1, idle_thread, &pp[0]);
  fork_logged(buf, sizeof buf);
  ASSERT_NOT_NULL(strstr(buf, "fork start in a process with 2 threads"));
  fork_logged(buf, sizeof buf); /* once per process */
  ASSERT_NULL(strstr(buf, "fork start in a process with"));
  ASSERT_EQ(write(pp[1], "x", 1), 1);
  test_join_threads_ok(&th, 1);
  close(pp[0]);
  close(pp[1]);
  return 0;
}

/* ---- functions in a library loaded at run time ---- */

typedef int (*probe_fn)(void);

/* ctx is a function of a library: in a spawned child, the library the
 * parent loaded with dlopen is loaded there by its path. */
static int t_call_probe(const void *arg, size_t len, void *ctx) {
  (void)arg;
  (void)len;
  return ((probe_fn)(uintptr_t)ctx)() & 0xff;
}

static int map_probe(const void *in, void *out, void *ctx) {
  long x;
  memcpy(&x, in, sizeof x);
  x += ((probe_fn)(uintptr_t)ctx)();
  memcpy(out, &x, sizeof x);
  return 0;
}

TEST_IMPL(start_methods_function_in_loaded_library) {
  /* Pools first: their workers start before the library is loaded, and
   * learn of it from the table the pool publishes again. */
  mproc_pool *pools[NMETHODS] = {NULL, NULL, NULL};
  for (int k = 0; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    pools[k] = pool_of(methods[k], NULL);
  }
  void *h = dlopen(FUNCREF_LIB_A, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NOT_NULL(h);
  void *probe = dlsym(h, "funcref_probe");
  ASSERT_NOT_NULL(probe);
  for (int k = 0; k < NMETHODS; k++) {
    if (pools[k] == NULL) {
      continue;
    }
    mproc_process *p =
        start_with(methods[k], t_call_probe, probe, NULL, 0, NULL, 0);
    ASSERT_EQ(finish(p), FUNCREF_VALUE_A & 0xff);
    long in[20], out[20];
    for (int i = 0; i < 20; i++) {
      in[i] = i;
    }
    ASSERT_OK(mproc_pool_map(pools[k], map_probe, probe, in, 20, sizeof(long),
                             out, sizeof(long), NULL, NULL));
    for (int i = 0; i < 20; i++) {
      ASSERT_EQ(out[i], i + FUNCREF_VALUE_A);
    }
    ASSERT_OK(mproc_pool_close(pools[k]));
    ASSERT_OK(mproc_pool_join(pools[k], 60 * test_timeout_mult()));
    ASSERT_OK(mproc_pool_free(pools[k]));
  }
  /* The library stays loaded (an address in it may be anywhere). */
  return 0;
}

/* A library the parent loaded from a path that is gone by the start: a
 * spawned child, and the forkserver (which resolves targets itself),
 * cannot load it, and the start says so; nothing is left running, and the
 * next start works. */
TEST_IMPL(start_methods_library_gone) {
  char dir[] = "/tmp/mproc-lib-XXXXXX";
  ASSERT_NOT_NULL(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/libgone.so", dir);
  int in = open(FUNCREF_LIB_A, O_RDONLY | O_CLOEXEC);
  ASSERT_GE(in, 0);
  int out = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
  ASSERT_GE(out, 0);
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0) {
    ASSERT_EQ(write(out, buf, (size_t)n), n);
  }
  ASSERT_EQ(n, 0);
  close(in);
  close(out);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NOT_NULL(h);
  void *probe = dlsym(h, "funcref_probe");
  ASSERT_NOT_NULL(probe);
  ASSERT_EQ(unlink(path), 0);
  ASSERT_EQ(rmdir(dir), 0);
  for (int k = 1; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    mproc_process_opts o;
    memset(&o, 0, sizeof o);
    o.context = ctx_of(methods[k]);
    mproc_process *p = NULL;
    ASSERT_OK(mproc_process_new(&p, t_call_probe, probe, NULL, 0, &o));
    ASSERT_ERR(mproc_process_start(p), MPROC_ENOFUNC);
    ASSERT_EQ(mproc_process_is_alive(p), 0);
    ASSERT_OK(mproc_process_free(p));
    int want = 6;
    ASSERT_EQ(finish(start_with(methods[k], t_exit, NULL, &want, sizeof want,
                                NULL, 0)),
              6);
  }
  ASSERT_EQ(dlclose(h), 0);
  return 0;
}

/* The forkserver loads its preload list before it serves: a child finds
 * the library loaded; a path that cannot be loaded is skipped. */
static int t_loaded(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  char path[4096];
  if (len == 0 || len >= sizeof path) {
    return 90;
  }
  memcpy(path, arg, len);
  path[len] = '\0';
  return dlopen(path, RTLD_NOW | RTLD_NOLOAD) != NULL ? 0 : 1;
}

TEST_IMPL(forkserver_preload) {
  if (!method_ok(2)) {
    return TEST_SKIP;
  }
  mproc__forkserver_stop();
  const char *paths[2] = {"/nonexistent/libmproc-none.so", FUNCREF_LIB_B};
  ASSERT_ERR(mproc_set_forkserver_preload(NULL, 1), MPROC_EINVAL);
  ASSERT_OK(mproc_set_forkserver_preload(paths, 2));
  const char *lib = FUNCREF_LIB_B;
  ASSERT_NULL(dlopen(lib, RTLD_NOW | RTLD_NOLOAD)); /* not here */
  ASSERT_EQ(finish(start_with("forkserver", t_loaded, NULL, lib, strlen(lib),
                              NULL, 0)),
            0);
  /* A spawned child has no preload. */
  ASSERT_EQ(finish(start_with("spawn", t_loaded, NULL, lib, strlen(lib), NULL,
                              0)),
            1);
  ASSERT_OK(mproc_set_forkserver_preload(NULL, 0));
  return 0;
}

/* ---- a connection and a SharedMemory segment in the child ---- */

typedef struct conn_arg {
  int fd;         /* the child's end of a duplex pipe (passed) */
  char shm[64];   /* a SharedMemory segment's name */
} conn_arg;

/* Receive a message on the passed connection, add the segment's first
 * word to it, send the sum back. */
static int t_conn(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  conn_arg a;
  if (len != sizeof a) {
    return 90;
  }
  memcpy(&a, arg, sizeof a);
  mproc_connection *c = NULL;
  if (mproc_connection_from_fd(&c, a.fd, 1, 1) != 0) {
    return 91;
  }
  mproc_shared_memory *m = NULL;
  if (mproc_shared_memory_attach(&m, a.shm) != 0) {
    return 92;
  }
  void *msg = NULL;
  size_t n = 0;
  int r = mproc_connection_recv_bytes(c, &msg, &n, 1024);
  int rc = 0;
  if (r != 0 || n != sizeof(int)) {
    rc = 93;
  } else {
    int v, w;
    memcpy(&v, msg, sizeof v);
    memcpy(&w, mproc_shared_memory_buf(m), sizeof w);
    v += w;
    rc = mproc_connection_send(c, &v, sizeof v) == 0 ? 0 : 94;
  }
  free(msg);
  mproc_shared_memory_close(m);
  mproc_connection_close(c);
  return rc;
}

TEST_IMPL(start_methods_connection_and_shared_memory) {
  mproc_shared_memory *m = NULL;
  ASSERT_OK(mproc_shared_memory_create(&m, NULL, 4096, 0));
  int w = 500;
  memcpy(mproc_shared_memory_buf(m), &w, sizeof w);
  for (int k = 0; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    mproc_connection *mine = NULL, *theirs = NULL;
    ASSERT_OK(mproc_pipe(&mine, &theirs, 1));
    conn_arg a;
    memset(&a, 0, sizeof a);
    a.fd = mproc_connection_fileno(theirs);
    snprintf(a.shm, sizeof a.shm, "%s", mproc_shared_memory_name(m));
    mproc_process_opts o;
    memset(&o, 0, sizeof o);
    o.context = ctx_of(methods[k]);
    o.pass_fds = &a.fd;
    o.npass_fds = 1;
    mproc_process *p = NULL;
    ASSERT_OK(mproc_process_new(&p, t_conn, NULL, &a, sizeof a, &o));
    ASSERT_OK(mproc_process_start(p));
    ASSERT_OK(mproc_connection_close(theirs));
    int v = 42 + k;
    ASSERT_OK(mproc_connection_send(mine, &v, sizeof v));
    void *back = NULL;
    size_t n = 0;
    ASSERT_OK(mproc_connection_recv_bytes(mine, &back, &n, 1024));
    ASSERT_EQ(n, sizeof v);
    memcpy(&v, back, sizeof v);
    free(back);
    ASSERT_EQ(v, 542 + k);
    ASSERT_EQ(finish(p), 0);
    ASSERT_OK(mproc_connection_close(mine));
  }
  ASSERT_OK(mproc_shared_memory_unlink(m));
  ASSERT_OK(mproc_shared_memory_close(m));
  return 0;
}

/* ---- the hazard, measured: a child that needs a lock another thread
 * held at the fork ---- */

static _Atomic int malloc_run;

static void *malloc_loop(void *arg) {
  (void)arg;
  while (atomic_load(&malloc_run)) {
    void *volatile p = malloc(64 + (size_t)(rand() % 4096));
    free(p);
  }
  return NULL;
}

/* Takes the lock (blocking) and mallocs: what a child that logs does. */
static int t_lock_and_malloc(const void *arg, size_t len, void *ctx) {
  (void)arg;
  (void)len;
  (void)ctx;
  pthread_mutex_lock(&held);
  pthread_mutex_unlock(&held);
  for (int i = 0; i < 1000; i++) {
    void *volatile p = malloc(100);
    free(p);
  }
  return 0;
}

__attribute__((unused)) static int t_malloc_only(const void *arg, size_t len,
                                                void *ctx) {
  (void)arg;
  (void)len;
  (void)ctx;
  for (int i = 0; i < 1000; i++) {
    void *volatile p = malloc(100 + (size_t)i);
    free(p);
  }
  return 0;
}

TEST_IMPL(start_methods_thread_holding_a_lock_hangs_fork_child) {
  ASSERT_EQ(pipe(hold_pipe), 0);
  pthread_t th[3];
  test_start_threads(&th[0], 1, hold_lock, NULL);
  wait_flag(&holding);
  atomic_store(&malloc_run, 1);
  test_start_threads(&th[1], 2, malloc_loop, NULL);
  /* Under fork the child can never take the lock: its holder is a thread
   * of the parent, absent in the child.  Its join times out (the bound
   * is a detector, the outcome does not depend on it); it is killed. */
  mproc_process *p = start_with("fork", t_lock_and_malloc, NULL, NULL, 0,
                                NULL, 0);
  ASSERT_ERR(mproc_process_join(p, 0.5), MPROC_ETIMEDOUT);
  ASSERT_EQ(mproc_process_is_alive(p), 1);
  ASSERT_OK(mproc_process_kill(p));
  ASSERT_EQ(finish(p), -SIGKILL);
  fprintf(stderr, "# fork: the child waited for the lock until killed\n");
  /* Under spawn and the forkserver every child finishes, while the other
   * threads keep the lock held and malloc busy. */
  for (int k = 1; k < NMETHODS; k++) {
    if (!method_ok(k)) {
      continue;
    }
    for (int i = 0; i < 5; i++) {
      ASSERT_EQ(finish(start_with(methods[k], t_lock_and_malloc, NULL, NULL, 0,
                                  NULL, 0)),
                0);
    }
  }
  /* glibc takes its malloc locks around fork(2) itself, so a fork child
   * that only mallocs finishes too: the hazard is the program's own
   * locks (and libraries' that have no fork handler). */
  /* (AddressSanitizer's allocator, which replaces glibc's, is not made
   * safe across fork: a fork child may inherit its lock held by a
   * mallocing thread, and hang.) */
#if !defined(__SANITIZE_ADDRESS__) && !MPROC_TEST_HAS_ASAN
  for (int i = 0; i < 5; i++) {
    ASSERT_EQ(finish(start_with("fork", t_malloc_only, NULL, NULL, 0, NULL, 0)),
              0);
  }
#endif
  atomic_store(&malloc_run, 0);
  ASSERT_EQ(write(hold_pipe[1], "x", 1), 1);
  test_join_threads_ok(th, 3);
  close(hold_pipe[0]);
  close(hold_pipe[1]);
  return 0;
}
