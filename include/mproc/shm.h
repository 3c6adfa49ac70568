/*
 * mproc/shm.h - Python's multiprocessing.shared_memory.SharedMemory: named
 * POSIX shared memory that a Python process can attach to by name, and the
 * other way round.
 *
 * DESIGN
 * A segment is a file in /dev/shm opened with shm_open(2) under the name
 * "/" + name; names are Python's: NAME without the leading slash, at most
 * MPROC_SHM_NAME_MAX bytes, and a random name is "psm_" followed by 8
 * lowercase hex digits, as Python's token_hex(4).  So
 * multiprocessing.shared_memory.SharedMemory(name) in Python attaches to a
 * segment mproc created, and mproc_shared_memory_attach() to one Python
 * created, and both see the same bytes.  A segment holds only bytes: put
 * offsets in it, never pointers (each process maps it at its own address;
 * the arena is the place for pointers).
 *
 * Safety beyond Python: a segment is created O_EXCL with mode 0600 (fchmod
 * after creation, so the umask does not matter) and its space is reserved
 * with posix_fallocate, so a full /dev/shm is MPROC_ENOSPC at create, not
 * SIGBUS at the first write; attach checks that the file is a regular file
 * owned by this user with no group or other access, and not empty.
 *
 * Cleanup: close unmaps; unlink removes the name (the memory lives on while
 * mapped).  mproc unlinks nothing behind the program's back (no resource
 * tracker process); a segment created by a process that dies without
 * unlinking stays in /dev/shm, as with shm_open, unless the creator asked
 * for MPROC_SHM_UNLINK_ON_EXIT, which unlinks it when the creating process
 * exits normally or its object is closed.
 */
#ifndef MPROC_SHM_H
#define MPROC_SHM_H

#include "mproc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest name (without the leading slash): Linux allows 255 bytes for a
 * file name in /dev/shm. */
#define MPROC_SHM_NAME_MAX 254

typedef struct mproc_shared_memory mproc_shared_memory;

/* Flags for mproc_shared_memory_create. */
#define MPROC_SHM_UNLINK_ON_EXIT 0x1

/*
 * mproc_shared_memory_create - create a segment of size bytes (> 0) named
 * name (NULL: a new random "psm_xxxxxxxx" name, retried on collision), map
 * it read-write, zero-filled.
 *
 * CONSTRUCTOR: mproc_shared_memory
 * Returns 0 and *out; MPROC_EINVAL (size 0, bad name: empty, a '/' inside,
 * a NUL, too long); MPROC_EEXIST (the name exists); MPROC_ENOSPC (no room
 * in /dev/shm); MPROC_EMFILE; MPROC_ENOMEM.  On failure nothing is left in
 * /dev/shm.
 */
MPROC_EXTERN int mproc_shared_memory_create(mproc_shared_memory **out,
                                            const char *name, size_t size,
                                            int flags);

/*
 * mproc_shared_memory_attach - map an existing segment by name, at its
 * full size (fstat), read-write.
 *
 * CONSTRUCTOR: mproc_shared_memory
 * Returns 0 and *out; MPROC_ENOENT (no such segment); MPROC_EPERM (not a
 * regular file, another owner, group/other access); MPROC_EINVAL (bad
 * name, empty segment); MPROC_ENOMEM.
 */
MPROC_EXTERN int mproc_shared_memory_attach(mproc_shared_memory **out,
                                            const char *name);

/* The name without the leading slash; valid until close. */
MPROC_EXTERN const char *mproc_shared_memory_name(
    const mproc_shared_memory *m);
/* The mapped size in bytes (the segment's size). */
MPROC_EXTERN size_t mproc_shared_memory_size(const mproc_shared_memory *m);
/* The mapping (Python's buf). */
MPROC_EXTERN void *mproc_shared_memory_buf(const mproc_shared_memory *m);

/*
 * mproc_shared_memory_unlink - remove the segment's name from /dev/shm
 * (Python's unlink()).  The mapping stays valid.  Returns 0; MPROC_ENOENT
 * if it was already unlinked (Python: FileNotFoundError); MPROC_EINVAL.
 */
MPROC_EXTERN int mproc_shared_memory_unlink(mproc_shared_memory *m);

/* Unlink a segment by name without attaching.  Returns 0, MPROC_ENOENT,
 * MPROC_EINVAL. */
MPROC_EXTERN int mproc_shared_memory_unlink_name(const char *name);

/*
 * mproc_shared_memory_close - unmap and free the object (Python's close()
 * then dropping the object).  Does not unlink, unless the segment was
 * created with MPROC_SHM_UNLINK_ON_EXIT by this process.
 *
 * DESTRUCTOR: mproc_shared_memory.  close(NULL) is a no-op.
 */
MPROC_EXTERN int mproc_shared_memory_close(mproc_shared_memory *m);

#ifdef __cplusplus
}
#endif
#endif /* MPROC_SHM_H */
