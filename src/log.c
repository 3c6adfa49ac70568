/*
 * log.c - the optional diagnostic log.
 *
 * Off by default: mproc never writes to stderr unless MPROC_LOG or
 * mproc_log_set_level() asked for it.  The level is a plain int read
 * without a lock on every log site (MPROC__LOG), so a disabled log costs
 * one load and a compare; a torn read is impossible for an aligned int.
 *
 * The format is Python's log_to_stderr(): "[LEVEL/ProcessName] message".
 * Each line is formatted into a stack buffer and written with one
 * write(2), so concurrent writers (threads or processes) never interleave
 * inside a line.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mproc__log_level = -1;

static int parse_level(const char *s) {
  if (s == NULL) {
    return MPROC_LOG_OFF;
  }
  if (strcmp(s, "debug") == 0 || strcmp(s, "DEBUG") == 0) {
    return MPROC_LOG_DEBUG;
  }
  if (strcmp(s, "info") == 0 || strcmp(s, "INFO") == 0) {
    return MPROC_LOG_INFO;
  }
  if (strcmp(s, "warn") == 0 || strcmp(s, "warning") == 0 ||
      strcmp(s, "WARN") == 0 || strcmp(s, "WARNING") == 0) {
    return MPROC_LOG_WARN;
  }
  return MPROC_LOG_OFF;
}

void mproc__log_init(void) {
  if (__atomic_load_n(&mproc__log_level, __ATOMIC_RELAXED) < 0) {
    int lvl = parse_level(getenv("MPROC_LOG"));
    int expect = -1;
    __atomic_compare_exchange_n(&mproc__log_level, &expect, lvl, 0,
                                __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  }
}

int mproc_log_set_level(int level) {
  if (level < MPROC_LOG_OFF || level > MPROC_LOG_DEBUG) {
    return MPROC_EINVAL;
  }
  __atomic_store_n(&mproc__log_level, level, __ATOMIC_RELAXED);
  return 0;
}

int mproc_log_get_level(void) {
  mproc__log_init();
  return __atomic_load_n(&mproc__log_level, __ATOMIC_RELAXED);
}

void mproc_log(int level, const char *fmt, ...) {
  mproc__log_init();
  int cur = __atomic_load_n(&mproc__log_level, __ATOMIC_RELAXED);
  if (level <= MPROC_LOG_OFF || level > cur || fmt == NULL) {
    return;
  }
  static const char *const names[] = {"", "WARNING", "INFO", "DEBUG"};
  char line[1024];
  int n = snprintf(line, sizeof line, "[%s/%s] ", names[level],
                   mproc__current_name());
  if (n < 0) {
    return;
  }
  if ((size_t)n < sizeof line - 1) {
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (m > 0) {
      n += m;
    }
  }
  if ((size_t)n > sizeof line - 2) {
    n = (int)sizeof line - 2;
  }
  line[n++] = '\n';
  (void)mproc__write_full(2, line, (size_t)n);
}
