/*
 * tests/unit/test-shared.c - Value, Array, RawValue, RawArray in one
 * process: typecodes and sizes, typed access and conversions, atomics,
 * slices and ranges, the lock rules, alignment, misuse (NULL, bad
 * typecodes, wrong sizes, freed and foreign pointers) and that freeing
 * returns every arena block.  The cases with child processes are in
 * tests/behaviour/test-shared-*.c.
 */
#include "task.h"

#include "internal.h"

#include <float.h>
#include <limits.h>
#include <math.h>

static const char all_codes[] = "cbBhHiIlLqQfd";

static size_t arena_blocks(void) {
  mproc_arena_stats s;
  ASSERT_OK(mproc_arena_get_stats(&s));
  return s.blocks;
}

/* The arena's block count after the sync module made whatever it keeps
 * for the life of the program (its table of process tokens): make, use
 * and free one locked value first.  Counts taken later must come back to
 * this one once every object is freed. */
static size_t baseline_blocks(void) {
  mproc_value *v;
  ASSERT_OK(mproc_value_new(&v, 'i', NULL, NULL));
  ASSERT_OK(mproc_value_set_i64(v, 1));
  ASSERT_OK(mproc_lock_acquire(mproc_value_get_lock(v), MPROC_FOREVER));
  ASSERT_OK(mproc_lock_release(mproc_value_get_lock(v)));
  ASSERT_OK(mproc_value_free(v));
  return arena_blocks();
}

/* ---- typecodes ---- */

TEST_IMPL(shared_typecode_sizes) {
  ASSERT_EQ(mproc_typecode_size('c'), sizeof(char));
  ASSERT_EQ(mproc_typecode_size('b'), sizeof(signed char));
  ASSERT_EQ(mproc_typecode_size('B'), sizeof(unsigned char));
  ASSERT_EQ(mproc_typecode_size('h'), sizeof(short));
  ASSERT_EQ(mproc_typecode_size('H'), sizeof(unsigned short));
  ASSERT_EQ(mproc_typecode_size('i'), sizeof(int));
  ASSERT_EQ(mproc_typecode_size('I'), sizeof(unsigned int));
  ASSERT_EQ(mproc_typecode_size('l'), sizeof(long));
  ASSERT_EQ(mproc_typecode_size('L'), sizeof(unsigned long));
  ASSERT_EQ(mproc_typecode_size('q'), sizeof(long long));
  ASSERT_EQ(mproc_typecode_size('Q'), sizeof(unsigned long long));
  ASSERT_EQ(mproc_typecode_size('f'), sizeof(float));
  ASSERT_EQ(mproc_typecode_size('d'), sizeof(double));
  /* 'u' (wchar_t) is deprecated in Python and not supported here. */
  static const char bad[] = {'u', 'x', 'D', 'F', 'P', 'z', '\0', ' ', 'I' + 1};
  for (size_t i = 0; i < sizeof bad; i++) {
    ASSERT_ERR(mproc_typecode_size(bad[i]), MPROC_EINVAL);
  }
  return 0;
}

/* ---- Value: every typecode, zeroed, initialised, get/set ---- */

TEST_IMPL(shared_value_every_typecode) {
  size_t blocks0 = baseline_blocks();
  for (const char *tc = all_codes; *tc; tc++) {
    for (int raw = 0; raw <= 1; raw++) {
      mproc_value *v = NULL;
      if (raw) {
        ASSERT_OK(mproc_raw_value_new(&v, *tc, NULL));
        ASSERT_NULL(mproc_value_get_lock(v));
      } else {
        ASSERT_OK(mproc_value_new(&v, *tc, NULL, NULL));
        ASSERT_NOT_NULL(mproc_value_get_lock(v));
      }
      ASSERT_EQ(mproc_value_typecode(v), *tc);
      int size = mproc_typecode_size(*tc);
      unsigned char *p = mproc_value_ptr(v);
      ASSERT_NOT_NULL(p);
      ASSERT(mproc_arena_contains(p));
      /* Storage aligned to the element size (in fact to 16). */
      ASSERT_EQ((uintptr_t)p % (uintptr_t)size, 0);
      ASSERT_EQ((uintptr_t)p % 16, 0);
      /* Zeroed. */
      for (int i = 0; i < size; i++) {
        ASSERT_EQ(p[i], 0);
      }
      unsigned char buf[8], back[8];
      for (int i = 0; i < size; i++) {
        buf[i] = (unsigned char)(0x11 * (i + 1));
      }
      ASSERT_OK(mproc_value_set(v, buf, (size_t)size));
      memset(back, 0, sizeof back);
      ASSERT_OK(mproc_value_get(v, back, (size_t)size));
      ASSERT_EQ(memcmp(buf, back, (size_t)size), 0);
      ASSERT_EQ(memcmp(p, buf, (size_t)size), 0);
      /* Wrong size either way. */
      ASSERT_ERR(mproc_value_get(v, back, (size_t)size + 1), MPROC_EINVAL);
      ASSERT_ERR(mproc_value_set(v, buf, (size_t)size + 1), MPROC_EINVAL);
      if (size > 1) {
        ASSERT_ERR(mproc_value_get(v, back, 1), MPROC_EINVAL);
      }
      ASSERT_ERR(mproc_value_get(v, back, 0), MPROC_EINVAL);
      ASSERT_ERR(mproc_value_get(v, NULL, (size_t)size), MPROC_EINVAL);
      ASSERT_ERR(mproc_value_set(v, NULL, (size_t)size), MPROC_EINVAL);
      ASSERT_OK(mproc_value_free(v));
    }
  }
  ASSERT_EQ(arena_blocks(), blocks0);
  ASSERT_OK(mproc__arena_check());
  return 0;
}

TEST_IMPL(shared_value_init) {
  mproc_value *v;
  int i = 4343;
  ASSERT_OK(mproc_value_new(&v, 'i', &i, NULL));
  int64_t x;
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, 4343);
  ASSERT_EQ(*(int *)mproc_value_ptr(v), 4343);
  ASSERT_OK(mproc_value_free(v));

  double d = 3.625;
  ASSERT_OK(mproc_raw_value_new(&v, 'd', &d));
  double y;
  ASSERT_OK(mproc_value_get_double(v, &y));
  ASSERT(y == 3.625);
  ASSERT_OK(mproc_value_free(v));

  char c = 'x';
  ASSERT_OK(mproc_value_new(&v, 'c', &c, NULL));
  char c2 = 0;
  ASSERT_OK(mproc_value_get(v, &c2, 1));
  ASSERT_EQ(c2, 'x');
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, 'x');
  ASSERT_OK(mproc_value_free(v));
  return 0;
}

/* ---- typed conversions ---- */

TEST_IMPL(shared_value_typed_conversions) {
  mproc_value *v;
  int64_t x;
  double d;

  /* Signed types sign-extend; stores truncate as C does. */
  ASSERT_OK(mproc_raw_value_new(&v, 'b', NULL));
  ASSERT_OK(mproc_value_set_i64(v, -5));
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, -5);
  ASSERT_OK(mproc_value_set_i64(v, 300)); /* 300 mod 256 = 44 */
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, 44);
  ASSERT_OK(mproc_value_get_double(v, &d));
  ASSERT(d == 44.0);
  ASSERT_ERR(mproc_value_set_double(v, 1.5), MPROC_EINVAL);
  ASSERT_OK(mproc_value_free(v));

  /* Unsigned zero-extend. */
  ASSERT_OK(mproc_raw_value_new(&v, 'H', NULL));
  ASSERT_OK(mproc_value_set_i64(v, -1));
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, 65535);
  ASSERT_OK(mproc_value_free(v));

  ASSERT_OK(mproc_raw_value_new(&v, 'I', NULL));
  ASSERT_OK(mproc_value_set_i64(v, 4000000000LL));
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, 4000000000LL);
  ASSERT_EQ(*(unsigned *)mproc_value_ptr(v), 4000000000u);
  ASSERT_OK(mproc_value_free(v));

  /* 'Q' above INT64_MAX wraps through int64_t; the double view does not. */
  ASSERT_OK(mproc_raw_value_new(&v, 'Q', NULL));
  *(unsigned long long *)mproc_value_ptr(v) = ULLONG_MAX;
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, -1);
  ASSERT_OK(mproc_value_get_double(v, &d));
  ASSERT(d == 18446744073709551615.0);
  ASSERT_OK(mproc_value_free(v));

  /* 'q' keeps 64 bits. */
  ASSERT_OK(mproc_value_new(&v, 'q', NULL, NULL));
  ASSERT_OK(mproc_value_set_i64(v, INT64_MIN));
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, INT64_MIN);
  ASSERT_OK(mproc_value_free(v));

  /* 'c' is its byte, 0..255. */
  ASSERT_OK(mproc_value_new(&v, 'c', NULL, NULL));
  ASSERT_OK(mproc_value_set_i64(v, 0xe9));
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, 0xe9);
  ASSERT_OK(mproc_value_free(v));

  /* Floats: the integer setter converts (Python's Value('d').value = 3),
   * the integer getter refuses (it would truncate). */
  ASSERT_OK(mproc_value_new(&v, 'f', NULL, NULL));
  ASSERT_OK(mproc_value_set_double(v, 0.1));
  float f;
  ASSERT_OK(mproc_value_get(v, &f, sizeof f));
  ASSERT(f == 0.1f);
  ASSERT_OK(mproc_value_get_double(v, &d));
  ASSERT(d == (double)0.1f);
  ASSERT_OK(mproc_value_set_i64(v, 3));
  ASSERT_OK(mproc_value_get_double(v, &d));
  ASSERT(d == 3.0);
  ASSERT_ERR(mproc_value_get_i64(v, &x), MPROC_EINVAL);
  ASSERT_OK(mproc_value_set_double(v, 1e300)); /* out of float's range */
  ASSERT_OK(mproc_value_get_double(v, &d));
  ASSERT(isinf(d));
  ASSERT_OK(mproc_value_free(v));

  ASSERT_OK(mproc_value_new(&v, 'd', NULL, NULL));
  ASSERT_OK(mproc_value_set_double(v, -4.25));
  ASSERT_OK(mproc_value_get_double(v, &d));
  ASSERT(d == -4.25);
  ASSERT_OK(mproc_value_set_double(v, NAN));
  ASSERT_OK(mproc_value_get_double(v, &d));
  ASSERT(isnan(d));
  ASSERT_ERR(mproc_value_get_i64(v, &x), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_get_i64(v, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_get_double(v, NULL), MPROC_EINVAL);
  ASSERT_OK(mproc_value_free(v));
  return 0;
}

/* ---- atomics in one process ---- */

TEST_IMPL(shared_value_atomic_ops) {
  for (const char *tc = all_codes; *tc; tc++) {
    mproc_value *v;
    ASSERT_OK(mproc_value_new(&v, *tc, NULL, NULL));
    int64_t old = 99, exp;
    if (*tc == 'f' || *tc == 'd') {
      ASSERT_ERR(mproc_value_add(v, 1, &old), MPROC_EINVAL);
      exp = 0;
      ASSERT_ERR(mproc_value_cas(v, &exp, 1), MPROC_EINVAL);
      ASSERT_OK(mproc_value_free(v));
      continue;
    }
    ASSERT_OK(mproc_value_add(v, 5, &old));
    ASSERT_EQ(old, 0);
    ASSERT_OK(mproc_value_add(v, 7, NULL));
    ASSERT_OK(mproc_value_add(v, -2, &old));
    ASSERT_EQ(old, 12);
    int64_t x;
    ASSERT_OK(mproc_value_get_i64(v, &x));
    ASSERT_EQ(x, 10);
    /* A failed compare reports the current value. */
    exp = 3;
    ASSERT_ERR(mproc_value_cas(v, &exp, 20), MPROC_EAGAIN);
    ASSERT_EQ(exp, 10);
    ASSERT_OK(mproc_value_cas(v, &exp, 20));
    ASSERT_EQ(exp, 10);
    ASSERT_OK(mproc_value_get_i64(v, &x));
    ASSERT_EQ(x, 20);
    ASSERT_ERR(mproc_value_cas(v, NULL, 1), MPROC_EINVAL);
    ASSERT_OK(mproc_value_free(v));
  }

  /* Wrap-around follows the element type. */
  mproc_value *v;
  int64_t old, x;
  ASSERT_OK(mproc_raw_value_new(&v, 'b', NULL));
  ASSERT_OK(mproc_value_set_i64(v, 127));
  ASSERT_OK(mproc_value_add(v, 1, &old));
  ASSERT_EQ(old, 127);
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, -128);
  /* An expected value no 'b' can hold never matches (300 is not 44). */
  ASSERT_OK(mproc_value_set_i64(v, 44));
  int64_t exp = 300;
  ASSERT_ERR(mproc_value_cas(v, &exp, 1), MPROC_EAGAIN);
  ASSERT_EQ(exp, 44);
  exp = -128 + 256; /* 128 is not a 'b' either */
  ASSERT_ERR(mproc_value_cas(v, &exp, 1), MPROC_EAGAIN);
  ASSERT_OK(mproc_value_free(v));

  ASSERT_OK(mproc_raw_value_new(&v, 'B', NULL));
  ASSERT_OK(mproc_value_add(v, -1, &old));
  ASSERT_EQ(old, 0);
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, 255);
  exp = 255;
  ASSERT_OK(mproc_value_cas(v, &exp, 7));
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, 7);
  ASSERT_OK(mproc_value_free(v));

  ASSERT_OK(mproc_raw_value_new(&v, 'q', NULL));
  ASSERT_OK(mproc_value_set_i64(v, INT64_MAX));
  ASSERT_OK(mproc_value_add(v, 1, &old));
  ASSERT_EQ(old, INT64_MAX);
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, INT64_MIN);
  ASSERT_OK(mproc_value_free(v));
  return 0;
}

/* ---- the lock rules (Python's test_getobj_getlock) ---- */

TEST_IMPL(shared_value_lock_rules) {
  mproc_value *v;
  /* Default: a new RLock, held by us after acquiring it, recursive, and
   * get/set work while we hold it. */
  ASSERT_OK(mproc_value_new(&v, 'i', NULL, NULL));
  mproc_lock *l = mproc_value_get_lock(v);
  ASSERT_NOT_NULL(l);
  ASSERT_EQ(mproc_lock_is_locked(l), 0);
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  ASSERT_EQ(mproc_lock_is_mine(l), 1);
  ASSERT_OK(mproc_lock_acquire(l, 0)); /* an RLock: recursive */
  ASSERT_OK(mproc_value_set_i64(v, 5));
  int64_t x;
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_EQ(x, 5);
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_EQ(mproc_lock_is_mine(l), 1);
  /* Freeing while its own lock is held: refused, nothing freed. */
  ASSERT_ERR(mproc_value_free(v), MPROC_EBUSY);
  ASSERT_OK(mproc_value_get_i64(v, &x));
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_EQ(mproc_lock_is_locked(l), 0);
  ASSERT_OK(mproc_value_free(v));

  /* opts.lock is used as it is, and outlives the value. */
  mproc_lock *mine;
  ASSERT_OK(mproc_lock_new(&mine));
  mproc_shared_opts o = {.lock = mine};
  mproc_value *a, *b;
  ASSERT_OK(mproc_value_new(&a, 'd', NULL, &o));
  ASSERT_OK(mproc_value_new(&b, 'q', NULL, &o));
  ASSERT_PTR_EQ(mproc_value_get_lock(a), mine);
  ASSERT_PTR_EQ(mproc_value_get_lock(b), mine);
  ASSERT_OK(mproc_value_set_double(a, 2.5));
  ASSERT_EQ(mproc_lock_is_locked(mine), 0);
  ASSERT_OK(mproc_value_free(a));
  ASSERT_OK(mproc_value_free(b));
  ASSERT_OK(mproc_lock_acquire(mine, 0)); /* still a live lock */
  ASSERT_OK(mproc_lock_release(mine));

  /* An RLock given is used too. */
  mproc_lock *rl;
  ASSERT_OK(mproc_rlock_new(&rl));
  o.lock = rl;
  ASSERT_OK(mproc_value_new(&a, 'h', NULL, &o));
  ASSERT_PTR_EQ(mproc_value_get_lock(a), rl);
  ASSERT_OK(mproc_value_free(a));
  ASSERT_OK(mproc_lock_free(rl));

  /* raw: no lock, both ways of asking. */
  mproc_shared_opts ro = {.raw = 1};
  ASSERT_OK(mproc_value_new(&a, 'i', NULL, &ro));
  ASSERT_NULL(mproc_value_get_lock(a));
  ASSERT_NOT_NULL(mproc_value_ptr(a));
  ASSERT_OK(mproc_value_free(a));
  ASSERT_OK(mproc_raw_value_new(&a, 'i', NULL));
  ASSERT_NULL(mproc_value_get_lock(a));
  ASSERT_OK(mproc_value_free(a));

  /* raw with a lock is a contradiction; a lock that is not a lock is
   * Python's AttributeError("... has no method 'acquire'"). */
  ro.lock = mine;
  a = (mproc_value *)1;
  ASSERT_ERR(mproc_value_new(&a, 'i', NULL, &ro), MPROC_EINVAL);
  ASSERT_NULL(a);
  void *junk;
  ASSERT_OK(mproc_shm_calloc(&junk, 1, 64));
  mproc_shared_opts jo = {.lock = junk};
  ASSERT_ERR(mproc_value_new(&a, 'i', NULL, &jo), MPROC_EINVAL);
  int stack_word = 0;
  jo.lock = (mproc_lock *)(void *)&stack_word;
  ASSERT_ERR(mproc_value_new(&a, 'i', NULL, &jo), MPROC_EINVAL);
  ASSERT_OK(mproc_shm_free(junk));
  ASSERT_OK(mproc_lock_free(mine));
  return 0;
}

/* ---- misuse ---- */

/* Every call on v (NULL, or a freed value) fails with MPROC_EINVAL or
 * returns nothing, and never crashes. */
static void expect_value_rejected(mproc_value *v) {
  int64_t x;
  double d;
  int i = 0;
  ASSERT_ERR(mproc_value_get(v, &i, sizeof i), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_set(v, &i, sizeof i), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_get_i64(v, &x), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_set_i64(v, 1), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_get_double(v, &d), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_set_double(v, 1), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_add(v, 1, &x), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_cas(v, &x, 1), MPROC_EINVAL);
  ASSERT_NULL(mproc_value_ptr(v));
  ASSERT_NULL(mproc_value_get_lock(v));
  ASSERT_EQ(mproc_value_typecode(v), '\0');
}

TEST_IMPL(shared_value_misuse) {
  size_t blocks0 = baseline_blocks();
  mproc_value *v = (mproc_value *)1;
  ASSERT_ERR(mproc_value_new(NULL, 'i', NULL, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_raw_value_new(NULL, 'i', NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_new(&v, 'x', NULL, NULL), MPROC_EINVAL);
  ASSERT_NULL(v);
  ASSERT_ERR(mproc_raw_value_new(&v, 'u', NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_new(&v, '\0', NULL, NULL), MPROC_EINVAL);
  ASSERT_EQ(arena_blocks(), blocks0); /* nothing left behind */

  /* NULL object. */
  expect_value_rejected(NULL);
  ASSERT_OK(mproc_value_free(NULL));

  /* A freed value: every call is MPROC_EINVAL, never a crash. */
  ASSERT_OK(mproc_value_new(&v, 'i', NULL, NULL));
  ASSERT_OK(mproc_value_free(v));
  expect_value_rejected(v);
  ASSERT_ERR(mproc_value_free(v), MPROC_EINVAL); /* double free */
  ASSERT_EQ(arena_blocks(), blocks0);

  /* Foreign pointers: the stack, the heap, arena memory that is not a
   * value, an address inside a value, and an array. */
  int64_t x;
  long long stackobj[8] = {0};
  ASSERT_ERR(mproc_value_set_i64((mproc_value *)(void *)stackobj, 1),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_value_free((mproc_value *)(void *)stackobj), MPROC_EINVAL);
  void *heap = calloc(1, 128);
  ASSERT_NOT_NULL(heap);
  ASSERT_ERR(mproc_value_get_i64(heap, &x), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_free(heap), MPROC_EINVAL);
  free(heap);
  void *junk;
  ASSERT_OK(mproc_shm_calloc(&junk, 1, 128));
  ASSERT_ERR(mproc_value_add(junk, 1, &x), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_free(junk), MPROC_EINVAL);
  memset(junk, 0xff, 128);
  ASSERT_ERR(mproc_value_get_i64(junk, &x), MPROC_EINVAL);
  ASSERT_OK(mproc_shm_free(junk));
  ASSERT_OK(mproc_value_new(&v, 'i', NULL, NULL));
  ASSERT_ERR(mproc_value_get_i64((mproc_value *)((char *)v + 16), &x),
             MPROC_EINVAL);
  ASSERT_ERR(mproc_value_get_i64((mproc_value *)((char *)v + 1), &x),
             MPROC_EINVAL);
  ASSERT_EQ(mproc_array_len((mproc_array *)(void *)v), 0);
  ASSERT_ERR(mproc_array_free((mproc_array *)(void *)v), MPROC_EINVAL);
  ASSERT_OK(mproc_value_free(v));
  mproc_array *a;
  ASSERT_OK(mproc_array_new(&a, 'i', 4, NULL, NULL));
  ASSERT_ERR(mproc_value_set_i64((mproc_value *)(void *)a, 1), MPROC_EINVAL);
  ASSERT_ERR(mproc_value_free((mproc_value *)(void *)a), MPROC_EINVAL);
  ASSERT_OK(mproc_array_free(a));
  ASSERT_EQ(arena_blocks(), blocks0);
  ASSERT_OK(mproc__arena_check());
  return 0;
}

/* ---- Array in one process ---- */

TEST_IMPL(shared_array_basics) {
  /* Python's test_array: 10 ints, len, index, slices. */
  int seq[10] = {680, 626, 934, 821, 150, 233, 548, 982, 714, 831};
  for (int raw = 0; raw <= 1; raw++) {
    mproc_array *a;
    if (raw) {
      ASSERT_OK(mproc_raw_array_new(&a, 'i', 10, seq));
      ASSERT_NULL(mproc_array_get_lock(a));
    } else {
      ASSERT_OK(mproc_array_new(&a, 'i', 10, seq, NULL));
      ASSERT_NOT_NULL(mproc_array_get_lock(a));
    }
    ASSERT_EQ(mproc_array_len(a), 10);
    ASSERT_EQ(mproc_array_typecode(a), 'i');
    ASSERT_EQ((uintptr_t)mproc_array_ptr(a) % 16, 0);
    ASSERT_EQ(memcmp(mproc_array_ptr(a), seq, sizeof seq), 0);
    int64_t x;
    ASSERT_OK(mproc_array_get_i64(a, 3, &x));
    ASSERT_EQ(x, seq[3]);
    int part[4];
    ASSERT_OK(mproc_array_read(a, 2, 3, part));
    ASSERT_EQ(part[0], seq[2]);
    ASSERT_EQ(part[2], seq[4]);
    int all[10];
    ASSERT_OK(mproc_array_read(a, 0, 10, all));
    ASSERT_EQ(memcmp(all, seq, sizeof seq), 0);
    /* arr[2:5] = seq[2:5] after scribbling on it. */
    int zeros[3] = {0, 0, 0};
    ASSERT_OK(mproc_array_write(a, 2, 3, zeros));
    ASSERT_OK(mproc_array_get_i64(a, 4, &x));
    ASSERT_EQ(x, 0);
    ASSERT_OK(mproc_array_write(a, 2, 3, seq + 2));
    ASSERT_OK(mproc_array_read(a, 0, 10, all));
    ASSERT_EQ(memcmp(all, seq, sizeof seq), 0);
    ASSERT_OK(mproc_array_set_i64(a, 9, -7));
    ASSERT_EQ(((int *)mproc_array_ptr(a))[9], -7);
    double d;
    ASSERT_OK(mproc_array_get_double(a, 9, &d));
    ASSERT(d == -7.0);
    ASSERT_ERR(mproc_array_set_double(a, 9, 1.0), MPROC_EINVAL);
    ASSERT_OK(mproc_array_free(a));
  }
  return 0;
}

TEST_IMPL(shared_array_zeroed_and_types) {
  /* Python: Array('i', 10) is zeroed, and the lock rules as for Value. */
  size_t blocks0 = baseline_blocks();
  for (const char *tc = all_codes; *tc; tc++) {
    mproc_array *a;
    ASSERT_OK(mproc_array_new(&a, *tc, 10, NULL, NULL));
    int size = mproc_typecode_size(*tc);
    const unsigned char *p = mproc_array_ptr(a);
    ASSERT_EQ((uintptr_t)p % (uintptr_t)size, 0);
    for (int i = 0; i < 10 * size; i++) {
      ASSERT_EQ(p[i], 0);
    }
    for (size_t i = 0; i < 10; i++) {
      if (*tc == 'f' || *tc == 'd') {
        ASSERT_OK(mproc_array_set_double(a, i, (double)i / 4));
      } else {
        ASSERT_OK(mproc_array_set_i64(a, i, (int64_t)i * 3));
      }
    }
    for (size_t i = 0; i < 10; i++) {
      double d;
      ASSERT_OK(mproc_array_get_double(a, i, &d));
      ASSERT(d == ((*tc == 'f' || *tc == 'd') ? (double)i / 4
                                               : (double)(i * 3)));
    }
    ASSERT_OK(mproc_array_free(a));
  }

  /* An empty array, as Python's Array('i', 0). */
  mproc_array *e;
  ASSERT_OK(mproc_array_new(&e, 'd', 0, NULL, NULL));
  ASSERT_EQ(mproc_array_len(e), 0);
  int64_t x;
  ASSERT_ERR(mproc_array_get_i64(e, 0, &x), MPROC_ERANGE);
  ASSERT_OK(mproc_array_read(e, 0, 0, NULL));
  ASSERT_OK(mproc_array_write(e, 0, 0, NULL));
  ASSERT_ERR(mproc_array_read(e, 1, 0, NULL), MPROC_ERANGE);
  ASSERT_OK(mproc_array_free(e));

  /* A large one spans pages. */
  mproc_array *big;
  ASSERT_OK(mproc_raw_array_new(&big, 'q', 100000, NULL));
  ASSERT_OK(mproc_array_set_i64(big, 99999, 12345));
  ASSERT_EQ(((long long *)mproc_array_ptr(big))[99999], 12345);
  ASSERT_OK(mproc_array_free(big));
  ASSERT_EQ(arena_blocks(), blocks0);
  return 0;
}

TEST_IMPL(shared_array_lock_rules) {
  mproc_array *a;
  ASSERT_OK(mproc_array_new(&a, 'i', 4, NULL, NULL));
  mproc_lock *l = mproc_array_get_lock(a);
  ASSERT_NOT_NULL(l);
  ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
  ASSERT_EQ(mproc_lock_is_mine(l), 1);
  int v[4] = {1, 2, 3, 4};
  ASSERT_OK(mproc_array_write(a, 0, 4, v)); /* recursive: no deadlock */
  ASSERT_ERR(mproc_array_free(a), MPROC_EBUSY);
  ASSERT_OK(mproc_lock_release(l));
  ASSERT_OK(mproc_array_free(a));

  mproc_lock *mine;
  ASSERT_OK(mproc_lock_new(&mine));
  mproc_shared_opts o = {.lock = mine};
  ASSERT_OK(mproc_array_new(&a, 'd', 3, NULL, &o));
  ASSERT_PTR_EQ(mproc_array_get_lock(a), mine);
  ASSERT_OK(mproc_array_free(a));
  ASSERT_OK(mproc_lock_free(mine)); /* the array did not free it */

  mproc_shared_opts ro = {.raw = 1};
  ASSERT_OK(mproc_array_new(&a, 'd', 3, NULL, &ro));
  ASSERT_NULL(mproc_array_get_lock(a));
  ASSERT_OK(mproc_array_free(a));
  return 0;
}

TEST_IMPL(shared_array_ranges_and_misuse) {
  size_t blocks0 = baseline_blocks();
  mproc_array *a = (mproc_array *)1;
  ASSERT_ERR(mproc_array_new(NULL, 'i', 3, NULL, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_array_new(&a, '?', 3, NULL, NULL), MPROC_EINVAL);
  ASSERT_NULL(a);
  /* n * size overflows. */
  ASSERT_ERR(mproc_array_new(&a, 'd', SIZE_MAX / 8 + 1, NULL, NULL),
             MPROC_EOVERFLOW);
  ASSERT_ERR(mproc_array_new(&a, 'i', SIZE_MAX, NULL, NULL), MPROC_EOVERFLOW);
  ASSERT_ERR(mproc_raw_array_new(&a, 'q', SIZE_MAX / 4, NULL),
             MPROC_EOVERFLOW);
  /* Fits size_t but not the arena. */
  ASSERT_ERR(mproc_raw_array_new(&a, 'c', SIZE_MAX / 2, NULL), MPROC_ENOMEM);
  ASSERT_NULL(a);
  ASSERT_EQ(arena_blocks(), blocks0); /* no lock left behind either */

  ASSERT_OK(mproc_array_new(&a, 'h', 5, NULL, NULL));
  int64_t x;
  double d;
  short buf[8] = {0};
  ASSERT_ERR(mproc_array_get_i64(a, 5, &x), MPROC_ERANGE);
  ASSERT_ERR(mproc_array_set_i64(a, 5, 1), MPROC_ERANGE);
  ASSERT_ERR(mproc_array_get_double(a, SIZE_MAX, &d), MPROC_ERANGE);
  ASSERT_ERR(mproc_array_set_double(a, 6, 1), MPROC_ERANGE);
  ASSERT_OK(mproc_array_get_i64(a, 4, &x));
  ASSERT_ERR(mproc_array_get_i64(a, 0, NULL), MPROC_EINVAL);
  ASSERT_OK(mproc_array_read(a, 0, 5, buf));
  ASSERT_OK(mproc_array_read(a, 5, 0, buf));
  ASSERT_ERR(mproc_array_read(a, 0, 6, buf), MPROC_ERANGE);
  ASSERT_ERR(mproc_array_read(a, 3, 3, buf), MPROC_ERANGE);
  ASSERT_ERR(mproc_array_read(a, 6, 0, buf), MPROC_ERANGE);
  ASSERT_ERR(mproc_array_write(a, 4, 2, buf), MPROC_ERANGE);
  /* start + count wrapping around SIZE_MAX is still out of range. */
  ASSERT_ERR(mproc_array_read(a, 2, SIZE_MAX, buf), MPROC_ERANGE);
  ASSERT_ERR(mproc_array_write(a, SIZE_MAX, 2, buf), MPROC_ERANGE);
  ASSERT_ERR(mproc_array_read(a, 0, 1, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_array_write(a, 0, 1, NULL), MPROC_EINVAL);
  ASSERT_OK(mproc_array_free(a));

  /* NULL and freed arrays. */
  mproc_array *nul = NULL;
  ASSERT_EQ(mproc_array_len(nul), 0);
  ASSERT_EQ(mproc_array_typecode(nul), '\0');
  ASSERT_ERR(mproc_array_get_i64(nul, 0, &x), MPROC_EINVAL);
  ASSERT_ERR(mproc_array_read(nul, 0, 0, buf), MPROC_EINVAL);
  ASSERT_NULL(mproc_array_ptr(nul));
  ASSERT_NULL(mproc_array_get_lock(nul));
  ASSERT_OK(mproc_array_free(nul));
  ASSERT_ERR(mproc_array_get_i64(a, 0, &x), MPROC_EINVAL);
  ASSERT_ERR(mproc_array_set_i64(a, 0, 1), MPROC_EINVAL);
  ASSERT_ERR(mproc_array_get_double(a, 0, &d), MPROC_EINVAL);
  ASSERT_ERR(mproc_array_set_double(a, 0, 1), MPROC_EINVAL);
  ASSERT_ERR(mproc_array_read(a, 0, 1, buf), MPROC_EINVAL);
  ASSERT_ERR(mproc_array_write(a, 0, 1, buf), MPROC_EINVAL);
  ASSERT_EQ(mproc_array_len(a), 0);
  ASSERT_NULL(mproc_array_ptr(a));
  ASSERT_ERR(mproc_array_free(a), MPROC_EINVAL);
  ASSERT_EQ(arena_blocks(), blocks0);
  ASSERT_OK(mproc__arena_check());
  return 0;
}
