/*
 * context.c - start methods and contexts: which way a new process comes to
 * exist (fork, spawn, forkserver), Python's set_start_method,
 * get_start_method, get_context, set_executable and
 * set_forkserver_preload.
 *
 * DESIGN
 * One small piece of process-wide configuration under one mutex: the
 * default method (0 while unset), the executable spawn runs, and the
 * forkserver's preload list.  Contexts are static objects, one per method
 * plus the default context, which names no method and resolves the
 * default at each use, as Python's DefaultContext does.  Resolving the
 * default fixes it (Python's _actual_context), so a later
 * mproc_set_start_method without force fails with MPROC_EALREADY, as
 * Python's raises "context has already been set".
 *
 * The MPROC_START_METHOD environment variable is read when the default is
 * resolved and nothing was set; an unknown value makes the resolution
 * fail (MPROC_EINVAL) instead of silently meaning fork.  A child started
 * by mproc (any method) inherits its parent's resolved default: a forked
 * child through its copy of memory, a spawned one through its bootstrap
 * record (mproc__start_method_inherit).
 */
#include "../internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct mproc_context {
  int method; /* MPROC__START_*; 0 for the default context */
};

static struct mproc_context ctx_default = {0};
static struct mproc_context ctx_fork = {MPROC__START_FORK};
static struct mproc_context ctx_spawn = {MPROC__START_SPAWN};
static struct mproc_context ctx_forkserver = {MPROC__START_FORKSERVER};

static const char *const names[] = {NULL, "fork", "spawn", "forkserver"};

static struct {
  pthread_mutex_t mu;
  int method;              /* the fixed default, 0 while unset */
  char *exe;               /* mproc_set_executable's path, or NULL */
  char **preload;          /* the forkserver's preload list */
  size_t npreload;
} cfg = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* A forked child must not inherit the mutex locked by another thread. */
static void atfork_child(void) { mproc__mutex_reset_in_child(&cfg.mu); }
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void install_atfork(void) { pthread_atfork(NULL, NULL, atfork_child); }

static void lock_cfg(void) {
  pthread_once(&atfork_once, install_atfork);
  pthread_mutex_lock(&cfg.mu);
}

int mproc__start_method_parse(const char *name) {
  if (name == NULL) {
    return MPROC_EINVAL;
  }
  for (int m = MPROC__START_FORK; m <= MPROC__START_FORKSERVER; m++) {
    if (strcmp(name, names[m]) == 0) {
      return m;
    }
  }
  return MPROC_EINVAL;
}

const char *mproc__start_method_name(int method) {
  return method >= MPROC__START_FORK && method <= MPROC__START_FORKSERVER
             ? names[method]
             : NULL;
}

/* The default, fixed now if unset (cfg.mu held). */
static int resolve_default_locked(void) {
  if (cfg.method == 0) {
    const char *env = getenv("MPROC_START_METHOD");
    if (env == NULL || *env == '\0') {
      __atomic_store_n(&cfg.method, MPROC__START_FORK, __ATOMIC_RELEASE);
    } else {
      int m = mproc__start_method_parse(env);
      if (m < 0) {
        MPROC__WARN("MPROC_START_METHOD=%s is not a start method (fork, "
                    "spawn or forkserver)",
                    env);
        return MPROC_EINVAL;
      }
      __atomic_store_n(&cfg.method, m, __ATOMIC_RELEASE);
    }
  }
  return cfg.method;
}

int mproc__start_method(const mproc_context *c) {
  if (c != NULL && c->method != 0) {
    return c->method;
  }
  /* Once fixed, the default is read without the lock: every fork start
   * asks, and a lock taken after the previous fork writes its page, a
   * copy-on-write fault in the parent. */
  int m = __atomic_load_n(&cfg.method, __ATOMIC_ACQUIRE);
  if (m != 0) {
    return m;
  }
  lock_cfg();
  m = resolve_default_locked();
  pthread_mutex_unlock(&cfg.mu);
  return m;
}

void mproc__start_method_inherit(int method) {
  if (mproc__start_method_name(method) != NULL) {
    lock_cfg();
    __atomic_store_n(&cfg.method, method, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&cfg.mu);
  }
}

int mproc_set_start_method(const char *method, int force) {
  int m = 0;
  if (method != NULL) {
    m = mproc__start_method_parse(method);
    if (m < 0) {
      return m;
    }
  } else if (!force) {
    return MPROC_EINVAL;
  }
  lock_cfg();
  int r = 0;
  if (cfg.method != 0 && !force) {
    r = MPROC_EALREADY;
  } else {
    __atomic_store_n(&cfg.method, m, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&cfg.mu);
  return r;
}

const char *mproc_get_start_method(int allow_none) {
  lock_cfg();
  int m = cfg.method;
  if (m == 0 && !allow_none) {
    m = resolve_default_locked();
  }
  pthread_mutex_unlock(&cfg.mu);
  return m > 0 ? names[m] : NULL;
}

int mproc_get_all_start_methods(const char **out, size_t cap) {
  /* The default first, as Python lists it. */
  const char *all[3] = {"fork", "spawn", "forkserver"};
  if (out == NULL && cap > 0) {
    return MPROC_EINVAL;
  }
  for (size_t i = 0; i < 3 && i < cap; i++) {
    out[i] = all[i];
  }
  return 3;
}

int mproc_get_context(mproc_context **out, const char *method) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  if (method == NULL) {
    *out = &ctx_default;
    return 0;
  }
  switch (mproc__start_method_parse(method)) {
    case MPROC__START_FORK:
      *out = &ctx_fork;
      return 0;
    case MPROC__START_SPAWN:
      *out = &ctx_spawn;
      return 0;
    case MPROC__START_FORKSERVER:
      *out = &ctx_forkserver;
      return 0;
    default:
      return MPROC_EINVAL;
  }
}

const char *mproc_context_start_method(const mproc_context *c) {
  if (c == NULL) {
    return NULL;
  }
  if (c->method != 0) {
    return names[c->method];
  }
  return mproc_get_start_method(0);
}

int mproc_set_executable(const char *path) {
  char *copy = NULL;
  if (path != NULL) {
    if (strlen(path) >= MPROC__PATH_MAX) {
      return MPROC_ENAMETOOLONG;
    }
    copy = strdup(path);
    if (copy == NULL) {
      return MPROC_ENOMEM;
    }
  }
  lock_cfg();
  char *old = cfg.exe;
  cfg.exe = copy;
  pthread_mutex_unlock(&cfg.mu);
  free(old);
  return 0;
}

int mproc__executable(char *buf, size_t cap) {
  lock_cfg();
  const char *p = cfg.exe != NULL ? cfg.exe : "/proc/self/exe";
  size_t n = strlen(p);
  int r = n < cap ? 0 : MPROC_ENAMETOOLONG;
  if (r == 0) {
    memcpy(buf, p, n + 1);
  }
  pthread_mutex_unlock(&cfg.mu);
  return r;
}

int mproc_set_forkserver_preload(const char *const *paths, size_t n) {
  if (paths == NULL && n > 0) {
    return MPROC_EINVAL;
  }
  for (size_t i = 0; i < n; i++) {
    if (paths[i] == NULL) {
      return MPROC_EINVAL;
    }
  }
  char **list = NULL;
  if (n > 0) {
    list = calloc(n, sizeof *list);
    if (list == NULL) {
      return MPROC_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
      list[i] = strdup(paths[i]);
      if (list[i] == NULL) {
        for (size_t j = 0; j < i; j++) {
          free(list[j]);
        }
        free(list);
        return MPROC_ENOMEM;
      }
    }
  }
  lock_cfg();
  char **old = cfg.preload;
  size_t nold = cfg.npreload;
  cfg.preload = list;
  cfg.npreload = n;
  pthread_mutex_unlock(&cfg.mu);
  for (size_t i = 0; i < nold; i++) {
    free(old[i]);
  }
  free(old);
  return 0;
}

int mproc__forkserver_preload(char *buf, size_t cap, size_t *len) {
  lock_cfg();
  size_t need = 0;
  for (size_t i = 0; i < cfg.npreload; i++) {
    need += strlen(cfg.preload[i]) + 1;
  }
  int r = need <= cap ? 0 : MPROC_ENAMETOOLONG;
  if (r == 0) {
    size_t off = 0;
    for (size_t i = 0; i < cfg.npreload; i++) {
      size_t l = strlen(cfg.preload[i]) + 1;
      memcpy(buf + off, cfg.preload[i], l);
      off += l;
    }
    *len = need;
  }
  pthread_mutex_unlock(&cfg.mu);
  return r;
}
