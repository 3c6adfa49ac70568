/*
 * mproc/arena.h - the shared arena: one heap every process of the program
 * sees at the same address.
 *
 * DESIGN
 * mproc maps one large MAP_SHARED region backed by a memfd, once, before the
 * first child process exists.  Address space is reserved large (32 GiB by
 * default) but memory is committed only when a page is first touched, so an
 * idle arena costs nothing.  Every process started by mproc inherits the
 * mapping at the same address, so a pointer returned by mproc_shm_alloc() is
 * valid, unchanged, in the parent and in every child: put it in a task's
 * argument, store it inside another arena object.
 *
 * The arena's address and its memfd are recorded (mproc_arena_get_info()) so
 * that a process started later by exec (the spawn and forkserver start
 * methods) can map the same memfd at the same address.  To make that likely
 * to succeed the arena is placed at a fixed, out-of-the-way address when the
 * kernel allows it (MAP_FIXED_NOREPLACE), falling back to an address the
 * kernel chooses.
 *
 * The allocator inside is process-safe: any process may allocate, and any
 * process may free any block.  Its metadata is guarded by a robust
 * process-shared lock; a process SIGKILLed while it holds that lock does not
 * wedge the others: the next allocator call repairs the heap (every mutation
 * of the block chain is committed by a single store, so a walk of the chain
 * is always consistent) and goes on.  Blocks the dead process had allocated
 * stay allocated, since other processes may hold pointers to them.
 *
 * NAMES
 * The issue that introduced the arena names the allocator mproc_shm_alloc /
 * mproc_shm_calloc / mproc_shm_free; those names are kept.  Named segments
 * compatible with Python's SharedMemory are a different module (shm.h).
 */
#ifndef MPROC_ARENA_H
#define MPROC_ARENA_H

#include "mproc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default size of the arena's reserved address space: 32 GiB. */
#define MPROC_ARENA_DEFAULT_SIZE ((size_t)32 << 30)

/* Every block returned by the allocator is aligned to this many bytes. */
#define MPROC_ARENA_ALIGN 16

typedef struct mproc_arena_opts {
  size_t size; /* bytes to reserve; 0: MPROC_ARENA_SIZE from the environment,
                  else MPROC_ARENA_DEFAULT_SIZE.  Rounded up to a page. */
} mproc_arena_opts;

/*
 * mproc_arena_init - create and map the arena now, with options.
 *
 * The arena is otherwise created on first use (the first allocation or the
 * first process start), with default options.  Call this first, in the main
 * process, to choose the size.  The environment variable MPROC_ARENA_SIZE
 * (bytes, with an optional K, M or G suffix) sets the default size.
 *
 * Returns 0; MPROC_EALREADY if the arena already exists (it is unchanged);
 * MPROC_EINVAL for a size below 1 MiB; MPROC_ENOMEM or an -errno from
 * memfd_create/ftruncate/mmap when the region cannot be made.
 * Threads: safe.
 */
MPROC_EXTERN int mproc_arena_init(const mproc_arena_opts *opts);

/*
 * mproc_shm_alloc - allocate size bytes in the arena.
 *
 * *out receives a block aligned to MPROC_ARENA_ALIGN, valid at the same
 * address in every process of the program until some process frees it.
 * Contents are unspecified (use mproc_shm_calloc for zeroed memory).  A size
 * of 0 returns a unique, freeable block, as malloc(0) may.
 *
 * Returns 0; MPROC_ENOMEM when the arena has no free range large enough
 * (*out is set to NULL and the arena stays usable); MPROC_EINVAL if out is
 * NULL.  Threads/processes: safe.  Async-signal-safe: no.
 */
MPROC_EXTERN int mproc_shm_alloc(void **out, size_t size);

/*
 * mproc_shm_calloc - allocate n * size zeroed bytes in the arena.
 *
 * Returns as mproc_shm_alloc, and MPROC_EOVERFLOW when n * size overflows.
 */
MPROC_EXTERN int mproc_shm_calloc(void **out, size_t n, size_t size);

/*
 * mproc_shm_free - return a block to the arena.  Any process may free a
 * block any other process allocated.
 *
 * Returns 0 (also for NULL, a no-op); MPROC_EINVAL for a pointer that is not
 * the start of a live arena block (outside the arena, inside a block, or
 * already freed: a double free is detected and refused, not undefined).
 */
MPROC_EXTERN int mproc_shm_free(void *ptr);

/*
 * mproc_shm_usable_size - the usable size of a live block (>= the size
 * asked for), or 0 for a pointer that is not a live arena block.
 */
MPROC_EXTERN size_t mproc_shm_usable_size(const void *ptr);

/* mproc_arena_contains - 1 if ptr points into the arena, else 0. */
MPROC_EXTERN int mproc_arena_contains(const void *ptr);

typedef struct mproc_arena_stats {
  size_t size;        /* bytes of address space reserved for the heap */
  size_t in_use;      /* bytes in live blocks, headers included */
  size_t peak;        /* the largest in_use seen since the arena was made */
  size_t free;        /* bytes not in live blocks (size - in_use) */
  size_t blocks;      /* number of live blocks */
  size_t recoveries;  /* times the heap was repaired after a lock holder
                         died */
} mproc_arena_stats;

/*
 * mproc_arena_get_stats - usage figures, a consistent snapshot of all processes'
 * use.
 *
 * Returns 0; MPROC_EINVAL if out is NULL; an error from creating the arena
 * if it did not exist yet.
 */
MPROC_EXTERN int mproc_arena_get_stats(mproc_arena_stats *out);

typedef struct mproc_arena_info {
  void *base;   /* the arena's address, the same in every process */
  size_t size;  /* bytes mapped at base */
  int fd;       /* the memfd behind it (CLOEXEC); owned by mproc, do not
                   close */
} mproc_arena_info;

/*
 * mproc_arena_get_info - where the arena lives, for exec-based start methods
 * and for programs that pass the memfd to a process mproc did not start.
 *
 * Returns 0, or an error from creating the arena.
 */
MPROC_EXTERN int mproc_arena_get_info(mproc_arena_info *out);

#ifdef __cplusplus
}
#endif
#endif /* MPROC_ARENA_H */
