/*
 * forkserver.c - the forkserver start method: a server process that forks
 * each new child on request.
 *
 * DESIGN
 *
 * The server.  A process of the program started by spawn (so it has one
 * thread and none of the caller's locks, whenever it is started; Python
 * starts its forkserver the same way, with a fresh interpreter) that runs
 * mproc__forkserver_main and nothing else.  It is a daemon child of the
 * process that started it: it dies with it (its death signal), and is
 * sent SIGTERM at that process's normal exit, after which nothing can ask
 * it for more.  It loads the preload list (mproc_set_forkserver_preload)
 * first, so that children find those libraries loaded.
 *
 * The control socket.  A SOCK_SEQPACKET socket pair made before the
 * server's exec; the server keeps one end (named in its argument bytes),
 * the parent the other.  No file name, no port: only a process holding
 * that fd can speak to the server.  The server still checks the sender's
 * uid on every request (SO_PASSCRED; the kernel fills it in) and refuses
 * any other, should the fd ever reach another user's process.
 *
 * A request is one message: a fixed record (the requester's signal mask,
 * the numbers its passed fds take in the child), the child's bootstrap
 * record (spawn.c) when it fits (MPROC__FS_INLINE_MAX), and the fds: the
 * caller's pass_fds, stdout and stderr, and, when the record did not fit,
 * first the child's end of its bootstrap socket.  With the record inline
 * the server resolves the target and ctx itself, through its map of the
 * requester's objects (kept from request to request, so a start costs no
 * scan of loaded objects), and refuses a request whose target it cannot
 * resolve without forking: one round trip, and the child, once forked,
 * has nothing to read and nothing to answer.  Resolving can load a
 * library the requester loaded (dlopen): it then stays loaded in the
 * server, as a preloaded one does, and every later child has it.
 * Without the record, the child reads it from its bootstrap socket and
 * answers there, as a spawned child does.  Either way the server forks;
 * the child closes what is the server's, puts the passed fds at their
 * numbers, restores SIGINT and the mask, and boots (the arena is already
 * mapped: inherited from the server).  The server replies with the
 * child's pid and two fds: a pidfd of the child (signals without a
 * recycled-pid race; readable when the child ends, whatever becomes of
 * the server) and a status socket on which it writes the child's exit
 * code once it has reaped it (Python relays the status the same way), or
 * with an error code and its reason.  Requests from the parent's threads
 * are serialized by one mutex around request and reply.
 *
 * The server killed.  Children keep running (non-daemon ones; daemon
 * children die with the server, as they do with their parent under fork).
 * Their pidfds still say when they end; their status sockets see EOF, so
 * their exit code is lost: mproc_process_exitcode returns MPROC_ELOST.
 * The next start sees the dead server (a failed send, or EOF for the
 * reply), reaps it, starts a new one and asks again, once.
 */
#include "../internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The caller's pass_fds, and its stdout and stderr. */
#define FS_MAX_PASS (MPROC_PASS_FDS_MAX + 2)

typedef struct fs_req {
  uint32_t magic;
  uint32_t npass;                      /* passed fds (after the boot fd) */
  uint32_t rec_len;                    /* record bytes after this; 0: the
                                          first fd is a bootstrap socket */
  int32_t target[FS_MAX_PASS];         /* their numbers in the child */
  sigset_t mask;
} fs_req;

typedef struct fs_rep {
  int32_t code; /* 0, or why no child was made */
  int32_t pid;
  char msg[MPROC__FS_MSG_MAX]; /* the reason, for a refused record */
} fs_rep;

#define FS_MAGIC 0x52534b46u /* "FKSR" */

/* ==================== the server ==================== */

typedef struct fs_child {
  pid_t pid;
  int pidfd;
  int status; /* the server's end of the child's status socket */
} fs_child;

static fs_child *kids;
static size_t nkids, capkids;

/* In a new child: drop everything that is the server's. */
static void close_server_fds(int ctl, int ep) {
  mproc__close(ctl);
  mproc__close(ep);
  for (size_t i = 0; i < nkids; i++) {
    mproc__close(kids[i].pidfd);
    mproc__close(kids[i].status);
  }
}

/*
 * In a new child: put the passed fds (fd[first..nfd)) at the numbers the
 * parent asked for.  Every received fd first moves above all those
 * numbers, so that no dup2 closes one still to be placed; fd[0], a
 * bootstrap socket when first is 1, follows its fd.
 */
static void place_fds(const fs_req *req, int *fd, int nfd, int first) {
  int top = 3;
  for (uint32_t i = 0; i < req->npass; i++) {
    if (req->target[i] >= top) {
      top = req->target[i] + 1;
    }
  }
  for (int i = 0; i < nfd; i++) {
    int h = mproc__fd_dup_above(fd[i], top);
    mproc__close(fd[i]);
    fd[i] = h;
  }
  for (uint32_t i = 0; i < req->npass && (int)i + first < nfd; i++) {
    (void)mproc__dup2(fd[i + first], req->target[i]);
    mproc__close(fd[i + first]);
  }
}

/*
 * The receive buffer: a request and, after it, a whole bootstrap record,
 * placed so that the record's body (the argument bytes first) is aligned
 * for any type, as malloc'd memory is; the child's target reads its
 * argument there (its copy of the server's buffer, never written again in
 * the child).
 */
static char *rbuf;
static size_t rlead;
#define RBUF_CAP (sizeof(fs_req) + MPROC__FS_INLINE_MAX)

static int rbuf_init(void) {
  size_t a = _Alignof(max_align_t);
  rlead = (a - (sizeof(fs_req) + mproc__boot_hdr_size()) % a) % a;
  rbuf = malloc(rlead + RBUF_CAP);
  return rbuf != NULL ? 0 : MPROC_ENOMEM;
}

static void serve_one(int ctl, int ep) {
  fs_req req;
  int fd[1 + FS_MAX_PASS];
  int nfd = 1 + FS_MAX_PASS;
  uid_t uid;
  char *buf = rbuf + rlead;
  ssize_t n = mproc__recv_fds(ctl, buf, RBUF_CAP, fd, &nfd, &uid);
  if (n == 0) {
    /* The parent closed its end, or died: nothing more can come. */
    mproc__exit_now(0);
  }
  if (n < 0) {
    if (n == -EAGAIN || n == -EINTR) {
      return;
    }
    mproc__exit_now(0);
  }
  fs_rep rep;
  memset(&rep, 0, sizeof rep);
  if (n >= (ssize_t)sizeof req) {
    memcpy(&req, buf, sizeof req);
  }
  const char *rec = buf + sizeof req;
  int first = 1; /* fd[0] is a bootstrap socket */
  if (uid != getuid()) {
    MPROC__WARN("forkserver: refused a request from uid %d",
                (int)(uid == (uid_t)-1 ? -1 : (int)uid));
    rep.code = MPROC_EPERM;
  } else if (n < (ssize_t)sizeof req || req.magic != FS_MAGIC ||
             req.npass > FS_MAX_PASS || req.rec_len > MPROC__FS_INLINE_MAX ||
             (size_t)n != sizeof req + req.rec_len) {
    rep.code = MPROC_EPROTO;
  } else {
    first = req.rec_len > 0 ? 0 : 1;
    if (nfd != first + (int)req.npass) {
      rep.code = MPROC_EPROTO;
    }
  }
  /* A record in the request: resolve its target here, before any fork. */
  void *fn = NULL, *ctx = NULL;
  if (rep.code == 0 && first == 0) {
    rep.code = mproc__boot_server_check(rec, req.rec_len, &fn, &ctx, rep.msg,
                                        sizeof rep.msg);
  }
  int st[2] = {-1, -1};
  if (rep.code == 0 && nkids == capkids) {
    size_t c = capkids ? capkids * 2 : 16;
    fs_child *k = realloc(kids, c * sizeof *k);
    if (k == NULL) {
      rep.code = MPROC_ENOMEM;
    } else {
      kids = k;
      capkids = c;
    }
  }
  if (rep.code == 0) {
    rep.code = mproc__socketpair(st);
  }
  pid_t pid = -1;
  if (rep.code == 0) {
    pid = mproc__fork();
    if (pid == 0) {
      close_server_fds(ctl, ep);
      mproc__close(st[0]);
      mproc__close(st[1]);
      signal(SIGINT, SIG_DFL);
      place_fds(&req, fd, nfd, first);
      mproc__signals_restore(&req.mask);
      if (first == 0) {
        mproc__boot_server_child(rec, fn, ctx, getppid());
      }
      mproc__boot_child(fd[0], 0, getppid());
    }
    if (pid < 0) {
      rep.code = (int32_t)pid;
    }
  }
  int pidfd = -1;
  if (rep.code == 0) {
    pidfd = mproc__pidfd_open(pid);
    if (pidfd < 0) {
      int code;
      (void)mproc__kill(pid, SIGKILL);
      (void)mproc__reap(pid, 0, &code);
      rep.code = pidfd == -ENOSYS ? MPROC_ENOSYS : pidfd;
    }
  }
  for (int i = 0; i < nfd; i++) {
    mproc__close(fd[i]);
  }
  if (rep.code != 0) {
    mproc__close(st[0]);
    mproc__close(st[1]);
    (void)mproc__send_fds(ctl, &rep, sizeof rep, NULL, 0);
    return;
  }
  rep.pid = (int32_t)pid;
  int give[2] = {pidfd, st[1]};
  (void)mproc__send_fds(ctl, &rep, sizeof rep, give, 2);
  mproc__close(st[1]);
  kids[nkids].pid = pid;
  kids[nkids].pidfd = pidfd;
  kids[nkids].status = st[0];
  (void)mproc__epoll_add(ep, pidfd, (uint64_t)pid);
  nkids++;
}

/* A child's pidfd is readable: reap it, relay its code, forget it. */
static void child_ended(int ep, pid_t pid) {
  for (size_t i = 0; i < nkids; i++) {
    if (kids[i].pid != pid) {
      continue;
    }
    int code = 0;
    if (mproc__reap(pid, 1, &code) == 0) {
      return; /* not yet (cannot happen for a readable pidfd) */
    }
    int32_t c = code;
    /* A requester that is gone: EPIPE, not a SIGPIPE ending the server. */
    (void)mproc__stream_write2(kids[i].status, 1, &c, sizeof c, NULL, 0, NULL,
                               NULL);
    (void)mproc__epoll_del(ep, kids[i].pidfd);
    mproc__close(kids[i].pidfd);
    mproc__close(kids[i].status);
    kids[i] = kids[--nkids];
    return;
  }
}

/* The server's target: arg holds the control socket's fd number, then
 * the preload paths, each NUL-terminated. */
static int forkserver_main(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  int ctl;
  if (len < sizeof ctl) {
    return 2;
  }
  memcpy(&ctl, arg, sizeof ctl);
  (void)mproc__fd_set_cloexec(ctl, 1);
  signal(SIGINT, SIG_IGN); /* a Ctrl-C is for the program, not for us */
  const char *p = (const char *)arg + sizeof ctl;
  const char *end = (const char *)arg + len;
  while (p < end) {
    size_t l = strnlen(p, (size_t)(end - p));
    if (l > 0 && l < (size_t)(end - p)) {
      char err[256];
      if (mproc__dl_open(p, err, sizeof err) != 0) {
        MPROC__WARN("forkserver: cannot preload %s: %s", p, err);
      }
    }
    p += l + 1;
  }
  /* Children get the requester's stdout and stderr with each request; the
   * server keeps none of its starter's (a terminal it held would never
   * hang up), except stderr when logging is on, for its own lines. */
  int null = mproc__open("/dev/null", O_WRONLY, 0);
  if (null >= 0) {
    (void)mproc__dup2(null, 1);
    if (mproc_log_get_level() == MPROC_LOG_OFF) {
      (void)mproc__dup2(null, 2);
    }
    mproc__close(null);
  }
  mproc__boot_serve();
  int ep = mproc__epoll_create();
  if (rbuf_init() != 0 || ep < 0 || mproc__epoll_add(ep, ctl, 0) != 0) {
    return 2;
  }
  uint64_t keys[16];
  for (;;) {
    int n = mproc__epoll_wait(ep, keys, 16, -1);
    for (int i = 0; i < n; i++) {
      if (keys[i] == 0) {
        serve_one(ctl, ep);
      } else {
        child_ended(ep, (pid_t)keys[i]);
      }
    }
  }
}

/* ==================== the parent's side ==================== */

static struct {
  pthread_mutex_t mu;
  int ctl;               /* our end of the control socket, -1 */
  mproc_process *proc;   /* the server, or NULL */
  pid_t owner;           /* the process ctl and proc belong to */
} fs = {.mu = PTHREAD_MUTEX_INITIALIZER, .ctl = -1};

/*
 * A forked child has no server of its own: the control socket is closed
 * here, and the server object belonged to the parent (its registry entry
 * is gone too).  The fields are not written here but dropped by fs_own()
 * when the child first takes fs.mu: a page written after fork is a
 * copy-on-write fault, and this runs in every child, of every fork.
 */
void mproc__forkserver_atfork_child(void) {
  mproc__mutex_reset_in_child(&fs.mu);
  /* Only the parent's own socket: in a grandchild, fs.ctl still names
   * the fd its parent closed at its fork, a number it may use again. */
  if (fs.ctl >= 0 && fs.owner == mproc__getppid()) {
    mproc__child_close(fs.ctl);
  }
}

/* After taking fs.mu: forget a server inherited from the parent (its
 * socket was closed at the fork). */
static void fs_own(void) {
  if ((fs.ctl >= 0 || fs.proc != NULL) && fs.owner != mproc__getpid()) {
    fs.ctl = -1;
    fs.proc = NULL;
  }
}

/* Stop and reap a server that is dead or unusable (fs.mu held). */
static void server_drop(void) {
  mproc__close(fs.ctl);
  fs.ctl = -1;
  if (fs.proc != NULL) {
    (void)mproc_process_kill(fs.proc);
    (void)mproc_process_join(fs.proc, MPROC_FOREVER);
    (void)mproc_process_free(fs.proc);
    fs.proc = NULL;
  }
}

/* Start the server (fs.mu held, none running).  Its children are known
 * to the requester by their pidfds (signals without a recycled-pid race,
 * an end that is seen even after the server died): without pidfds
 * (Linux before 5.3, MPROC_NO_PIDFD) there is no forkserver. */
static int server_start(void) {
  if (!mproc__pidfd_supported()) {
    return MPROC_ENOSYS;
  }
  int sv[2];
  int r = mproc__socketpair_seq(sv);
  if (r != 0) {
    return r;
  }
  /* Credentials on every request from the first one: set on the server's
   * end now, not by the server once it runs, or a request sent before
   * that would come without them (and be refused). */
  r = mproc__sock_passcred(sv[1]);
  if (r != 0) {
    mproc__close(sv[0]);
    mproc__close(sv[1]);
    return r;
  }
  char buf[sizeof(int) + 8192];
  size_t plen = 0;
  memcpy(buf, &sv[1], sizeof(int));
  r = mproc__forkserver_preload(buf + sizeof(int), sizeof buf - sizeof(int),
                                &plen);
  mproc__process_opts_internal io = {.name = "ForkServer",
                                     .daemon = 1,
                                     .pass_fds = &sv[1],
                                     .npass_fds = 1};
  mproc_process *p = NULL;
  if (r == 0) {
    r = mproc__process_new_internal(&p, forkserver_main, buf,
                                    sizeof(int) + plen, &io);
  }
  if (r == 0) {
    r = mproc_process_start(p);
  }
  mproc__close(sv[1]);
  if (r != 0) {
    mproc_process_free(p);
    mproc__close(sv[0]);
    return r;
  }
  fs.ctl = sv[0];
  fs.proc = p;
  fs.owner = mproc__getpid();
  MPROC__INFO("forkserver started, pid %d", (int)mproc_process_pid(p));
  return 0;
}

int mproc_forkserver_start(void) {
  pthread_mutex_lock(&fs.mu);
  fs_own();
  int r = 0;
  if (fs.proc != NULL && mproc_process_is_alive(fs.proc) != 1) {
    server_drop();
  }
  if (fs.proc == NULL) {
    r = server_start();
  }
  pthread_mutex_unlock(&fs.mu);
  return r;
}

/*
 * One request on ctl (the fixed part, then rec_len record bytes) and its
 * reply.  0 and the child's pid, pidfd and status socket; the server's
 * refusal (its code, msg its reason); MPROC_EMSGSIZE when the socket
 * takes no message that large; MPROC_ESPAWN when the server is gone (the
 * send failed, or EOF came instead of the reply).
 */
static int fs_ask(int ctl, const fs_req *req, const void *rec,
                  size_t rec_len, const int *give, int ngive, pid_t *pid,
                  int *pidfd, int *status_fd, char *msg, size_t cap) {
  ssize_t n = mproc__send_fds2(ctl, req, sizeof *req, rec, rec_len, give,
                               ngive);
  if (n == -EMSGSIZE) {
    return MPROC_EMSGSIZE;
  }
  if (n != (ssize_t)(sizeof *req + rec_len)) {
    return MPROC_ESPAWN; /* EPIPE, ECONNRESET: the server died */
  }
  fs_rep rep;
  int fds[2] = {-1, -1};
  int nfd = 2;
  n = mproc__recv_fds(ctl, &rep, sizeof rep, fds, &nfd, NULL);
  if (n != (ssize_t)sizeof rep || rep.code != 0 || nfd != 2) {
    for (int i = 0; i < nfd; i++) {
      mproc__close(fds[i]);
    }
    if (n != (ssize_t)sizeof rep) {
      return MPROC_ESPAWN; /* EOF: it died before or while it answered */
    }
    if (cap > 0) {
      rep.msg[sizeof rep.msg - 1] = '\0';
      snprintf(msg, cap, "%s", rep.msg);
    }
    return rep.code != 0 ? rep.code : MPROC_EPROTO;
  }
  *pid = (pid_t)rep.pid;
  *pidfd = mproc__fd_above_stdio(fds[0]);
  *status_fd = mproc__fd_above_stdio(fds[1]);
  return 0;
}

int mproc__forkserver_request(int ctl, int boot_fd, const sigset_t *mask,
                              pid_t *pid, int *pidfd, int *status_fd) {
  fs_req req;
  memset(&req, 0, sizeof req);
  req.magic = FS_MAGIC;
  req.mask = *mask;
  return fs_ask(ctl, &req, NULL, 0, &boot_fd, 1, pid, pidfd, status_fd, NULL,
                0);
}

int mproc__forkserver_fork(int boot_fd, const void *rec, size_t rec_len,
                           const int *pass_fds, int npass,
                           const sigset_t *mask, pid_t *pid, int *pidfd,
                           int *status_fd, char *msg, size_t cap) {
  if (cap > 0) {
    msg[0] = '\0';
  }
  fs_req req;
  memset(&req, 0, sizeof req);
  req.magic = FS_MAGIC;
  req.mask = *mask;
  if (npass < 0 || npass > MPROC_PASS_FDS_MAX ||
      (rec == NULL) == (boot_fd < 0) || rec_len > MPROC__FS_INLINE_MAX) {
    return MPROC_EINVAL;
  }
  req.rec_len = rec != NULL ? (uint32_t)rec_len : 0;
  int give[1 + FS_MAX_PASS];
  int ngive = 0;
  if (rec == NULL) {
    give[ngive++] = boot_fd;
  }
  int n = 0;
  for (int i = 0; i < npass; i++, n++) {
    req.target[n] = pass_fds[i];
    give[ngive++] = pass_fds[i];
  }
  /* The child writes where the caller writes now, as a forked or spawned
   * child does, not where the server's stdout and stderr went when it
   * was started (Python's forkserver children use the server's).  A
   * closed one stays the server's. */
  for (int fd = 1; fd <= 2; fd++) {
    if (mproc__fd_valid(fd)) {
      req.target[n] = fd;
      give[ngive++] = fd;
      n++;
    }
  }
  req.npass = (uint32_t)n;
  pthread_mutex_lock(&fs.mu);
  fs_own();
  int r = MPROC_ESPAWN;
  for (int attempt = 0; attempt < 2; attempt++) {
    if (fs.proc != NULL && attempt > 0) {
      MPROC__WARN("forkserver (pid %d) is gone; starting a new one",
                  (int)mproc_process_pid(fs.proc));
      server_drop();
    }
    if (fs.proc == NULL) {
      r = server_start();
      if (r != 0) {
        break;
      }
    }
    r = fs_ask(fs.ctl, &req, rec, req.rec_len, give, ngive, pid, pidfd,
               status_fd, msg, cap);
    if (r != MPROC_ESPAWN) {
      break;
    }
  }
  pthread_mutex_unlock(&fs.mu);
  return r;
}

void mproc__forkserver_stop(void) {
  pthread_mutex_lock(&fs.mu);
  fs_own();
  mproc__close(fs.ctl);
  fs.ctl = -1;
  if (fs.proc != NULL) {
    /* EOF on its control socket ends the server; a server that does not
     * end in time (stopped, say) is killed. */
    if (mproc_process_join(fs.proc, 5.0) != 0 ||
        mproc_process_is_alive(fs.proc) == 1) {
      (void)mproc_process_kill(fs.proc);
      (void)mproc_process_join(fs.proc, MPROC_FOREVER);
    }
    (void)mproc_process_free(fs.proc);
    fs.proc = NULL;
  }
  pthread_mutex_unlock(&fs.mu);
}

int mproc__forkserver_ctl(void) {
  pthread_mutex_lock(&fs.mu);
  fs_own();
  int fd = fs.ctl;
  pthread_mutex_unlock(&fs.mu);
  return fd;
}

pid_t mproc__forkserver_pid(void) {
  pthread_mutex_lock(&fs.mu);
  fs_own();
  pid_t pid = fs.proc != NULL ? mproc_process_pid(fs.proc) : 0;
  pthread_mutex_unlock(&fs.mu);
  return pid;
}
