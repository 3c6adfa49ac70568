/*
 * tests/fault/test-arena-fault.c - kill -9 of the arena's lock holder.
 *
 * No mocks: a real child process is SIGKILLed while it really holds the
 * allocator's robust mutex, either at a chosen fault point in the middle
 * of a mutation (mproc__fault_hook tells the parent "I am at point
 * N" through a pipe and then sleeps) or at random moments of a hammering
 * loop.  Afterwards the heap must check consistent, keep the parent's own
 * blocks intact, stay usable, and count the repair in `recoveries`; a
 * process already waiting for the lock when the holder dies must get it.
 */
#include "task.h"

#include "internal.h"
#include "sweep.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>

/* The arena's fault points: those of src/fault.h named "arena.*". */
SWEEP_COVERS("arena.")

static int is_arena_point(int point) {
  return strncmp(mproc__fault_name(point), "arena.", 6) == 0;
}

/* ---- helpers ---- */

static mproc_arena_stats stats(void) {
  mproc_arena_stats s;
  ASSERT_OK(mproc_arena_get_stats(&s));
  return s;
}

/* Wait until pid sleeps (state S: blocked, here on the lock's futex). */
static void wait_sleeping(pid_t pid) {
  double end = test_now() + 10;
  for (;;) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    ASSERT_NOT_NULL(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p != NULL && p[1] == ' ' && p[2] == 'S') {
      return;
    }
    ASSERT(test_now() < end);
    test_sleep(0.001);
  }
}

/* ---- the lock holder, stopped at a fault point ---- */

/*
 * A workload that passes every fault point whatever state the heap is in:
 * carves from the top (sizes grow past anything freed before), frees with
 * and without neighbours to merge, reuses exact fits, splits large free
 * blocks, and gives the tail back to the top.
 */
static void workload(void) {
  enum { N = 48 };
  static const size_t sizes[] = {24, 100, 2000, 40, 5000, 300, 9000, 64};
  void *p[N];
  for (int it = 1; it <= 20; it++) {
    for (int i = 0; i < N; i++) {
      size_t n = sizes[i % 8] * (size_t)(i % 8 >= 2 ? it : 1);
      if (mproc_shm_alloc(&p[i], n) != 0) {
        _exit(20);
      }
    }
    /* Odd ones: neighbours live, nothing to merge. */
    for (int i = 1; i < N; i += 2) {
      (void)mproc_shm_free(p[i]);
    }
    /* Same sizes (exact fits), then smaller ones (splits). */
    for (int i = 1; i < N; i += 2) {
      size_t n = sizes[i % 8] * (size_t)(i % 8 >= 2 ? it : 1);
      if (mproc_shm_alloc(&p[i], i % 4 == 1 ? n : n / 3) != 0) {
        _exit(21);
      }
    }
    /* All, from the middle out: merges both ways, then top lowering. */
    for (int i = 0; i < N; i += 2) {
      (void)mproc_shm_free(p[i]);
    }
    for (int i = N - 1; i > 0; i -= 2) {
      (void)mproc_shm_free(p[i]);
    }
  }
}

static pid_t start_holder(int point, int report_fd) {
  pid_t pid = test_fork();
  if (pid == 0) {
    sweep_target = point;
    sweep_report = report_fd;
    mproc__fault_hook = sweep_stop_at_point;
    workload();
    _exit(3); /* never stopped at the point */
  }
  return pid;
}

/* A process that waits for the lock while the holder is stopped, then
 * checks the heap and works with it. */
static pid_t start_waiter(int ready_fd) {
  pid_t pid = test_fork();
  if (pid == 0) {
    int one = 1;
    (void)!write(ready_fd, &one, sizeof one);
    void *p = NULL;
    if (mproc_shm_alloc(&p, 200) != 0) { /* blocks until the kill */
      _exit(30);
    }
    test_fill(p, 200, 77);
    if (mproc__arena_check() != 0) {
      _exit(31);
    }
    void *q[100];
    for (int i = 0; i < 100; i++) {
      if (mproc_shm_alloc(&q[i], (size_t)(i * 37)) != 0) {
        _exit(32);
      }
    }
    for (int i = 0; i < 100; i++) {
      if (mproc_shm_free(q[i]) != 0) {
        _exit(33);
      }
    }
    if (!test_check_fill(p, 200, 77) || mproc_shm_free(p) != 0 ||
        mproc__arena_check() != 0) {
      _exit(34);
    }
    _exit(0);
  }
  return pid;
}

TEST_IMPL(arena_fault_kill_at_every_point) {
  /* Blocks of the parent's that must survive every repair untouched. */
  void *mine[16];
  for (int i = 0; i < 16; i++) {
    ASSERT_OK(mproc_shm_alloc(&mine[i], (size_t)(100 * i + 1)));
    test_fill(mine[i], (size_t)(100 * i + 1), (uint64_t)i);
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  int swept = 0;
  for (int point = 1; point < MPROC__FP_END; point++) {
    if (!is_arena_point(point)) {
      continue;
    }
    swept++;
    size_t rec0 = stats().recoveries;
    pid_t holder = start_holder(point, fds[1]);
    int got = 0;
    if (!test_read_int(fds[0], &got, 30)) {
      kill(holder, SIGKILL);
      int code = test_wait_pid(holder, 30);
      fprintf(stderr, "# point %d: not reached (holder exit %d)\n", point,
              code);
      ASSERT(0);
    }
    ASSERT_EQ(got, point);

    /* A second process blocks on the lock before the holder dies. */
    pid_t waiter = start_waiter(fds[1]);
    ASSERT(test_read_int(fds[0], &got, 30));
    ASSERT_EQ(got, 1);
    wait_sleeping(waiter);
    test_sleep(0.01);
    ASSERT(test_pid_running(waiter));

    ASSERT_EQ(kill(holder, SIGKILL), 0);
    ASSERT_EQ(test_wait_pid(holder, 30), -SIGKILL);
    int code = test_wait_pid(waiter, 30);
    if (code != 0) {
      fprintf(stderr, "# point %d: waiter exit %d\n", point, code);
    }
    ASSERT_EQ(code, 0);

    /* Exactly one repair: the waiter's. */
    ASSERT_OK(mproc__arena_check());
    ASSERT_UEQ(stats().recoveries, rec0 + 1);
    /* The parent goes on. */
    void *p[64];
    for (int i = 0; i < 64; i++) {
      ASSERT_OK(mproc_shm_alloc(&p[i], (size_t)(i * 90 + 3)));
      memset(p[i], i, (size_t)(i * 90 + 3));
    }
    for (int i = 0; i < 64; i += 2) {
      ASSERT_OK(mproc_shm_free(p[i]));
    }
    for (int i = 1; i < 64; i += 2) {
      ASSERT_OK(mproc_shm_free(p[i]));
    }
    ASSERT_OK(mproc__arena_check());
    for (int i = 0; i < 16; i++) {
      ASSERT(test_check_fill(mine[i], (size_t)(100 * i + 1), (uint64_t)i));
    }
  }
  ASSERT_EQ(swept, 11); /* every arena.* point of src/fault.h */
  close(fds[0]);
  close(fds[1]);
  for (int i = 0; i < 16; i++) {
    ASSERT_OK(mproc_shm_free(mine[i]));
  }
  ASSERT_OK(mproc__arena_check());
  return 0;
}

/* A thread of this process waiting on the lock gets it when the holder
 * (another process) dies, and the process with no repair to do itself sees
 * the recovery counted. */
static void *thread_alloc(void *arg) {
  void *p = NULL;
  int r = mproc_shm_alloc(&p, 4000);
  if (r == 0) {
    *(void **)arg = p;
  }
  return (void *)(intptr_t)r;
}

TEST_IMPL(arena_fault_thread_waiter) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  size_t rec0 = stats().recoveries;
  pid_t holder = start_holder(3 /* FP_SPLIT_COMMITTED */, fds[1]);
  int got = 0;
  ASSERT(test_read_int(fds[0], &got, 30));
  ASSERT_EQ(got, 3);
  void *p = NULL;
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, thread_alloc, &p), 0);
  test_sleep(0.05);
  ASSERT_NULL(__atomic_load_n(&p, __ATOMIC_ACQUIRE)); /* still blocked */
  ASSERT_EQ(kill(holder, SIGKILL), 0);
  ASSERT_EQ(test_wait_pid(holder, 30), -SIGKILL);
  void *rv;
  ASSERT_EQ(pthread_join(t, &rv), 0);
  ASSERT_EQ((intptr_t)rv, 0);
  ASSERT_NOT_NULL(p);
  ASSERT_UEQ(stats().recoveries, rec0 + 1);
  ASSERT_OK(mproc_shm_free(p));
  ASSERT_OK(mproc__arena_check());
  close(fds[0]);
  close(fds[1]);
  return 0;
}

/* ---- random kills ---- */

#define RK_ROUNDS 50
#define RK_KIDS 4
#define RK_SLOTS 32

/* Alloc/free forever, with as little work outside the lock as keeps the
 * check meaningful (a pattern at both ends of each block). */
static void __attribute__((noreturn)) hammer_forever(void) {
  void *slot[RK_SLOTS] = {0};
  size_t len[RK_SLOTS] = {0};
  uint64_t s = (uint64_t)getpid() * UINT64_C(0x9E3779B97F4A7C15) + 7;
  for (uint64_t op = 0;; op++) {
    int i = (int)(test_rand(&s) % RK_SLOTS);
    if (slot[i] != NULL) {
      unsigned char *c = slot[i];
      if (c[0] != (unsigned char)i || c[len[i] - 1] != (unsigned char)~i) {
        _exit(40);
      }
      if (mproc_shm_free(slot[i]) != 0) {
        _exit(41);
      }
      slot[i] = NULL;
    } else {
      uint64_t r = test_rand(&s);
      size_t n = 2 + ((r % 8 == 0) ? (size_t)(r >> 8) % 20000
                                   : (size_t)(r >> 8) % 700);
      if (mproc_shm_alloc(&slot[i], n) != 0) {
        _exit(42);
      }
      len[i] = n;
      ((unsigned char *)slot[i])[0] = (unsigned char)i;
      ((unsigned char *)slot[i])[n - 1] = (unsigned char)~i;
    }
  }
}

TEST_IMPL(arena_fault_random_kills) {
  void *mine[16];
  for (int i = 0; i < 16; i++) {
    ASSERT_OK(mproc_shm_alloc(&mine[i], (size_t)(300 * i + 5)));
    test_fill(mine[i], (size_t)(300 * i + 5), (uint64_t)(i + 100));
  }
  uint64_t s = (uint64_t)getpid() + 12345;
  int rounds_repaired = 0;
  for (int round = 0; round < RK_ROUNDS; round++) {
    size_t rec0 = stats().recoveries;
    pid_t kids[RK_KIDS];
    for (int k = 0; k < RK_KIDS; k++) {
      kids[k] = test_fork();
      if (kids[k] == 0) {
        hammer_forever();
      }
    }
    test_sleep(0.002 + (double)(test_rand(&s) % 10000) / 1e6);
    /* One at a time, so the survivors meet the dead holder's lock. */
    for (int k = 0; k < RK_KIDS; k++) {
      ASSERT_EQ(kill(kids[k], SIGKILL), 0);
      test_sleep((double)(test_rand(&s) % 1000) / 1e6);
    }
    for (int k = 0; k < RK_KIDS; k++) {
      int code = test_wait_pid(kids[k], 30);
      if (code != -SIGKILL) {
        fprintf(stderr, "# round %d: child exit %d\n", round, code);
      }
      ASSERT_EQ(code, -SIGKILL);
    }
    ASSERT_OK(mproc__arena_check());
    for (int i = 0; i < 16; i++) {
      ASSERT(test_check_fill(mine[i], (size_t)(300 * i + 5), (uint64_t)(i + 100)));
    }
    void *p[32];
    for (int i = 0; i < 32; i++) {
      ASSERT_OK(mproc_shm_alloc(&p[i], (size_t)(i * 200 + 1)));
    }
    for (int i = 0; i < 32; i++) {
      ASSERT_OK(mproc_shm_free(p[i]));
    }
    ASSERT_OK(mproc__arena_check());
    rounds_repaired += stats().recoveries > rec0;
  }
  printf("# %d of %d rounds killed a lock holder\n", rounds_repaired,
         RK_ROUNDS);
  ASSERT_GT(rounds_repaired, 0);
  for (int i = 0; i < 16; i++) {
    ASSERT_OK(mproc_shm_free(mine[i]));
  }
  ASSERT_OK(mproc__arena_check());
  return 0;
}
