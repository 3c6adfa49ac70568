/*
 * tests/behaviour/test-listener.c - Listener and Client: CPython's
 * _TestListener, _TestListenerClient, OtherTest and ChallengeResponseTest
 * (Lib/test/_test_multiprocessing.py), and mproc's own rules from
 * include/mproc/connection.h: private Unix addresses, the 0700 directory
 * and SO_PEERCRED checks, the 256-byte pre-authentication cap, the
 * handshake deadline, the legacy MD5 handshake and strict mode.
 *
 * Peers are mproc clients in child processes (started with mproc's
 * Process), or hand-written peers on raw sockets in a thread: those speak
 * the handshake byte by byte (a silent client, a 2^40-byte header, a
 * Python <= 3.11 peer with its legacy HMAC-MD5 form).
 */
#include "auth.h"
#include "connection-internal.h"
#include "internal.h"
#include "task.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

/* ==================== helpers ==================== */

static const char key_a[] = "secret key A";
static const char key_b[] = "secret key B";

/* A private directory for a given socket path, made and removed by the
 * test. */
static void make_test_dir(char *dir, size_t cap) {
  snprintf(dir, cap, "/tmp/mproc-test-XXXXXX");
  ASSERT_NOT_NULL(mkdtemp(dir));
}

static int path_exists(const char *p) {
  struct stat st;
  return lstat(p, &st) == 0;
}

/* What a child client does. */
enum { CL_ECHO = 0, CL_CONNECT_ONLY = 1, CL_CLOSE_AT_ONCE = 2 };

typedef struct client_arg {
  char address[256];
  int family;
  int has_key;
  char key[64];
  size_t keylen;
  int strict;
  int mode;
  int expect; /* the result mproc_client_connect must give */
  int retries; /* connect again this many times while it fails */
} client_arg;

static void client_arg_init(client_arg *a, const char *address,
                            const char *key, int mode, int expect) {
  memset(a, 0, sizeof *a);
  snprintf(a->address, sizeof a->address, "%s", address);
  if (key != NULL) {
    a->has_key = 1;
    a->keylen = strlen(key);
    memcpy(a->key, key, a->keylen);
  }
  a->mode = mode;
  a->expect = expect;
}

/* The child: connect, then echo every message until end of file. */
static int t_client(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  const client_arg *a = arg;
  mproc_client_opts o;
  memset(&o, 0, sizeof o);
  o.family = a->family;
  o.authkey = a->has_key ? a->key : NULL;
  o.authkey_len = a->keylen;
  o.strict_auth = a->strict;
  o.timeout = 10.0;
  mproc_connection *c = NULL;
  int r = mproc_client_connect(&c, a->address, &o);
  for (int i = 0; i < a->retries && r != a->expect; i++) {
    r = mproc_client_connect(&c, a->address, &o);
  }
  if (r != a->expect) {
    fprintf(stderr, "# client: connect to %s gave %s, expected %s\n",
            a->address, mproc_err_name(r), mproc_err_name(a->expect));
    return 10;
  }
  if (r != 0) {
    return 0;
  }
  if (a->mode == CL_ECHO) {
    for (;;) {
      void *buf = NULL;
      size_t n = 0;
      r = mproc_connection_recv_bytes(c, &buf, &n, MPROC_NOLIMIT);
      if (r == MPROC_EOF) {
        break;
      }
      if (r != 0) {
        fprintf(stderr, "# client: recv %s\n", mproc_err_name(r));
        return 11;
      }
      r = mproc_connection_send(c, buf, n);
      free(buf);
      if (r != 0) {
        fprintf(stderr, "# client: send %s\n", mproc_err_name(r));
        return 12;
      }
    }
  } else if (a->mode == CL_CONNECT_ONLY) {
    /* Wait for the server to hang up. */
    void *buf = NULL;
    size_t n = 0;
    r = mproc_connection_recv_bytes(c, &buf, &n, MPROC_NOLIMIT);
    free(buf);
  }
  mproc_connection_close(c);
  return 0;
}

/* Send messages of 0 B, 1 B, 16 KiB and 1 MiB to an echoing peer and
 * check each comes back intact. */
static void roundtrip(mproc_connection *c) {
  static const size_t sizes[] = {0, 1, 16384, 1 << 20};
  for (size_t k = 0; k < MPROC__ARRAY_SIZE(sizes); k++) {
    size_t n = sizes[k];
    unsigned char *b = malloc(n + 1);
    ASSERT_NOT_NULL(b);
    test_fill(b, n, 77 + k);
    ASSERT_OK(mproc_connection_send(c, b, n));
    void *got = NULL;
    size_t glen = 99;
    ASSERT_OK(mproc_connection_recv_bytes(c, &got, &glen, MPROC_NOLIMIT));
    ASSERT_UEQ(glen, n);
    ASSERT(test_check_fill(got, n, 77 + k));
    free(got);
    free(b);
  }
}

/* A listener, an echoing child client, a round trip, both closed.  With
 * a short handshake_timeout a child slowed down by a busy machine may
 * miss it: the child then connects again, and the stalled attempts are
 * skipped. */
static void serve_echo(mproc_listener *l, const char *key) {
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  client_arg a;
  client_arg_init(&a, addr, key, CL_ECHO, 0);
  a.retries = 20;
  mproc_process *p = test_start_proc(t_client, &a, sizeof a);
  mproc_connection *c = NULL;
  int r = mproc_listener_accept(l, &c, 30.0);
  for (int i = 0; i < a.retries && r == MPROC_ESTALLED; i++) {
    r = mproc_listener_accept(l, &c, 30.0);
  }
  ASSERT_OK(r);
  roundtrip(c);
  ASSERT_OK(mproc_connection_close(c));
  ASSERT_EQ(test_finish_proc(p), 0);
}

static mproc_listener *listen_on(int family, const char *address,
                                 const char *key) {
  mproc_listener_opts o;
  memset(&o, 0, sizeof o);
  o.family = family;
  o.address = address;
  if (key != NULL) {
    o.authkey = key;
    o.authkey_len = strlen(key);
  }
  mproc_listener *l = NULL;
  ASSERT_OK(mproc_listener_new(&l, &o));
  ASSERT_NOT_NULL(l);
  return l;
}

/* ---- raw peers: Python's framing by hand ---- */

static int raw_connect(const char *address) {
  mproc__sockaddr sa;
  const char *colon = strrchr(address, ':');
  if (address[0] == '/') {
    ASSERT_OK(mproc__sockaddr_unix(&sa, address));
  } else {
    char host[64];
    ASSERT_NOT_NULL(colon);
    snprintf(host, sizeof host, "%.*s", (int)(colon - address), address);
    ASSERT_OK(mproc__sockaddr_inet(&sa, host, colon + 1, 0));
  }
  int fd = mproc__net_connect(&sa, NULL);
  ASSERT_GE(fd, 3);
  return fd;
}

/* One frame; 1 if sent, 0 if the peer is gone. */
static int raw_send(int fd, const void *buf, size_t n) {
  unsigned char hdr[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                          (unsigned char)(n >> 8), (unsigned char)n};
  if (send(fd, hdr, 4, MSG_NOSIGNAL) != 4) {
    return 0;
  }
  return n == 0 || send(fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n;
}

/* One frame of at most cap bytes; its length, or -1 at end of file. */
static ssize_t raw_recv(int fd, void *buf, size_t cap) {
  unsigned char hdr[4];
  ssize_t r = mproc__read_full(fd, hdr, 4);
  if (r != 4) {
    return -1;
  }
  size_t n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 |
             (size_t)hdr[2] << 8 | hdr[3];
  ASSERT_LE(n, cap);
  ASSERT_EQ(mproc__read_full(fd, buf, n), (ssize_t)n);
  return (ssize_t)n;
}

static void hmac_md5(const char *key, const void *msg, size_t n,
                     unsigned char out[16]) {
  unsigned int len = 0;
  ASSERT_NOT_NULL(HMAC(EVP_md5(), key, (int)strlen(key), msg, n, out, &len));
  ASSERT_EQ(len, 16);
}

/* ==================== Unix ==================== */

TEST_IMPL(listener_unix_default_address) {
  for (int keyed = 0; keyed < 2; keyed++) {
    mproc_listener *l = listen_on(MPROC_AF_DEFAULT, NULL, keyed ? key_a : NULL);
    char addr[256];
    int n = mproc_listener_address(l, addr, sizeof addr);
    ASSERT_GT(n, 0);
    ASSERT_EQ(n, strlen(addr));
    /* A socket in a new 0700 directory of ours. */
    struct stat st;
    ASSERT_EQ(lstat(addr, &st), 0);
    ASSERT(S_ISSOCK(st.st_mode));
    char dir[256];
    snprintf(dir, sizeof dir, "%s", addr);
    *strrchr(dir, '/') = '\0';
    ASSERT_EQ(stat(dir, &st), 0);
    ASSERT(S_ISDIR(st.st_mode));
    ASSERT_EQ(st.st_mode & 0777, 0700);
    ASSERT_EQ(st.st_uid, geteuid());
    ASSERT_GE(mproc_listener_fileno(l), 3);

    serve_echo(l, keyed ? key_a : NULL);
    ASSERT_OK(mproc_listener_close(l));
    ASSERT(!path_exists(addr));
    ASSERT(!path_exists(dir));
  }
  /* MPROC_AF_UNIX with no address is the same private kind. */
  mproc_listener *l = listen_on(MPROC_AF_UNIX, NULL, NULL);
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  ASSERT_EQ(addr[0], '/');
  ASSERT_OK(mproc_listener_close(l));
  ASSERT(!path_exists(addr));
  return 0;
}

TEST_IMPL(listener_unix_given_path) {
  char dir[64], path[128];
  make_test_dir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/sock", dir);
  for (int keyed = 0; keyed < 2; keyed++) {
    mproc_listener *l = listen_on(MPROC_AF_DEFAULT, path, keyed ? key_a : NULL);
    char addr[256];
    ASSERT_EQ(mproc_listener_address(l, addr, sizeof addr), strlen(path));
    ASSERT_STR_EQ(addr, path);
    /* Too small a buffer. */
    ASSERT_ERR(mproc_listener_address(l, addr, strlen(path)),
               MPROC_ENAMETOOLONG);
    serve_echo(l, keyed ? key_a : NULL);
    ASSERT_OK(mproc_listener_close(l));
    /* The socket is gone, the caller's directory stays. */
    ASSERT(!path_exists(path));
    ASSERT(path_exists(dir));
  }
  ASSERT_EQ(rmdir(dir), 0);
  return 0;
}

TEST_IMPL(listener_unix_path_rules) {
  mproc_listener_opts o;
  memset(&o, 0, sizeof o);
  mproc_listener *l = (mproc_listener *)1;
  /* Abstract names: "\0x" (empty as a C string) and "@x". */
  const char *abstract[] = {"\0x", "@x", "@"};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(abstract); i++) {
    o.address = abstract[i];
    o.family = MPROC_AF_DEFAULT;
    ASSERT_ERR(mproc_listener_new(&l, &o), MPROC_EINVAL);
    ASSERT_NULL(l);
    o.family = MPROC_AF_UNIX;
    ASSERT_ERR(mproc_listener_new(&l, &o), MPROC_EINVAL);
    mproc_connection *c = (mproc_connection *)1;
    ASSERT_ERR(mproc_client_connect(&c, abstract[i], NULL), MPROC_EINVAL);
    ASSERT_NULL(c);
  }
  /* Longer than sun_path. */
  char dir[64], longp[300];
  make_test_dir(dir, sizeof dir);
  snprintf(longp, sizeof longp, "%s/%0200d", dir, 0);
  o.family = MPROC_AF_UNIX;
  o.address = longp;
  ASSERT_ERR(mproc_listener_new(&l, &o), MPROC_ENAMETOOLONG);
  /* A directory others can reach: refused unless allowed. */
  char path[128];
  snprintf(path, sizeof path, "%s/sock", dir);
  ASSERT_EQ(chmod(dir, 0777), 0);
  o.address = path;
  ASSERT_ERR(mproc_listener_new(&l, &o), MPROC_EACCES);
  ASSERT_EQ(chmod(dir, 0750), 0);
  ASSERT_ERR(mproc_listener_new(&l, &o), MPROC_EACCES);
  ASSERT_EQ(chmod(dir, 0701), 0);
  ASSERT_ERR(mproc_listener_new(&l, &o), MPROC_EACCES);
  ASSERT(!path_exists(path));
  o.allow_other_users = 1;
  ASSERT_OK(mproc_listener_new(&l, &o));
  ASSERT(path_exists(path));
  ASSERT_OK(mproc_listener_close(l));
  ASSERT(!path_exists(path));
  o.allow_other_users = 0;
  ASSERT_EQ(chmod(dir, 0700), 0);
  /* A directory of another owner (only root can make one here). */
  if (geteuid() == 0) {
    ASSERT_EQ(chown(dir, 65534, 65534), 0);
    ASSERT_ERR(mproc_listener_new(&l, &o), MPROC_EACCES);
    ASSERT_EQ(chown(dir, 0, 0), 0);
  }
  /* A missing directory. */
  char missing[128];
  snprintf(missing, sizeof missing, "%s/nodir/sock", dir);
  o.address = missing;
  ASSERT_ERR(mproc_listener_new(&l, &o), MPROC_ENOENT);
  /* Not a socket path at all: a client to a missing path. */
  mproc_connection *c = NULL;
  ASSERT_ERR(mproc_client_connect(&c, path, NULL), MPROC_ENOENT);
  ASSERT_EQ(rmdir(dir), 0);
  return 0;
}

TEST_IMPL(listener_unix_second_bind) {
  mproc_listener *l = listen_on(MPROC_AF_DEFAULT, NULL, NULL);
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  mproc_listener_opts o;
  memset(&o, 0, sizeof o);
  o.address = addr;
  mproc_listener *l2 = NULL;
  ASSERT_ERR(mproc_listener_new(&l2, &o), MPROC_EADDRINUSE);
  ASSERT_NULL(l2);
  /* The failed listener removed nothing of the first. */
  ASSERT(path_exists(addr));
  ASSERT_OK(mproc_listener_close(l));
  ASSERT(!path_exists(addr));
  return 0;
}

/* A child closing its inherited copy removes nothing (only the creating
 * process does). */
static mproc_listener *inherited;
static int t_close_inherited(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)arg;
  (void)len;
  return mproc_listener_close(inherited) == 0 ? 0 : 1;
}

TEST_IMPL(listener_unix_child_close_keeps_socket) {
  inherited = listen_on(MPROC_AF_DEFAULT, NULL, NULL);
  char addr[256];
  ASSERT_GT(mproc_listener_address(inherited, addr, sizeof addr), 0);
  ASSERT_EQ(test_run_proc(t_close_inherited, NULL, 0), 0);
  ASSERT(path_exists(addr));
  serve_echo(inherited, NULL);
  ASSERT_OK(mproc_listener_close(inherited));
  ASSERT(!path_exists(addr));
  return 0;
}

/* A listener whose socket was replaced removes only its own socket. */
TEST_IMPL(listener_unix_close_spares_replaced_socket) {
  char dir[64], path[128];
  make_test_dir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/sock", dir);
  mproc_listener *l = listen_on(MPROC_AF_UNIX, path, NULL);
  ASSERT_EQ(unlink(path), 0);
  mproc_listener *l2 = listen_on(MPROC_AF_UNIX, path, NULL);
  ASSERT_OK(mproc_listener_close(l));
  ASSERT(path_exists(path));
  ASSERT_OK(mproc_listener_close(l2));
  ASSERT(!path_exists(path));
  ASSERT_EQ(rmdir(dir), 0);
  return 0;
}

/* SO_PEERCRED: a peer of another uid is refused (root only: it takes a
 * setuid child, and a socket that uid can reach). */
static int t_connect_as_nobody(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  if (setgid(65534) != 0 || setuid(65534) != 0) {
    return 20;
  }
  mproc_client_opts o;
  memset(&o, 0, sizeof o);
  o.timeout = 10;
  mproc_connection *c = NULL;
  int r = mproc_client_connect(&c, (const char *)arg, &o);
  if (r != 0) {
    fprintf(stderr, "# nobody: connect %s\n", mproc_err_name(r));
    return 21;
  }
  /* The server closes at once. */
  void *buf = NULL;
  size_t n = 0;
  r = mproc_connection_recv_bytes(c, &buf, &n, MPROC_NOLIMIT);
  mproc_connection_close(c);
  return r == MPROC_EOF || r == MPROC_ECONNRESET ? 0 : 22;
}

TEST_IMPL(listener_unix_refuses_other_uid) {
  if (geteuid() != 0) {
    printf("# skip: needs root to run a client of another uid\n");
    return TEST_SKIP;
  }
  mproc_listener *l = listen_on(MPROC_AF_DEFAULT, NULL, NULL);
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  /* Open the way for uid 65534, behind the listener's back. */
  char dir[256];
  snprintf(dir, sizeof dir, "%s", addr);
  *strrchr(dir, '/') = '\0';
  ASSERT_EQ(chmod(dir, 0755), 0);
  ASSERT_EQ(chmod(addr, 0777), 0);
  mproc_process *p = test_start_proc(t_connect_as_nobody, addr,
                                     strlen(addr) + 1);
  mproc_connection *c = NULL;
  ASSERT_ERR(mproc_listener_accept(l, &c, 30.0), MPROC_EACCES);
  ASSERT_NULL(c);
  ASSERT_EQ(test_finish_proc(p), 0);
  /* The listener still serves its own user. */
  serve_echo(l, NULL);
  ASSERT_OK(mproc_listener_close(l));
  ASSERT(!path_exists(addr));
  ASSERT(!path_exists(dir));
  return 0;
}

/* ==================== TCP ==================== */

TEST_IMPL(listener_tcp_loopback) {
  for (int keyed = 0; keyed < 2; keyed++) {
    /* MPROC_AF_INET with no address: 127.0.0.1 and a free port. */
    mproc_listener *l = listen_on(MPROC_AF_INET, NULL, keyed ? key_a : NULL);
    char addr[256];
    int n = mproc_listener_address(l, addr, sizeof addr);
    ASSERT_GT(n, 0);
    ASSERT(strncmp(addr, "127.0.0.1:", 10) == 0);
    long port = strtol(addr + 10, NULL, 10);
    ASSERT_GT(port, 0);
    ASSERT_LE(port, 65535);
    serve_echo(l, keyed ? key_a : NULL);

    /* A second bind of the same address. */
    mproc_listener_opts o;
    memset(&o, 0, sizeof o);
    o.address = addr;
    mproc_listener *l2 = NULL;
    ASSERT_ERR(mproc_listener_new(&l2, &o), MPROC_EADDRINUSE);
    ASSERT_OK(mproc_listener_close(l));
  }
  /* An address given as host:port with port 0, and a name. */
  mproc_listener *l = listen_on(MPROC_AF_DEFAULT, "localhost:0", NULL);
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  ASSERT(strncmp(addr, "127.", 4) == 0);
  serve_echo(l, NULL);
  ASSERT_OK(mproc_listener_close(l));
  return 0;
}

TEST_IMPL(listener_tcp_ipv6_loopback) {
  mproc_listener_opts o;
  memset(&o, 0, sizeof o);
  o.address = "[::1]:0";
  o.authkey = key_a;
  o.authkey_len = strlen(key_a);
  mproc_listener *l = NULL;
  int r = mproc_listener_new(&l, &o);
  if (r == MPROC_EADDRNOTAVAIL || r == MPROC_EAFNOSUPPORT) {
    printf("# skip: no IPv6 loopback (%s)\n", mproc_err_name(r));
    return TEST_SKIP;
  }
  ASSERT_OK(r);
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  ASSERT(strncmp(addr, "[::1]:", 6) == 0);
  ASSERT_GT(strtol(addr + 6, NULL, 10), 0);
  serve_echo(l, key_a);
  ASSERT_OK(mproc_listener_close(l));
  return 0;
}

TEST_IMPL(listener_bad_addresses) {
  mproc_listener_opts o;
  memset(&o, 0, sizeof o);
  mproc_listener *l = NULL;
  mproc_connection *c = NULL;
  /* Family AF_INET needs host:port. */
  o.family = MPROC_AF_INET;
  const char *bad_inet[] = {"/tmp/x", "localhost", "127.0.0.1:", ":80",
                            "127.0.0.1:65536", "127.0.0.1:8x", "[::1]",
                            "[]:80", "[nonsense]:80", "1.2.3:80x"};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(bad_inet); i++) {
    o.address = bad_inet[i];
    int r = mproc_listener_new(&l, &o);
    if (r != MPROC_EINVAL) {
      fprintf(stderr, "# %s: %s\n", bad_inet[i], mproc_err_name(r));
    }
    ASSERT_ERR(r, MPROC_EINVAL);
  }
  o.family = 7;
  o.address = NULL;
  ASSERT_ERR(mproc_listener_new(&l, &o), MPROC_EINVAL);
  o.family = 0;
  o.backlog = -1;
  ASSERT_ERR(mproc_listener_new(&l, &o), MPROC_EINVAL);
  o.backlog = 0;
  o.authkey_len = 3; /* with no key */
  ASSERT_ERR(mproc_listener_new(&l, &o), MPROC_EINVAL);
  ASSERT_ERR(mproc_listener_new(NULL, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_client_connect(&c, NULL, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_client_connect(NULL, "/x", NULL), MPROC_EINVAL);
  mproc_client_opts co;
  memset(&co, 0, sizeof co);
  co.family = MPROC_AF_INET;
  ASSERT_ERR(mproc_client_connect(&c, "/tmp/x", &co), MPROC_EINVAL);
  ASSERT_ERR(mproc_listener_accept(NULL, &c, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_listener_address(NULL, NULL, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_listener_fileno(NULL), MPROC_EINVAL);
  ASSERT_OK(mproc_listener_close(NULL));

  /* Nobody listening on a port that was just free. */
  mproc_listener *t = listen_on(MPROC_AF_INET, NULL, NULL);
  char addr[64];
  ASSERT_GT(mproc_listener_address(t, addr, sizeof addr), 0);
  ASSERT_OK(mproc_listener_close(t));
  ASSERT_ERR(mproc_client_connect(&c, addr, NULL), MPROC_ECONNREFUSED);
  ASSERT_NULL(c);
  return 0;
}

/* ==================== accept ==================== */

TEST_IMPL(listener_accept_timeout) {
  mproc_listener *l = listen_on(MPROC_AF_DEFAULT, NULL, NULL);
  mproc_connection *c = NULL;
  double t0 = test_now();
  ASSERT_ERR(mproc_listener_accept(l, &c, 0.2), MPROC_ETIMEDOUT);
  double dt = test_now() - t0;
  ASSERT_DBL_GE(dt, 0.2);
  ASSERT_DBL_LE(dt, 0.2 + test_slack());
  ASSERT_NULL(c);
  /* A poll. */
  t0 = test_now();
  ASSERT_ERR(mproc_listener_accept(l, &c, 0), MPROC_ETIMEDOUT);
  ASSERT_DBL_LE(test_now() - t0, test_slack());
  ASSERT_OK(mproc_listener_close(l));
  return 0;
}

TEST_IMPL(listener_client_closes_before_accept) {
  for (int keyed = 0; keyed < 2; keyed++) {
    for (int tcp = 0; tcp < 2; tcp++) {
      mproc_listener *l = listen_on(tcp ? MPROC_AF_INET : MPROC_AF_DEFAULT,
                                    NULL, keyed ? key_a : NULL);
      char addr[256];
      ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
      /* Connected and gone before the server accepts. */
      int fd = raw_connect(addr);
      close(fd);
      mproc_connection *c = NULL;
      int r = mproc_listener_accept(l, &c, 10.0);
      if (keyed) {
        /* The handshake was cut. */
        ASSERT_ERR(r, MPROC_ECONNRESET);
        ASSERT_NULL(c);
      } else {
        /* Python: accept works, then recv raises EOFError. */
        ASSERT_OK(r);
        void *buf = NULL;
        size_t n = 0;
        ASSERT_ERR(mproc_connection_recv_bytes(c, &buf, &n, 100), MPROC_EOF);
        ASSERT_OK(mproc_connection_close(c));
      }
      /* And the listener goes on. */
      serve_echo(l, keyed ? key_a : NULL);
      ASSERT_OK(mproc_listener_close(l));
    }
  }
  return 0;
}

/* ==================== authentication ==================== */

TEST_IMPL(listener_wrong_key) {
  for (int tcp = 0; tcp < 2; tcp++) {
    mproc_listener *l =
        listen_on(tcp ? MPROC_AF_INET : MPROC_AF_DEFAULT, NULL, key_a);
    char addr[256];
    ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
    client_arg a;
    client_arg_init(&a, addr, key_b, CL_ECHO, MPROC_EAUTH);
    mproc_process *p = test_start_proc(t_client, &a, sizeof a);
    mproc_connection *c = NULL;
    ASSERT_ERR(mproc_listener_accept(l, &c, 30.0), MPROC_EAUTH);
    ASSERT_NULL(c);
    ASSERT_EQ(test_finish_proc(p), 0);
    /* And the right key still works afterwards. */
    serve_echo(l, key_a);
    ASSERT_OK(mproc_listener_close(l));
  }
  /* An empty key is a key (Python 3.13): it works against itself and
   * is refused against a non-empty one. */
  mproc_listener_opts o;
  memset(&o, 0, sizeof o);
  o.authkey = "";
  o.authkey_len = 0;
  mproc_listener *l = NULL;
  ASSERT_OK(mproc_listener_new(&l, &o));
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  client_arg a;
  client_arg_init(&a, addr, "", CL_ECHO, 0);
  a.has_key = 1;
  mproc_process *p = test_start_proc(t_client, &a, sizeof a);
  mproc_connection *c = NULL;
  ASSERT_OK(mproc_listener_accept(l, &c, 30.0));
  roundtrip(c);
  ASSERT_OK(mproc_connection_close(c));
  ASSERT_EQ(test_finish_proc(p), 0);
  client_arg_init(&a, addr, key_a, CL_ECHO, MPROC_EAUTH);
  p = test_start_proc(t_client, &a, sizeof a);
  ASSERT_ERR(mproc_listener_accept(l, &c, 30.0), MPROC_EAUTH);
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_OK(mproc_listener_close(l));
  return 0;
}

/* A client that connects and never speaks is reported as stalled
 * (MPROC_ESTALLED, not the MPROC_ETIMEDOUT of "nobody came") at its
 * handshake deadline; the next real client is served. */
TEST_IMPL(listener_silent_client_times_out) {
  mproc_listener_opts o;
  memset(&o, 0, sizeof o);
  o.authkey = key_a;
  o.authkey_len = strlen(key_a);
  o.handshake_timeout = 0.3;
  mproc_listener *l = NULL;
  ASSERT_OK(mproc_listener_new(&l, &o));
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  int fd = raw_connect(addr);
  mproc_connection *c = NULL;
  double t0 = test_now();
  ASSERT_ERR(mproc_listener_accept(l, &c, MPROC_FOREVER), MPROC_ESTALLED);
  double dt = test_now() - t0;
  ASSERT_DBL_GE(dt, 0.3);
  ASSERT_DBL_LE(dt, 0.3 + test_slack());
  ASSERT_NULL(c);
  /* The silent client was hung up on. */
  unsigned char buf[256];
  ASSERT_EQ(raw_recv(fd, buf, sizeof buf), 59);
  ASSERT_EQ(raw_recv(fd, buf, sizeof buf), -1);
  close(fd);
  serve_echo(l, key_a);
  ASSERT_OK(mproc_listener_close(l));
  return 0;
}

/* A client trickling a byte at a time: the deadline covers the whole
 * handshake, not each read. */
TEST_IMPL(listener_trickling_client_times_out) {
  mproc_listener_opts o;
  memset(&o, 0, sizeof o);
  o.address = "127.0.0.1:0";
  o.authkey = key_a;
  o.authkey_len = strlen(key_a);
  o.handshake_timeout = 0.4;
  mproc_listener *l = NULL;
  ASSERT_OK(mproc_listener_new(&l, &o));
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  int fd = raw_connect(addr);
  pid_t pid = test_fork();
  if (pid == 0) {
    /* A 40-byte answer announced, sent a byte every 50 ms. */
    unsigned char hdr[4] = {0, 0, 0, 40};
    for (int i = 0; i < 4; i++) {
      if (send(fd, hdr + i, 1, MSG_NOSIGNAL) != 1) {
        _exit(0);
      }
      test_sleep(0.05);
    }
    for (int i = 0; i < 40; i++) {
      if (send(fd, "x", 1, MSG_NOSIGNAL) != 1) {
        _exit(0);
      }
      test_sleep(0.05);
    }
    _exit(0);
  }
  close(fd);
  mproc_connection *c = NULL;
  double t0 = test_now();
  ASSERT_ERR(mproc_listener_accept(l, &c, 10.0), MPROC_ESTALLED);
  double dt = test_now() - t0;
  ASSERT_DBL_GE(dt, 0.4);
  ASSERT_DBL_LE(dt, 0.4 + test_slack());
  ASSERT_EQ(test_wait_pid(pid, 30.0), 0);
  ASSERT_OK(mproc_listener_close(l));
  return 0;
}

/* Pre-authentication, a message is capped at 256 bytes from its header:
 * a 2^40-byte announcement is refused without reading or allocating it,
 * and the client is told #FAILURE#. */
TEST_IMPL(listener_huge_header_refused) {
  static const uint64_t lens[] = {UINT64_C(1) << 40, 257, UINT64_MAX};
  for (size_t k = 0; k < MPROC__ARRAY_SIZE(lens); k++) {
    mproc_listener *l = listen_on(MPROC_AF_DEFAULT, NULL, key_a);
    char addr[256];
    ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
    int fd = raw_connect(addr);
    unsigned char hdr[12];
    size_t hl = mproc__frame_make_header(hdr, lens[k]);
    ASSERT_EQ(send(fd, hdr, hl, MSG_NOSIGNAL), (ssize_t)hl);
    mproc_connection *c = NULL;
    ASSERT_ERR(mproc_listener_accept(l, &c, 10.0), MPROC_EAUTH);
    unsigned char buf[256];
    ASSERT_EQ(raw_recv(fd, buf, sizeof buf), 59);
    ASSERT_EQ(raw_recv(fd, buf, sizeof buf), 9);
    ASSERT(memcmp(buf, "#FAILURE#", 9) == 0);
    close(fd);
    serve_echo(l, key_a);
    ASSERT_OK(mproc_listener_close(l));
  }
  /* A malformed header (negative, not -1). */
  mproc_listener *l = listen_on(MPROC_AF_DEFAULT, NULL, key_a);
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  int fd = raw_connect(addr);
  unsigned char neg[4] = {0x80, 0, 0, 1};
  ASSERT_EQ(send(fd, neg, 4, MSG_NOSIGNAL), 4);
  mproc_connection *c = NULL;
  ASSERT_ERR(mproc_listener_accept(l, &c, 10.0), MPROC_EAUTH);
  close(fd);
  ASSERT_OK(mproc_listener_close(l));
  return 0;
}

/* OtherTest: a bogus answer and a bogus welcome are refused. */
TEST_IMPL(listener_bogus_peer) {
  mproc_listener *l = listen_on(MPROC_AF_DEFAULT, NULL, key_a);
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  /* A client answering with something that is no digest. */
  int fd = raw_connect(addr);
  ASSERT(raw_send(fd, "something bogus", 15));
  mproc_connection *c = NULL;
  ASSERT_ERR(mproc_listener_accept(l, &c, 10.0), MPROC_EAUTH);
  unsigned char buf[256];
  ASSERT_EQ(raw_recv(fd, buf, sizeof buf), 59);
  ASSERT_EQ(raw_recv(fd, buf, sizeof buf), 9);
  ASSERT(memcmp(buf, "#FAILURE#", 9) == 0);
  close(fd);
  ASSERT_OK(mproc_listener_close(l));
  return 0;
}

/* A server that welcomes anything: the mproc client still refuses it
 * when its own challenge is answered wrongly, and refuses a bogus
 * welcome. */
typedef struct fake_server {
  int lfd;
  int mode; /* 0: bogus welcome; 1: legacy server; 2: wrong answer */
  int result; /* what the peer did: 1 = welcomed us */
} fake_server;

static void *fake_server_main(void *arg) {
  fake_server *s = arg;
  int fd = mproc__net_accept(s->lfd, NULL);
  if (fd < 0) {
    return (void *)1;
  }
  unsigned char buf[256];
  if (s->mode == 1) {
    /* Python <= 3.11: 20 random bytes, raw HMAC-MD5 both ways. */
    unsigned char chal[31], mac[16];
    memcpy(chal, "#CHALLENGE#", 11);
    for (int i = 0; i < 20; i++) {
      chal[11 + i] = (unsigned char)(i * 13 + 1);
    }
    raw_send(fd, chal, 31);
    ssize_t n = raw_recv(fd, buf, sizeof buf);
    hmac_md5(key_a, chal + 11, 20, mac);
    int ok = n == 16 && memcmp(buf, mac, 16) == 0;
    raw_send(fd, ok ? "#WELCOME#" : "#FAILURE#", 9);
    if (ok) {
      /* Our turn to answer the client's challenge. */
      n = raw_recv(fd, buf, sizeof buf);
      if (n >= 11 + 20) {
        hmac_md5(key_a, buf + 11, (size_t)n - 11, mac);
        raw_send(fd, mac, 16);
        n = raw_recv(fd, buf, sizeof buf);
        s->result = n == 9 && memcmp(buf, "#WELCOME#", 9) == 0;
        if (s->result) {
          /* One echo. */
          n = raw_recv(fd, buf, sizeof buf);
          if (n >= 0) {
            raw_send(fd, buf, (size_t)n);
          }
        }
      }
    }
  } else {
    /* A modern challenge, then a welcome whatever the answer. */
    unsigned char chal[59];
    memcpy(chal, "#CHALLENGE#{sha256}", 19);
    memset(chal + 19, 7, 40);
    raw_send(fd, chal, 59);
    (void)raw_recv(fd, buf, sizeof buf);
    if (s->mode == 0) {
      raw_send(fd, "#WELCOME!", 9);
    } else {
      raw_send(fd, "#WELCOME#", 9);
      ssize_t n = raw_recv(fd, buf, sizeof buf);
      /* Answer the client's challenge with a wrong MAC. */
      unsigned char ans[40];
      memcpy(ans, "{sha256}", 8);
      memset(ans + 8, 0, 32);
      (void)n;
      raw_send(fd, ans, 40);
      n = raw_recv(fd, buf, sizeof buf);
      s->result = n == 9 && memcmp(buf, "#FAILURE#", 9) == 0 ? 2 : 0;
    }
  }
  /* Wait for the client to hang up. */
  while (raw_recv(fd, buf, sizeof buf) >= 0) {
  }
  close(fd);
  return NULL;
}

static int fake_listen(char *addr, size_t cap) {
  mproc__sockaddr sa;
  ASSERT_OK(mproc__sockaddr_inet(&sa, "127.0.0.1", "0", 0));
  int lfd = mproc__net_listen(&sa, 4);
  ASSERT_GE(lfd, 3);
  mproc__sockaddr bound;
  ASSERT_OK(mproc__net_sockname(lfd, &bound));
  ASSERT_GT(mproc__sockaddr_format(&bound, addr, cap), 0);
  return lfd;
}

static int fake_client(int mode, int strict, mproc_connection **out,
                       fake_server *s) {
  char addr[64];
  s->lfd = fake_listen(addr, sizeof addr);
  s->mode = mode;
  s->result = 0;
  pthread_t th;
  ASSERT_OK(pthread_create(&th, NULL, fake_server_main, s));
  mproc_client_opts o;
  memset(&o, 0, sizeof o);
  o.authkey = key_a;
  o.authkey_len = strlen(key_a);
  o.strict_auth = strict;
  o.timeout = 10;
  int r = mproc_client_connect(out, addr, &o);
  if (r == 0 && mode == 1) {
    ASSERT_OK(mproc_connection_send(*out, "ping", 4));
    void *b = NULL;
    size_t n = 0;
    ASSERT_OK(mproc_connection_recv_bytes(*out, &b, &n, 100));
    ASSERT_EQ(n, 4);
    ASSERT(memcmp(b, "ping", 4) == 0);
    free(b);
  }
  mproc_connection_close(*out);
  *out = NULL;
  void *ret;
  ASSERT_OK(pthread_join(th, &ret));
  ASSERT_NULL(ret);
  close(s->lfd);
  return r;
}

TEST_IMPL(listener_client_refuses_bogus_server) {
  mproc_connection *c = NULL;
  fake_server s;
  ASSERT_ERR(fake_client(0, 0, &c, &s), MPROC_EAUTH);
  ASSERT_ERR(fake_client(2, 0, &c, &s), MPROC_EAUTH);
  ASSERT_EQ(s.result, 2); /* and it told the server #FAILURE# */
  return 0;
}

/* Python <= 3.11 as the server: the default client speaks the legacy
 * form; a strict one refuses it. */
TEST_IMPL(listener_client_legacy_server) {
  mproc_connection *c = NULL;
  fake_server s;
  ASSERT_OK(fake_client(1, 0, &c, &s));
  ASSERT_EQ(s.result, 1);
  ASSERT_ERR(fake_client(1, 1, &c, &s), MPROC_EAUTH);
  ASSERT_EQ(s.result, 0);
  return 0;
}

/* Python <= 3.11 as the client: a raw HMAC-MD5 of the modern challenge
 * (prefix included) is accepted by default and refused when strict; the
 * server's own answer to a legacy challenge is a raw HMAC-MD5. */
TEST_IMPL(listener_legacy_client) {
  for (int strict = 0; strict < 2; strict++) {
    mproc_listener_opts o;
    memset(&o, 0, sizeof o);
    o.authkey = key_a;
    o.authkey_len = strlen(key_a);
    o.strict_auth = strict;
    mproc_listener *l = NULL;
    ASSERT_OK(mproc_listener_new(&l, &o));
    char addr[256];
    ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
    pid_t pid = test_fork();
    if (pid == 0) {
      int fd = raw_connect(addr);
      unsigned char buf[256], mac[16];
      ssize_t n = raw_recv(fd, buf, sizeof buf);
      ASSERT_EQ(n, 59);
      ASSERT(memcmp(buf, "#CHALLENGE#{sha256}", 19) == 0);
      hmac_md5(key_a, buf + 11, 48, mac);
      ASSERT(raw_send(fd, mac, 16));
      n = raw_recv(fd, buf, sizeof buf);
      ASSERT_EQ(n, 9);
      if (strict) {
        ASSERT(memcmp(buf, "#FAILURE#", 9) == 0);
        _exit(0);
      }
      ASSERT(memcmp(buf, "#WELCOME#", 9) == 0);
      unsigned char chal[31];
      memcpy(chal, "#CHALLENGE#", 11);
      memset(chal + 11, 0x5a, 20);
      ASSERT(raw_send(fd, chal, 31));
      n = raw_recv(fd, buf, sizeof buf);
      ASSERT_EQ(n, 16);
      hmac_md5(key_a, chal + 11, 20, mac);
      ASSERT(memcmp(buf, mac, 16) == 0);
      ASSERT(raw_send(fd, "#WELCOME#", 9));
      n = raw_recv(fd, buf, sizeof buf);
      ASSERT_EQ(n, 5);
      ASSERT(raw_send(fd, buf, 5));
      close(fd);
      _exit(0);
    }
    mproc_connection *c = NULL;
    int r = mproc_listener_accept(l, &c, 30.0);
    if (strict) {
      ASSERT_ERR(r, MPROC_EAUTH);
    } else {
      ASSERT_OK(r);
      ASSERT_OK(mproc_connection_send(c, "hello", 5));
      void *b = NULL;
      size_t n = 0;
      ASSERT_OK(mproc_connection_recv_bytes(c, &b, &n, 100));
      ASSERT_EQ(n, 5);
      free(b);
      ASSERT_OK(mproc_connection_close(c));
    }
    ASSERT_EQ(test_wait_pid(pid, 30.0), 0);
    ASSERT_OK(mproc_listener_close(l));
  }
  return 0;
}

/* Strict on both sides is the modern handshake, and works. */
TEST_IMPL(listener_strict_both_sides) {
  mproc_listener_opts o;
  memset(&o, 0, sizeof o);
  o.authkey = key_a;
  o.authkey_len = strlen(key_a);
  o.strict_auth = 1;
  mproc_listener *l = NULL;
  ASSERT_OK(mproc_listener_new(&l, &o));
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  client_arg a;
  client_arg_init(&a, addr, key_a, CL_ECHO, 0);
  a.strict = 1;
  mproc_process *p = test_start_proc(t_client, &a, sizeof a);
  mproc_connection *c = NULL;
  ASSERT_OK(mproc_listener_accept(l, &c, 30.0));
  roundtrip(c);
  ASSERT_OK(mproc_connection_close(c));
  ASSERT_EQ(test_finish_proc(p), 0);
  ASSERT_OK(mproc_listener_close(l));
  return 0;
}

/* A client's timeout bounds a handshake with a server that never
 * speaks. */
TEST_IMPL(listener_client_timeout_silent_server) {
  char addr[64];
  int lfd = fake_listen(addr, sizeof addr);
  mproc_client_opts o;
  memset(&o, 0, sizeof o);
  o.authkey = key_a;
  o.authkey_len = strlen(key_a);
  o.timeout = 0.3;
  mproc_connection *c = NULL;
  double t0 = test_now();
  ASSERT_ERR(mproc_client_connect(&c, addr, &o), MPROC_ETIMEDOUT);
  double dt = test_now() - t0;
  ASSERT_DBL_GE(dt, 0.3);
  ASSERT_DBL_LE(dt, 0.3 + test_slack());
  ASSERT_NULL(c);
  close(lfd);
  return 0;
}

/* ==================== the pure handshake functions ==================== */

/* Hex to bytes; returns the byte count. */
static size_t unhex(const char *h, unsigned char *out) {
  size_t n = 0;
  for (; h[0] != '\0' && h[1] != '\0'; h += 2) {
    unsigned v = 0;
    ASSERT_EQ(sscanf(h, "%2x", &v), 1);
    out[n++] = (unsigned char)v;
  }
  return n;
}

/* ChallengeResponseTest, with answers computed by CPython 3.12's
 * _create_response(b'vector key', prefix + bytes(range(40))). */
TEST_IMPL(listener_auth_vectors) {
  static const struct {
    const char *prefix;
    const char *hex;
  } v[] = {
      {"{sha256}", "7b7368613235367df73562167db2b104e0183b98cd90dda3710eec4fed3"
                   "cc480b5dad28d7bc11398"},
      {"{md5}", "7b6d64357d48a6f158faec26b600d37a8fc17b5c9d"},
      {"{sha384}", "7b7368613338347d18618a23f15507d4a768eab7b76eb46913b0cf49e2"
                   "eb56f205d5f64d5d1d8667493fd762c4405052d40d828492ecb638"},
      {"{sha3_256}", "7b736861335f3235367db1d4c2604ea3c1651a86c5eb45f4beb9125"
                     "53d3e276353ad857065bda9e94a11"},
      {"{sha3_384}", "7b736861335f3338347da878ace1cb014a76170527385e570558ce3"
                     "3093a678f37713abe078be697cb703062a9b856a5a404800ba2477d7"
                     "1c441"},
  };
  const char *key = "vector key";
  size_t klen = strlen(key);
  unsigned char rnd[40];
  for (int i = 0; i < 40; i++) {
    rnd[i] = (unsigned char)i;
  }
  for (size_t k = 0; k < MPROC__ARRAY_SIZE(v); k++) {
    unsigned char msg[128], want[128], ans[MPROC__AUTH_ANSWER_MAX];
    size_t plen = strlen(v[k].prefix);
    memcpy(msg, "#CHALLENGE#", 11);
    memcpy(msg + 11, v[k].prefix, plen);
    memcpy(msg + 11 + plen, rnd, 40);
    size_t n = 11 + plen + 40;
    size_t wlen = unhex(v[k].hex, want);
    size_t alen = 0;
    ASSERT_OK(mproc__auth_answer(key, klen, msg, n, 0, ans, &alen));
    ASSERT_UEQ(alen, wlen);
    ASSERT(memcmp(ans, want, wlen) == 0);
    /* The deliverer accepts it; with another key, or one byte changed,
     * or one byte short, it does not. */
    ASSERT_OK(mproc__auth_verify(key, klen, msg + 11, n - 11, ans, alen, 0));
    ASSERT_ERR(mproc__auth_verify("other", 5, msg + 11, n - 11, ans, alen, 0),
               MPROC_EAUTH);
    ans[alen - 1] ^= 1;
    ASSERT_ERR(mproc__auth_verify(key, klen, msg + 11, n - 11, ans, alen, 0),
               MPROC_EAUTH);
    ans[alen - 1] ^= 1;
    ASSERT_ERR(
        mproc__auth_verify(key, klen, msg + 11, n - 11, ans, alen - 1, 0),
        MPROC_EAUTH);
    /* Strict: MD5 in any form is refused, the rest as before. */
    int is_md5 = strcmp(v[k].prefix, "{md5}") == 0;
    ASSERT_ERR(mproc__auth_answer(key, klen, msg, n, 1, ans, &alen),
               is_md5 ? MPROC_EAUTH : 0);
    if (!is_md5) {
      ASSERT_OK(
          mproc__auth_verify(key, klen, msg + 11, n - 11, ans, alen, 1));
    }
  }
  /* Legacy: a 20-byte challenge, a raw 16-byte HMAC-MD5. */
  unsigned char msg[31], want[16], ans[MPROC__AUTH_ANSWER_MAX];
  memcpy(msg, "#CHALLENGE#", 11);
  memcpy(msg + 11, rnd, 20);
  ASSERT_EQ(unhex("e6edd04eacf06eec5a63d91e4ff7c178", want), 16);
  size_t alen = 0;
  ASSERT_OK(mproc__auth_answer(key, klen, msg, 31, 0, ans, &alen));
  ASSERT_UEQ(alen, 16);
  ASSERT(memcmp(ans, want, 16) == 0);
  ASSERT_OK(mproc__auth_verify(key, klen, msg + 11, 20, ans, 16, 0));
  ASSERT_ERR(mproc__auth_verify(key, klen, msg + 11, 20, ans, 16, 1),
             MPROC_EAUTH);
  ASSERT_ERR(mproc__auth_answer(key, klen, msg, 31, 1, ans, &alen),
             MPROC_EAUTH);
  /* An empty key is a key. */
  unsigned char mine[64];
  size_t mlen = mproc__auth_make_challenge(mine, rnd);
  ASSERT_UEQ(mlen, 59);
  ASSERT(memcmp(mine, "#CHALLENGE#{sha256}", 19) == 0);
  ASSERT(memcmp(mine + 19, rnd, 40) == 0);
  unsigned char want_empty[40];
  ASSERT_EQ(unhex("7b7368613235367dd18b190a737f779d3125c4a2dfddcebf933e2f2713"
                  "bc92fbe386ca25df9fd7af",
                  want_empty),
            40);
  ASSERT_OK(mproc__auth_answer(NULL, 0, mine, mlen, 0, ans, &alen));
  ASSERT_UEQ(alen, 40);
  ASSERT(memcmp(ans, want_empty, 40) == 0);
  return 0;
}

/* Python's error conditions, each MPROC_EAUTH. */
TEST_IMPL(listener_auth_malformed) {
  unsigned char ans[MPROC__AUTH_ANSWER_MAX];
  size_t alen = 99;
  const char *key = "k";
  static const struct {
    const char *msg;
    size_t len;
  } bad[] = {
      {"", 0},
      {"#CHALLENGE", 10},                   /* no #CHALLENGE# */
      {"#WELCOME#0123456789012345678901", 31},
      {"#CHALLENGE#0123456789012345678", 30}, /* 19 bytes: too short */
      {"#CHALLENGE#012345678901234567890", 32}, /* 21, no prefix */
      {"#CHALLENGE#{sha1}01234567890123456789", 37}, /* not allowed */
      {"#CHALLENGE#{SHA256}01234567890123456789", 39},
      {"#CHALLENGE#{sha256012345678901234567890", 39}, /* no brace */
      {"#CHALLENGE#{}0123456789012345678901", 35},
      {"#CHALLENGE#{sha3_2566}0123456789012345678", 41},
  };
  for (size_t k = 0; k < MPROC__ARRAY_SIZE(bad); k++) {
    ASSERT_ERR(mproc__auth_answer(key, 1, (const unsigned char *)bad[k].msg,
                                  bad[k].len, 0, ans, &alen),
               MPROC_EAUTH);
    ASSERT_UEQ(alen, 0);
  }
  /* Answers of the wrong shape. */
  unsigned char chal[48];
  memcpy(chal, "{sha256}", 8);
  memset(chal + 8, 3, 40);
  static const struct {
    const char *resp;
    size_t len;
  } wrong[] = {
      {"", 0},
      {"{sha256}", 8},
      {"01234567890123456789", 20}, /* legacy length, wrong MD5 length */
      {"{sha512}0123456789012345678901234567890123456789012345678901234567"
       "890123",
       72},
      {"{md5}0123456789abcdef0", 22},
  };
  for (size_t k = 0; k < MPROC__ARRAY_SIZE(wrong); k++) {
    ASSERT_ERR(mproc__auth_verify(key, 1, chal, 48,
                                  (const unsigned char *)wrong[k].resp,
                                  wrong[k].len, 0),
               MPROC_EAUTH);
  }
  ASSERT_OK(mproc__auth_check_reply((const unsigned char *)"#WELCOME#", 9));
  ASSERT_ERR(mproc__auth_check_reply((const unsigned char *)"#FAILURE#", 9),
             MPROC_EAUTH);
  ASSERT_ERR(mproc__auth_check_reply((const unsigned char *)"#WELCOME#!", 10),
             MPROC_EAUTH);
  ASSERT_ERR(mproc__auth_check_reply((const unsigned char *)"", 0),
             MPROC_EAUTH);
  return 0;
}

/* ==================== many clients at once ==================== */

/*
 * n silent peers connect first (and never speak), then an honest client.
 * The handshakes run concurrently, so the honest one is handed out as soon
 * as its own handshake is through, long before the silent peers' deadline
 * (30 s, which would be a runner timeout for a listener that took them one
 * at a time).  Only the silent peers pushed out by the cap on unfinished
 * handshakes come before it, as MPROC_ESTALLED.
 */
static void silent_then_honest(int tcp, size_t n, size_t cap) {
  mproc_listener_opts o;
  memset(&o, 0, sizeof o);
  o.family = tcp ? MPROC_AF_INET : MPROC_AF_DEFAULT;
  o.authkey = key_a;
  o.authkey_len = strlen(key_a);
  o.handshake_timeout = 30.0;
  o.max_pending = cap;
  mproc_listener *l = NULL;
  ASSERT_OK(mproc_listener_new(&l, &o));
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  int *silent = malloc(n * sizeof *silent);
  ASSERT_NOT_NULL(silent);
  for (size_t i = 0; i < n; i++) {
    silent[i] = raw_connect(addr);
  }
  client_arg a;
  client_arg_init(&a, addr, key_a, CL_ECHO, 0);
  mproc_process *p = test_start_proc(t_client, &a, sizeof a);
  size_t effective_cap = cap == 0 ? 128 : cap;
  size_t pushed_out = n + 1 > effective_cap ? n + 1 - effective_cap : 0;
  size_t stalled = 0;
  mproc_connection *c = NULL;
  for (;;) {
    int r = mproc_listener_accept(l, &c, 30.0);
    if (r == 0) {
      break;
    }
    ASSERT_ERR(r, MPROC_ESTALLED);
    stalled++;
    ASSERT_LE(stalled, pushed_out);
  }
  /* The one handed out is the honest client: it echoes. */
  roundtrip(c);
  ASSERT_OK(mproc_connection_close(c));
  ASSERT_EQ(test_finish_proc(p), 0);
  for (size_t i = 0; i < n; i++) {
    close(silent[i]);
  }
  free(silent);
  ASSERT_OK(mproc_listener_close(l));
}

TEST_IMPL(listener_silent_peers_dont_hold_accept) {
  silent_then_honest(0, 10, 0);
  silent_then_honest(1, 10, 0);
  silent_then_honest(0, 200, 0);
  /* A small cap: the oldest silent peers are pushed out. */
  silent_then_honest(0, 10, 4);
  return 0;
}

/* Handshakes interleave: two clients whose handshakes are both under way
 * finish in the order they answer, each under its own deadline, and the
 * pending ones survive across accept calls that time out. */
TEST_IMPL(listener_pending_across_accepts) {
  mproc_listener_opts o;
  memset(&o, 0, sizeof o);
  o.authkey = key_a;
  o.authkey_len = strlen(key_a);
  o.handshake_timeout = 30.0;
  mproc_listener *l = NULL;
  ASSERT_OK(mproc_listener_new(&l, &o));
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  /* A raw peer that takes the challenge, then waits for us. */
  int fd = raw_connect(addr);
  mproc_connection *c = NULL;
  ASSERT_ERR(mproc_listener_accept(l, &c, 0), MPROC_ETIMEDOUT);
  unsigned char chal[256];
  ssize_t clen = raw_recv(fd, chal, sizeof chal); /* sent by that accept */
  ASSERT_EQ(clen, 59);
  ASSERT_ERR(mproc_listener_accept(l, &c, 0.05), MPROC_ETIMEDOUT);
  /* An honest client overtakes it. */
  serve_echo(l, key_a);
  /* The raw peer answers now, and is through in its turn.  The
   * handshake moves only inside accept: each accept(0) below finds the
   * peer's frame already sent and answers it. */
  unsigned char ans[MPROC__AUTH_ANSWER_MAX];
  size_t alen = 0;
  ASSERT_OK(mproc__auth_answer(key_a, strlen(key_a), chal, (size_t)clen, 0,
                               ans, &alen));
  ASSERT(raw_send(fd, ans, alen));
  ASSERT_ERR(mproc_listener_accept(l, &c, 0), MPROC_ETIMEDOUT);
  unsigned char buf[256];
  ASSERT_EQ(raw_recv(fd, buf, sizeof buf), 9); /* #WELCOME# */
  ASSERT(memcmp(buf, "#WELCOME#", 9) == 0);
  unsigned char rnd[40], mine[MPROC__AUTH_CHALLENGE_MAX];
  memset(rnd, 7, sizeof rnd);
  size_t mlen = mproc__auth_make_challenge(mine, rnd);
  ASSERT(raw_send(fd, mine, mlen));
  ASSERT_ERR(mproc_listener_accept(l, &c, 0), MPROC_ETIMEDOUT);
  ssize_t got = raw_recv(fd, buf, sizeof buf);
  ASSERT_GT(got, 0);
  ASSERT_OK(mproc__auth_verify(key_a, strlen(key_a), mine + 11, mlen - 11,
                               buf, (size_t)got, 0));
  /* Our welcome and a first message in one write: the message is the
   * connection's, not the handshake's. */
  unsigned char out[64];
  size_t o2 = mproc__frame_make_header(out, 9);
  memcpy(out + o2, "#WELCOME#", 9);
  o2 += 9;
  o2 += mproc__frame_make_header(out + o2, 5);
  memcpy(out + o2, "hello", 5);
  o2 += 5;
  ASSERT_EQ(send(fd, out, o2, MSG_NOSIGNAL), (ssize_t)o2);
  ASSERT_OK(mproc_listener_accept(l, &c, 30.0));
  void *m = NULL;
  size_t n = 0;
  ASSERT_OK(mproc_connection_recv_bytes(c, &m, &n, 100));
  ASSERT_UEQ(n, 5);
  ASSERT(memcmp(m, "hello", 5) == 0);
  free(m);
  ASSERT_OK(mproc_connection_close(c));
  close(fd);
  ASSERT_OK(mproc_listener_close(l));
  return 0;
}

/* Closing a listener with handshakes under way and connections not yet
 * handed out closes them all (the runner checks no fd is left). */
TEST_IMPL(listener_close_with_pending) {
  mproc_listener *l = listen_on(MPROC_AF_DEFAULT, NULL, key_a);
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  int fds[3];
  for (int i = 0; i < 3; i++) {
    fds[i] = raw_connect(addr);
  }
  mproc_connection *c = NULL;
  ASSERT_ERR(mproc_listener_accept(l, &c, 0), MPROC_ETIMEDOUT);
  ASSERT_OK(mproc_listener_close(l));
  for (int i = 0; i < 3; i++) {
    unsigned char buf[256];
    ASSERT_EQ(raw_recv(fds[i], buf, sizeof buf), 59);
    ASSERT_EQ(raw_recv(fds[i], buf, sizeof buf), -1); /* hung up */
    close(fds[i]);
  }
  return 0;
}

/* A burst: 200 connects at once, none accepted yet, are all queued (the
 * default backlog is SOMAXCONN, not 16), and all are served. */
TEST_IMPL(listener_backlog_burst) {
  enum { N = 200 };
  mproc_listener *l = listen_on(MPROC_AF_DEFAULT, NULL, NULL);
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  ASSERT_LT(strlen(addr), sizeof sun.sun_path);
  memcpy(sun.sun_path, addr, strlen(addr) + 1);
  int fds[N];
  for (int i = 0; i < N; i++) {
    /* Non-blocking: a full queue is EAGAIN at once, not a wait. */
    fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ASSERT_GE(fds[i], 0);
    int r = connect(fds[i], (struct sockaddr *)&sun, sizeof sun);
    if (r != 0) {
      fprintf(stderr, "# connect %d: %s\n", i, strerror(errno));
    }
    ASSERT_EQ(r, 0);
  }
  for (int i = 0; i < N; i++) {
    mproc_connection *c = NULL;
    ASSERT_OK(mproc_listener_accept(l, &c, 30.0));
    ASSERT_OK(mproc_connection_send(c, "x", 1));
    ASSERT_OK(mproc_connection_close(c));
  }
  /* Every client got its answer. */
  for (int i = 0; i < N; i++) {
    unsigned char buf[8];
    ASSERT_OK(fcntl(fds[i], F_SETFL, 0));
    ASSERT_EQ(raw_recv(fds[i], buf, sizeof buf), 1);
    close(fds[i]);
  }
  ASSERT_OK(mproc_listener_close(l));
  return 0;
}

/* Python's Listener.last_accepted, with SO_PEERCRED on Unix. */
TEST_IMPL(listener_last_accepted) {
  mproc_peer_info info;
  for (int tcp = 0; tcp < 2; tcp++) {
    mproc_listener *l =
        listen_on(tcp ? MPROC_AF_INET : MPROC_AF_DEFAULT, NULL, key_a);
    char addr[256];
    ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
    ASSERT_ERR(mproc_listener_last_accepted(l, &info), MPROC_ESTATE);
    ASSERT_ERR(mproc_listener_last_accepted(l, NULL), MPROC_EINVAL);
    ASSERT_ERR(mproc_listener_last_accepted(NULL, &info), MPROC_EINVAL);
    client_arg a;
    client_arg_init(&a, addr, key_a, CL_ECHO, 0);
    mproc_process *p = test_start_proc(t_client, &a, sizeof a);
    mproc_connection *c = NULL;
    ASSERT_OK(mproc_listener_accept(l, &c, 30.0));
    memset(&info, 0x55, sizeof info);
    ASSERT_OK(mproc_listener_last_accepted(l, &info));
    if (tcp) {
      /* "127.0.0.1:<the client's port>", not the listener's. */
      ASSERT_EQ(strncmp(info.address, "127.0.0.1:", 10), 0);
      ASSERT(strcmp(info.address, addr) != 0);
      ASSERT_EQ(info.has_cred, 0);
    } else {
      ASSERT_STR_EQ(info.address, ""); /* the client bound no path */
      ASSERT_EQ(info.has_cred, 1);
      ASSERT_EQ(info.pid, mproc_process_pid(p));
      ASSERT_UEQ(info.uid, (uint32_t)geteuid());
      ASSERT_UEQ(info.gid, (uint32_t)getegid());
    }
    /* The limit accepted connections get by default. */
    size_t lim = 0;
    ASSERT_OK(mproc_connection_get_maxlength(c, &lim));
    ASSERT_UEQ(lim, MPROC_NET_MAXLENGTH);
    roundtrip(c);
    ASSERT_OK(mproc_connection_close(c));
    ASSERT_EQ(test_finish_proc(p), 0);
    /* A failed client is reported too. */
    client_arg_init(&a, addr, key_b, CL_ECHO, MPROC_EAUTH);
    p = test_start_proc(t_client, &a, sizeof a);
    ASSERT_ERR(mproc_listener_accept(l, &c, 30.0), MPROC_EAUTH);
    ASSERT_OK(mproc_listener_last_accepted(l, &info));
    if (!tcp) {
      ASSERT_EQ(info.pid, mproc_process_pid(p));
    }
    ASSERT_EQ(test_finish_proc(p), 0);
    ASSERT_OK(mproc_listener_close(l));
  }
  return 0;
}

/* The receive limit of Listener/Client connections: the default, and
 * opts.maxlength on both sides; a bigger message is MPROC_EMSGSIZE. */
TEST_IMPL(listener_client_maxlength) {
  mproc_listener_opts o;
  memset(&o, 0, sizeof o);
  o.maxlength = 10;
  mproc_listener *l = NULL;
  ASSERT_OK(mproc_listener_new(&l, &o));
  char addr[256];
  ASSERT_GT(mproc_listener_address(l, addr, sizeof addr), 0);
  mproc_client_opts co;
  memset(&co, 0, sizeof co);
  mproc_connection *cl = NULL;
  ASSERT_OK(mproc_client_connect(&cl, addr, &co));
  size_t lim = 0;
  ASSERT_OK(mproc_connection_get_maxlength(cl, &lim));
  ASSERT_UEQ(lim, MPROC_NET_MAXLENGTH);
  mproc_connection_close(cl);
  co.maxlength = 3;
  ASSERT_OK(mproc_client_connect(&cl, addr, &co));
  ASSERT_OK(mproc_connection_get_maxlength(cl, &lim));
  ASSERT_UEQ(lim, 3);
  mproc_connection *sv = NULL;
  ASSERT_OK(mproc_listener_accept(l, &sv, 30.0)); /* the first, closed */
  mproc_connection_close(sv);
  ASSERT_OK(mproc_listener_accept(l, &sv, 30.0));
  ASSERT_OK(mproc_connection_get_maxlength(sv, &lim));
  ASSERT_UEQ(lim, 10);
  ASSERT_OK(mproc_connection_send(cl, "0123456789", 10));
  ASSERT_OK(mproc_connection_send(cl, "0123456789a", 11));
  void *m = NULL;
  size_t n = 0;
  ASSERT_OK(mproc_connection_recv_bytes(sv, &m, &n, MPROC_NOLIMIT));
  free(m);
  ASSERT_ERR(mproc_connection_recv_bytes(sv, &m, &n, MPROC_NOLIMIT),
             MPROC_EMSGSIZE);
  ASSERT_OK(mproc_connection_send(sv, "four", 4));
  ASSERT_ERR(mproc_connection_recv_bytes(cl, &m, &n, MPROC_NOLIMIT),
             MPROC_EMSGSIZE);
  mproc_connection_close(sv);
  mproc_connection_close(cl);
  ASSERT_OK(mproc_listener_close(l));
  /* Bad options. */
  memset(&o, 0, sizeof o);
  o.max_pending = MPROC_LISTENER_MAX_PENDING + 1;
  ASSERT_ERR(mproc_listener_new(&l, &o), MPROC_EINVAL);
  return 0;
}
