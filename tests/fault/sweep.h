/*
 * tests/fault/sweep.h - which fault points the sweep tests cover.
 *
 * Every point of src/fault.h must be killed at by some sweep test: a test
 * that kills a process at a point, then checks the invariants of the
 * structure the point belongs to.  A sweep file declares the points it
 * covers with SWEEP_COVERS("arena.", "pool.task_taken", ...): each string
 * is a point's name, or a prefix ending in '.' that covers every point of
 * that module.  The case fault_sweep_covers_every_point
 * (test-fault-coverage.c) fails for any point nobody covers, so a point
 * added without its scenario cannot land.
 */
#ifndef MPROC_TEST_SWEEP_H
#define MPROC_TEST_SWEEP_H

void sweep_register_covered(const char *const *names, int n,
                            const char *file);

#define SWEEP_COVERS_CAT2_(a, b) a##b
#define SWEEP_COVERS_CAT_(a, b) SWEEP_COVERS_CAT2_(a, b)
#define SWEEP_COVERS(...)                                                     \
  __attribute__((constructor)) static void SWEEP_COVERS_CAT_(                 \
      sweep_covers_, __LINE__)(void) {                                        \
    static const char *const names_[] = {__VA_ARGS__};                        \
    sweep_register_covered(names_, (int)(sizeof names_ / sizeof names_[0]),   \
                           __FILE__);                                         \
  }

/*
 * Stopping a child at a point: in the child, set sweep_target to the
 * point, sweep_report to a pipe's write end, and mproc__fault_hook to
 * sweep_stop_at_point.  On reaching the point the child writes its number
 * to sweep_report (the parent reads it with test_read_int) and pauses
 * there, in the middle of the mutation, until the parent SIGKILLs it.
 */
extern int sweep_target;
extern int sweep_report;
void sweep_stop_at_point(int point, void *ctx);

#endif /* MPROC_TEST_SWEEP_H */
