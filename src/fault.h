/*
 * src/fault.h - named fault points: every place where a process's death
 * could leave shared state half-changed.
 *
 * DESIGN
 * SQLite injects a failure at every allocation and every I/O call in
 * turn; mproc does the same with SIGKILL.  Each step of a mutation of
 * shared memory that a death could interrupt (a step of the arena
 * allocator, of the pool's task and result hand-offs, of the queue's put
 * and get, of a lock or owner-table update) carries MPROC__FAULT(ID).
 * When a test set mproc__fault_hook, the macro calls it there with the
 * point's number; the hook typically tells its parent "I am at point N"
 * and sleeps until it is SIGKILLed, or raises SIGKILL itself.  Unset (as
 * always outside tests) the macro costs one load and a compare.
 *
 * Every point is a line of MPROC__FAULT_POINTS below: its id, its name
 * (the module, a dot, the step) and what is half-done when a death hits
 * it.  The sweep tests (tests/fault/test-fault-sweep*.c) walk this table,
 * kill a process at each point in turn and check the structure's
 * invariants afterwards; docs/testing.md lists the points.  A point added
 * here without a sweep scenario fails the sweep's coverage case.
 *
 * The hook is a plain global: a forked child inherits it, so a test that
 * sets it before starting a pool arms its workers too (the hook can check
 * getpid() to pick one process).
 */
#ifndef MPROC_FAULT_H
#define MPROC_FAULT_H

/* XX(id, name, what is half-done there) */
#define MPROC__FAULT_POINTS(XX)                                               \
  /* arena.c: inside the allocator's critical section (lock held) */          \
  XX(ARENA_UNLINK_MID, "arena.unlink_mid",                                    \
     "free-list unlink: one link stored of two")                              \
  XX(ARENA_SPLIT_REMAINDER, "arena.split_remainder",                          \
     "split: remainder head written, not committed")                          \
  XX(ARENA_SPLIT_COMMITTED, "arena.split_committed",                          \
     "split committed, remainder not in a list")                              \
  XX(ARENA_EXACT_COMMITTED, "arena.exact_committed",                          \
     "whole block taken, next block's PINUSE not set")                        \
  XX(ARENA_TOP_HEADER, "arena.top_header",                                    \
     "carve: head written beyond top, top unmoved")                           \
  XX(ARENA_TOP_COMMITTED, "arena.top_committed",                              \
     "carve committed, counters not updated")                                 \
  XX(ARENA_FREE_MARKED, "arena.free_marked",                                  \
     "free: block marked free, neighbours linked")                            \
  XX(ARENA_FREE_MERGED, "arena.free_merged",                                  \
     "free: merged size stored, footer and PINUSE not yet")                   \
  XX(ARENA_FREE_FOOTER, "arena.free_footer",                                  \
     "free: footer and PINUSE written, not in a list")                        \
  XX(ARENA_FREE_TOP_LOWERED, "arena.free_top_lowered",                        \
     "free: tail given back to top, counters stale")                          \
  XX(ARENA_INSERT_MID, "arena.insert_mid",                                    \
     "free-list insert: one link stored of three")

enum {
  MPROC__FP_NONE = 0,
#define MPROC__FP_ENUM_(id, name, what) MPROC__FP_##id,
  MPROC__FAULT_POINTS(MPROC__FP_ENUM_)
#undef MPROC__FP_ENUM_
  MPROC__FP_END /* one past the last point; points are 1 .. END - 1 */
};

/* The hook and the context it is called with (tests only). */
extern void (*mproc__fault_hook)(int point, void *ctx);
extern void *mproc__fault_ctx;

#define MPROC__FAULT(id)                                                      \
  do {                                                                        \
    if (__builtin_expect(mproc__fault_hook != 0, 0)) {                        \
      mproc__fault_hook(MPROC__FP_##id, mproc__fault_ctx);                    \
    }                                                                         \
  } while (0)

/* A point's name ("arena.unlink_mid") and description, or NULL when point
 * is out of range. */
const char *mproc__fault_name(int point);
const char *mproc__fault_what(int point);
/* The point of that name, or 0. */
int mproc__fault_lookup(const char *name);

#endif /* MPROC_FAULT_H */
