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
 * Sizes are Python's: exactly the bytes asked for at create (no rounding
 * to pages), and the file's size (fstat) at attach.
 *
 * Safety beyond Python: a segment is created O_EXCL with mode 0600 (fchmod
 * after creation, so the umask does not matter) and its space is reserved
 * with posix_fallocate, so a full /dev/shm is MPROC_ENOSPC at create, not
 * SIGBUS at the first write; attach opens with O_NOFOLLOW and checks that
 * the file is a regular file owned by this process's effective uid (root
 * included) with no group or other access, and not empty.  A segment made
 * by Python's SharedMemory (mode 0600, same user) passes these checks.
 *
 * Cleanup: close unmaps; unlink removes the name (the memory lives on while
 * mapped).  mproc unlinks nothing behind the program's back (no resource
 * tracker process); a segment created by a process that dies without
 * unlinking stays in /dev/shm, as with shm_open, unless the creator asked
 * for MPROC_SHM_UNLINK_ON_EXIT, which unlinks it when the creating process
 * exits normally (exit(3) or a return from main: an atexit handler) or its
 * object is closed.  A process killed by a signal, or one that leaves with
 * _exit(2), runs no exit handler: its segments stay (unlink them by name).
 * A child started by mproc_process_start also unlinks them when its target
 * returns (mproc runs this cleanup before the child's _exit(2)).
 * The flag binds the creating pid: a forked child that inherits the object
 * unlinks nothing when it exits or closes its copy.  An unlink made on an
 * object's behalf (unlink, close or exit) removes the name only while it
 * still names that object's segment (same device and inode), never a
 * segment created later under the same name.
 *
 * Threads: the functions may be called from several threads at once on
 * different objects; one object must not be closed while another thread
 * uses it.  The objects are the process's own (malloc'd): a forked child
 * may use its inherited copy (the mapping is inherited too) and close it.
 */
#ifndef MPROC_SHM_H
#define MPROC_SHM_H

#include "mproc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest name in bytes (without the leading slash): NAME_MAX, the longest
 * file name in /dev/shm, which is also what Python's SharedMemory takes on
 * Linux (glibc 2.34 and later; older glibc stops at 253). */
#define MPROC_SHM_NAME_MAX 255

typedef struct mproc_shared_memory mproc_shared_memory;

/* Flags for mproc_shared_memory_create. */
#define MPROC_SHM_UNLINK_ON_EXIT 0x1

/*
 * mproc_shared_memory_create - create a segment of size bytes (> 0) named
 * name (NULL: a new random "psm_xxxxxxxx" name, retried on collision), map
 * it read-write, zero-filled.
 *
 * CONSTRUCTOR: mproc_shared_memory
 * flags: 0 or MPROC_SHM_UNLINK_ON_EXIT (see DESIGN above).
 *
 * A name is 1 to MPROC_SHM_NAME_MAX bytes with no '/', no control
 * character (0x01-0x1f, 0x7f: a newline would break Python's resource
 * tracker protocol) and is not "." or "..".  A name Python will use
 * should also avoid ':' and non-ASCII bytes: Python's resource tracker
 * cannot record them (mproc accepts them).
 *
 * Returns 0 and *out; MPROC_EINVAL (NULL out, size 0 or above INT64_MAX,
 * unknown flags, bad name); MPROC_EEXIST (the name exists; for a random
 * name, after 1000 collisions); MPROC_ENOSPC (no room in /dev/shm);
 * MPROC_EMFILE; MPROC_ENOMEM.  On failure *out is NULL and nothing is left
 * in /dev/shm.
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
 * regular file, a symbolic link, another owner, group/other access, no
 * permission to open); MPROC_EINVAL (NULL out, bad name, empty segment);
 * MPROC_EMFILE; MPROC_ENOMEM.  On failure *out is NULL.
 */
MPROC_EXTERN int mproc_shared_memory_attach(mproc_shared_memory **out,
                                            const char *name);

/* The name without the leading slash; valid until close.  The accessors
 * return NULL / 0 for a NULL object. */
MPROC_EXTERN const char *mproc_shared_memory_name(
    const mproc_shared_memory *m);
/* The mapped size in bytes (the segment's size). */
MPROC_EXTERN size_t mproc_shared_memory_size(const mproc_shared_memory *m);
/* The mapping (Python's buf). */
MPROC_EXTERN void *mproc_shared_memory_buf(const mproc_shared_memory *m);

/*
 * mproc_shared_memory_unlink - remove the segment's name from /dev/shm
 * (Python's unlink()).  The mapping stays valid, here and in every process
 * that has it mapped.  Any process may unlink, attacher or creator.
 * Returns 0; MPROC_ENOENT if it was already unlinked, by anyone, or the
 * name now names another segment (Python: FileNotFoundError); MPROC_EINVAL
 * for NULL.
 */
MPROC_EXTERN int mproc_shared_memory_unlink(mproc_shared_memory *m);

/* Unlink a segment by name without attaching (no owner check: what
 * shm_unlink allows).  Returns 0, MPROC_ENOENT, MPROC_EINVAL (bad name),
 * MPROC_EACCES/MPROC_EPERM when not allowed. */
MPROC_EXTERN int mproc_shared_memory_unlink_name(const char *name);

/*
 * mproc_shared_memory_close - unmap and free the object (Python's close()
 * then dropping the object).  Does not unlink, unless the segment was
 * created with MPROC_SHM_UNLINK_ON_EXIT by this process.  The buffer is
 * invalid afterwards.
 *
 * DESTRUCTOR: mproc_shared_memory.  close(NULL) is a no-op.  Returns 0.
 */
MPROC_EXTERN int mproc_shared_memory_close(mproc_shared_memory *m);

#ifdef __cplusplus
}
#endif
#endif /* MPROC_SHM_H */
