/*
 * fault.c - the table of named fault points (src/fault.h): their names
 * and descriptions, and the hook tests set.  Nothing here runs unless a
 * test sets the hook.
 */
#include "fault.h"

#include <string.h>

void (*mproc__fault_hook)(int point, void *ctx);
void *mproc__fault_ctx;

static const char *const g_names[] = {
    "none",
#define NAME_(id, name, what) name,
    MPROC__FAULT_POINTS(NAME_)
#undef NAME_
};

static const char *const g_whats[] = {
    "no point",
#define WHAT_(id, name, what) what,
    MPROC__FAULT_POINTS(WHAT_)
#undef WHAT_
};

_Static_assert(sizeof g_names / sizeof g_names[0] == MPROC__FP_END,
               "one name a point");

const char *mproc__fault_name(int point) {
  return point > 0 && point < MPROC__FP_END ? g_names[point] : NULL;
}

const char *mproc__fault_what(int point) {
  return point > 0 && point < MPROC__FP_END ? g_whats[point] : NULL;
}

int mproc__fault_lookup(const char *name) {
  if (name == NULL) {
    return 0;
  }
  for (int i = 1; i < MPROC__FP_END; i++) {
    if (strcmp(g_names[i], name) == 0) {
      return i;
    }
  }
  return 0;
}
