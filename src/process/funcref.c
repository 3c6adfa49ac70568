/* funcref.c - functions and static data across exec and across machines.
 *
 * Design notes
 * ------------
 * A process target or a pool task is a plain C function pointer, and its
 * ctx may point at static data.  With fork the child has the parent's
 * address space and the pointer is valid as it is.  A child started by
 * spawn or the forkserver is a fresh image of the program: the kernel has
 * placed the main program and every library at other addresses.  So the
 * parent describes its loaded objects in an *object table*, and the child
 * translates a parent address into its own:
 *
 *   1. find the parent's object whose loadable span holds the address
 *      (none: MPROC_ENOFUNC; a heap or stack address is never a function);
 *   2. find the same object here: the main program is the main program; a
 *      library is the loaded object with the same GNU build-id, and when
 *      none is loaded, the file at the parent's path is loaded (dlopen) and
 *      must then carry that build-id;
 *   3. add the difference of the two load biases.
 *
 * A build-id that differs is MPROC_EBUILD: the child runs other code than
 * the parent (a rebuilt program, a library replaced on disk), and calling
 * into it would be calling a wrong function.  An object without a build-id
 * (linked with --build-id=none) is matched by path alone, which cannot see
 * a replaced file: build with build-ids (the default of Debian's gcc and
 * clang) for that check.
 *
 * The table is a self-contained byte string, independent of the sending
 * process's pointer size and byte order, so the MPI backend can send the
 * same table over the network.  Its parser checks every length against the
 * bytes given: a bad table is MPROC_EPROTO, never a read past its end.
 *
 *   header   u32 magic "MPOT", u16 version (1), u16 0, u32 count, u32 0
 *   object   u64 bias, u64 lo, u64 hi, u32 flags (1: main program),
 *            u16 build-id length (<= 40), u16 path length, build-id bytes,
 *            path bytes (no NUL; the main program's is /proc/self/exe's
 *            target, kept for error messages)
 *
 * all little-endian.  Resolution is lazy and cached per object: the first
 * address in an object costs a scan of the loaded objects (and a dlopen at
 * most once), later ones a short search without a system call.
 */
#include "../internal.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define OT_MAGIC 0x544f504du /* "MPOT" */
#define OT_VERSION 1
#define OT_HDR 16
#define OT_OBJ 32            /* the fixed part of an object record */
#define OT_MAX_OBJS 65536    /* far above any real program */
#define OT_FLAG_MAIN 1u

/* ---- little-endian helpers ---------------------------------------------- */

static void put16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint16_t get16(const unsigned char *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* ---- building a table ------------------------------------------------- */

typedef struct build_ctx {
  unsigned char *buf;
  size_t len, cap;
  uint32_t count;
  char exe[MPROC__PATH_MAX];
  int err;
} build_ctx;

static int grow(build_ctx *b, size_t need) {
  if (b->len + need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 1024;
  while (cap < b->len + need) cap *= 2;
  unsigned char *nb = realloc(b->buf, cap);
  if (!nb) return MPROC_ENOMEM;
  b->buf = nb;
  b->cap = cap;
  return 0;
}

static int build_cb(const mproc__dlobj *o, void *arg) {
  build_ctx *b = arg;
  if (o->is_vdso) return 0;
  const char *path = o->is_main ? b->exe : o->path;
  /* A library loaded by a relative path is named as it was given; make it
   * absolute so another process (another working directory) finds it. */
  char abs[PATH_MAX];
  if (!o->is_main && path[0] && path[0] != '/' && realpath(path, abs))
    path = abs;
  size_t plen = strlen(path);
  if (plen > UINT16_MAX) plen = 0; /* no path: matched by build-id only */
  if (grow(b, OT_OBJ + o->build_id_len + plen) != 0) {
    b->err = MPROC_ENOMEM;
    return 1;
  }
  unsigned char *p = b->buf + b->len;
  put64(p, (uint64_t)o->bias);
  put64(p + 8, (uint64_t)o->lo);
  put64(p + 16, (uint64_t)o->hi);
  put32(p + 24, o->is_main ? OT_FLAG_MAIN : 0);
  put16(p + 28, (uint16_t)o->build_id_len);
  put16(p + 30, (uint16_t)plen);
  memcpy(p + OT_OBJ, o->build_id, o->build_id_len);
  memcpy(p + OT_OBJ + o->build_id_len, path, plen);
  b->len += OT_OBJ + o->build_id_len + plen;
  b->count++;
  return 0;
}

int mproc__objtab_build(void **out, size_t *len) {
  if (!out || !len) return MPROC_EINVAL;
  *out = NULL;
  *len = 0;
  build_ctx *b = calloc(1, sizeof *b);
  if (!b) return MPROC_ENOMEM;
  if (mproc__self_exe(b->exe, sizeof b->exe) != 0) b->exe[0] = '\0';
  int r = grow(b, OT_HDR);
  if (r == 0) {
    b->len = OT_HDR;
    mproc__dl_each(build_cb, b);
    r = b->err;
  }
  if (r != 0) {
    free(b->buf);
    free(b);
    return r;
  }
  put32(b->buf, OT_MAGIC);
  put16(b->buf + 4, OT_VERSION);
  put16(b->buf + 6, 0);
  put32(b->buf + 8, b->count);
  put32(b->buf + 12, 0);
  *out = b->buf;
  *len = b->len;
  free(b);
  return 0;
}

uint64_t mproc__objtab_generation(void) { return mproc__dl_generation(); }

/* ---- this process's loaded objects, cached ------------------------------ */

/* An immutable snapshot of the loaded objects.  A newer one replaces it
 * when a query misses after a library was loaded; old ones are kept (a
 * reader may still be scanning one; no lock, so a fork in the middle of a
 * query leaves nothing held), a few hundred bytes per load, chained from
 * the newest so that they stay reachable (a leak checker would report
 * them otherwise). */
typedef struct loc_obj {
  uintptr_t lo, hi, bias;
  int is_main;
  size_t idlen;
  uint8_t id[40];
} loc_obj;

typedef struct obj_set {
  struct obj_set *prev;
  uint64_t gen;
  size_t n;
  loc_obj o[];
} obj_set;

static _Atomic(obj_set *) snapshot;

typedef struct fill_ctx { obj_set *set; size_t cap; } fill_ctx;

static int fill_cb(const mproc__dlobj *o, void *arg) {
  fill_ctx *c = arg;
  if (o->is_vdso) return 0;
  if (c->set == NULL) {
    c->cap++;
    return 0;
  }
  if (c->set->n >= c->cap) return 1;
  loc_obj *l = &c->set->o[c->set->n++];
  l->lo = o->lo;
  l->hi = o->hi;
  l->bias = o->bias;
  l->is_main = o->is_main;
  l->idlen = o->build_id_len;
  memcpy(l->id, o->build_id, o->build_id_len);
  return 0;
}

static const loc_obj *obj_at(const obj_set *set, uintptr_t a) {
  for (size_t i = 0; set && i < set->n; i++)
    if (a >= set->o[i].lo && a < set->o[i].hi) return &set->o[i];
  return NULL;
}

/* The current snapshot, rescanned when objects were loaded or unloaded
 * since it was taken (or force_gen differs).  NULL when out of memory. */
static obj_set *objects_now(obj_set *cur) {
  uint64_t gen = mproc__dl_generation();
  if (cur && cur->gen == gen) return cur;
  /* Objects may be loaded between the count and the fill; a fill that
   * finds more than counted keeps what fits, and the next miss rescans. */
  fill_ctx c = {NULL, 0};
  mproc__dl_each(fill_cb, &c);
  c.cap += 4;
  obj_set *set = calloc(1, sizeof *set + c.cap * sizeof set->o[0]);
  if (!set) return cur;
  c.set = set;
  set->gen = gen;
  set->prev = cur;
  mproc__dl_each(fill_cb, &c);
  if (!atomic_compare_exchange_strong(&snapshot, &cur, set)) {
    free(set); /* another thread published one first: use it */
    return cur;
  }
  return set;
}

int mproc__objtab_contains(const void *addr) {
  if (!addr) return 0;
  uintptr_t a = (uintptr_t)addr;
  obj_set *cur = atomic_load_explicit(&snapshot, memory_order_acquire);
  if (obj_at(cur, a)) return 1;
  return obj_at(objects_now(cur), a) != NULL;
}

/* ---- references kept in shared memory ----------------------------------- */

#define FNREF_RAW 1  /* an address as it is (arena memory, heap, stack) */
#define FNREF_OBJ 2  /* an offset in an object named by its build-id */

void mproc__fnref_make(mproc__fnref *r, const void *addr) {
  memset(r, 0, sizeof *r);
  uintptr_t a = (uintptr_t)addr;
  r->kind = FNREF_RAW;
  r->off = (uint64_t)a;
  if (!addr) return;
  obj_set *cur = atomic_load_explicit(&snapshot, memory_order_acquire);
  const loc_obj *o = obj_at(cur, a);
  if (!o) o = obj_at(objects_now(cur), a);
  /* An object without a build-id cannot be named in another image; the
   * main program is the main program, whatever its build-id. */
  if (!o || (o->idlen == 0 && !o->is_main)) return;
  r->kind = FNREF_OBJ;
  r->is_main = (uint8_t)o->is_main;
  r->idlen = (uint8_t)o->idlen;
  memcpy(r->id, o->id, o->idlen);
  r->off = (uint64_t)(a - o->bias);
}

static const loc_obj *obj_named(const obj_set *set, const mproc__fnref *r) {
  for (size_t i = 0; set && i < set->n; i++) {
    const loc_obj *o = &set->o[i];
    if (r->is_main ? !o->is_main : o->is_main) continue;
    if (r->idlen == 0 || (o->idlen == r->idlen &&
                          memcmp(o->id, r->id, r->idlen) == 0))
      return o;
    if (r->is_main) return NULL; /* the main program is another build */
  }
  return NULL;
}

void *mproc__fnref_get(const mproc__fnref *r, int *err) {
  if (err) *err = 0;
  if (r->kind == FNREF_RAW) return (void *)(uintptr_t)r->off;
  if (r->kind != FNREF_OBJ || r->idlen > sizeof r->id) {
    if (err) *err = MPROC_EPROTO;
    return NULL;
  }
  obj_set *cur = atomic_load_explicit(&snapshot, memory_order_acquire);
  const loc_obj *o = obj_named(cur, r);
  if (!o) o = obj_named(objects_now(cur), r);
  if (!o) {
    if (err) *err = r->is_main ? MPROC_EBUILD : MPROC_ENOFUNC;
    return NULL;
  }
  return (void *)(o->bias + (uintptr_t)r->off);
}

/* ---- the receiving side ------------------------------------------------ */

typedef struct peer_obj {
  uint64_t bias, lo, hi;
  int is_main;
  uint8_t id[40];
  size_t idlen;
  char *path;        /* NUL-terminated copy; "" when none */
  int resolved;      /* 1: local_bias is known */
  uint64_t local_bias;
} peer_obj;

struct mproc__funcmap {
  pthread_mutex_t mu;
  peer_obj *objs;
  size_t n;
  char err[768];
};

static void objs_free(peer_obj *o, size_t n) {
  for (size_t i = 0; o && i < n; i++) free(o[i].path);
  free(o);
}

/* Parse a table into a new array.  MPROC_EPROTO on any inconsistency. */
static int parse(const void *tab, size_t len, peer_obj **out, size_t *n) {
  const unsigned char *p = tab;
  if (!tab || len < OT_HDR) return MPROC_EPROTO;
  if (get32(p) != OT_MAGIC || get16(p + 4) != OT_VERSION) return MPROC_EPROTO;
  uint32_t count = get32(p + 8);
  if (count > OT_MAX_OBJS || count > (len - OT_HDR) / OT_OBJ)
    return MPROC_EPROTO;
  peer_obj *objs = calloc(count ? count : 1, sizeof *objs);
  if (!objs) return MPROC_ENOMEM;
  size_t off = OT_HDR;
  for (uint32_t i = 0; i < count; i++) {
    if (len - off < OT_OBJ) goto bad;
    const unsigned char *q = p + off;
    peer_obj *o = &objs[i];
    o->bias = get64(q);
    o->lo = get64(q + 8);
    o->hi = get64(q + 16);
    o->is_main = (get32(q + 24) & OT_FLAG_MAIN) != 0;
    size_t idlen = get16(q + 28), plen = get16(q + 30);
    off += OT_OBJ;
    if (idlen > sizeof o->id || o->lo > o->hi) goto bad;
    if (idlen > len - off || plen > len - off - idlen) goto bad;
    memcpy(o->id, p + off, idlen);
    o->idlen = idlen;
    o->path = malloc(plen + 1);
    if (!o->path) {
      objs_free(objs, count);
      return MPROC_ENOMEM;
    }
    memcpy(o->path, p + off + idlen, plen);
    o->path[plen] = '\0';
    if (memchr(o->path, '\0', plen)) goto bad;
    off += idlen + plen;
  }
  if (off != len) goto bad;
  *out = objs;
  *n = count;
  return 0;
bad:
  objs_free(objs, count);
  return MPROC_EPROTO;
}

int mproc__funcmap_new(mproc__funcmap **out, const void *tab, size_t len) {
  if (!out) return MPROC_EINVAL;
  *out = NULL;
  mproc__funcmap *m = calloc(1, sizeof *m);
  if (!m) return MPROC_ENOMEM;
  int r = parse(tab, len, &m->objs, &m->n);
  if (r != 0) {
    free(m);
    return r;
  }
  pthread_mutex_init(&m->mu, NULL);
  *out = m;
  return 0;
}

static int same_obj(const peer_obj *a, const peer_obj *b) {
  return a->bias == b->bias && a->lo == b->lo && a->hi == b->hi &&
         a->idlen == b->idlen && memcmp(a->id, b->id, a->idlen) == 0 &&
         strcmp(a->path, b->path) == 0;
}

int mproc__funcmap_update(mproc__funcmap *m, const void *tab, size_t len) {
  if (!m) return MPROC_EINVAL;
  peer_obj *objs;
  size_t n;
  int r = parse(tab, len, &objs, &n);
  if (r != 0) return r;
  pthread_mutex_lock(&m->mu);
  /* Keep what was resolved for objects the peer still has. */
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < m->n; j++)
      if (m->objs[j].resolved && same_obj(&objs[i], &m->objs[j])) {
        objs[i].resolved = 1;
        objs[i].local_bias = m->objs[j].local_bias;
        break;
      }
  peer_obj *old = m->objs;
  size_t oldn = m->n;
  m->objs = objs;
  m->n = n;
  pthread_mutex_unlock(&m->mu);
  objs_free(old, oldn);
  return 0;
}

static void hex(char *out, size_t cap, const uint8_t *id, size_t len) {
  if (len == 0) {
    snprintf(out, cap, "none");
    return;
  }
  size_t o = 0;
  for (size_t i = 0; i < len && o + 3 <= cap; i++)
    o += (size_t)snprintf(out + o, cap - o, "%02x", id[i]);
}

/* What the local scan looks for, and what it found. */
typedef struct find_ctx {
  const peer_obj *want;
  int found;
  uint64_t bias;
  /* The local object at the peer's path, for the error message. */
  int at_path;
  uint8_t path_id[40];
  size_t path_idlen;
} find_ctx;

static int find_cb(const mproc__dlobj *o, void *arg) {
  find_ctx *f = arg;
  const peer_obj *w = f->want;
  if (o->is_vdso) return 0;
  if (!o->is_main && w->path[0] && strcmp(o->path, w->path) == 0) {
    f->at_path = 1;
    memcpy(f->path_id, o->build_id, o->build_id_len);
    f->path_idlen = o->build_id_len;
  }
  if (w->is_main) {
    if (!o->is_main) return 0;
    f->at_path = 1;
    memcpy(f->path_id, o->build_id, o->build_id_len);
    f->path_idlen = o->build_id_len;
    if (w->idlen == 0 ||
        (o->build_id_len == w->idlen &&
         memcmp(o->build_id, w->id, w->idlen) == 0)) {
      f->found = 1;
      f->bias = o->bias;
    }
    return 1;
  }
  if (o->is_main) return 0;
  int match = w->idlen ? (o->build_id_len == w->idlen &&
                          memcmp(o->build_id, w->id, w->idlen) == 0)
                       : (w->path[0] && strcmp(o->path, w->path) == 0);
  if (match) {
    f->found = 1;
    f->bias = o->bias;
    return 1;
  }
  return 0;
}

/* Match peer object o to a local one; m->mu held. */
static int match_obj(mproc__funcmap *m, peer_obj *o) {
  find_ctx f;
  memset(&f, 0, sizeof f);
  f.want = o;
  mproc__dl_each(find_cb, &f);
  if (!f.found && !o->is_main) {
    char why[256];
    if (!o->path[0]) {
      snprintf(m->err, sizeof m->err,
               "a library of the other process has no path and is not "
               "loaded here");
      return MPROC_ENOFUNC;
    }
    if (mproc__dl_open(o->path, why, sizeof why) != 0) {
      snprintf(m->err, sizeof m->err, "cannot load %s here: %s", o->path, why);
      return MPROC_ENOFUNC;
    }
    memset(&f, 0, sizeof f);
    f.want = o;
    mproc__dl_each(find_cb, &f);
  }
  if (!f.found) {
    char want[96], have[96];
    hex(want, sizeof want, o->id, o->idlen);
    if (f.at_path) hex(have, sizeof have, f.path_id, f.path_idlen);
    else snprintf(have, sizeof have, "not loaded");
    snprintf(m->err, sizeof m->err,
             "%s differs from the other process's: build-id %s here, %s "
             "there",
             o->is_main ? "this program" : o->path, have, want);
    return MPROC_EBUILD;
  }
  o->resolved = 1;
  o->local_bias = f.bias;
  return 0;
}

int mproc__funcmap_resolve(mproc__funcmap *m, uint64_t peer_addr,
                           void **local) {
  if (!m || !local) return MPROC_EINVAL;
  *local = NULL;
  pthread_mutex_lock(&m->mu);
  peer_obj *o = NULL;
  for (size_t i = 0; i < m->n; i++)
    if (peer_addr >= m->objs[i].lo && peer_addr < m->objs[i].hi) {
      o = &m->objs[i];
      break;
    }
  int r = 0;
  if (!o) {
    snprintf(m->err, sizeof m->err,
             "address 0x%llx lies in no object loaded in the other process "
             "(not a function or static data)",
             (unsigned long long)peer_addr);
    r = MPROC_ENOFUNC;
  } else if (!o->resolved) {
    r = match_obj(m, o);
  }
  if (r == 0)
    *local = (void *)(uintptr_t)(peer_addr - o->bias + o->local_bias);
  pthread_mutex_unlock(&m->mu);
  return r;
}

const char *mproc__funcmap_error(const mproc__funcmap *m) {
  if (!m) return "";
  return m->err;
}

void mproc__funcmap_free(mproc__funcmap *m) {
  if (!m) return;
  pthread_mutex_destroy(&m->mu);
  objs_free(m->objs, m->n);
  free(m);
}
