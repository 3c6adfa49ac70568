/*
 * tests/unit/test-arena.c - the shared arena: allocation, validation of
 * frees, statistics, sizes, and pointers shared across processes.
 *
 * Each case runs in a fresh test process, so a case that calls
 * mproc_arena_init() gets a fresh arena.  Children are made with plain
 * fork() and end with _exit(); every one is reaped.  The kill -9 cases
 * live in tests/fault/test-arena-fault.c.
 */
#include "task.h"

#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>

/* ---- helpers ---- */

/* Fork a child that runs fn(arg) and _exits with its result. */
static pid_t fork_child(int (*fn)(int), int arg) {
  pid_t pid = test_fork();
  if (pid == 0) {
    _exit(fn(arg));
  }
  return pid;
}

static int wait_child(pid_t pid) { return test_wait_pid(pid, 60.0); }

/* xorshift64*: a cheap per-process random stream. */
static mproc_arena_stats stats(void) {
  mproc_arena_stats s;
  ASSERT_OK(mproc_arena_get_stats(&s));
  return s;
}

/* ---- single process ---- */

TEST_IMPL(arena_alloc_free_basic) {
  void *p = NULL;
  ASSERT_OK(mproc_shm_alloc(&p, 100));
  ASSERT_NOT_NULL(p);
  ASSERT(mproc_arena_contains(p));
  ASSERT_GE(mproc_shm_usable_size(p), 100);
  memset(p, 0x5a, mproc_shm_usable_size(p));
  void *q = NULL;
  ASSERT_OK(mproc_shm_alloc(&q, 100));
  ASSERT_PTR_NE(p, q);
  /* The blocks do not overlap: p's whole usable range ends before q. */
  ASSERT(((char *)p + mproc_shm_usable_size(p) <= (char *)q) ||
         ((char *)q + mproc_shm_usable_size(q) <= (char *)p));
  ASSERT_OK(mproc_shm_free(p));
  ASSERT_OK(mproc_shm_free(q));
  ASSERT_OK(mproc__arena_check());
  ASSERT_ERR(mproc_shm_alloc(NULL, 8), MPROC_EINVAL);
  return 0;
}

TEST_IMPL(arena_calloc_zeroed_and_overflow) {
  void *p = NULL;
  ASSERT_OK(mproc_shm_alloc(&p, 4096));
  memset(p, 0xab, 4096);
  ASSERT_OK(mproc_shm_free(p));
  /* Same size again: most likely the same, dirty block. */
  unsigned char *z = NULL;
  ASSERT_OK(mproc_shm_calloc((void **)&z, 64, 64));
  for (size_t i = 0; i < 64 * 64; i++) {
    ASSERT_EQ(z[i], 0);
  }
  ASSERT_OK(mproc_shm_free(z));

  void *o = (void *)1;
  ASSERT_ERR(mproc_shm_calloc(&o, SIZE_MAX / 2, 3), MPROC_EOVERFLOW);
  ASSERT_NULL(o);
  ASSERT_ERR(mproc_shm_calloc(NULL, 1, 1), MPROC_EINVAL);
  ASSERT_OK(mproc_shm_calloc(&o, 0, 16));
  ASSERT_OK(mproc_shm_free(o));
  ASSERT_OK(mproc__arena_check());
  return 0;
}

TEST_IMPL(arena_alignment_and_usable_size) {
  static void *ptrs[2200];
  size_t n = 0;
  for (size_t size = 0; size < 2100; size++) {
    void *p = NULL;
    ASSERT_OK(mproc_shm_alloc(&p, size));
    ASSERT_EQ((uintptr_t)p % MPROC_ARENA_ALIGN, 0);
    ASSERT_GE(mproc_shm_usable_size(p), size);
    /* The whole usable size is really ours: write all of it. */
    memset(p, (int)(size & 0xff), mproc_shm_usable_size(p));
    ptrs[n++] = p;
  }
  static const size_t big[] = {4095, 65536, 1 << 20, (5 << 20) + 3};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(big); i++) {
    void *p = NULL;
    ASSERT_OK(mproc_shm_alloc(&p, big[i]));
    ASSERT_EQ((uintptr_t)p % MPROC_ARENA_ALIGN, 0);
    ASSERT_GE(mproc_shm_usable_size(p), big[i]);
    ptrs[n++] = p;
  }
  /* Every block still holds what was written: no overlap. */
  for (size_t size = 0; size < 2100; size++) {
    unsigned char *c = ptrs[size];
    for (size_t i = 0; i < size; i++) {
      ASSERT_EQ(c[i], (int)(size & 0xff));
    }
  }
  ASSERT_OK(mproc__arena_check());
  for (size_t i = 0; i < n; i++) {
    ASSERT_OK(mproc_shm_free(ptrs[i]));
  }
  ASSERT_OK(mproc__arena_check());
  return 0;
}

TEST_IMPL(arena_size_zero_is_unique) {
  void *a = NULL, *b = NULL;
  ASSERT_OK(mproc_shm_alloc(&a, 0));
  ASSERT_OK(mproc_shm_alloc(&b, 0));
  ASSERT_NOT_NULL(a);
  ASSERT_NOT_NULL(b);
  ASSERT_PTR_NE(a, b);
  ASSERT_OK(mproc_shm_free(a));
  ASSERT_OK(mproc_shm_free(b));
  return 0;
}

TEST_IMPL(arena_free_invalid) {
  ASSERT_OK(mproc_shm_free(NULL));
  int on_stack = 0;
  ASSERT_ERR(mproc_shm_free(&on_stack), MPROC_EINVAL);
  void *heap = malloc(64);
  ASSERT_NOT_NULL(heap);
  ASSERT_ERR(mproc_shm_free(heap), MPROC_EINVAL);
  free(heap);

  char *a = NULL, *b = NULL, *c = NULL;
  ASSERT_OK(mproc_shm_alloc((void **)&a, 256));
  ASSERT_OK(mproc_shm_alloc((void **)&b, 256));
  ASSERT_OK(mproc_shm_alloc((void **)&c, 256));
  memset(a, 0, 256);
  memset(b, 0xff, 256);
  mproc_arena_stats before = stats();

  /* Interior pointers, aligned and not, and one past the block. */
  ASSERT_ERR(mproc_shm_free(a + 1), MPROC_EINVAL);
  ASSERT_ERR(mproc_shm_free(a + 16), MPROC_EINVAL);
  ASSERT_ERR(mproc_shm_free(b + 128), MPROC_EINVAL);
  ASSERT_ERR(mproc_shm_free(a - 16), MPROC_EINVAL);
  ASSERT_EQ(mproc_shm_usable_size(a + 16), 0);
  /* The arena's own header, and far beyond anything allocated. */
  mproc_arena_info info;
  ASSERT_OK(mproc_arena_get_info(&info));
  ASSERT_ERR(mproc_shm_free(info.base), MPROC_EINVAL);
  ASSERT_ERR(mproc_shm_free((char *)info.base + 4096), MPROC_EINVAL);
  ASSERT_ERR(mproc_shm_free((char *)info.base + info.size - 64),
             MPROC_EINVAL);
  ASSERT_EQ(mproc_shm_usable_size((char *)info.base + info.size - 64), 0);

  mproc_arena_stats mid = stats();
  ASSERT_UEQ(mid.in_use, before.in_use);
  ASSERT_UEQ(mid.blocks, before.blocks);
  ASSERT_OK(mproc__arena_check());

  /* Double frees: of a block with live neighbours, of one merged into a
   * free neighbour, and of one given back to the top. */
  ASSERT_OK(mproc_shm_free(b));
  ASSERT_ERR(mproc_shm_free(b), MPROC_EINVAL);
  ASSERT_EQ(mproc_shm_usable_size(b), 0);
  ASSERT_OK(mproc_shm_free(a));
  ASSERT_ERR(mproc_shm_free(a), MPROC_EINVAL);
  ASSERT_ERR(mproc_shm_free(b), MPROC_EINVAL);
  ASSERT_OK(mproc_shm_free(c));
  ASSERT_ERR(mproc_shm_free(c), MPROC_EINVAL);
  ASSERT_OK(mproc__arena_check());

  mproc_arena_stats after = stats();
  ASSERT_UEQ(after.blocks, before.blocks - 3);
  /* Still usable. */
  void *p = NULL;
  ASSERT_OK(mproc_shm_alloc(&p, 300));
  ASSERT_OK(mproc_shm_free(p));
  ASSERT_OK(mproc__arena_check());
  return 0;
}

TEST_IMPL(arena_stats_track_use) {
  mproc_arena_stats s0 = stats();
  ASSERT_GT(s0.size, 0);
  ASSERT_UEQ(s0.free, s0.size - s0.in_use);
  ASSERT_UEQ(s0.recoveries, 0);
  void *p[10];
  size_t asked = 0;
  for (int i = 0; i < 10; i++) {
    ASSERT_OK(mproc_shm_alloc(&p[i], 1000u * (size_t)(i + 1)));
    asked += 1000u * (size_t)(i + 1);
  }
  mproc_arena_stats s1 = stats();
  ASSERT_UEQ(s1.blocks, s0.blocks + 10);
  ASSERT_GE(s1.in_use, s0.in_use + asked);
  ASSERT_GE(s1.peak, s1.in_use);
  ASSERT_UEQ(s1.free, s1.size - s1.in_use);
  for (int i = 0; i < 10; i++) {
    ASSERT_OK(mproc_shm_free(p[i]));
  }
  mproc_arena_stats s2 = stats();
  ASSERT_UEQ(s2.in_use, s0.in_use);
  ASSERT_UEQ(s2.blocks, s0.blocks);
  ASSERT_UEQ(s2.peak, s1.peak);
  ASSERT_ERR(mproc_arena_get_stats(NULL), MPROC_EINVAL);
  return 0;
}

TEST_IMPL(arena_coalesces_and_reuses) {
  /* a, b, c side by side (fresh heap: carved in order from the top), and
   * d to keep them off the top. */
  char *a, *b, *c, *d;
  ASSERT_OK(mproc_shm_alloc((void **)&a, 1000));
  ASSERT_OK(mproc_shm_alloc((void **)&b, 1000));
  ASSERT_OK(mproc_shm_alloc((void **)&c, 1000));
  ASSERT_OK(mproc_shm_alloc((void **)&d, 1000));
  ASSERT(a < b && b < c && c < d);
  ASSERT_OK(mproc_shm_free(a));
  ASSERT_OK(mproc_shm_free(c));
  ASSERT_OK(mproc__arena_check());
  ASSERT_OK(mproc_shm_free(b)); /* merges with both neighbours */
  ASSERT_OK(mproc__arena_check());
  /* One block now spans a..c: a request for almost all of it fits there
   * and nowhere else below the top. */
  void *big = NULL;
  ASSERT_OK(mproc_shm_alloc(&big, (size_t)(c - a) + 900));
  ASSERT_PTR_EQ(big, a);
  ASSERT_OK(mproc_shm_free(big));
  ASSERT_OK(mproc_shm_free(d));
  /* Everything went back to the top: the next block starts at a again. */
  ASSERT_UEQ(stats().blocks, 0);
  void *again = NULL;
  ASSERT_OK(mproc_shm_alloc(&again, 5000));
  ASSERT_PTR_EQ(again, a);
  ASSERT_OK(mproc_shm_free(again));
  ASSERT_OK(mproc__arena_check());
  return 0;
}

TEST_IMPL(arena_check_detects_corruption) {
  char *a = NULL, *b = NULL;
  ASSERT_OK(mproc_shm_alloc((void **)&a, 64));
  ASSERT_OK(mproc_shm_alloc((void **)&b, 64));
  ASSERT_OK(mproc__arena_check());
  /* A buffer underflow of b wipes its header. */
  uint64_t saved;
  memcpy(&saved, b - 8, sizeof saved);
  memset(b - 8, 0x41, 8);
  ASSERT_ERR(mproc__arena_check(), MPROC_ECORRUPT);
  ASSERT_ERR(mproc_shm_free(b), MPROC_EINVAL);
  memcpy(b - 8, &saved, sizeof saved);
  ASSERT_OK(mproc__arena_check());
  ASSERT_OK(mproc_shm_free(b));
  ASSERT_OK(mproc_shm_free(a));
  ASSERT_OK(mproc__arena_check());

  /* A write to freed memory that hits the footer free() would follow to
   * merge: refused, not followed. */
  char *x = NULL, *y = NULL, *z = NULL;
  ASSERT_OK(mproc_shm_alloc((void **)&x, 100));
  ASSERT_OK(mproc_shm_alloc((void **)&y, 100));
  ASSERT_OK(mproc_shm_alloc((void **)&z, 100));
  size_t xn = mproc_shm_usable_size(x);
  ASSERT_OK(mproc_shm_free(x));
  ASSERT_OK(mproc__arena_check());
  memcpy(&saved, x + xn - 8, sizeof saved); /* use after free */
  memset(x + xn - 8, 0x10, 8);
  ASSERT_ERR(mproc__arena_check(), MPROC_ECORRUPT);
  ASSERT_ERR(mproc_shm_free(y), MPROC_ECORRUPT);
  memcpy(x + xn - 8, &saved, sizeof saved);
  ASSERT_OK(mproc__arena_check());
  ASSERT_OK(mproc_shm_free(y));
  ASSERT_OK(mproc_shm_free(z));
  ASSERT_OK(mproc__arena_check());
  return 0;
}

/* ---- creation, sizes, info ---- */

TEST_IMPL(arena_init_after_creation) {
  void *p = NULL;
  ASSERT_OK(mproc_shm_alloc(&p, 10));
  mproc_arena_stats s0 = stats();
  mproc_arena_opts o = {4u << 20};
  ASSERT_ERR(mproc_arena_init(&o), MPROC_EALREADY);
  ASSERT_ERR(mproc_arena_init(NULL), MPROC_EALREADY);
  ASSERT_UEQ(stats().size, s0.size);
  ASSERT_OK(mproc_shm_free(p));
  return 0;
}

TEST_IMPL(arena_init_small) {
  mproc_arena_opts tiny = {(1u << 20) - 1};
  ASSERT_ERR(mproc_arena_init(&tiny), MPROC_EINVAL);
  mproc_arena_opts o = {4u << 20};
  ASSERT_OK(mproc_arena_init(&o));
  ASSERT_ERR(mproc_arena_init(&o), MPROC_EALREADY);
  mproc_arena_info info;
  ASSERT_OK(mproc_arena_get_info(&info));
  ASSERT_UEQ(info.size, 4u << 20);
  mproc_arena_stats s = stats();
  ASSERT_LE(s.size, 4u << 20);
  ASSERT_GT(s.size, (4u << 20) - 8192);
  /* Most of it is really usable. */
  void *p = NULL;
  ASSERT_OK(mproc_shm_alloc(&p, (4u << 20) - 8192));
  ASSERT_ERR(mproc_shm_alloc(&p, 8192), MPROC_ENOMEM);
  ASSERT_NULL(p);
  return 0;
}

TEST_IMPL(arena_env_size) {
  ASSERT_EQ(setenv("MPROC_ARENA_SIZE", "8M", 1), 0);
  mproc_arena_info info;
  ASSERT_OK(mproc_arena_get_info(&info));
  ASSERT_UEQ(info.size, 8u << 20);
  ASSERT_LE(stats().size, 8u << 20);
  unsetenv("MPROC_ARENA_SIZE");
  return 0;
}

TEST_IMPL(arena_env_size_invalid_ignored) {
  ASSERT_EQ(setenv("MPROC_ARENA_SIZE", "12 parsecs", 1), 0);
  mproc_arena_info info;
  ASSERT_OK(mproc_arena_get_info(&info));
  /* The default, or a halved fallback, never the garbage. */
  ASSERT_GE(info.size, (size_t)1 << 30);
  unsetenv("MPROC_ARENA_SIZE");
  return 0;
}

TEST_IMPL(arena_info_and_contains) {
  ASSERT_ERR(mproc_arena_get_info(NULL), MPROC_EINVAL);
  ASSERT_EQ(mproc__arena_fd(), -1); /* nothing made yet */
  ASSERT_EQ(mproc_arena_contains(&errno), 0);
  mproc_arena_info info;
  ASSERT_OK(mproc_arena_get_info(&info));
  ASSERT_NOT_NULL(info.base);
  ASSERT_GE(info.fd, 3);
  ASSERT_EQ(info.fd, mproc__arena_fd());
  ASSERT_GE(info.size, (size_t)1 << 30); /* the default, maybe halved */
  ASSERT_LE(info.size, MPROC_ARENA_DEFAULT_SIZE);
  ASSERT(mproc_arena_contains(info.base));
  ASSERT(mproc_arena_contains((char *)info.base + info.size - 1));
  ASSERT_EQ(mproc_arena_contains((char *)info.base + info.size), 0);
  ASSERT_EQ(mproc_arena_contains((char *)info.base - 1), 0);
  ASSERT_EQ(mproc_arena_contains(NULL), 0);
  ASSERT_EQ(mproc_arena_contains(&info), 0);
  /* Page-aligned, and (on a usual 47-bit layout) at the fixed address. */
  ASSERT_EQ((uintptr_t)info.base % 4096, 0);
  if (info.base != (void *)(uintptr_t)0x200000000000ull) {
    printf("# note: arena not at the fixed address: %p\n", info.base);
  }
  /* The memfd's size is the mapping's. */
  ASSERT_EQ(lseek(info.fd, 0, SEEK_END), (off_t)info.size);
  return 0;
}

/* ---- several processes ---- */

#define XP_BLOCKS 64
static unsigned char *xp_blocks[XP_BLOCKS];
static int xp_pipe[2];

/* Child k: write its pattern into the parent's blocks k, k+4, ...;
 * allocate and free some of its own; allocate one block for the parent to
 * read and free, and send its address. */
static int xp_child(int k) {
  for (int i = k; i < XP_BLOCKS; i += 4) {
    test_fill(xp_blocks[i], 512, (uint64_t)(i * 7 + 1));
  }
  void *mine[32];
  for (int i = 0; i < 32; i++) {
    if (mproc_shm_alloc(&mine[i], (size_t)(16 * i + 8)) != 0) {
      return 2;
    }
    test_fill(mine[i], (size_t)(16 * i + 8), (uint64_t)i);
  }
  for (int i = 0; i < 32; i++) {
    if (!test_check_fill(mine[i], (size_t)(16 * i + 8), (uint64_t)i) ||
        mproc_shm_free(mine[i]) != 0) {
      return 3;
    }
  }
  void *gift = NULL;
  if (mproc_shm_alloc(&gift, 1000) != 0) {
    return 4;
  }
  test_fill(gift, 1000, (uint64_t)(1000 + k));
  if (write(xp_pipe[1], &gift, sizeof gift) != (ssize_t)sizeof gift) {
    return 5;
  }
  return 0;
}

TEST_IMPL(arena_pointers_valid_across_processes) {
  for (int i = 0; i < XP_BLOCKS; i++) {
    ASSERT_OK(mproc_shm_alloc((void **)&xp_blocks[i], 512));
    memset(xp_blocks[i], 0, 512);
  }
  mproc_arena_stats s0 = stats();
  ASSERT_EQ(pipe(xp_pipe), 0);
  pid_t kids[4];
  for (int k = 0; k < 4; k++) {
    kids[k] = fork_child(xp_child, k);
  }
  for (int k = 0; k < 4; k++) {
    ASSERT_EQ(wait_child(kids[k]), 0);
  }
  close(xp_pipe[1]);
  /* The children's writes are visible here, at the same addresses. */
  for (int i = 0; i < XP_BLOCKS; i++) {
    ASSERT(test_check_fill(xp_blocks[i], 512, (uint64_t)(i * 7 + 1)));
  }
  /* Blocks the children allocated: readable and freeable here. */
  int gifts = 0;
  void *gift;
  while (read(xp_pipe[0], &gift, sizeof gift) == (ssize_t)sizeof gift) {
    ASSERT(mproc_arena_contains(gift));
    int ok = 0;
    for (int k = 0; k < 4; k++) {
      ok |= test_check_fill(gift, 1000, (uint64_t)(1000 + k));
    }
    ASSERT(ok);
    ASSERT_OK(mproc_shm_free(gift));
    gifts++;
  }
  close(xp_pipe[0]);
  ASSERT_EQ(gifts, 4);
  mproc_arena_stats s1 = stats();
  ASSERT_UEQ(s1.in_use, s0.in_use);
  ASSERT_UEQ(s1.blocks, s0.blocks);
  for (int i = 0; i < XP_BLOCKS; i++) {
    ASSERT_OK(mproc_shm_free(xp_blocks[i]));
  }
  ASSERT_OK(mproc__arena_check());
  return 0;
}

#define MP_KIDS 8
#define MP_OPS 4000
#define MP_SLOTS 64

/* Random-size alloc/free loop; each block carries a pattern derived from
 * (pid, index) and is verified before it is freed.  Frees all at the
 * end. */
static int hammer(int ops) {
  void *slot[MP_SLOTS] = {0};
  size_t len[MP_SLOTS] = {0};
  uint64_t seed[MP_SLOTS] = {0};
  uint64_t s = (uint64_t)getpid() * UINT64_C(0x9E3779B97F4A7C15) + 1;
  uint64_t pidpart = (uint64_t)getpid() << 20;
  for (int op = 0; op < ops; op++) {
    int i = (int)(test_rand(&s) % MP_SLOTS);
    if (slot[i] != NULL) {
      if (!test_check_fill(slot[i], len[i], seed[i])) {
        return 10;
      }
      if (mproc_shm_free(slot[i]) != 0) {
        return 11;
      }
      slot[i] = NULL;
    } else {
      uint64_t r = test_rand(&s);
      size_t n = (r % 16 == 0) ? (size_t)(r >> 8) % 70000
                               : (size_t)(r >> 8) % 600;
      if (mproc_shm_alloc(&slot[i], n) != 0) {
        return 12;
      }
      len[i] = n;
      seed[i] = pidpart + (uint64_t)op;
      test_fill(slot[i], n, seed[i]);
    }
  }
  for (int i = 0; i < MP_SLOTS; i++) {
    if (slot[i] != NULL) {
      if (!test_check_fill(slot[i], len[i], seed[i]) || mproc_shm_free(slot[i])) {
        return 13;
      }
    }
  }
  return 0;
}

TEST_IMPL(arena_many_processes) {
  ASSERT_OK(mproc__arena_ensure());
  mproc_arena_stats s0 = stats();
  pid_t kids[MP_KIDS];
  for (int k = 0; k < MP_KIDS; k++) {
    kids[k] = fork_child(hammer, MP_OPS);
  }
  int bad = 0;
  for (int k = 0; k < MP_KIDS; k++) {
    int code = wait_child(kids[k]);
    if (code != 0) {
      fprintf(stderr, "# child %d exited with %d\n", (int)kids[k], code);
      bad++;
    }
  }
  ASSERT_EQ(bad, 0);
  ASSERT_OK(mproc__arena_check());
  mproc_arena_stats s1 = stats();
  ASSERT_UEQ(s1.in_use, s0.in_use);
  ASSERT_UEQ(s1.blocks, s0.blocks);
  ASSERT_GT(s1.peak, s0.in_use);
  ASSERT_UEQ(s1.recoveries, 0);
  return 0;
}

static void *thread_hammer(void *arg) {
  (void)arg;
  return (void *)(intptr_t)hammer(MP_OPS * 2);
}

TEST_IMPL(arena_threads) {
  pthread_t t[4];
  for (int i = 0; i < 4; i++) {
    ASSERT_EQ(pthread_create(&t[i], NULL, thread_hammer, NULL), 0);
  }
  for (int i = 0; i < 4; i++) {
    void *rv;
    ASSERT_EQ(pthread_join(t[i], &rv), 0);
    ASSERT_EQ((intptr_t)rv, 0);
  }
  ASSERT_OK(mproc__arena_check());
  ASSERT_UEQ(stats().blocks, 0);
  return 0;
}

/* ---- exhaustion ---- */

TEST_IMPL(arena_exhaustion) {
  mproc_arena_opts o = {2u << 20};
  ASSERT_OK(mproc_arena_init(&o));
  static void *p[4096];
  int n = 0, r;
  for (;;) {
    void *q = (void *)1;
    r = mproc_shm_alloc(&q, 1000);
    if (r != 0) {
      ASSERT_NULL(q);
      break;
    }
    ASSERT_LT(n, 4096);
    memset(q, n & 0xff, 1000);
    p[n++] = q;
  }
  ASSERT_ERR(r, MPROC_ENOMEM);
  ASSERT_GT(n, 1500); /* 2 MiB / ~1 KiB, less the header */
  void *q = (void *)1;
  ASSERT_ERR(mproc_shm_alloc(&q, SIZE_MAX), MPROC_ENOMEM);
  ASSERT_NULL(q);
  ASSERT_ERR(mproc_shm_calloc(&q, 1, 3u << 20), MPROC_ENOMEM);
  ASSERT_OK(mproc__arena_check());
  /* Small requests may still fit in the tail; the arena stays usable. */
  ASSERT_OK(mproc_shm_free(p[n / 2]));
  ASSERT_OK(mproc_shm_alloc(&p[n / 2], 1000));
  for (int i = 0; i < n; i++) {
    ASSERT_OK(mproc_shm_free(p[i]));
  }
  ASSERT_OK(mproc__arena_check());
  ASSERT_UEQ(stats().in_use, 0);
  /* All of it again, now that it was freed (and merged). */
  for (int i = 0; i < n; i++) {
    ASSERT_OK(mproc_shm_alloc(&p[i], 1000));
  }
  for (int i = 0; i < n; i++) {
    ASSERT_OK(mproc_shm_free(p[i]));
  }
  /* Once all is free, one block can take almost the whole arena. */
  void *big = NULL;
  ASSERT_OK(mproc_shm_alloc(&big, (2u << 20) - 8192));
  ASSERT_ERR(mproc_shm_alloc(&q, 8192), MPROC_ENOMEM);
  ASSERT_OK(mproc_shm_free(big));
  ASSERT_OK(mproc__arena_check());
  return 0;
}
