/*
 * queue_put_get.c - five processes put items on one Queue; the parent gets
 * them, joins the children, and drains what is left.
 *
 * From seed 000, the Queue example of the multiprocessing chapter:
 *
 *     def f(q, i):
 *         for x in range(random.randint(1, 4)):
 *             time.sleep(x)
 *             q.put([42, i, x])
 *
 *     q = Queue()
 *     ps = [Process(target=f, args=(q, i)) for i in range(5)]
 *     for p in ps: p.start()
 *     for _ in range(5): print(q.get())
 *     for p in ps: p.join()
 *     while not q.empty(): print(q.get())
 *
 * Messages are bytes: each item is sent as the text Python would print,
 * "[42, i, x]", without its NUL.  The sleeps are 0.1 * x s instead of x s
 * so the demo stays short (`--long` or MPROC_DEMO_LONG=1 restores x s).
 * The parent picks each child's randint(1, 4) and passes it in the
 * argument bytes, so that it can check the result: every item
 * [42, i, x] for x < n_i arrived exactly once, and nothing else.
 *
 * Joining before draining.  In Python, joining a child that still has
 * items in its Queue's buffer deadlocks (the child's feeder thread waits
 * for the pipe to be read before the child can exit: the "joining
 * processes that use queues" pitfall), so this program would hang there
 * if the children put more than the pipe holds.  An mproc put is complete
 * when it returns, bytes in the shared ring, so a child that has put its
 * items can exit and be joined at once, whatever is still queued.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

#define NPROCS 5
#define MAXITEMS 3 /* x in range(randint(1, 4)): at most 3 items a child */

struct f_arg {
  mproc_queue *q; /* shared: the Queue */
  int i;          /* the child's number */
  int n;          /* random.randint(1, 4), chosen by the parent */
};

static double step_seconds = 0.1;

static void nap(double seconds) {
  struct timespec left;
  left.tv_sec = (time_t)seconds;
  left.tv_nsec = (long)((seconds - (double)left.tv_sec) * 1e9);
  while (nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}

static int f(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  struct f_arg a;
  char item[32];
  int rc;

  if (len != sizeof a) {
    return 2;
  }
  memcpy(&a, arg, sizeof a);
  for (int x = 0; x < a.n; x++) {
    nap(step_seconds * x);
    int n = snprintf(item, sizeof item, "[42, %d, %d]", a.i, x);
    if ((rc = mproc_queue_put(a.q, item, (size_t)n, MPROC_FOREVER)) != 0) {
      fprintf(stderr, "f(%d): mproc_queue_put: %s\n", a.i, mproc_strerror(rc));
      return 3;
    }
  }
  return 0;
}

static int report(const char *what, int rc) {
  fprintf(stderr, "queue_put_get: %s: %s (%s)\n", what, mproc_strerror(rc),
          mproc_err_name(rc));
  return 1;
}

/* Prints an item and ticks it off seen[i][x]; 0, or 1 for an item that is
 * malformed, unexpected or seen twice. */
static int take(const char *buf, size_t len, const int *n,
                int seen[NPROCS][MAXITEMS]) {
  char text[32];
  int answer, i, x;

  if (len >= sizeof text) {
    fprintf(stderr, "queue_put_get: an item of %zu bytes\n", len);
    return 1;
  }
  memcpy(text, buf, len);
  text[len] = '\0';
  printf("%s\n", text);
  if (sscanf(text, "[%d, %d, %d]", &answer, &i, &x) != 3 || answer != 42 ||
      i < 0 || i >= NPROCS || x < 0 || x >= n[i] || seen[i][x]) {
    fprintf(stderr, "queue_put_get: unexpected item %s\n", text);
    return 1;
  }
  seen[i][x] = 1;
  return 0;
}

int main(int argc, char **argv) {
  const char *env = getenv("MPROC_DEMO_LONG");
  mproc_process *ps[NPROCS] = {NULL};
  mproc_queue *q = NULL;
  int n[NPROCS], seen[NPROCS][MAXITEMS] = {{0}};
  int status = 0, rc, total = 0, got = 0;
  void *buf;
  size_t len;

  if ((argc > 1 && strcmp(argv[1], "--long") == 0) ||
      (env != NULL && strcmp(env, "1") == 0)) {
    step_seconds = 1.0;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  srand((unsigned)time(NULL) ^ (unsigned)getpid());

  if ((rc = mproc_queue_new(&q, 0, NULL)) != 0) {
    return report("mproc_queue_new", rc);
  }
  printf("items per child, randint(1, 4):");
  for (int i = 0; i < NPROCS; i++) {
    n[i] = 1 + rand() % MAXITEMS; /* range(randint(1, 4)): 1 .. 3 items */
    total += n[i];
    printf(" %d", n[i]);
  }
  printf(" (%d items in all)\n", total);
  for (int i = 0; i < NPROCS; i++) {
    struct f_arg a = {q, i, n[i]};
    if ((rc = mproc_process_new(&ps[i], f, NULL, &a, sizeof a, NULL)) != 0) {
      status = report("mproc_process_new", rc);
      goto out;
    }
    if ((rc = mproc_process_start(ps[i])) != 0) {
      status = report("mproc_process_start", rc);
      goto out;
    }
  }

  /* for _ in range(5): print(q.get()) */
  for (int k = 0; k < NPROCS; k++) {
    if ((rc = mproc_queue_get(q, &buf, &len, MPROC_FOREVER)) != 0) {
      status = report("mproc_queue_get", rc);
      goto out;
    }
    status |= take(buf, len, n, seen);
    free(buf);
    got++;
  }

  /* for p in ps: p.join(), with items possibly still queued: fine here. */
  for (int i = 0; i < NPROCS; i++) {
    int code = 0;
    if ((rc = mproc_process_join(ps[i], MPROC_FOREVER)) != 0) {
      status = report("mproc_process_join", rc);
      goto out;
    }
    if ((rc = mproc_process_exitcode(ps[i], &code)) != 0) {
      status = report("mproc_process_exitcode", rc);
    } else if (code != 0) {
      fprintf(stderr, "queue_put_get: child %d exited with %d\n", i, code);
      status = 1;
    }
  }
  printf("joined all %d children; %ld items still queued\n", NPROCS,
         mproc_queue_qsize(q));

  /* while not q.empty(): print(q.get()), as a get that does not wait:
   * every child has ended, so what is queued now is all there is. */
  for (;;) {
    rc = mproc_queue_get(q, &buf, &len, 0);
    if (rc == MPROC_EEMPTY) {
      break;
    }
    if (rc != 0) {
      status = report("mproc_queue_get", rc);
      goto out;
    }
    status |= take(buf, len, n, seen);
    free(buf);
    got++;
  }
  if (status == 0 && got == total) {
    printf("check: %d items, every [42, i, x] for x < randint(1, 4) exactly "
           "once\n", got);
  } else if (status == 0) {
    fprintf(stderr, "queue_put_get: got %d items, want %d\n", got, total);
    status = 1;
  }

out:
  /* Every started child is joined, also after a failure, because an
   * object whose child still runs cannot be freed. */
  for (int i = 0; i < NPROCS; i++) {
    if (ps[i] == NULL) {
      continue;
    }
    if (mproc_process_pid(ps[i]) != 0 &&
        mproc_process_join(ps[i], 0) == MPROC_ETIMEDOUT) {
      (void)mproc_process_kill(ps[i]);
      (void)mproc_process_join(ps[i], MPROC_FOREVER);
    }
    if ((rc = mproc_process_free(ps[i])) != 0) {
      status = report("mproc_process_free", rc);
    }
  }
  if ((rc = mproc_queue_free(q)) != 0) {
    status = report("mproc_queue_free", rc);
  }
  return status;
}
