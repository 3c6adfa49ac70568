/*
 * process_pids.c - who is whose parent: pids, ppids and names.
 *
 * From the seed tutorial's pool example ("進程池"), which prints
 *
 *     Main Process pid <pid>
 *     Run task id: <i> pid: <pid> ppid: <ppid>
 *     ...
 *     Done
 *
 * Here the tasks run in plain Process objects instead of a pool.  Each
 * child also prints what mproc_parent_process() says about its parent and
 * checks it against getppid() and the name "MainProcess"; it exits with a
 * non-zero code if they disagree, and the main process checks every exit
 * code.  The seed's other note is shown too: "如果進程還沒有start(),則PID為
 * None", a pid that mproc reports as 0.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

#define NTASKS 5

/* The child's exit code when parent_process() does not match getppid(). */
#define EXIT_BADPARENT 3

/*
 * A short sleep (the seed sleeps 3 s) keeps the children alive together, so
 * that active_children() has something to count.
 */
static void nap(void) {
  struct timespec left = {0, 200 * 1000 * 1000};

  while (nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}

static int task(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  mproc_process *parent = mproc_parent_process();
  pid_t ppid = getppid();
  int id;

  if (len != sizeof id) {
    fprintf(stderr, "task: bad argument (%zu bytes)\n", len);
    return 2;
  }
  memcpy(&id, arg, sizeof id);
  printf("Run task id: %d pid: %d ppid: %d\n", id, (int)getpid(), (int)ppid);
  if (parent == NULL) {
    fprintf(stderr, "task %d: mproc_parent_process() is NULL\n", id);
    return EXIT_BADPARENT;
  }
  printf("    task %d is %s; parent_process(): pid %d name %s\n", id,
         mproc_process_name(mproc_current_process()),
         (int)mproc_process_pid(parent), mproc_process_name(parent));
  if (mproc_process_pid(parent) != ppid ||
      strcmp(mproc_process_name(parent), "MainProcess") != 0) {
    fprintf(stderr, "task %d: parent_process() does not match getppid()\n",
            id);
    return EXIT_BADPARENT;
  }
  nap();
  return 0;
}

static int report(const char *what, int rc) {
  fprintf(stderr, "process_pids: %s: %s (%s)\n", what, mproc_strerror(rc),
          mproc_err_name(rc));
  return 1;
}

int main(void) {
  mproc_process *procs[NTASKS] = {NULL};
  mproc_process *self = mproc_current_process();
  int i, rc, status = 0;

  printf("Main Process pid %d\n", (int)getpid());
  printf("current_process(): %s, pid %d; parent_process(): %s; "
         "cpu_count(): %d\n",
         mproc_process_name(self), (int)mproc_process_pid(self),
         mproc_parent_process() == NULL ? "NULL" : "not NULL",
         mproc_cpu_count());
  if (mproc_parent_process() != NULL || mproc_process_pid(self) != getpid()) {
    fprintf(stderr, "process_pids: current/parent process is wrong\n");
    return 1;
  }

  for (i = 0; i < NTASKS; i++) {
    rc = mproc_process_new(&procs[i], task, NULL, &i, sizeof i, NULL);
    if (rc != 0) {
      report("mproc_process_new", rc);
      status = 1;
      goto out;
    }
  }
  /* Python's pid is None before start(); mproc's is 0. */
  printf("%s pid before start(): %d\n", mproc_process_name(procs[0]),
         (int)mproc_process_pid(procs[0]));
  if (mproc_process_pid(procs[0]) != 0) {
    fprintf(stderr, "process_pids: pid before start is not 0\n");
    status = 1;
    goto out;
  }

  for (i = 0; i < NTASKS; i++) {
    rc = mproc_process_start(procs[i]);
    if (rc != 0) {
      report("mproc_process_start", rc);
      status = 1;
      goto out;
    }
  }
  printf("started %d processes; active_children(): %d\n", NTASKS,
         mproc_active_children(NULL, 0));
  printf("wait...\n");

out:
  /*
   * Every started child is joined, also after a failure, because an object
   * whose child still runs cannot be freed.
   */
  for (i = 0; i < NTASKS; i++) {
    int code;

    if (procs[i] == NULL) {
      continue;
    }
    if (mproc_process_pid(procs[i]) != 0) {
      rc = mproc_process_join(procs[i], MPROC_FOREVER);
      if (rc != 0) {
        report("mproc_process_join", rc);
        status = 1;
        (void)mproc_process_kill(procs[i]);
        (void)mproc_process_join(procs[i], MPROC_FOREVER);
      } else if ((rc = mproc_process_exitcode(procs[i], &code)) != 0) {
        report("mproc_process_exitcode", rc);
        status = 1;
      } else if (code != 0) {
        fprintf(stderr, "process_pids: %s (pid %d) exited with %d\n",
                mproc_process_name(procs[i]),
                (int)mproc_process_pid(procs[i]), code);
        status = 1;
      }
    }
    rc = mproc_process_free(procs[i]);
    if (rc != 0) {
      report("mproc_process_free", rc);
      status = 1;
    }
  }
  if (status == 0) {
    printf("Done\n");
  }
  return status;
}
