/*
 * src/sync/event.c - Event: one futex word.
 *
 * DESIGN
 * The word is generation << 2 | WAITERS << 1 | SET.  set() turns SET on
 * and advances the generation in one CAS, and makes the FUTEX_WAKE (of
 * everyone) only if WAITERS was on, which it turns off; so a set with
 * nobody waiting is one CAS, as an Event ping-pong needs.  A waiter turns
 * WAITERS on before sleeping on the exact word it saw.  It returns 0 when
 * SET is on or the generation moved (a set happened while it slept, even
 * if a clear() followed before it ran: threading.Event's answer, not a
 * lost wakeup).  Nothing a waiter does outlives it: a waiter killed in its
 * sleep leaves at most the WAITERS bit, which costs the next set one
 * wake system call and is then gone.
 */
#include "sync-internal.h"

#include <errno.h>

#define EVENT_MAGIC 0x45564e54u /* "EVNT" */
#define EV_SET 1u
#define EV_WAITERS 2u
#define EV_GEN 4u
#define EV_GEN_MASK (~3u)

struct mproc_event {
  uint32_t word;
  uint32_t magic;
};

static int ev_valid(const struct mproc_event *e) {
  return sync_in_arena(e, sizeof *e) &&
         __atomic_load_n(&e->magic, __ATOMIC_RELAXED) == EVENT_MAGIC;
}

int mproc_event_new(mproc_event **out) {
  if (out == NULL) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  struct mproc_event *e = NULL;
  int r = mproc_shm_alloc((void **)&e, sizeof *e);
  if (r != 0) {
    return r;
  }
  e->word = 0;
  __atomic_store_n(&e->magic, EVENT_MAGIC, __ATOMIC_RELEASE);
  *out = e;
  return 0;
}

int mproc_event_set(mproc_event *e) {
  if (!ev_valid(e)) {
    return MPROC_EINVAL;
  }
  uint32_t v = __atomic_load_n(&e->word, __ATOMIC_RELAXED);
  uint32_t nv;
  do {
    if (v & EV_SET) {
      return 0;
    }
    nv = ((v & EV_GEN_MASK) + EV_GEN) | EV_SET;
  } while (!__atomic_compare_exchange_n(&e->word, &v, nv, 1, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED));
  if (v & EV_WAITERS) {
    mproc__futex_wake(&e->word, INT32_MAX);
  }
  return 0;
}

int mproc_event_clear(mproc_event *e) {
  if (!ev_valid(e)) {
    return MPROC_EINVAL;
  }
  uint32_t v = __atomic_load_n(&e->word, __ATOMIC_RELAXED);
  while ((v & EV_SET) &&
         !__atomic_compare_exchange_n(&e->word, &v, v & ~EV_SET, 1,
                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return 0;
}

int mproc_event_is_set(const mproc_event *e) {
  if (!ev_valid(e)) {
    return MPROC_EINVAL;
  }
  return (__atomic_load_n(&e->word, __ATOMIC_ACQUIRE) & EV_SET) != 0;
}

int mproc_event_wait(mproc_event *e, double timeout) {
  if (!ev_valid(e) || timeout != timeout) {
    return MPROC_EINVAL;
  }
  uint32_t v = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
  if (v & EV_SET) {
    return 0;
  }
  if (timeout == 0) {
    return MPROC_ETIMEDOUT; /* a poll leaves no WAITERS bit behind */
  }
  mproc__deadline d;
  if (mproc__deadline_init(&d, timeout) != 0) {
    return MPROC_EINVAL;
  }
  const uint32_t gen = v & EV_GEN_MASK;
  for (;;) {
    if (!(v & EV_WAITERS)) {
      if (!__atomic_compare_exchange_n(&e->word, &v, v | EV_WAITERS, 1,
                                       __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE)) {
        if ((v & EV_SET) || (v & EV_GEN_MASK) != gen) {
          return 0;
        }
        continue;
      }
      v |= EV_WAITERS;
    }
    MPROC__FAULT(SYNC_EVENT_SLEEPING);
    int r = mproc__futex_wait(&e->word, v, &d);
    v = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
    if ((v & EV_SET) || (v & EV_GEN_MASK) != gen) {
      return 0;
    }
    if (r == -ETIMEDOUT) {
      return MPROC_ETIMEDOUT;
    }
  }
}

int mproc_event_free(mproc_event *e) {
  if (e == NULL) {
    return 0;
  }
  if (!ev_valid(e)) {
    return MPROC_EINVAL;
  }
  __atomic_store_n(&e->magic, SYNC_DEAD_MAGIC, __ATOMIC_RELEASE);
  return mproc_shm_free(e);
}
