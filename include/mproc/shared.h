/*
 * mproc/shared.h - Python's Value, Array, RawValue and RawArray: typed
 * values and arrays in the shared arena, with an optional lock.
 *
 * DESIGN
 * A value or array lives in the arena (mproc/arena.h): the pointer is
 * valid in every process of the program, so create it before starting the
 * children that use it, or pass the pointer in a task's argument.  The
 * element type is one of Python's array/ctypes typecodes:
 *
 *   'c' char (1 byte)     'b' signed char     'B' unsigned char
 *   'h' short             'H' unsigned short  'i' int      'I' unsigned int
 *   'l' long              'L' unsigned long   'q' long long
 *   'Q' unsigned long long                    'f' float    'd' double
 *
 * with the sizes of this platform's C types (as ctypes has them).  Storage
 * starts zeroed unless an initial value is given, and is aligned to 16
 * bytes (so to every element size): mproc_value_ptr / mproc_array_ptr may
 * be cast to a pointer to the element type, or to any C struct stored in
 * a 'B' array (Python's Structure).  Python's 'u' (wchar_t) is not
 * supported.
 *
 * Locking, as Python's: by default a Value or Array gets a new RLock, and
 * every get and set takes it for the duration of that one access (so, as
 * in Python, `v = v + 1` through get then set is NOT atomic: hold the lock
 * around both with mproc_value_get_lock).  opts.lock gives an existing
 * Lock or RLock to use instead; opts.raw (or the Raw constructors) gives
 * no lock at all.  Integer values also have atomic add and
 * compare-exchange that need no lock.
 *
 * With a plain Lock given in opts.lock, do not call get/set while holding
 * that lock: they take it again and wait forever (a Lock is not
 * recursive), exactly as `with v.get_lock(): v.value += 1` deadlocks in
 * Python with lock=Lock().  Use the default RLock for that pattern, or
 * mproc_value_ptr under the held Lock.
 *
 * A lock holder that died: when get/set/read/write find the lock's last
 * holder dead (MPROC_EOWNERDEAD from the acquire), they mark the lock
 * consistent and do the access: an element has no state to repair, every
 * bit pattern is a value of its type.  A program that keeps an invariant
 * across several accesses takes the lock itself and sees
 * MPROC_EOWNERDEAD from its own mproc_lock_acquire.  Any other acquire
 * error (MPROC_ENOTRECOVERABLE) is returned by the access.
 *
 * Without a lock (Raw objects, and the atomics), one element is read and
 * written with single atomic loads and stores of its size, so concurrent
 * access never sees a torn element; slices are plain copies.
 *
 * Validation: every object carries a magic word; a NULL, freed or foreign
 * pointer (a value given where an array is expected too) is MPROC_EINVAL,
 * never a crash.  Functions that return a pointer, a length or a typecode
 * return NULL, 0 or '\0' for such an object.
 *
 * Lifetime: as the sync objects (one process frees, when nobody uses it);
 * freeing also frees the RLock the object made for itself, never a lock
 * given in opts.lock.
 */
#ifndef MPROC_SHARED_H
#define MPROC_SHARED_H

#include "mproc/common.h"
#include "mproc/sync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_value mproc_value;
typedef struct mproc_array mproc_array;

typedef struct mproc_shared_opts {
  int raw;          /* nonzero: no lock (RawValue / RawArray) */
  mproc_lock *lock; /* use this Lock or RLock (must outlive the object;
                       a pointer that is not a live lock is
                       MPROC_EINVAL, Python's AttributeError);
                       NULL: a new RLock, unless raw */
} mproc_shared_opts;

/*
 * mproc_typecode_size - bytes of one element of a typecode, or
 * MPROC_EINVAL for a typecode not in the table above.
 */
MPROC_EXTERN int mproc_typecode_size(char typecode);

/* ==================== Value ==================== */

/*
 * mproc_value_new - a Value of typecode; init points to one element of
 * that type (NULL: zero).  mproc_raw_value_new: the same without a lock.
 *
 * CONSTRUCTOR: mproc_value
 * Returns 0 and *out; MPROC_EINVAL (bad typecode, out NULL, raw with a
 * lock, opts.lock not a lock); MPROC_ENOMEM.  On failure *out is NULL
 * (when out is not) and nothing needs freeing.
 */
MPROC_EXTERN int mproc_value_new(mproc_value **out, char typecode,
                                 const void *init,
                                 const mproc_shared_opts *opts);
MPROC_EXTERN int mproc_raw_value_new(mproc_value **out, char typecode,
                                     const void *init);

/* Copy the element out / in as bytes (size must equal the typecode's
 * size; out/in need no alignment), holding the lock if there is one for
 * this one access.  Returns 0, MPROC_EINVAL (also for a wrong size or a
 * NULL buffer), or an error of the lock's acquire. */
MPROC_EXTERN int mproc_value_get(mproc_value *v, void *out, size_t size);
MPROC_EXTERN int mproc_value_set(mproc_value *v, const void *in, size_t size);

/*
 * Typed access, converting as C does: any integer typecode through
 * int64_t (unsigned 'Q'/'L' values above INT64_MAX wrap; a set truncates
 * to the element's width, so 300 into 'b' stores 44), 'f'/'d' through
 * double, 'c' through int64_t of its byte (0..255).
 *
 *   get_i64:    integer typecodes and 'c'; MPROC_EINVAL for 'f'/'d' (it
 *               would truncate; Python gives a float).
 *   set_i64:    every typecode ('f'/'d' store the converted integer, as
 *               Python's Value('d').value = 3).
 *   get_double: every typecode (an integer converted to double).
 *   set_double: 'f'/'d' only; MPROC_EINVAL for an integer typecode
 *               (Python's TypeError).  Out of float's range gives inf.
 *
 * Each takes the lock (if any) for that access only.  Returns 0,
 * MPROC_EINVAL, or an error of the lock's acquire.
 */
MPROC_EXTERN int mproc_value_get_i64(mproc_value *v, int64_t *out);
MPROC_EXTERN int mproc_value_set_i64(mproc_value *v, int64_t x);
MPROC_EXTERN int mproc_value_get_double(mproc_value *v, double *out);
MPROC_EXTERN int mproc_value_set_double(mproc_value *v, double x);

/*
 * Atomic operations on integer values ('b' 'B' 'h' 'H' 'i' 'I' 'l' 'L' 'q'
 * 'Q', and 'c'), without the lock: add delta and return the old value in
 * *old (may be NULL); compare-exchange (*expected updated to the current
 * value on failure).  Values are seen as the typed getters see them
 * (sign- or zero-extended, 'c' as 0..255) and stored truncated as
 * set_i64 does; the add wraps at the element's width.  An *expected that
 * no element of the type can hold (300 for 'b') never compares equal.
 * The operations are sequentially consistent and ignore the lock, so
 * mixing them with get/set under the lock is safe, but a locked
 * get-then-set can still overwrite an add made between its two steps.
 * Returns 0; MPROC_EAGAIN when the compare failed; MPROC_EINVAL (float
 * typecodes, NULL).
 */
MPROC_EXTERN int mproc_value_add(mproc_value *v, int64_t delta, int64_t *old);
MPROC_EXTERN int mproc_value_cas(mproc_value *v, int64_t *expected,
                                 int64_t desired);

/* The element's storage (Python's get_obj()), valid in every process
 * (NULL for a bad object).  Access through it takes no lock. */
MPROC_EXTERN void *mproc_value_ptr(mproc_value *v);
/* The lock (Python's get_lock()), or NULL for a raw value. */
MPROC_EXTERN mproc_lock *mproc_value_get_lock(mproc_value *v);
MPROC_EXTERN char mproc_value_typecode(const mproc_value *v);

/* DESTRUCTOR: mproc_value.  Returns 0 (also for NULL); MPROC_EBUSY while
 * the RLock the value made for itself is held (nothing is freed);
 * MPROC_EINVAL (freed already, not a value). */
MPROC_EXTERN int mproc_value_free(mproc_value *v);

/* ==================== Array ==================== */

/*
 * mproc_array_new - an Array of n elements of typecode; init points to n
 * elements (NULL: zeros).  n may be 0.  mproc_raw_array_new: the same
 * without a lock.  An Array('c', n) is a byte string: Python's .value is
 * the bytes up to the first NUL (read them with mproc_array_read), .raw
 * all n.
 *
 * CONSTRUCTOR: mproc_array
 * Returns 0 and *out; MPROC_EINVAL (as for values); MPROC_EOVERFLOW (n *
 * size overflows size_t); MPROC_ENOMEM (too big for the arena).
 */
MPROC_EXTERN int mproc_array_new(mproc_array **out, char typecode, size_t n,
                                 const void *init,
                                 const mproc_shared_opts *opts);
MPROC_EXTERN int mproc_raw_array_new(mproc_array **out, char typecode,
                                     size_t n, const void *init);

/* len(a) (0 for a bad object) and the typecode ('\0' for a bad object). */
MPROC_EXTERN size_t mproc_array_len(const mproc_array *a);
MPROC_EXTERN char mproc_array_typecode(const mproc_array *a);

/* One element, typed as for values, under the lock for that access.
 * MPROC_ERANGE for index >= len. */
MPROC_EXTERN int mproc_array_get_i64(mproc_array *a, size_t index,
                                     int64_t *out);
MPROC_EXTERN int mproc_array_set_i64(mproc_array *a, size_t index, int64_t x);
MPROC_EXTERN int mproc_array_get_double(mproc_array *a, size_t index,
                                        double *out);
MPROC_EXTERN int mproc_array_set_double(mproc_array *a, size_t index,
                                        double x);

/*
 * Slices: copy count elements starting at start out to / in from a buffer
 * of count elements of the array's type, under the lock (Python's a[i:j]
 * and a[i:j] = seq, which must have the same length).  count 0 copies
 * nothing (the buffer may then be NULL).  Returns 0; MPROC_ERANGE when
 * start + count > len (overflow included); MPROC_EINVAL (bad object, NULL
 * buffer with count > 0); an error of the lock's acquire.
 */
MPROC_EXTERN int mproc_array_read(mproc_array *a, size_t start, size_t count,
                                  void *out);
MPROC_EXTERN int mproc_array_write(mproc_array *a, size_t start,
                                   size_t count, const void *in);

/* The elements' storage, valid in every process (NULL for a bad object).
 * Access through it takes no lock. */
MPROC_EXTERN void *mproc_array_ptr(mproc_array *a);
/* The lock (Python's get_lock()), or NULL for a raw array. */
MPROC_EXTERN mproc_lock *mproc_array_get_lock(mproc_array *a);

/* DESTRUCTOR: mproc_array.  Returns as mproc_value_free. */
MPROC_EXTERN int mproc_array_free(mproc_array *a);

#ifdef __cplusplus
}
#endif
#endif /* MPROC_SHARED_H */
