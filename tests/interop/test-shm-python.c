/*
 * tests/interop/test-shm-python.c - SharedMemory between mproc and
 * CPython's multiprocessing.shared_memory, with the machine's python3.
 *
 * Each case runs `python3 -I -c SCRIPT ARGS...` (fork + execv, stdout and
 * stderr captured) next to mproc calls on the same segment, both ways:
 * mproc creates and Python attaches, Python creates and mproc attaches,
 * each side checking the other's bytes with an exact pattern and a CRC-32
 * (binascii.crc32 in Python, the same polynomial here), at 1 B, 4 KiB and
 * 1 MiB.
 *
 * Python's resource tracker: SharedMemory registers every segment it
 * creates or attaches (3.11 has no track=False), and the tracker unlinks
 * what is still registered when the Python program ends, with a "leaked
 * shared_memory objects" warning.  The scripts therefore call
 * resource_tracker.unregister(shm._name, "shared_memory") right after
 * creating or attaching, the recipe docs/shm.md gives; a script that
 * unlinks does not (unlink() unregisters).  Any output on Python's stderr
 * fails the case, so a tracker warning cannot go unnoticed.  The tracker
 * is a child of python3 that may outlive it by a moment: it is reparented
 * to the test process (a subreaper) and waited for.
 *
 * Skipped (77) only when no python3 is found, or it has no
 * multiprocessing.shared_memory (before 3.8).
 */
#include "task.h"

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ---- running python3 ---- */

static char python[4096];

/* /usr/bin/python3, else the first python3 on PATH.  1 if found. */
static int find_python(void) {
  if (access("/usr/bin/python3", X_OK) == 0) {
    snprintf(python, sizeof python, "/usr/bin/python3");
    return 1;
  }
  const char *path = getenv("PATH");
  while (path != NULL && *path != '\0') {
    const char *colon = strchr(path, ':');
    size_t len = colon != NULL ? (size_t)(colon - path) : strlen(path);
    if (len > 0 && len < sizeof python - 10) {
      snprintf(python, sizeof python, "%.*s/python3", (int)len, path);
      if (access(python, X_OK) == 0) {
        return 1;
      }
    }
    path = colon != NULL ? colon + 1 : NULL;
  }
  return 0;
}

typedef struct py_result {
  int code;        /* exit code (status, or -signal) */
  char out[4096];  /* stdout */
  char err[16384]; /* stderr */
} py_result;

/* Wait for whatever was reparented to us (Python's resource tracker)
 * to end; this test starts no other children. */
static void reap_orphans(double timeout) {
  double end = test_now() + timeout;
  for (;;) {
    int st;
    pid_t r = waitpid(-1, &st, WNOHANG);
    if (r < 0 && errno == ECHILD) {
      return;
    }
    if (r == 0) {
      if (test_now() > end) {
        return; /* the runner reports the stray */
      }
      test_sleep(0.005);
    }
  }
}

/* Append what fd has to buf (cap includes the NUL).  0 at EOF. */
static int drain(int fd, char *buf, size_t cap, size_t *len) {
  char tmp[4096];
  ssize_t n = read(fd, tmp, sizeof tmp);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
    return 1;
  }
  if (n <= 0) {
    return 0;
  }
  size_t room = cap - 1 - *len;
  size_t take = (size_t)n < room ? (size_t)n : room;
  memcpy(buf + *len, tmp, take);
  *len += take;
  buf[*len] = '\0';
  return 1;
}

/* python3 -I -c script args... (args NULL-terminated). */
static void run_python(py_result *res, const char *script,
                       const char *const *args) {
  const char *argv[16];
  int argc = 0;
  argv[argc++] = python;
  argv[argc++] = "-I";
  argv[argc++] = "-c";
  argv[argc++] = script;
  for (int i = 0; args != NULL && args[i] != NULL && argc < 15; i++) {
    argv[argc++] = args[i];
  }
  argv[argc] = NULL;

  int out[2], err[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(err, O_CLOEXEC), 0);
  pid_t pid = test_fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out[1], 1) < 0 ||
        dup2(err[1], 2) < 0) {
      _exit(126);
    }
    execv(python, (char *const *)argv);
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  memset(res, 0, sizeof *res);
  size_t olen = 0, elen = 0;
  int oopen = 1, eopen = 1;
  double end = test_now() + 60.0;
  while ((oopen || eopen) && test_now() < end) {
    struct pollfd p[2] = {{oopen ? out[0] : -1, POLLIN, 0},
                          {eopen ? err[0] : -1, POLLIN, 0}};
    int n = poll(p, 2, 100);
    if (n < 0 && errno != EINTR) {
      break;
    }
    if (oopen && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      oopen = drain(out[0], res->out, sizeof res->out, &olen);
    }
    if (eopen && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      eopen = drain(err[0], res->err, sizeof res->err, &elen);
    }
  }
  close(out[0]);
  close(err[0]);
  res->code = test_wait_pid(pid, 30.0);
  if (res->code == INT32_MIN) {
    kill(pid, SIGKILL);
    res->code = test_wait_pid(pid, 30.0);
  }
  reap_orphans(30.0);
}

/* The value after "key " on a line of out, as text; NULL if absent. */
static const char *field(const py_result *r, const char *key, char *buf,
                         size_t cap) {
  size_t kl = strlen(key);
  const char *p = r->out;
  while (p != NULL && *p != '\0') {
    if (strncmp(p, key, kl) == 0 && p[kl] == ' ') {
      const char *v = p + kl + 1;
      size_t n = strcspn(v, "\n");
      if (n >= cap) {
        n = cap - 1;
      }
      memcpy(buf, v, n);
      buf[n] = '\0';
      return buf;
    }
    p = strchr(p, '\n');
    p = p != NULL ? p + 1 : NULL;
  }
  return NULL;
}

static uint64_t field_u64(const py_result *r, const char *key) {
  char buf[64];
  const char *v = field(r, key, buf, sizeof buf);
  return v != NULL ? strtoull(v, NULL, 10) : UINT64_MAX;
}

/* A Python run that must succeed quietly. */
static void expect_clean(const py_result *r) {
  if (r->code != 0 || r->err[0] != '\0') {
    fprintf(stderr, "# python3 exit code %d\n# stdout:\n%s\n# stderr:\n%s\n",
            r->code, r->out, r->err);
  }
  ASSERT_EQ(r->code, 0);
  ASSERT_EQ(strlen(r->err), 0);
}

static int need_python(void) {
  if (!find_python()) {
    printf("# skip: no python3 in /usr/bin or on PATH\n");
    return 0;
  }
  py_result r;
  run_python(&r, "import multiprocessing.shared_memory", NULL);
  if (r.code != 0) {
    printf("# skip: %s has no multiprocessing.shared_memory (%d): %s\n",
           python, r.code, r.err);
    return 0;
  }
  return 1;
}

/* ---- the patterns, checked on both sides ---- */

/* CRC-32 (IEEE, reflected), as binascii.crc32 and zlib.crc32. */
static uint32_t crc32(const unsigned char *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) {
      c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
  }
  return c ^ 0xffffffffu;
}

/* Python's pattern: byte i is ((i * 7 + 3) ^ (i >> 8)) & 255. */
#define PY_PATTERN                                                            \
  "def pypat(n):\n"                                                           \
  "    return bytes(((i * 7 + 3) ^ (i >> 8)) & 255 for i in range(n))\n"
static int check_py_pattern(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != (unsigned char)(((i * 7 + 3) ^ (i >> 8)) & 255)) {
      return 0;
    }
  }
  return 1;
}

/* mproc's pattern: test_fill(seed), byte i is (seed + i*131 + (seed>>8)) &
 * 255, which repeats every 256 bytes. */
#define MPROC_PATTERN                                                         \
  "def mpat(n, seed):\n"                                                      \
  "    base = seed + (seed >> 8)\n"                                           \
  "    one = bytes((base + i * 131) & 255 for i in range(256))\n"             \
  "    return (one * (n // 256 + 1))[:n]\n"

static const size_t sizes[] = {1, 4096, 1 << 20};

/* ---- mproc creates, Python attaches ---- */

/* argv: name size seed.  Verify mproc's bytes, write Python's. */
static const char attach_script[] =
    "import sys, binascii\n"
    "from multiprocessing import shared_memory, resource_tracker\n" PY_PATTERN
    MPROC_PATTERN
    "name, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
    "shm = shared_memory.SharedMemory(name)\n"
    "resource_tracker.unregister(shm._name, 'shared_memory')\n"
    "print('name', shm.name)\n"
    "print('size', shm.size)\n"
    "got = bytes(shm.buf[:size])\n"
    "print('match', int(got == mpat(size, seed)))\n"
    "print('crc_in', binascii.crc32(got))\n"
    "mine = pypat(size)\n"
    "shm.buf[:size] = mine\n"
    "print('crc_out', binascii.crc32(mine))\n"
    "shm.close()\n";

TEST_IMPL(shm_python_attaches_mproc_segment) {
  if (!need_python()) {
    return TEST_SKIP;
  }
  for (size_t k = 0; k < MPROC__ARRAY_SIZE(sizes); k++) {
    size_t n = sizes[k];
    uint64_t seed = 0x1234 + k * 977;
    mproc_shared_memory *m = NULL;
    /* A random (Python-style) name, and a chosen one. */
    char chosen[64];
    snprintf(chosen, sizeof chosen, "mproc_py_%d_%zu", (int)getpid(), k);
    ASSERT_OK(mproc_shared_memory_create(&m, k == 1 ? chosen : NULL, n, 0));
    unsigned char *b = mproc_shared_memory_buf(m);
    test_fill(b, n, seed);
    uint32_t crc_mine = crc32(b, n);

    char ssize[32], sseed[32];
    snprintf(ssize, sizeof ssize, "%zu", n);
    snprintf(sseed, sizeof sseed, "%" PRIu64, seed);
    const char *args[] = {mproc_shared_memory_name(m), ssize, sseed, NULL};
    py_result r;
    run_python(&r, attach_script, args);
    /* The segment is still there: Python's tracker did not take it. */
    mproc_shared_memory *again = NULL;
    int ar = mproc_shared_memory_attach(&again, mproc_shared_memory_name(m));
    mproc_shared_memory_close(again);
    int ur = mproc_shared_memory_unlink(m);

    expect_clean(&r);
    ASSERT_OK(ar);
    ASSERT_OK(ur);
    char nm[300];
    ASSERT_STR_EQ(field(&r, "name", nm, sizeof nm),
                  mproc_shared_memory_name(m));
    ASSERT_UEQ(field_u64(&r, "size"), n);
    ASSERT_UEQ(field_u64(&r, "match"), 1);
    ASSERT_UEQ(field_u64(&r, "crc_in"), crc_mine);
    /* Python's bytes, seen here. */
    ASSERT(check_py_pattern(b, n));
    ASSERT_UEQ(field_u64(&r, "crc_out"), crc32(b, n));
    ASSERT_OK(mproc_shared_memory_close(m));
  }
  return 0;
}

/* ---- Python creates, mproc attaches ---- */

/* argv: size.  Create a random-named segment, write Python's pattern,
 * leave it (unregistered, so its tracker does not unlink it). */
static const char create_script[] =
    "import sys, binascii\n"
    "from multiprocessing import shared_memory, resource_tracker\n" PY_PATTERN
    "size = int(sys.argv[1])\n"
    "shm = shared_memory.SharedMemory(create=True, size=size)\n"
    "resource_tracker.unregister(shm._name, 'shared_memory')\n"
    "data = pypat(size)\n"
    "shm.buf[:size] = data\n"
    "print('name', shm.name)\n"
    "print('size', shm.size)\n"
    "print('crc', binascii.crc32(data))\n"
    "shm.close()\n";

TEST_IMPL(shm_mproc_attaches_python_segment) {
  if (!need_python()) {
    return TEST_SKIP;
  }
  for (size_t k = 0; k < MPROC__ARRAY_SIZE(sizes); k++) {
    size_t n = sizes[k];
    char ssize[32];
    snprintf(ssize, sizeof ssize, "%zu", n);
    const char *args[] = {ssize, NULL};
    py_result r;
    run_python(&r, create_script, args);
    char name[300];
    const char *got_name = field(&r, "name", name, sizeof name);
    mproc_shared_memory *a = NULL;
    int ar = got_name != NULL ? mproc_shared_memory_attach(&a, got_name)
                              : MPROC_EINVAL;
    if (ar != 0 && got_name != NULL) {
      mproc_shared_memory_unlink_name(got_name);
    }
    expect_clean(&r);
    ASSERT_NOT_NULL(got_name);
    ASSERT_OK(ar);

    /* Python's name form, and create on it is EEXIST here too. */
    mproc_shared_memory *x = NULL;
    int er = mproc_shared_memory_create(&x, got_name, 1, 0);
    size_t asize = mproc_shared_memory_size(a);
    unsigned char *b = mproc_shared_memory_buf(a);
    int pat = asize == n && check_py_pattern(b, n);
    uint32_t crc = asize == n ? crc32(b, n) : 0;

    /* Then back again: mproc writes, a second Python run reads. */
    uint64_t seed = 0x55aa + k;
    test_fill(b, asize, seed);
    char sseed[32];
    snprintf(sseed, sizeof sseed, "%" PRIu64, seed);
    const char *args2[] = {got_name, ssize, sseed, NULL};
    py_result r2;
    run_python(&r2, attach_script, args2);
    int ur = mproc_shared_memory_unlink(a);

    ASSERT_EQ(strlen(got_name), 12);
    ASSERT(strncmp(got_name, "psm_", 4) == 0);
    ASSERT_ERR(er, MPROC_EEXIST);
    ASSERT_UEQ(asize, n);
    ASSERT_UEQ(field_u64(&r, "size"), n);
    ASSERT(pat);
    ASSERT_UEQ(field_u64(&r, "crc"), crc);
    expect_clean(&r2);
    ASSERT_UEQ(field_u64(&r2, "match"), 1);
    ASSERT(check_py_pattern(b, n));
    ASSERT_OK(ur);
    ASSERT_OK(mproc_shared_memory_close(a));
  }
  return 0;
}

/* ---- Python unlinks what mproc made ---- */

static const char unlink_script[] =
    "import sys\n"
    "from multiprocessing import shared_memory\n"
    "shm = shared_memory.SharedMemory(sys.argv[1])\n"
    "shm.buf[0] = 42\n"
    "shm.close()\n"
    "shm.unlink()\n"
    "try:\n"
    "    shared_memory.SharedMemory(sys.argv[1])\n"
    "except FileNotFoundError:\n"
    "    print('gone', 1)\n";

/* Python's errors on mproc's segment: FileExistsError on create. */
static const char exists_script[] =
    "import sys\n"
    "from multiprocessing import shared_memory\n"
    "try:\n"
    "    shared_memory.SharedMemory(sys.argv[1], create=True, size=1)\n"
    "except FileExistsError:\n"
    "    print('exists', 1)\n";

TEST_IMPL(shm_python_unlinks_mproc_segment) {
  if (!need_python()) {
    return TEST_SKIP;
  }
  mproc_shared_memory *m = NULL;
  ASSERT_OK(mproc_shared_memory_create(&m, NULL, 4096,
                                       MPROC_SHM_UNLINK_ON_EXIT));
  const char *args[] = {mproc_shared_memory_name(m), NULL};
  py_result r1, r2;
  run_python(&r1, exists_script, args);
  run_python(&r2, unlink_script, args);
  int ur = mproc_shared_memory_unlink(m);
  unsigned char first = ((unsigned char *)mproc_shared_memory_buf(m))[0];
  ASSERT_OK(mproc_shared_memory_close(m));
  expect_clean(&r1);
  ASSERT_UEQ(field_u64(&r1, "exists"), 1);
  expect_clean(&r2);
  ASSERT_UEQ(field_u64(&r2, "gone"), 1);
  ASSERT_ERR(ur, MPROC_ENOENT);
  ASSERT_EQ(first, 42);
  return 0;
}
