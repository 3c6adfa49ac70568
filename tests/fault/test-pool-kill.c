/*
 * tests/fault/test-pool-kill.c - a pool under outside kills (issue 5,
 * sections 2 and 4), with real processes and real signals, no mocks:
 *   - the pool's parent is SIGKILLed while its workers are busy: every
 *     worker is gone within 1 s (they die with their parent);
 *   - a Ctrl-C (SIGINT to the whole process group) during a map: the
 *     parent dies of SIGINT at once, the workers (which ignore SIGINT)
 *     follow it within 1 s;
 *   - a killer process SIGKILLs random workers during an imap of 100,000
 *     items: every item is accounted for (a correct result, or
 *     MPROC_EWORKERDIED; nothing lost silently, nothing run twice), and
 *     the pool closes and joins cleanly;
 *   - the same during a plain map: the first failure map reports is
 *     consistent with what ran.
 *
 * Workers are found through /proc: the processes whose parent (field 4 of
 * /proc/PID/stat) is the pool's parent.  That needs no CONFIG_PROC_CHILDREN
 * (/proc/PID/task/TID/children), which not every kernel has, and it sees
 * the children of every thread of the parent (replacement workers are
 * forked by the pool's result thread).
 */
#include "mproc/pool.h"
#include "task.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

/* ==================== /proc helpers ==================== */

static char pid_stat(pid_t pid, pid_t *ppid) {
  return test_proc_stat(pid, ppid, NULL);
}

/* Whether pid is gone or in the kernel's exit path (PF_EXITING in its
 * flags): it runs no more user code, whatever the kernel still has to
 * tear down. */
#define TEST_PF_EXITING 0x00000004u
static int pid_exiting(pid_t pid) {
  unsigned flags = 0;
  char state = test_proc_stat(pid, NULL, &flags);
  return state == 0 || state == 'Z' || state == 'X' ||
         (flags & TEST_PF_EXITING) != 0;
}

/* The live (not zombie) children of parent, except skip.  Returns how many
 * (up to max are stored). */
static int live_children(pid_t parent, pid_t skip, pid_t *out, int max) {
  DIR *d = opendir("/proc");
  if (d == NULL) {
    return 0;
  }
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char *end;
    long v = strtol(e->d_name, &end, 10);
    if (*end != '\0' || v <= 0 || (pid_t)v == skip) {
      continue;
    }
    pid_t pp = 0;
    char s = pid_stat((pid_t)v, &pp);
    if (s != 0 && s != 'Z' && s != 'X' && pp == parent) {
      if (n < max) {
        out[n] = (pid_t)v;
      }
      n++;
    }
  }
  closedir(d);
  return n;
}

/* On a failure: what the kernel says about pid (state, signal masks,
 * where it sleeps) and the machine's load, to tell slow from stuck. */
static void dump_proc(pid_t pid) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (f != NULL) {
    while (fgets(buf, sizeof buf, f) != NULL) {
      if (strncmp(buf, "State", 5) == 0 || strncmp(buf, "PPid", 4) == 0 ||
          strncmp(buf, "Sig", 3) == 0 || strncmp(buf, "ShdPnd", 6) == 0 ||
          strncmp(buf, "Threads", 7) == 0) {
        fprintf(stderr, "#   %d %s", (int)pid, buf);
      }
    }
    fclose(f);
  }
  const char *more[] = {"wchan", "stack"};
  for (int k = 0; k < 2; k++) {
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, more[k]);
    f = fopen(path, "r");
    if (f != NULL) {
      while (fgets(buf, sizeof buf, f) != NULL) {
        fprintf(stderr, "#   %d %s: %s%s", (int)pid, more[k], buf,
                k == 0 ? "\n" : "");
      }
      fclose(f);
    }
  }
  f = fopen("/proc/loadavg", "r");
  if (f != NULL) {
    if (fgets(buf, sizeof buf, f) != NULL) {
      fprintf(stderr, "#   loadavg %s", buf);
    }
    fclose(f);
  }
}

/* ==================== a parent that dies ==================== */

enum { NW = 3, NITEMS = 12, MAXKIDS = 16 };

/* Shared between the test, the pool's parent and its workers. */
typedef struct kboard {
  int pids[NITEMS]; /* item i's worker, posted when it starts */
} kboard;

static kboard *KB;

/* A long item: post the worker's pid, then sleep (the parent is killed). */
static int post_and_sleep(const void *in, void *out, void *ctx) {
  (void)ctx;
  int i;
  memcpy(&i, in, sizeof i);
  __atomic_store_n(&KB->pids[i], (int)getpid(), __ATOMIC_SEQ_CST);
  test_sleep(30);
  memcpy(out, &i, sizeof i);
  return 0;
}

/* The pool's parent: a pool of NW workers, busy with a long map. */
static void busy_pool_parent(int own_group) {
  if (own_group) {
    setpgid(0, 0);
    /* Ctrl-C's default: whoever started this test (a background job of a
     * shell ignores SIGINT) must not change what is tested. */
    signal(SIGINT, SIG_DFL);
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    sigprocmask(SIG_UNBLOCK, &ss, NULL);
  }
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = NW;
  mproc_pool *p;
  if (mproc_pool_new(&p, &o) != 0) {
    _exit(2);
  }
  int in[NITEMS], out[NITEMS];
  for (int i = 0; i < NITEMS; i++) {
    in[i] = i;
  }
  mproc_map_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.chunksize = 1;
  (void)mproc_pool_map(p, post_and_sleep, NULL, in, NITEMS, sizeof(int), out,
                       sizeof(int), &mo, NULL);
  _exit(3); /* never: the test kills this process first */
}

/* Start the pool's parent; once its NW workers run an item each, fill
 * workers[] with every child it has (those NW, checked against /proc, and
 * any other: all must go with it).  Returns the pool parent's pid. */
static pid_t start_busy_pool(int own_group, pid_t *workers, int *nworkers) {
  ASSERT_OK(mproc_shm_calloc((void **)&KB, 1, sizeof *KB));
  pid_t child = test_fork();
  if (child == 0) {
    busy_pool_parent(own_group);
  }
  if (own_group) {
    setpgid(child, child); /* also done by the child: whoever runs first */
  }
  /* Items 0..NW-1 are the first chunks queued: one per worker, each held
   * for 30 s, so they run on NW different workers. */
  double end = test_now() + 10 * test_timeout_mult();
  pid_t posted[NW];
  for (int i = 0; i < NW; i++) {
    while ((posted[i] = __atomic_load_n(&KB->pids[i], __ATOMIC_SEQ_CST)) ==
           0) {
      ASSERT(test_now() < end);
      ASSERT(test_pid_running(child));
      test_sleep(0.001);
    }
  }
  for (int i = 0; i < NW; i++) {
    pid_t pp = 0;
    ASSERT_NE(pid_stat(posted[i], &pp), 0);
    ASSERT_EQ(pp, child);
    for (int j = 0; j < i; j++) {
      ASSERT_NE(posted[i], posted[j]);
    }
  }
  int n = live_children(child, 0, workers, MAXKIDS);
  ASSERT_GE(n, NW);
  ASSERT_LE(n, MAXKIDS);
  for (int i = 0; i < NW; i++) {
    int found = 0;
    for (int j = 0; j < n; j++) {
      found |= workers[j] == posted[i];
    }
    ASSERT(found);
  }
  if (own_group) {
    ASSERT_EQ(getpgid(child), child);
  }
  /* Each worker leads a process group of its own (for its tasks'
   * children), so a Ctrl-C to the parent's group does not reach it. */
  for (int i = 0; i < n; i++) {
    ASSERT_EQ(getpgid(workers[i]), workers[i]);
  }
  *nworkers = n;
  return child;
}

/*
 * After the pool's parent ended at t0: each of its children (reparented
 * to this test process, a subreaper) is gone within 1 s of t0 - ended, or
 * in the kernel's exit path - and then reaped.  "In the exit path" counts
 * because of io_uring: a worker that drops the last reference to its dead
 * parent's ring (through the parent's pending waitid requests for it)
 * tears the ring down inside do_exit, which on a loaded machine took
 * 1-3 s in state D, SIGKILL pending, no user code running.
 */
static void assert_workers_gone(const pid_t *workers, int n, double t0,
                                int *codes) {
  double limit = t0 + 1.0 + test_slack();
  double took = 0;
  for (;;) {
    int all = 1;
    for (int i = 0; i < n && all; i++) {
      all = pid_exiting(workers[i]);
    }
    took = test_now() - t0;
    if (all || test_now() > limit) {
      break;
    }
    test_sleep(0.001);
  }
  for (int i = 0; i < n; i++) {
    int code = test_wait_pid(workers[i], 10 * test_timeout_mult());
    codes[i] = code;
    if (code == INT32_MIN) {
      fprintf(stderr, "# worker %d still running %.3f s after its parent "
                      "was signalled\n",
              (int)workers[i], test_now() - t0);
      dump_proc(workers[i]);
      /* Slow or stuck?  Give it 5 s more before killing it. */
      int late = test_wait_pid(workers[i], 5);
      fprintf(stderr, "# worker %d: %s (%.3f s after the signal)\n",
              (int)workers[i], late == INT32_MIN ? "still running" : "ended",
              test_now() - t0);
      for (int j = i; j < n; j++) {
        kill(workers[j], SIGKILL);
        test_wait_pid(workers[j], 5);
      }
      ASSERT(0);
    }
    ASSERT(!test_pid_running(workers[i]));
  }
  printf("# %d workers gone %.1f ms after the signal (exit codes", n,
         took * 1e3);
  for (int i = 0; i < n; i++) {
    printf(" %d", codes[i]);
  }
  printf(")\n");
  ASSERT_DBL_LE(took, 1.0 + test_slack());
  pid_t kids[16];
  ASSERT_EQ(live_children(getpid(), 0, kids, 16), 0);
  mproc_shm_free(KB);
  KB = NULL;
}

/* The pool's parent is SIGKILLed (no cleanup can run in it): its busy
 * workers are gone within 1 s. */
TEST_IMPL(pool_parent_sigkill_workers_gone) {
  for (int round = 0; round < 3; round++) {
    pid_t workers[MAXKIDS];
    int n;
    pid_t child = start_busy_pool(0, workers, &n);
    double t0 = test_now();
    ASSERT_EQ(kill(child, SIGKILL), 0);
    ASSERT_EQ(test_wait_pid(child, 5), -SIGKILL);
    int codes[MAXKIDS];
    assert_workers_gone(workers, n, t0, codes);
  }
  return 0;
}

/* Ctrl-C in a terminal: SIGINT to the whole foreground process group.
 * The workers are not in it (each leads its own group), and ignore SIGINT
 * anyway; the parent dies of it (the default disposition) at once, and
 * the workers follow it. */
TEST_IMPL(pool_sigint_group_during_map) {
  for (int round = 0; round < 3; round++) {
    pid_t workers[MAXKIDS];
    int n;
    pid_t child = start_busy_pool(1, workers, &n);
    /* A worker alone shrugs SIGINT off. */
    for (int i = 0; i < n; i++) {
      ASSERT_EQ(kill(workers[i], SIGINT), 0);
    }
    test_sleep(0.05);
    for (int i = 0; i < n; i++) {
      ASSERT(test_pid_running(workers[i]));
    }
    ASSERT(test_pid_running(child));
    double t0 = test_now();
    ASSERT_EQ(kill(-child, SIGINT), 0);
    int code = test_wait_pid(child, 1.0 + test_slack());
    if (code == INT32_MIN) {
      fprintf(stderr, "# the pool's parent %d still running %.3f s after "
                      "SIGINT\n", (int)child, test_now() - t0);
      dump_proc(child);
      code = test_wait_pid(child, 5);
      fprintf(stderr, "# then: %d (%.3f s after the signal)\n", code,
              test_now() - t0);
      if (code == INT32_MIN) {
        kill(child, SIGKILL);
        test_wait_pid(child, 5);
      }
      for (int i = 0; i < n; i++) {
        kill(workers[i], SIGKILL);
        test_wait_pid(workers[i], 5);
      }
      ASSERT(0);
    }
    ASSERT_EQ(code, -SIGINT);
    int codes[MAXKIDS];
    assert_workers_gone(workers, n, t0, codes);
    /* They died with their parent, not of the Ctrl-C. */
    for (int i = 0; i < n; i++) {
      ASSERT_NE(codes[i], -SIGINT);
    }
  }
  return 0;
}

/* ==================== a killer during a map ==================== */

enum { NK = 100000, MAX_KILLS = 20, KWORKERS = 4 };

/* Shared with the killer and the workers. */
typedef struct kctl {
  int go;    /* the killer may start */
  int stop;  /* the killer must end */
  int kills; /* SIGKILLs it delivered */
} kctl;

typedef struct krec {
  uint32_t idx;
  uint32_t round;
  uint64_t x;
} krec;

typedef struct kout {
  uint64_t y;
  uint32_t idx;
  uint32_t pad;
} kout;

static uint32_t *RUNS; /* RUNS[i]: times item i's body finished */

static uint64_t kmix(uint64_t x) {
  x ^= x >> 31;
  x *= UINT64_C(0x9e3779b97f4a7c15);
  x ^= x >> 29;
  return x;
}

/* ~20 us of work, the result, and last the item's "done" marker. */
static int spin_item(const void *in, void *out, void *ctx) {
  (void)ctx;
  krec r;
  memcpy(&r, in, sizeof r);
  double end = test_now() + 20e-6;
  while (test_now() < end) {
  }
  kout o = {kmix(r.x), r.idx, 0};
  memcpy(out, &o, sizeof o);
  __atomic_fetch_add(&RUNS[r.idx], 1, __ATOMIC_RELEASE);
  return 0;
}

/* The killer: once told to go, every 2-30 ms SIGKILL a random live child
 * of the test process (a pool worker: the only other children), at most
 * MAX_KILLS times; it ends when told to stop. */
static pid_t start_killer(kctl *c, uint64_t seed) {
  pid_t testpid = getpid();
  pid_t pid = test_fork();
  if (pid != 0) {
    return pid;
  }
  pid_t me = getpid();
  uint64_t rs = seed | 1;
  while (!__atomic_load_n(&c->go, __ATOMIC_SEQ_CST)) {
    if (__atomic_load_n(&c->stop, __ATOMIC_SEQ_CST)) {
      _exit(0);
    }
    test_sleep(0.0005);
  }
  int kills = 0;
  while (!__atomic_load_n(&c->stop, __ATOMIC_SEQ_CST)) {
    if (kills >= MAX_KILLS) {
      test_sleep(0.001);
      continue;
    }
    test_sleep((double)(2000 + test_rand(&rs) % 28000) / 1e6);
    pid_t kids[64];
    int n = live_children(testpid, me, kids, 64);
    if (n > 64) {
      n = 64;
    }
    if (n == 0) {
      continue;
    }
    pid_t victim = kids[test_rand(&rs) % (uint64_t)n];
    if (kill(victim, SIGKILL) == 0) {
      kills++;
      __atomic_store_n(&c->kills, kills, __ATOMIC_SEQ_CST);
    }
  }
  _exit(0);
}

static int stop_killer(kctl *c, pid_t killer) {
  __atomic_store_n(&c->stop, 1, __ATOMIC_SEQ_CST);
  ASSERT_EQ(test_wait_pid(killer, 10 * test_timeout_mult()), 0);
  return __atomic_load_n(&c->kills, __ATOMIC_SEQ_CST);
}

static krec *make_input(uint32_t round) {
  krec *in = malloc(NK * sizeof *in);
  ASSERT_NOT_NULL(in);
  uint64_t rs = 0x1234567ULL + round;
  for (uint32_t i = 0; i < NK; i++) {
    in[i].idx = i;
    in[i].round = round;
    in[i].x = test_rand(&rs);
  }
  return in;
}

static mproc_pool *new_kpool(void) {
  mproc_pool_opts o;
  memset(&o, 0, sizeof o);
  o.processes = KWORKERS;
  mproc_pool *p;
  ASSERT_OK(mproc_pool_new(&p, &o));
  return p;
}

static void finish_kpool(mproc_pool *p) {
  ASSERT_OK(mproc_pool_close(p));
  ASSERT_OK(mproc_pool_join(p, 20 * test_timeout_mult()));
  mproc_pool_stats st;
  ASSERT_OK(mproc_pool_stats_get(p, &st));
  ASSERT_GE(st.workers_died, 1);
  ASSERT_OK(mproc_pool_free(p));
}

static int kill_rounds(void) { return test_timeout_mult() > 1 ? 2 : 3; }

/* imap (ordered and unordered, chunks of 1 and more) of 100,000 items
 * while a killer SIGKILLs random workers: every item is delivered once,
 * as a correct result or MPROC_EWORKERDIED; an item whose body did not
 * finish was reported failed; an item whose body finished but was
 * reported failed was the one in flight at a kill (at most one per
 * kill); no item ran twice. */
TEST_IMPL(pool_killer_map_100k) {
  static const long chunks[3] = {1, 16, 7};
  static const int unordered[3] = {0, 1, 0};
  kctl *c;
  ASSERT_OK(mproc_shm_calloc((void **)&c, 1, sizeof *c));
  ASSERT_OK(mproc_shm_calloc((void **)&RUNS, NK, sizeof *RUNS));
  unsigned char *seen = malloc(NK);
  ASSERT_NOT_NULL(seen);
  for (int round = 0; round < kill_rounds(); round++) {
    memset(c, 0, sizeof *c);
    memset(RUNS, 0, NK * sizeof *RUNS);
    memset(seen, 0, NK);
    krec *in = make_input((uint32_t)round);
    pid_t killer = start_killer(c, 0x9876ULL + (uint64_t)round * 77);
    mproc_pool *p = new_kpool();
    mproc_imap *it;
    ASSERT_OK(mproc_pool_imap(p, spin_item, NULL, in, NK, sizeof(krec),
                              sizeof(kout), chunks[round],
                              unordered[round], &it));
    __atomic_store_n(&c->go, 1, __ATOMIC_SEQ_CST);
    size_t failed = 0, failed_but_ran = 0, delivered = 0;
    for (;;) {
      kout o;
      size_t idx = (size_t)-1;
      memset(&o, 0xa5, sizeof o);
      int rc = mproc_imap_next(it, &o, &idx, 15 * test_timeout_mult());
      if (rc == MPROC_EOF) {
        break;
      }
      if (rc != 0) {
        ASSERT_ERR(rc, MPROC_EWORKERDIED);
      }
      ASSERT_LT(idx, NK);
      if (!unordered[round]) {
        ASSERT_UEQ(idx, delivered);
      }
      ASSERT_EQ(seen[idx], 0);
      seen[idx] = 1;
      delivered++;
      uint32_t runs = __atomic_load_n(&RUNS[idx], __ATOMIC_ACQUIRE);
      ASSERT_LE(runs, 1);
      if (rc == 0) {
        ASSERT_UEQ(runs, 1);
        ASSERT_UEQ(o.idx, idx);
        ASSERT_UEQ(o.y, kmix(in[idx].x));
      } else {
        failed++;
        failed_but_ran += runs;
      }
    }
    ASSERT_UEQ(delivered, NK);
    ASSERT_ERR(mproc_imap_next(it, &(kout){0}, NULL, 0), MPROC_EOF);
    ASSERT_OK(mproc_imap_free(it));
    int kills = stop_killer(c, killer);
    printf("# round %d (chunk %ld%s): %d kills, %zu items failed, %zu of "
           "them after their body ran\n",
           round, chunks[round], unordered[round] ? ", unordered" : "",
           kills, failed, failed_but_ran);
    ASSERT_GE(kills, 1);
    ASSERT_GE(failed, 1);
    ASSERT_LE(failed_but_ran, (size_t)kills);
    /* Nothing runs after the map: no item ran late or twice. */
    for (size_t i = 0; i < NK; i++) {
      ASSERT_LE(RUNS[i], 1);
    }
    finish_kpool(p);
    free(in);
  }
  free(seen);
  mproc_shm_free(RUNS);
  RUNS = NULL;
  mproc_shm_free(c);
  return 0;
}

/* map (not imap) of 100,000 items, chunks of a known size, while a killer
 * SIGKILLs random workers.  A chunk runs its items in order on one worker,
 * and a death stops it, so in every chunk the items that ran form a
 * prefix.  Every item before the first failure map reports ran and has
 * its result; so has every item of a chunk that ran whole; an item that
 * did not run means map failed with MPROC_EWORKERDIED, at or before it. */
TEST_IMPL(pool_map_killer_first_error) {
  static const long chunks[3] = {37, 500, 1};
  kctl *c;
  ASSERT_OK(mproc_shm_calloc((void **)&c, 1, sizeof *c));
  ASSERT_OK(mproc_shm_calloc((void **)&RUNS, NK, sizeof *RUNS));
  kout *out = malloc(NK * sizeof *out);
  ASSERT_NOT_NULL(out);
  for (int round = 0; round < kill_rounds(); round++) {
    memset(c, 0, sizeof *c);
    memset(RUNS, 0, NK * sizeof *RUNS);
    memset(out, 0xa5, NK * sizeof *out);
    krec *in = make_input(100 + (uint32_t)round);
    pid_t killer = start_killer(c, 0x5432ULL + (uint64_t)round * 91);
    mproc_pool *p = new_kpool();
    mproc_map_opts mo;
    memset(&mo, 0, sizeof mo);
    mo.chunksize = chunks[round];
    mproc_async *r;
    ASSERT_OK(mproc_pool_map_async(p, spin_item, NULL, in, NK, sizeof(krec),
                                   out, sizeof(kout), &mo, &r));
    __atomic_store_n(&c->go, 1, __ATOMIC_SEQ_CST);
    int rc = mproc_async_get(r, 30 * test_timeout_mult());
    ASSERT(rc != MPROC_ETIMEDOUT);
    int kills = stop_killer(c, killer);
    mproc_map_error me;
    memset(&me, 0, sizeof me);
    size_t first_bad = NK;
    if (rc != 0) {
      ASSERT_ERR(rc, MPROC_EWORKERDIED);
      ASSERT_OK(mproc_async_map_error(r, &me));
      ASSERT_ERR(me.error, MPROC_EWORKERDIED);
      ASSERT_EQ(me.task_code, 0);
      ASSERT_LT(me.index, NK);
      first_bad = me.index;
    } else {
      ASSERT_ERR(mproc_async_map_error(r, &me), MPROC_ESTATE);
    }
    ASSERT_OK(mproc_async_free(r));
    size_t not_run = 0, first_not_run = NK, whole_chunks = 0;
    size_t ran_but_lost = 0;
    for (size_t s = 0; s < NK; s += (size_t)chunks[round]) {
      size_t e = s + (size_t)chunks[round];
      if (e > NK) {
        e = NK;
      }
      size_t ran = s;
      while (ran < e && RUNS[ran] == 1) {
        ran++;
      }
      for (size_t i = ran; i < e; i++) {
        ASSERT_EQ(RUNS[i], 0); /* a prefix ran, the rest did not */
      }
      if (ran < e && first_not_run == NK) {
        first_not_run = ran;
      }
      not_run += e - ran;
      if (ran == e) {
        whole_chunks++;
        for (size_t i = s; i < e; i++) {
          int correct = out[i].idx == i && out[i].y == kmix(in[i].x);
          if (!correct && out[i].idx == 0 && out[i].y == 0) {
            /* Its body ran, but the kill came before the worker counted
             * it done: reported lost, and a lost record reads zeros. */
            ran_but_lost++;
            continue;
          }
          ASSERT_UEQ(out[i].idx, i);
          ASSERT_UEQ(out[i].y, kmix(in[i].x));
        }
      }
    }
    /* At most the item in flight at each kill ran and was lost. */
    ASSERT_LE(ran_but_lost, (size_t)kills);
    /* Before the first failure: every item ran, with its result. */
    for (size_t i = 0; i < first_bad; i++) {
      ASSERT_UEQ(RUNS[i], 1);
      ASSERT_UEQ(out[i].idx, i);
      ASSERT_UEQ(out[i].y, kmix(in[i].x));
    }
    /* An item that did not run was reported: at or after the first
     * failure. */
    ASSERT_LE(first_bad, first_not_run);
    printf("# round %d (chunk %ld): %d kills, map %s, first error at %zu, "
           "%zu items did not run (first %zu), %zu whole chunks\n",
           round, chunks[round], kills, mproc_err_name(rc), first_bad,
           not_run, first_not_run, whole_chunks);
    ASSERT_GE(kills, 1);
    ASSERT_ERR(rc, MPROC_EWORKERDIED); /* some kill hit a running item */
    finish_kpool(p);
    free(in);
  }
  free(out);
  mproc_shm_free(RUNS);
  RUNS = NULL;
  mproc_shm_free(c);
  return 0;
}
