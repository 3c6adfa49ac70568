/*
 * tests/interop/test-connection-python.c - Listener/Client between mproc
 * and CPython's multiprocessing.connection, both ways, over Unix and TCP
 * sockets, with and without an authkey.
 *
 * Each case runs `pythonX -I -c SCRIPT ARGS...` (fork + execv, stdout and
 * stderr captured through pipes, read while the case goes on) as the
 * other side: Python's Client against an mproc Listener, and mproc's
 * client against Python's Listener (which prints its address first).
 * After the handshake the two exchange messages of 0 B, 1 B, 16 KiB and
 * 8 MiB, each way (send_bytes / recv_bytes), and check each other's bytes
 * exactly: a pattern compared in full and a CRC-32 (binascii.crc32 in
 * Python, the same polynomial here).  A wrong key is refused both ways:
 * Python raises AuthenticationError, mproc returns MPROC_EAUTH.
 *
 * Interpreters.  The machine's python3 (found as in test-shm-python.c;
 * 3.11 here) always runs; python3.12 and python3.13 run when present (on
 * PATH, or under $PYENV_ROOT/versions), each in cases of their own, which
 * are skipped (77) when the interpreter is missing.  Python < 3.12 speaks
 * the legacy HMAC-MD5 handshake: the default (non-strict) mode must
 * interoperate with it and strict mode must refuse it; Python >= 3.12
 * uses "{sha256}", which strict mode accepts, so a strict handshake that
 * succeeds proves the modern path was taken.
 *
 * Any output on Python's stderr fails the case.  Python's Unix Listener
 * with no address makes a pymp-* directory that its own exit handler
 * removes; the case checks the socket path is gone afterwards.
 */
#include "task.h"

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ==================== finding interpreters ==================== */

/* The minor version of a python3 at path (11 for 3.11), or -1 if it does
 * not run. */
static int python_minor(const char *path);

/* /usr/bin/python3, else the first python3 on PATH (as test-shm-python.c). */
static int find_system_python(char *out, size_t cap) {
  if (access("/usr/bin/python3", X_OK) == 0) {
    snprintf(out, cap, "/usr/bin/python3");
    return 1;
  }
  const char *path = getenv("PATH");
  while (path != NULL && *path != '\0') {
    const char *colon = strchr(path, ':');
    size_t len = colon != NULL ? (size_t)(colon - path) : strlen(path);
    if (len > 0 && len < cap - 10) {
      snprintf(out, cap, "%.*s/python3", (int)len, path);
      if (access(out, X_OK) == 0) {
        return 1;
      }
    }
    path = colon != NULL ? colon + 1 : NULL;
  }
  return 0;
}

/* python3.MINOR: on PATH (a pyenv shim that refuses to run does not
 * count), else $PYENV_ROOT/versions/3.MINOR.* /bin, else ~/.pyenv. */
static int find_versioned_python(int minor, char *out, size_t cap) {
  char name[32];
  snprintf(name, sizeof name, "python3.%d", minor);
  const char *path = getenv("PATH");
  while (path != NULL && *path != '\0') {
    const char *colon = strchr(path, ':');
    size_t len = colon != NULL ? (size_t)(colon - path) : strlen(path);
    if (len > 0 && len + strlen(name) + 2 < cap) {
      snprintf(out, cap, "%.*s/%s", (int)len, path, name);
      if (access(out, X_OK) == 0 && python_minor(out) == minor) {
        return 1;
      }
    }
    path = colon != NULL ? colon + 1 : NULL;
  }
  const char *roots[2] = {getenv("PYENV_ROOT"), getenv("HOME")};
  for (int i = 0; i < 2; i++) {
    if (roots[i] == NULL || roots[i][0] == '\0') {
      continue;
    }
    char pattern[4096];
    snprintf(pattern, sizeof pattern, "%s%s/versions/3.%d.*/bin/%s",
             roots[i], i == 0 ? "" : "/.pyenv", minor, name);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) == 0) {
      for (size_t k = g.gl_pathc; k-- > 0;) { /* the newest patch first */
        if (strlen(g.gl_pathv[k]) < cap &&
            python_minor(g.gl_pathv[k]) == minor) {
          snprintf(out, cap, "%s", g.gl_pathv[k]);
          globfree(&g);
          return 1;
        }
      }
      globfree(&g);
    }
  }
  return 0;
}

/* ==================== running Python beside the case ==================== */

typedef struct py_proc {
  pid_t pid;
  int out, err; /* pipe read ends, -1 once at end of file */
  size_t olen, elen;
  int code;      /* exit code once finished */
  char outbuf[8192];
  char errbuf[16384];
} py_proc;

/* Append what fd has to buf; 0 at end of file (fd is then closed). */
static int drain(int *fd, char *buf, size_t cap, size_t *len) {
  char tmp[4096];
  ssize_t n = read(*fd, tmp, sizeof tmp);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
    return 1;
  }
  if (n <= 0) {
    close(*fd);
    *fd = -1;
    return 0;
  }
  size_t room = cap - 1 - *len;
  size_t take = (size_t)n < room ? (size_t)n : room;
  memcpy(buf + *len, tmp, take);
  *len += take;
  buf[*len] = '\0';
  return 1;
}

/* Read what the pipes have, waiting up to timeout seconds. */
static void py_pump(py_proc *p, double timeout) {
  struct pollfd f[2] = {{p->out, POLLIN, 0}, {p->err, POLLIN, 0}};
  if (p->out < 0 && p->err < 0) {
    return;
  }
  int n = poll(f, 2, (int)(timeout * 1000));
  if (n <= 0) {
    return;
  }
  if (p->out >= 0 && (f[0].revents & (POLLIN | POLLHUP | POLLERR))) {
    drain(&p->out, p->outbuf, sizeof p->outbuf, &p->olen);
  }
  if (p->err >= 0 && (f[1].revents & (POLLIN | POLLHUP | POLLERR))) {
    drain(&p->err, p->errbuf, sizeof p->errbuf, &p->elen);
  }
}

static void py_start(py_proc *p, const char *python, const char *script,
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
  memset(p, 0, sizeof *p);
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
  p->pid = pid;
  p->out = out[0];
  p->err = err[0];
}

/* The value after "key " on a line of text; NULL if absent. */
static const char *field_in(const char *text, const char *key, char *buf,
                            size_t cap) {
  size_t kl = strlen(key);
  const char *p = text;
  while (p != NULL && *p != '\0') {
    const char *nl = strchr(p, '\n');
    if (nl != NULL && strncmp(p, key, kl) == 0 && p[kl] == ' ') {
      const char *v = p + kl + 1;
      size_t n = (size_t)(nl - v);
      if (n >= cap) {
        n = cap - 1;
      }
      memcpy(buf, v, n);
      buf[n] = '\0';
      return buf;
    }
    p = nl != NULL ? nl + 1 : NULL;
  }
  return NULL;
}

/* Wait up to timeout for a whole "key value" line on Python's stdout. */
static const char *py_wait_field(py_proc *p, const char *key, char *buf,
                                 size_t cap, double timeout) {
  double end = test_now() + timeout;
  for (;;) {
    const char *v = field_in(p->outbuf, key, buf, cap);
    if (v != NULL || p->out < 0 || test_now() > end) {
      return v;
    }
    py_pump(p, 0.05);
  }
}

/* Wait for whatever was reparented to us; this test starts no other
 * children. */
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
        return;
      }
      test_sleep(0.005);
    }
  }
}

/* Read to end of file, reap Python, and print its output if it failed
 * or wrote to stderr. */
static void py_finish(py_proc *p) {
  double end = test_now() + 60.0;
  while ((p->out >= 0 || p->err >= 0) && test_now() < end) {
    py_pump(p, 0.1);
  }
  if (p->out >= 0) {
    close(p->out);
    p->out = -1;
  }
  if (p->err >= 0) {
    close(p->err);
    p->err = -1;
  }
  p->code = test_wait_pid(p->pid, 30.0);
  if (p->code == INT32_MIN) {
    kill(p->pid, SIGKILL);
    p->code = test_wait_pid(p->pid, 30.0);
  }
  reap_orphans(30.0);
  if (p->code != 0 || p->elen != 0) {
    fprintf(stderr, "# python exit code %d\n# stdout:\n%s\n# stderr:\n%s\n",
            p->code, p->outbuf, p->errbuf);
  }
}

static void expect_clean(const py_proc *p) {
  ASSERT_EQ(p->code, 0);
  ASSERT_EQ(p->elen, 0);
}

static uint64_t field_u64(const py_proc *p, const char *key) {
  char buf[64];
  const char *v = field_in(p->outbuf, key, buf, sizeof buf);
  return v != NULL ? strtoull(v, NULL, 10) : UINT64_MAX;
}

static int python_minor(const char *path) {
  py_proc p;
  const char *args[] = {NULL};
  py_start(&p, path,
           "import sys, multiprocessing.connection\n"
           "print('minor', sys.version_info[1] if sys.version_info[0] == 3 "
           "else -1)\n",
           args);
  py_finish(&p);
  if (p.code != 0 || p.elen != 0) {
    return -1;
  }
  uint64_t m = field_u64(&p, "minor");
  return m > 1000 ? -1 : (int)m;
}

/* ==================== the bytes ==================== */

/* CRC-32 (IEEE, reflected), as binascii.crc32. */
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

/* Python's pattern: byte i is ((i % 251) * 7 + 3) & 255 (a prime period,
 * so it never lines up with mproc's 256-byte one). */
static int check_py_pattern(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != (unsigned char)(((i % 251) * 7 + 3) & 255)) {
      return 0;
    }
  }
  return 1;
}

static const size_t sizes[] = {0, 1, 16384, 8u << 20};
#define SEED(k) (1000u + 17u * (unsigned)(k))

/*
 * The Python side.  argv: role (client|listener), family (unix|tcp),
 * address ('-': a new one), key (hex, '-': none).  A listener prints
 * "address ADDR" first.  Then, for each size k: receive mproc's message,
 * print "match<k> 0|1" and "crc<k> N", send Python's pattern.  An
 * AuthenticationError prints "autherr 1", an EOFError (a peer that hung
 * up in the handshake) "eof 1"; both end the script normally.
 */
static const char py_script[] =
    "import sys, binascii\n"
    "from multiprocessing.connection import Listener, Client\n"
    "from multiprocessing import AuthenticationError\n"
    "role, family, addr, keyhex = sys.argv[1:5]\n"
    "sizes = [0, 1, 16384, 8 << 20]\n"
    "key = None if keyhex == '-' else bytes.fromhex(keyhex)\n"
    "def parse(a):\n"
    "    if family == 'tcp':\n"
    "        h, p = a.rsplit(':', 1)\n"
    "        return (h, int(p))\n"
    "    return a\n"
    "blk = bytes(((i * 7 + 3) & 255) for i in range(251))\n"
    "def pypat(n):\n"
    "    return (blk * (n // 251 + 1))[:n]\n"
    "def mpat(n, seed):\n"
    "    base = seed + (seed >> 8)\n"
    "    one = bytes((base + i * 131) & 255 for i in range(256))\n"
    "    return (one * (n // 256 + 1))[:n]\n"
    "l = None\n"
    "try:\n"
    "    if role == 'client':\n"
    "        c = Client(parse(addr), authkey=key)\n"
    "    else:\n"
    "        if addr == '-':\n"
    "            a = ('127.0.0.1', 0) if family == 'tcp' else None\n"
    "        else:\n"
    "            a = parse(addr)\n"
    "        fam = 'AF_INET' if family == 'tcp' else 'AF_UNIX'\n"
    "        l = Listener(a, family=fam, authkey=key)\n"
    "        a = l.address\n"
    "        print('address', a if isinstance(a, str) else '%s:%d' % a,\n"
    "              flush=True)\n"
    "        c = l.accept()\n"
    "except AuthenticationError as e:\n"
    "    print('autherr', 1)\n"
    "    if l is not None: l.close()\n"
    "    sys.exit(0)\n"
    "except EOFError as e:\n"
    "    print('eof', 1)\n"
    "    if l is not None: l.close()\n"
    "    sys.exit(0)\n"
    "print('connected', 1, flush=True)\n"
    "for k, n in enumerate(sizes):\n"
    "    got = c.recv_bytes()\n"
    "    print('match%d' % k, int(got == mpat(n, 1000 + 17 * k)))\n"
    "    print('crc%d' % k, binascii.crc32(got))\n"
    "    c.send_bytes(pypat(n))\n"
    "c.close()\n"
    "if l is not None: l.close()\n"
    "print('done', 1)\n";

/* mproc's half of the exchange. */
static void exchange(mproc_connection *c) {
  for (size_t k = 0; k < MPROC__ARRAY_SIZE(sizes); k++) {
    size_t n = sizes[k];
    unsigned char *b = malloc(n + 1);
    ASSERT_NOT_NULL(b);
    test_fill(b, n, SEED(k));
    ASSERT_OK(mproc_connection_send(c, b, n));
    free(b);
    void *got = NULL;
    size_t glen = 0;
    ASSERT_OK(mproc_connection_recv_bytes(c, &got, &glen, MPROC_NOLIMIT));
    ASSERT_UEQ(glen, n);
    ASSERT(check_py_pattern(got, n));
    free(got);
  }
}

/* Python's half, checked from its output. */
static void check_python_side(const py_proc *p) {
  expect_clean(p);
  for (size_t k = 0; k < MPROC__ARRAY_SIZE(sizes); k++) {
    size_t n = sizes[k];
    unsigned char *b = malloc(n + 1);
    ASSERT_NOT_NULL(b);
    test_fill(b, n, SEED(k));
    char key[16];
    snprintf(key, sizeof key, "match%zu", k);
    ASSERT_UEQ(field_u64(p, key), 1);
    snprintf(key, sizeof key, "crc%zu", k);
    ASSERT_UEQ(field_u64(p, key), crc32(b, n));
    free(b);
  }
  ASSERT_UEQ(field_u64(p, "done"), 1);
}

static const char key_hex[] = "6d70726f632d696e7465726f702d6b6579";
static const char key_text[] = "mproc-interop-key";
static const char wrong_text[] = "not the key";

/* ==================== the cases ==================== */

typedef struct interp {
  char path[4096];
  int minor;
} interp;

/* The interpreter for a case: minor 0 is the system python3. */
static int need_python(interp *py, int minor) {
  int found = minor == 0 ? find_system_python(py->path, sizeof py->path)
                         : find_versioned_python(minor, py->path,
                                                 sizeof py->path);
  if (!found) {
    if (minor == 0) {
      printf("# skip: no python3\n");
    } else {
      printf("# skip: no python3.%d\n", minor);
    }
    return 0;
  }
  py->minor = python_minor(py->path);
  if (py->minor < 0) {
    printf("# skip: %s does not run multiprocessing.connection\n", py->path);
    return 0;
  }
  if (minor != 0 && py->minor != minor) {
    printf("# skip: %s is not 3.%d\n", py->path, minor);
    return 0;
  }
  printf("# %s is 3.%d\n", py->path, py->minor);
  return 1;
}

/* Accept while Python connects, giving up if Python ends first. */
static int accept_from(mproc_listener *l, py_proc *p, mproc_connection **c) {
  double end = test_now() + 60.0;
  for (;;) {
    int r = mproc_listener_accept(l, c, 0.1);
    if (r != MPROC_ETIMEDOUT) {
      return r;
    }
    py_pump(p, 0);
    if (!test_pid_running(p->pid) || test_now() > end) {
      return r;
    }
  }
}

static mproc_listener *mproc_listen(int tcp, const char *key, int strict) {
  mproc_listener_opts o;
  memset(&o, 0, sizeof o);
  o.family = tcp ? MPROC_AF_INET : MPROC_AF_UNIX;
  if (key != NULL) {
    o.authkey = key;
    o.authkey_len = strlen(key);
  }
  o.strict_auth = strict;
  o.handshake_timeout = 30;
  mproc_listener *l = NULL;
  ASSERT_OK(mproc_listener_new(&l, &o));
  return l;
}

/*
 * Python's Client against an mproc Listener.  key: mproc's key (NULL:
 * none); pykey: Python's, as hex ("-": none).  expect: what accept must
 * give.  Returns with Python finished, in *p.
 */
static void python_client(const interp *py, py_proc *p, int tcp,
                          const char *key, const char *pykey, int strict,
                          int expect) {
  mproc_listener *l = mproc_listen(tcp, key, strict);
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  const char *args[] = {"client", tcp ? "tcp" : "unix", addr, pykey, NULL};
  py_start(p, py->path, py_script, args);
  mproc_connection *c = NULL;
  int r = accept_from(l, p, &c);
  if (r != expect) {
    py_finish(p);
  }
  ASSERT_ERR(r, expect);
  if (r == 0) {
    exchange(c);
    ASSERT_OK(mproc_connection_close(c));
  }
  py_finish(p);
  ASSERT_OK(mproc_listener_close(l));
  if (!tcp) {
    struct stat st;
    ASSERT_NE(lstat(addr, &st), 0);
  }
}

/* mproc's client against Python's Listener. */
static void mproc_client(const interp *py, py_proc *p, int tcp,
                         const char *key, const char *pykey, int strict,
                         int expect) {
  const char *args[] = {"listener", tcp ? "tcp" : "unix", "-", pykey, NULL};
  py_start(p, py->path, py_script, args);
  char addr[512];
  const char *a = py_wait_field(p, "address", addr, sizeof addr, 60.0);
  if (a == NULL) {
    py_finish(p);
  }
  ASSERT_NOT_NULL(a);
  mproc_client_opts o;
  memset(&o, 0, sizeof o);
  o.family = tcp ? MPROC_AF_INET : MPROC_AF_UNIX;
  if (key != NULL) {
    o.authkey = key;
    o.authkey_len = strlen(key);
  }
  o.strict_auth = strict;
  o.timeout = 30;
  mproc_connection *c = NULL;
  int r = mproc_client_connect(&c, addr, &o);
  if (r != expect) {
    py_finish(p);
  }
  ASSERT_ERR(r, expect);
  if (r == 0) {
    exchange(c);
    ASSERT_OK(mproc_connection_close(c));
  }
  py_finish(p);
  if (!tcp) {
    /* Python removed its socket (and its pymp-* directory). */
    struct stat st;
    ASSERT_NE(lstat(addr, &st), 0);
  }
}

/* Messages both ways, with and without a key, Unix and TCP. */
static int case_mproc_listener(int minor) {
  interp py;
  if (!need_python(&py, minor)) {
    return TEST_SKIP;
  }
  for (int tcp = 0; tcp < 2; tcp++) {
    py_proc p;
    python_client(&py, &p, tcp, key_text, key_hex, 0, 0);
    check_python_side(&p);
    python_client(&py, &p, tcp, NULL, "-", 0, 0);
    check_python_side(&p);
  }
  return 0;
}

static int case_mproc_client(int minor) {
  interp py;
  if (!need_python(&py, minor)) {
    return TEST_SKIP;
  }
  for (int tcp = 0; tcp < 2; tcp++) {
    py_proc p;
    mproc_client(&py, &p, tcp, key_text, key_hex, 0, 0);
    check_python_side(&p);
    mproc_client(&py, &p, tcp, NULL, "-", 0, 0);
    check_python_side(&p);
  }
  return 0;
}

/* A wrong key, refused both ways: AuthenticationError in Python,
 * MPROC_EAUTH here. */
static int case_wrong_key(int minor) {
  interp py;
  if (!need_python(&py, minor)) {
    return TEST_SKIP;
  }
  for (int tcp = 0; tcp < 2; tcp++) {
    py_proc p;
    python_client(&py, &p, tcp, wrong_text, key_hex, 0, MPROC_EAUTH);
    expect_clean(&p);
    ASSERT_UEQ(field_u64(&p, "autherr"), 1);
    mproc_client(&py, &p, tcp, wrong_text, key_hex, 0, MPROC_EAUTH);
    expect_clean(&p);
    ASSERT_UEQ(field_u64(&p, "autherr"), 1);
  }
  return 0;
}

/* Strict mode: Python >= 3.12 speaks {sha256} and passes; Python <= 3.11
 * speaks HMAC-MD5 and is refused, which also proves that the default
 * mode's success with it went through the legacy path. */
static int case_strict(int minor) {
  interp py;
  if (!need_python(&py, minor)) {
    return TEST_SKIP;
  }
  int modern = py.minor >= 12;
  py_proc p;
  python_client(&py, &p, 0, key_text, key_hex, 1, modern ? 0 : MPROC_EAUTH);
  if (modern) {
    check_python_side(&p);
  } else {
    expect_clean(&p);
    ASSERT_UEQ(field_u64(&p, "autherr"), 1);
  }
  mproc_client(&py, &p, 1, key_text, key_hex, 1, modern ? 0 : MPROC_EAUTH);
  if (modern) {
    check_python_side(&p);
  } else {
    /* The strict client hung up on the legacy challenge. */
    expect_clean(&p);
    ASSERT_UEQ(field_u64(&p, "eof"), 1);
  }
  return 0;
}

/*
 * Python's Client after n silent peers (connected first, never speaking):
 * the mproc Listener runs handshakes concurrently, so Python's is through
 * long before the silent peers' 30 s deadline; only peers pushed out by
 * the cap on unfinished handshakes (128 by default) are reported first,
 * as MPROC_ESTALLED.
 */
static void python_after_silent(const interp *py, int tcp, size_t n) {
  mproc_listener *l = mproc_listen(tcp, key_text, 0);
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  mproc__sockaddr sa;
  if (tcp) {
    char *colon = strrchr(addr, ':');
    ASSERT_NOT_NULL(colon);
    char host[64];
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    ASSERT_OK(mproc__sockaddr_inet(&sa, host, colon + 1, 0));
  } else {
    ASSERT_OK(mproc__sockaddr_unix(&sa, addr));
  }
  int *silent = malloc(n * sizeof *silent);
  ASSERT_NOT_NULL(silent);
  for (size_t i = 0; i < n; i++) {
    silent[i] = mproc__net_connect(&sa, NULL);
    ASSERT_GE(silent[i], 3);
  }
  py_proc p;
  const char *args[] = {"client", tcp ? "tcp" : "unix", addr, key_hex, NULL};
  py_start(&p, py->path, py_script, args);
  size_t pushed_out = n + 1 > 128 ? n + 1 - 128 : 0;
  size_t stalled = 0;
  mproc_connection *c = NULL;
  int r;
  for (;;) {
    r = accept_from(l, &p, &c);
    if (r != MPROC_ESTALLED) {
      break;
    }
    stalled++;
    ASSERT_LE(stalled, pushed_out);
  }
  if (r != 0) {
    py_finish(&p);
  }
  ASSERT_OK(r);
  exchange(c);
  ASSERT_OK(mproc_connection_close(c));
  py_finish(&p);
  check_python_side(&p);
  for (size_t i = 0; i < n; i++) {
    mproc__close(silent[i]);
  }
  free(silent);
  ASSERT_OK(mproc_listener_close(l));
}

static int case_silent_peers(int minor) {
  interp py;
  if (!need_python(&py, minor)) {
    return TEST_SKIP;
  }
  python_after_silent(&py, 0, 10);
  python_after_silent(&py, 1, 10);
  python_after_silent(&py, 0, 200);
  return 0;
}

TEST_IMPL(interop_connection_py3_silent_peers) { return case_silent_peers(0); }
TEST_IMPL(interop_connection_py312_silent_peers) {
  return case_silent_peers(12);
}
TEST_IMPL(interop_connection_py313_silent_peers) {
  return case_silent_peers(13);
}

TEST_IMPL(interop_connection_py3_mproc_listener) {
  return case_mproc_listener(0);
}
TEST_IMPL(interop_connection_py3_mproc_client) {
  return case_mproc_client(0);
}
TEST_IMPL(interop_connection_py3_wrong_key) { return case_wrong_key(0); }
TEST_IMPL(interop_connection_py3_strict) { return case_strict(0); }

TEST_IMPL(interop_connection_py312_mproc_listener) {
  return case_mproc_listener(12);
}
TEST_IMPL(interop_connection_py312_mproc_client) {
  return case_mproc_client(12);
}
TEST_IMPL(interop_connection_py312_wrong_key) { return case_wrong_key(12); }
TEST_IMPL(interop_connection_py312_strict) { return case_strict(12); }

TEST_IMPL(interop_connection_py313_mproc_listener) {
  return case_mproc_listener(13);
}
TEST_IMPL(interop_connection_py313_mproc_client) {
  return case_mproc_client(13);
}
TEST_IMPL(interop_connection_py313_wrong_key) { return case_wrong_key(13); }
TEST_IMPL(interop_connection_py313_strict) { return case_strict(13); }
