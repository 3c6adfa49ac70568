/*
 * tests/behaviour/test-shared-contention.c - many processes incrementing
 * one shared value: the atomic add and a compare-exchange loop need no
 * lock and lose nothing; get then set under the value's lock (Python's
 * `with v.get_lock(): v.value += 1`) loses nothing; get then set WITHOUT
 * the lock (Python's bare `v.value += 1`) may lose updates, and is only
 * checked not to invent any.
 */
#include "internal.h"
#include "task.h"

#define NPROCS 8
#define NINCR 100000

enum mode { M_ADD, M_CAS, M_LOCKED, M_UNLOCKED };

struct incr_arg {
  mproc_value *v;
  int mode;
  int n;
};

static int t_increment(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  struct incr_arg ia;
  ASSERT_EQ(len, sizeof ia);
  memcpy(&ia, arg, sizeof ia);
  mproc_lock *l = mproc_value_get_lock(ia.v);
  for (int i = 0; i < ia.n; i++) {
    int64_t x;
    switch (ia.mode) {
    case M_ADD:
      ASSERT_OK(mproc_value_add(ia.v, 1, NULL));
      break;
    case M_CAS: {
      ASSERT_OK(mproc_value_get_i64(ia.v, &x));
      int r;
      while ((r = mproc_value_cas(ia.v, &x, x + 1)) == MPROC_EAGAIN) {
      }
      ASSERT_OK(r);
      break;
    }
    case M_LOCKED:
      ASSERT_OK(mproc_lock_acquire(l, MPROC_FOREVER));
      ASSERT_OK(mproc_value_get_i64(ia.v, &x));
      ASSERT_OK(mproc_value_set_i64(ia.v, x + 1));
      ASSERT_OK(mproc_lock_release(l));
      break;
    default:
      ASSERT_OK(mproc_value_get_i64(ia.v, &x));
      ASSERT_OK(mproc_value_set_i64(ia.v, x + 1));
      break;
    }
  }
  return 0;
}

/* Start NPROCS children doing n increments each; the final value. */
static int64_t run_incrementers(mproc_value *v, int mode, int n) {
  mproc_process *p[NPROCS];
  struct incr_arg ia = {v, mode, n};
  for (int i = 0; i < NPROCS; i++) {
    ASSERT_OK(mproc_process_new(&p[i], t_increment, NULL, &ia, sizeof ia,
                                NULL));
  }
  for (int i = 0; i < NPROCS; i++) {
    ASSERT_OK(mproc_process_start(p[i]));
  }
  for (int i = 0; i < NPROCS; i++) {
    int code = -1000;
    ASSERT_OK(mproc_process_join(p[i], MPROC_FOREVER));
    ASSERT_OK(mproc_process_exitcode(p[i], &code));
    ASSERT_EQ(code, 0);
    ASSERT_OK(mproc_process_free(p[i]));
  }
  int64_t x;
  ASSERT_OK(mproc_value_get_i64(v, &x));
  return x;
}

TEST_IMPL_ALL_METHODS(shared_value_atomic_add_many_processes) {
  /* A raw 'i' and a locked 'q': the add ignores the lock either way. */
  mproc_value *v;
  ASSERT_OK(mproc_raw_value_new(&v, 'i', NULL));
  ASSERT_EQ(run_incrementers(v, M_ADD, NINCR), (int64_t)NPROCS * NINCR);
  ASSERT_OK(mproc_value_free(v));
  ASSERT_OK(mproc_value_new(&v, 'q', NULL, NULL));
  ASSERT_EQ(run_incrementers(v, M_ADD, NINCR), (int64_t)NPROCS * NINCR);
  ASSERT_OK(mproc_value_free(v));
  /* 'H' wraps modulo 65536, exactly. */
  ASSERT_OK(mproc_raw_value_new(&v, 'H', NULL));
  ASSERT_EQ(run_incrementers(v, M_ADD, NINCR),
            ((int64_t)NPROCS * NINCR) % 65536);
  ASSERT_OK(mproc_value_free(v));
  return 0;
}

TEST_IMPL(shared_value_cas_loop_many_processes) {
  mproc_value *v;
  ASSERT_OK(mproc_raw_value_new(&v, 'l', NULL));
  ASSERT_EQ(run_incrementers(v, M_CAS, NINCR), (int64_t)NPROCS * NINCR);
  ASSERT_OK(mproc_value_free(v));
  return 0;
}

TEST_IMPL(shared_value_locked_get_set_many_processes) {
  mproc_value *v;
  ASSERT_OK(mproc_value_new(&v, 'i', NULL, NULL));
  ASSERT_EQ(run_incrementers(v, M_LOCKED, NINCR), (int64_t)NPROCS * NINCR);
  ASSERT_EQ(mproc_lock_is_locked(mproc_value_get_lock(v)), 0);
  ASSERT_OK(mproc_value_free(v));
  return 0;
}

TEST_IMPL(shared_value_unlocked_get_set_may_lose) {
  /* Python's bare `v.value += 1` from several processes: each get and
   * each set is locked, the pair is not.  Updates may be lost (how many
   * depends on the machine); none may be invented. */
  mproc_value *v;
  ASSERT_OK(mproc_value_new(&v, 'i', NULL, NULL));
  int64_t total = run_incrementers(v, M_UNLOCKED, NINCR / 10);
  ASSERT_GT(total, 0);
  ASSERT_LE(total, (int64_t)NPROCS * (NINCR / 10));
  printf("# locked get + set without holding the lock: %" PRId64
         " of %d increments kept\n", total, NPROCS * (NINCR / 10));
  ASSERT_OK(mproc_value_free(v));

  ASSERT_OK(mproc_raw_value_new(&v, 'q', NULL));
  total = run_incrementers(v, M_UNLOCKED, NINCR);
  ASSERT_GT(total, 0);
  ASSERT_LE(total, (int64_t)NPROCS * NINCR);
  printf("# raw get + set: %" PRId64 " of %d increments kept\n", total,
         NPROCS * NINCR);
  ASSERT_OK(mproc_value_free(v));
  return 0;
}
