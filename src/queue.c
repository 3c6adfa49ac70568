/*
 * queue.c - Queue, JoinableQueue and SimpleQueue: byte messages in a ring
 * in the shared arena (mproc/queue.h).
 *
 * DESIGN
 *
 * Layout.  A queue is one arena block: the header below (64-byte aligned
 * by hand, since the arena gives 16) and then a ring of cap bytes, cap a
 * power of two.  Positions are 64-bit byte counts that only grow: head
 * (where the next record goes) and tail (where the oldest record starts);
 * a position's place in the ring is pos & (cap - 1).  A record is an
 * 8-byte word (the length in the low 40 bits, a 24-bit check of the
 * length and the position above) followed by the payload, padded to 8.
 * Positions are multiples of 8 and cap is a multiple of 8, so the word
 * never straddles the ring's end; the payload may, and is copied in two
 * parts.  The header keeps in separate cache lines what only producers
 * touch (their lock, their cached copy of tail), what producers publish
 * (head, puts), the same two for consumers, and the sleep words: on the
 * fast path a producer and a consumer share only head's line, tail's
 * line when the cached copy runs out, and the ring.
 *
 * Locks.  Producers serialize on the put lock, consumers on the get lock,
 * both mproc Locks embedded in the header (src/sync/lock.c): one CAS to
 * take, one exchange to release, and owner-death recovery.  Every field
 * said to be "under" a lock is written only by its holder, so plain
 * (relaxed) stores do, and the lock's acquire and release order them.
 * The only nesting is get lock, then put lock (a consumer about to sleep
 * or to report MPROC_ECLOSED); a producer never takes the get lock while
 * it holds the put lock.
 *
 * Put, under the put lock: check the closed flag and room (maxsize
 * messages, and head + record - tail <= cap, first against the cached
 * tail so that the consumers' line is read only when the cache says no),
 * write a marker (where the record will end, the counters before it),
 * copy the record in, then publish it with a release store of head.
 * Then the marker is cleared and the lock released.  Both locks are
 * "asym" Locks (internal.h): taking one is one CAS and releasing it a
 * plain store and a load, both inline, so that CAS is the put's only
 * locked instruction (a locked instruction waits for every store before
 * it to reach the cache, including the store of head to a line the
 * consumer reads; a second one per put cost about a fifth of the rate of
 * 8-byte messages).  Get, under the get lock: find a record past tail
 * (against a cached copy of head first), check its word, copy the
 * payload out, write a marker, move tail (a release store).  The message
 * counters puts and gets (qsize, maxsize) are
 * plain stores under each lock.  JoinableQueue's added (raised before
 * the publish, so a consumer's task_done never finds it behind) and done
 * (task_done's CAS) give the unfinished count.
 *
 * Close sets a flag.  A producer checks it under the put lock, so a
 * consumer that finds the queue empty with the flag set takes the put
 * lock and looks at head once more before it reports MPROC_ECLOSED: any
 * put that passed the check has published by then, and any later put
 * sees the flag.  So MPROC_ECLOSED means no message can ever follow.
 *
 * Death.  A producer killed at any point of a put leaves head where it
 * was or at the record's end; nothing half-written is ever published.
 * The next process to take the put lock gets MPROC_EOWNERDEAD and reads
 * the marker: if head equals the marker's end the record was published
 * (the counters are set as the put would have set them), else it was not
 * (one lost message is counted and added is put back); then it marks the
 * lock consistent and goes on.  A consumer killed in a get has not moved
 * tail (the message is delivered again: at-least-once) or has moved it
 * (the message went with it); the marker lets the next consumer set gets
 * exactly.  mproc_queue_join also polls the put lock once it has waited a
 * slice, so that a producer that died mid-put does not keep a
 * JoinableQueue's count up until the next put.
 *
 * Waiting.  Each side sleeps on a sequence word (futex) after raising a
 * flag that says so, and the other side makes a system call only when it
 * finds the flag raised, and only once per sleep: the waker takes the
 * flag down before it bumps the word and wakes.
 *   - A consumer out of messages keeps the get lock (other consumers wait
 *     for that lock), reads put_seq, takes the put lock (the one nesting:
 *     get lock, then put lock), looks at head once more, raises
 *     get_waiting, releases the put lock and sleeps.  A producer reads the
 *     flag under the put lock after its publish.  The lock orders the
 *     two: either the publish came first (the consumer sees it) or the
 *     flag did (the producer wakes it, and the bump makes a sleep that
 *     had not begun yet return at once).  So a put needs no fence: its
 *     only atomic instructions are the lock's.
 *   - A producer out of room reads get_seq, raises put_waiting (seq_cst),
 *     calls mproc__membarrier(), looks at tail again (seq_cst), and if
 *     there is still no room releases the put lock and sleeps (so several
 *     producers may sleep, and a wake wakes them all); it takes the lock
 *     again to look.  A consumer moves tail, releases the get lock and
 *     then reads the flag with no fence in between: the producer's
 *     membarrier makes every running consumer pass a full barrier, so one
 *     of the two sees the other's store (membarrier(2)'s asymmetric use;
 *     where membarrier is refused, the producer sleeps in 1 ms slices, so
 *     a missed wake costs that much).  Releasing the put lock is
 *     what keeps the nesting safe: a consumer waiting for the put lock
 *     waits only for a copy or a producer's 10 us backoff, never for a
 *     producer that waits for consumers.
 * Before sleeping, a waiter probes for up to 10 us at pauses doubling
 * from 250 ns to 2 us (as a contended Lock does, for the same reason: a
 * consumer that sleeps at once on a fast producer turns every put into a
 * FUTEX_WAKE), reading nothing shared between probes, and only with more
 * than one CPU online.  Sleeps are cut in 50 ms slices after which the
 * waiter looks again, so a process killed between a publish and its wake
 * delays a sleeper by a slice at most, never forever.
 *
 * Timeouts.  One deadline covers the locks and the waits.  It is fixed
 * lazily, the first time the call may block (a lock is busy, or the queue
 * is empty or full), so the fast path reads no clock: the time spent
 * before that is a few uncontended instructions.
 */
#include "internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE_MAGIC 0x51554555u      /* "QUEU" */
#define QUEUE_DEAD_MAGIC 0x64656164u /* "dead": a freed queue */
#define QUEUE_JOINABLE 1u

#define REC_HDR 8u
#define REC_LEN_BITS 40
#define REC_LEN_MASK ((UINT64_C(1) << REC_LEN_BITS) - 1)

#define QUEUE_LINE 64
#define QUEUE_SLICE_NS 50000000ull /* 50 ms */
/* A producer asleep for room whose membarrier call failed: a consumer may
 * miss its flag (see get_common), so it looks again this often. */
#define QUEUE_UNFENCED_SLICE_NS 1000000ull /* 1 ms */
#define QUEUE_BACKOFF_NS 10000u    /* 10 us */
#define QUEUE_PROBE_FIRST_NS 250u
#define QUEUE_PROBE_MAX_NS 2000u

MPROC__STATIC_ASSERT(MPROC_QUEUE_MAX_CAPACITY <= (UINT64_C(1) << REC_LEN_BITS),
                     "every message that fits the ring fits the length field");

/* Keep the compiler from moving stores across this point: the order in
 * which a put or get writes its marker and its positions is what a
 * recovery reads after a SIGKILL (the CPU retires a killed process's
 * stores in program order as far as its survivors can tell). */
#define QUEUE_COMPILER_BARRIER() __atomic_signal_fence(__ATOMIC_SEQ_CST)

struct mproc_queue {
  /* Line 0: fixed at creation, but for closed (written once). */
  uint32_t magic;        /* QUEUE_MAGIC */
  uint32_t flags;        /* QUEUE_JOINABLE */
  uint64_t cap;          /* ring bytes, a power of two */
  uint64_t mask;         /* cap - 1 */
  int64_t maxsize;       /* as given */
  uint64_t limit;        /* maxsize > 0 ? maxsize : UINT64_MAX */
  void *block;           /* the arena block (this header may sit after its
                            start, for the 64-byte alignment) */
  uint32_t closed;       /* 1 once mproc_queue_close was called */

  /* Line 1: producers only: the lock and what only its holder uses. */
  _Alignas(QUEUE_LINE) unsigned char put_lock[MPROC__LOCK_BYTES];
  uint64_t tail_cache;   /* a copy of tail (<= tail) */
  uint64_t gets_cache;   /* a copy of gets (maxsize) */
  uint64_t pend_end;     /* 0, or where the record in flight ends */
  uint64_t pend_puts;    /* puts before it */

  /* Line 2: under the put lock, read by consumers and qsize. */
  _Alignas(QUEUE_LINE) uint64_t head; /* end of the published records */
  uint64_t puts;         /* messages published */

  /* Line 3: under the put lock, rarely; read by task_done and join. */
  _Alignas(QUEUE_LINE) uint64_t added; /* JoinableQueue: messages ever put */
  uint64_t pend_added;   /* added before the put in flight */
  int64_t lost;          /* messages rolled back after a producer died */

  /* Line 4: consumers only. */
  _Alignas(QUEUE_LINE) unsigned char get_lock[MPROC__LOCK_BYTES];
  uint64_t head_cache;   /* a copy of head (tail <= head_cache <= head) */
  uint64_t gpend_end;    /* 0, or where tail is being moved to */
  uint64_t gpend_gets;   /* gets before that move */

  /* Line 5: under the get lock, read by producers and qsize. */
  _Alignas(QUEUE_LINE) uint64_t tail; /* start of the oldest record */
  uint64_t gets;         /* messages consumed */

  /* Line 6: sleeping.  The flags are read on every put and get and
   * written only around a sleep. */
  _Alignas(QUEUE_LINE) uint32_t put_seq; /* bumped to wake a consumer */
  uint32_t get_seq;      /* bumped to wake producers */
  uint32_t get_waiting;  /* 1: the get lock's holder sleeps on put_seq
                            (raised and taken down under the put lock) */
  uint32_t put_waiting;  /* 1: producers may sleep on get_seq */

  /* Line 7: JoinableQueue's task_done and join. */
  _Alignas(QUEUE_LINE) uint64_t done; /* task_done calls counted */
  uint32_t join_seq;     /* bumped when the unfinished count may be 0 */
  uint32_t join_waiters; /* callers in mproc_queue_join */
};

MPROC__STATIC_ASSERT(sizeof(struct mproc_queue) % QUEUE_LINE == 0,
                     "the ring starts on a cache line");
MPROC__STATIC_ASSERT(offsetof(struct mproc_queue, pend_puts) + 8 <=
                         offsetof(struct mproc_queue, head),
                     "the producers' own fields fit one line");
MPROC__STATIC_ASSERT(offsetof(struct mproc_queue, gpend_gets) + 8 <=
                         offsetof(struct mproc_queue, tail),
                     "the consumers' own fields fit one line");

static inline unsigned char *ring_of(struct mproc_queue *q) {
  return (unsigned char *)q + sizeof *q;
}

static inline mproc_lock *lock_of(unsigned char *mem) {
  return (mproc_lock *)(void *)mem;
}

static inline int is_closed(const struct mproc_queue *q) {
  return __atomic_load_n(&q->closed, __ATOMIC_ACQUIRE) != 0;
}

/* ==================== validation ==================== */

/* The arena's range, cached on the first validation (the arena never
 * moves, and a forked child maps it at the same address): the check of
 * every call is then two compares, not two calls. */
static uintptr_t arena_base, arena_size;

/* Whether size bytes at p lie inside the arena. */
static int in_arena_slow(const void *p, size_t size) {
  /* No arena, no queue: check before asking for the range, which would
   * create the arena. */
  mproc_arena_info info;
  if (!mproc_arena_contains(p) || mproc_arena_get_info(&info) != 0) {
    return 0;
  }
  __atomic_store_n(&arena_size, (uintptr_t)info.size, __ATOMIC_RELAXED);
  __atomic_store_n(&arena_base, (uintptr_t)info.base, __ATOMIC_RELEASE);
  uintptr_t off = (uintptr_t)p - (uintptr_t)info.base;
  return off < info.size && info.size - off >= size;
}

static inline int in_arena(const void *p, size_t size) {
  uintptr_t base = __atomic_load_n(&arena_base, __ATOMIC_ACQUIRE);
  if (MPROC__LIKELY(base != 0)) {
    uintptr_t off = (uintptr_t)p - base;
    return off < arena_size && arena_size - off >= size;
  }
  return in_arena_slow(p, size);
}

/*
 * The queue behind a public pointer, or NULL with *err set: MPROC_EINVAL
 * for anything that is not a live queue (NULL, outside the arena,
 * misaligned, freed, another object), MPROC_ECORRUPT for a queue whose
 * fixed fields do not agree.  Reading the header at any 64-aligned arena
 * address is safe: the arena is mapped whole in every process.
 */
static inline struct mproc_queue *qcheck(const mproc_queue *p, int *err) {
  if (MPROC__UNLIKELY(((uintptr_t)p & (QUEUE_LINE - 1)) != 0 || p == NULL ||
                      !in_arena(p, sizeof(struct mproc_queue)))) {
    *err = MPROC_EINVAL;
    return NULL;
  }
  struct mproc_queue *q = (struct mproc_queue *)(uintptr_t)p;
  if (MPROC__UNLIKELY(__atomic_load_n(&q->magic, __ATOMIC_ACQUIRE) !=
                      QUEUE_MAGIC)) {
    *err = MPROC_EINVAL;
    return NULL;
  }
  if (MPROC__UNLIKELY(q->cap < MPROC_QUEUE_MIN_CAPACITY ||
                      q->cap > MPROC_QUEUE_MAX_CAPACITY ||
                      (q->cap & q->mask) != 0 || q->mask != q->cap - 1)) {
    *err = MPROC_ECORRUPT;
    return NULL;
  }
  return q;
}

/* The 24-bit check stored with a record's length: a mix of the length
 * and the record's position, so that a stale or scribbled word is caught
 * (MPROC_ECORRUPT) instead of being read as a length. */
static inline uint64_t rec_check(uint64_t pos, uint64_t len) {
  uint64_t x = (pos >> 3) ^ (len * UINT64_C(0x9e3779b97f4a7c15));
  x ^= x >> 31;
  x *= UINT64_C(0xbf58476d1ce4e5b9);
  x ^= x >> 29;
  return x & 0xffffffu;
}

static inline uint64_t rec_size(uint64_t len) {
  return REC_HDR + ((len + 7u) & ~(uint64_t)7u);
}

/* ==================== ring copies ==================== */

static inline void ring_put(struct mproc_queue *q, uint64_t pos,
                            const void *src, size_t n) {
  unsigned char *ring = ring_of(q);
  uint64_t off = pos & q->mask;
  uint64_t first = q->cap - off;
  if (n <= first) {
    memcpy(ring + off, src, n);
  } else {
    memcpy(ring + off, src, (size_t)first);
    memcpy(ring, (const unsigned char *)src + first, n - (size_t)first);
  }
}

static inline void ring_get(struct mproc_queue *q, uint64_t pos, void *dst,
                            size_t n) {
  const unsigned char *ring = ring_of(q);
  uint64_t off = pos & q->mask;
  uint64_t first = q->cap - off;
  if (n <= first) {
    memcpy(dst, ring + off, n);
  } else {
    memcpy(dst, ring + off, (size_t)first);
    memcpy((unsigned char *)dst + first, ring, n - (size_t)first);
  }
}

/* ==================== deadlines and sleeping ==================== */

/* A call's timeout, turned into a deadline the first time it may block. */
typedef struct qwait {
  double timeout; /* as given (not NaN) */
  int fixed;      /* d is set */
  mproc__deadline d;
} qwait;

/* How long a put that polls (timeout 0) waits for the put lock.  Nobody
 * holds it for long (producers release it before they sleep for room), so
 * a poll waits for another producer's copy rather than failing with
 * MPROC_EFULL on a queue with room, which Python's put(block=False) never
 * does.  A get that polls does not wait: the get lock's holder may be a
 * consumer asleep on an empty queue (Python's get(block=False) fails on
 * its reader lock too). */
#define QUEUE_PUT_POLL_LOCK_S 0.001

static void qwait_fix(qwait *w) {
  if (!w->fixed) {
    (void)mproc__deadline_init(&w->d, w->timeout);
    w->fixed = 1;
  }
}

/*
 * Take an embedded lock within the call's deadline.  A wait without limit
 * is handed to the lock as it is, a poll waits poll_wait seconds at most
 * (see QUEUE_PUT_POLL_LOCK_S); a finite timeout first
 * tries without waiting, so an uncontended take reads no clock, and only
 * then fixes the deadline and waits for what is left of it.  Returns as
 * mproc_lock_acquire.
 */
static inline int qlock(unsigned char *mem, qwait *w, double poll_wait) {
  mproc_lock *l = lock_of(mem);
  if (w->timeout < 0) {
    return mproc_lock_acquire(l, w->timeout);
  }
  if (w->timeout == 0) {
    return mproc_lock_acquire(l, poll_wait);
  }
  int r = mproc_lock_acquire(l, 0);
  if (r != MPROC_ETIMEDOUT) {
    return r;
  }
  qwait_fix(w);
  uint64_t left = mproc__deadline_left_ns(&w->d);
  return mproc_lock_acquire(l, left == UINT64_MAX ? MPROC_FOREVER
                                                  : (double)left / 1e9);
}

static inline void qunlock(unsigned char *mem) {
  /* Only the caller holds it, and consistency was restored on taking it:
   * a plain store and a load, inline (an asym lock, internal.h). */
  mproc__lock_release_asym(mem);
}

/*
 * Sleep on *seqw while it holds seq, for one slice at most.  Returns 0
 * (woken, changed, or the slice ended: the caller looks again) or
 * MPROC_ETIMEDOUT (the deadline had passed: nothing was slept).
 */
static int sleep_slice(uint32_t *seqw, uint32_t seq, qwait *w,
                       uint64_t slice_ns) {
  qwait_fix(w);
  uint64_t now = mproc__now_ns();
  if (!w->d.forever && now >= w->d.at_ns) {
    return MPROC_ETIMEDOUT;
  }
  mproc__deadline slice = {0, now + slice_ns};
  if (!w->d.forever && w->d.at_ns < slice.at_ns) {
    slice.at_ns = w->d.at_ns;
  }
  (void)mproc__futex_wait(seqw, seq, &slice);
  return 0;
}

static inline void qpause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Whether backing off can pay: more than one CPU online (-1: unknown). */
static int backoff_pays = -1;

/* What a waiter probes while it backs off: 1 when it need not sleep. */
typedef int (*probe_fn)(struct mproc_queue *q, uint64_t arg);

/*
 * Probe ready(q, arg) at pauses doubling from 250 ns to 2 us, for 10 us
 * at most and never past the deadline, reading the clock but nothing
 * shared between probes (see the top).  Returns 1 if a probe said ready.
 */
static int backoff(struct mproc_queue *q, probe_fn ready, uint64_t arg,
                   qwait *w) {
  int pays = __atomic_load_n(&backoff_pays, __ATOMIC_RELAXED);
  if (pays < 0) {
    pays = mproc__cpus_online() > 1;
    __atomic_store_n(&backoff_pays, pays, __ATOMIC_RELAXED);
  }
  if (!pays) {
    return 0;
  }
  qwait_fix(w);
  uint64_t now = mproc__now_ns();
  uint64_t end = now + QUEUE_BACKOFF_NS;
  if (!w->d.forever && w->d.at_ns < end) {
    end = w->d.at_ns;
  }
  uint64_t gap = QUEUE_PROBE_FIRST_NS;
  while (now < end) {
    uint64_t until = now + gap;
    do {
      qpause();
      now = mproc__now_ns();
    } while (now < until);
    if (ready(q, arg)) {
      return 1;
    }
    if (gap < QUEUE_PROBE_MAX_NS) {
      gap *= 2;
    }
  }
  return 0;
}

/* Wake whoever sleeps on a sequence word (the bump makes a sleeper that
 * read the old value before sleeping return at once). */
static void wake_seq(uint32_t *seqw) {
  __atomic_fetch_add(seqw, 1, __ATOMIC_RELEASE);
  mproc__futex_wake(seqw, INT32_MAX);
}

/*
 * Wake the lock holder that announced it sleeps on seqw with *flag, once:
 * the first waker takes the flag down (an exchange), so the puts or gets
 * that follow before the sleeper has run see it down and make no system
 * call (otherwise every one of them would, until the sleeper is scheduled
 * and takes the flag down itself).  The sleeper raises it again if it
 * must sleep again.
 */
static void wake_flagged(uint32_t *flag, uint32_t *seqw) {
  if (__atomic_exchange_n(flag, 0, __ATOMIC_SEQ_CST) != 0) {
    wake_seq(seqw);
  }
}

/* Joiners may be done: wake them if any wait. */
static void wake_joiners(struct mproc_queue *q) {
  if (__atomic_load_n(&q->join_waiters, __ATOMIC_SEQ_CST) != 0) {
    wake_seq(&q->join_seq);
  }
}

/* ==================== recovery ==================== */

/*
 * The put lock was taken from a producer that died (MPROC_EOWNERDEAD):
 * settle its put from the marker (see the top) and make the lock
 * consistent.  Under the put lock.
 */
static void put_recover(struct mproc_queue *q) {
  uint64_t end = q->pend_end;
  if (end != 0) {
    if (__atomic_load_n(&q->head, __ATOMIC_RELAXED) == end) {
      /* Published: finish the counting the put would have done. */
      __atomic_store_n(&q->puts, q->pend_puts + 1, __ATOMIC_RELEASE);
    } else {
      /* Not published: the bytes past head are overwritten by the next
       * put.  Only the joinable count had moved. */
      __atomic_store_n(&q->lost, q->lost + 1, __ATOMIC_RELAXED);
      if (q->flags & QUEUE_JOINABLE) {
        __atomic_store_n(&q->added, q->pend_added, __ATOMIC_SEQ_CST);
        wake_joiners(q);
      }
      MPROC__WARN("queue %p: a producer died in the middle of a put; its "
                  "message was rolled back (lost %lld)",
                  (void *)q, (long long)q->lost);
    }
    q->pend_end = 0;
  }
  if (mproc_lock_consistent(lock_of(q->put_lock)) != 0) {
    MPROC__WARN("queue %p: could not mark the put lock consistent",
                (void *)q);
  }
}

/* The same for the get lock: a dead consumer's move of tail either
 * happened or not, and gets is set to match.  It may have died asleep:
 * its flag goes down with it. */
static void get_recover(struct mproc_queue *q) {
  uint64_t end = q->gpend_end;
  if (end != 0) {
    uint64_t tail = __atomic_load_n(&q->tail, __ATOMIC_RELAXED);
    __atomic_store_n(&q->gets, q->gpend_gets + (tail == end ? 1u : 0u),
                     __ATOMIC_RELEASE);
    q->gpend_end = 0;
  }
  __atomic_store_n(&q->get_waiting, 0, __ATOMIC_RELAXED);
  MPROC__WARN("queue %p: a consumer died holding the get lock; going on",
              (void *)q);
  if (mproc_lock_consistent(lock_of(q->get_lock)) != 0) {
    MPROC__WARN("queue %p: could not mark the get lock consistent",
                (void *)q);
  }
}

/* take()'s slow part: the lock was not simply taken. */
static int take_slow(struct mproc_queue *q, int put, int full, int r) {
  switch (r) {
  case MPROC_EOWNERDEAD:
    if (put) {
      put_recover(q);
    } else {
      get_recover(q);
    }
    return 0;
  case MPROC_ETIMEDOUT:
    return full ? MPROC_EFULL : MPROC_EEMPTY;
  case MPROC_ENOTRECOVERABLE:
  case MPROC_EINVAL:
    /* Only if the lock inside the header was scribbled over. */
    return MPROC_ECORRUPT;
  default:
    return r; /* MPROC_EAGAIN: no process token (mproc/sync.h) */
  }
}

/*
 * Take the put (put != 0) or get lock within the call's deadline,
 * recovering from a dead holder.  Returns 0 (held), MPROC_EFULL /
 * MPROC_EEMPTY (not within the timeout; full names the put side's
 * failure, whatever lock it was), or another error (not held).
 */
static inline int take(struct mproc_queue *q, int put, int full, qwait *w) {
  unsigned char *mem = put ? q->put_lock : q->get_lock;
  /* The uncontended case inline: one CAS, no call (internal.h). */
  if (MPROC__LIKELY(mproc__lock_try_fast(mem))) {
    return 0;
  }
  int r = qlock(mem, w, full ? QUEUE_PUT_POLL_LOCK_S : 0);
  if (MPROC__LIKELY(r == 0)) {
    return 0;
  }
  return take_slow(q, put, full, r);
}

/* ==================== put ==================== */

/* Room for rec bytes at head given tail and gets. */
static inline int room_with(const struct mproc_queue *q, uint64_t head,
                            uint64_t rec, uint64_t tail, uint64_t puts,
                            uint64_t gets) {
  return head + rec - tail <= q->cap &&
         (q->limit == UINT64_MAX || puts - gets < q->limit);
}

/* Room, read fresh, refreshing the caches.  Under the put lock. */
static int room_fresh(struct mproc_queue *q, uint64_t head, uint64_t rec) {
  /* seq_cst: the load of a sleep's store-then-load pair (see the top). */
  q->tail_cache = __atomic_load_n(&q->tail, __ATOMIC_SEQ_CST);
  if (q->limit != UINT64_MAX) {
    q->gets_cache = __atomic_load_n(&q->gets, __ATOMIC_ACQUIRE);
  }
  return room_with(q, head, rec, q->tail_cache, q->puts, q->gets_cache);
}

/* Room, from the caches when they say so.  Under the put lock. */
static inline int room(struct mproc_queue *q, uint64_t head, uint64_t rec) {
  if (MPROC__LIKELY(room_with(q, head, rec, q->tail_cache, q->puts,
                              q->gets_cache))) {
    return 1;
  }
  return room_fresh(q, head, rec);
}

/* The backoff's probe, holding the put lock: closed, or room. */
static int probe_room(struct mproc_queue *q, uint64_t rec) {
  return is_closed(q) || room_fresh(q, q->head, rec);
}

int mproc_queue_put(mproc_queue *qp, const void *buf, size_t len,
                    double timeout) {
  int r;
  struct mproc_queue *q = qcheck(qp, &r);
  if (MPROC__UNLIKELY(q == NULL)) {
    return r;
  }
  if (MPROC__UNLIKELY((buf == NULL && len > 0) || timeout != timeout)) {
    return MPROC_EINVAL;
  }
  if (MPROC__UNLIKELY(len > q->cap - REC_HDR)) {
    return MPROC_EMSGSIZE;
  }
  uint64_t rec = rec_size(len);
  qwait w = {timeout, 0, {0, 0}};
  r = take(q, 1, 1, &w);
  if (MPROC__UNLIKELY(r != 0)) {
    return r;
  }
  uint64_t head;
  for (int backed_off = 0;;) {
    if (MPROC__UNLIKELY(is_closed(q))) {
      qunlock(q->put_lock);
      return MPROC_ECLOSED;
    }
    /* Under the put lock only its holder moves head. */
    head = q->head;
    if (MPROC__LIKELY(room(q, head, rec))) {
      break;
    }
    if (timeout == 0 || (w.fixed && mproc__deadline_left_ns(&w.d) == 0)) {
      qunlock(q->put_lock);
      return MPROC_EFULL;
    }
    if (!backed_off) {
      backed_off = 1;
      if (backoff(q, probe_room, rec, &w)) {
        continue;
      }
    }
    /* Sleep without the lock (see the top): announce, make every
     * consumer's CPU pass a full barrier (a consumer moves tail and then
     * reads put_waiting with no fence between: see get_common), look
     * again. */
    uint32_t seq = __atomic_load_n(&q->get_seq, __ATOMIC_ACQUIRE);
    __atomic_store_n(&q->put_waiting, 1, __ATOMIC_SEQ_CST);
    int fenced = mproc__membarrier() == 0;
    if (probe_room(q, rec)) {
      continue;
    }
    qunlock(q->put_lock);
    MPROC__FAULT(QUEUE_PUT_SLEEPING);
    (void)sleep_slice(&q->get_seq, seq, &w,
                      fenced ? QUEUE_SLICE_NS : QUEUE_UNFENCED_SLICE_NS);
    if ((r = take(q, 1, 1, &w)) != 0) {
      return r;
    }
  }
  uint64_t end = head + rec;
  uint64_t puts = q->puts;
  int joinable = (q->flags & QUEUE_JOINABLE) != 0;
  /* The marker first, so a recovery can tell whether this put was
   * published. */
  q->pend_puts = puts;
  if (joinable) {
    q->pend_added = q->added;
  }
  QUEUE_COMPILER_BARRIER();
  q->pend_end = end;
  QUEUE_COMPILER_BARRIER();
  MPROC__FAULT(QUEUE_PUT_MARKED);
  if (joinable) {
    /* Before the publish: a consumer's task_done for this message must
     * find it counted. */
    __atomic_store_n(&q->added, q->pend_added + 1, __ATOMIC_RELAXED);
  }
  uint64_t word = (uint64_t)len | rec_check(head, len) << REC_LEN_BITS;
  memcpy(ring_of(q) + (head & q->mask), &word, sizeof word);
  if (len > 0) {
    ring_put(q, head + REC_HDR, buf, len);
  }
  MPROC__FAULT(QUEUE_PUT_COPIED);
  /* The publish.  release: the record's bytes (and added) before head,
   * for a consumer's acquire load of head. */
  __atomic_store_n(&q->head, end, __ATOMIC_RELEASE);
  MPROC__FAULT(QUEUE_PUT_PUBLISHED);
  /* release: qsize reads gets, then puts; a consumed message was
   * counted here first, but for this moment (qsize clamps). */
  __atomic_store_n(&q->puts, puts + 1, __ATOMIC_RELEASE);
  MPROC__FAULT(QUEUE_PUT_COUNTED);
  QUEUE_COMPILER_BARRIER();
  q->pend_end = 0;
  /* A consumer that announced its sleep under this lock: take the flag
   * down (so the puts that follow before it runs make no system call)
   * and wake it once. */
  uint32_t sleeper = __atomic_load_n(&q->get_waiting, __ATOMIC_RELAXED);
  if (MPROC__UNLIKELY(sleeper != 0)) {
    __atomic_store_n(&q->get_waiting, 0, __ATOMIC_RELAXED);
  }
  qunlock(q->put_lock);
  if (MPROC__UNLIKELY(sleeper != 0)) {
    wake_seq(&q->put_seq);
  }
  return 0;
}

/* ==================== get ==================== */

static int probe_data(struct mproc_queue *q, uint64_t tail) {
  return __atomic_load_n(&q->head, __ATOMIC_ACQUIRE) != tail ||
         is_closed(q);
}

/*
 * Wait, holding the get lock, until a record follows tail.  Returns 0
 * (q->head_cache is past tail), MPROC_ECLOSED (closed and empty: no
 * message can follow), MPROC_EEMPTY (not within the timeout) or an error
 * taking the put lock.
 */
static int wait_data(struct mproc_queue *q, uint64_t tail, qwait *w) {
  int backed_off = 0;
  for (;;) {
    uint64_t head = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
    if (head != tail) {
      q->head_cache = head;
      return 0;
    }
    int closed = is_closed(q);
    int expired =
        w->timeout == 0 || (w->fixed && mproc__deadline_left_ns(&w->d) == 0);
    if (!closed && !expired && !backed_off) {
      backed_off = 1;
      if (backoff(q, probe_data, tail, w)) {
        continue;
      }
    }
    if (expired && !closed) {
      return MPROC_EEMPTY;
    }
    /* Closed, or about to sleep: look once more under the put lock. */
    uint32_t seq = __atomic_load_n(&q->put_seq, __ATOMIC_ACQUIRE);
    int r = take(q, 1, 0, w);
    if (r != 0) {
      return r;
    }
    head = q->head;
    if (head == tail && !closed) {
      __atomic_store_n(&q->get_waiting, 1, __ATOMIC_RELAXED);
    }
    qunlock(q->put_lock);
    if (head != tail) {
      q->head_cache = head;
      return 0;
    }
    if (closed) {
      return MPROC_ECLOSED;
    }
    MPROC__FAULT(QUEUE_GET_SLEEPING);
    r = sleep_slice(&q->put_seq, seq, w, QUEUE_SLICE_NS);
    /* Woken (a producer took the flag down), the slice ended, or the
     * deadline passed: the flag goes down either way; it is ours. */
    __atomic_store_n(&q->get_waiting, 0, __ATOMIC_RELAXED);
    if (r != 0) {
      /* One last look without sleeping. */
      head = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
      if (head != tail) {
        q->head_cache = head;
        return 0;
      }
      return MPROC_EEMPTY;
    }
  }
}

/*
 * The common part of get and get_into: out != NULL allocates, else the
 * message goes to buf (cap bytes).  *lenp is set on success and for
 * MPROC_ENOBUFS.
 */
static int get_common(struct mproc_queue *q, void **out, void *buf,
                      size_t cap, size_t *lenp, double timeout) {
  qwait w = {timeout, 0, {0, 0}};
  int r = take(q, 0, 0, &w);
  if (MPROC__UNLIKELY(r != 0)) {
    return r;
  }
  uint64_t tail = q->tail;
  if (tail == q->head_cache) {
    /* acquire: the bytes of the records before head, written before the
     * producer's release store of it. */
    uint64_t head = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
    if (head != tail) {
      q->head_cache = head;
    } else if ((r = wait_data(q, tail, &w)) != 0) {
      qunlock(q->get_lock);
      return r;
    }
  }
  uint64_t avail = q->head_cache - tail;
  uint64_t word;
  memcpy(&word, ring_of(q) + (tail & q->mask), sizeof word);
  uint64_t len = word & REC_LEN_MASK;
  if (MPROC__UNLIKELY(avail < REC_HDR || len > avail - REC_HDR ||
                      rec_size(len) > avail ||
                      (word >> REC_LEN_BITS) != rec_check(tail, len))) {
    qunlock(q->get_lock);
    MPROC__WARN("queue %p: the record at %llu fails its check", (void *)q,
                (unsigned long long)tail);
    return MPROC_ECORRUPT;
  }
  void *dst = buf;
  if (out != NULL) {
    dst = malloc(len > 0 ? (size_t)len : 1u);
    if (dst == NULL) {
      qunlock(q->get_lock);
      return MPROC_ENOMEM;
    }
  } else if (len > cap) {
    qunlock(q->get_lock);
    *lenp = (size_t)len;
    return MPROC_ENOBUFS;
  }
  if (len > 0) {
    ring_get(q, tail + REC_HDR, dst, (size_t)len);
  }
  MPROC__FAULT(QUEUE_GET_COPIED);
  uint64_t end = tail + rec_size(len);
  uint64_t gets = q->gets;
  q->gpend_gets = gets;
  QUEUE_COMPILER_BARRIER();
  q->gpend_end = end;
  QUEUE_COMPILER_BARRIER();
  MPROC__FAULT(QUEUE_GET_MARKED);
  /* Before tail, release: a producer (or qsize) that sees the new tail or
   * this count sees the message counted. */
  __atomic_store_n(&q->gets, gets + 1, __ATOMIC_RELEASE);
  MPROC__FAULT(QUEUE_GET_COUNTED);
  __atomic_store_n(&q->tail, end, __ATOMIC_RELEASE);
  MPROC__FAULT(QUEUE_GET_MOVED);
  QUEUE_COMPILER_BARRIER();
  q->gpend_end = 0;
  qunlock(q->get_lock);
  /* The store of tail, then the load of put_waiting: the other half of a
   * sleeping producer's store of put_waiting, then its load of tail (see
   * the top), so one of the two must see the other's store.  The fence
   * that needs is on the producer's side, which is about to sleep anyway:
   * it calls mproc__membarrier() between its store and its load (and, if
   * that fails, sleeps in 1 ms slices), so here only the compiler must
   * keep the load below the store. */
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  if (MPROC__UNLIKELY(__atomic_load_n(&q->put_waiting, __ATOMIC_SEQ_CST) !=
                      0)) {
    wake_flagged(&q->put_waiting, &q->get_seq);
  }
  if (out != NULL) {
    *out = dst;
  }
  *lenp = (size_t)len;
  return 0;
}

int mproc_queue_get(mproc_queue *qp, void **out, size_t *len,
                    double timeout) {
  if (out != NULL) {
    *out = NULL;
  }
  if (len != NULL) {
    *len = 0;
  }
  int r;
  struct mproc_queue *q = qcheck(qp, &r);
  if (q == NULL) {
    return r;
  }
  if (out == NULL || len == NULL || timeout != timeout) {
    return MPROC_EINVAL;
  }
  return get_common(q, out, NULL, 0, len, timeout);
}

int mproc_queue_get_into(mproc_queue *qp, void *buf, size_t cap,
                         size_t *len, double timeout) {
  if (len != NULL) {
    *len = 0;
  }
  int r;
  struct mproc_queue *q = qcheck(qp, &r);
  if (MPROC__UNLIKELY(q == NULL)) {
    return r;
  }
  if (MPROC__UNLIKELY(len == NULL || (buf == NULL && cap > 0) ||
                      timeout != timeout)) {
    return MPROC_EINVAL;
  }
  return get_common(q, NULL, buf, cap, len, timeout);
}

/* ==================== state ==================== */

long mproc_queue_qsize(const mproc_queue *qp) {
  int r;
  struct mproc_queue *q = qcheck(qp, &r);
  if (q == NULL) {
    return r;
  }
  /* gets first: what it counts was counted in puts before, but for the
   * moment between a publish and the store of puts (hence the clamp). */
  uint64_t g = __atomic_load_n(&q->gets, __ATOMIC_ACQUIRE);
  uint64_t p = __atomic_load_n(&q->puts, __ATOMIC_ACQUIRE);
  if (p <= g) {
    return 0;
  }
  return p - g > (uint64_t)LONG_MAX ? LONG_MAX : (long)(p - g);
}

int mproc_queue_empty(const mproc_queue *qp) {
  int r;
  struct mproc_queue *q = qcheck(qp, &r);
  if (q == NULL) {
    return r;
  }
  uint64_t tail = __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE);
  return __atomic_load_n(&q->head, __ATOMIC_ACQUIRE) == tail;
}

int mproc_queue_full(const mproc_queue *qp) {
  int r;
  struct mproc_queue *q = qcheck(qp, &r);
  if (q == NULL) {
    return r;
  }
  if (q->limit == UINT64_MAX) {
    return 0;
  }
  long n = mproc_queue_qsize(qp);
  return n >= 0 && (uint64_t)n >= q->limit;
}

long mproc_queue_maxsize(const mproc_queue *qp) {
  int r;
  struct mproc_queue *q = qcheck(qp, &r);
  return q == NULL ? r : (long)q->maxsize;
}

size_t mproc_queue_capacity(const mproc_queue *qp) {
  int r;
  struct mproc_queue *q = qcheck(qp, &r);
  return q == NULL ? 0 : (size_t)q->cap;
}

int64_t mproc_queue_lost(const mproc_queue *qp) {
  int r;
  struct mproc_queue *q = qcheck(qp, &r);
  return q == NULL ? r : __atomic_load_n(&q->lost, __ATOMIC_RELAXED);
}

/* ==================== close ==================== */

int mproc_queue_close(mproc_queue *qp) {
  int r;
  struct mproc_queue *q = qcheck(qp, &r);
  if (q == NULL) {
    return r;
  }
  if (__atomic_exchange_n(&q->closed, 1, __ATOMIC_SEQ_CST) == 0) {
    /* Wake every sleeper, whether it announced itself or is about to: the
     * bumps make a sleep that has not begun return at once, and each one
     * looks at the flag when it wakes. */
    wake_seq(&q->put_seq);
    wake_seq(&q->get_seq);
  }
  return 0;
}

int mproc_queue_is_closed(const mproc_queue *qp) {
  int r;
  struct mproc_queue *q = qcheck(qp, &r);
  if (q == NULL) {
    return r;
  }
  return is_closed(q);
}

/* ==================== JoinableQueue ==================== */

int mproc_queue_task_done(mproc_queue *qp) {
  int r;
  struct mproc_queue *q = qcheck(qp, &r);
  if (q == NULL) {
    return r;
  }
  if (!(q->flags & QUEUE_JOINABLE)) {
    return MPROC_EINVAL;
  }
  uint64_t d = __atomic_load_n(&q->done, __ATOMIC_RELAXED);
  for (;;) {
    uint64_t a = __atomic_load_n(&q->added, __ATOMIC_SEQ_CST);
    if (d >= a) {
      return MPROC_ETASKDONE;
    }
    if (__atomic_compare_exchange_n(&q->done, &d, d + 1, 0, __ATOMIC_SEQ_CST,
                                    __ATOMIC_RELAXED)) {
      break;
    }
  }
  /* The last one: joiners may go.  A joiner announces itself (seq_cst)
   * before it reads done and added, and we read its count after our
   * seq_cst CAS of done, so either it sees our done or we see it. */
  if (d + 1 >= __atomic_load_n(&q->added, __ATOMIC_SEQ_CST)) {
    wake_joiners(q);
  }
  return 0;
}

/* Nothing unfinished: done read before added (both only grow, but for a
 * rollback), so d >= a means it held at the moment done was read. */
static int all_done(struct mproc_queue *q) {
  uint64_t d = __atomic_load_n(&q->done, __ATOMIC_SEQ_CST);
  uint64_t a = __atomic_load_n(&q->added, __ATOMIC_SEQ_CST);
  return d >= a;
}

/* Settle a put whose producer died holding the put lock, if that is what
 * keeps the count up: take the lock without waiting, and recovery runs if
 * its holder is dead. */
static void settle_dead_producer(struct mproc_queue *q) {
  int r = mproc_lock_acquire(lock_of(q->put_lock), 0);
  if (r == MPROC_EOWNERDEAD) {
    put_recover(q);
    r = 0;
  }
  if (r == 0) {
    qunlock(q->put_lock);
  }
}

int mproc_queue_join(mproc_queue *qp, double timeout) {
  int r;
  struct mproc_queue *q = qcheck(qp, &r);
  if (q == NULL) {
    return r;
  }
  if (!(q->flags & QUEUE_JOINABLE) || timeout != timeout) {
    return MPROC_EINVAL;
  }
  qwait w = {timeout, 0, {0, 0}};
  int expired = timeout == 0;
  for (int round = 0;; round++) {
    if (all_done(q)) {
      return 0;
    }
    if (round > 0) {
      settle_dead_producer(q);
      if (all_done(q)) {
        return 0;
      }
    }
    if (expired) {
      return MPROC_ETIMEDOUT;
    }
    uint32_t seq = __atomic_load_n(&q->join_seq, __ATOMIC_ACQUIRE);
    __atomic_fetch_add(&q->join_waiters, 1, __ATOMIC_SEQ_CST);
    if (all_done(q)) {
      __atomic_fetch_sub(&q->join_waiters, 1, __ATOMIC_RELAXED);
      return 0;
    }
    r = sleep_slice(&q->join_seq, seq, &w, QUEUE_SLICE_NS);
    __atomic_fetch_sub(&q->join_waiters, 1, __ATOMIC_RELAXED);
    if (r == MPROC_ETIMEDOUT) {
      expired = 1;
    }
  }
}

/* ==================== create and free ==================== */

static int queue_new(mproc_queue **out, long maxsize,
                     const mproc_queue_opts *opts, uint32_t flags) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  size_t cap = opts != NULL && opts->capacity != 0
                   ? opts->capacity
                   : MPROC_QUEUE_DEFAULT_CAPACITY;
  if (cap > MPROC_QUEUE_MAX_CAPACITY) {
    return MPROC_EINVAL;
  }
  if (cap < MPROC_QUEUE_MIN_CAPACITY) {
    cap = MPROC_QUEUE_MIN_CAPACITY;
  }
  if ((cap & (cap - 1)) != 0) {
    cap = (size_t)1 << (64 - __builtin_clzll((unsigned long long)cap - 1));
  }
  void *block = NULL;
  /* The arena aligns to 16: QUEUE_LINE - 16 more bytes leave room to
   * start the header on a cache line. */
  int r = mproc_shm_alloc(&block, sizeof(struct mproc_queue) +
                                      (QUEUE_LINE - MPROC_ARENA_ALIGN) + cap);
  if (r != 0) {
    return r;
  }
  uintptr_t at = ((uintptr_t)block + QUEUE_LINE - 1) &
                 ~(uintptr_t)(QUEUE_LINE - 1);
  struct mproc_queue *q = (struct mproc_queue *)at;
  memset(q, 0, sizeof *q);
  q->flags = flags;
  q->cap = cap;
  q->mask = cap - 1;
  q->maxsize = maxsize;
  q->limit = maxsize > 0 ? (uint64_t)maxsize : UINT64_MAX;
  q->block = block;
  mproc__lock_init_embedded_asym(q->put_lock);
  mproc__lock_init_embedded_asym(q->get_lock);
  __atomic_store_n(&q->magic, QUEUE_MAGIC, __ATOMIC_RELEASE);
  *out = q;
  return 0;
}

int mproc_queue_new(mproc_queue **out, long maxsize,
                    const mproc_queue_opts *opts) {
  return queue_new(out, maxsize, opts, 0);
}

int mproc_joinable_queue_new(mproc_queue **out, long maxsize,
                             const mproc_queue_opts *opts) {
  return queue_new(out, maxsize, opts, QUEUE_JOINABLE);
}

int mproc_queue_free(mproc_queue *qp) {
  if (qp == NULL) {
    return 0;
  }
  int r;
  struct mproc_queue *q = qcheck(qp, &r);
  if (q == NULL) {
    return MPROC_EINVAL;
  }
  /* No lock is taken here: taking one needs a process token, which a
   * process that never used a lock would have to register for (and the
   * first registration allocates the token table), and a dead holder's
   * half-done put or get needs no settling in a queue about to go.  A
   * lock is busy only while a live process holds it, checked now, not
   * rate-limited: a consumer SIGKILLed and reaped a moment ago does not
   * hold it. */
  if (mproc__lock_busy(lock_of(q->put_lock)) ||
      mproc__lock_busy(lock_of(q->get_lock))) {
    return MPROC_EBUSY;
  }
  if ((r = mproc__lock_retire_embedded(q->put_lock)) != 0) {
    return r;
  }
  if ((r = mproc__lock_retire_embedded(q->get_lock)) != 0) {
    /* Taken meanwhile (a misuse): leave the queue as it was. */
    mproc__lock_init_embedded_asym(q->put_lock);
    return r;
  }
  __atomic_store_n(&q->magic, QUEUE_DEAD_MAGIC, __ATOMIC_RELEASE);
  return mproc_shm_free(q->block);
}

/* ==================== SimpleQueue ==================== */

int mproc_simple_queue_new(mproc_simple_queue **out,
                           const mproc_queue_opts *opts) {
  return queue_new(out, 0, opts, 0);
}

int mproc_simple_queue_put(mproc_simple_queue *q, const void *buf,
                           size_t len) {
  return mproc_queue_put(q, buf, len, MPROC_FOREVER);
}

int mproc_simple_queue_get(mproc_simple_queue *q, void **out, size_t *len) {
  return mproc_queue_get(q, out, len, MPROC_FOREVER);
}

int mproc_simple_queue_empty(const mproc_simple_queue *q) {
  return mproc_queue_empty(q);
}

int mproc_simple_queue_close(mproc_simple_queue *q) {
  return mproc_queue_close(q);
}

int mproc_simple_queue_free(mproc_simple_queue *q) {
  return mproc_queue_free(q);
}
