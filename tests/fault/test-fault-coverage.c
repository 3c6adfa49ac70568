/*
 * tests/fault/test-fault-coverage.c - every named fault point of
 * src/fault.h is swept by some test (see sweep.h); and the hook the sweeps
 * stop a child with.
 */
#include "task.h"

#include "internal.h"
#include "sweep.h"

#define SWEEP_MAX_ENTRIES 256

int sweep_target;
int sweep_report;

void sweep_stop_at_point(int point, void *ctx) {
  (void)ctx;
  if (point == sweep_target) {
    (void)!write(sweep_report, &point, sizeof point);
    for (;;) {
      pause(); /* in the middle of the mutation, until SIGKILL */
    }
  }
}

static struct {
  const char *name;
  const char *file;
} g_covered[SWEEP_MAX_ENTRIES];
static int g_ncovered;

void sweep_register_covered(const char *const *names, int n,
                            const char *file) {
  for (int i = 0; i < n && g_ncovered < SWEEP_MAX_ENTRIES; i++) {
    g_covered[g_ncovered].name = names[i];
    g_covered[g_ncovered].file = file;
    g_ncovered++;
  }
}

/* 1 if entry covers the point named name: equal, or a prefix ending in
 * '.'. */
static int covers(const char *entry, const char *name) {
  size_t n = strlen(entry);
  if (n > 0 && entry[n - 1] == '.') {
    return strncmp(entry, name, n) == 0;
  }
  return strcmp(entry, name) == 0;
}

TEST_IMPL(fault_sweep_covers_every_point) {
  int missing = 0;
  for (int point = 1; point < MPROC__FP_END; point++) {
    const char *name = mproc__fault_name(point);
    ASSERT_NOT_NULL(name);
    ASSERT_NOT_NULL(mproc__fault_what(point));
    ASSERT_EQ(mproc__fault_lookup(name), point);
    int found = 0;
    for (int i = 0; i < g_ncovered && !found; i++) {
      found = covers(g_covered[i].name, name);
    }
    if (!found) {
      fprintf(stderr, "# fault point %s (%s) has no sweep test\n", name,
              mproc__fault_what(point));
      missing++;
    }
  }
  /* And every entry names a real point, or a prefix of one. */
  for (int i = 0; i < g_ncovered; i++) {
    int real = 0;
    for (int point = 1; point < MPROC__FP_END && !real; point++) {
      real = covers(g_covered[i].name, mproc__fault_name(point));
    }
    if (!real) {
      fprintf(stderr, "# %s: SWEEP_COVERS names no point: %s\n",
              g_covered[i].file, g_covered[i].name);
      missing++;
    }
  }
  ASSERT_EQ(missing, 0);
  ASSERT_EQ(mproc__fault_name(0), NULL);
  ASSERT_EQ(mproc__fault_name(MPROC__FP_END), NULL);
  ASSERT_EQ(mproc__fault_lookup("no.such_point"), 0);
  return 0;
}
