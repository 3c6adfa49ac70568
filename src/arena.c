/* TEMPORARY stub, replaced by the real allocator. */
#include "internal.h"
#include <stdlib.h>
void (*mproc__arena_fault_hook)(int point);
int mproc__arena_ensure(void) { return 0; }
int mproc__arena_fd(void) { return -1; }
int mproc__arena_check(void) { return 0; }
