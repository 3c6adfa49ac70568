/*
 * mproc/version.h - the library's version, at compile time and at run time.
 *
 * The version follows semantic versioning.  Until 1.0 the ABI may change
 * between minor versions; the shared library's SONAME carries the major and
 * minor number (libmproc.so.0.1) for that reason.
 */
#ifndef MPROC_VERSION_H
#define MPROC_VERSION_H

#include "mproc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MPROC_VERSION_MAJOR 0
#define MPROC_VERSION_MINOR 1
#define MPROC_VERSION_PATCH 0

#define MPROC__STR2(x) #x
#define MPROC__STR(x) MPROC__STR2(x)
#define MPROC_VERSION_STRING                                                  \
  MPROC__STR(MPROC_VERSION_MAJOR)                                             \
  "." MPROC__STR(MPROC_VERSION_MINOR) "." MPROC__STR(MPROC_VERSION_PATCH)

/* (major << 16) | (minor << 8) | patch, comparable with <, >. */
#define MPROC_VERSION_HEX                                                     \
  ((MPROC_VERSION_MAJOR << 16) | (MPROC_VERSION_MINOR << 8) |                 \
   MPROC_VERSION_PATCH)

/*
 * mproc_version - the run-time library's version as MPROC_VERSION_HEX.
 *
 * Compare it with the compile-time MPROC_VERSION_HEX to detect a program
 * running against a different library than it was built with.
 */
MPROC_EXTERN unsigned int mproc_version(void);

/* mproc_version_string - "MAJOR.MINOR.PATCH" of the run-time library. */
MPROC_EXTERN const char *mproc_version_string(void);

#ifdef __cplusplus
}
#endif
#endif /* MPROC_VERSION_H */
