/*
 * linecount.c - count the lines and characters of every text file under a
 * directory with a pool, and compare with a serial run.
 *
 * From seed 004 ("进程实战实例", the real-world program of the Process()
 * and Pool() tutorial):
 *
 *     def operFile(filePath):
 *         fp = open(filePath)
 *         content = fp.readlines()
 *         fp.close()
 *         lines = len(content)
 *         alphaNum = 0
 *         for i in content:
 *             alphaNum += len(i.strip('\n'))
 *         return lines, alphaNum, filePath
 *
 *     fileList = getFile(filePath)          # os.walk, *.txt and *.10w
 *     pool = multiprocessing.Pool(5)
 *     resultList = pool.map(operFile, fileList)
 *     pool.close()
 *     pool.join()
 *     out(resultList, writeFilePath)        # per-file lines, then totals
 *     print "used time is ", endTime - startTime
 *
 * Usage: linecount [-v] [-n MAXFILES] [-p PROCESSES] [DIR]
 *   DIR defaults to /usr/share (every Debian machine has it); -n bounds
 *   the number of files (default 20000), so `make demo` stays short;
 *   -v prints "path lines chars" per file, as the seed's out() writes.
 *
 * The parent walks the tree (nftw, FTW_PHYS: symbolic links are not
 * followed) and keeps regular files of at most 4 MiB that it can open and
 * that look like text: no NUL byte in their first 4 KiB (the seed picked
 * *.txt files by name; a Debian tree has few of those).  The paths go to
 * the pool in batches of 1000 with mproc_pool_map_bytes (the path, NUL
 * included, is the argument bytes); a task reads the file and returns its
 * counts.  A file that vanished or cannot be read by then is skipped and
 * counted as such, never fatal.
 *
 * Counting as the seed: lines as readlines() (a last line without '\n'
 * counts), characters as the sum of len(line.strip('\n')), that is the
 * bytes that are not '\n' (bytes, not decoded characters).
 *
 * Then the same counting runs serially in this process, and the program
 * prints both times and the speedup.  The pool runs first, so it pays
 * for reading whatever the walk left out of the page cache; a speedup
 * near or below 1 on a small machine is honest: counting lines of files
 * in the page cache costs little more than handing them to a worker.
 * Exit 1 when the pool's totals differ from the serial ones (over the
 * files both could read) or anything failed.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

#define MAX_SIZE (4L << 20) /* skip files over 4 MiB */
#define PROBE 4096          /* a NUL in the first 4 KiB: binary */
#define BATCH 1000          /* paths per map_bytes call */

struct counts {
  int64_t lines;
  int64_t chars;
  int32_t ok; /* 0: the file could not be read (vanished, unreadable) */
  int32_t pad;
};

static char **paths;
static size_t npaths, cappaths;
static long maxfiles = 20000;
static long skipped_walk; /* binary, too big, unopenable */
static int walk_failed;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* operFile: count one file.  Never fails: an unreadable file is !ok. */
static struct counts count_file(const char *path) {
  struct counts c = {0, 0, 0, 0};
  char buf[65536];
  char last = '\n';
  ssize_t n;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    return c;
  }
  for (;;) {
    n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    int64_t nl = 0;
    const char *p = buf, *end = buf + n;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
      nl++;
      p++;
    }
    c.lines += nl;
    c.chars += (int64_t)n - nl;
    last = buf[n - 1];
  }
  close(fd);
  if (n < 0) {
    c.lines = c.chars = 0;
    return c; /* a read error: skipped */
  }
  if (last != '\n') {
    c.lines++; /* readlines() returns a last line without '\n' */
  }
  c.ok = 1;
  return c;
}

/* The pool's task: the argument is the path, NUL included. */
static int count_task(mproc_task *t, const void *arg, size_t len, void *ctx) {
  (void)ctx;
  const char *path = arg;
  if (len == 0 || path[len - 1] != '\0') {
    mproc_task_fail(t, "argument is not a NUL-terminated path");
    return 2;
  }
  struct counts c = count_file(path);
  return mproc_task_return(t, &c, sizeof c);
}

/* Does the file look like text?  Also checks it can be opened. */
static int looks_text(const char *path) {
  char buf[PROBE];
  ssize_t n;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    return 0;
  }
  do {
    n = read(fd, buf, sizeof buf);
  } while (n < 0 && errno == EINTR);
  close(fd);
  return n >= 0 && memchr(buf, '\0', (size_t)n) == NULL;
}

static int visit(const char *path, const struct stat *st, int type,
                 struct FTW *ftw) {
  (void)ftw;
  if ((long)npaths >= maxfiles) {
    return 1; /* enough: stop the walk */
  }
  if (type != FTW_F || !S_ISREG(st->st_mode)) {
    return 0; /* directories, links (not followed), unreadable dirs */
  }
  if (st->st_size > MAX_SIZE || !looks_text(path)) {
    skipped_walk++;
    return 0;
  }
  if (npaths == cappaths) {
    size_t cap = cappaths ? 2 * cappaths : 1024;
    char **np = realloc(paths, cap * sizeof *np);
    if (np == NULL) {
      walk_failed = 1;
      return 1;
    }
    paths = np;
    cappaths = cap;
  }
  if ((paths[npaths] = strdup(path)) == NULL) {
    walk_failed = 1;
    return 1;
  }
  npaths++;
  return 0;
}

static int report(const char *what, int rc) {
  fprintf(stderr, "linecount: %s: %s (%s)\n", what, mproc_strerror(rc),
          mproc_err_name(rc));
  return 1;
}

static void usage(void) {
  fprintf(stderr,
          "usage: linecount [-v] [-n MAXFILES] [-p PROCESSES] [DIR]\n");
}

int main(int argc, char **argv) {
  const char *dir = "/usr/share";
  int verbose = 0, processes = 0, status = 0, rc, opt;
  mproc_pool *pool = NULL;
  struct counts *pooled = NULL, *serial = NULL;
  mproc_bytes *args = NULL;
  mproc_result *res = NULL;

  while ((opt = getopt(argc, argv, "vn:p:")) != -1) {
    switch (opt) {
    case 'v':
      verbose = 1;
      break;
    case 'n':
      maxfiles = strtol(optarg, NULL, 10);
      break;
    case 'p':
      processes = atoi(optarg);
      break;
    default:
      usage();
      return 2;
    }
  }
  if (optind < argc) {
    dir = argv[optind++];
  }
  if (optind < argc || maxfiles < 1 || processes < 0) {
    usage();
    return 2;
  }

  /* getFile(filePath) */
  double t0 = now();
  if (nftw(dir, visit, 32, FTW_PHYS) == -1) {
    fprintf(stderr, "linecount: cannot walk %s: %s\n", dir, strerror(errno));
    return 1;
  }
  if (walk_failed) {
    fprintf(stderr, "linecount: out of memory\n");
    return 1;
  }
  double walk = now() - t0;
  printf("%s: %zu text files (limit %ld), %ld skipped (binary, over 4 MiB "
         "or unreadable), walk %.2f s\n",
         dir, npaths, maxfiles, skipped_walk, walk);

  pooled = calloc(npaths + 1, sizeof *pooled);
  serial = calloc(npaths + 1, sizeof *serial);
  args = calloc(BATCH, sizeof *args);
  res = calloc(BATCH, sizeof *res);
  if (pooled == NULL || serial == NULL || args == NULL || res == NULL) {
    fprintf(stderr, "linecount: out of memory\n");
    status = 1;
    goto out;
  }

  /* pool = Pool(); resultList = pool.map(operFile, fileList) */
  mproc_pool_opts po;
  memset(&po, 0, sizeof po);
  po.processes = processes; /* 0: cpu_count() */
  t0 = now();
  if ((rc = mproc_pool_new(&pool, &po)) != 0) {
    status = report("mproc_pool_new", rc);
    goto out;
  }
  for (size_t base = 0; base < npaths; base += BATCH) {
    size_t n = npaths - base < BATCH ? npaths - base : BATCH;
    for (size_t i = 0; i < n; i++) {
      args[i].data = paths[base + i];
      args[i].len = strlen(paths[base + i]) + 1;
    }
    rc = mproc_pool_map_bytes(pool, count_task, NULL, args, n, res, NULL);
    if (rc != 0 && rc != MPROC_ETASK && rc != MPROC_EWORKERDIED &&
        rc != MPROC_ETIMEDOUT) {
      status = report("mproc_pool_map_bytes", rc);
      goto out;
    }
    for (size_t i = 0; i < n; i++) {
      if (res[i].error == 0 && res[i].len == sizeof(struct counts)) {
        memcpy(&pooled[base + i], res[i].data, sizeof(struct counts));
      } else {
        fprintf(stderr, "linecount: %s: task failed: %s\n", paths[base + i],
                mproc_strerror(res[i].error));
        status = 1;
      }
      free(res[i].data);
      res[i].data = NULL;
    }
  }
  /* pool.close(); pool.join() */
  if ((rc = mproc_pool_close(pool)) != 0) {
    status = report("mproc_pool_close", rc);
  } else if ((rc = mproc_pool_join(pool, MPROC_FOREVER)) != 0) {
    status = report("mproc_pool_join", rc);
  }
  double tpool = now() - t0;

  /* The same counting, serially, in this process. */
  t0 = now();
  for (size_t i = 0; i < npaths; i++) {
    serial[i] = count_file(paths[i]);
  }
  double tserial = now() - t0;

  /* out(resultList): per-file lines on request, then the totals. */
  int64_t lines = 0, chars = 0, slines = 0, schars = 0;
  long counted = 0, unreadable = 0;
  for (size_t i = 0; i < npaths; i++) {
    if (!pooled[i].ok || !serial[i].ok) {
      unreadable++; /* vanished or unreadable in one run: skipped */
      continue;
    }
    if (verbose) {
      printf("%s 行数:%lld 字符数:%lld\n", paths[i],
             (long long)pooled[i].lines, (long long)pooled[i].chars);
    }
    counted++;
    lines += pooled[i].lines;
    chars += pooled[i].chars;
    slines += serial[i].lines;
    schars += serial[i].chars;
  }
  printf("%lld %lld\n", (long long)lines, (long long)chars); /* the seed's */
  printf("files counted: %ld (%ld skipped as unreadable)\n", counted,
         unreadable);
  printf("lines: %lld, characters: %lld\n", (long long)lines,
         (long long)chars);
  printf("pool of %d: %.3f s (start, map, close, join); serial: %.3f s; "
         "speedup %.2fx\n",
         processes ? processes : mproc_cpu_count(), tpool, tserial,
         tpool > 0 ? tserial / tpool : 0.0);
  if (lines != slines || chars != schars) {
    fprintf(stderr,
            "linecount: pool totals %lld %lld differ from serial %lld %lld\n",
            (long long)lines, (long long)chars, (long long)slines,
            (long long)schars);
    status = 1;
  } else {
    printf("pool totals equal the serial totals\n");
  }

out:
  if (pool != NULL && (rc = mproc_pool_free(pool)) != 0) {
    status = report("mproc_pool_free", rc);
  }
  for (size_t i = 0; i < npaths; i++) {
    free(paths[i]);
  }
  free(paths);
  free(pooled);
  free(serial);
  free(args);
  free(res);
  return status;
}
