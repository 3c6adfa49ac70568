/* TEMPORARY stub, replaced by the real process module. */
#include "internal.h"
const char *mproc__current_name(void) { return "MainProcess"; }
int mproc__internal_fds(int *out, int max) { (void)out; (void)max; return 0; }
