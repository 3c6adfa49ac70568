/*
 * src/sync/owner.c - process tokens: the program-wide table in the arena,
 * registration (once per process, again in a forked child), liveness of
 * the process behind a token, and the sliced futex wait every blocking
 * sync call uses.  The design is in sync-internal.h.
 */
#include "sync-internal.h"

#include <errno.h>
#include <pthread.h>

#define TABLE_MAGIC 0x53594e43u /* "SYNC" */
#define GEN_MASK ((1u << SYNC_GEN_BITS) - 1u)
#define FIRST_SLOT 1u
#define LAST_SLOT (SYNC_SLOTS - 2u) /* SYNC_SLOTS-1 would make NOTREC */
#define NUM_SLOTS (LAST_SLOT - FIRST_SLOT + 1u)

typedef struct sync_slot {
  uint64_t id;    /* generation << 32 | pid; pid 0: never used */
  uint64_t start; /* the process's start time; 0 unknown */
} sync_slot;

typedef struct sync_table {
  uint32_t magic;
  uint32_t next; /* round-robin hint for the next registration */
  sync_slot slots[SYNC_SLOTS];
} sync_table;

uint32_t mproc__sync_self_token;
int mproc__sync_asym_ok;
uintptr_t mproc__sync_arena_base, mproc__sync_arena_size;

static sync_table *g_table; /* cached: the arena has one address everywhere */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
__thread uint32_t mproc__sync_tid_cache;

/* The forked child is a new process: it must not use its parent's token
 * (its parent may die while the child holds a lock, or the other way
 * round), and its one thread has a new thread id. */
static void atfork_child(void) {
  /* Globals written only where set: a page written after fork is a
   * copy-on-write fault in every new child. */
  if (mproc__sync_self_token != 0) {
    mproc__sync_self_token = 0;
  }
  if (mproc__sync_asym_ok != 0) {
    mproc__sync_asym_ok = 0;
  }
  mproc__sync_tid_cache = 0;
  mproc__mutex_reset_in_child(&reg_mu);
}

static void install_atfork(void) { pthread_atfork(NULL, NULL, atfork_child); }

uint32_t mproc__sync_tid_slow(void) {
  uint32_t t = (uint32_t)mproc__gettid();
  mproc__sync_tid_cache = t;
  return t;
}

/* The table if some process created it, else NULL; never allocates (the
 * liveness checks of free paths use it: a token in a word means the table
 * exists, and a free must not fail for want of memory). */
static sync_table *table_peek(void) {
  sync_table *t = __atomic_load_n(&g_table, __ATOMIC_ACQUIRE);
  if (MPROC__LIKELY(t != NULL)) {
    return t;
  }
  /* The caller has an arena object in hand, so the arena is mapped and
   * this creates nothing. */
  void **root = mproc__arena_root(MPROC__ROOT_SYNC_OWNERS);
  if (root == NULL) {
    return NULL;
  }
  t = __atomic_load_n((sync_table **)root, __ATOMIC_ACQUIRE);
  if (t != NULL) {
    __atomic_store_n(&g_table, t, __ATOMIC_RELEASE);
  }
  return t;
}

static sync_table *table(void) {
  sync_table *t = __atomic_load_n(&g_table, __ATOMIC_ACQUIRE);
  if (MPROC__LIKELY(t != NULL)) {
    return t;
  }
  void **root = mproc__arena_root(MPROC__ROOT_SYNC_OWNERS);
  if (root == NULL) {
    return NULL;
  }
  t = __atomic_load_n((sync_table **)root, __ATOMIC_ACQUIRE);
  if (t == NULL) {
    sync_table *mine = NULL;
    if (mproc_shm_calloc((void **)&mine, 1, sizeof *mine) != 0) {
      return NULL;
    }
    mine->magic = TABLE_MAGIC;
    /* A death here leaks this block (documented): nobody else knows it. */
    MPROC__FAULT(OWNER_TABLE_ALLOCATED);
    sync_table *expected = NULL;
    if (__atomic_compare_exchange_n((sync_table **)root, &expected, mine, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      t = mine;
    } else {
      mproc_shm_free(mine);
      t = expected;
    }
  }
  __atomic_store_n(&g_table, t, __ATOMIC_RELEASE);
  return t;
}

/* A consistent snapshot of a slot (id, start), seqlock style. */
static void slot_read(sync_slot *s, uint64_t *id, uint64_t *start) {
  for (;;) {
    uint64_t a = __atomic_load_n(&s->id, __ATOMIC_ACQUIRE);
    uint64_t st = __atomic_load_n(&s->start, __ATOMIC_ACQUIRE);
    uint64_t b = __atomic_load_n(&s->id, __ATOMIC_ACQUIRE);
    if (a == b) {
      *id = a;
      *start = st;
      return;
    }
  }
}

static int slot_alive(sync_slot *s, uint64_t *id_out) {
  uint64_t id, start;
  slot_read(s, &id, &start);
  *id_out = id;
  pid_t pid = (pid_t)(uint32_t)id;
  return pid != 0 && mproc__proc_alive(pid, start);
}

/* Claim slot idx, which was `id` and is free or dead, for this process. */
static int slot_claim(sync_table *t, uint32_t idx, uint64_t id, pid_t pid,
                      uint64_t start) {
  sync_slot *s = &t->slots[idx];
  uint64_t gen = (id >> 32) + 1;
  uint64_t nid = (gen << 32) | (uint32_t)pid;
  if (!__atomic_compare_exchange_n(&s->id, &id, nid, 0, __ATOMIC_SEQ_CST,
                                   __ATOMIC_RELAXED)) {
    return 0;
  }
  /* A death here leaves the slot with this pid and no start time: the pid
   * alone then says whether it lives, and once it is gone the slot is
   * reclaimed as any dead process's. */
  MPROC__FAULT(OWNER_SLOT_CLAIMED);
  __atomic_store_n(&s->start, start, __ATOMIC_SEQ_CST);
  uint32_t token = idx | (((uint32_t)gen & GEN_MASK) << SYNC_SLOT_BITS);
  __atomic_store_n(&mproc__sync_self_token, token, __ATOMIC_RELEASE);
  MPROC__DEBUG("sync: pid %d registered as token %#x (slot %u)", (int)pid,
               token, idx);
  return 1;
}

int64_t mproc__sync_register(void) {
  pthread_once(&atfork_once, install_atfork);
  pthread_mutex_lock(&reg_mu);
  uint32_t have = __atomic_load_n(&mproc__sync_self_token, __ATOMIC_ACQUIRE);
  if (have != 0) {
    pthread_mutex_unlock(&reg_mu);
    return have;
  }
  sync_table *t = table();
  if (t == NULL) {
    pthread_mutex_unlock(&reg_mu);
    return MPROC_ENOMEM;
  }
  /* Before the token is published (a process with a token may take and
   * release locks): register for asymmetric barriers, so this process may
   * release an embedded "asym" lock with a plain store (internal.h). */
  __atomic_store_n(&mproc__sync_asym_ok, mproc__membarrier_register() == 0,
                   __ATOMIC_RELAXED);
  pid_t pid = mproc__getpid();
  uint64_t start = 0;
  if (mproc__proc_stat(pid, &start, NULL, NULL) != 0) {
    start = 0; /* no /proc: liveness falls back to kill(pid, 0) */
  }
  int64_t result = MPROC_EAGAIN;
  /* Pass 0 takes a never-used or released slot, pass 1 a dead one. */
  for (int pass = 0; pass < 2 && result < 0; pass++) {
    uint32_t hint = __atomic_fetch_add(&t->next, 1, __ATOMIC_RELAXED);
    for (uint32_t i = 0; i < NUM_SLOTS; i++) {
      uint32_t idx = FIRST_SLOT + (hint + i) % NUM_SLOTS;
      sync_slot *s = &t->slots[idx];
      uint64_t id = __atomic_load_n(&s->id, __ATOMIC_ACQUIRE);
      if ((uint32_t)id != 0) {
        if (pass == 0 || slot_alive(s, &id)) {
          continue;
        }
      }
      if (slot_claim(t, idx, id, pid, start)) {
        __atomic_store_n(&t->next, idx, __ATOMIC_RELAXED);
        result = __atomic_load_n(&mproc__sync_self_token, __ATOMIC_ACQUIRE);
        break;
      }
    }
  }
  pthread_mutex_unlock(&reg_mu);
  if (result < 0) {
    MPROC__WARN("sync: the process token table is full (%u live processes)",
                NUM_SLOTS);
  }
  return result;
}

int mproc__sync_token_alive(uint32_t token) {
  if (token == __atomic_load_n(&mproc__sync_self_token, __ATOMIC_RELAXED) ||
      token == SYNC_TOKEN_NOTREC) {
    return 1;
  }
  uint32_t idx = token & SYNC_SLOT_MASK;
  if (idx < FIRST_SLOT || idx > LAST_SLOT) {
    return 0; /* not a token any process has */
  }
  sync_table *t = table_peek();
  if (t == NULL) {
    return 1;
  }
  uint64_t id, start;
  slot_read(&t->slots[idx], &id, &start);
  if ((((uint32_t)(id >> 32)) & GEN_MASK) != (token >> SYNC_SLOT_BITS)) {
    return 0; /* the slot was reclaimed: its process had died */
  }
  pid_t pid = (pid_t)(uint32_t)id;
  return pid != 0 && mproc__proc_alive(pid, start);
}

pid_t mproc__sync_token_pid(uint32_t token) {
  uint32_t idx = token & SYNC_SLOT_MASK;
  sync_table *t = table_peek();
  if (t == NULL || idx < FIRST_SLOT || idx > LAST_SLOT) {
    return 0;
  }
  uint64_t id, start;
  slot_read(&t->slots[idx], &id, &start);
  if ((((uint32_t)(id >> 32)) & GEN_MASK) != (token >> SYNC_SLOT_BITS)) {
    return 0;
  }
  return (pid_t)(uint32_t)id;
}

int mproc__sync_in_arena_slow(const void *p, size_t size) {
  /* No arena, no object: check before asking for its range, which would
   * create it. */
  if (p == NULL || !mproc_arena_contains(p)) {
    return 0;
  }
  mproc_arena_info info;
  if (mproc_arena_get_info(&info) != 0) {
    return 0;
  }
  __atomic_store_n(&mproc__sync_arena_size, (uintptr_t)info.size,
                   __ATOMIC_RELAXED);
  __atomic_store_n(&mproc__sync_arena_base, (uintptr_t)info.base,
                   __ATOMIC_RELEASE);
  return sync_in_arena(p, size);
}

int mproc__sync_check_turn(uint64_t *last_ns, int force) {
  uint64_t now = mproc__now_ns();
  uint64_t last = __atomic_load_n(last_ns, __ATOMIC_RELAXED);
  if (!force && now - last < SYNC_CHECK_EVERY_NS && last <= now) {
    return 0;
  }
  return __atomic_compare_exchange_n(last_ns, &last, now, 0, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED);
}

int mproc__sync_wait_slice(uint32_t *addr, uint32_t val,
                           const mproc__deadline *d, uint64_t slice_ns) {
  uint64_t now = mproc__now_ns();
  mproc__deadline sd = {0, now + slice_ns};
  int is_slice = 1;
  if (!d->forever && d->at_ns <= sd.at_ns) {
    sd = *d;
    is_slice = 0;
    if (d->at_ns <= now) {
      return MPROC_ETIMEDOUT;
    }
  }
  int r = mproc__futex_wait(addr, val, &sd);
  if (r == -ETIMEDOUT) {
    return is_slice ? 1 : MPROC_ETIMEDOUT;
  }
  return 0;
}
