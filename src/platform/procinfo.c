/*
 * procinfo.c - facts about another process from /proc/PID/stat: its start
 * time (to tell a live process from a recycled pid), its state and its
 * thread count (to tell a zombie from a live process).
 *
 * Used by the sync module to decide whether the process behind an owner
 * token is still alive.
 */
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/*
 * Read /proc/PID/stat.  Fields after the command name (which may hold
 * spaces and parentheses, so parsing starts after the last ')'):
 * 3 state, ..., 20 num_threads, ..., 22 starttime (clock ticks after boot).
 * Returns 0, -ESRCH when there is no such process, or another -errno.
 */
int mproc__proc_stat(pid_t pid, uint64_t *start_ticks, char *state,
                     long *nthreads) {
  char path[48];
  char buf[1024];
  if (pid <= 0) {
    return -ESRCH;
  }
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = mproc__open(path, O_RDONLY, 0);
  if (fd < 0) {
    return fd == -ENOENT ? -ESRCH : fd;
  }
  ssize_t n = mproc__read_full(fd, buf, sizeof buf - 1);
  mproc__close(fd);
  if (n < 0) {
    /* A process that ends while we read: ESRCH from read. */
    return (int)n == -ESRCH ? -ESRCH : (int)n;
  }
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  if (p == NULL || p[1] != ' ') {
    return -EPROTO;
  }
  p += 2;
  /* p is at field 3 (state). */
  char st = *p;
  long threads = 0;
  unsigned long long start = 0;
  int field = 3;
  while (*p != '\0' && field < 22) {
    if (*p == ' ') {
      field++;
      if (field == 20) {
        threads = strtol(p + 1, NULL, 10);
      } else if (field == 22) {
        start = strtoull(p + 1, NULL, 10);
      }
    }
    p++;
  }
  if (field != 22) {
    return -EPROTO;
  }
  if (start_ticks != NULL) {
    *start_ticks = (uint64_t)start;
  }
  if (state != NULL) {
    *state = st;
  }
  if (nthreads != NULL) {
    *nthreads = threads;
  }
  return 0;
}

/*
 * 1 if pid is a live process that started at start_ticks (0: unknown, not
 * compared), 0 if it is gone
 * (no such pid, a zombie or dead task, or a different process that reuses
 * the pid).  Errors other than "no such process" count as alive: a caller
 * that acts on "dead" takes something away from the owner, so only proof
 * of death may say 0.
 *
 * A zombie group leader whose other threads still run (the main thread
 * called pthread_exit) reports state Z with num_threads > 1: alive.
 */
int mproc__proc_alive(pid_t pid, uint64_t start_ticks) {
  if (pid <= 0) {
    return 0;
  }
  int r = mproc__kill(pid, 0);
  if (r == -ESRCH) {
    return 0;
  }
  uint64_t start = 0;
  char st = 0;
  long threads = 0;
  r = mproc__proc_stat(pid, &start, &st, &threads);
  if (r == -ESRCH) {
    /* Gone since the kill, or no /proc mounted: ask kill again. */
    return mproc__kill(pid, 0) == -ESRCH ? 0 : 1;
  }
  if (r != 0) {
    return 1;
  }
  if (start_ticks != 0 && start != start_ticks) {
    return 0;
  }
  if ((st == 'Z' || st == 'X' || st == 'x') && threads <= 1) {
    return 0;
  }
  return 1;
}

int mproc__thread_count(void) {
  /* procfs counts a task directory's links as 2 + its threads. */
  struct stat st;
  if (stat("/proc/self/task", &st) != 0 || st.st_nlink < 3) {
    return -1;
  }
  return (int)st.st_nlink - 2;
}
