/*
 * tests/unit/test-shm.c - SharedMemory (include/mproc/shm.h): names, sizes,
 * create/attach/unlink/close, the safety checks (O_EXCL, 0600, owner and
 * mode on attach, posix_fallocate), sharing with child processes,
 * MPROC_SHM_UNLINK_ON_EXIT, and threads at once.
 *
 * Every case unlinks what it creates; where a check could fail with a name
 * still in /dev/shm, the case records the result, cleans up, then asserts.
 * (The runner would also remove a leftover, and fail the case.)  Python
 * interoperability is in tests/interop/test-shm-python.c.
 */
#include "task.h"

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

/* ---- helpers ---- */

/* A name no other test process uses: "mproc_t_<pid>_<tag>". */
static const char *tname(char *buf, size_t cap, const char *tag) {
  snprintf(buf, cap, "mproc_t_%d_%s", (int)getpid(), tag);
  return buf;
}

/* 1 if /dev/shm/name exists. */
static int shm_exists(const char *name) {
  char path[512];
  struct stat st;
  snprintf(path, sizeof path, "/dev/shm/%s", name);
  return lstat(path, &st) == 0;
}

/* stat of /dev/shm/name; 0 or -errno. */
static int shm_stat(const char *name, struct stat *st) {
  char path[512];
  snprintf(path, sizeof path, "/dev/shm/%s", name);
  return stat(path, st) == 0 ? 0 : -errno;
}

/* Create /dev/shm/name by hand with the given mode and n bytes.
 * Returns 0 or -errno. */
static int plant(const char *name, mode_t mode, size_t n) {
  char path[512];
  snprintf(path, sizeof path, "/dev/shm/%s", name);
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return -errno;
  }
  int r = 0;
  if (fchmod(fd, mode) != 0 || (n > 0 && ftruncate(fd, (off_t)n) != 0)) {
    r = -errno;
  }
  close(fd);
  return r;
}

static void remove_shm(const char *name) {
  char path[512];
  snprintf(path, sizeof path, "/dev/shm/%s", name);
  unlink(path);
}

static pid_t fork_child(int (*fn)(const char *), const char *arg) {
  pid_t pid = test_fork();
  if (pid == 0) {
    _exit(fn(arg));
  }
  return pid;
}

/* ---- names, sizes, contents ---- */

TEST_IMPL(shm_create_random_name) {
  /* The umask must not matter: 0600 whatever it is. */
  mode_t old = umask(0);
  mproc_shared_memory *m = NULL;
  int r = mproc_shared_memory_create(&m, NULL, 100, 0);
  umask(old);
  ASSERT_OK(r);
  ASSERT_NOT_NULL(m);
  const char *name = mproc_shared_memory_name(m);
  struct stat st;
  int sr = shm_stat(name, &st);
  char copy[64];
  snprintf(copy, sizeof copy, "%s", name);
  int unl = mproc_shared_memory_unlink(m);

  /* Python's form: "psm_" + token_hex(4), 12 characters. */
  ASSERT_EQ(strlen(copy), 12);
  ASSERT(strncmp(copy, "psm_", 4) == 0);
  for (int i = 4; i < 12; i++) {
    ASSERT((copy[i] >= '0' && copy[i] <= '9') ||
           (copy[i] >= 'a' && copy[i] <= 'f'));
  }
  ASSERT_OK(sr);
  ASSERT_EQ(st.st_mode & 07777, 0600);
  ASSERT_EQ(st.st_uid, geteuid());
  ASSERT_EQ(st.st_size, 100);
  ASSERT_OK(unl);
  ASSERT(!shm_exists(copy));

  /* Zero-filled, exactly the size asked for, and still mapped. */
  ASSERT_EQ(mproc_shared_memory_size(m), 100);
  unsigned char *b = mproc_shared_memory_buf(m);
  for (int i = 0; i < 100; i++) {
    ASSERT_EQ(b[i], 0);
  }
  memset(b, 0xab, 100);
  ASSERT_OK(mproc_shared_memory_close(m));
  return 0;
}

TEST_IMPL(shm_random_names_unique) {
  enum { N = 64 };
  mproc_shared_memory *m[N];
  for (int i = 0; i < N; i++) {
    ASSERT_OK(mproc_shared_memory_create(&m[i], NULL, 1, 0));
  }
  int dup = 0;
  for (int i = 0; i < N; i++) {
    for (int j = i + 1; j < N; j++) {
      dup += strcmp(mproc_shared_memory_name(m[i]),
                    mproc_shared_memory_name(m[j])) == 0;
    }
  }
  for (int i = 0; i < N; i++) {
    ASSERT_OK(mproc_shared_memory_unlink(m[i]));
    ASSERT_OK(mproc_shared_memory_close(m[i]));
  }
  ASSERT_EQ(dup, 0);
  return 0;
}

TEST_IMPL(shm_sizes_and_reservation) {
  static const size_t sizes[] = {1, 4095, 4096, 4097, 65536, 1 << 20,
                                 (1 << 20) + 3};
  char nb[64];
  const char *name = tname(nb, sizeof nb, "sizes");
  for (size_t k = 0; k < MPROC__ARRAY_SIZE(sizes); k++) {
    size_t n = sizes[k];
    mproc_shared_memory *m = NULL, *a = NULL;
    ASSERT_OK(mproc_shared_memory_create(&m, name, n, 0));
    struct stat st;
    int sr = shm_stat(name, &st);
    test_fill(mproc_shared_memory_buf(m), n, 1000 + k);
    int ar = mproc_shared_memory_attach(&a, name);
    int ur = mproc_shared_memory_unlink(m);
    ASSERT_OK(sr);
    ASSERT_OK(ar);
    ASSERT_OK(ur);
    /* No rounding: Python's size is the file's size, the bytes asked for. */
    ASSERT_UEQ(mproc_shared_memory_size(m), n);
    ASSERT_UEQ(mproc_shared_memory_size(a), n);
    ASSERT_EQ(st.st_size, (off_t)n);
    /* posix_fallocate reserved the blocks now (no SIGBUS later). */
    ASSERT_GE((uint64_t)st.st_blocks * 512, n);
    ASSERT(test_check_fill(mproc_shared_memory_buf(a), n, 1000 + k));
    ASSERT_OK(mproc_shared_memory_close(a));
    ASSERT_OK(mproc_shared_memory_close(m));
  }
  return 0;
}

TEST_IMPL(shm_create_attach_unlink) {
  char nb[64];
  const char *name = tname(nb, sizeof nb, "basic");
  mproc_shared_memory *m = NULL, *a = NULL;
  ASSERT_OK(mproc_shared_memory_create(&m, name, 8192, 0));
  ASSERT_STR_EQ(mproc_shared_memory_name(m), name);
  test_fill(mproc_shared_memory_buf(m), 8192, 7);
  int ar = mproc_shared_memory_attach(&a, name);
  if (ar != 0) {
    mproc_shared_memory_unlink(m);
  }
  ASSERT_OK(ar);
  ASSERT_STR_EQ(mproc_shared_memory_name(a), name);
  ASSERT_UEQ(mproc_shared_memory_size(a), 8192);
  /* Two mappings of the same memory, each at its own address. */
  ASSERT_PTR_NE(mproc_shared_memory_buf(a), mproc_shared_memory_buf(m));
  ASSERT(test_check_fill(mproc_shared_memory_buf(a), 8192, 7));
  test_fill(mproc_shared_memory_buf(a), 100, 99);
  ASSERT(test_check_fill(mproc_shared_memory_buf(m), 100, 99));

  /* The attacher unlinks; the second unlink is ENOENT (Python's
   * FileNotFoundError), from either object, and by name. */
  ASSERT_OK(mproc_shared_memory_unlink(a));
  ASSERT(!shm_exists(name));
  ASSERT_ERR(mproc_shared_memory_unlink(a), MPROC_ENOENT);
  ASSERT_ERR(mproc_shared_memory_unlink(m), MPROC_ENOENT);
  ASSERT_ERR(mproc_shared_memory_unlink_name(name), MPROC_ENOENT);
  mproc_shared_memory *x = (mproc_shared_memory *)1;
  ASSERT_ERR(mproc_shared_memory_attach(&x, name), MPROC_ENOENT);
  ASSERT_NULL(x);

  /* Both mappings survive the unlink and still share. */
  test_fill(mproc_shared_memory_buf(m), 8192, 3);
  ASSERT(test_check_fill(mproc_shared_memory_buf(a), 8192, 3));
  ASSERT_OK(mproc_shared_memory_close(a));
  ASSERT_OK(mproc_shared_memory_close(m));
  ASSERT_OK(mproc_shared_memory_close(NULL));
  return 0;
}

TEST_IMPL(shm_unlink_name) {
  char nb[64];
  const char *name = tname(nb, sizeof nb, "byname");
  mproc_shared_memory *m = NULL;
  ASSERT_OK(mproc_shared_memory_create(&m, name, 10, 0));
  ASSERT_OK(mproc_shared_memory_unlink_name(name));
  ASSERT(!shm_exists(name));
  ASSERT_ERR(mproc_shared_memory_unlink_name(name), MPROC_ENOENT);
  ASSERT_ERR(mproc_shared_memory_unlink(m), MPROC_ENOENT);
  ASSERT_OK(mproc_shared_memory_close(m));
  return 0;
}

TEST_IMPL(shm_create_existing) {
  char nb[64];
  const char *name = tname(nb, sizeof nb, "exists");
  mproc_shared_memory *m = NULL, *x = (mproc_shared_memory *)1;
  ASSERT_OK(mproc_shared_memory_create(&m, name, 64, 0));
  test_fill(mproc_shared_memory_buf(m), 64, 5);
  int r = mproc_shared_memory_create(&x, name, 4096, 0);
  struct stat st;
  int sr = shm_stat(name, &st);
  ASSERT_OK(mproc_shared_memory_unlink(m));
  ASSERT_ERR(r, MPROC_EEXIST);
  ASSERT_NULL(x);
  /* The existing segment is untouched: neither truncated nor resized. */
  ASSERT_OK(sr);
  ASSERT_EQ(st.st_size, 64);
  ASSERT(test_check_fill(mproc_shared_memory_buf(m), 64, 5));
  ASSERT_OK(mproc_shared_memory_close(m));
  return 0;
}

TEST_IMPL(shm_attach_missing) {
  char nb[64];
  mproc_shared_memory *x = NULL;
  ASSERT_ERR(mproc_shared_memory_attach(&x, tname(nb, sizeof nb, "none")),
             MPROC_ENOENT);
  ASSERT_NULL(x);
  ASSERT_ERR(mproc_shared_memory_unlink_name(nb), MPROC_ENOENT);
  return 0;
}

TEST_IMPL(shm_invalid_arguments) {
  mproc_shared_memory *x = (mproc_shared_memory *)1;
  char nb[64];
  const char *ok = tname(nb, sizeof nb, "inval");
  ASSERT_ERR(mproc_shared_memory_create(&x, ok, 0, 0), MPROC_EINVAL);
  ASSERT_NULL(x);
  ASSERT_ERR(mproc_shared_memory_create(NULL, ok, 1, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_shared_memory_create(&x, ok, 1, 0x100), MPROC_EINVAL);
  ASSERT_ERR(mproc_shared_memory_create(&x, ok, SIZE_MAX, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_shared_memory_create(&x, NULL, 0, 0), MPROC_EINVAL);
  ASSERT_ERR(mproc_shared_memory_attach(NULL, ok), MPROC_EINVAL);
  ASSERT_ERR(mproc_shared_memory_attach(&x, NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_shared_memory_unlink(NULL), MPROC_EINVAL);
  ASSERT_ERR(mproc_shared_memory_unlink_name(NULL), MPROC_EINVAL);
  ASSERT_NULL(mproc_shared_memory_name(NULL));
  ASSERT_UEQ(mproc_shared_memory_size(NULL), 0);
  ASSERT_NULL(mproc_shared_memory_buf(NULL));

  char longest[MPROC_SHM_NAME_MAX + 2];
  memset(longest, 'z', MPROC_SHM_NAME_MAX + 1);
  longest[MPROC_SHM_NAME_MAX + 1] = '\0';
  const char *bad[] = {"",     "/",     "/abc", "a/b", "abc/", ".", "..",
                       "a\nb", "a\tb", "\x7f", longest};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(bad); i++) {
    ASSERT_ERR(mproc_shared_memory_create(&x, bad[i], 1, 0), MPROC_EINVAL);
    ASSERT_NULL(x);
    ASSERT_ERR(mproc_shared_memory_create(&x, bad[i], 1,
                                          MPROC_SHM_UNLINK_ON_EXIT),
               MPROC_EINVAL);
    ASSERT_ERR(mproc_shared_memory_attach(&x, bad[i]), MPROC_EINVAL);
    ASSERT_ERR(mproc_shared_memory_unlink_name(bad[i]), MPROC_EINVAL);
  }

  /* The longest name Python takes (NAME_MAX bytes) works; names Python's
   * tracker handles badly but the file system takes are accepted. */
  longest[MPROC_SHM_NAME_MAX] = '\0';
  snprintf(longest, 40, "mproc_t_%d_long_", (int)getpid());
  longest[strlen(longest)] = 'z';
  ASSERT_EQ(strlen(longest), MPROC_SHM_NAME_MAX);
  mproc_shared_memory *m = NULL;
  ASSERT_OK(mproc_shared_memory_create(&m, longest, 1, 0));
  ASSERT_STR_EQ(mproc_shared_memory_name(m), longest);
  ASSERT_OK(mproc_shared_memory_unlink(m));
  ASSERT_OK(mproc_shared_memory_close(m));
  char odd[64];
  snprintf(odd, sizeof odd, "mproc_t_%d_a:b c\xc3\xa9...", (int)getpid());
  ASSERT_OK(mproc_shared_memory_create(&m, odd, 1, 0));
  ASSERT_OK(mproc_shared_memory_unlink(m));
  ASSERT_OK(mproc_shared_memory_close(m));
  return 0;
}

/* ---- safety checks ---- */

TEST_IMPL(shm_attach_checks_mode) {
  char nb[64];
  const char *name = tname(nb, sizeof nb, "mode");
  mproc_shared_memory *x = (mproc_shared_memory *)1;
  static const mode_t bad_modes[] = {0644, 0640, 0604, 0660, 0606, 0666,
                                     0610, 0601};
  for (size_t i = 0; i < MPROC__ARRAY_SIZE(bad_modes); i++) {
    ASSERT_OK(plant(name, bad_modes[i], 4096));
    int r = mproc_shared_memory_attach(&x, name);
    remove_shm(name);
    ASSERT_ERR(r, MPROC_EPERM);
    ASSERT_NULL(x);
  }
  /* The same file with 0600 passes; 0400 too (no group/other access). */
  ASSERT_OK(plant(name, 0600, 4096));
  int r = mproc_shared_memory_attach(&x, name);
  if (r == 0) {
    ASSERT_UEQ(mproc_shared_memory_size(x), 4096);
    ASSERT_OK(mproc_shared_memory_unlink(x));
    ASSERT_OK(mproc_shared_memory_close(x));
  }
  remove_shm(name);
  ASSERT_OK(r);
  /* An empty segment is refused (Python: cannot mmap an empty file). */
  ASSERT_OK(plant(name, 0600, 0));
  r = mproc_shared_memory_attach(&x, name);
  remove_shm(name);
  ASSERT_ERR(r, MPROC_EINVAL);
  return 0;
}

TEST_IMPL(shm_attach_checks_owner) {
  if (geteuid() != 0) {
    printf("# skip: changing a file's owner needs root\n");
    return TEST_SKIP;
  }
  char nb[64];
  const char *name = tname(nb, sizeof nb, "owner");
  char path[128];
  snprintf(path, sizeof path, "/dev/shm/%s", name);
  mproc_shared_memory *x = NULL;
  ASSERT_OK(plant(name, 0600, 4096));
  int cr = chown(path, 65534, 65534);
  int r = mproc_shared_memory_attach(&x, name);
  /* Group only: still ours. */
  int cr2 = chown(path, 0, 65534);
  int r2 = mproc_shared_memory_attach(&x, name);
  if (r2 == 0) {
    mproc_shared_memory_close(x);
  }
  remove_shm(name);
  ASSERT_OK(cr);
  ASSERT_ERR(r, MPROC_EPERM);
  ASSERT_OK(cr2);
  ASSERT_OK(r2);
  return 0;
}

TEST_IMPL(shm_attach_refuses_non_files) {
  char nb[64], tb[64];
  const char *name = tname(nb, sizeof nb, "nonfile");
  const char *target = tname(tb, sizeof tb, "target");
  char path[128], tpath[128];
  snprintf(path, sizeof path, "/dev/shm/%s", name);
  snprintf(tpath, sizeof tpath, "/dev/shm/%s", target);
  mproc_shared_memory *x = NULL;

  /* A directory. */
  ASSERT_EQ(mkdir(path, 0700), 0);
  int r_dir = mproc_shared_memory_attach(&x, name);
  int r_dir_create = mproc_shared_memory_create(&x, name, 1, 0);
  rmdir(path);
  ASSERT_ERR(r_dir, MPROC_EPERM);
  ASSERT_ERR(r_dir_create, MPROC_EEXIST);

  /* A symbolic link to a good segment: never followed. */
  ASSERT_OK(plant(target, 0600, 4096));
  int sl = symlink(tpath, path);
  int r_link = mproc_shared_memory_attach(&x, name);
  int r_link_create = mproc_shared_memory_create(&x, name, 1, 0);
  unlink(path);
  struct stat st;
  int tr = stat(tpath, &st);
  remove_shm(target);
  ASSERT_EQ(sl, 0);
  ASSERT_ERR(r_link, MPROC_EPERM);
  ASSERT_ERR(r_link_create, MPROC_EEXIST);
  ASSERT_EQ(tr, 0);
  ASSERT_EQ(st.st_size, 4096); /* the target was not touched */

  /* A FIFO: refused without blocking. */
  ASSERT_EQ(mkfifo(path, 0600), 0);
  int r_fifo = mproc_shared_memory_attach(&x, name);
  unlink(path);
  ASSERT_ERR(r_fifo, MPROC_EPERM);
  return 0;
}

TEST_IMPL(shm_enospc_at_create) {
  struct statvfs vfs;
  ASSERT_EQ(statvfs("/dev/shm", &vfs), 0);
  if (vfs.f_blocks == 0) {
    printf("# skip: /dev/shm has no size limit\n");
    return TEST_SKIP;
  }
  /* More than the whole file system: posix_fallocate fails at once, with
   * nothing allocated, whatever else uses /dev/shm meanwhile. */
  uint64_t total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
  uint64_t want = total + (UINT64_C(1) << 30);
  if (want > SIZE_MAX) {
    printf("# skip: /dev/shm is larger than size_t\n");
    return TEST_SKIP;
  }
  char nb[64];
  const char *name = tname(nb, sizeof nb, "nospc");
  mproc_shared_memory *x = (mproc_shared_memory *)1;
  int r = mproc_shared_memory_create(&x, name, (size_t)want, 0);
  int left = shm_exists(name);
  if (r == 0) {
    mproc_shared_memory_unlink(x);
    mproc_shared_memory_close(x);
  }
  ASSERT_ERR(r, MPROC_ENOSPC);
  ASSERT_NULL(x);
  ASSERT(!left);
  /* A random name: nothing left either (the runner audits /dev/shm). */
  ASSERT_ERR(mproc_shared_memory_create(&x, NULL, (size_t)want,
                                        MPROC_SHM_UNLINK_ON_EXIT),
             MPROC_ENOSPC);
  /* And the name is free again. */
  ASSERT_OK(mproc_shared_memory_create(&x, name, 1, 0));
  ASSERT_OK(mproc_shared_memory_unlink(x));
  ASSERT_OK(mproc_shared_memory_close(x));
  return 0;
}

/* ---- across processes ---- */

static int child_sees_and_writes(const char *name) {
  mproc_shared_memory *a = NULL;
  if (mproc_shared_memory_attach(&a, name) != 0) {
    return 2;
  }
  unsigned char *b = mproc_shared_memory_buf(a);
  size_t n = mproc_shared_memory_size(a);
  if (n != 65536 || !test_check_fill(b, n / 2, 11)) {
    return 3;
  }
  test_fill(b + n / 2, n / 2, 12);
  return mproc_shared_memory_close(a) == 0 ? 0 : 4;
}

static int process_target(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  return child_sees_and_writes(arg);
}

/* A child, forked or an mproc process, attaches to a new segment, checks
 * the first half that the parent filled and fills the second half. */
static void child_attaches(int use_process, const char *tag) {
  char nb[64];
  const char *name = tname(nb, sizeof nb, tag);
  mproc_shared_memory *m = NULL;
  ASSERT_OK(mproc_shared_memory_create(&m, name, 65536, 0));
  unsigned char *b = mproc_shared_memory_buf(m);
  test_fill(b, 32768, 11);
  int code;
  if (use_process) {
    code = test_run_proc(process_target, name, strlen(name) + 1);
  } else {
    code = test_wait_pid(fork_child(child_sees_and_writes, name), 60.0);
  }
  ASSERT_OK(mproc_shared_memory_unlink(m));
  ASSERT_EQ(code, 0);
  ASSERT(test_check_fill(b + 32768, 32768, 12));
  ASSERT_OK(mproc_shared_memory_close(m));
}

TEST_IMPL(shm_fork_child_attaches) {
  child_attaches(0, "fork");
  return 0;
}

TEST_IMPL(shm_process_child_attaches) {
  child_attaches(1, "proc");
  return 0;
}

/* The child creates; the parent attaches after the child is gone. */
static int child_creates(const char *name) {
  mproc_shared_memory *m = NULL;
  if (mproc_shared_memory_create(&m, name, 5000, 0) != 0) {
    return 2;
  }
  test_fill(mproc_shared_memory_buf(m), 5000, 77);
  mproc_shared_memory_close(m);
  return 0;
}

TEST_IMPL(shm_child_creates_parent_attaches) {
  char nb[64];
  const char *name = tname(nb, sizeof nb, "rev");
  pid_t pid = fork_child(child_creates, name);
  int code = test_wait_pid(pid, 60.0);
  mproc_shared_memory *a = NULL;
  int r = mproc_shared_memory_attach(&a, name);
  mproc_shared_memory_unlink_name(name);
  ASSERT_EQ(code, 0);
  ASSERT_OK(r);
  ASSERT_UEQ(mproc_shared_memory_size(a), 5000);
  ASSERT(test_check_fill(mproc_shared_memory_buf(a), 5000, 77));
  ASSERT_OK(mproc_shared_memory_close(a));
  return 0;
}

/* ---- MPROC_SHM_UNLINK_ON_EXIT ---- */

static int child_creates_on_exit_then_exits(const char *name) {
  mproc_shared_memory *m = NULL;
  if (mproc_shared_memory_create(&m, name, 100, MPROC_SHM_UNLINK_ON_EXIT) !=
      0) {
    _exit(2);
  }
  if (!shm_exists(name)) {
    _exit(3);
  }
  exit(0); /* normal exit: atexit handlers run */
}

static int child_creates_on_exit_then_exit_now(const char *name) {
  mproc_shared_memory *m = NULL;
  if (mproc_shared_memory_create(&m, name, 100, MPROC_SHM_UNLINK_ON_EXIT) !=
      0) {
    return 2;
  }
  return 0; /* fork_child leaves with _exit: no exit handler */
}

static int child_creates_on_exit_then_killed(const char *name) {
  mproc_shared_memory *m = NULL;
  if (mproc_shared_memory_create(&m, name, 100, MPROC_SHM_UNLINK_ON_EXIT) !=
      0) {
    return 2;
  }
  raise(SIGKILL);
  return 3;
}

/* A child that created name with MPROC_SHM_UNLINK_ON_EXIT ended with exit
 * code code: it must be 0, and the name must be gone (removed here in any
 * case, before asserting). */
static void expect_unlinked(const char *name, int code) {
  int left = shm_exists(name);
  remove_shm(name);
  ASSERT_EQ(code, 0);
  ASSERT(!left);
}

TEST_IMPL(shm_unlink_on_exit_normal_exit) {
  char nb[64];
  const char *name = tname(nb, sizeof nb, "exit");
  pid_t pid = fork_child(child_creates_on_exit_then_exits, name);
  expect_unlinked(name, test_wait_pid(pid, 60.0));
  return 0;
}

static int process_target_exit(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  return child_creates_on_exit_then_exits(arg);
}

TEST_IMPL(shm_unlink_on_exit_process_calls_exit) {
  char nb[64];
  const char *name = tname(nb, sizeof nb, "pexit");
  int code = test_run_proc(process_target_exit, name, strlen(name) + 1);
  expect_unlinked(name, code);
  return 0;
}

static int process_target_returns(const void *arg, size_t len, void *ctx) {
  (void)ctx;
  (void)len;
  mproc_shared_memory *m = NULL;
  if (mproc_shared_memory_create(&m, arg, 100, MPROC_SHM_UNLINK_ON_EXIT) !=
      0) {
    return 2;
  }
  return 0; /* mproc's child exit path unlinks it before _exit */
}

TEST_IMPL(shm_unlink_on_exit_process_returns) {
  char nb[64];
  const char *name = tname(nb, sizeof nb, "pret");
  int code = test_run_proc(process_target_returns, name, strlen(name) + 1);
  expect_unlinked(name, code);
  return 0;
}

TEST_IMPL(shm_unlink_on_exit_not_without_exit_handlers) {
  /* What mproc cannot clean: a creator that leaves with _exit() or is
   * killed runs no exit handler, and with no tracker process the name
   * stays.  Unlinking it by name is then the program's job. */
  char nb[64], kb[64];
  const char *name = tname(nb, sizeof nb, "exitnow");
  const char *kname = tname(kb, sizeof kb, "killed");
  pid_t pid = fork_child(child_creates_on_exit_then_exit_now, name);
  int code = test_wait_pid(pid, 60.0);
  pid_t kpid = fork_child(child_creates_on_exit_then_killed, kname);
  int kcode = test_wait_pid(kpid, 60.0);
  int left = shm_exists(name), kleft = shm_exists(kname);
  int r = mproc_shared_memory_unlink_name(name);
  int kr = mproc_shared_memory_unlink_name(kname);
  ASSERT_EQ(code, 0);
  ASSERT_EQ(kcode, -SIGKILL);
  ASSERT(left);
  ASSERT(kleft);
  ASSERT_OK(r);
  ASSERT_OK(kr);
  return 0;
}

static int child_exits_with_inherited(const char *name) {
  (void)name;
  exit(0); /* runs the inherited atexit handler: must unlink nothing */
}

/* Set by the parent before fork: the child has its own copy. */
static mproc_shared_memory *shm_test_inherited;

static int child_closes_inherited(const char *name) {
  (void)name;
  if (mproc_shared_memory_close(shm_test_inherited) != 0) {
    return 2;
  }
  return 0;
}

TEST_IMPL(shm_unlink_on_exit_binds_creator_pid) {
  char nb[64];
  const char *name = tname(nb, sizeof nb, "inherit");
  mproc_shared_memory *m = NULL;
  ASSERT_OK(mproc_shared_memory_create(&m, name, 100,
                                       MPROC_SHM_UNLINK_ON_EXIT));
  shm_test_inherited = m;
  pid_t p1 = fork_child(child_exits_with_inherited, name);
  int c1 = test_wait_pid(p1, 60.0);
  int left1 = shm_exists(name);
  pid_t p2 = fork_child(child_closes_inherited, name);
  int c2 = test_wait_pid(p2, 60.0);
  int left2 = shm_exists(name);
  /* The creator's close unlinks. */
  ASSERT_OK(mproc_shared_memory_close(m));
  int left3 = shm_exists(name);
  remove_shm(name);
  ASSERT_EQ(c1, 0);
  ASSERT_EQ(c2, 0);
  ASSERT(left1);
  ASSERT(left2);
  ASSERT(!left3);
  return 0;
}

TEST_IMPL(shm_unlink_on_exit_spares_a_new_segment) {
  /* The creator's segment was unlinked behind its back and the name
   * reused: close (or exit) must not remove the newcomer. */
  char nb[64];
  const char *name = tname(nb, sizeof nb, "reuse");
  mproc_shared_memory *m = NULL, *n = NULL;
  ASSERT_OK(mproc_shared_memory_create(&m, name, 100,
                                       MPROC_SHM_UNLINK_ON_EXIT));
  ASSERT_OK(mproc_shared_memory_unlink_name(name));
  ASSERT_OK(mproc_shared_memory_create(&n, name, 200, 0));
  ASSERT_ERR(mproc_shared_memory_unlink(m), MPROC_ENOENT);
  ASSERT_OK(mproc_shared_memory_close(m));
  int left = shm_exists(name);
  ASSERT_OK(mproc_shared_memory_unlink(n));
  ASSERT_OK(mproc_shared_memory_close(n));
  ASSERT(left);
  return 0;
}

TEST_IMPL(shm_unlink_on_exit_close_and_unlink) {
  char nb[64];
  const char *name = tname(nb, sizeof nb, "close");
  mproc_shared_memory *m = NULL;
  /* close unlinks. */
  ASSERT_OK(mproc_shared_memory_create(&m, name, 100,
                                       MPROC_SHM_UNLINK_ON_EXIT));
  ASSERT(shm_exists(name));
  ASSERT_OK(mproc_shared_memory_close(m));
  ASSERT(!shm_exists(name));
  /* An explicit unlink first: close has nothing left to do. */
  ASSERT_OK(mproc_shared_memory_create(&m, name, 100,
                                       MPROC_SHM_UNLINK_ON_EXIT));
  ASSERT_OK(mproc_shared_memory_unlink(m));
  ASSERT_ERR(mproc_shared_memory_unlink(m), MPROC_ENOENT);
  ASSERT_OK(mproc_shared_memory_close(m));
  /* An attacher's close never unlinks. */
  mproc_shared_memory *a = NULL;
  ASSERT_OK(mproc_shared_memory_create(&m, name, 100,
                                       MPROC_SHM_UNLINK_ON_EXIT));
  ASSERT_OK(mproc_shared_memory_attach(&a, name));
  ASSERT_OK(mproc_shared_memory_close(a));
  int left = shm_exists(name);
  ASSERT_OK(mproc_shared_memory_close(m));
  ASSERT(left);
  ASSERT(!shm_exists(name));
  return 0;
}

TEST_IMPL(shm_unlink_on_exit_many) {
  /* Several segments on the exit list, closed out of order; the rest are
   * unlinked at the child's exit. */
  char nb[64];
  const char *name = tname(nb, sizeof nb, "many");
  pid_t pid = test_fork();
  if (pid == 0) {
    mproc_shared_memory *m[16];
    for (int i = 0; i < 16; i++) {
      char n[80];
      snprintf(n, sizeof n, "%s_%d", name, i);
      if (mproc_shared_memory_create(&m[i], n, 10,
                                     MPROC_SHM_UNLINK_ON_EXIT) != 0) {
        _exit(2);
      }
    }
    for (int i = 0; i < 16; i += 3) {
      mproc_shared_memory_close(m[i]);
    }
    exit(0);
  }
  int code = test_wait_pid(pid, 60.0);
  int left = 0;
  for (int i = 0; i < 16; i++) {
    char n[80];
    snprintf(n, sizeof n, "%s_%d", name, i);
    left += shm_exists(n);
    remove_shm(n);
  }
  ASSERT_EQ(code, 0);
  ASSERT_EQ(left, 0);
  return 0;
}

/* Threads creating and closing at once, with and without the flag: the
 * exit list stays consistent, and every segment is gone afterwards. */
static void *thread_churn(void *arg) {
  long id = (long)arg;
  for (int i = 0; i < 200; i++) {
    mproc_shared_memory *m = NULL, *a = NULL;
    int flags = (i & 1) ? MPROC_SHM_UNLINK_ON_EXIT : 0;
    if (mproc_shared_memory_create(&m, NULL, 64, flags) != 0) {
      return (void *)1;
    }
    ((unsigned char *)mproc_shared_memory_buf(m))[0] = (unsigned char)id;
    if (mproc_shared_memory_attach(&a, mproc_shared_memory_name(m)) != 0 ||
        ((unsigned char *)mproc_shared_memory_buf(a))[0] != (unsigned char)id) {
      return (void *)2;
    }
    mproc_shared_memory_close(a);
    if (!flags && mproc_shared_memory_unlink(m) != 0) {
      return (void *)3;
    }
    mproc_shared_memory_close(m);
  }
  return NULL;
}

TEST_IMPL(shm_threads_create_close) {
  pthread_t t[4];
  for (long i = 0; i < 4; i++) {
    ASSERT_EQ(pthread_create(&t[i], NULL, thread_churn, (void *)i), 0);
  }
  for (int i = 0; i < 4; i++) {
    void *r = (void *)-1;
    ASSERT_EQ(pthread_join(t[i], &r), 0);
    ASSERT_PTR_EQ(r, NULL);
  }
  return 0;
}
