/*
 * shm.c - SharedMemory: named POSIX shared memory, Python-compatible.
 *
 * A segment is /dev/shm/NAME, opened with shm_open("/" + NAME) as Python's
 * multiprocessing.shared_memory does, so either side can attach to what
 * the other created.  What mproc adds (see include/mproc/shm.h):
 *
 *   create  O_CREAT | O_EXCL, fchmod 0600 (the umask cannot widen or
 *           narrow it), posix_fallocate of the whole size (a full /dev/shm
 *           is MPROC_ENOSPC now, not SIGBUS at the first write), then the
 *           mapping; any failure unlinks the name again.
 *   attach  O_NOFOLLOW, then fstat: a regular file, owned by our euid, no
 *           group or other bits, not empty.
 *
 * The fd is closed once the segment is mapped: an object costs a mapping,
 * not an fd.  Its (dev, ino) is kept, so that an unlink made on the
 * object's behalf (unlink(), close() or exit with MPROC_SHM_UNLINK_ON_EXIT)
 * removes the name only while it still names this object's segment, never
 * a segment someone else created later under the same name.
 *
 * MPROC_SHM_UNLINK_ON_EXIT: the object goes on a list of this process;
 * an atexit handler (registered at the first such create) unlinks what is
 * still listed and was created by the exiting pid.  A forked child
 * inherits the list (and its copy of the objects) but has another pid, so
 * its exit and its close() of an inherited object unlink nothing.  An
 * atfork handler keeps the list's mutex consistent across fork.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

MPROC__STATIC_ASSERT(MPROC_SHM_NAME_MAX >= 12, "room for psm_xxxxxxxx");

struct mproc_shared_memory {
  void *buf;
  size_t size;
  uint64_t dev, ino;    /* the segment's identity, from fstat */
  pid_t owner;          /* creator's pid with UNLINK_ON_EXIT, else 0 */
  int unlinked;         /* this object removed the name (or saw it gone) */
  int listed;           /* on the exit list */
  mproc_shared_memory *prev, *next; /* the exit list */
  char name[MPROC_SHM_NAME_MAX + 1];
};

/* Creating a random name: "psm_" + 8 lowercase hex digits (Python's
 * "/psm_" + token_hex(4)); tries before giving up with MPROC_EEXIST. */
#define SHM_RANDOM_TRIES 1000

/* ---- names ---- */

/* 0 if name is one mproc accepts, else MPROC_EINVAL. */
static int check_name(const char *name) {
  if (name == NULL) {
    return MPROC_EINVAL;
  }
  size_t len = strnlen(name, MPROC_SHM_NAME_MAX + 1);
  if (len == 0 || len > MPROC_SHM_NAME_MAX) {
    return MPROC_EINVAL;
  }
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
    return MPROC_EINVAL;
  }
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    /* '/' would be a directory; control characters (newline above all)
     * would break the line protocol of Python's resource tracker. */
    if (c == '/' || c < 0x20 || c == 0x7f) {
      return MPROC_EINVAL;
    }
  }
  return 0;
}

static int random_name(char *out) {
  unsigned char b[4];
  int r = mproc__random_bytes(b, sizeof b);
  if (r < 0) {
    return r;
  }
  static const char hex[] = "0123456789abcdef";
  memcpy(out, "psm_", 4);
  for (int i = 0; i < 4; i++) {
    out[4 + 2 * i] = hex[b[i] >> 4];
    out[5 + 2 * i] = hex[b[i] & 0xf];
  }
  out[12] = '\0';
  return 0;
}

/* A name the C library or the file system refused. */
static int name_error(int r) {
  return r == -ENAMETOOLONG || r == -EINVAL ? MPROC_EINVAL : r;
}

/*
 * Remove name if it still names the segment (dev, ino).  Returns 0;
 * MPROC_ENOENT when the name is gone or now names another file (ours was
 * unlinked already); another code from shm_unlink.  When the name cannot
 * be opened for the check (no fd left, no permission) it is unlinked by
 * name, as Python would: leaking it would be worse.
 */
static int unlink_if_same(const char *name, uint64_t dev, uint64_t ino) {
  int fd = mproc__shm_open(name, O_RDONLY | O_NONBLOCK, 0);
  if (fd == -ENOENT) {
    return MPROC_ENOENT;
  }
  if (fd >= 0) {
    mproc__file_info fi;
    int r = mproc__fstat(fd, &fi);
    mproc__close(fd);
    if (r == 0 && (fi.dev != dev || fi.ino != ino)) {
      return MPROC_ENOENT;
    }
  }
  int r = mproc__shm_unlink(name);
  return r == -ENOENT ? MPROC_ENOENT : r;
}

/* ---- the exit list (MPROC_SHM_UNLINK_ON_EXIT) ---- */

static pthread_mutex_t exit_mu = PTHREAD_MUTEX_INITIALIZER;
static mproc_shared_memory *exit_head;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static int exit_ready; /* 1: handlers registered */

static void exit_lock(void) { pthread_mutex_lock(&exit_mu); }
static void exit_unlock(void) { pthread_mutex_unlock(&exit_mu); }

/* Unlink the segments this process created with MPROC_SHM_UNLINK_ON_EXIT
 * and has not unlinked or closed yet.  Runs at exit(); also callable by
 * whoever ends a process without exit() (an mproc child leaves with
 * _exit(), see process.c). */
void mproc__shm_exit_cleanup(void) {
  if (__atomic_load_n(&exit_head, __ATOMIC_ACQUIRE) == NULL) {
    /* The common case, and the one every mproc child's exit runs: no
     * system call, no lock. */
    return;
  }
  pid_t me = mproc__getpid();
  exit_lock();
  for (mproc_shared_memory *m = exit_head; m != NULL; m = m->next) {
    if (m->owner == me && !m->unlinked) {
      int r = unlink_if_same(m->name, m->dev, m->ino);
      m->unlinked = 1;
      if (r == 0) {
        MPROC__DEBUG("shared memory %s unlinked at exit", m->name);
      }
    }
  }
  exit_unlock();
}

static void exit_register(void) {
  if (pthread_atfork(exit_lock, exit_unlock, exit_unlock) != 0) {
    return;
  }
  if (atexit(mproc__shm_exit_cleanup) != 0) {
    return;
  }
  exit_ready = 1;
}

static void exit_list_add(mproc_shared_memory *m) {
  exit_lock();
  m->prev = NULL;
  m->next = exit_head;
  if (exit_head != NULL) {
    exit_head->prev = m;
  }
  exit_head = m;
  m->listed = 1;
  exit_unlock();
}

/* exit_mu held. */
static void exit_list_remove(mproc_shared_memory *m) {
  if (!m->listed) {
    return;
  }
  if (m->prev != NULL) {
    m->prev->next = m->next;
  } else {
    exit_head = m->next;
  }
  if (m->next != NULL) {
    m->next->prev = m->prev;
  }
  m->prev = m->next = NULL;
  m->listed = 0;
}

/* ---- create, attach ---- */

int mproc_shared_memory_create(mproc_shared_memory **out, const char *name,
                               size_t size, int flags) {
  if (out != NULL) {
    *out = NULL;
  }
  if (out == NULL || size == 0 || (uint64_t)size > (uint64_t)INT64_MAX ||
      (flags & ~MPROC_SHM_UNLINK_ON_EXIT) != 0) {
    return MPROC_EINVAL;
  }
  if (name != NULL && check_name(name) != 0) {
    return MPROC_EINVAL;
  }
  if (flags & MPROC_SHM_UNLINK_ON_EXIT) {
    pthread_once(&exit_once, exit_register);
    if (!exit_ready) {
      return MPROC_ENOMEM;
    }
  }
  mproc_shared_memory *m = calloc(1, sizeof *m);
  if (m == NULL) {
    return MPROC_ENOMEM;
  }

  int fd;
  for (int tries = 0;; tries++) {
    if (name != NULL) {
      memcpy(m->name, name, strlen(name) + 1);
    } else {
      int r = random_name(m->name);
      if (r < 0) {
        free(m);
        return r;
      }
    }
    fd = mproc__shm_open(m->name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd == -EEXIST && name == NULL && tries < SHM_RANDOM_TRIES) {
      continue;
    }
    break;
  }
  if (fd < 0) {
    free(m);
    return name_error(fd);
  }

  /* From here on the name is ours (O_EXCL): every failure removes it. */
  mproc__file_info fi;
  int r = mproc__fchmod(fd, 0600);
  if (r == 0) {
    r = mproc__fallocate(fd, (uint64_t)size);
    if (r == -EFBIG) {
      r = MPROC_ENOSPC; /* larger than the file system allows */
    }
  }
  if (r == 0) {
    r = mproc__fstat(fd, &fi);
  }
  if (r == 0 && fi.size != (uint64_t)size) {
    r = MPROC_EIO; /* cannot happen on tmpfs */
  }
  if (r == 0) {
    r = mproc__map_shared(fd, size, NULL, 0, &m->buf);
  }
  mproc__close(fd);
  if (r != 0) {
    (void)mproc__shm_unlink(m->name);
    free(m);
    MPROC__DEBUG("shared memory create failed: %s", mproc_err_name(r));
    return r;
  }
  m->size = size;
  m->dev = fi.dev;
  m->ino = fi.ino;
  if (flags & MPROC_SHM_UNLINK_ON_EXIT) {
    m->owner = mproc__getpid();
    exit_list_add(m);
  }
  MPROC__DEBUG("shared memory %s created, %zu bytes", m->name, size);
  *out = m;
  return 0;
}

int mproc_shared_memory_attach(mproc_shared_memory **out, const char *name) {
  if (out != NULL) {
    *out = NULL;
  }
  if (out == NULL || check_name(name) != 0) {
    return MPROC_EINVAL;
  }
  /* O_NONBLOCK: a FIFO planted under the name must not block the open
   * (it is refused below, as anything not a regular file). */
  int fd = mproc__shm_open(name, O_RDWR | O_NONBLOCK, 0);
  if (fd < 0) {
    switch (fd) {
    case -ENOENT:
      return MPROC_ENOENT;
    case -EACCES: /* another user's segment */
    case -EPERM:
    case -EISDIR: /* a directory */
    case -EINVAL: /* the same: glibc's shm_open reports EISDIR as EINVAL,
                   * and the name itself was checked above */
    case -ELOOP:  /* a symbolic link (O_NOFOLLOW) */
    case -ENXIO:  /* a socket, or a device without its driver */
    case -ENODEV:
      return MPROC_EPERM;
    default:
      return name_error(fd);
    }
  }
  mproc__file_info fi;
  int r = mproc__fstat(fd, &fi);
  if (r == 0 && (!fi.regular || fi.uid != (uint32_t)mproc__geteuid() ||
                 (fi.mode & 077) != 0)) {
    r = MPROC_EPERM;
  }
  if (r == 0 && fi.size == 0) {
    r = MPROC_EINVAL;
  }
  if (r == 0 && fi.size > (uint64_t)SIZE_MAX) {
    r = MPROC_ENOMEM;
  }
  mproc_shared_memory *m = NULL;
  if (r == 0) {
    m = calloc(1, sizeof *m);
    if (m == NULL) {
      r = MPROC_ENOMEM;
    }
  }
  if (r == 0) {
    r = mproc__map_shared(fd, (size_t)fi.size, NULL, 0, &m->buf);
  }
  mproc__close(fd);
  if (r != 0) {
    free(m);
    return r;
  }
  memcpy(m->name, name, strlen(name) + 1);
  m->size = (size_t)fi.size;
  m->dev = fi.dev;
  m->ino = fi.ino;
  *out = m;
  return 0;
}

/* ---- accessors ---- */

const char *mproc_shared_memory_name(const mproc_shared_memory *m) {
  return m != NULL ? m->name : NULL;
}

size_t mproc_shared_memory_size(const mproc_shared_memory *m) {
  return m != NULL ? m->size : 0;
}

void *mproc_shared_memory_buf(const mproc_shared_memory *m) {
  return m != NULL ? m->buf : NULL;
}

/* ---- unlink, close ---- */

int mproc_shared_memory_unlink(mproc_shared_memory *m) {
  if (m == NULL) {
    return MPROC_EINVAL;
  }
  exit_lock();
  int r = MPROC_ENOENT;
  if (!m->unlinked) {
    r = unlink_if_same(m->name, m->dev, m->ino);
    if (r == 0 || r == MPROC_ENOENT) {
      m->unlinked = 1;
    }
  }
  exit_unlock();
  return r;
}

int mproc_shared_memory_unlink_name(const char *name) {
  if (check_name(name) != 0) {
    return MPROC_EINVAL;
  }
  int r = mproc__shm_unlink(name);
  return r == -ENOENT ? MPROC_ENOENT : name_error(r);
}

int mproc_shared_memory_close(mproc_shared_memory *m) {
  if (m == NULL) {
    return 0;
  }
  if (m->listed) {
    exit_lock();
    if (m->owner == mproc__getpid() && !m->unlinked) {
      (void)unlink_if_same(m->name, m->dev, m->ino);
      m->unlinked = 1;
    }
    exit_list_remove(m);
    exit_unlock();
  }
  int r = mproc__unmap(m->buf, m->size);
  free(m);
  return r;
}
