/*
 * shared.c - Value, Array, RawValue and RawArray: typed storage in the
 * shared arena with an optional lock (mproc/shared.h).
 *
 * DESIGN
 *
 * Layout.  A value and an array are one arena block each: a small header
 * (magic word, typecode, element size, length, lock pointer) followed by
 * the elements at offset 32, so the storage is 16-byte aligned (the arena
 * gives 16) and therefore aligned for every element size.  A value is an
 * array of one element with a different magic word, so that passing a
 * value where an array is expected (or the reverse) is MPROC_EINVAL.
 *
 * Validation.  Every entry point checks its object before touching it: the
 * pointer is in the arena, 16-byte aligned, and carries the right magic
 * word, and the header is self-consistent (the typecode's size matches).
 * The arena is mapped whole in every process, so reading the magic of a
 * freed block or of a random arena address is safe; free overwrites the
 * magic before it returns the block, so a freed object is MPROC_EINVAL.
 * (A stale pointer whose block was reused for a new object of the same
 * kind is indistinguishable from that object, as with any allocator.)
 * mproc_shm_usable_size() would check that the pointer is a live block,
 * but it takes the arena's lock, too dear for an atomic add.
 *
 * Element access.  One element is read and written with relaxed atomic
 * loads and stores of its size (1, 2, 4 or 8 bytes), so a RawValue used
 * by several processes at once never tears, and the lock (if any) gives
 * the ordering.  Slices are plain memcpy under the lock.
 *
 * The lock.  get/set/read/write take the object's lock for that one access
 * (Python's Synchronized wrappers do the same).  When the acquire reports
 * MPROC_EOWNERDEAD (a process died holding it), the access itself has
 * nothing to repair: every bit pattern of the element is a value of its
 * type.  So the access marks the lock consistent, goes on and returns 0,
 * with a warning in the log.  A program that keeps an invariant across
 * several accesses holds the lock itself (mproc_value_get_lock) and sees
 * MPROC_EOWNERDEAD from its own acquire.
 */
#include "internal.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define SHARED_VALUE_MAGIC 0x4c415653u /* "SVAL" */
#define SHARED_ARRAY_MAGIC 0x52524153u /* "SARR" */
#define SHARED_DEAD_MAGIC 0x64656164u  /* "dead" */

/* How an element's bits become an int64_t. */
enum kind {
  K_SIGNED = 1,   /* sign-extended */
  K_UNSIGNED = 2, /* zero-extended ('Q'/'L' above INT64_MAX wrap) */
  K_CHAR = 3,     /* 'c': the byte, 0..255 */
  K_FLOAT = 4     /* 'f', 'd': no integer view */
};

struct shared_hdr {
  uint32_t magic;       /* SHARED_VALUE_MAGIC / SHARED_ARRAY_MAGIC */
  char typecode;        /* one of the table in shared.h */
  uint8_t esize;        /* mproc_typecode_size(typecode) */
  uint8_t kind;         /* enum kind */
  uint8_t owns_lock;    /* 1: lock was made here and is freed with us;
                           2: it is embedded in this block (a Value) */
  uint64_t len;         /* elements (1 for a value) */
  mproc_lock *lock;     /* NULL for Raw objects */
};

/*
 * A Value's own lock (the default RLock) is embedded right after its
 * element, in the same 16-byte-aligned 16 bytes as the element and the
 * lock word: one cache line moves between processes on a locked update,
 * not two (measured: the separate block cost about 15% of the contended
 * rate).
 */
struct mproc_value {
  struct shared_hdr h;
  _Alignas(16) unsigned char data[8];
  _Alignas(8) unsigned char lock[MPROC__LOCK_BYTES];
};

struct mproc_array {
  struct shared_hdr h;
  _Alignas(16) unsigned char data[];
};

MPROC__STATIC_ASSERT(offsetof(struct mproc_value, data) ==
                         offsetof(struct mproc_array, data),
                     "values and arrays share one layout");
MPROC__STATIC_ASSERT(offsetof(struct mproc_array, data) % 16 == 0,
                     "storage is 16-byte aligned");

/* ==================== typecodes ==================== */

static int typecode_info(char typecode, int *kind) {
  int k, size;
  switch (typecode) {
  case 'c': k = K_CHAR; size = (int)sizeof(char); break;
  case 'b': k = K_SIGNED; size = (int)sizeof(signed char); break;
  case 'B': k = K_UNSIGNED; size = (int)sizeof(unsigned char); break;
  case 'h': k = K_SIGNED; size = (int)sizeof(short); break;
  case 'H': k = K_UNSIGNED; size = (int)sizeof(unsigned short); break;
  case 'i': k = K_SIGNED; size = (int)sizeof(int); break;
  case 'I': k = K_UNSIGNED; size = (int)sizeof(unsigned int); break;
  case 'l': k = K_SIGNED; size = (int)sizeof(long); break;
  case 'L': k = K_UNSIGNED; size = (int)sizeof(unsigned long); break;
  case 'q': k = K_SIGNED; size = (int)sizeof(long long); break;
  case 'Q': k = K_UNSIGNED; size = (int)sizeof(unsigned long long); break;
  case 'f': k = K_FLOAT; size = (int)sizeof(float); break;
  case 'd': k = K_FLOAT; size = (int)sizeof(double); break;
  default: return MPROC_EINVAL;
  }
  if (kind != NULL) {
    *kind = k;
  }
  return size;
}

int mproc_typecode_size(char typecode) {
  return typecode_info(typecode, NULL);
}

/* ==================== validation ==================== */

static struct shared_hdr *check(const void *p, uint32_t magic) {
  if (p == NULL || ((uintptr_t)p & 15u) != 0 || !mproc_arena_contains(p) ||
      !mproc_arena_contains((const char *)p + sizeof(struct shared_hdr) - 1)) {
    return NULL;
  }
  struct shared_hdr *h = (struct shared_hdr *)(uintptr_t)p;
  if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != magic) {
    return NULL;
  }
  int kind;
  if (typecode_info(h->typecode, &kind) != (int)h->esize ||
      kind != (int)h->kind) {
    return NULL;
  }
  return h;
}

static unsigned char *data_of(struct shared_hdr *h) {
  return (unsigned char *)h + offsetof(struct mproc_array, data);
}

/* ==================== element bits ==================== */

static uint64_t load_bits(const unsigned char *p, int size) {
  switch (size) {
  case 1: return __atomic_load_n((const uint8_t *)p, __ATOMIC_RELAXED);
  case 2:
    return __atomic_load_n((const uint16_t *)(const void *)p,
                           __ATOMIC_RELAXED);
  case 4:
    return __atomic_load_n((const uint32_t *)(const void *)p,
                           __ATOMIC_RELAXED);
  default:
    return __atomic_load_n((const uint64_t *)(const void *)p,
                           __ATOMIC_RELAXED);
  }
}

static void store_bits(unsigned char *p, int size, uint64_t bits) {
  switch (size) {
  case 1: __atomic_store_n((uint8_t *)p, (uint8_t)bits, __ATOMIC_RELAXED); break;
  case 2:
    __atomic_store_n((uint16_t *)(void *)p, (uint16_t)bits, __ATOMIC_RELAXED);
    break;
  case 4:
    __atomic_store_n((uint32_t *)(void *)p, (uint32_t)bits, __ATOMIC_RELAXED);
    break;
  default:
    __atomic_store_n((uint64_t *)(void *)p, bits, __ATOMIC_RELAXED);
    break;
  }
}

/* The integer an element's bits stand for (not for K_FLOAT). */
static int64_t bits_to_i64(int kind, int size, uint64_t bits) {
  if (size == 8) {
    return (int64_t)bits; /* 'Q'/'L' above INT64_MAX wrap, as documented */
  }
  unsigned shift = 64u - 8u * (unsigned)size;
  bits &= UINT64_MAX >> shift;
  if (kind == K_SIGNED && (bits >> (8u * (unsigned)size - 1u)) != 0) {
    bits |= UINT64_MAX << (8u * (unsigned)size); /* sign-extend */
  }
  return (int64_t)bits;
}

static uint64_t double_to_bits(int size, double x) {
  if (size == (int)sizeof(float)) {
    float f = (float)x;
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
  }
  uint64_t b;
  memcpy(&b, &x, sizeof b);
  return b;
}

static double bits_to_double(int kind, int size, uint64_t bits) {
  if (kind == K_FLOAT) {
    if (size == (int)sizeof(float)) {
      uint32_t b = (uint32_t)bits;
      float f;
      memcpy(&f, &b, sizeof f);
      return f;
    }
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
  }
  if (kind == K_SIGNED) {
    return (double)bits_to_i64(kind, size, bits);
  }
  if (size < 8) {
    bits &= UINT64_MAX >> (64u - 8u * (unsigned)size);
  }
  return (double)bits;
}

/* ==================== the lock ==================== */

static int obj_lock(struct shared_hdr *h) {
  if (h->lock == NULL) {
    return 0;
  }
  int r = mproc_lock_acquire(h->lock, MPROC_FOREVER);
  if (MPROC__UNLIKELY(r == MPROC_EOWNERDEAD)) {
    MPROC__WARN("shared: the lock of %p was held by a process that died; "
                "marking it consistent", (void *)h);
    r = mproc_lock_consistent(h->lock);
    if (r != 0) {
      (void)mproc_lock_release(h->lock);
    }
  }
  return r;
}

static int obj_unlock(struct shared_hdr *h) {
  return h->lock == NULL ? 0 : mproc_lock_release(h->lock);
}

/* ==================== construction and destruction ==================== */

static int obj_new(void **out, uint32_t magic, char typecode, size_t n,
                   const void *init, const mproc_shared_opts *opts) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  int kind;
  int esize = typecode_info(typecode, &kind);
  if (esize < 0) {
    return MPROC_EINVAL;
  }
  int raw = opts != NULL && opts->raw;
  mproc_lock *given = opts != NULL ? opts->lock : NULL;
  if (raw && given != NULL) {
    return MPROC_EINVAL;
  }
  /* Python's "has no method 'acquire'": the given lock must be a live
   * Lock or RLock. */
  if (given != NULL && mproc_lock_is_locked(given) < 0) {
    return MPROC_EINVAL;
  }
  size_t head = offsetof(struct mproc_array, data);
  size_t bytes;
  if (magic == SHARED_VALUE_MAGIC) {
    bytes = sizeof(struct mproc_value);
  } else {
    if (n > (SIZE_MAX - head) / (size_t)esize) {
      return MPROC_EOVERFLOW;
    }
    bytes = head + n * (size_t)esize;
  }

  void *p = NULL;
  int r = mproc_shm_alloc(&p, bytes);
  if (r != 0) {
    return r;
  }
  mproc_lock *lock = given;
  int owns = 0;
  if (!raw && lock == NULL) {
    if (magic == SHARED_VALUE_MAGIC) {
      struct mproc_value *v = p;
      mproc__lock_init_embedded(v->lock, 1);
      lock = (mproc_lock *)(void *)v->lock;
      owns = 2;
    } else {
      r = mproc_rlock_new(&lock);
      if (r != 0) {
        (void)mproc_shm_free(p);
        return r;
      }
      owns = 1;
    }
  }
  struct shared_hdr *h = p;
  memset(h, 0, head);
  h->typecode = typecode;
  h->esize = (uint8_t)esize;
  h->kind = (uint8_t)kind;
  h->owns_lock = (uint8_t)owns;
  h->len = n;
  h->lock = lock;
  size_t data_bytes = n * (size_t)esize;
  if (magic == SHARED_VALUE_MAGIC) {
    data_bytes = sizeof(((struct mproc_value *)p)->data);
  }
  if (init != NULL) {
    memcpy(data_of(h), init, n * (size_t)esize);
    memset(data_of(h) + n * (size_t)esize, 0, data_bytes - n * (size_t)esize);
  } else {
    memset(data_of(h), 0, data_bytes);
  }
  __atomic_store_n(&h->magic, magic, __ATOMIC_RELEASE);
  *out = p;
  return 0;
}

static int obj_free(void *p, uint32_t magic) {
  if (p == NULL) {
    return 0;
  }
  struct shared_hdr *h = check(p, magic);
  if (h == NULL) {
    return MPROC_EINVAL;
  }
  /* Claim the object first, so that a second free (even a racing one) is
   * MPROC_EINVAL and never frees the lock or the block twice. */
  uint32_t expect = magic;
  if (!__atomic_compare_exchange_n(&h->magic, &expect, SHARED_DEAD_MAGIC,
                                   false, __ATOMIC_ACQ_REL,
                                   __ATOMIC_ACQUIRE)) {
    return MPROC_EINVAL;
  }
  if (h->owns_lock) {
    int r = h->owns_lock == 2 ? mproc__lock_retire_embedded(h->lock)
                              : mproc_lock_free(h->lock);
    if (r != 0) {
      /* Held (MPROC_EBUSY): nothing is freed, the object stays valid. */
      __atomic_store_n(&h->magic, magic, __ATOMIC_RELEASE);
      return r;
    }
  }
  return mproc_shm_free(p);
}

/* ==================== Value ==================== */

int mproc_value_new(mproc_value **out, char typecode, const void *init,
                    const mproc_shared_opts *opts) {
  return obj_new((void **)out, SHARED_VALUE_MAGIC, typecode, 1, init, opts);
}

int mproc_raw_value_new(mproc_value **out, char typecode, const void *init) {
  mproc_shared_opts o = {.raw = 1};
  return mproc_value_new(out, typecode, init, &o);
}

/* Read / write element i of a checked object under its lock. */
static int elem_get(struct shared_hdr *h, size_t i, uint64_t *bits) {
  int r = obj_lock(h);
  if (r != 0) {
    return r;
  }
  *bits = load_bits(data_of(h) + i * h->esize, h->esize);
  return obj_unlock(h);
}

static int elem_set(struct shared_hdr *h, size_t i, uint64_t bits) {
  int r = obj_lock(h);
  if (r != 0) {
    return r;
  }
  store_bits(data_of(h) + i * h->esize, h->esize, bits);
  return obj_unlock(h);
}

int mproc_value_get(mproc_value *v, void *out, size_t size) {
  struct shared_hdr *h = check(v, SHARED_VALUE_MAGIC);
  if (h == NULL || out == NULL || size != h->esize) {
    return MPROC_EINVAL;
  }
  uint64_t bits;
  int r = elem_get(h, 0, &bits);
  if (r != 0) {
    return r;
  }
  /* The low size bytes of bits, in memory order (little or big endian). */
  switch (size) {
  case 1: { uint8_t b = (uint8_t)bits; memcpy(out, &b, 1); break; }
  case 2: { uint16_t b = (uint16_t)bits; memcpy(out, &b, 2); break; }
  case 4: { uint32_t b = (uint32_t)bits; memcpy(out, &b, 4); break; }
  default: memcpy(out, &bits, 8); break;
  }
  return 0;
}

int mproc_value_set(mproc_value *v, const void *in, size_t size) {
  struct shared_hdr *h = check(v, SHARED_VALUE_MAGIC);
  if (h == NULL || in == NULL || size != h->esize) {
    return MPROC_EINVAL;
  }
  uint64_t bits;
  switch (size) {
  case 1: { uint8_t b; memcpy(&b, in, 1); bits = b; break; }
  case 2: { uint16_t b; memcpy(&b, in, 2); bits = b; break; }
  case 4: { uint32_t b; memcpy(&b, in, 4); bits = b; break; }
  default: memcpy(&bits, in, 8); break;
  }
  return elem_set(h, 0, bits);
}

/* Typed access shared by values and arrays. */
static int get_i64(struct shared_hdr *h, size_t i, int64_t *out) {
  if (out == NULL || h->kind == K_FLOAT) {
    return MPROC_EINVAL;
  }
  uint64_t bits;
  int r = elem_get(h, i, &bits);
  if (r == 0) {
    *out = bits_to_i64(h->kind, h->esize, bits);
  }
  return r;
}

static int set_i64(struct shared_hdr *h, size_t i, int64_t x) {
  uint64_t bits = h->kind == K_FLOAT ? double_to_bits(h->esize, (double)x)
                                     : (uint64_t)x;
  return elem_set(h, i, bits);
}

static int get_double(struct shared_hdr *h, size_t i, double *out) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  uint64_t bits;
  int r = elem_get(h, i, &bits);
  if (r == 0) {
    *out = bits_to_double(h->kind, h->esize, bits);
  }
  return r;
}

static int set_double(struct shared_hdr *h, size_t i, double x) {
  if (h->kind != K_FLOAT) {
    return MPROC_EINVAL; /* Python: TypeError, a float into an int */
  }
  return elem_set(h, i, double_to_bits(h->esize, x));
}

int mproc_value_get_i64(mproc_value *v, int64_t *out) {
  struct shared_hdr *h = check(v, SHARED_VALUE_MAGIC);
  return h == NULL ? MPROC_EINVAL : get_i64(h, 0, out);
}

int mproc_value_set_i64(mproc_value *v, int64_t x) {
  struct shared_hdr *h = check(v, SHARED_VALUE_MAGIC);
  return h == NULL ? MPROC_EINVAL : set_i64(h, 0, x);
}

int mproc_value_get_double(mproc_value *v, double *out) {
  struct shared_hdr *h = check(v, SHARED_VALUE_MAGIC);
  return h == NULL ? MPROC_EINVAL : get_double(h, 0, out);
}

int mproc_value_set_double(mproc_value *v, double x) {
  struct shared_hdr *h = check(v, SHARED_VALUE_MAGIC);
  return h == NULL ? MPROC_EINVAL : set_double(h, 0, x);
}

/* ---- atomics ---- */

#define ATOMIC_ADD(type, p, delta)                                            \
  ((uint64_t)__atomic_fetch_add((type *)(void *)(p), (type)(delta),           \
                                __ATOMIC_SEQ_CST))

int mproc_value_add(mproc_value *v, int64_t delta, int64_t *old) {
  struct shared_hdr *h = check(v, SHARED_VALUE_MAGIC);
  if (h == NULL || h->kind == K_FLOAT) {
    return MPROC_EINVAL;
  }
  unsigned char *p = data_of(h);
  uint64_t d = (uint64_t)delta, prev;
  switch (h->esize) {
  case 1: prev = ATOMIC_ADD(uint8_t, p, d); break;
  case 2: prev = ATOMIC_ADD(uint16_t, p, d); break;
  case 4: prev = ATOMIC_ADD(uint32_t, p, d); break;
  default: prev = ATOMIC_ADD(uint64_t, p, d); break;
  }
  if (old != NULL) {
    *old = bits_to_i64(h->kind, h->esize, prev);
  }
  return 0;
}

#define ATOMIC_CAS(type, p, exp, des)                                         \
  do {                                                                        \
    type e_ = (type)(exp);                                                    \
    ok = __atomic_compare_exchange_n((type *)(void *)(p), &e_, (type)(des),   \
                                     false, __ATOMIC_SEQ_CST,                 \
                                     __ATOMIC_SEQ_CST);                       \
    cur = e_;                                                                 \
  } while (0)

int mproc_value_cas(mproc_value *v, int64_t *expected, int64_t desired) {
  struct shared_hdr *h = check(v, SHARED_VALUE_MAGIC);
  if (h == NULL || expected == NULL || h->kind == K_FLOAT) {
    return MPROC_EINVAL;
  }
  unsigned char *p = data_of(h);
  uint64_t exp = (uint64_t)*expected, des = (uint64_t)desired, cur;
  bool ok;
  if (bits_to_i64(h->kind, h->esize, exp) != *expected) {
    /* No element of this type reads as *expected (300 for 'b'): the
     * compare fails whatever the element holds. */
    cur = load_bits(p, h->esize);
    ok = false;
  } else {
    switch (h->esize) {
    case 1: ATOMIC_CAS(uint8_t, p, exp, des); break;
    case 2: ATOMIC_CAS(uint16_t, p, exp, des); break;
    case 4: ATOMIC_CAS(uint32_t, p, exp, des); break;
    default: ATOMIC_CAS(uint64_t, p, exp, des); break;
    }
  }
  if (!ok) {
    *expected = bits_to_i64(h->kind, h->esize, cur);
    return MPROC_EAGAIN;
  }
  return 0;
}

void *mproc_value_ptr(mproc_value *v) {
  struct shared_hdr *h = check(v, SHARED_VALUE_MAGIC);
  return h == NULL ? NULL : data_of(h);
}

mproc_lock *mproc_value_get_lock(mproc_value *v) {
  struct shared_hdr *h = check(v, SHARED_VALUE_MAGIC);
  return h == NULL ? NULL : h->lock;
}

char mproc_value_typecode(const mproc_value *v) {
  struct shared_hdr *h = check(v, SHARED_VALUE_MAGIC);
  return h == NULL ? '\0' : h->typecode;
}

int mproc_value_free(mproc_value *v) {
  return obj_free(v, SHARED_VALUE_MAGIC);
}

/* ==================== Array ==================== */

int mproc_array_new(mproc_array **out, char typecode, size_t n,
                    const void *init, const mproc_shared_opts *opts) {
  return obj_new((void **)out, SHARED_ARRAY_MAGIC, typecode, n, init, opts);
}

int mproc_raw_array_new(mproc_array **out, char typecode, size_t n,
                        const void *init) {
  mproc_shared_opts o = {.raw = 1};
  return mproc_array_new(out, typecode, n, init, &o);
}

size_t mproc_array_len(const mproc_array *a) {
  struct shared_hdr *h = check(a, SHARED_ARRAY_MAGIC);
  return h == NULL ? 0 : (size_t)h->len;
}

char mproc_array_typecode(const mproc_array *a) {
  struct shared_hdr *h = check(a, SHARED_ARRAY_MAGIC);
  return h == NULL ? '\0' : h->typecode;
}

/* The array's header, or NULL (*r set) for a bad object or index. */
static struct shared_hdr *array_at(mproc_array *a, size_t index, int *r) {
  struct shared_hdr *h = check(a, SHARED_ARRAY_MAGIC);
  if (h == NULL) {
    *r = MPROC_EINVAL;
    return NULL;
  }
  if (index >= h->len) {
    *r = MPROC_ERANGE;
    return NULL;
  }
  return h;
}

int mproc_array_get_i64(mproc_array *a, size_t index, int64_t *out) {
  int r;
  struct shared_hdr *h = array_at(a, index, &r);
  return h == NULL ? r : get_i64(h, index, out);
}

int mproc_array_set_i64(mproc_array *a, size_t index, int64_t x) {
  int r;
  struct shared_hdr *h = array_at(a, index, &r);
  return h == NULL ? r : set_i64(h, index, x);
}

int mproc_array_get_double(mproc_array *a, size_t index, double *out) {
  int r;
  struct shared_hdr *h = array_at(a, index, &r);
  return h == NULL ? r : get_double(h, index, out);
}

int mproc_array_set_double(mproc_array *a, size_t index, double x) {
  int r;
  struct shared_hdr *h = array_at(a, index, &r);
  return h == NULL ? r : set_double(h, index, x);
}

/* Check a slice; 0 or the error. */
static int slice_check(struct shared_hdr *h, size_t start, size_t count,
                       const void *buf) {
  if (h == NULL || (buf == NULL && count > 0)) {
    return MPROC_EINVAL;
  }
  if (start > h->len || count > h->len - start) {
    return MPROC_ERANGE;
  }
  return 0;
}

int mproc_array_read(mproc_array *a, size_t start, size_t count, void *out) {
  struct shared_hdr *h = check(a, SHARED_ARRAY_MAGIC);
  int r = slice_check(h, start, count, out);
  if (r != 0 || count == 0) {
    return r;
  }
  if ((r = obj_lock(h)) != 0) {
    return r;
  }
  memcpy(out, data_of(h) + start * h->esize, count * h->esize);
  return obj_unlock(h);
}

int mproc_array_write(mproc_array *a, size_t start, size_t count,
                      const void *in) {
  struct shared_hdr *h = check(a, SHARED_ARRAY_MAGIC);
  int r = slice_check(h, start, count, in);
  if (r != 0 || count == 0) {
    return r;
  }
  if ((r = obj_lock(h)) != 0) {
    return r;
  }
  memcpy(data_of(h) + start * h->esize, in, count * h->esize);
  return obj_unlock(h);
}

void *mproc_array_ptr(mproc_array *a) {
  struct shared_hdr *h = check(a, SHARED_ARRAY_MAGIC);
  return h == NULL ? NULL : data_of(h);
}

mproc_lock *mproc_array_get_lock(mproc_array *a) {
  struct shared_hdr *h = check(a, SHARED_ARRAY_MAGIC);
  return h == NULL ? NULL : h->lock;
}

int mproc_array_free(mproc_array *a) {
  return obj_free(a, SHARED_ARRAY_MAGIC);
}
