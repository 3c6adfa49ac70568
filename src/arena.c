/*
 * arena.c - the shared arena: one memfd mapped at the same address in every
 * process of the program, and a process-safe, crash-safe allocator in it.
 *
 * DESIGN
 *
 * The region.  One memfd, ftruncated to the reserved size (sparse: a page
 * costs memory only once touched) and mapped MAP_SHARED | MAP_NORESERVE,
 * once per program, before the first child exists (mproc__arena_ensure()
 * runs before every fork).  It is never unmapped and its fd never closed,
 * so a pointer into it stays valid for the life of every process.  It is
 * placed at ARENA_HINT with MAP_FIXED_NOREPLACE when that range is free (an
 * address far from the heap, the stacks and the usual mmap area, so that a
 * process started by exec can map the same memfd at the same address), else
 * where the kernel puts it.  The built-in default size (32 GiB) falls back,
 * halving, down to 1 GiB when the kernel refuses it; a size the caller
 * chose (mproc_arena_init, MPROC_ARENA_SIZE) is taken or refused as is.
 *
 * Layout.  The region starts with an arena_hdr (magic, version, base,
 * size: enough for an exec'd process to check what it mapped), the lock,
 * the counters and the free-list heads; the heap follows.  All links in
 * the region are offsets from the base, so the header would stay
 * meaningful even mapped elsewhere.
 *
 * Blocks (boundary tags, as dlmalloc).  A block at offset B is
 *
 *     B+0   prev_size  size of the previous block, valid only when that
 *                      block is free (it is the previous block's footer;
 *                      while the previous block is in use, it holds the
 *                      last 8 bytes of that block's user data)
 *     B+8   head       size | PINUSE | INUSE, and a 16-bit check tag
 *     B+16  payload    (free block: next and prev free-list offsets)
 *
 * Sizes are multiples of 16 and at least 32, so payloads are 16-aligned;
 * a block of size s gives s - 8 usable bytes.  The check tag is a hash of
 * the block's offset and of its INUSE bit: mproc_shm_free() accepts a
 * pointer only when the header before it carries the tag of an in-use
 * block at exactly that offset, its size stays below the top, and the next
 * block's header is valid and says its predecessor is in use.  A double
 * free finds INUSE clear; an interior or foreign pointer finds no valid
 * tag.  That is a strong check, not a proof: user data that happens to
 * forge two consecutive tags would pass (odds about 2^-32).
 *
 * Blocks tile the heap from heap_start up to `top`; beyond top lies the
 * wilderness, carved on demand (so memory is touched only when used).  No
 * two free blocks are adjacent and the block below top is never free:
 * free() coalesces eagerly and gives a free block at the end back to top.
 *
 * Free lists.  216 doubly linked lists (LIFO): one per exact size up to
 * 1008 bytes (16-byte steps), then four per power of two.  A bitmap of
 * non-empty lists finds the smallest list whose blocks all fit in a few
 * instructions, so small allocations and all frees are O(1).
 *
 * Crash safety.  The lock is a robust process-shared mutex in the header.
 * The state is split in two:
 *   - the block chain (each head's size and INUSE bit, and top) is the
 *     truth.  Every mutation of it is committed by ONE aligned 8-byte
 *     release store: a split writes the remainder's head first (inside the
 *     block, invisible to a walk) and then stores the shrunk size of the
 *     block; a carve writes the new head beyond top and then moves top; a
 *     free marks the block free, then stores the merged size into the
 *     first block of the run (or lowers top).  So a walk of the chain by
 *     head sizes from heap_start reaches top exactly at every instruction.
 *   - everything else (footers, PINUSE bits, free lists, bitmap, counters)
 *     is derived from the chain.
 * When a process dies holding the lock, the next locker gets EOWNERDEAD
 * and calls recover(): it walks the chain, merges free neighbours, gives a
 * free tail back to top, rewrites footers and PINUSE bits, rebuilds every
 * list and counter, then marks the mutex consistent and carries on with
 * its own call.  recover() only makes committed single-store steps itself,
 * so a process killed during recovery leaves work the next one redoes.
 * A block the dead process had allocated (even one it was about to return
 * to its caller) stays allocated: another process may hold its address,
 * and nothing in the arena records who owns what.
 *
 * Fault points.  mproc__fault_hook (src/fault.h), when set, is called
 * with the lock held at the ARENA_* points, in the middle of mutations; tests
 * SIGKILL the process there.  Costs one load and a compare when unset.
 */
#include "internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

MPROC__STATIC_ASSERT(sizeof(size_t) == 8 && sizeof(void *) == 8,
                     "the arena needs a 64-bit address space");

/* ==================== constants ==================== */

#define ARENA_MAGIC UINT64_C(0x4e5241434f52504d) /* "MPROCARN" */
#define ARENA_VERSION 1u

/* Where the arena goes when that range is free: 32 TiB, far above the
 * brk heap and below the mmap area and stacks of a 47-bit address space,
 * and in ASan's high application range on x86-64. */
#define ARENA_HINT ((void *)(uintptr_t)0x200000000000ull)

#define ARENA_MIN_SIZE ((size_t)1 << 20)       /* init refuses less */
#define ARENA_FALLBACK_MIN ((size_t)1 << 30)   /* default halves to this */
#define ARENA_MAX_SIZE ((size_t)1 << 47)       /* sizes fit in 48 bits */

/* Head word: bit 0 INUSE, bit 1 PINUSE (previous block in use), bits 4-47
 * size, bits 48-63 check tag. */
#define H_INUSE UINT64_C(1)
#define H_PINUSE UINT64_C(2)
#define H_SIZE_MASK UINT64_C(0x0000fffffffffff0)
#define H_TAG_SHIFT 48

#define BLK_HDR 16                /* prev_size + head, before the payload */
#define BLK_MIN 32                /* head room for the two free links */
#define BLK_ALIGN 16

/* Free lists: exact for sizes below SMALL_LIMIT, then 4 per power of 2. */
#define SMALL_LIMIT 1024
#define NBINS 216                 /* 64 + 4 * (47 - 10 + 1) */
#define BITMAP_WORDS ((NBINS + 63) / 64)

/* How many entries of a request's own, not-guaranteed list are tried
 * before carving from top; the whole list is searched only when top is
 * exhausted, to keep the common path O(1). */
#define SHORT_SCAN 8

/* Fault points: the ARENA_* lines of src/fault.h. */

/* ==================== the shared header ==================== */

/*
 * At offset 0 of the region.  Mutex rules: everything from `lock` on is
 * read and written only with `lock` held; the fields above it are written
 * once, before any other process exists, and read-only after.
 */
typedef struct arena_hdr {
  uint64_t magic;       /* ARENA_MAGIC */
  uint32_t version;     /* ARENA_VERSION */
  uint32_t hdr_size;    /* sizeof(arena_hdr), for an exec'd peer's check */
  uint64_t base;        /* address the region is mapped at everywhere */
  uint64_t size;        /* bytes mapped (the memfd's size) */
  uint64_t heap_start;  /* offset of the first block */
  uint64_t heap_end;    /* no block reaches past this offset */
  uint64_t pad0[2];     /* the lock on its own cache line */

  pthread_mutex_t lock; /* robust, process-shared: guards all below */
  uint64_t top;         /* offset where the wilderness starts */
  uint64_t in_use;      /* bytes in live blocks (derived) */
  uint64_t peak;        /* max in_use seen */
  uint64_t blocks;      /* live blocks (derived) */
  uint64_t recoveries;  /* repairs after a dead lock holder */
  uint64_t bitmap[BITMAP_WORDS]; /* bit i: bins[i] non-empty (derived) */
  uint64_t bins[NBINS]; /* free-list heads, block offsets, 0 = empty */
  void *roots[MPROC__ARENA_ROOTS]; /* modules' program-wide objects, set
                                      once with a CAS (mproc__arena_root) */
} arena_hdr;

/* ==================== process-local state ==================== */

/* Set once, published with a release store of g_base after the header is
 * ready; a fork child inherits them as they are. */
static char *g_base;
static size_t g_size;
static int g_fd = -1;
static pthread_mutex_t g_init_lock = PTHREAD_MUTEX_INITIALIZER;

/* ==================== block helpers ==================== */

static inline uint64_t *word_at(char *base, uint64_t off) {
  return (uint64_t *)(void *)(base + off);
}

static inline uint64_t tag_of(uint64_t off, uint64_t inuse) {
  /* Fibonacci hash of the block's offset, and a different constant for
   * in-use and free so that flipping INUSE alone never forges a tag. */
  uint64_t t = ((off >> 4) * UINT64_C(0x9E3779B97F4A7C15)) >> 48;
  return (t ^ (inuse ? 0x6D70u : 0x9A3Cu)) & 0xffffu;
}

static inline uint64_t mkhead(uint64_t off, uint64_t size, uint64_t inuse,
                              uint64_t pinuse) {
  return (tag_of(off, inuse) << H_TAG_SHIFT) | size | (pinuse ? H_PINUSE : 0) |
         (inuse ? H_INUSE : 0);
}

static inline uint64_t *head_p(char *base, uint64_t b) {
  return word_at(base, b + 8);
}
static inline uint64_t *psize_p(char *base, uint64_t b) {
  return word_at(base, b);
}
static inline uint64_t *next_p(char *base, uint64_t b) {
  return word_at(base, b + 16);
}
static inline uint64_t *prev_p(char *base, uint64_t b) {
  return word_at(base, b + 24);
}

static inline uint64_t hsize(uint64_t h) { return h & H_SIZE_MASK; }

/* The store that commits a step of the block chain.  Release: every store
 * before it (a remainder's head, a footer) is done first, also against
 * compiler reordering, so a process killed at any instruction leaves the
 * chain either before or after the step. */
static inline void commit(uint64_t *p, uint64_t v) {
  __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* Whether h is a well-formed head for a block at off that ends by limit. */
static inline int head_ok(uint64_t off, uint64_t h, uint64_t limit) {
  uint64_t size = hsize(h);
  return (h >> H_TAG_SHIFT) == tag_of(off, h & H_INUSE) &&
         (h & (H_SIZE_MASK | H_INUSE | H_PINUSE | (UINT64_C(0xffff) << 48))) ==
             h &&
         size >= BLK_MIN && size <= limit - off;
}

static inline unsigned bin_of(uint64_t size) {
  if (size < SMALL_LIMIT) {
    return (unsigned)(size >> 4);
  }
  unsigned p = 63u - (unsigned)__builtin_clzll(size);
  return 64u + ((p - 10u) << 2) + (unsigned)((size >> (p - 2u)) & 3u);
}

/* The first list all of whose blocks are >= size. */
static inline unsigned fit_bin_of(uint64_t size) {
  unsigned b = bin_of(size);
  if (size >= SMALL_LIMIT) {
    unsigned p = 63u - (unsigned)__builtin_clzll(size);
    uint64_t low = (size >> (p - 2u)) << (p - 2u); /* the list's floor */
    if (low != size) {
      b++;
    }
  }
  return b;
}

/* The first non-empty list at or after `from`, or -1. */
static inline int find_bin(const arena_hdr *h, unsigned from) {
  unsigned w = from >> 6;
  if (w >= BITMAP_WORDS) {
    return -1;
  }
  uint64_t bits = h->bitmap[w] & (~UINT64_C(0) << (from & 63u));
  for (;;) {
    if (bits != 0) {
      return (int)(w * 64u + (unsigned)__builtin_ctzll(bits));
    }
    if (++w >= BITMAP_WORDS) {
      return -1;
    }
    bits = h->bitmap[w];
  }
}

/* Push free block b (size known) on the front of its list. */
static void bin_insert(arena_hdr *h, char *base, uint64_t b, uint64_t size) {
  unsigned i = bin_of(size);
  uint64_t first = h->bins[i];
  *next_p(base, b) = first;
  *prev_p(base, b) = 0;
  if (first != 0) {
    *prev_p(base, first) = b;
  }
  MPROC__FAULT(ARENA_INSERT_MID);
  h->bins[i] = b;
  h->bitmap[i >> 6] |= UINT64_C(1) << (i & 63u);
}

/* Take free block b (size known) out of its list. */
static void bin_unlink(arena_hdr *h, char *base, uint64_t b, uint64_t size) {
  unsigned i = bin_of(size);
  uint64_t nx = *next_p(base, b);
  uint64_t pv = *prev_p(base, b);
  if (pv != 0) {
    *next_p(base, pv) = nx;
  } else {
    h->bins[i] = nx;
  }
  MPROC__FAULT(ARENA_UNLINK_MID);
  if (nx != 0) {
    *prev_p(base, nx) = pv;
  }
  if (h->bins[i] == 0) {
    h->bitmap[i >> 6] &= ~(UINT64_C(1) << (i & 63u));
  }
}

/* ==================== recovery ==================== */

/*
 * Rebuild everything derived from the block chain.  Called with the lock
 * held after EOWNERDEAD (and by nothing else).  Returns 0, or
 * MPROC_ECORRUPT when the chain itself is broken (a user buffer overflow
 * wrote over a header; no crash of a lock holder can do that).
 */
static int recover(arena_hdr *h, char *base) {
  uint64_t top = h->top;
  if (top < h->heap_start || top > h->heap_end || (top & 15u) != 0) {
    return MPROC_ECORRUPT;
  }
  /* A carve killed before its commit left an in-use head just beyond top.
   * Clear it, so that if a later block covers that spot the stale head
   * cannot make an interior pointer look like a block. */
  *head_p(base, top) = 0;

  memset(h->bins, 0, sizeof h->bins);
  memset(h->bitmap, 0, sizeof h->bitmap);
  uint64_t in_use = 0, blocks = 0;
  uint64_t run = 0; /* start of the current run of free blocks, or 0 */
  uint64_t b = h->heap_start;
  uint64_t pinuse = 1;
  while (b < top) {
    uint64_t hd = *head_p(base, b);
    if (!head_ok(b, hd, top)) {
      return MPROC_ECORRUPT;
    }
    uint64_t size = hsize(hd);
    if (hd & H_INUSE) {
      if (run != 0) {
        /* The run before this block ends here: footer, list. */
        uint64_t rsize = b - run;
        *psize_p(base, b) = rsize;
        bin_insert(h, base, run, rsize);
        run = 0;
      }
      uint64_t want = mkhead(b, size, 1, pinuse);
      if (want != hd) {
        commit(head_p(base, b), want); /* same size: only PINUSE moves */
      }
      in_use += size;
      blocks++;
      pinuse = 1;
    } else if (run == 0) {
      uint64_t want = mkhead(b, size, 0, pinuse);
      if (want != hd) {
        commit(head_p(base, b), want);
      }
      run = b;
      pinuse = 0;
    } else {
      /* Two free neighbours: a free killed between marking its block and
       * merging it.  One store folds this block into the run. */
      commit(head_p(base, run), mkhead(run, b + size - run, 0, 1));
    }
    b += size;
  }
  if (run != 0) {
    /* A free tail: give it back to the wilderness. */
    commit(&h->top, run);
  }
  h->in_use = in_use;
  h->blocks = blocks;
  if (h->peak < in_use) {
    h->peak = in_use;
  }
  h->recoveries++;
  return 0;
}

/* ==================== locking ==================== */

/* Lock the allocator, repairing it first if the last holder died.
 * Returns 0 (locked), MPROC_ECORRUPT, or another negative code. */
static void (*_Atomic g_stuck_hook)(pid_t holder);

void mproc__arena_set_stuck_hook(void (*fn)(pid_t holder)) {
  atomic_store(&g_stuck_hook, fn);
}

/* The allocator's lock.  With a stuck hook set (the pool sets one), a
 * wait longer than MPROC__ARENA_STUCK_NS calls it with the holder's
 * thread id every 20 ms until the lock comes free: a holder that is
 * stopped would otherwise block this process for as long as it stays
 * stopped.  d: give up with -ETIMEDOUT when it passes (NULL: never). */
static int arena_lock_wait(arena_hdr *h, const mproc__deadline *d) {
  void (*hook)(pid_t) = atomic_load(&g_stuck_hook);
  if (hook == NULL && (d == NULL || d->forever)) {
    return mproc__rmutex_lock(&h->lock, NULL);
  }
  uint64_t t0 = mproc__now_ns();
  for (;;) {
    mproc__deadline slice;
    mproc__deadline_init(&slice, 0.02);
    if (d != NULL && !d->forever && d->at_ns < slice.at_ns) {
      slice = *d;
    }
    int r = mproc__rmutex_lock(&h->lock, &slice);
    if (r != -ETIMEDOUT) {
      return r;
    }
    if (d != NULL && !d->forever && mproc__deadline_left_ns(d) == 0) {
      return -ETIMEDOUT;
    }
    if (hook != NULL && mproc__now_ns() - t0 >= MPROC__ARENA_STUCK_NS) {
      hook(mproc__rmutex_holder(&h->lock));
    }
  }
}

static int arena_lock(arena_hdr *h, char *base, const mproc__deadline *d) {
  int r = arena_lock_wait(h, d);
  if (MPROC__LIKELY(r == 0)) {
    return 0;
  }
  if (r == -ETIMEDOUT) {
    return MPROC_ETIMEDOUT;
  }
  if (r == -EOWNERDEAD) {
    r = recover(h, base);
    if (r != 0) {
      /* Unlocking without marking it consistent makes the mutex
       * ENOTRECOVERABLE for every process: a heap we cannot repair must
       * not be used. */
      MPROC__WARN("arena: heap corrupt, cannot recover after a lock "
                  "holder died");
      mproc__rmutex_unlock(&h->lock);
      return MPROC_ECORRUPT;
    }
    MPROC__WARN("arena: a process died holding the allocator lock; heap "
                "repaired (recovery %llu)",
                (unsigned long long)h->recoveries);
    mproc__rmutex_consistent(&h->lock);
    return 0;
  }
  if (r == -ENOTRECOVERABLE) {
    return MPROC_ECORRUPT;
  }
  return r;
}

static inline void arena_unlock(arena_hdr *h) {
  mproc__rmutex_unlock(&h->lock);
}

/* ==================== creation ==================== */

/* Parse "123", "64K", "512M", "2G" (either case).  Returns 0 on failure. */
static size_t parse_size(const char *s) {
  if (s == NULL || *s < '0' || *s > '9') {
    return 0;
  }
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s) {
    return 0;
  }
  unsigned shift = 0;
  switch (*end) {
  case 'k':
  case 'K':
    shift = 10;
    end++;
    break;
  case 'm':
  case 'M':
    shift = 20;
    end++;
    break;
  case 'g':
  case 'G':
    shift = 30;
    end++;
    break;
  default:
    break;
  }
  if (*end != '\0' || v > (ARENA_MAX_SIZE >> shift)) {
    return 0;
  }
  return (size_t)v << shift;
}

static size_t round_up(size_t v, size_t to) { return (v + to - 1) & ~(to - 1); }

/* Make the arena.  size: bytes, already checked; may_shrink: halve down to
 * ARENA_FALLBACK_MIN when the kernel refuses.  Called with g_init_lock. */
static int create_locked(size_t size, int may_shrink) {
  size = round_up(size, mproc__page_size());
  int fd = mproc__memfd_create("mproc-arena");
  if (fd < 0) {
    return fd;
  }
  void *p = NULL;
  for (;;) {
    int r = mproc__truncate(fd, size);
    if (r == 0) {
      r = mproc__map_shared(fd, size, ARENA_HINT, 0, &p);
    }
    if (r == 0) {
      break;
    }
    if (!may_shrink || size / 2 < ARENA_FALLBACK_MIN) {
      mproc__close(fd);
      return r;
    }
    MPROC__DEBUG("arena: %zu bytes refused (%s), trying %zu", size,
                 mproc_err_name(r), size / 2);
    size /= 2;
  }

  arena_hdr *h = p;
  int r = mproc__rmutex_init(&h->lock);
  if (r != 0) {
    mproc__unmap(p, size);
    mproc__close(fd);
    return r;
  }
  h->magic = ARENA_MAGIC;
  h->version = ARENA_VERSION;
  h->hdr_size = (uint32_t)sizeof *h;
  h->base = (uint64_t)(uintptr_t)p;
  h->size = size;
  h->heap_start = round_up(sizeof *h, 64);
  /* The last block's user data overlaps the 8 bytes at top (see the
   * DESIGN comment), so keep 16 bytes of slack at the end. */
  h->heap_end = size - BLK_HDR;
  h->top = h->heap_start;
  /* Everything else is zero: the memfd's pages start zeroed. */

  g_size = size;
  __atomic_store_n(&g_fd, fd, __ATOMIC_RELAXED);
  /* Release: the header above is complete before anyone sees g_base. */
  __atomic_store_n(&g_base, (char *)p, __ATOMIC_RELEASE);
  MPROC__DEBUG("arena: %zu bytes at %p (memfd %d)", size, p, fd);
  return 0;
}

/* The size asked for by MPROC_ARENA_SIZE, or 0. */
static size_t env_size(void) {
  const char *s = getenv("MPROC_ARENA_SIZE");
  if (s == NULL || *s == '\0') {
    return 0;
  }
  size_t v = parse_size(s);
  if (v < ARENA_MIN_SIZE) {
    MPROC__WARN("arena: ignoring MPROC_ARENA_SIZE=%s (want bytes >= 1M, "
                "with an optional K, M or G suffix)",
                s);
    return 0;
  }
  return v;
}

int mproc__arena_ensure(void) {
  if (MPROC__LIKELY(__atomic_load_n(&g_base, __ATOMIC_ACQUIRE) != NULL)) {
    return 0;
  }
  pthread_mutex_lock(&g_init_lock);
  int r = 0;
  if (g_base == NULL) {
    size_t size = env_size();
    r = size != 0 ? create_locked(size, 0)
                  : create_locked(MPROC_ARENA_DEFAULT_SIZE, 1);
  }
  pthread_mutex_unlock(&g_init_lock);
  return r;
}

int mproc_arena_init(const mproc_arena_opts *opts) {
  size_t size = opts != NULL ? opts->size : 0;
  if (size != 0 && (size < ARENA_MIN_SIZE || size > ARENA_MAX_SIZE)) {
    return MPROC_EINVAL;
  }
  pthread_mutex_lock(&g_init_lock);
  int r;
  if (g_base != NULL) {
    r = MPROC_EALREADY;
  } else if (size != 0) {
    r = create_locked(size, 0);
  } else {
    size = env_size();
    r = size != 0 ? create_locked(size, 0)
                  : create_locked(MPROC_ARENA_DEFAULT_SIZE, 1);
  }
  pthread_mutex_unlock(&g_init_lock);
  return r;
}

int mproc__arena_where(uint64_t *base, uint64_t *size) {
  char *b = __atomic_load_n(&g_base, __ATOMIC_ACQUIRE);
  if (b == NULL) {
    return MPROC_ENOENT;
  }
  *base = (uint64_t)(uintptr_t)b;
  *size = g_size;
  return 0;
}

int mproc__arena_contains(const void *ptr) {
  char *b = __atomic_load_n(&g_base, __ATOMIC_ACQUIRE);
  return b != NULL && (const char *)ptr >= b && (const char *)ptr < b + g_size;
}

/*
 * A spawned process maps its parent's arena: the same memfd (inherited),
 * at the same address, with MAP_FIXED_NOREPLACE so that nothing of this
 * process is ever replaced.  The header must say it is an arena of this
 * version at exactly that address and size; anything else is refused
 * (another program's memfd, a build with another layout).
 */
int mproc__arena_attach(int fd, uint64_t base, uint64_t size) {
  pthread_mutex_lock(&g_init_lock);
  int r = 0;
  if (g_base != NULL) {
    r = MPROC_EALREADY;
  } else if (base == 0 || size < sizeof(arena_hdr) ||
             size > ARENA_MAX_SIZE) {
    r = MPROC_EINVAL;
  } else {
    void *p = NULL;
    r = mproc__map_shared(fd, (size_t)size, (void *)(uintptr_t)base, 1, &p);
    if (r != 0) {
      r = MPROC_EARENAMAP;
    } else {
      const arena_hdr *h = p;
      if (h->magic != ARENA_MAGIC || h->version != ARENA_VERSION ||
          h->hdr_size != sizeof *h || h->base != base || h->size != size) {
        mproc__unmap(p, (size_t)size);
        r = MPROC_EARENAMAP;
      } else {
        (void)mproc__fd_set_cloexec(fd, 1);
        g_size = (size_t)size;
        __atomic_store_n(&g_fd, fd, __ATOMIC_RELAXED);
        __atomic_store_n(&g_base, (char *)p, __ATOMIC_RELEASE);
      }
    }
  }
  pthread_mutex_unlock(&g_init_lock);
  return r;
}

int mproc__arena_fd(void) { return __atomic_load_n(&g_fd, __ATOMIC_RELAXED); }

/* The arena, created if needed.  Returns 0 and *hp, or an error. */
static inline int get_arena(arena_hdr **hp) {
  char *base = __atomic_load_n(&g_base, __ATOMIC_ACQUIRE);
  if (MPROC__UNLIKELY(base == NULL)) {
    int r = mproc__arena_ensure();
    if (r != 0) {
      return r;
    }
    base = g_base;
  }
  *hp = (arena_hdr *)(void *)base;
  return 0;
}

/* ==================== allocation ==================== */

/* Allocate a block of exactly `size` (a valid block size).  Lock held.
 * Returns the block's offset or 0 when nothing fits. */
static uint64_t alloc_locked(arena_hdr *h, char *base, uint64_t size) {
  uint64_t b = 0, bsize = 0;
  int i = find_bin(h, fit_bin_of(size));
  if (i >= 0) {
    /* Every block in list i fits: take the first. */
    b = h->bins[i];
    bsize = hsize(*head_p(base, b));
    bin_unlink(h, base, b, bsize);
  } else {
    /* Nothing guaranteed.  A few blocks of the request's own list may
     * still fit (lists above SMALL_LIMIT span sizes); then the top; then,
     * as a last resort, the whole own list. */
    unsigned own = bin_of(size);
    uint64_t room = h->heap_end - h->top;
    uint64_t limit = size <= room ? SHORT_SCAN : UINT64_MAX;
    uint64_t n = 0;
    for (uint64_t c = h->bins[own]; c != 0 && n < limit;
         c = *next_p(base, c), n++) {
      uint64_t cs = hsize(*head_p(base, c));
      if (cs >= size) {
        b = c;
        bsize = cs;
        bin_unlink(h, base, b, bsize);
        break;
      }
    }
    if (b == 0) {
      if (size > room) {
        return 0;
      }
      /* Carve from the wilderness: write the head beyond top, then one
       * store of top commits it.  The block below top is in use. */
      b = h->top;
      *head_p(base, b) = mkhead(b, size, 1, 1);
      MPROC__FAULT(ARENA_TOP_HEADER);
      commit(&h->top, b + size);
      MPROC__FAULT(ARENA_TOP_COMMITTED);
      goto done;
    }
  }

  uint64_t hd = *head_p(base, b);
  uint64_t pin = hd & H_PINUSE;
  if (bsize - size >= BLK_MIN) {
    /* Split: the remainder's head and footer go in first, inside the
     * block; storing the shrunk size commits both halves at once. */
    uint64_t r = b + size, rsize = bsize - size;
    *head_p(base, r) = mkhead(r, rsize, 0, 1);
    *psize_p(base, b + bsize) = rsize;
    MPROC__FAULT(ARENA_SPLIT_REMAINDER);
    commit(head_p(base, b), mkhead(b, size, 1, pin));
    MPROC__FAULT(ARENA_SPLIT_COMMITTED);
    bin_insert(h, base, r, rsize);
  } else {
    /* Take it whole; then tell the next block (never top: the block
     * below top is never free) that its predecessor is in use. */
    size = bsize;
    commit(head_p(base, b), mkhead(b, size, 1, pin));
    MPROC__FAULT(ARENA_EXACT_COMMITTED);
    uint64_t n = b + size;
    if (n < h->top) {
      *head_p(base, n) |= H_PINUSE;
    }
  }
done:
  h->in_use += size;
  h->blocks++;
  if (h->in_use > h->peak) {
    h->peak = h->in_use;
  }
  return b;
}

void **mproc__arena_root(int index) {
  arena_hdr *h;
  if (index < 0 || index >= MPROC__ARENA_ROOTS || get_arena(&h) != 0) {
    return NULL;
  }
  return &h->roots[index];
}

int mproc_shm_alloc(void **out, size_t size) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  arena_hdr *h;
  int r = get_arena(&h);
  if (r != 0) {
    return r;
  }
  if (size > ARENA_MAX_SIZE) {
    return MPROC_ENOMEM;
  }
  /* 8 bytes of head overhead: the user data may use the next block's
   * prev_size word, which matters only while this block is free. */
  uint64_t bsize = (size + 8 + (BLK_ALIGN - 1)) & ~(uint64_t)(BLK_ALIGN - 1);
  if (bsize < BLK_MIN) {
    bsize = BLK_MIN;
  }
  char *base = (char *)h;
  r = arena_lock(h, base, NULL);
  if (r != 0) {
    return r;
  }
  uint64_t b = alloc_locked(h, base, bsize);
  arena_unlock(h);
  if (b == 0) {
    return MPROC_ENOMEM;
  }
  *out = base + b + BLK_HDR;
  return 0;
}

int mproc_shm_calloc(void **out, size_t n, size_t size) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    return MPROC_EOVERFLOW;
  }
  int r = mproc_shm_alloc(out, total);
  if (r == 0) {
    memset(*out, 0, total);
  }
  return r;
}

/* ==================== free ==================== */

/* The offset of the live block whose payload is p, or 0.  Lock held. */
static uint64_t live_block_locked(const arena_hdr *h, char *base,
                                  const void *p) {
  uintptr_t a = (uintptr_t)p, lo = (uintptr_t)base;
  if (a < lo + h->heap_start + BLK_HDR || a >= lo + h->top ||
      (a & (BLK_ALIGN - 1)) != 0) {
    return 0;
  }
  uint64_t b = (uint64_t)(a - lo) - BLK_HDR;
  uint64_t hd = *head_p(base, b);
  if (!(hd & H_INUSE) || !head_ok(b, hd, h->top)) {
    return 0;
  }
  uint64_t n = b + hsize(hd);
  if (n < h->top) {
    uint64_t nh = *head_p(base, n);
    if (!(nh & H_PINUSE) || !head_ok(n, nh, h->top)) {
      return 0;
    }
  }
  return b;
}

int mproc_shm_free(void *ptr) { return mproc__shm_free_until(ptr, NULL); }

int mproc__shm_free_until(void *ptr, const mproc__deadline *d) {
  if (ptr == NULL) {
    return 0;
  }
  char *base = __atomic_load_n(&g_base, __ATOMIC_ACQUIRE);
  if (base == NULL || (uintptr_t)ptr < (uintptr_t)base ||
      (uintptr_t)ptr - (uintptr_t)base >= g_size) {
    return MPROC_EINVAL;
  }
  arena_hdr *h = (arena_hdr *)(void *)base;
  int r = arena_lock(h, base, d);
  if (r != 0) {
    return r;
  }
  uint64_t b = live_block_locked(h, base, ptr);
  if (b == 0) {
    arena_unlock(h);
    return MPROC_EINVAL;
  }
  uint64_t hd = *head_p(base, b);
  uint64_t size = hsize(hd);
  uint64_t start = b, end = b + size, ps = 0;
  if (!(hd & H_PINUSE)) {
    /* The free block before us, found by its footer.  Only a write to
     * freed memory can make the footer lie; refuse rather than follow
     * it. */
    ps = *psize_p(base, b);
    int sane = ps >= BLK_MIN && (ps & 15u) == 0 && ps <= b - h->heap_start;
    uint64_t ph = sane ? *head_p(base, b - ps) : 0;
    if (!sane || (ph & H_INUSE) || !head_ok(b - ps, ph, b) ||
        hsize(ph) != ps) {
      arena_unlock(h);
      MPROC__WARN("arena: free(%p): the block before it is damaged", ptr);
      return MPROC_ECORRUPT;
    }
    start = b - ps;
  }

  /* Step 1 commits the block as free; the chain may then show free
   * neighbours until step 2 merges them (recover() merges them too). */
  commit(head_p(base, b), mkhead(b, size, 0, hd & H_PINUSE));
  MPROC__FAULT(ARENA_FREE_MARKED);
  if (start != b) {
    bin_unlink(h, base, start, ps);
  }
  if (end < h->top) {
    uint64_t nh = *head_p(base, end);
    if (!(nh & H_INUSE)) {
      bin_unlink(h, base, end, hsize(nh));
      end += hsize(nh);
    }
  }

  if (end == h->top) {
    /* Step 2: the run reaches top; lowering top commits it. */
    commit(&h->top, start);
    MPROC__FAULT(ARENA_FREE_TOP_LOWERED);
  } else {
    /* Step 2: one store gives the run's first block its whole size. */
    commit(head_p(base, start), mkhead(start, end - start, 0, 1));
    MPROC__FAULT(ARENA_FREE_MERGED);
    *psize_p(base, end) = end - start;
    *head_p(base, end) &= ~H_PINUSE;
    MPROC__FAULT(ARENA_FREE_FOOTER);
    bin_insert(h, base, start, end - start);
  }
  h->in_use -= size;
  h->blocks--;
  arena_unlock(h);
  return 0;
}

/* ==================== queries ==================== */

size_t mproc_shm_usable_size(const void *ptr) {
  char *base = __atomic_load_n(&g_base, __ATOMIC_ACQUIRE);
  if (ptr == NULL || base == NULL || (uintptr_t)ptr < (uintptr_t)base ||
      (uintptr_t)ptr - (uintptr_t)base >= g_size) {
    return 0;
  }
  arena_hdr *h = (arena_hdr *)(void *)base;
  if (arena_lock(h, base, NULL) != 0) {
    return 0;
  }
  uint64_t b = live_block_locked(h, base, ptr);
  size_t n = b != 0 ? (size_t)hsize(*head_p(base, b)) - 8 : 0;
  arena_unlock(h);
  return n;
}

int mproc_arena_contains(const void *ptr) {
  char *base = __atomic_load_n(&g_base, __ATOMIC_ACQUIRE);
  return base != NULL && (uintptr_t)ptr >= (uintptr_t)base &&
         (uintptr_t)ptr - (uintptr_t)base < g_size;
}

int mproc_arena_get_stats(mproc_arena_stats *out) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  arena_hdr *h;
  int r = get_arena(&h);
  if (r != 0) {
    return r;
  }
  r = arena_lock(h, (char *)h, NULL);
  if (r != 0) {
    return r;
  }
  out->size = (size_t)(h->heap_end - h->heap_start);
  out->in_use = (size_t)h->in_use;
  out->peak = (size_t)h->peak;
  out->free = out->size - out->in_use;
  out->blocks = (size_t)h->blocks;
  out->recoveries = (size_t)h->recoveries;
  arena_unlock(h);
  return 0;
}

int mproc_arena_get_info(mproc_arena_info *out) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  arena_hdr *h;
  int r = get_arena(&h);
  if (r != 0) {
    return r;
  }
  out->base = h;
  out->size = g_size;
  out->fd = mproc__arena_fd();
  return 0;
}

/* ==================== consistency check ==================== */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

#define CHECK(cond, ...)                                                      \
  do {                                                                        \
    if (!(cond)) {                                                            \
      MPROC__WARN("arena check: " __VA_ARGS__);                               \
      r = MPROC_ECORRUPT;                                                     \
      goto out;                                                               \
    }                                                                         \
  } while (0)

int mproc__arena_check(void) {
  char *base = __atomic_load_n(&g_base, __ATOMIC_ACQUIRE);
  if (base == NULL) {
    return 0;
  }
  arena_hdr *h = (arena_hdr *)(void *)base;
  int r = arena_lock(h, base, NULL);
  if (r != 0) {
    return r;
  }
  uint64_t *frees = NULL;
  size_t nfree = 0, cap = 0;

  CHECK(h->magic == ARENA_MAGIC && h->version == ARENA_VERSION &&
            h->base == (uint64_t)(uintptr_t)base && h->size == g_size,
        "bad header");
  uint64_t top = h->top;
  CHECK(top >= h->heap_start && top <= h->heap_end && (top & 15u) == 0,
        "top %llu out of range", (unsigned long long)top);

  /* The chain. */
  uint64_t in_use = 0, blocks = 0, pinuse = 1, b = h->heap_start;
  while (b < top) {
    uint64_t hd = *head_p(base, b);
    CHECK(head_ok(b, hd, top), "bad head at %llu", (unsigned long long)b);
    uint64_t size = hsize(hd);
    CHECK(!!(hd & H_PINUSE) == !!pinuse, "PINUSE wrong at %llu",
          (unsigned long long)b);
    if (hd & H_INUSE) {
      in_use += size;
      blocks++;
    } else {
      CHECK(pinuse, "adjacent free blocks at %llu", (unsigned long long)b);
      CHECK(b + size < top, "free block below top at %llu",
            (unsigned long long)b);
      CHECK(*psize_p(base, b + size) == size, "bad footer of %llu",
            (unsigned long long)b);
      if (nfree == cap) {
        cap = cap ? cap * 2 : 256;
        uint64_t *nf = realloc(frees, cap * sizeof *nf);
        if (nf == NULL) {
          r = MPROC_ENOMEM;
          goto out;
        }
        frees = nf;
      }
      frees[nfree++] = b; /* ascending: the walk goes up */
    }
    pinuse = hd & H_INUSE;
    b += size;
  }
  CHECK(b == top, "chain ends at %llu, top %llu", (unsigned long long)b,
        (unsigned long long)top);
  CHECK(in_use == h->in_use, "in_use %llu, counted %llu",
        (unsigned long long)h->in_use, (unsigned long long)in_use);
  CHECK(blocks == h->blocks, "blocks %llu, counted %llu",
        (unsigned long long)h->blocks, (unsigned long long)blocks);
  CHECK(h->peak >= h->in_use, "peak below in_use");

  /* The lists: each entry a chain free block in its right list, links
   * both ways, each free block listed once (count, no cycle). */
  size_t listed = 0;
  for (unsigned i = 0; i < NBINS; i++) {
    uint64_t bit = (h->bitmap[i >> 6] >> (i & 63u)) & 1u;
    CHECK(bit == (h->bins[i] != 0), "bitmap bit %u wrong", i);
    uint64_t prev = 0;
    for (uint64_t c = h->bins[i]; c != 0; c = *next_p(base, c)) {
      CHECK(++listed <= nfree, "list %u too long or cyclic", i);
      CHECK(frees != NULL && bsearch(&c, frees, nfree, sizeof *frees,
                                     cmp_u64) != NULL,
            "list %u holds %llu, not a free block", i, (unsigned long long)c);
      CHECK(bin_of(hsize(*head_p(base, c))) == i, "block %llu in list %u",
            (unsigned long long)c, i);
      CHECK(*prev_p(base, c) == prev, "bad prev link at %llu",
            (unsigned long long)c);
      prev = c;
    }
  }
  CHECK(listed == nfree, "%zu free blocks, %zu listed", nfree, listed);
  for (unsigned w = 0; w < BITMAP_WORDS; w++) {
    if (w == BITMAP_WORDS - 1 && NBINS % 64 != 0) {
      CHECK((h->bitmap[w] >> (NBINS % 64)) == 0, "stray bitmap bits");
    }
  }
  r = 0;
out:
  arena_unlock(h);
  free(frees);
  return r;
}
