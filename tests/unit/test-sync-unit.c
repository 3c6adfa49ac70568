/*
 * tests/unit/test-sync-unit.c - the sync module's parts and its misuse
 * errors: process liveness from /proc (live, reaped, zombie, wrong start
 * time), tokens (one per process, a new one in a forked child, dead once
 * the process is), and every public function given NULL, a freed object,
 * an object of another type, a pointer not from mproc, or bad arguments.
 */
#include "internal.h"
#include "sync/sync-internal.h"
#include "task.h"

#include <math.h>
#include <signal.h>
#include <sys/wait.h>

/* ---- liveness ---- */

TEST_IMPL(sync_proc_alive) {
  uint64_t start = 0;
  char st = 0;
  long threads = 0;
  ASSERT_OK(mproc__proc_stat(getpid(), &start, &st, &threads));
  ASSERT_GT(start, 0);
  ASSERT_EQ(st, 'R');
  ASSERT_GE(threads, 1);
  ASSERT_EQ(mproc__proc_alive(getpid(), start), 1);
  ASSERT_EQ(mproc__proc_alive(getpid(), 0), 1);      /* start unknown */
  ASSERT_EQ(mproc__proc_alive(getpid(), start + 1), 0); /* pid reused */
  ASSERT_EQ(mproc__proc_alive(0, 0), 0);
  ASSERT_ERR(mproc__proc_stat(-1, NULL, NULL, NULL), -ESRCH);

  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    pause();
    _exit(0);
  }
  uint64_t cstart = 0;
  ASSERT_OK(mproc__proc_stat(pid, &cstart, NULL, NULL));
  ASSERT_EQ(mproc__proc_alive(pid, cstart), 1);
  ASSERT_OK(kill(pid, SIGKILL));
  siginfo_t si;
  ASSERT_OK(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT));
  ASSERT_OK(mproc__proc_stat(pid, NULL, &st, &threads));
  ASSERT_EQ(st, 'Z');
  ASSERT_EQ(mproc__proc_alive(pid, cstart), 0); /* a zombie is dead */
  ASSERT_EQ(test_wait_pid(pid, 5), -SIGKILL);
  ASSERT_EQ(mproc__proc_alive(pid, cstart), 0); /* reaped */
  ASSERT_ERR(mproc__proc_stat(pid, NULL, NULL, NULL), -ESRCH);
  return 0;
}

/* ---- tokens ---- */

TEST_IMPL(sync_tokens) {
  int64_t me = sync_self();
  ASSERT_GT(me, 0);
  ASSERT_EQ(sync_self(), me);
  ASSERT_EQ(mproc__sync_token_pid((uint32_t)me), getpid());
  ASSERT_EQ(mproc__sync_token_alive((uint32_t)me), 1);
  ASSERT_EQ(mproc__sync_token_alive(SYNC_TOKEN_NOTREC), 1);
  ASSERT_EQ(mproc__sync_token_alive(0), 0);
  ASSERT_EQ(mproc__sync_tid(), (uint32_t)mproc__gettid());

  /* A forked child registers its own token. */
  int fds[2];
  ASSERT_OK(pipe(fds));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int64_t t = sync_self();
    int ok = t > 0 && t != me &&
             mproc__sync_token_pid((uint32_t)t) == getpid() &&
             mproc__sync_tid() == (uint32_t)getpid();
    uint32_t tok = ok ? (uint32_t)t : 0;
    (void)!write(fds[1], &tok, sizeof tok);
    pause();
    _exit(0);
  }
  close(fds[1]);
  uint32_t child = 0;
  ASSERT_EQ(read(fds[0], &child, sizeof child), (ssize_t)sizeof child);
  close(fds[0]);
  ASSERT_NE(child, 0);
  ASSERT_NE(child, (uint32_t)me);
  ASSERT_EQ(mproc__sync_token_alive(child), 1);
  ASSERT_EQ(mproc__sync_token_pid(child), pid);
  ASSERT_OK(kill(pid, SIGKILL));
  ASSERT_EQ(test_wait_pid(pid, 5), -SIGKILL);
  ASSERT_EQ(mproc__sync_token_alive(child), 0);
  return 0;
}

/* Many short-lived processes register: the table never runs out, since
 * dead processes' slots are reclaimed. */
static int t_register(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  return sync_self() > 0 ? 0 : 2;
}

TEST_IMPL(sync_tokens_many_processes) {
  for (int i = 0; i < 200; i++) {
    mproc_process *p = NULL;
    int code = -1;
    ASSERT_OK(mproc_process_new(&p, t_register, NULL, NULL, 0, NULL));
    ASSERT_OK(mproc_process_start(p));
    ASSERT_OK(mproc_process_join(p, 10));
    ASSERT_OK(mproc_process_exitcode(p, &code));
    ASSERT_EQ(code, 0);
    ASSERT_OK(mproc_process_free(p));
  }
  return 0;
}

/* ---- misuse ---- */

TEST_IMPL(sync_misuse_null) {
  ASSERT_ERR(mproc_lock_new(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_rlock_new(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_lock_acquire(NULL, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_lock_release(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_lock_consistent(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_lock_is_locked(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_lock_is_mine(NULL), MPROC_EINVAL);
  ASSERT_OK(mproc_lock_free(NULL));
  ASSERT_ERR(mproc_semaphore_new(NULL, 1, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_semaphore_acquire(NULL, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_semaphore_release(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_semaphore_get_value(NULL), MPROC_EINVAL);
  ASSERT_OK(mproc_semaphore_free(NULL));
  ASSERT_ERR(mproc_event_new(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_event_set(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_event_clear(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_event_is_set(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_event_wait(NULL, 0), MPROC_EINVAL);
  ASSERT_OK(mproc_event_free(NULL));
  ASSERT_ERR(mproc_cond_new(NULL, NULL), MPROC_EINVAL);
  ASSERT_NULL(mproc_cond_lock(NULL));
  ASSERT_ERR(mproc_cond_wait(NULL, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_cond_wait_for(NULL, NULL, NULL, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_cond_notify(NULL, 1), MPROC_EINVAL);
  ASSERT_ERR(mproc_cond_notify_all(NULL), MPROC_EINVAL);
  ASSERT_OK(mproc_cond_free(NULL));
  ASSERT_ERR(mproc_barrier_new(NULL, 1, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_barrier_wait(NULL, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_barrier_abort(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_barrier_reset(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_barrier_parties(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_barrier_n_waiting(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_barrier_broken(NULL), MPROC_EINVAL);
  ASSERT_OK(mproc_barrier_free(NULL));
  return 0;
}

TEST_IMPL(sync_misuse_bad_arguments) {
  mproc_semaphore *s = (mproc_semaphore *)1;
  ASSERT_ERR(mproc_semaphore_new(&s, -1, NULL), MPROC_EINVAL);
  ASSERT_NULL(s);
  mproc_barrier *b = (mproc_barrier *)1;
  ASSERT_ERR(mproc_barrier_new(&b, 0, NULL), MPROC_EINVAL);
  ASSERT_NULL(b);
  ASSERT_ERR(mproc_barrier_new(&b, -3, NULL), MPROC_EINVAL);
  mproc_barrier_opts bo = {.timeout = NAN};
  ASSERT_ERR(mproc_barrier_new(&b, 2, &bo), MPROC_EINVAL);

  mproc_lock *l = NULL;
  ASSERT_OK(mproc_lock_new(&l));
  ASSERT_ERR(mproc_lock_acquire(l, NAN), MPROC_EINVAL);
  /* consistent without EOWNERDEAD */
  ASSERT_ERR(mproc_lock_consistent(l), MPROC_EPERM);
  ASSERT_OK(mproc_lock_acquire(l, 0));
  ASSERT_ERR(mproc_lock_consistent(l), MPROC_EPERM);
  ASSERT_OK(mproc_lock_release(l));

  /* A condition used without its lock. */
  mproc_cond *c = NULL;
  ASSERT_OK(mproc_cond_new(&c, l));
  ASSERT_ERR(mproc_cond_wait(c, 0), MPROC_EPERM);
  ASSERT_ERR(mproc_cond_wait_for(c, NULL, NULL, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_cond_notify(c, 1), MPROC_EPERM);
  ASSERT_ERR(mproc_cond_notify_all(c), MPROC_EPERM);
  ASSERT_OK(mproc_lock_acquire(l, 0));
  ASSERT_ERR(mproc_cond_notify(c, -1), MPROC_EINVAL);
  ASSERT_ERR(mproc_cond_wait(c, NAN), MPROC_EINVAL);
  ASSERT_OK(mproc_cond_notify(c, 0));
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_OK(mproc_cond_free(c));

  /* The default RLock: held by another thread is not held by us. */
  ASSERT_OK(mproc_cond_new(&c, NULL));
  ASSERT_ERR(mproc_cond_notify(c, 1), MPROC_EPERM);
  ASSERT_OK(mproc_lock_acquire(mproc_cond_lock(c), 0));
  ASSERT_ERR(mproc_cond_free(c), MPROC_EBUSY); /* its own lock is held */
  ASSERT_OK(mproc_lock_release(mproc_cond_lock(c)));
  ASSERT_OK(mproc_cond_free(c));
  ASSERT_OK(mproc_lock_free(l));
  return 0;
}

/* A freed object is MPROC_EINVAL, not a crash. */
TEST_IMPL(sync_misuse_freed) {
  mproc_lock *l = NULL;
  mproc_semaphore *s = NULL;
  mproc_event *e = NULL;
  mproc_cond *c = NULL;
  mproc_barrier *b = NULL;
  ASSERT_OK(mproc_rlock_new(&l));
  ASSERT_OK(mproc_semaphore_new(&s, 1, NULL));
  ASSERT_OK(mproc_event_new(&e));
  ASSERT_OK(mproc_cond_new(&c, NULL));
  ASSERT_OK(mproc_barrier_new(&b, 2, NULL));
  ASSERT_OK(mproc_lock_free(l));
  ASSERT_OK(mproc_semaphore_free(s));
  ASSERT_OK(mproc_event_free(e));
  ASSERT_OK(mproc_cond_free(c));
  ASSERT_OK(mproc_barrier_free(b));
  ASSERT_ERR(mproc_lock_acquire(l, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_lock_release(l), MPROC_EINVAL);
  ASSERT_ERR(mproc_lock_is_locked(l), MPROC_EINVAL);
  ASSERT_ERR(mproc_lock_free(l), MPROC_EINVAL);
  ASSERT_ERR(mproc_semaphore_acquire(s, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_semaphore_release(s), MPROC_EINVAL);
  ASSERT_ERR(mproc_semaphore_get_value(s), MPROC_EINVAL);
  ASSERT_ERR(mproc_semaphore_free(s), MPROC_EINVAL);
  ASSERT_ERR(mproc_event_set(e), MPROC_EINVAL);
  ASSERT_ERR(mproc_event_wait(e, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_event_free(e), MPROC_EINVAL);
  ASSERT_NULL(mproc_cond_lock(c));
  ASSERT_ERR(mproc_cond_wait(c, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_cond_notify(c, 1), MPROC_EINVAL);
  ASSERT_ERR(mproc_cond_free(c), MPROC_EINVAL);
  ASSERT_ERR(mproc_barrier_wait(b, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_barrier_parties(b), MPROC_EINVAL);
  ASSERT_ERR(mproc_barrier_free(b), MPROC_EINVAL);
  return 0;
}

/* Pointers that are not mproc objects, or objects of another type. */
TEST_IMPL(sync_misuse_foreign) {
  uint64_t stack_obj[16] = {0};
  void *heap_obj = calloc(1, 256);
  ASSERT_NOT_NULL(heap_obj);
  void *foreign[] = {stack_obj, heap_obj, (void *)(uintptr_t)0x1000};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(foreign); i++) {
    ASSERT_ERR(mproc_lock_acquire(foreign[i], 0), MPROC_EINVAL);
    ASSERT_ERR(mproc_lock_release(foreign[i]), MPROC_EINVAL);
    ASSERT_ERR(mproc_lock_free(foreign[i]), MPROC_EINVAL);
    ASSERT_ERR(mproc_semaphore_acquire(foreign[i], 0), MPROC_EINVAL);
    ASSERT_ERR(mproc_event_set(foreign[i]), MPROC_EINVAL);
    ASSERT_ERR(mproc_cond_notify(foreign[i], 1), MPROC_EINVAL);
    ASSERT_ERR(mproc_barrier_wait(foreign[i], 0), MPROC_EINVAL);
    mproc_cond *c = NULL;
    ASSERT_ERR(mproc_cond_new(&c, foreign[i]), MPROC_EINVAL);
    ASSERT_NULL(c);
  }
  free(heap_obj);
  /* Arena memory that is not a sync object, and objects of other types. */
  void *raw = NULL;
  ASSERT_OK(mproc_shm_calloc(&raw, 1, 256));
  ASSERT_ERR(mproc_lock_acquire(raw, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_barrier_free(raw), MPROC_EINVAL);
  /* Misaligned inside the arena. */
  ASSERT_ERR(mproc_event_set((mproc_event *)((char *)raw + 3)), MPROC_EINVAL);
  ASSERT_OK(mproc_shm_free(raw));
  mproc_semaphore *s = NULL;
  mproc_event *e = NULL;
  ASSERT_OK(mproc_semaphore_new(&s, 1, NULL));
  ASSERT_OK(mproc_event_new(&e));
  ASSERT_ERR(mproc_lock_acquire((mproc_lock *)(void *)s, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_event_set((mproc_event *)(void *)s), MPROC_EINVAL);
  ASSERT_ERR(mproc_semaphore_release((mproc_semaphore *)(void *)e),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_barrier_abort((mproc_barrier *)(void *)e), MPROC_EINVAL);
  ASSERT_EQ(mproc_semaphore_get_value(s), 1);
  ASSERT_OK(mproc_semaphore_free(s));
  ASSERT_OK(mproc_event_free(e));
  return 0;
}

/* Freeing while in use. */
TEST_IMPL(sync_misuse_free_busy) {
  mproc_lock *l = NULL;
  ASSERT_OK(mproc_lock_new(&l));
  ASSERT_OK(mproc_lock_acquire(l, 0));
  ASSERT_ERR(mproc_lock_free(l), MPROC_EBUSY);
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_OK(mproc_lock_free(l));
  return 0;
}

/* ---- free paths never allocate ---- */

/* Fills the arena until not even 16 bytes fit; the blocks go in a
 * malloc'd list, returned in *n. */
static void **fill_arena(size_t *n) {
  size_t cap = 1024, k = 0;
  void **v = malloc(cap * sizeof *v);
  ASSERT_NOT_NULL(v);
  for (size_t size = (size_t)1 << 20; size >= 16; size /= 2) {
    void *p = NULL;
    while (mproc_shm_alloc(&p, size) == 0) {
      if (k == cap) {
        cap *= 2;
        v = realloc(v, cap * sizeof *v);
        ASSERT_NOT_NULL(v);
      }
      v[k++] = p;
    }
  }
  void *p = NULL;
  ASSERT_ERR(mproc_shm_alloc(&p, 16), MPROC_ENOMEM);
  *n = k;
  return v;
}

/*
 * The arena full, and no lock ever taken in this program (so the process
 * token table, which a first lock allocates, does not exist): every free,
 * close and release of the sync and queue modules still works.  A free
 * that took a lock to check for a dead holder failed here with
 * MPROC_ENOMEM.
 */
TEST_IMPL(sync_free_with_arena_full) {
  mproc_arena_opts ao = {(size_t)4 << 20};
  ASSERT_OK(mproc_arena_init(&ao));
  mproc_lock *l = NULL, *rl = NULL;
  mproc_semaphore *s = NULL, *sr = NULL;
  mproc_semaphore_opts so = {.death_return = 1};
  mproc_event *e = NULL;
  mproc_cond *c = NULL;
  mproc_barrier *b = NULL;
  mproc_queue *q = NULL, *jq = NULL;
  ASSERT_OK(mproc_lock_new(&l));
  ASSERT_OK(mproc_rlock_new(&rl));
  ASSERT_OK(mproc_semaphore_new(&s, 0, NULL));
  ASSERT_OK(mproc_semaphore_new(&sr, 0, &so));
  ASSERT_OK(mproc_event_new(&e));
  ASSERT_OK(mproc_cond_new(&c, NULL));
  ASSERT_OK(mproc_barrier_new(&b, 2, NULL));
  mproc_queue_opts qo = {4096};
  ASSERT_OK(mproc_queue_new(&q, 0, &qo));
  ASSERT_OK(mproc_joinable_queue_new(&jq, 0, &qo));
  ASSERT_EQ(mproc__sync_self_token, 0); /* nothing registered yet */
  size_t n = 0;
  void **fill = fill_arena(&n);
  /* Releases and closes first, then every free. */
  ASSERT_OK(mproc_semaphore_release(s));
  ASSERT_OK(mproc_semaphore_release(sr));
  ASSERT_OK(mproc_event_set(e));
  ASSERT_OK(mproc_event_clear(e));
  ASSERT_OK(mproc_queue_close(q));
  ASSERT_OK(mproc_queue_free(q));
  ASSERT_OK(mproc_queue_free(jq));
  ASSERT_OK(mproc_barrier_free(b));
  ASSERT_OK(mproc_cond_free(c));
  ASSERT_OK(mproc_event_free(e));
  ASSERT_OK(mproc_semaphore_free(sr));
  ASSERT_OK(mproc_semaphore_free(s));
  ASSERT_OK(mproc_lock_free(rl));
  ASSERT_OK(mproc_lock_free(l));
  ASSERT_EQ(mproc__sync_self_token, 0); /* and nothing registered */
  for (size_t i = 0; i < n; i++) {
    ASSERT_OK(mproc_shm_free(fill[i]));
  }
  free(fill);
  return 0;
}

/* A lock whose holder died does not keep its free busy, and a live
 * holder's does, at once (no rate limit between the two checks). */
TEST_IMPL(sync_free_after_holder_killed) {
  mproc_lock *l = NULL;
  ASSERT_OK(mproc_lock_new(&l));
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = test_fork();
  if (pid == 0) {
    if (mproc_lock_acquire(l, 0) != 0) {
      _exit(2);
    }
    char one = 1;
    (void)!write(fds[1], &one, 1);
    for (;;) {
      pause();
    }
  }
  char got = 0;
  ASSERT_EQ(read(fds[0], &got, 1), 1);
  ASSERT_ERR(mproc_lock_acquire(l, 0), MPROC_ETIMEDOUT); /* checks it */
  ASSERT_ERR(mproc_lock_free(l), MPROC_EBUSY);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(test_wait_pid(pid, 10), -SIGKILL);
  ASSERT_OK(mproc_lock_free(l));
  close(fds[0]);
  close(fds[1]);
  return 0;
}
