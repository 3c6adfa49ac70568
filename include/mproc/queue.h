/*
 * mproc/queue.h - Python's Queue, SimpleQueue and JoinableQueue: byte
 * messages between any processes of the program, in the shared arena.
 *
 * DESIGN
 * A queue is one arena block: a header and a ring of bytes.  The pointer a
 * constructor returns is valid, unchanged, in every process of the program
 * (create it before starting the children that use it, or pass the
 * pointer along as for sync objects).  A message is a record in the ring:
 * its length, then its bytes, padded to 8; a record may wrap around the
 * ring's end.  There is no feeder thread and no pickling: put copies the
 * bytes into the ring and returns, get copies them out.
 *
 * Producers take the queue's put lock, consumers its get lock (both are
 * mproc Locks embedded in the queue, so a holder that dies is recovered as
 * in mproc/sync.h); one producer and one consumer do not contend (a
 * consumer takes the put lock only for a moment, before it sleeps on an
 * empty queue).  A put reserves space past the write position, copies
 * the message, and only then publishes it by moving the write position
 * (release order).  A get copies the message out and only then moves the
 * read position.  So:
 *   - A producer killed in the middle of a put leaves no torn message and
 *     no held lock: nothing was published, the next producer gets the put
 *     lock with MPROC_EOWNERDEAD internally, rolls the reservation back,
 *     counts one lost message (mproc_queue_lost) and goes on.  (Killed
 *     after the publish, the message is delivered and not counted.)
 *   - A consumer killed in the middle of a get blocks nobody: the next
 *     consumer takes over the get lock, and the message the dead one was
 *     copying is still there and is delivered again (at-least-once: a
 *     consumer killed after copying, before moving the read position,
 *     means the message is delivered twice; killed after moving it, the
 *     message is gone with the consumer).
 *   - Waiting (a full ring or maxsize reached for put, an empty queue for
 *     get) is a futex wait on a sequence word, after a short backoff.  A
 *     producer waits holding no lock and a consumer holding the get lock,
 *     so a process killed while waiting blocks nobody: a dead waiting
 *     consumer's get lock is taken over as above (a process already
 *     waiting for it notices within about 50 ms, a later one at once).
 *
 * Python's pitfall "joining a process that still has items to flush"
 * (a child that put items and exits blocks until they are read) does not
 * exist here: a put is complete when it returns, so a child that puts and
 * exits can be joined at once.
 *
 * Differences from Python, on purpose:
 *   - Messages are bytes (a pointer and a length); a caller that wants
 *     objects serializes them.  Zero-length messages are legal.
 *   - Capacity is counted twice: maxsize messages (Python's, 0: no limit)
 *     and a byte capacity fixed at creation (opts.capacity; default
 *     MPROC_QUEUE_DEFAULT_CAPACITY).  A message that can never fit
 *     (record larger than the ring) is MPROC_EMSGSIZE at once, not a hang.
 *   - close() is queue-wide, not per process: after mproc_queue_close, a
 *     put in any process is MPROC_ECLOSED, and gets return the messages
 *     still queued and then MPROC_ECLOSED instead of blocking (so
 *     consumers can tell "no more messages ever" from "none yet").
 *     Waiters are woken.  Python's close only says "this process will put
 *     no more" and exists to stop the feeder thread, which mproc lacks.
 *   - Full and empty are MPROC_EFULL and MPROC_EEMPTY, whether the call
 *     polled (timeout 0, Python's block=False) or timed out.
 *
 * Thread safety: every function may be called from any thread of any
 * process at once.  Lifetime: exactly one process frees a queue, once no
 * process uses it any more.
 */
#ifndef MPROC_QUEUE_H
#define MPROC_QUEUE_H

#include "mproc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_queue mproc_queue;

/* Byte capacity of a queue's ring when opts.capacity is 0: 4 MiB. */
#define MPROC_QUEUE_DEFAULT_CAPACITY ((size_t)4 << 20)
/* Smallest and largest byte capacity accepted (rounded up to a power of
 * two between them). */
#define MPROC_QUEUE_MIN_CAPACITY ((size_t)4096)
#define MPROC_QUEUE_MAX_CAPACITY ((size_t)1 << 40)

typedef struct mproc_queue_opts {
  size_t capacity; /* bytes of ring; 0: MPROC_QUEUE_DEFAULT_CAPACITY.
                      Rounded up to a power of two.  A message needs its
                      length rounded up to 8, plus 8 bytes. */
} mproc_queue_opts;

/*
 * mproc_queue_new - a Queue holding at most maxsize messages (0 or
 * negative: no limit but the byte capacity, as Python's maxsize <= 0).
 * mproc_joinable_queue_new: the same, with task_done/join.
 *
 * CONSTRUCTOR: mproc_queue
 * Returns 0 and *out; MPROC_EINVAL (out NULL, capacity above the maximum);
 * MPROC_ENOMEM (the arena is full).
 */
MPROC_EXTERN int mproc_queue_new(mproc_queue **out, long maxsize,
                                 const mproc_queue_opts *opts);
MPROC_EXTERN int mproc_joinable_queue_new(mproc_queue **out, long maxsize,
                                          const mproc_queue_opts *opts);

/*
 * mproc_queue_put - append a copy of len bytes at buf (buf may be NULL
 * when len is 0).  Waits up to timeout for room (MPROC_FOREVER: no limit;
 * 0: Python's block=False).
 *
 * One deadline covers taking the put lock and waiting for room.  A poll
 * (timeout 0) never waits for room, but does wait for another producer's
 * copy to end (the put lock; 1 ms at most).
 *
 * Returns 0; MPROC_EFULL (no room within the timeout); MPROC_EMSGSIZE (the
 * message can never fit the ring; at once); MPROC_ECLOSED; MPROC_EINVAL
 * (not a queue, buf NULL with len > 0, timeout NaN); MPROC_ECORRUPT (the
 * queue's header fails its checks); MPROC_EAGAIN (the process could not
 * register for the queue's locks, see mproc/sync.h).
 */
MPROC_EXTERN int mproc_queue_put(mproc_queue *q, const void *buf, size_t len,
                                 double timeout);

/*
 * mproc_queue_get - remove the oldest message into a new buffer: *out
 * (malloc'd, free it with free(); a zero-length message gives a non-NULL
 * 1-byte buffer) and *len.  Waits up to timeout for one.
 *
 * A poll (timeout 0) also fails while another consumer holds the get
 * lock, for instance one waiting on an empty queue (as Python's
 * get(block=False)).
 *
 * Returns 0; MPROC_EEMPTY (none within the timeout); MPROC_ECLOSED (closed
 * and empty: no message can follow); MPROC_ENOMEM (the message stays
 * queued); MPROC_EINVAL; MPROC_ECORRUPT; MPROC_EAGAIN.  On failure *out
 * is NULL and *len 0.
 */
MPROC_EXTERN int mproc_queue_get(mproc_queue *q, void **out, size_t *len,
                                 double timeout);

/*
 * mproc_queue_get_into - the same into the caller's buffer of cap bytes.
 * If the oldest message is longer than cap, it stays queued, *len is its
 * length and the result is MPROC_ENOBUFS (Python's BufferTooShort, without
 * consuming the message).
 */
MPROC_EXTERN int mproc_queue_get_into(mproc_queue *q, void *buf, size_t cap,
                                      size_t *len, double timeout);

/* Messages queued now (Python's qsize: approximate while others put or
 * get), or MPROC_EINVAL. */
MPROC_EXTERN long mproc_queue_qsize(const mproc_queue *q);
/* 1 or 0, or MPROC_EINVAL.  full: maxsize messages queued (a byte-full
 * ring with fewer messages is not "full": a smaller message may fit). */
MPROC_EXTERN int mproc_queue_empty(const mproc_queue *q);
MPROC_EXTERN int mproc_queue_full(const mproc_queue *q);
/* The queue's maxsize as given (<= 0: none), or MPROC_EINVAL; its byte
 * capacity, or 0 if q is not a queue. */
MPROC_EXTERN long mproc_queue_maxsize(const mproc_queue *q);
MPROC_EXTERN size_t mproc_queue_capacity(const mproc_queue *q);

/*
 * mproc_queue_close - no more puts, by any process (see the top).  Idempotent.
 * mproc_queue_is_closed - 1 or 0, or MPROC_EINVAL.
 */
MPROC_EXTERN int mproc_queue_close(mproc_queue *q);
MPROC_EXTERN int mproc_queue_is_closed(const mproc_queue *q);

/* Messages lost because their producer died in the middle of a put
 * (each was rolled back, never seen by a consumer), or MPROC_EINVAL. */
MPROC_EXTERN int64_t mproc_queue_lost(const mproc_queue *q);

/*
 * JoinableQueue.  Every successful put adds one unfinished task;
 * mproc_queue_task_done removes one (MPROC_ETASKDONE when none is left,
 * Python's "task_done() called too many times"); mproc_queue_join waits
 * until none is left (0, or MPROC_ETIMEDOUT).  On a plain Queue both are
 * MPROC_EINVAL.  A consumer that dies between its get and its task_done
 * leaves the count up for good, as in Python.
 */
MPROC_EXTERN int mproc_queue_task_done(mproc_queue *q);
MPROC_EXTERN int mproc_queue_join(mproc_queue *q, double timeout);

/* Free the queue (once; no process may use it afterwards).  NULL: no-op.
 * Returns 0; MPROC_EINVAL if q is not a queue; MPROC_EBUSY while a live
 * process (this one included) holds one of its locks (a put or get in
 * progress, or a consumer waiting on an empty queue); MPROC_ECORRUPT (the
 * arena found the queue's block damaged).  A lock whose holder died does
 * not keep the queue busy: its liveness is checked at once (a process
 * SIGKILLed and reaped just before is seen dead), and the free takes no
 * lock, registers nothing and allocates nothing, so it works with the
 * arena full.  mproc_queue_close never allocates either. */
MPROC_EXTERN int mproc_queue_free(mproc_queue *q);

/*
 * SimpleQueue: Python's SimpleQueue (no maxsize, no timeouts, put blocks
 * only while the ring is full).  The same object as a Queue; these are
 * the Queue calls with timeout MPROC_FOREVER and maxsize 0.
 */
typedef mproc_queue mproc_simple_queue;
MPROC_EXTERN int mproc_simple_queue_new(mproc_simple_queue **out,
                                        const mproc_queue_opts *opts);
MPROC_EXTERN int mproc_simple_queue_put(mproc_simple_queue *q, const void *buf,
                                        size_t len);
MPROC_EXTERN int mproc_simple_queue_get(mproc_simple_queue *q, void **out,
                                        size_t *len);
MPROC_EXTERN int mproc_simple_queue_empty(const mproc_simple_queue *q);
MPROC_EXTERN int mproc_simple_queue_close(mproc_simple_queue *q);
MPROC_EXTERN int mproc_simple_queue_free(mproc_simple_queue *q);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_QUEUE_H */
