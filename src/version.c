/* version.c - the run-time library's version (see mproc/version.h). */
#include "internal.h"

unsigned int mproc_version(void) { return MPROC_VERSION_HEX; }

const char *mproc_version_string(void) { return MPROC_VERSION_STRING; }
