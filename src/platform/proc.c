/*
 * proc.c - processes: fork, pidfds, reaping, signals, parent-death signal,
 * CPU count.
 *
 * Reaping is always by pid (waitid P_PID), never waitpid(-1): mproc must not
 * steal the status of a child the program started some other way.  A pid
 * cannot be reused until its zombie is reaped, and only mproc reaps its
 * children, so signalling or reaping an unreaped child by pid is safe; the
 * pidfd is still preferred for signals, as it also protects against a
 * program that reaps behind mproc's back.
 */
#include "platform.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/single_threaded.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

pid_t mproc__getpid(void) { return getpid(); }

pid_t mproc__gettid(void) { return (pid_t)syscall(SYS_gettid); }

pid_t mproc__getppid(void) { return getppid(); }

/* Whether this thread is the main thread, cached per thread (two system
 * calls otherwise).  A forked child's only thread is its main thread,
 * whatever it was in the parent: mproc__thread_forget() resets the cache in
 * the child. */
static __thread int main_thread_cache = -1;

int mproc__is_main_thread(void) {
  if (main_thread_cache < 0) {
    main_thread_cache = mproc__gettid() == getpid();
  }
  return main_thread_cache;
}

void mproc__thread_forget(void) {
  if (main_thread_cache != -1) {
    main_thread_cache = -1;
  }
}

int mproc__single_threaded(void) { return __libc_single_threaded != 0; }

pid_t mproc__fork(void) {
  pid_t pid = fork();
  return pid < 0 ? -errno : pid;
}

void mproc__exit_now(int status) { _exit(status); }

int mproc__pidfd_open(pid_t pid) {
  static int disabled = -1;
  if (disabled < 0) {
    const char *e = getenv("MPROC_NO_PIDFD");
    disabled = (e != NULL && e[0] != '\0' && e[0] != '0') ? 1 : 0;
  }
  if (disabled) {
    return -ENOSYS;
  }
  /* pidfd_open sets O_CLOEXEC on the fd it returns, always. */
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) {
    /* EPERM/EINVAL under some seccomp filters mean "not available". */
    return errno == EPERM ? -ENOSYS : -errno;
  }
  return mproc__fd_above_stdio(fd);
}

int mproc__pidfd_supported(void) {
  static int known = -1;
  int k = __atomic_load_n(&known, __ATOMIC_RELAXED);
  if (k < 0) {
    int fd = mproc__pidfd_open(getpid());
    k = fd >= 0;
    if (fd >= 0) {
      close(fd);
    }
    __atomic_store_n(&known, k, __ATOMIC_RELAXED);
  }
  return k;
}

int mproc__pidfd_signal(int pidfd, int sig) {
  long r = syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
  return r < 0 ? -errno : 0;
}

int mproc__kill(pid_t pid, int sig) { return kill(pid, sig) == 0 ? 0 : -errno; }

int mproc__pgrp_new(void) { return setpgid(0, 0) == 0 ? 0 : -errno; }

int mproc__pgrp_kill(pid_t pgid, int sig) {
  if (pgid <= 1) {
    return -EINVAL; /* never kill(0) (our own group) or kill(-1) (all) */
  }
  return kill(-pgid, sig) == 0 ? 0 : -errno;
}

int mproc__reap(pid_t pid, int nohang, int *code) {
  siginfo_t si;
  for (;;) {
    si.si_pid = 0;
    int r = waitid(P_PID, (id_t)pid, &si, WEXITED | (nohang ? WNOHANG : 0));
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    break;
  }
  if (si.si_pid == 0) {
    return 0; /* WNOHANG and still running */
  }
  switch (si.si_code) {
    case CLD_EXITED:
      *code = si.si_status;
      break;
    case CLD_KILLED:
    case CLD_DUMPED:
      *code = -si.si_status;
      break;
    default:
      *code = 255;
      break;
  }
  return 1;
}

void mproc__signals_block_all(sigset_t *old) {
  sigset_t all;
  sigfillset(&all);
  /* Synchronous fault signals stay deliverable: blocking them turns a
   * crash into undefined behaviour instead of a clean death. */
  sigdelset(&all, SIGSEGV);
  sigdelset(&all, SIGBUS);
  sigdelset(&all, SIGILL);
  sigdelset(&all, SIGFPE);
  sigdelset(&all, SIGTRAP);
  sigdelset(&all, SIGABRT);
  pthread_sigmask(SIG_SETMASK, &all, old);
}

void mproc__signals_restore(const sigset_t *old) {
  pthread_sigmask(SIG_SETMASK, old, NULL);
}

#if defined(__GLIBC__)
/* glibc's list of open streams (exported since 2.2.5, no longer declared
 * in its headers; weak, so that a libc without it leaves it NULL).  Only
 * compared with the standard streams here, never followed to another
 * stream, which a concurrent fclose could free. */
extern FILE *_IO_list_all __attribute__((weak));

#endif

int mproc__stdio_pending(FILE *f) {
#if defined(__GLIBC__)
  if (f->_mode <= 0) { /* byte-oriented: the narrow buffer is the one */
    return f->_IO_write_ptr > f->_IO_write_base;
  }
#endif
  return __fpending(f) > 0;
}

void mproc__stdio_flush_all(void) {
#if defined(__GLIBC__)
  if (&_IO_list_all != NULL && _IO_list_all == stderr &&
      stderr->_chain == stdout && stdout->_chain == stdin &&
      stdin->_chain == NULL) {
    if (mproc__stdio_pending(stdout)) {
      (void)fflush(stdout);
    }
    if (mproc__stdio_pending(stderr)) {
      (void)fflush(stderr);
    }
    return;
  }
#endif
  (void)fflush(NULL);
}

/* A system call with up to four arguments, without libc where we can.
 * Returns the kernel's result: the value, or -errno. */
static long child_syscall4(long nr, long a, long b, long c, long d) {
#if defined(__x86_64__)
  long ret;
  register long r10 __asm__("r10") = d;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
                   : "rcx", "r11", "memory");
  return ret;
#elif defined(__aarch64__)
  register long x8 __asm__("x8") = nr;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  __asm__ volatile("svc 0"
                   : "+r"(x0)
                   : "r"(x8), "r"(x1), "r"(x2), "r"(x3)
                   : "memory");
  return x0;
#else
  long r = syscall(nr, a, b, c, d);
  return r < 0 ? -errno : r;
#endif
}

void mproc__child_close(int fd) {
  if (fd >= 0) {
    (void)child_syscall4(SYS_close, fd, 0, 0, 0);
  }
}

int mproc__child_dup2(int from, int to) {
  if (from == to) {
    return to;
  }
  long r;
  do {
    r = child_syscall4(SYS_dup3, from, to, 0, 0);
  } while (r == -EINTR);
  return (int)r;
}

void mproc__child_signals_restore(const sigset_t *old) {
  /* The kernel's sigset is _NSIG bits; glibc's sigset_t is larger. */
  (void)child_syscall4(SYS_rt_sigprocmask, SIG_SETMASK, (long)(uintptr_t)old,
                       0, _NSIG / 8);
}

int mproc__set_parent_death_signal(int sig, pid_t expected_ppid) {
  if (prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0) {
    return -errno;
  }
  /* If the parent died before the prctl, no signal will ever come; the
   * child has then been reparented and getppid() tells (the caveat in
   * PR_SET_PDEATHSIG(2const)). */
  if (getppid() != expected_ppid) {
    return -ESRCH;
  }
  return 0;
}

int mproc__cpu_count(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) {
      return n;
    }
  }
  return mproc__cpus_online();
}

int mproc__cpus_online(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

/* ---- crash notes ---- */

static _Atomic int *crash_sig;
static _Atomic uintptr_t *crash_addr;
/* The alternate stack: BSS, so its pages cost nothing until a crash
 * touches them. */
static char crash_stack[64 * 1024];

static void crash_note(int sig, siginfo_t *info, void *uctx) {
  (void)uctx;
  /* Only a fault the kernel raised (si_code > 0) has an address; a
   * signal sent with kill() or raise() has a sender there instead. */
  if (info->si_code > 0 && crash_addr != NULL && crash_sig != NULL) {
    atomic_store(crash_addr, (uintptr_t)info->si_addr);
    atomic_store(crash_sig, sig);
  }
  /* SA_RESETHAND restored the default action; the signal is blocked in
   * here, so this one is delivered as the handler returns (and a fault
   * that returns would fault again anyway). */
  raise(sig);
}

int mproc__crash_note_install(_Atomic int *sig, _Atomic uintptr_t *addr) {
  crash_sig = sig;
  crash_addr = addr;
  stack_t ss;
  ss.ss_sp = crash_stack;
  ss.ss_size = sizeof crash_stack;
  ss.ss_flags = 0;
  if (sigaltstack(&ss, NULL) != 0) {
    return -errno;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = crash_note;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    if (sigaction(sigs[i], &sa, NULL) != 0) {
      return -errno;
    }
  }
  return 0;
}
