/*
 * listener.c - Python's multiprocessing.connection.Listener and Client:
 * Unix and TCP sockets, Python's framing (connection.c) and Python's
 * HMAC handshake (auth.c), so a C program and a Python program can be
 * either side.
 *
 * DESIGN
 * Addresses.  A string names the address, as Python's address tuple or
 * path does: "host:port" (IPv4 or a name resolved to IPv4, Python's
 * AF_INET) or "[v6addr]:port" is TCP, anything else is a Unix path.  A
 * path that looks like "name:123" is read as TCP under MPROC_AF_DEFAULT;
 * write it "./name:123" or pass MPROC_AF_UNIX.  The empty host (Python's
 * ('', port), every interface) is refused: every interface must be named
 * ("0.0.0.0:port"), so nothing is exposed by accident.
 *
 * Unix listeners.  With no address, a new directory is made with mkdtemp
 * (mode 0700) in $TMPDIR (when absolute and short enough for a socket
 * path) or /tmp, and the socket is "listener" in it; close removes both.
 * With a given path, its directory must be a directory owned by us with
 * no group or other permission bits (else MPROC_EACCES, unless
 * allow_other_users): others cannot even reach the socket, whatever its
 * own mode (which the umask decides).  Peers are checked again at accept
 * with SO_PEERCRED: our own euid, or root.
 *
 * Who removes the socket file.  Only the process that created the
 * listener, and only while the path still names the socket it bound (same
 * dev and inode, checked with lstat): a forked child closing its copy of
 * the listener removes nothing (Python's Finalize has the same pid rule),
 * and a socket that someone else bound at the same path after ours was
 * removed is left alone.
 *
 * Handshake.  With an authkey, the server runs deliver_challenge then
 * answer_challenge (Python's order), and the client the opposite.  Before
 * authentication a message over MPROC__AUTH_MAX_MESSAGE (256) bytes is
 * refused from its header, before anything is allocated (Python's
 * recv_bytes(256)).  Results:
 *   - a wrong key, a malformed or oversized handshake message, a refused
 *     legacy (MD5) form: MPROC_EAUTH on that side; the deliverer tells the
 *     peer "#FAILURE#" (best effort) when it refuses an answer, as Python
 *     does, so the peer's result is MPROC_EAUTH too;
 *   - the peer closing during the handshake: MPROC_ECONNRESET (the
 *     exchange was cut, whatever the frame boundary);
 *   - the deadline: MPROC_ESTALLED on the server, MPROC_ETIMEDOUT on the
 *     client (whose deadline is the caller's timeout).
 * The key is copied into the listener and wiped at close.
 *
 * Concurrent handshakes (server).  Python runs the handshake inside
 * accept, one peer at a time, so a peer that connects and says nothing
 * holds every client behind it.  Here the server side is a state machine
 * per connection (hs_pending: the step, the frame going out, the frame
 * coming in, its own deadline from the moment it was taken from the
 * kernel), kept in the listener across accept calls.  accept:
 *   1. hands out the oldest result if there is one (results are a FIFO of
 *      finished connections and failures, in the order they were decided);
 *   2. fails the handshakes past their deadline (MPROC_ESTALLED);
 *   3. takes every queued connection from the non-blocking listening
 *      socket (without a key: one, which is a result at once), checks a
 *      Unix peer's uid, sends the challenge;
 *   4. polls the listening fd and every handshake (for reading, or for
 *      writing while a frame is partly out) until the caller's deadline
 *      or the nearest handshake deadline, and advances those that are
 *      ready as far as they go without blocking (MSG_DONTWAIT on the
 *      blocking fd, which stays blocking for the caller).
 * The list holds at most max_pending handshakes; a new connection beyond
 * that fails the oldest (MPROC_ESTALLED): a flood then delays honest
 * clients only while it lasts, and the listener's fds stay bounded.
 * Reads are sized to the frame being read (its header, then exactly its
 * payload), so nothing past the handshake is consumed: a message the
 * client sends right after it stays in the socket for the caller.  The
 * client side has one peer and runs the same protocol with blocking
 * framed I/O under its deadline (deliver_challenge, answer_challenge).
 *
 * Receive limit.  Connections handed out by accept, and made by
 * mproc_client_connect, get opts.maxlength (0: MPROC_NET_MAXLENGTH) as
 * their receive limit (connection.c's DESIGN), so an authenticated peer's
 * header cannot make a receive with MPROC_NOLIMIT reserve gigabytes.
 *
 * Client timeout.  opts.timeout > 0 bounds connect and handshake
 * together; 0 gives each its own 5 s; MPROC_FOREVER waits.
 */
#include "auth.h"
#include "connection-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_HANDSHAKE_TIMEOUT 5.0
#define DEFAULT_MAX_PENDING 128
#define DEFAULT_CLIENT_TIMEOUT 5.0
#define PRIVATE_DIR_PREFIX "mproc-"
#define PRIVATE_SOCKET_NAME "listener"

/* The longest "host" of "host:port" mproc parses (a DNS name is at most
 * 253 characters). */
#define HOST_MAX 256

/* The server's steps of the handshake (Python's deliver_challenge, then
 * answer_challenge), in order. */
enum {
  HS_SEND_CHALLENGE, /* our challenge is going out */
  HS_RECV_ANSWER,    /* waiting for the answer to it */
  HS_SEND_WELCOME,   /* the answer was right: #WELCOME# is going out */
  HS_SEND_FAILURE,   /* the answer was wrong: #FAILURE# is going out */
  HS_RECV_CHALLENGE, /* waiting for the client's challenge */
  HS_SEND_ANSWER,    /* our answer is going out */
  HS_RECV_REPLY      /* waiting for the client's verdict */
};

/* A handshake frame's header and payload. */
#define HS_FRAME_MAX (12 + MPROC__AUTH_MAX_MESSAGE)

/* An accepted connection whose handshake has not finished. */
typedef struct hs_pending {
  int fd;                  /* owned */
  int step;                /* HS_* */
  mproc__deadline deadline;
  mproc_peer_info peer;
  unsigned char out[HS_FRAME_MAX]; /* the frame going out */
  size_t out_len, out_pos;
  unsigned char in[HS_FRAME_MAX];  /* the frame coming in */
  size_t in_len;
  unsigned char chal[MPROC__AUTH_CHALLENGE_MAX]; /* the challenge we sent */
  size_t chal_len;
} hs_pending;

/* What accept hands out next: a connection, or a failure to report. */
typedef struct hs_result {
  int code;               /* 0 or a negative code */
  mproc_connection *conn; /* when code is 0 */
  mproc_peer_info peer;
} hs_result;

struct mproc_listener {
  int fd;                    /* listening, non-blocking */
  mproc__sockaddr addr;      /* the bound address (getsockname) */
  int is_unix;
  char *path;                /* Unix: the socket path we bound */
  char *dir;                 /* the private directory we made, or NULL */
  uint64_t sock_dev, sock_ino; /* the socket file we bound */
  int have_ident;            /* sock_dev/sock_ino are known */
  pid_t owner;               /* only this pid removes the path */
  unsigned char *key;        /* the authkey (a copy), or NULL */
  size_t keylen;
  int has_key;
  double handshake_timeout;  /* seconds; < 0 none */
  int strict;
  int allow_other;
  size_t maxlength;          /* receive limit of accepted connections */
  size_t max_pending;        /* cap on unfinished handshakes */
  hs_pending **pending;      /* unfinished handshakes, oldest first */
  size_t npending;
  hs_result *results;        /* finished, for accept to hand out, FIFO */
  size_t rhead, nresults, rcap;
  int have_last;             /* last is set */
  mproc_peer_info last;      /* the last accepted connection's peer */
};

/* ==================== addresses ==================== */

/*
 * Split "host:port" or "[v6]:port" into host (copied, brackets removed)
 * and port (a pointer into address).  Returns 1 if address has that form,
 * 0 if not (then it is a path), MPROC_ENAMETOOLONG for a host over
 * HOST_MAX.
 */
static int split_inet(const char *address, char *host, const char **port,
                      int *v6) {
  const char *colon;
  const char *hstart = address;
  size_t hlen;
  *v6 = 0;
  if (address[0] == '[') {
    const char *close = strchr(address, ']');
    if (close == NULL || close[1] != ':' || close == address + 1) {
      return 0;
    }
    hstart = address + 1;
    hlen = (size_t)(close - hstart);
    colon = close + 1;
    *v6 = 1;
  } else {
    colon = strrchr(address, ':');
    /* A '/' makes it a path; a second ':' an unbracketed IPv6 address,
     * which is ambiguous (and so is not an address mproc reads). */
    if (colon == NULL || colon == address || strchr(address, '/') != NULL ||
        strchr(address, ':') != colon) {
      return 0;
    }
    hlen = (size_t)(colon - address);
  }
  const char *p = colon + 1;
  if (*p == '\0') {
    return 0;
  }
  for (const char *c = p; *c != '\0'; c++) {
    if (*c < '0' || *c > '9') {
      return 0;
    }
  }
  if (hlen >= HOST_MAX) {
    return MPROC_ENAMETOOLONG;
  }
  memcpy(host, hstart, hlen);
  host[hlen] = '\0';
  *port = p;
  return 1;
}

/*
 * The socket address for (family, address): MPROC_AF_DEFAULT decides from
 * the form.  address must not be NULL here.  Returns 0; MPROC_EINVAL
 * (unknown family, an AF_INET address not of the inet form, an abstract
 * or empty Unix name, an unresolvable host); MPROC_ENAMETOOLONG.
 */
static int resolve(int family, const char *address, mproc__sockaddr *out) {
  if (family != MPROC_AF_DEFAULT && family != MPROC_AF_UNIX &&
      family != MPROC_AF_INET) {
    return MPROC_EINVAL;
  }
  if (family != MPROC_AF_UNIX) {
    char host[HOST_MAX];
    const char *port = NULL;
    int v6 = 0;
    int r = split_inet(address, host, &port, &v6);
    if (r < 0) {
      return r;
    }
    if (r == 1) {
      return mproc__sockaddr_inet(out, host, port, v6);
    }
    if (family == MPROC_AF_INET) {
      return MPROC_EINVAL;
    }
  }
  return mproc__sockaddr_unix(out, address);
}

/* The directory part of path, as dirname(3) but into a new string. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) {
    return strdup(".");
  }
  /* "/x" -> "/", "a//b" -> "a" (dirname's rules for repeated slashes). */
  const char *end = slash;
  while (end > path && end[-1] == '/') {
    end--;
  }
  if (end == path) {
    return strdup("/");
  }
  size_t n = (size_t)(end - path);
  char *d = malloc(n + 1);
  if (d != NULL) {
    memcpy(d, path, n);
    d[n] = '\0';
  }
  return d;
}

/* The directory a given socket path goes in must keep other users out.
 * Returns 0, MPROC_EACCES, MPROC_ENOENT, MPROC_ENOMEM, another code. */
static int check_socket_dir(const char *path) {
  char *dir = dir_of(path);
  if (dir == NULL) {
    return MPROC_ENOMEM;
  }
  mproc__path_info info;
  int r = mproc__path_stat(dir, 1, &info);
  if (r == 0 && info.type != MPROC__PATH_DIR) {
    r = MPROC_ENOENT; /* bind would fail with ENOTDIR */
  }
  if (r == 0 && ((info.mode & 077) != 0 ||
                 info.uid != (uint32_t)mproc__geteuid())) {
    MPROC__DEBUG("listener: %s is reachable by other users (mode %04o, "
                 "owner %u)",
                 dir, (unsigned)info.mode, (unsigned)info.uid);
    r = MPROC_EACCES;
  }
  free(dir);
  return r;
}

/*
 * A new private directory: mkdtemp("$TMPDIR/mproc-XXXXXX"), falling back
 * to /tmp when $TMPDIR is unset, relative, too long for the socket path,
 * or refuses.  *dir and *path (dir + "/listener") are malloc'd.  Returns
 * 0 or a negative code.
 */
static int make_private_dir(char **dir, char **path) {
  const char *bases[2] = {getenv("TMPDIR"), "/tmp"};
  int r = MPROC_ENOENT;
  *dir = *path = NULL;
  for (int i = 0; i < 2; i++) {
    const char *base = bases[i];
    if (base == NULL || base[0] != '/') {
      continue;
    }
    size_t blen = strlen(base);
    while (blen > 1 && base[blen - 1] == '/') {
      blen--;
    }
    if (blen == 1) {
      blen = 0; /* "/" itself: "/mproc-..." */
    }
    size_t dlen = blen + 1 + strlen(PRIVATE_DIR_PREFIX) + 6;
    size_t plen = dlen + 1 + strlen(PRIVATE_SOCKET_NAME);
    if (plen > mproc__unix_path_max()) {
      r = MPROC_ENAMETOOLONG;
      continue;
    }
    char *d = malloc(dlen + 1);
    char *p = malloc(plen + 1);
    if (d == NULL || p == NULL) {
      free(d);
      free(p);
      return MPROC_ENOMEM;
    }
    snprintf(d, dlen + 1, "%.*s/" PRIVATE_DIR_PREFIX "XXXXXX", (int)blen,
             base);
    r = mproc__mkdtemp(d);
    if (r < 0) {
      MPROC__DEBUG("listener: mkdtemp in %.*s: %s", (int)blen, base,
                   mproc_err_name(r));
      free(d);
      free(p);
      continue;
    }
    snprintf(p, plen + 1, "%s/" PRIVATE_SOCKET_NAME, d);
    *dir = d;
    *path = p;
    return 0;
  }
  return r;
}

/* ==================== the handshake ==================== */

/* A received handshake message that breaks the protocol (too long, a
 * malformed frame header) is an authentication failure; a peer that
 * closed cut the exchange.  Other results (timeout, errno) pass. */
static int handshake_code(int r) {
  if (r == MPROC_EMSGSIZE || r == MPROC_EPROTO) {
    return MPROC_EAUTH;
  }
  if (r == MPROC_EOF || r == MPROC_EPIPE) {
    return MPROC_ECONNRESET;
  }
  return r;
}

/* Python's deliver_challenge. */
static int deliver_challenge(mproc_connection *c, const void *key,
                             size_t keylen, int strict,
                             const mproc__deadline *d) {
  unsigned char rnd[MPROC__AUTH_RANDOM_LEN];
  int r = mproc__random_bytes(rnd, sizeof rnd);
  if (r < 0) {
    return r;
  }
  unsigned char msg[MPROC__AUTH_CHALLENGE_MAX];
  size_t n = mproc__auth_make_challenge(msg, rnd);
  r = mproc__conn_send_frame(c, msg, n, d);
  if (r < 0) {
    return handshake_code(r);
  }
  void *resp = NULL;
  size_t rlen = 0;
  r = mproc__conn_recv_frame(c, &resp, &rlen, MPROC__AUTH_MAX_MESSAGE, d);
  if (r == 0) {
    r = mproc__auth_verify(key, keylen, msg + MPROC__AUTH_CHALLENGE_LEN,
                           n - MPROC__AUTH_CHALLENGE_LEN, resp, rlen, strict);
    free(resp);
    if (r == 0) {
      r = mproc__conn_send_frame(c, MPROC__AUTH_WELCOME,
                                 MPROC__AUTH_REPLY_LEN, d);
      return handshake_code(r);
    }
  }
  r = handshake_code(r);
  if (r == MPROC_EAUTH) {
    /* Tell the peer, so it fails with an authentication error rather
     * than a reset; it may be gone already, which changes nothing. */
    (void)mproc__conn_send_frame(c, MPROC__AUTH_FAILURE,
                                 MPROC__AUTH_REPLY_LEN, d);
  }
  return r;
}

/* Python's answer_challenge. */
static int answer_challenge(mproc_connection *c, const void *key,
                            size_t keylen, int strict,
                            const mproc__deadline *d) {
  void *msg = NULL;
  size_t n = 0;
  int r = mproc__conn_recv_frame(c, &msg, &n, MPROC__AUTH_MAX_MESSAGE, d);
  if (r < 0) {
    return handshake_code(r);
  }
  unsigned char answer[MPROC__AUTH_ANSWER_MAX];
  size_t alen = 0;
  r = mproc__auth_answer(key, keylen, msg, n, strict, answer, &alen);
  free(msg);
  if (r < 0) {
    return r;
  }
  r = mproc__conn_send_frame(c, answer, alen, d);
  mproc__auth_wipe(answer, sizeof answer);
  if (r < 0) {
    return handshake_code(r);
  }
  void *reply = NULL;
  size_t rlen = 0;
  r = mproc__conn_recv_frame(c, &reply, &rlen, MPROC__AUTH_MAX_MESSAGE, d);
  if (r < 0) {
    return handshake_code(r);
  }
  r = mproc__auth_check_reply(reply, rlen);
  free(reply);
  return r;
}

/* ==================== Listener ==================== */

int mproc_listener_new(mproc_listener **out, const mproc_listener_opts *opts) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  mproc_listener_opts none;
  if (opts == NULL) {
    memset(&none, 0, sizeof none);
    opts = &none;
  }
  int family = opts->family;
  if ((family != MPROC_AF_DEFAULT && family != MPROC_AF_UNIX &&
       family != MPROC_AF_INET) ||
      opts->backlog < 0 || (opts->authkey == NULL && opts->authkey_len > 0) ||
      opts->handshake_timeout != opts->handshake_timeout /* NaN */ ||
      opts->max_pending > MPROC_LISTENER_MAX_PENDING) {
    return MPROC_EINVAL;
  }
  mproc_listener *l = calloc(1, sizeof *l);
  if (l == NULL) {
    return MPROC_ENOMEM;
  }
  l->fd = -1;
  l->owner = mproc__getpid();
  l->strict = opts->strict_auth != 0;
  l->allow_other = opts->allow_other_users != 0;
  l->handshake_timeout = opts->handshake_timeout == 0
                             ? DEFAULT_HANDSHAKE_TIMEOUT
                             : opts->handshake_timeout;
  l->maxlength = opts->maxlength == 0 ? MPROC_NET_MAXLENGTH : opts->maxlength;
  l->max_pending =
      opts->max_pending == 0 ? DEFAULT_MAX_PENDING : opts->max_pending;
  int r = 0;
  l->pending = malloc(l->max_pending * sizeof *l->pending);
  if (l->pending == NULL) {
    r = MPROC_ENOMEM;
    goto fail;
  }
  if (opts->authkey != NULL) {
    l->has_key = 1;
    l->keylen = opts->authkey_len;
    l->key = malloc(l->keylen > 0 ? l->keylen : 1);
    if (l->key == NULL) {
      r = MPROC_ENOMEM;
      goto fail;
    }
    if (l->keylen > 0) {
      memcpy(l->key, opts->authkey, l->keylen);
    }
  }

  mproc__sockaddr addr;
  if (opts->address == NULL && family == MPROC_AF_INET) {
    r = resolve(MPROC_AF_INET, "127.0.0.1:0", &addr);
  } else if (opts->address == NULL) {
    r = make_private_dir(&l->dir, &l->path);
    if (r == 0) {
      r = mproc__sockaddr_unix(&addr, l->path);
    }
  } else {
    r = resolve(family, opts->address, &addr);
    if (r == 0 && mproc__sockaddr_family(&addr) == MPROC__NET_UNIX) {
      l->path = strdup(opts->address);
      if (l->path == NULL) {
        r = MPROC_ENOMEM;
      } else if (!l->allow_other) {
        r = check_socket_dir(l->path);
      }
    }
  }
  if (r < 0) {
    goto fail;
  }
  l->is_unix = mproc__sockaddr_family(&addr) == MPROC__NET_UNIX;

  r = mproc__net_listen(&addr, opts->backlog);
  if (r < 0) {
    goto fail;
  }
  l->fd = r;
  if (l->is_unix) {
    mproc__path_info info;
    if (mproc__path_stat(l->path, 0, &info) == 0 &&
        info.type == MPROC__PATH_SOCKET) {
      l->sock_dev = info.dev;
      l->sock_ino = info.ino;
      l->have_ident = 1;
    }
  }
  r = mproc__net_sockname(l->fd, &l->addr);
  if (r < 0) {
    goto fail;
  }
  *out = l;
  return 0;

fail:
  mproc_listener_close(l);
  return r;
}

int mproc_listener_address(const mproc_listener *l, char *buf, size_t cap) {
  if (l == NULL || buf == NULL || l->fd < 0) {
    return MPROC_EINVAL;
  }
  if (l->is_unix) {
    /* The path as given (or made): getsockname reports the same bytes,
     * but this keeps a relative path exactly as the caller wrote it. */
    size_t n = strlen(l->path);
    if (n + 1 > cap) {
      return MPROC_ENAMETOOLONG;
    }
    memcpy(buf, l->path, n + 1);
    return (int)n;
  }
  return mproc__sockaddr_format(&l->addr, buf, cap);
}

int mproc_listener_fileno(const mproc_listener *l) {
  return (l == NULL || l->fd < 0) ? MPROC_EINVAL : l->fd;
}

/* ==================== concurrent handshakes ==================== */

/* What mproc_listener_last_accepted reports of the connection on fd. */
static void peer_fill(const mproc_listener *l, int fd,
                      const mproc__sockaddr *addr, mproc_peer_info *info) {
  memset(info, 0, sizeof *info);
  if (mproc__sockaddr_format(addr, info->address, sizeof info->address) < 0) {
    info->address[0] = '\0';
  }
  if (l->is_unix) {
    mproc__peer_cred cred;
    if (mproc__net_peer_cred(fd, &cred) == 0) {
      info->has_cred = 1;
      info->pid = (pid_t)cred.pid;
      info->uid = cred.uid;
      info->gid = cred.gid;
    }
  }
}

/* Append a result for accept to hand out.  On MPROC_ENOMEM the
 * connection is closed and the result lost (said in the debug log). */
static int result_push(mproc_listener *l, int code, mproc_connection *c,
                       const mproc_peer_info *peer) {
  if (l->rhead + l->nresults == l->rcap) {
    if (l->rhead > 0) {
      memmove(l->results, l->results + l->rhead,
              l->nresults * sizeof *l->results);
      l->rhead = 0;
    } else {
      size_t ncap = l->rcap > 0 ? 2 * l->rcap : 16;
      hs_result *nr = realloc(l->results, ncap * sizeof *nr);
      if (nr == NULL) {
        MPROC__DEBUG("listener: no memory to keep a result (%s)",
                     mproc_err_name(code));
        mproc_connection_close(c);
        return MPROC_ENOMEM;
      }
      l->results = nr;
      l->rcap = ncap;
    }
  }
  hs_result *r = &l->results[l->rhead + l->nresults++];
  r->code = code;
  r->conn = c;
  r->peer = *peer;
  return 0;
}

/* Hand out the oldest result. */
static int result_pop(mproc_listener *l, mproc_connection **out) {
  hs_result *r = &l->results[l->rhead];
  int code = r->code;
  *out = code == 0 ? r->conn : NULL;
  l->last = r->peer;
  l->have_last = 1;
  l->rhead++;
  if (--l->nresults == 0) {
    l->rhead = 0;
  }
  return code;
}

/* A connection that is through (code 0: its handshake, if any, passed)
 * becomes a result: wrapped as a connection with the listener's receive
 * limit, or closed with the code. */
static void finish_fd(mproc_listener *l, int fd, int code,
                      const mproc_peer_info *peer) {
  mproc_connection *c = NULL;
  if (code == 0) {
    code = mproc__conn_wrap(&c, fd, 1, 1); /* closes fd on failure */
    if (code == 0) {
      (void)mproc_connection_set_maxlength(c, l->maxlength);
    }
  } else {
    MPROC__DEBUG("listener: handshake with %s failed: %s", peer->address,
                 mproc_err_name(code));
    mproc__close(fd);
  }
  (void)result_push(l, code, c, peer);
}

/* Take the pending handshake at index i out of the list and finish it. */
static void pending_finish(mproc_listener *l, size_t i, int code) {
  hs_pending *p = l->pending[i];
  memmove(&l->pending[i], &l->pending[i + 1],
          (l->npending - i - 1) * sizeof *l->pending);
  l->npending--;
  finish_fd(l, p->fd, code, &p->peer);
  free(p);
}

/* Put one frame in the out buffer and go to step. */
static void hs_queue(hs_pending *p, const void *msg, size_t n, int step) {
  size_t h = mproc__frame_make_header(p->out, n);
  memcpy(p->out + h, msg, n);
  p->out_len = h + n;
  p->out_pos = 0;
  p->in_len = 0;
  p->step = step;
}

/* Send what the socket takes now.  Returns 1 (the frame is out), 0 (the
 * rest must wait for room), or a negative code. */
static int hs_flush(hs_pending *p) {
  while (p->out_pos < p->out_len) {
    int r = mproc__sock_send_nb(p->fd, p->out + p->out_pos,
                                p->out_len - p->out_pos);
    if (r == MPROC_EAGAIN) {
      return 0;
    }
    if (r < 0) {
      return r == MPROC_EPIPE ? MPROC_ECONNRESET : r;
    }
    p->out_pos += (size_t)r;
  }
  return 1;
}

/*
 * Read what has come of the next frame, never past its end (bytes after
 * the handshake belong to the caller's connection).  Returns 1 with the
 * whole frame's payload at *msg (*n bytes), 0 (more must come), or a
 * negative code: MPROC_EAUTH for a malformed header or a payload over
 * MPROC__AUTH_MAX_MESSAGE (refused from the header), MPROC_ECONNRESET
 * when the peer closed.
 */
static int hs_read_frame(hs_pending *p, const unsigned char **msg,
                         size_t *n) {
  for (;;) {
    size_t need = 4;
    if (p->in_len >= 4) {
      uint64_t len = 0;
      int h = mproc__frame_parse_header(p->in, p->in_len, &len);
      if (h < 0) {
        return MPROC_EAUTH;
      }
      if (h == 0) {
        need = 12;
      } else {
        if (len > MPROC__AUTH_MAX_MESSAGE) {
          return MPROC_EAUTH;
        }
        need = (size_t)h + (size_t)len;
        if (p->in_len == need) {
          *msg = p->in + h;
          *n = (size_t)len;
          return 1;
        }
      }
    }
    int r = mproc__sock_recv_nb(p->fd, p->in + p->in_len, need - p->in_len);
    if (r == MPROC_EAGAIN) {
      return 0;
    }
    if (r == 0 || r == MPROC_EPIPE) {
      return MPROC_ECONNRESET;
    }
    if (r < 0) {
      return r;
    }
    p->in_len += (size_t)r;
  }
}

/*
 * Advance a handshake as far as it goes without waiting.  Returns 1 (it
 * passed), 0 (it waits for the peer), or a negative code (it failed; the
 * peer was told #FAILURE# where Python tells it).
 */
static int hs_step(const mproc_listener *l, hs_pending *p) {
  for (;;) {
    const unsigned char *msg = NULL;
    size_t n = 0;
    int r;
    switch (p->step) {
    case HS_SEND_FAILURE:
      /* Best effort: the peer may be gone or not reading, which changes
       * nothing. */
      (void)hs_flush(p);
      return MPROC_EAUTH;
    case HS_SEND_CHALLENGE:
    case HS_SEND_WELCOME:
    case HS_SEND_ANSWER:
      r = hs_flush(p);
      if (r <= 0) {
        return r;
      }
      p->step = p->step == HS_SEND_CHALLENGE ? HS_RECV_ANSWER
                : p->step == HS_SEND_WELCOME ? HS_RECV_CHALLENGE
                                             : HS_RECV_REPLY;
      p->in_len = 0;
      break;
    case HS_RECV_ANSWER:
      r = hs_read_frame(p, &msg, &n);
      if (r == 0) {
        return 0;
      }
      if (r == 1) {
        r = mproc__auth_verify(l->key, l->keylen,
                               p->chal + MPROC__AUTH_CHALLENGE_LEN,
                               p->chal_len - MPROC__AUTH_CHALLENGE_LEN, msg, n,
                               l->strict);
      }
      if (r == 0) {
        hs_queue(p, MPROC__AUTH_WELCOME, MPROC__AUTH_REPLY_LEN,
                 HS_SEND_WELCOME);
      } else if (r == MPROC_EAUTH) {
        hs_queue(p, MPROC__AUTH_FAILURE, MPROC__AUTH_REPLY_LEN,
                 HS_SEND_FAILURE);
      } else {
        return r;
      }
      break;
    case HS_RECV_CHALLENGE: {
      r = hs_read_frame(p, &msg, &n);
      if (r <= 0) {
        return r;
      }
      unsigned char answer[MPROC__AUTH_ANSWER_MAX];
      size_t alen = 0;
      r = mproc__auth_answer(l->key, l->keylen, msg, n, l->strict, answer,
                             &alen);
      if (r < 0) {
        return r;
      }
      hs_queue(p, answer, alen, HS_SEND_ANSWER);
      mproc__auth_wipe(answer, sizeof answer);
      break;
    }
    case HS_RECV_REPLY:
    default:
      r = hs_read_frame(p, &msg, &n);
      if (r <= 0) {
        return r;
      }
      r = mproc__auth_check_reply(msg, n);
      return r == 0 ? 1 : r;
    }
  }
}

/* Start the handshake of a new connection (the listener has a key): it
 * joins the pending list, pushing out the oldest when the list is full,
 * and goes as far as it can at once. */
static void hs_start(mproc_listener *l, int fd, const mproc_peer_info *peer) {
  if (l->npending >= l->max_pending) {
    MPROC__DEBUG("listener: %zu handshakes unfinished, dropping the oldest",
                 l->npending);
    pending_finish(l, 0, MPROC_ESTALLED);
  }
  hs_pending *p = calloc(1, sizeof *p);
  if (p == NULL) {
    finish_fd(l, fd, MPROC_ENOMEM, peer);
    return;
  }
  p->fd = fd;
  p->peer = *peer;
  (void)mproc__deadline_init(&p->deadline, l->handshake_timeout);
  unsigned char rnd[MPROC__AUTH_RANDOM_LEN];
  int r = mproc__random_bytes(rnd, sizeof rnd);
  if (r < 0) {
    free(p);
    finish_fd(l, fd, r, peer);
    return;
  }
  p->chal_len = mproc__auth_make_challenge(p->chal, rnd);
  hs_queue(p, p->chal, p->chal_len, HS_SEND_CHALLENGE);
  l->pending[l->npending++] = p;
  r = hs_step(l, p);
  if (r != 0) {
    pending_finish(l, l->npending - 1, r == 1 ? 0 : r);
  }
}

/*
 * Take the connections the kernel has queued, without waiting: without a
 * key, one (it is a result at once); with a key, all of them, each
 * starting its handshake.  A Unix peer of another uid is a MPROC_EACCES
 * result.  Returns 0, or the error of accept(2) itself (MPROC_EMFILE...).
 */
static int take_new(mproc_listener *l) {
  for (;;) {
    mproc__sockaddr addr;
    int fd = mproc__net_accept_one(l->fd, &addr);
    if (fd == MPROC_EAGAIN) {
      return 0;
    }
    if (fd < 0) {
      return fd;
    }
    mproc_peer_info peer;
    peer_fill(l, fd, &addr, &peer);
    if (l->is_unix && !l->allow_other) {
      uint32_t uid = 0;
      int r = mproc__net_peer_uid(fd, &uid);
      if (r == 0 && uid != (uint32_t)mproc__geteuid() && uid != 0) {
        MPROC__DEBUG("listener: refused a peer of uid %u", (unsigned)uid);
        r = MPROC_EACCES;
      }
      if (r < 0) {
        finish_fd(l, fd, r, &peer);
        continue;
      }
    }
    if (!l->has_key) {
      finish_fd(l, fd, 0, &peer);
      return 0;
    }
    hs_start(l, fd, &peer);
  }
}

int mproc_listener_accept(mproc_listener *l, mproc_connection **out,
                          double timeout) {
  if (out != NULL) {
    *out = NULL;
  }
  if (l == NULL || out == NULL || l->fd < 0) {
    return MPROC_EINVAL;
  }
  mproc__deadline d;
  if (mproc__deadline_init(&d, timeout) < 0) {
    return MPROC_EINVAL;
  }
  int stack_fds[17], stack_ready[17];
  unsigned char stack_ww[17];
  int *fds = stack_fds, *ready = stack_ready;
  unsigned char *ww = stack_ww;
  if (l->max_pending + 1 > MPROC__ARRAY_SIZE(stack_fds)) {
    fds = malloc((l->max_pending + 1) * sizeof *fds);
    ready = malloc((l->max_pending + 1) * sizeof *ready);
    ww = malloc(l->max_pending + 1);
    if (fds == NULL || ready == NULL || ww == NULL) {
      free(fds);
      free(ready);
      free(ww);
      return MPROC_ENOMEM;
    }
  }
  int r;
  for (;;) {
    if (l->nresults > 0) {
      r = result_pop(l, out);
      break;
    }
    /* Handshakes past their own deadline. */
    for (size_t i = 0; i < l->npending;) {
      if (mproc__deadline_left_ns(&l->pending[i]->deadline) == 0) {
        pending_finish(l, i, MPROC_ESTALLED);
      } else {
        i++;
      }
    }
    r = take_new(l);
    if (l->nresults > 0) {
      continue;
    }
    if (r < 0) {
      break;
    }
    /* Wait for a new client, a step of a handshake, or the nearest
     * deadline: the caller's or a handshake's. */
    mproc__deadline w = d;
    fds[0] = l->fd;
    ww[0] = 0;
    for (size_t i = 0; i < l->npending; i++) {
      hs_pending *p = l->pending[i];
      fds[i + 1] = p->fd;
      ww[i + 1] = p->step == HS_SEND_CHALLENGE ||
                  p->step == HS_SEND_WELCOME || p->step == HS_SEND_ANSWER;
      if (mproc__deadline_left_ns(&p->deadline) <
          mproc__deadline_left_ns(&w)) {
        w = p->deadline;
      }
    }
    size_t n = l->npending + 1;
    r = mproc__poll_rw(fds, ww, n, ready, &w);
    if (r < 0) {
      break;
    }
    if (r == 0) {
      if (mproc__deadline_left_ns(&d) == 0) {
        r = MPROC_ETIMEDOUT; /* nobody came, nothing finished */
        break;
      }
      continue; /* a handshake's deadline: expired at the top */
    }
    /* From the end, so that finishing one moves only those done. */
    for (size_t i = n - 1; i >= 1; i--) {
      if (!ready[i]) {
        continue;
      }
      int s = hs_step(l, l->pending[i - 1]);
      if (s != 0) {
        pending_finish(l, i - 1, s == 1 ? 0 : s);
      }
    }
  }
  if (fds != stack_fds) {
    free(fds);
    free(ready);
    free(ww);
  }
  return r;
}

int mproc_listener_last_accepted(const mproc_listener *l,
                                 mproc_peer_info *out) {
  if (l == NULL || out == NULL) {
    return MPROC_EINVAL;
  }
  if (!l->have_last) {
    return MPROC_ESTATE;
  }
  *out = l->last;
  return 0;
}

int mproc_listener_close(mproc_listener *l) {
  if (l == NULL) {
    return 0;
  }
  mproc__close(l->fd);
  for (size_t i = 0; i < l->npending; i++) {
    mproc__close(l->pending[i]->fd);
    free(l->pending[i]);
  }
  free(l->pending);
  for (size_t i = 0; i < l->nresults; i++) {
    mproc_connection_close(l->results[l->rhead + i].conn);
  }
  free(l->results);
  if (l->path != NULL && l->have_ident && mproc__getpid() == l->owner) {
    mproc__path_info info;
    if (mproc__path_stat(l->path, 0, &info) == 0 &&
        info.type == MPROC__PATH_SOCKET && info.dev == l->sock_dev &&
        info.ino == l->sock_ino) {
      (void)mproc__unlink(l->path);
    }
  }
  if (l->dir != NULL && mproc__getpid() == l->owner) {
    /* Fails, harmlessly, if someone put something else in it. */
    (void)mproc__rmdir(l->dir);
  }
  if (l->key != NULL) {
    mproc__auth_wipe(l->key, l->keylen);
    free(l->key);
  }
  free(l->path);
  free(l->dir);
  free(l);
  return 0;
}

/* ==================== Client ==================== */

int mproc_client_connect(mproc_connection **out, const char *address,
                         const mproc_client_opts *opts) {
  if (out != NULL) {
    *out = NULL;
  }
  mproc_client_opts none;
  if (opts == NULL) {
    memset(&none, 0, sizeof none);
    opts = &none;
  }
  if (out == NULL || address == NULL ||
      (opts->authkey == NULL && opts->authkey_len > 0) ||
      opts->timeout != opts->timeout /* NaN */) {
    return MPROC_EINVAL;
  }
  mproc__sockaddr addr;
  int r = resolve(opts->family, address, &addr);
  if (r < 0) {
    return r;
  }
  /* timeout > 0: one deadline for everything; 0: 5 s for the connect and
   * 5 s more for the handshake; < 0: none. */
  mproc__deadline d;
  (void)mproc__deadline_init(
      &d, opts->timeout == 0 ? DEFAULT_CLIENT_TIMEOUT : opts->timeout);
  int fd = mproc__net_connect(&addr, &d);
  if (fd < 0) {
    return fd;
  }
  mproc_connection *c = NULL;
  r = mproc__conn_wrap(&c, fd, 1, 1); /* closes fd on failure */
  if (r < 0) {
    return r;
  }
  if (opts->authkey != NULL) {
    if (opts->timeout == 0) {
      (void)mproc__deadline_init(&d, DEFAULT_CLIENT_TIMEOUT);
    }
    int strict = opts->strict_auth != 0;
    r = answer_challenge(c, opts->authkey, opts->authkey_len, strict, &d);
    if (r == 0) {
      r = deliver_challenge(c, opts->authkey, opts->authkey_len, strict, &d);
    }
    if (r < 0) {
      MPROC__DEBUG("client: handshake with %s failed: %s", address,
                   mproc_err_name(r));
      mproc_connection_close(c);
      return r;
    }
  }
  (void)mproc_connection_set_maxlength(
      c, opts->maxlength == 0 ? MPROC_NET_MAXLENGTH : opts->maxlength);
  *out = c;
  return 0;
}
