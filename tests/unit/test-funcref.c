/*
 * tests/unit/test-funcref.c - function references across exec
 * (src/process/funcref.c, src/platform/dl.c).
 *
 * In this process: an object table translated back into this process
 * gives every function and static address unchanged, and refuses heap and
 * stack addresses; mproc__objtab_contains and the generation number follow
 * a dlopen; a map takes newer tables and serves threads at once; altered
 * build-ids and paths give MPROC_EBUILD / MPROC_ENOFUNC with messages that
 * name the object and both build-ids; and bad bytes (every truncation,
 * lengths past the end, huge counts, wrong magic or version, random
 * damage) are MPROC_EPROTO, never a read out of bounds (the ASan build
 * runs these too).
 *
 * Across a real exec: tests/helpers/funcref-peer.c, a small program CMake
 * builds next to mproc_tests (its file-top comment says why it is a
 * program of its own), resolves an address from a table it reads on stdin
 * and calls or reads what it finds.  Run twice, it is the spawn case (the
 * same program, another address-space layout); given this process's table,
 * it shows a libc function translated, and this program's functions
 * refused as another build.  With the two builds of libfuncref (alike but
 * for their code, so their build-ids differ) it shows a library loaded by
 * path in the peer, then replaced on disk (MPROC_EBUILD), then gone
 * (MPROC_ENOFUNC).  The wire format is checked against the layout
 * documented in funcref.c by a small decoder here.
 */
#include "internal.h"
#include "task.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <sys/wait.h>

#ifndef FUNCREF_PEER
#error "CMake passes FUNCREF_PEER, FUNCREF_LIB_A and FUNCREF_LIB_B"
#endif

/* What the peer's own objects hold (funcref-peer.c). */
#define PEER_PROBE_VALUE 7301
#define PEER_STATIC_VALUE 4242

/* ---- objects of this program ---- */

#define LOCAL_VALUE 5150
int funcref_test_local(void);
__attribute__((noinline)) int funcref_test_local(void) { return LOCAL_VALUE; }
static int local_static = 31337;

/* ---- the table's documented layout, decoded and encoded here ---- */

#define T_HDR 16
#define T_OBJ 32
#define T_MAIN 1u

typedef struct tobj {
  uint64_t bias, lo, hi;
  uint32_t flags;
  uint8_t id[40];
  size_t idlen;
  char path[PATH_MAX];
  size_t plen;
} tobj;

typedef struct ttab {
  tobj *o;
  size_t n;
} ttab;

static uint64_t le(const unsigned char *p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) {
    v = (v << 8) | p[i];
  }
  return v;
}

static void put_le(unsigned char *p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) {
    p[i] = (unsigned char)(v >> (8 * i));
  }
}

/* Decode a table that must be well formed, asserting the layout. */
static void tab_decode(const void *tab, size_t len, ttab *t) {
  const unsigned char *p = tab;
  ASSERT(len >= T_HDR);
  ASSERT_UEQ(le(p, 4), 0x544f504du); /* "MPOT" */
  ASSERT_UEQ(le(p + 4, 2), 1);       /* version */
  ASSERT_UEQ(le(p + 6, 2), 0);
  ASSERT_UEQ(le(p + 12, 4), 0);
  t->n = (size_t)le(p + 8, 4);
  ASSERT(t->n > 0 && t->n < 4096);
  t->o = calloc(t->n, sizeof *t->o);
  ASSERT_NOT_NULL(t->o);
  size_t off = T_HDR;
  for (size_t i = 0; i < t->n; i++) {
    tobj *o = &t->o[i];
    ASSERT(len - off >= T_OBJ);
    o->bias = le(p + off, 8);
    o->lo = le(p + off + 8, 8);
    o->hi = le(p + off + 16, 8);
    o->flags = (uint32_t)le(p + off + 24, 4);
    o->idlen = (size_t)le(p + off + 28, 2);
    o->plen = (size_t)le(p + off + 30, 2);
    off += T_OBJ;
    ASSERT(o->idlen <= sizeof o->id);
    ASSERT(o->plen < sizeof o->path);
    ASSERT(o->idlen + o->plen <= len - off);
    memcpy(o->id, p + off, o->idlen);
    memcpy(o->path, p + off + o->idlen, o->plen);
    o->path[o->plen] = '\0';
    ASSERT_EQ(strlen(o->path), o->plen);
    off += o->idlen + o->plen;
    ASSERT(o->lo < o->hi);
  }
  ASSERT_EQ(off, len);
}

static void *tab_encode(const ttab *t, size_t *len) {
  size_t n = T_HDR;
  for (size_t i = 0; i < t->n; i++) {
    n += T_OBJ + t->o[i].idlen + t->o[i].plen;
  }
  unsigned char *p = calloc(1, n);
  ASSERT_NOT_NULL(p);
  put_le(p, 0x544f504du, 4);
  put_le(p + 4, 1, 2);
  put_le(p + 8, t->n, 4);
  size_t off = T_HDR;
  for (size_t i = 0; i < t->n; i++) {
    const tobj *o = &t->o[i];
    put_le(p + off, o->bias, 8);
    put_le(p + off + 8, o->lo, 8);
    put_le(p + off + 16, o->hi, 8);
    put_le(p + off + 24, o->flags, 4);
    put_le(p + off + 28, o->idlen, 2);
    put_le(p + off + 30, o->plen, 2);
    off += T_OBJ;
    memcpy(p + off, o->id, o->idlen);
    memcpy(p + off + o->idlen, o->path, o->plen);
    off += o->idlen + o->plen;
  }
  *len = n;
  return p;
}

static ttab tab_copy(const ttab *t) {
  ttab c = {calloc(t->n, sizeof *t->o), t->n};
  ASSERT_NOT_NULL(c.o);
  memcpy(c.o, t->o, t->n * sizeof *t->o);
  return c;
}

/* The index of the object whose span holds addr; -1 if none. */
static int tab_find(const ttab *t, const void *addr) {
  uint64_t a = (uint64_t)(uintptr_t)addr;
  for (size_t i = 0; i < t->n; i++) {
    if (a >= t->o[i].lo && a < t->o[i].hi) {
      return (int)i;
    }
  }
  return -1;
}

static void set_path(tobj *o, const char *path) {
  o->plen = strlen(path);
  ASSERT(o->plen < sizeof o->path);
  memcpy(o->path, path, o->plen + 1);
}

static void to_hex(char *out, size_t cap, const uint8_t *id, size_t n) {
  ASSERT(cap > 2 * n);
  for (size_t i = 0; i < n; i++) {
    snprintf(out + 2 * i, 3, "%02x", id[i]);
  }
  out[2 * n] = '\0';
}

#define ASSERT_CONTAINS(hay, needle)                                          \
  do {                                                                        \
    const char *h_ = (hay), *n_ = (needle);                                   \
    if (strstr(h_, n_) == NULL) {                                             \
      mproc_test_fail(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"",   \
                      h_, n_);                                                \
    }                                                                         \
  } while (0)

static void own_table(void **tab, size_t *len) {
  ASSERT_OK(mproc__objtab_build(tab, len));
  ASSERT_NOT_NULL(*tab);
}

/* A map made from a copy that is exactly len bytes long, so a parser that
 * reads one byte too far trips ASan. */
static int map_exact(mproc__funcmap **m, const void *tab, size_t len) {
  unsigned char *copy = malloc(len ? len : 1);
  ASSERT_NOT_NULL(copy);
  memcpy(copy, tab, len);
  int r = mproc__funcmap_new(m, copy, len);
  free(copy);
  return r;
}

static int update_exact(mproc__funcmap *m, const void *tab, size_t len) {
  unsigned char *copy = malloc(len ? len : 1);
  ASSERT_NOT_NULL(copy);
  memcpy(copy, tab, len);
  int r = mproc__funcmap_update(m, copy, len);
  free(copy);
  return r;
}

/* A translator for table t (encoded, parsed, the bytes freed: the map
 * keeps copies). */
static mproc__funcmap *map_of(const ttab *t) {
  size_t len;
  void *enc = tab_encode(t, &len);
  mproc__funcmap *m = NULL;
  ASSERT_OK(mproc__funcmap_new(&m, enc, len));
  free(enc);
  return m;
}

static void *resolve_ok(mproc__funcmap *m, const void *addr) {
  void *local = NULL;
  int r = mproc__funcmap_resolve(m, (uint64_t)(uintptr_t)addr, &local);
  if (r != 0) {
    mproc_test_fail(__FILE__, __LINE__, "resolve %p: %s (%s)", addr,
                    mproc_err_name(r), mproc__funcmap_error(m));
  }
  return local;
}

static void *load_lib_a(int (**probe)(void)) {
  void *h = dlopen(FUNCREF_LIB_A, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    mproc_test_fail(__FILE__, __LINE__, "dlopen: %s", dlerror());
  }
  void *sym = dlsym(h, "funcref_probe");
  ASSERT_NOT_NULL(sym);
  *probe = (int (*)(void))(uintptr_t)sym;
  ASSERT_EQ((*probe)(), FUNCREF_VALUE_A);
  return h;
}

/* ==================== in this process ==================== */

TEST_IMPL(funcref_round_trip_self) {
  void *tab;
  size_t len;
  own_table(&tab, &len);
  ttab t;
  tab_decode(tab, len, &t);

  /* The main program first and only there, named by /proc/self/exe and
   * with the build-id this test binary is linked with. */
  char exe[PATH_MAX];
  ASSERT_OK(mproc__self_exe(exe, sizeof exe));
  ASSERT_UEQ(t.o[0].flags, T_MAIN);
  ASSERT_STR_EQ(t.o[0].path, exe);
  ASSERT_GT(t.o[0].idlen, 0);
  for (size_t i = 1; i < t.n; i++) {
    ASSERT_UEQ(t.o[i].flags & T_MAIN, 0);
  }
  ASSERT_EQ(tab_find(&t, (const void *)&funcref_test_local), 0);
  ASSERT_EQ(tab_find(&t, &local_static), 0);
  /* getpid lives in a library, with a build-id and an absolute path. */
  int libc = tab_find(&t, (const void *)&getpid);
  ASSERT_GT(libc, 0);
  ASSERT_GT(t.o[libc].idlen, 0);
  ASSERT_EQ(t.o[libc].path[0], '/');
  /* The vDSO is never a target: it is not in the table. */
  unsigned long vdso = getauxval(AT_SYSINFO_EHDR);
  if (vdso != 0) {
    ASSERT_EQ(tab_find(&t, (const void *)vdso), -1);
  }

  mproc__funcmap *m;
  ASSERT_OK(mproc__funcmap_new(&m, tab, len));
  ASSERT_STR_EQ(mproc__funcmap_error(m), "");
  int (*fn)(void) = (int (*)(void))(uintptr_t)resolve_ok(
      m, (const void *)&funcref_test_local);
  ASSERT_PTR_EQ((const void *)fn, (const void *)&funcref_test_local);
  ASSERT_EQ(fn(), LOCAL_VALUE);
  ASSERT_PTR_EQ(resolve_ok(m, &local_static), &local_static);
  ASSERT_PTR_EQ(resolve_ok(m, (const void *)&getpid), (const void *)&getpid);
  /* Twice: the second comes from the resolved object. */
  ASSERT_PTR_EQ(resolve_ok(m, &local_static), &local_static);

  /* Heap, stack and NULL hold no function. */
  int *heap = malloc(64);
  ASSERT_NOT_NULL(heap);
  void *local = (void *)1;
  ASSERT_ERR(mproc__funcmap_resolve(m, (uint64_t)(uintptr_t)heap, &local),
             MPROC_ENOFUNC);
  ASSERT_NULL(local);
  char want[64];
  snprintf(want, sizeof want, "0x%llx",
           (unsigned long long)(uintptr_t)heap);
  ASSERT_CONTAINS(mproc__funcmap_error(m), want);
  int on_stack = 0;
  ASSERT_ERR(mproc__funcmap_resolve(m, (uint64_t)(uintptr_t)&on_stack, &local),
             MPROC_ENOFUNC);
  ASSERT_ERR(mproc__funcmap_resolve(m, 0, &local), MPROC_ENOFUNC);
  free(heap);

  /* Arguments. */
  ASSERT_ERR(mproc__funcmap_resolve(NULL, 1, &local), MPROC_EINVAL);
  ASSERT_ERR(mproc__funcmap_resolve(m, 1, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc__funcmap_new(NULL, tab, len), MPROC_EINVAL);
  ASSERT_ERR(mproc__funcmap_update(NULL, tab, len), MPROC_EINVAL);
  ASSERT_ERR(mproc__objtab_build(NULL, &len), MPROC_EINVAL);
  ASSERT_STR_EQ(mproc__funcmap_error(NULL), "");
  mproc__funcmap_free(NULL);

  mproc__funcmap_free(m);
  free(t.o);
  free(tab);
  return 0;
}

TEST_IMPL(funcref_contains_and_generation) {
  ASSERT_EQ(mproc__objtab_contains((const void *)&funcref_test_local), 1);
  ASSERT_EQ(mproc__objtab_contains(&local_static), 1);
  ASSERT_EQ(mproc__objtab_contains("a string literal"), 1);
  ASSERT_EQ(mproc__objtab_contains((const void *)&getpid), 1);
  ASSERT_EQ(mproc__objtab_contains(NULL), 0);
  int on_stack = 0;
  ASSERT_EQ(mproc__objtab_contains(&on_stack), 0);
  void *heap = malloc(64);
  ASSERT_NOT_NULL(heap);
  ASSERT_EQ(mproc__objtab_contains(heap), 0);
  ASSERT_EQ(mproc__objtab_contains(heap), 0);
  unsigned long vdso = getauxval(AT_SYSINFO_EHDR);
  if (vdso != 0) {
    ASSERT_EQ(mproc__objtab_contains((const void *)vdso), 0);
  }

  /* Nothing loaded: the same number.  A library loaded: another one, and
   * its code counts as loaded although the spans were cached before. */
  uint64_t g0 = mproc__objtab_generation();
  ASSERT_UEQ(mproc__objtab_generation(), g0);
  int (*probe)(void);
  load_lib_a(&probe);
  uint64_t g1 = mproc__objtab_generation();
  ASSERT(g1 != g0);
  ASSERT_EQ(mproc__objtab_contains((const void *)probe), 1);
  ASSERT_EQ(mproc__objtab_contains((const void *)probe), 1);
  ASSERT_EQ(mproc__objtab_contains(heap), 0);
  ASSERT_EQ(mproc__objtab_contains((const void *)&funcref_test_local), 1);
  ASSERT_UEQ(mproc__objtab_generation(), g1);

  /* mproc's own loader: the same library again is no new load. */
  char why[256];
  ASSERT_OK(mproc__dl_open(FUNCREF_LIB_A, why, sizeof why));
  ASSERT_UEQ(mproc__objtab_generation(), g1);
  ASSERT_ERR(mproc__dl_open("/nonexistent/libnothing.so", why, sizeof why),
             MPROC_ENOFUNC);
  ASSERT_CONTAINS(why, "libnothing.so");
  ASSERT_ERR(mproc__dl_open("", why, sizeof why), MPROC_ENOFUNC);
  free(heap);
  return 0;
}

TEST_IMPL(funcref_update) {
  void *t0;
  size_t l0;
  own_table(&t0, &l0);
  mproc__funcmap *m;
  ASSERT_OK(mproc__funcmap_new(&m, t0, l0));
  ASSERT_PTR_EQ(resolve_ok(m, &local_static), &local_static);

  /* The peer (here: this process) loads a library after the map was
   * made: its addresses are unknown until a newer table comes. */
  int (*probe)(void);
  load_lib_a(&probe);
  void *local;
  ASSERT_ERR(mproc__funcmap_resolve(m, (uint64_t)(uintptr_t)probe, &local),
             MPROC_ENOFUNC);
  void *t1;
  size_t l1;
  own_table(&t1, &l1);
  ASSERT_GT(l1, l0);

  /* A bad table changes nothing. */
  ASSERT_ERR(update_exact(m, t1, l1 - 1), MPROC_EPROTO);
  ASSERT_ERR(mproc__funcmap_resolve(m, (uint64_t)(uintptr_t)probe, &local),
             MPROC_ENOFUNC);
  ASSERT_PTR_EQ(resolve_ok(m, &local_static), &local_static);

  ASSERT_OK(update_exact(m, t1, l1));
  int (*fn)(void) = (int (*)(void))(uintptr_t)resolve_ok(
      m, (const void *)probe);
  ASSERT_PTR_EQ((const void *)fn, (const void *)probe);
  ASSERT_EQ(fn(), FUNCREF_VALUE_A);
  ASSERT_PTR_EQ(resolve_ok(m, &local_static), &local_static);
  ASSERT_PTR_EQ(resolve_ok(m, (const void *)&getpid), (const void *)&getpid);

  /* The same table again, then the older one: the library is gone from
   * the peer's view, the rest still resolves. */
  ASSERT_OK(mproc__funcmap_update(m, t1, l1));
  ASSERT_PTR_EQ(resolve_ok(m, (const void *)probe), (const void *)probe);
  ASSERT_OK(mproc__funcmap_update(m, t0, l0));
  ASSERT_ERR(mproc__funcmap_resolve(m, (uint64_t)(uintptr_t)probe, &local),
             MPROC_ENOFUNC);
  ASSERT_PTR_EQ(resolve_ok(m, (const void *)&funcref_test_local),
                (const void *)&funcref_test_local);

  mproc__funcmap_free(m);
  free(t0);
  free(t1);
  return 0;
}

typedef struct resolver_arg {
  mproc__funcmap *m;
  const void *addrs[4];
} resolver_arg;

static void *resolver(void *arg) {
  resolver_arg *a = arg;
  for (int i = 0; i < 2000; i++) {
    const void *want = a->addrs[i % 4];
    void *local = NULL;
    if (mproc__funcmap_resolve(a->m, (uint64_t)(uintptr_t)want, &local) != 0 ||
        local != want) {
      return (void *)1;
    }
  }
  return NULL;
}

TEST_IMPL(funcref_threads) {
  int (*probe)(void);
  load_lib_a(&probe);
  void *tab;
  size_t len;
  own_table(&tab, &len);
  mproc__funcmap *m;
  ASSERT_OK(mproc__funcmap_new(&m, tab, len));
  /* Fresh map: the threads race to resolve each object first. */
  resolver_arg a = {m,
                    {(const void *)probe, (const void *)&funcref_test_local,
                     &local_static, (const void *)&getpid}};
  pthread_t th[4];
  test_start_threads(th, 4, resolver, &a);
  test_join_threads_ok(th, 4);
  mproc__funcmap_free(m);
  free(tab);
  return 0;
}

TEST_IMPL(funcref_build_ids) {
  int (*probe)(void);
  load_lib_a(&probe);
  void *tab;
  size_t len;
  own_table(&tab, &len);
  ttab t;
  tab_decode(tab, len, &t);
  int lib = tab_find(&t, (const void *)probe);
  ASSERT_GT(lib, 0);
  ASSERT_STR_EQ(t.o[lib].path, FUNCREF_LIB_A);
  ASSERT_GT(t.o[lib].idlen, 0);
  char real[96], fake[96];
  mproc__funcmap *m;
  void *local;

  /* The main program of another build. */
  ttab c = tab_copy(&t);
  c.o[0].id[0] ^= 0xff;
  to_hex(real, sizeof real, t.o[0].id, t.o[0].idlen);
  to_hex(fake, sizeof fake, c.o[0].id, c.o[0].idlen);
  m = map_of(&c);
  ASSERT_ERR(mproc__funcmap_resolve(
                 m, (uint64_t)(uintptr_t)&funcref_test_local, &local),
             MPROC_EBUILD);
  ASSERT_NULL(local);
  ASSERT_CONTAINS(mproc__funcmap_error(m), "this program");
  ASSERT_CONTAINS(mproc__funcmap_error(m), real);
  ASSERT_CONTAINS(mproc__funcmap_error(m), fake);
  /* Other objects are not affected. */
  ASSERT_PTR_EQ(resolve_ok(m, (const void *)probe), (const void *)probe);
  mproc__funcmap_free(m);
  /* A main program without a build-id is taken as this one. */
  c.o[0].idlen = 0;
  m = map_of(&c);
  ASSERT_PTR_EQ(resolve_ok(m, &local_static), &local_static);
  mproc__funcmap_free(m);
  free(c.o);

  /* A library of another build at the same path: loading the path gives
   * the library already loaded, with its own build-id. */
  c = tab_copy(&t);
  c.o[lib].id[c.o[lib].idlen - 1] ^= 0x5a;
  to_hex(real, sizeof real, t.o[lib].id, t.o[lib].idlen);
  to_hex(fake, sizeof fake, c.o[lib].id, c.o[lib].idlen);
  m = map_of(&c);
  ASSERT_ERR(mproc__funcmap_resolve(m, (uint64_t)(uintptr_t)probe, &local),
             MPROC_EBUILD);
  ASSERT_CONTAINS(mproc__funcmap_error(m), FUNCREF_LIB_A);
  ASSERT_CONTAINS(mproc__funcmap_error(m), real);
  ASSERT_CONTAINS(mproc__funcmap_error(m), fake);
  /* Asked again, the answer is the same (nothing half-resolved). */
  ASSERT_ERR(mproc__funcmap_resolve(m, (uint64_t)(uintptr_t)probe, &local),
             MPROC_EBUILD);
  ASSERT_PTR_EQ(resolve_ok(m, &local_static), &local_static);
  mproc__funcmap_free(m);

  /* ... with no path, it cannot be loaded. */
  set_path(&c.o[lib], "");
  m = map_of(&c);
  ASSERT_ERR(mproc__funcmap_resolve(m, (uint64_t)(uintptr_t)probe, &local),
             MPROC_ENOFUNC);
  ASSERT_CONTAINS(mproc__funcmap_error(m), "no path");
  mproc__funcmap_free(m);

  /* ... at a path that does not exist, likewise. */
  set_path(&c.o[lib], "/nonexistent/libfuncref_gone.so");
  m = map_of(&c);
  ASSERT_ERR(mproc__funcmap_resolve(m, (uint64_t)(uintptr_t)probe, &local),
             MPROC_ENOFUNC);
  ASSERT_CONTAINS(mproc__funcmap_error(m),
                  "cannot load /nonexistent/libfuncref_gone.so");
  mproc__funcmap_free(m);
  free(c.o);

  /* A library without a build-id is matched by its path. */
  c = tab_copy(&t);
  c.o[lib].idlen = 0;
  m = map_of(&c);
  ASSERT_PTR_EQ(resolve_ok(m, (const void *)probe), (const void *)probe);
  mproc__funcmap_free(m);
  set_path(&c.o[lib], "/nonexistent/libfuncref_gone.so");
  m = map_of(&c);
  ASSERT_ERR(mproc__funcmap_resolve(m, (uint64_t)(uintptr_t)probe, &local),
             MPROC_ENOFUNC);
  mproc__funcmap_free(m);
  free(c.o);

  free(t.o);
  free(tab);
  return 0;
}

TEST_IMPL(funcref_bad_bytes) {
  void *tab;
  size_t len;
  own_table(&tab, &len);
  ttab t;
  tab_decode(tab, len, &t);
  unsigned char *p = tab;
  mproc__funcmap *m = (mproc__funcmap *)&m;

  /* Every truncation, and one byte too many. */
  for (size_t l = 0; l < len; l++) {
    ASSERT_ERR(map_exact(&m, p, l), MPROC_EPROTO);
    ASSERT_NULL(m);
  }
  unsigned char *longer = calloc(1, len + 1);
  ASSERT_NOT_NULL(longer);
  memcpy(longer, p, len);
  ASSERT_ERR(map_exact(&m, longer, len + 1), MPROC_EPROTO);
  free(longer);
  ASSERT_ERR(mproc__funcmap_new(&m, NULL, len), MPROC_EPROTO);
  ASSERT_ERR(mproc__funcmap_new(&m, NULL, 0), MPROC_EPROTO);

  /* A copy with one field changed: 0 if it still parses, else EPROTO. */
  unsigned char *q = malloc(len);
  ASSERT_NOT_NULL(q);
#define ALTERED(off, bytes, value, expect)                                    \
  do {                                                                        \
    memcpy(q, p, len);                                                        \
    put_le(q + (off), (value), (bytes));                                      \
    ASSERT_ERR(map_exact(&m, q, len), (expect));                              \
    mproc__funcmap_free(m);                                                   \
  } while (0)

  ALTERED(0, 4, 0x544f504eu, MPROC_EPROTO); /* magic */
  ALTERED(0, 1, 0, MPROC_EPROTO);
  ALTERED(3, 1, 0, MPROC_EPROTO);
  ALTERED(4, 2, 0, MPROC_EPROTO); /* version */
  ALTERED(4, 2, 2, MPROC_EPROTO);
  ALTERED(4, 2, 0xffff, MPROC_EPROTO);
  ALTERED(8, 4, 0xffffffffu, MPROC_EPROTO); /* count */
  ALTERED(8, 4, 65537, MPROC_EPROTO);
  ALTERED(8, 4, t.n + 1, MPROC_EPROTO);
  ALTERED(8, 4, t.n - 1, MPROC_EPROTO);
  ALTERED(8, 4, 0, MPROC_EPROTO);
  ALTERED(8, 4, t.n, 0); /* the control: unchanged parses */

  /* The first object (the main program, which has a path). */
  size_t o = T_HDR;
  ALTERED(o + 28, 2, 41, MPROC_EPROTO);     /* build-id longer than 40 */
  ALTERED(o + 28, 2, 0xffff, MPROC_EPROTO); /* past the end */
  ALTERED(o + 30, 2, 0xffff, MPROC_EPROTO);
  ALTERED(o + 8, 8, t.o[0].hi + 1, MPROC_EPROTO); /* lo > hi */
  ALTERED(o + 8, 8, UINT64_MAX, MPROC_EPROTO);
  ALTERED(o + T_OBJ + t.o[0].idlen, 1, 0, MPROC_EPROTO); /* NUL in path */
  ALTERED(o + 24, 4, 0xfffffffeu, 0); /* unknown flags are ignored */
  /* The last object: its lengths one more or one less. */
  size_t last = len - (T_OBJ + t.o[t.n - 1].idlen + t.o[t.n - 1].plen);
  ALTERED(last + 28, 2, t.o[t.n - 1].idlen + 1, MPROC_EPROTO);
  ALTERED(last + 30, 2, t.o[t.n - 1].plen + 1, MPROC_EPROTO);
  if (t.o[t.n - 1].plen > 0) {
    ALTERED(last + 30, 2, t.o[t.n - 1].plen - 1, MPROC_EPROTO);
  }
#undef ALTERED

  /* Lengths past the end at every cut: a header that promises one object
   * and gives fewer bytes than one. */
  unsigned char one[T_HDR + T_OBJ + 8];
  memset(one, 0, sizeof one);
  put_le(one, 0x544f504du, 4);
  put_le(one + 4, 1, 2);
  put_le(one + 8, 1, 4);
  put_le(one + T_HDR + 16, 1, 8); /* hi */
  put_le(one + T_HDR + 28, 8, 2); /* an 8-byte build-id, no path */
  ASSERT_OK(map_exact(&m, one, sizeof one));
  mproc__funcmap_free(m);
  for (size_t l = 0; l < sizeof one; l++) {
    ASSERT_ERR(map_exact(&m, one, l), MPROC_EPROTO);
  }
  put_le(one + T_HDR + 28, 9, 2);
  ASSERT_ERR(map_exact(&m, one, sizeof one), MPROC_EPROTO);
  put_le(one + T_HDR + 28, 0, 2);
  put_le(one + T_HDR + 30, 9, 2);
  ASSERT_ERR(map_exact(&m, one, sizeof one), MPROC_EPROTO);

  /* An empty table is valid and holds nothing. */
  unsigned char empty[T_HDR];
  memcpy(empty, p, T_HDR);
  put_le(empty + 8, 0, 4);
  ASSERT_OK(map_exact(&m, empty, sizeof empty));
  void *local;
  ASSERT_ERR(mproc__funcmap_resolve(m, (uint64_t)(uintptr_t)&local_static,
                                    &local),
             MPROC_ENOFUNC);

  /* A map keeps its table through bad updates. */
  ASSERT_OK(mproc__funcmap_update(m, tab, len));
  for (size_t l = 0; l < len; l += 7) {
    ASSERT_ERR(update_exact(m, p, l), MPROC_EPROTO);
  }
  ASSERT_PTR_EQ(resolve_ok(m, &local_static), &local_static);
  mproc__funcmap_free(m);

  /* Random damage: a few bytes changed, sometimes cut short too.  Each
   * result is a map or EPROTO (a changed bias or span still parses). */
  uint64_t seed = 0x9e3779b97f4a7c15u;
  int parsed = 0, refused = 0;
  for (int round = 0; round < 3000; round++) {
    memcpy(q, p, len);
    int changes = 1 + (int)(test_rand(&seed) % 4);
    for (int i = 0; i < changes; i++) {
      q[test_rand(&seed) % len] = (unsigned char)test_rand(&seed);
    }
    size_t l = round % 3 == 0 ? (size_t)(test_rand(&seed) % len) : len;
    int r = map_exact(&m, q, l);
    if (r == 0) {
      parsed++;
      ASSERT_NOT_NULL(mproc__funcmap_error(m));
      mproc__funcmap_free(m);
    } else {
      ASSERT_ERR(r, MPROC_EPROTO);
      ASSERT_NULL(m);
      refused++;
    }
  }
  ASSERT_GT(parsed, 0);
  ASSERT_GT(refused, 0);

  free(q);
  free(t.o);
  free(tab);
  return 0;
}

/* ==================== across exec: funcref-peer ==================== */

typedef struct peer_run {
  pid_t pid;
  int code;   /* its exit code */
  char *out;  /* its stdout, NUL-terminated (malloc'd) */
  size_t len; /* bytes in out */
} peer_run;

/* Run FUNCREF_PEER a1 [a2 a3] with in on its stdin; wait for it. */
static void run_peer(const char *a1, const char *a2, const char *a3,
                     const void *in, size_t inlen, peer_run *r) {
  const char *argv[] = {FUNCREF_PEER, a1, a2, a3, NULL};
  int pin[2], pout[2];
  /* A peer that ends early must not take this process with SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  ASSERT_EQ(pipe2(pin, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(pout, O_CLOEXEC), 0);
  pid_t pid = test_fork();
  if (pid == 0) {
    if (dup2(pin[0], 0) < 0 || dup2(pout[1], 1) < 0) {
      _exit(126);
    }
    execv(FUNCREF_PEER, (char *const *)argv);
    _exit(127);
  }
  close(pin[0]);
  close(pout[1]);
  const unsigned char *b = in;
  size_t done = 0;
  while (done < inlen) {
    ssize_t n = write(pin[1], b + done, inlen - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      break; /* it ended; its output says why */
    }
    done += (size_t)n;
  }
  close(pin[1]);
  size_t cap = 4096;
  r->out = malloc(cap);
  ASSERT_NOT_NULL(r->out);
  r->len = 0;
  for (;;) {
    if (cap - r->len < 2) {
      cap *= 2;
      r->out = realloc(r->out, cap);
      ASSERT_NOT_NULL(r->out);
    }
    ssize_t n = read(pout[0], r->out + r->len, cap - r->len - 1);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    r->len += (size_t)n;
  }
  r->out[r->len] = '\0';
  close(pout[0]);
  r->pid = pid;
  r->code = test_wait_pid(pid, 60.0 * test_timeout_mult());
  if (r->code == INT32_MIN) {
    kill(pid, SIGKILL);
    test_wait_pid(pid, 60.0);
  }
  ASSERT_EQ(r->code, 0);
}

typedef struct answer {
  pid_t pid;
  int code;
  long long value;
  uint64_t local, probe, stat;
  char error[1024];
} answer;

/* The peer resolves addr from tab and does op with it. */
static void peer_resolve(const void *tab, size_t len, uint64_t addr,
                         const char *op, answer *a) {
  char hex[32];
  snprintf(hex, sizeof hex, "%" PRIx64, addr);
  peer_run r;
  run_peer("resolve", hex, op, tab, len, &r);
  int at = 0;
  memset(a, 0, sizeof *a);
  int got = sscanf(r.out,
                   "code %d value %lld local %" SCNx64 " probe %" SCNx64
                   " static %" SCNx64 "\nerror %n",
                   &a->code, &a->value, &a->local, &a->probe, &a->stat, &at);
  if (got != 5 || at == 0) {
    mproc_test_fail(__FILE__, __LINE__, "peer answered \"%s\"", r.out);
  }
  size_t n = strcspn(r.out + at, "\n");
  if (n >= sizeof a->error) {
    n = sizeof a->error - 1;
  }
  memcpy(a->error, r.out + at, n);
  a->error[n] = '\0';
  a->pid = r.pid;
  free(r.out);
}

/* 1 when new images get randomised addresses (and may differ). */
static int aslr_on(void) {
  int pers = personality(0xffffffff);
  if (pers != -1 && (pers & ADDR_NO_RANDOMIZE)) {
    return 0;
  }
  FILE *f = fopen("/proc/sys/kernel/randomize_va_space", "re");
  int v = 0;
  if (f != NULL) {
    if (fscanf(f, "%d", &v) != 1) {
      v = 0;
    }
    fclose(f);
  }
  return v != 0;
}

TEST_IMPL(funcref_exec_same_program) {
  /* One run of the peer tells its table and two of its addresses ... */
  peer_run e;
  run_peer("emit", NULL, NULL, NULL, 0, &e);
  unsigned long long probe, stat;
  size_t len;
  int at = 0;
  ASSERT_EQ(sscanf(e.out, "probe %llx static %llx table %zu\n%n", &probe,
                   &stat, &len, &at),
            3);
  ASSERT_GT(at, 0);
  ASSERT_UEQ((uint64_t)e.len, (uint64_t)at + len);
  const unsigned char *tab = (const unsigned char *)e.out + at;
  ttab t;
  tab_decode(tab, len, &t);
  ASSERT_UEQ(t.o[0].flags, T_MAIN);
  ASSERT_EQ(tab_find(&t, (const void *)(uintptr_t)probe), 0);
  ASSERT_EQ(tab_find(&t, (const void *)(uintptr_t)stat), 0);

  /* ... and another, a fresh image, translates them into its own. */
  answer a;
  peer_resolve(tab, len, probe, "call", &a);
  if (a.code != 0) {
    fprintf(stderr, "# peer: %s\n", a.error);
  }
  ASSERT_OK(a.code);
  ASSERT_EQ(a.value, PEER_PROBE_VALUE);
  ASSERT_UEQ(a.local, a.probe);
  answer s;
  peer_resolve(tab, len, stat, "read", &s);
  ASSERT_OK(s.code);
  ASSERT_EQ(s.value, PEER_STATIC_VALUE);
  ASSERT_UEQ(s.local, s.stat);
  /* The point of it all: the second image lies elsewhere.  (A program
   * linked at a fixed address, or address randomisation switched off,
   * puts both at the same place; then the translation is the identity.) */
  if (aslr_on() && t.o[0].bias != 0) {
    ASSERT(a.probe != probe);
  }

  free(t.o);
  free(e.out);
  return 0;
}

TEST_IMPL(funcref_exec_other_program) {
  void *tab;
  size_t len;
  own_table(&tab, &len);
  ttab t;
  tab_decode(tab, len, &t);
  char id[96];
  to_hex(id, sizeof id, t.o[0].id, t.o[0].idlen);

  /* A libc function: the same library there, so the peer's own getpid,
   * which returns the peer's pid. */
  answer a;
  peer_resolve(tab, len, (uint64_t)(uintptr_t)&getpid, "pid", &a);
  if (a.code != 0) {
    fprintf(stderr, "# peer: %s\n", a.error);
  }
  ASSERT_OK(a.code);
  ASSERT_EQ(a.value, a.pid);
  ASSERT_NE(a.value, getpid());

  /* A function of this program: the peer's main program is another one,
   * so calling the translated address would run foreign code. */
  peer_resolve(tab, len, (uint64_t)(uintptr_t)&funcref_test_local, "call", &a);
  ASSERT_ERR(a.code, MPROC_EBUILD);
  ASSERT_EQ(a.value, 0);
  ASSERT_UEQ(a.local, 0);
  ASSERT_CONTAINS(a.error, "this program");
  ASSERT_CONTAINS(a.error, id);
  peer_resolve(tab, len, (uint64_t)(uintptr_t)&local_static, "read", &a);
  ASSERT_ERR(a.code, MPROC_EBUILD);

  /* Heap memory is no object at all. */
  void *heap = malloc(16);
  ASSERT_NOT_NULL(heap);
  peer_resolve(tab, len, (uint64_t)(uintptr_t)heap, "call", &a);
  ASSERT_ERR(a.code, MPROC_ENOFUNC);
  free(heap);

  /* Bad bytes on the peer's side. */
  peer_resolve(tab, len - 1, (uint64_t)(uintptr_t)&getpid, "pid", &a);
  ASSERT_ERR(a.code, MPROC_EPROTO);
  peer_resolve(tab, 0, (uint64_t)(uintptr_t)&getpid, "pid", &a);
  ASSERT_ERR(a.code, MPROC_EPROTO);

  free(t.o);
  free(tab);
  return 0;
}

static void copy_file(const char *from, const char *to) {
  int in = open(from, O_RDONLY | O_CLOEXEC);
  ASSERT_GE(in, 0);
  int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
  ASSERT_GE(out, 0);
  char buf[65536];
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    ASSERT_GE(n, 0);
    if (n == 0) {
      break;
    }
    ASSERT_EQ(write(out, buf, (size_t)n), n);
  }
  close(in);
  ASSERT_EQ(close(out), 0);
}

/* Runs in a child of the test process, so that the test process can
 * remove the directory whatever happens here. */
static int replaced_library(const char *dir) {
  char path[PATH_MAX], next[PATH_MAX];
  snprintf(path, sizeof path, "%s/libfuncref_probe.so", dir);
  snprintf(next, sizeof next, "%s/libfuncref_probe.so.new", dir);
  copy_file(FUNCREF_LIB_A, path);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    mproc_test_fail(__FILE__, __LINE__, "dlopen: %s", dlerror());
  }
  void *sym = dlsym(h, "funcref_probe");
  ASSERT_NOT_NULL(sym);
  int (*probe)(void) = (int (*)(void))(uintptr_t)sym;
  ASSERT_EQ(probe(), FUNCREF_VALUE_A);

  void *tab;
  size_t len;
  own_table(&tab, &len);
  ttab t;
  tab_decode(tab, len, &t);
  int lib = tab_find(&t, sym);
  ASSERT_GT(lib, 0);
  ASSERT_STR_EQ(t.o[lib].path, path);
  char id[96];
  to_hex(id, sizeof id, t.o[lib].id, t.o[lib].idlen);

  /* The peer has no such library: it loads it from the path. */
  answer a;
  peer_resolve(tab, len, (uint64_t)(uintptr_t)sym, "call", &a);
  if (a.code != 0) {
    fprintf(stderr, "# peer: %s\n", a.error);
  }
  ASSERT_OK(a.code);
  ASSERT_EQ(a.value, FUNCREF_VALUE_A);

  /* Another build replaces the file (as an install does): the peer loads
   * it and sees that it is not the code this process runs. */
  copy_file(FUNCREF_LIB_B, next);
  ASSERT_EQ(rename(next, path), 0);
  ASSERT_EQ(probe(), FUNCREF_VALUE_A); /* ours is still mapped */
  peer_resolve(tab, len, (uint64_t)(uintptr_t)sym, "call", &a);
  ASSERT_ERR(a.code, MPROC_EBUILD);
  ASSERT_EQ(a.value, 0);
  ASSERT_CONTAINS(a.error, path);
  ASSERT_CONTAINS(a.error, id);
  ASSERT_CONTAINS(a.error, "build-id");

  /* The file is gone: nothing to load. */
  ASSERT_EQ(unlink(path), 0);
  peer_resolve(tab, len, (uint64_t)(uintptr_t)sym, "call", &a);
  ASSERT_ERR(a.code, MPROC_ENOFUNC);
  ASSERT_CONTAINS(a.error, "cannot load");
  ASSERT_CONTAINS(a.error, path);
  /* Other objects of the same table still translate. */
  peer_resolve(tab, len, (uint64_t)(uintptr_t)&getpid, "pid", &a);
  ASSERT_OK(a.code);
  ASSERT_EQ(a.value, a.pid);

  free(t.o);
  free(tab);
  return 0;
}

TEST_IMPL(funcref_exec_replaced_library) {
  char dir[] = "/tmp/mproc-funcref-XXXXXX";
  ASSERT_NOT_NULL(mkdtemp(dir));
  pid_t pid = test_fork();
  if (pid == 0) {
    _exit(replaced_library(dir));
  }
  int code = test_wait_pid(pid, 120.0 * test_timeout_mult());
  if (code == INT32_MIN) {
    kill(pid, SIGKILL);
    test_wait_pid(pid, 60.0);
  }
  /* Clean up before judging, so a failure leaves nothing behind. */
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/libfuncref_probe.so", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/libfuncref_probe.so.new", dir);
  unlink(path);
  ASSERT_EQ(rmdir(dir), 0);
  ASSERT_EQ(code, 0);
  return 0;
}
