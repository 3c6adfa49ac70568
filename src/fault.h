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
     "free-list insert: one link stored of three")                            \
  /* queue.c: a put and a get, each under its lock */                         \
  XX(QUEUE_PUT_MARKED, "queue.put_marked",                                    \
     "put: marker written (record's end), nothing copied")                    \
  XX(QUEUE_PUT_COPIED, "queue.put_copied",                                    \
     "put: record copied (joinable count raised), head not moved")            \
  XX(QUEUE_PUT_PUBLISHED, "queue.put_published",                              \
     "put: head moved (published), puts not counted")                         \
  XX(QUEUE_PUT_COUNTED, "queue.put_counted",                                  \
     "put: counted, marker not cleared, lock held")                           \
  XX(QUEUE_PUT_SLEEPING, "queue.put_sleeping",                                \
     "put: put_waiting raised, put lock released, about to sleep")            \
  XX(QUEUE_GET_COPIED, "queue.get_copied",                                    \
     "get: payload copied out, no marker, tail not moved")                    \
  XX(QUEUE_GET_MARKED, "queue.get_marked",                                    \
     "get: marker written, gets and tail not moved")                          \
  XX(QUEUE_GET_COUNTED, "queue.get_counted",                                  \
     "get: gets counted, tail not moved")                                     \
  XX(QUEUE_GET_MOVED, "queue.get_moved",                                      \
     "get: tail moved, marker not cleared, lock held")                        \
  XX(QUEUE_GET_SLEEPING, "queue.get_sleeping",                                \
     "get: get lock held, get_waiting raised, about to sleep")                \
  /* sync/owner.c: the process token table */                                 \
  XX(OWNER_TABLE_ALLOCATED, "owner.table_allocated",                          \
     "token table allocated, not published in the arena root")                \
  XX(OWNER_SLOT_CLAIMED, "owner.slot_claimed",                                \
     "registration: slot claimed by CAS, start time not stored")              \
  /* sync/: locks, semaphores, conditions, events, barriers */                \
  XX(SYNC_LOCK_SLEEPING, "sync.lock_sleeping",                                \
     "acquire: waiters bit set, about to sleep on the word")                  \
  XX(SYNC_LOCK_TAKEN_OVER, "sync.lock_taken_over",                            \
     "takeover: dead holder's token replaced, not marked inconsistent")       \
  XX(SYNC_RLOCK_OWNER_CLEARED, "sync.rlock_owner_cleared",                    \
     "RLock release: owner thread cleared, word still held")                  \
  XX(SYNC_SEM_TAKEN, "sync.sem_taken",                                        \
     "acquire: unit taken from the value, not recorded as held")              \
  XX(SYNC_SEM_RECORDED, "sync.sem_recorded",                                  \
     "acquire: unit recorded as held (or credit taken), call not returned")   \
  XX(SYNC_SEM_RETIRED, "sync.sem_retired",                                    \
     "release: held unit retired (or credit added), value not raised")        \
  XX(SYNC_SEM_SLEEPING, "sync.sem_sleeping",                                  \
     "acquire: counted in waiters, about to sleep")                           \
  XX(SYNC_SEM_RECLAIMED, "sync.sem_reclaimed",                                \
     "death return: dead holder's entry freed, units not added back")         \
  XX(SYNC_COND_QUEUED, "sync.cond_queued",                                    \
     "wait: record queued, lock still held")                                  \
  XX(SYNC_COND_SLEEPING, "sync.cond_sleeping",                                \
     "wait: lock released, about to sleep on the record")                     \
  XX(SYNC_COND_WOKEN, "sync.cond_woken",                                      \
     "wait: signalled, lock not taken back")                                  \
  XX(SYNC_COND_SIGNALLED, "sync.cond_signalled",                              \
     "notify: record unlinked and marked, waiter not woken")                  \
  XX(SYNC_EVENT_SLEEPING, "sync.event_sleeping",                              \
     "wait: waiters bit set, about to sleep")                                 \
  XX(SYNC_BARRIER_ENTERED, "sync.barrier_entered",                            \
     "wait: slot and count written, internal lock held")                      \
  XX(SYNC_BARRIER_SLEEPING, "sync.barrier_sleeping",                          \
     "wait: internal lock released, about to sleep")                          \
  /* src/pool/ (worker.c, job.c, lock.c): a worker's task and result          \
     hand-offs */                                                             \
  XX(POOL_TASK_NAMED, "pool.task_named",                                      \
     "take: slot names the queue's head, head not moved (lock held)")         \
  XX(POOL_TASK_TAKEN, "pool.task_taken",                                      \
     "take done: the task is named only in the slot, not started")            \
  XX(POOL_RESULT_CLEARED, "pool.result_cleared",                              \
     "replacing a result: old block unlinked from the task, not freed")       \
  XX(POOL_RESULT_ALLOCATED, "pool.result_allocated",                          \
     "new result block filled, not yet linked from the task")                 \
  XX(POOL_RESULT_PUBLISHED, "pool.result_published",                          \
     "result linked from the task, task still running")                       \
  XX(POOL_FAIL_RESULT_CLEARED, "pool.fail_result_cleared",                    \
     "failed task: result unlinked from the task, not freed")                 \
  XX(POOL_TASK_LINKED_DONE, "pool.task_linked_done",                          \
     "finish: task on the done list, slot still names it (lock held)")        \
  XX(POOL_SLOT_CLEARED, "pool.slot_cleared",                                  \
     "finish: slot cleared, lock still held")                                 \
  XX(POOL_RESULT_UNWOKEN, "pool.result_unwoken",                              \
     "finish: task done and unlocked, nobody woken for it yet")               \
  XX(POOL_JOB_JOINED, "pool.job_joined",                                      \
     "map: slot names the job, no claim yet (lock held)")                     \
  XX(POOL_CLAIM_ADDED, "pool.claim_added",                                    \
     "map: units claimed by the atomic add, claim not recorded")              \
  XX(POOL_CLAIM_RECORDED, "pool.claim_recorded",                              \
     "map: claim recorded in the slot, no item run")                          \
  XX(POOL_CLAIM_ITEMS_DONE, "pool.claim_items_done",                          \
     "map: every item of the claim written, units not marked done")           \
  XX(POOL_CLAIM_MARKED, "pool.claim_marked",                                  \
     "map: units marked done, claim still recorded in the slot")              \
  XX(POOL_JOB_LEAVING, "pool.job_leaving",                                    \
     "map: leaving an exhausted job, slot names it (lock held)")              \
  XX(POOL_JOB_FINISHED, "pool.job_finished",                                  \
     "map: job linked done by its last claimant, slot names it (lock held)")  \
  XX(POOL_LOCK_HELD, "pool.lock_held",                                        \
     "a worker holds the pool lock, lists consistent")

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
