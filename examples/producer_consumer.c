/*
 * producer_consumer.c - producers and consumers on a JoinableQueue: the
 * main process waits until every item has been handled (queue.join()),
 * then stops the consumers.
 *
 * From seed 002, "生产者消费者模型" (the producer-consumer model):
 *
 *     def consumer(q):
 *         while True:
 *             res = q.get()
 *             time.sleep(random.randint(1, 3))
 *             print('%s 吃 %s' % (os.getpid(), res))
 *             q.task_done()
 *
 *     def producer(name, q):
 *         for i in range(10):
 *             time.sleep(random.randint(1, 3))
 *             res = '%s%s' % (name, i)
 *             q.put(res)
 *             print('%s 生产了 %s' % (os.getpid(), res))
 *
 *     q = JoinableQueue()
 *     p1 = Process(target=producer, args=('包子', q))
 *     p2 = Process(target=producer, args=('骨头', q))
 *     p3 = Process(target=producer, args=('泔水', q))
 *     c1 = Process(target=consumer, args=(q,)); c1.daemon = True
 *     c2 = Process(target=consumer, args=(q,)); c2.daemon = True
 *     (start all) p1.join(); p2.join(); p3.join()
 *     q.join()     # every item produced has been task_done()
 *     print('主')
 *
 * The seed's consumers loop forever and die as daemons when the main
 * process ends.  Here the main process stops them itself: after q.join()
 * it closes the queue (mproc_queue_close), and a consumer waiting in
 * mproc_queue_get gets MPROC_ECLOSED and returns 0; the main process joins
 * them and checks their exit codes.
 *
 * Every item is a small struct (the producer's number, the item's number
 * and its name, "包子3"): messages are bytes, and a struct is fine between
 * processes of one program.  Each consumer counts the items it eats in a
 * shared Array, one element per item, under the Array's lock; the main
 * process checks at the end that every element is exactly 1: every item
 * arrived, none twice.
 *
 * The seed makes 10 items a producer and sleeps randint(1, 3) s per step;
 * this makes 5 and sleeps randint(1, 3) * 0.05 s (`--long` or
 * MPROC_DEMO_LONG=1 restores the seed's 10 items and 1 .. 3 s).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

#define NPRODUCERS 3
#define NCONSUMERS 2
#define MAXITEMS 10 /* items a producer makes with --long */

static const char *const names[NPRODUCERS] = {"包子", "骨头", "泔水"};

struct item {
  int producer; /* 0 .. NPRODUCERS-1 */
  int seq;      /* 0 .. items-1 */
  char name[32]; /* '%s%s' % (name, i) */
};

struct shared {
  mproc_queue *q;     /* JoinableQueue() */
  mproc_array *eaten; /* Array('i', NPRODUCERS * MAXITEMS) */
  int items;          /* items a producer makes */
  double unit;        /* seconds per randint(1, 3) step */
  int id;             /* the producer's number (producers only) */
};

static void nap(double seconds) {
  struct timespec left;
  left.tv_sec = (time_t)seconds;
  left.tv_nsec = (long)((seconds - (double)left.tv_sec) * 1e9);
  while (nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}

/* time.sleep(random.randint(1, 3)), scaled. */
static void random_nap(double unit) { nap(unit * (1 + rand() % 3)); }

static int producer(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  struct shared s;
  int rc;

  if (len != sizeof s) {
    return 2;
  }
  memcpy(&s, arg, sizeof s);
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  for (int i = 0; i < s.items; i++) {
    struct item it = {s.id, i, ""};
    random_nap(s.unit);
    snprintf(it.name, sizeof it.name, "%s%d", names[s.id], i);
    if ((rc = mproc_queue_put(s.q, &it, sizeof it, MPROC_FOREVER)) != 0) {
      fprintf(stderr, "producer %s: mproc_queue_put: %s\n", names[s.id],
              mproc_strerror(rc));
      return 3;
    }
    printf("%d 生产了 %s\n", (int)getpid(), it.name);
  }
  return 0;
}

static int consumer(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  struct shared s;
  int rc;

  if (len != sizeof s) {
    return 2;
  }
  memcpy(&s, arg, sizeof s);
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  int *eaten = mproc_array_ptr(s.eaten);
  mproc_lock *lock = mproc_array_get_lock(s.eaten);
  for (;;) {
    struct item it;
    size_t n;
    rc = mproc_queue_get_into(s.q, &it, sizeof it, &n, MPROC_FOREVER);
    if (rc == MPROC_ECLOSED) {
      return 0; /* the main process closed the queue: no more items */
    }
    if (rc != 0 || n != sizeof it || it.producer < 0 ||
        it.producer >= NPRODUCERS || it.seq < 0 || it.seq >= s.items) {
      fprintf(stderr, "consumer: bad get (%s, %zu bytes)\n",
              rc != 0 ? mproc_strerror(rc) : "bad item", n);
      return 3;
    }
    random_nap(s.unit);
    printf("%d 吃 %s\n", (int)getpid(), it.name);
    /* with eaten.get_lock(): eaten[k] += 1 */
    if ((rc = mproc_lock_acquire(lock, MPROC_FOREVER)) != 0) {
      fprintf(stderr, "consumer: acquire: %s\n", mproc_strerror(rc));
      return 3;
    }
    eaten[it.producer * MAXITEMS + it.seq] += 1;
    if ((rc = mproc_lock_release(lock)) != 0) {
      fprintf(stderr, "consumer: release: %s\n", mproc_strerror(rc));
      return 3;
    }
    if ((rc = mproc_queue_task_done(s.q)) != 0) {
      fprintf(stderr, "consumer: mproc_queue_task_done: %s\n",
              mproc_strerror(rc));
      return 3;
    }
  }
}

static int report(const char *what, int rc) {
  fprintf(stderr, "producer_consumer: %s: %s (%s)\n", what,
          mproc_strerror(rc), mproc_err_name(rc));
  return 1;
}

/* Joins p and checks its exit code; 0 or 1. */
static int join_one(mproc_process *p, const char *what) {
  int rc, code = 0;
  if ((rc = mproc_process_join(p, MPROC_FOREVER)) != 0) {
    return report("mproc_process_join", rc);
  }
  if ((rc = mproc_process_exitcode(p, &code)) != 0) {
    return report("mproc_process_exitcode", rc);
  }
  if (code != 0) {
    fprintf(stderr, "producer_consumer: %s exited with %d\n", what, code);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *env = getenv("MPROC_DEMO_LONG");
  mproc_process *prod[NPRODUCERS] = {NULL}, *cons[NCONSUMERS] = {NULL};
  struct shared s = {NULL, NULL, 5, 0.05, 0};
  int status = 0, rc;

  if ((argc > 1 && strcmp(argv[1], "--long") == 0) ||
      (env != NULL && strcmp(env, "1") == 0)) {
    s.items = MAXITEMS;
    s.unit = 1.0;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);

  if ((rc = mproc_joinable_queue_new(&s.q, 0, NULL)) != 0) {
    return report("mproc_joinable_queue_new", rc);
  }
  if ((rc = mproc_array_new(&s.eaten, 'i', NPRODUCERS * MAXITEMS, NULL,
                            NULL)) != 0) {
    status = report("mproc_array_new", rc);
    goto out;
  }
  for (int k = 0; k < NPRODUCERS; k++) {
    s.id = k;
    if ((rc = mproc_process_new(&prod[k], producer, NULL, &s, sizeof s,
                                NULL)) != 0) {
      status = report("mproc_process_new", rc);
      goto out;
    }
  }
  for (int k = 0; k < NCONSUMERS; k++) {
    if ((rc = mproc_process_new(&cons[k], consumer, NULL, &s, sizeof s,
                                NULL)) != 0) {
      status = report("mproc_process_new", rc);
      goto out;
    }
  }
  for (int k = 0; k < NPRODUCERS; k++) {
    if ((rc = mproc_process_start(prod[k])) != 0) {
      status = report("mproc_process_start", rc);
      goto out;
    }
  }
  for (int k = 0; k < NCONSUMERS; k++) {
    if ((rc = mproc_process_start(cons[k])) != 0) {
      status = report("mproc_process_start", rc);
      goto out;
    }
  }

  /* p1.join(); p2.join(); p3.join() */
  for (int k = 0; k < NPRODUCERS; k++) {
    status |= join_one(prod[k], names[k]);
  }
  /* q.join(): every item produced has been task_done() by a consumer. */
  if (status == 0 && (rc = mproc_queue_join(s.q, MPROC_FOREVER)) != 0) {
    status = report("mproc_queue_join", rc);
  }
  if (status == 0) {
    printf("queue joined: every item was eaten (%ld left in the queue)\n",
           mproc_queue_qsize(s.q));
  }

out:
  /* Stop the consumers: close the queue; each returns on MPROC_ECLOSED. */
  if (s.q != NULL && (rc = mproc_queue_close(s.q)) != 0) {
    status = report("mproc_queue_close", rc);
  }
  for (int k = 0; k < NPRODUCERS; k++) {
    if (prod[k] != NULL && mproc_process_pid(prod[k]) != 0 &&
        mproc_process_join(prod[k], 0) == MPROC_ETIMEDOUT) {
      (void)mproc_process_kill(prod[k]); /* only after a failure */
      (void)mproc_process_join(prod[k], MPROC_FOREVER);
    }
  }
  for (int k = 0; k < NCONSUMERS; k++) {
    if (cons[k] != NULL && mproc_process_pid(cons[k]) != 0) {
      status |= join_one(cons[k], "a consumer");
    }
  }
  for (int k = 0; k < NPRODUCERS; k++) {
    if (prod[k] != NULL && (rc = mproc_process_free(prod[k])) != 0) {
      status = report("mproc_process_free", rc);
    }
  }
  for (int k = 0; k < NCONSUMERS; k++) {
    if (cons[k] != NULL && (rc = mproc_process_free(cons[k])) != 0) {
      status = report("mproc_process_free", rc);
    }
  }

  if (status == 0) {
    int *eaten = mproc_array_ptr(s.eaten);
    int bad = 0;
    for (int p = 0; p < NPRODUCERS; p++) {
      for (int i = 0; i < s.items; i++) {
        if (eaten[p * MAXITEMS + i] != 1) {
          fprintf(stderr, "producer_consumer: %s%d was eaten %d times\n",
                  names[p], i, (int)eaten[p * MAXITEMS + i]);
          bad = 1;
        }
      }
    }
    if (bad) {
      status = 1;
    } else {
      printf("check: all %d items eaten exactly once; consumers stopped by "
             "closing the queue\n", NPRODUCERS * s.items);
      printf("主\n");
    }
  }
  if ((rc = mproc_array_free(s.eaten)) != 0) {
    status = report("mproc_array_free", rc);
  }
  if ((rc = mproc_queue_free(s.q)) != 0) {
    status = report("mproc_queue_free", rc);
  }
  return status;
}
