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
 * starts zeroed unless an initial value is given.
 *
 * Locking, as Python's: by default a Value or Array gets a new RLock, and
 * every get and set takes it for the duration of that one access (so, as
 * in Python, `v = v + 1` through get then set is NOT atomic: hold the lock
 * around both with mproc_value_get_lock).  opts.lock gives an existing
 * Lock or RLock to use instead; opts.raw (or the Raw constructors) gives
 * no lock at all.  Integer values also have atomic add and
 * compare-exchange that need no lock.
 *
 * Lifetime: as the sync objects (one process frees, when nobody uses it);
 * freeing also frees the RLock the object made for itself.
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
  mproc_lock *lock; /* use this Lock or RLock (must outlive the object);
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
 * lock); MPROC_ENOMEM.
 */
MPROC_EXTERN int mproc_value_new(mproc_value **out, char typecode,
                                 const void *init,
                                 const mproc_shared_opts *opts);
MPROC_EXTERN int mproc_raw_value_new(mproc_value **out, char typecode,
                                     const void *init);

/* Copy the element out / in (size must equal the typecode's size),
 * holding the lock if there is one.  Returns 0, MPROC_EINVAL. */
MPROC_EXTERN int mproc_value_get(mproc_value *v, void *out, size_t size);
MPROC_EXTERN int mproc_value_set(mproc_value *v, const void *in, size_t size);

/* Typed access, converting as C does: any integer typecode through
 * int64_t (unsigned 'Q'/'L' values above INT64_MAX wrap), 'f'/'d' through
 * double, 'c' through int64_t of its byte.  Returns 0, MPROC_EINVAL. */
MPROC_EXTERN int mproc_value_get_i64(mproc_value *v, int64_t *out);
MPROC_EXTERN int mproc_value_set_i64(mproc_value *v, int64_t x);
MPROC_EXTERN int mproc_value_get_double(mproc_value *v, double *out);
MPROC_EXTERN int mproc_value_set_double(mproc_value *v, double x);

/*
 * Atomic operations on integer values ('b' 'B' 'h' 'H' 'i' 'I' 'l' 'L' 'q'
 * 'Q', and 'c'), without the lock: add delta and return the old value in
 * *old (may be NULL); compare-exchange (*expected updated to the current
 * value on failure).  Returns 0; MPROC_EAGAIN when the compare failed;
 * MPROC_EINVAL (float typecodes, NULL).
 */
MPROC_EXTERN int mproc_value_add(mproc_value *v, int64_t delta, int64_t *old);
MPROC_EXTERN int mproc_value_cas(mproc_value *v, int64_t *expected,
                                 int64_t desired);

/* The element's storage (Python's get_obj()), valid in every process. */
MPROC_EXTERN void *mproc_value_ptr(mproc_value *v);
/* The lock (Python's get_lock()), or NULL for a raw value. */
MPROC_EXTERN mproc_lock *mproc_value_get_lock(mproc_value *v);
MPROC_EXTERN char mproc_value_typecode(const mproc_value *v);

/* DESTRUCTOR: mproc_value. */
MPROC_EXTERN int mproc_value_free(mproc_value *v);

/* ==================== Array ==================== */

/*
 * mproc_array_new - an Array of n elements of typecode; init points to n
 * elements (NULL: zeros).  mproc_raw_array_new: the same without a lock.
 *
 * CONSTRUCTOR: mproc_array
 * Returns 0 and *out; MPROC_EINVAL; MPROC_EOVERFLOW (n * size overflows);
 * MPROC_ENOMEM.
 */
MPROC_EXTERN int mproc_array_new(mproc_array **out, char typecode, size_t n,
                                 const void *init,
                                 const mproc_shared_opts *opts);
MPROC_EXTERN int mproc_raw_array_new(mproc_array **out, char typecode,
                                     size_t n, const void *init);

MPROC_EXTERN size_t mproc_array_len(const mproc_array *a);
MPROC_EXTERN char mproc_array_typecode(const mproc_array *a);

/* One element, typed as for values.  MPROC_ERANGE for index >= len. */
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
 * and a[i:j] = seq, which must have the same length).  Returns 0;
 * MPROC_ERANGE when start + count > len; MPROC_EINVAL.
 */
MPROC_EXTERN int mproc_array_read(mproc_array *a, size_t start, size_t count,
                                  void *out);
MPROC_EXTERN int mproc_array_write(mproc_array *a, size_t start,
                                   size_t count, const void *in);

/* The elements' storage, valid in every process. */
MPROC_EXTERN void *mproc_array_ptr(mproc_array *a);
MPROC_EXTERN mproc_lock *mproc_array_get_lock(mproc_array *a);

/* DESTRUCTOR: mproc_array. */
MPROC_EXTERN int mproc_array_free(mproc_array *a);

#ifdef __cplusplus
}
#endif
#endif /* MPROC_SHARED_H */
