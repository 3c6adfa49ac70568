/*
 * spawn.c - the spawn start method: a child that is a fresh exec of the
 * same program, taken over by mproc before main() runs.
 *
 * DESIGN
 *
 * The parent (mproc_process_start, in the thread process.c picks) execs
 * the program (/proc/self/exe unless mproc_set_executable named another)
 * with posix_spawn, keeping two fds open in it: the arena's memfd and one
 * end of a socket pair, whose number it names in the environment variable
 * MPROC_SPAWN_FD.  Over that socket it sends a bootstrap record (below)
 * and waits for one reply: 0 once the child is ready to run the target,
 * or an error code with a message.  So every failure of the child's setup
 * is the parent's start's error, with the reason, and the child it
 * started is reaped before start returns.
 *
 * The child: a constructor of the library (spawn_takeover, priority 101,
 * in this file, whose functions process.c calls, so a static link keeps
 * it)
 * sees MPROC_SPAWN_FD, removes it from the environment, and never
 * returns: it reads the record, maps the arena at the parent's address
 * (MAP_FIXED_NOREPLACE), turns the target's address in the parent into
 * its own through the parent's table of loaded objects (funcref.c: same
 * object, same GNU build-id, else MPROC_EBUILD / MPROC_ENOFUNC), takes
 * its identity (name, daemon flag and death signal, parent), replies, and
 * runs the target as a forked child would (process.c).  main() never
 * runs.  Constructors of the program that are ordered before the
 * library's have run (those of libraries it depends on, such as libc's);
 * the program's own constructors may or may not have, depending on the
 * link order: a target must not rely on them, as a Python target must not
 * rely on code under `if __name__ == "__main__"`.
 *
 * ctx travels as an address: arena memory as it is, static data of a
 * loaded object translated like a function (it then names the child's
 * copy of that variable, holding its initial value, not what the parent
 * wrote at run time), anything else (heap, stack) is refused at start
 * with MPROC_EINVAL, since no copy of it exists in the new image.
 *
 * The same record and reply serve the forkserver (forkserver.c): its
 * children read them from the socket the parent passed through the
 * server, with the arena already mapped (inherited from the server).
 */
#include "../internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BOOT_MAGIC 0x4253504du /* "MPSB" */
#define BOOT_VERSION 1u
#define BOOT_ENV "MPROC_SPAWN_FD"

/* Bounds the child checks before it allocates: nothing a bad record
 * says makes it reserve more. */
#define BOOT_NAME_MAX 256
#define BOOT_TAB_MAX (1u << 20)
#define BOOT_ARG_MAX ((uint64_t)1 << 36)

typedef struct boot_hdr {
  uint32_t magic;
  uint32_t version;
  uint64_t total;       /* bytes of the whole record, header included */
  uint64_t arena_base;  /* 0: no arena to map (forkserver: inherited) */
  uint64_t arena_size;
  uint64_t target;      /* the target's address in the parent */
  uint64_t ctx;         /* ctx as the parent passed it */
  int32_t arena_fd;     /* the memfd's number in the child, -1 */
  int32_t daemon;
  int32_t method;       /* the parent's default start method */
  int32_t parent_pid;
  uint32_t ctx_kind;    /* CTX_* */
  uint32_t name_len;    /* then the bytes, in this order: */
  uint32_t ident_len;
  uint32_t pname_len;
  uint32_t tab_len;     /* the parent's object table */
  uint32_t npass;       /* fds to keep (their numbers follow the header) */
  int32_t wfd;          /* a sentinel pipe's write end to keep, -1 */
  int32_t pad;
  uint64_t arg_len;
  int32_t pass[MPROC_PASS_FDS_MAX];
} boot_hdr;

enum { CTX_NONE = 0, CTX_AS_IS = 1, CTX_STATIC = 2 };

typedef struct boot_reply {
  int32_t code;
  char msg[252];
} boot_reply;

/* ==================== the parent's side ==================== */

/* The object table, rebuilt only when objects were loaded or unloaded. */
static struct {
  pthread_mutex_t mu;
  void *tab;
  size_t len;
  uint64_t gen;
} tab_cache = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* A copy of this process's current object table (malloc'd). */
static int objtab_copy(void **out, size_t *len) {
  pthread_mutex_lock(&tab_cache.mu);
  uint64_t gen = mproc__objtab_generation();
  int r = 0;
  if (tab_cache.tab == NULL || tab_cache.gen != gen) {
    void *t = NULL;
    size_t l = 0;
    r = mproc__objtab_build(&t, &l);
    if (r == 0) {
      free(tab_cache.tab);
      tab_cache.tab = t;
      tab_cache.len = l;
      tab_cache.gen = gen;
    }
  }
  if (r == 0) {
    *out = malloc(tab_cache.len);
    if (*out == NULL) {
      r = MPROC_ENOMEM;
    } else {
      memcpy(*out, tab_cache.tab, tab_cache.len);
      *len = tab_cache.len;
    }
  }
  pthread_mutex_unlock(&tab_cache.mu);
  return r;
}

static mproc__funcmap *parent_map;

/*
 * A forkserver keeps parent_map for its children: it resolved the
 * requester's table itself (mproc__boot_server_check), and each child it
 * forks is the requester's child with that same map.  serving is the
 * server's pid; the atfork handler frees the map only in a child whose
 * parent is not the server.  map_tab is the table parent_map was last
 * built from (the server's own record, or a copy), so that a request
 * with the same table, the common case, needs no parse at all.
 */
static pid_t serving;
static const void *map_tab;
static size_t map_tab_len;
static void *map_tab_owned;

void mproc__spawn_atfork_child(void) {
  mproc__mutex_reset_in_child(&tab_cache.mu);
  /* A forked child has its parent's addresses: it needs no translation,
   * and the map it inherited describes its parent's spawner, whose
   * addresses are not its parent's (a pool forked by a spawned process
   * must call its owner's pointers as they are).  Written only where set:
   * a page written after fork is a copy-on-write fault in every child. */
  if (parent_map != NULL &&
      (serving == 0 || serving != mproc__getppid())) {
    mproc__funcmap *m = parent_map;
    parent_map = NULL;
    mproc__funcmap_free(m);
  }
}

static void put(char **w, const void *src, size_t n) {
  if (n > 0) {
    memcpy(*w, src, n);
  }
  *w += n;
}

int mproc__boot_record(const mproc__boot_info *bi, int arena_fd_in_child,
                       void **out, size_t *len) {
  uint32_t kind = CTX_NONE;
  if (bi->ctx != NULL) {
    if (mproc__arena_contains(bi->ctx)) {
      kind = CTX_AS_IS;
    } else if (mproc__objtab_contains(bi->ctx)) {
      kind = CTX_STATIC;
    } else {
      MPROC__WARN("%s: under spawn and forkserver, ctx must point into the "
                  "shared arena or at static data (it is copied nowhere)",
                  bi->name);
      return MPROC_EINVAL;
    }
  }
  if (!mproc__objtab_contains((const void *)(uintptr_t)bi->target)) {
    return MPROC_ENOFUNC;
  }
  void *tab = NULL;
  size_t tab_len = 0;
  int r = objtab_copy(&tab, &tab_len);
  if (r != 0) {
    return r;
  }
  boot_hdr h;
  memset(&h, 0, sizeof h);
  h.magic = BOOT_MAGIC;
  h.version = BOOT_VERSION;
  if (arena_fd_in_child >= 0 &&
      mproc__arena_where(&h.arena_base, &h.arena_size) != 0) {
    h.arena_base = 0;
  }
  h.arena_fd = arena_fd_in_child;
  h.wfd = bi->wfd;
  if (bi->npass < 0 || bi->npass > MPROC_PASS_FDS_MAX) {
    free(tab);
    return MPROC_EINVAL;
  }
  h.npass = (uint32_t)bi->npass;
  for (int i = 0; i < bi->npass; i++) {
    h.pass[i] = bi->pass_fds[i];
  }
  h.target = bi->target;
  h.ctx = (uint64_t)(uintptr_t)bi->ctx;
  h.ctx_kind = kind;
  h.daemon = bi->daemon;
  h.method = bi->method;
  h.parent_pid = (int32_t)bi->parent_pid;
  h.name_len = (uint32_t)strlen(bi->name);
  h.ident_len = (uint32_t)strlen(bi->ident);
  h.pname_len = (uint32_t)strlen(bi->parent_name);
  h.tab_len = (uint32_t)tab_len;
  h.arg_len = bi->len;
  h.total = sizeof h + h.name_len + h.ident_len + h.pname_len + h.tab_len +
            h.arg_len;
  char *rec = malloc(h.total);
  if (rec == NULL) {
    free(tab);
    return MPROC_ENOMEM;
  }
  char *w = rec;
  /* The argument bytes first: the child reads the body into memory from
   * malloc, so its copy of them is aligned for any type, as a forked
   * child's is. */
  put(&w, &h, sizeof h);
  put(&w, bi->arg, bi->len);
  put(&w, bi->name, h.name_len);
  put(&w, bi->ident, h.ident_len);
  put(&w, bi->parent_name, h.pname_len);
  put(&w, tab, tab_len);
  free(tab);
  *out = rec;
  *len = h.total;
  return 0;
}

int mproc__boot_handshake(int sock, const void *rec, size_t len, char *msg,
                          size_t cap) {
  if (cap > 0) {
    msg[0] = '\0';
  }
  /* A socket write: a child that is gone already (not an mproc program,
   * killed) is EPIPE here, never a SIGPIPE that kills the caller. */
  int n = mproc__stream_write2(sock, 1, rec, len, NULL, 0, NULL, NULL);
  boot_reply rep;
  /* Read the reply even after a failed write: the child may have
   * refused the record early and said why. */
  ssize_t m = mproc__read_full(sock, &rep, sizeof rep);
  if (m != (ssize_t)sizeof rep) {
    (void)n;
    return MPROC_ESPAWN;
  }
  if (rep.code != 0 && cap > 0) {
    rep.msg[sizeof rep.msg - 1] = '\0';
    snprintf(msg, cap, "%s", rep.msg);
  }
  return rep.code > 0 ? MPROC_ESPAWN : rep.code;
}

int mproc__spawn_exec(const char *exe, int boot_fd, int keep_wfd,
                      const int *pass_fds, int npass, int devnull,
                      const sigset_t *mask, pid_t *pid) {
  extern char **environ;
  size_t n = 0;
  while (environ[n] != NULL) {
    n++;
  }
  char **envp = malloc((n + 2) * sizeof *envp);
  if (envp == NULL) {
    return MPROC_ENOMEM;
  }
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (strncmp(environ[i], BOOT_ENV "=", sizeof BOOT_ENV) != 0) {
      envp[k++] = environ[i];
    }
  }
  char var[sizeof BOOT_ENV + 16];
  snprintf(var, sizeof var, BOOT_ENV "=%d", boot_fd);
  envp[k++] = var;
  envp[k] = NULL;
  /* argv[0] as the parent's, so ps and /proc show the program's name;
   * no other argument reaches the child's main, which never runs. */
  extern char *program_invocation_name;
  char *argv[] = {program_invocation_name, NULL};
  int keep[3 + MPROC_PASS_FDS_MAX] = {boot_fd, mproc__arena_fd(), keep_wfd};
  int nkeep = 3;
  for (int i = 0; i < npass && i < MPROC_PASS_FDS_MAX; i++) {
    keep[nkeep++] = pass_fds[i];
  }
  int r = mproc__spawn_image(pid, exe, argv, envp, keep, nkeep, devnull,
                             mask);
  free(envp);
  return r;
}

/* ==================== the child's side ==================== */

/* The parent's objects, resolved here; NULL when started by fork (the
 * parent's addresses are this process's own). */

mproc__funcmap *mproc__parent_funcmap(void) { return parent_map; }


static void reply(int sock, int code, const char *fmt, const char *arg) {
  boot_reply rep;
  memset(&rep, 0, sizeof rep);
  rep.code = code;
  snprintf(rep.msg, sizeof rep.msg, fmt, arg);
  (void)mproc__stream_write2(sock, 1, &rep, sizeof rep, NULL, 0, NULL, NULL);
}

/* Read exactly n bytes or fail. */
static int read_exact(int fd, void *buf, size_t n) {
  return mproc__read_full(fd, buf, n) == (ssize_t)n ? 0 : MPROC_EPROTO;
}

static void copy_str(char *dst, size_t cap, const char *src, size_t n) {
  if (n >= cap) {
    n = cap - 1;
  }
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* A header's bounds, checked before anything is allocated or read. */
static int hdr_ok(const boot_hdr *h) {
  uint64_t body = h->total - sizeof *h;
  return h->magic == BOOT_MAGIC && h->version == BOOT_VERSION &&
         h->name_len <= BOOT_NAME_MAX && h->ident_len <= BOOT_NAME_MAX &&
         h->pname_len <= BOOT_NAME_MAX && h->tab_len <= BOOT_TAB_MAX &&
         h->arg_len <= BOOT_ARG_MAX && h->total >= sizeof *h &&
         h->npass <= MPROC_PASS_FDS_MAX &&
         body == (uint64_t)h->name_len + h->ident_len + h->pname_len +
                     h->tab_len + h->arg_len;
}

/* The strings and the table in a record's body (b: the body, whose
 * first arg_len bytes are the argument). */
typedef struct boot_view {
  char name[MPROC_NAME_MAX + 1], ident[64], pname[MPROC_NAME_MAX + 1];
  const void *tab;
} boot_view;

static void view_of(const boot_hdr *h, const char *b, boot_view *v) {
  const char *q = b + h->arg_len;
  copy_str(v->name, sizeof v->name, q, h->name_len);
  q += h->name_len;
  copy_str(v->ident, sizeof v->ident, q, h->ident_len);
  q += h->ident_len;
  copy_str(v->pname, sizeof v->pname, q, h->pname_len);
  q += h->pname_len;
  v->tab = q;
}

/*
 * Make parent_map describe the parent's table tab (len bytes): built on
 * first use, updated when the parent loaded or unloaded a library since
 * (what was resolved for the objects it still has is kept), untouched
 * when the table is the one it was built from.  copy: tab does not live
 * for good (the forkserver's receive buffer), keep a copy of it.
 */
static int map_for(const void *tab, size_t len, int copy) {
  if (parent_map != NULL && map_tab_len == len &&
      memcmp(map_tab, tab, len) == 0) {
    return 0;
  }
  void *c = NULL;
  if (copy) {
    c = malloc(len > 0 ? len : 1);
    if (c == NULL) {
      return MPROC_ENOMEM;
    }
    memcpy(c, tab, len);
    tab = c;
  }
  int r = parent_map != NULL ? mproc__funcmap_update(parent_map, tab, len)
                             : mproc__funcmap_new(&parent_map, tab, len);
  if (r != 0) {
    free(c);
    return r;
  }
  free(map_tab_owned);
  map_tab_owned = c;
  map_tab = tab;
  map_tab_len = len;
  return 0;
}

/* The target and ctx through map m. */
static int resolve_in(mproc__funcmap *m, const boot_hdr *h, void **fn,
                      void **ctx) {
  int r = mproc__funcmap_resolve(m, h->target, fn);
  *ctx = (void *)(uintptr_t)h->ctx;
  if (r == 0 && h->ctx_kind == CTX_STATIC) {
    r = mproc__funcmap_resolve(m, h->ctx, ctx);
  }
  return r;
}

/* The last steps of every child's boot: its identity, the "ready" reply
 * where a parent waits for one (sock >= 0), the target. */
__attribute__((noreturn)) static void boot_finish(const boot_hdr *h,
                                                  const boot_view *v,
                                                  const void *arg, void *fn,
                                                  void *ctx, int sock,
                                                  pid_t real_ppid) {
  mproc__start_method_inherit(h->method);
  mproc__process_become(v->name, v->ident, h->daemon, (pid_t)h->parent_pid,
                        v->pname,
                        real_ppid != 0 ? real_ppid : (pid_t)h->parent_pid);
  if (sock >= 0) {
    reply(sock, 0, "%s", "");
    mproc__close(sock);
  }
  mproc__process_run((mproc_target_fn)fn, arg, (size_t)h->arg_len, ctx);
}

/* A daemon child dies with real_ppid (or the record's parent). */
static void set_death_signal(const boot_hdr *h, pid_t real_ppid) {
  if (h->daemon &&
      mproc__set_parent_death_signal(
          SIGKILL, real_ppid != 0 ? real_ppid : (pid_t)h->parent_pid) ==
          -ESRCH) {
    mproc__exit_now(1); /* the parent is gone already */
  }
}

__attribute__((noreturn)) void mproc__boot_child(int sock, int attach,
                                                 pid_t real_ppid) {
  boot_hdr h;
  if (read_exact(sock, &h, sizeof h) != 0) {
    mproc__exit_now(127);
  }
  if (!hdr_ok(&h)) {
    reply(sock, MPROC_EPROTO, "%s", "bad bootstrap record");
    mproc__exit_now(127);
  }
  uint64_t body = h.total - sizeof h;
  char *b = malloc(body > 0 ? body : 1);
  if (b == NULL) {
    reply(sock, MPROC_ENOMEM, "%s", "no memory for the bootstrap record");
    mproc__exit_now(127);
  }
  if (read_exact(sock, b, body) != 0) {
    mproc__exit_now(127);
  }
  boot_view v;
  view_of(&h, b, &v);

  /* Only what the parent passed stays open (Python's spawn closes every
   * other fd the same way): the fds of whatever the program had open
   * without close-on-exec are not this child's. */
  int keep[4 + MPROC_PASS_FDS_MAX] = {sock, attach ? h.arena_fd : -1,
                                      mproc__arena_fd(), h.wfd};
  int nkeep = 4;
  for (uint32_t i = 0; i < h.npass; i++) {
    keep[nkeep++] = h.pass[i];
  }
  /* A forkserver child (attach 0) needs no scan: the server was itself
   * spawned through here, so it holds only its own fds, and its child
   * closed those before it came here (forkserver.c). */
  if (attach) {
    (void)mproc__close_inherited_except(keep, nkeep);
  }
  set_death_signal(&h, real_ppid);
  int r;
  if (attach && h.arena_base != 0) {
    r = mproc__arena_attach(h.arena_fd, h.arena_base, h.arena_size);
    if (r != 0) {
      char where[64];
      snprintf(where, sizeof where, "%#llx",
               (unsigned long long)h.arena_base);
      reply(sock, r, "cannot map the shared arena at %s in the new image",
            where);
      mproc__exit_now(127);
    }
  }
  /* A forkserver's child starts from the server's map of the same
   * parent's objects, with what the server resolved already. */
  r = map_for(v.tab, h.tab_len, 0); /* v.tab is in b, never freed */
  if (r != 0) {
    reply(sock, r, "%s", "bad object table in the bootstrap record");
    mproc__exit_now(127);
  }
  void *fn = NULL, *ctx = NULL;
  r = resolve_in(parent_map, &h, &fn, &ctx);
  if (r != 0) {
    reply(sock, r, "%s", mproc__funcmap_error(parent_map));
    mproc__exit_now(127);
  }
  /* The argument bytes stay where they are, in b, for the target. */
  boot_finish(&h, &v, b, fn, ctx, sock, real_ppid);
}

/* ==================== the forkserver's side ==================== */

void mproc__boot_serve(void) { serving = mproc__getpid(); }

size_t mproc__boot_hdr_size(void) { return sizeof(boot_hdr); }

int mproc__boot_server_check(const void *rec, size_t len, void **fn,
                             void **ctx, char *msg, size_t cap) {
  msg[0] = '\0';
  boot_hdr h;
  if (len < sizeof h) {
    return MPROC_EPROTO;
  }
  memcpy(&h, rec, sizeof h);
  if (!hdr_ok(&h) || h.total != len) {
    snprintf(msg, cap, "bad bootstrap record");
    return MPROC_EPROTO;
  }
  const char *b = (const char *)rec + sizeof h;
  const void *tab = b + h.arg_len + h.name_len + h.ident_len + h.pname_len;
  /* rec is the server's receive buffer: the map keeps a copy of the
   * table when it changed. */
  int r = map_for(tab, h.tab_len, 1);
  if (r != 0) {
    snprintf(msg, cap, "bad object table in the bootstrap record");
    return r;
  }
  r = resolve_in(parent_map, &h, fn, ctx);
  if (r != 0) {
    snprintf(msg, cap, "%s", mproc__funcmap_error(parent_map));
  }
  return r;
}

__attribute__((noreturn)) void mproc__boot_server_child(const void *rec,
                                                        void *fn, void *ctx,
                                                        pid_t real_ppid) {
  boot_hdr h;
  memcpy(&h, rec, sizeof h);
  const char *b = (const char *)rec + sizeof h;
  boot_view v;
  view_of(&h, b, &v);
  set_death_signal(&h, real_ppid);
  boot_finish(&h, &v, b, fn, ctx, -1, real_ppid);
}

/*
 * The takeover.  Priority 101, the first a program may use: within a
 * statically linked program it runs before the program's own default
 * constructors; a shared libmproc runs its constructors before the
 * program's anyway.
 */
__attribute__((constructor(101))) static void spawn_takeover(void) {
  const char *v = getenv(BOOT_ENV);
  if (v == NULL) {
    return;
  }
  char *end = NULL;
  long fd = strtol(v, &end, 10);
  unsetenv(BOOT_ENV);
  if (end == v || *end != '\0' || fd < 3 || fd > 1 << 20) {
    return; /* not ours to act on */
  }
  mproc__boot_child((int)fd, 1, 0);
}
