/*
 * mproc/log.h - the library's diagnostic log, off unless asked for.
 *
 * mproc never prints on its own.  Logging is turned on either by the
 * environment variable MPROC_LOG (read once, at the first log call) or by
 * mproc_log_set_level(), which wins over the environment.  Accepted values
 * of MPROC_LOG: "debug", "info", "warn" (or "warning"), "off"; anything
 * else leaves logging off.
 *
 * Lines go to stderr (fd 2) in Python's log_to_stderr() format, naming the
 * process that wrote them:
 *
 *     [INFO/Process-1] child started, pid 4242
 *
 * Each line is written with one write(2), so lines from several processes
 * sharing stderr do not interleave inside a line (lines up to 1 KiB).
 */
#ifndef MPROC_LOG_H
#define MPROC_LOG_H

#include "mproc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mproc_log_level {
  MPROC_LOG_OFF = 0,   /* nothing is written (the default) */
  MPROC_LOG_WARN = 1,  /* things that went wrong but were handled */
  MPROC_LOG_INFO = 2,  /* process starts, exits, terminations */
  MPROC_LOG_DEBUG = 3  /* everything, including internal decisions */
} mproc_log_level;

/*
 * mproc_log_set_level - set the log level for this process and the
 * children it starts afterwards (they inherit it).
 *
 * Returns 0, or MPROC_EINVAL for a level outside mproc_log_level.
 * Threads: safe.
 */
MPROC_EXTERN int mproc_log_set_level(int level);

/* mproc_log_get_level - the current level (after reading MPROC_LOG). */
MPROC_EXTERN int mproc_log_get_level(void);

/*
 * mproc_log - write one line at the given level, if that level is on.
 *
 * For programs that want their own lines in the same format.  printf-style.
 * Threads: safe.  Async-signal-safe: no.
 */
MPROC_EXTERN void mproc_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif /* MPROC_LOG_H */
