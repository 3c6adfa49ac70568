/*
 * tests/helpers/funcref-peer.c - the other process of test-funcref.c.
 *
 * DESIGN
 *
 * A function reference must survive a real exec: a fresh image of a
 * program, placed by the loader at new random addresses, with libraries
 * loaded (or not) on its own.  No in-process trick shows that, so the
 * tests exec this small program, built by CMake next to mproc_tests and
 * named to it by path (FUNCREF_PEER).  It is a program of its own, not the
 * test binary run again, for two reasons: the runner has no entry that
 * would hand control to such a mode, and a second, different program is a
 * case of its own (its main program is not the sender's, so an address in
 * the sender's main program must come back as MPROC_EBUILD).  The case
 * where both sides are the same program, the one spawn serves, is shown
 * by running this program twice: once to emit its table, once to resolve
 * an address from it.
 *
 *   funcref-peer emit
 *       writes "probe HEX static HEX table LEN\n" and then the LEN bytes of
 *       its own object table (mproc__objtab_build): the address of
 *       funcref_peer_probe() and of a static int in this run.
 *   funcref-peer resolve HEXADDR OP
 *       reads another process's object table from stdin (to its end),
 *       resolves HEXADDR with mproc__funcmap_new / _resolve, uses the local
 *       address as OP says, and writes
 *         "code N value V local HEX probe HEX static HEX\n"
 *         "error TEXT\n"
 *       N is 0 or the error code (of the parse or the resolve); TEXT is
 *       mproc__funcmap_error()'s message.  OP: "call" calls it as
 *       int (*)(void), "pid" as pid_t (*)(void), "read" reads an int
 *       there, "none" only resolves.  probe and static are this run's own
 *       addresses of the same objects as in emit, so the caller can check
 *       that a translated address is the right one and not merely one
 *       that happened to return the right number.
 *
 * Exit status 0 when the answer was written (whatever N is), 2 on a usage
 * error, 3 when stdin or stdout failed.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What the emitted addresses name: a function with a known result in the
 * main program, and static data with a known initial value. */
#define PEER_PROBE_VALUE 7301
#define PEER_STATIC_VALUE 4242

int funcref_peer_probe(void);
__attribute__((noinline)) int funcref_peer_probe(void) {
  return PEER_PROBE_VALUE;
}
static int peer_static = PEER_STATIC_VALUE;

/* Object tables are bounded by what spawn sends (1 MiB). */
#define TAB_MAX (1u << 20)

static int read_all(unsigned char **out, size_t *len) {
  size_t cap = 4096, n = 0;
  unsigned char *buf = malloc(cap);
  if (buf == NULL) {
    return -1;
  }
  for (;;) {
    if (n == cap) {
      if (cap >= TAB_MAX) {
        free(buf);
        return -1;
      }
      unsigned char *nb = realloc(buf, cap * 2);
      if (nb == NULL) {
        free(buf);
        return -1;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(0, buf + n, cap - n);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r < 0) {
      free(buf);
      return -1;
    }
    if (r == 0) {
      break;
    }
    n += (size_t)r;
  }
  *out = buf;
  *len = n;
  return 0;
}

static int emit(void) {
  void *tab;
  size_t len;
  int r = mproc__objtab_build(&tab, &len);
  if (r != 0) {
    fprintf(stderr, "funcref-peer: objtab_build: %s\n", mproc_strerror(r));
    return 3;
  }
  printf("probe %llx static %llx table %zu\n",
         (unsigned long long)(uintptr_t)&funcref_peer_probe,
         (unsigned long long)(uintptr_t)&peer_static, len);
  int ok = fwrite(tab, 1, len, stdout) == len && fflush(stdout) == 0;
  free(tab);
  return ok ? 0 : 3;
}

static int resolve(const char *addr_text, const char *op) {
  char *end;
  errno = 0;
  unsigned long long addr = strtoull(addr_text, &end, 16);
  if (errno != 0 || end == addr_text || *end != '\0' ||
      (strcmp(op, "call") != 0 && strcmp(op, "pid") != 0 &&
       strcmp(op, "read") != 0 && strcmp(op, "none") != 0)) {
    return 2;
  }
  unsigned char *tab;
  size_t len;
  if (read_all(&tab, &len) != 0) {
    return 3;
  }
  mproc__funcmap *m = NULL;
  void *local = NULL;
  long long value = 0;
  const char *why = "";
  int code = mproc__funcmap_new(&m, tab, len);
  if (code != 0) {
    why = "the table did not parse";
  } else {
    code = mproc__funcmap_resolve(m, (uint64_t)addr, &local);
    why = mproc__funcmap_error(m);
  }
  if (code == 0 && strcmp(op, "call") == 0) {
    int (*fn)(void) = (int (*)(void))(uintptr_t)local;
    value = fn();
  } else if (code == 0 && strcmp(op, "pid") == 0) {
    pid_t (*fn)(void) = (pid_t(*)(void))(uintptr_t)local;
    value = fn();
  } else if (code == 0 && strcmp(op, "read") == 0) {
    value = *(const int *)local;
  }
  printf("code %d value %lld local %llx probe %llx static %llx\nerror %s\n",
         code, value, (unsigned long long)(uintptr_t)local,
         (unsigned long long)(uintptr_t)&funcref_peer_probe,
         (unsigned long long)(uintptr_t)&peer_static, code != 0 ? why : "");
  mproc__funcmap_free(m);
  free(tab);
  return fflush(stdout) == 0 ? 0 : 3;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "emit") == 0) {
    return emit();
  }
  if (argc == 4 && strcmp(argv[1], "resolve") == 0) {
    return resolve(argv[2], argv[3]);
  }
  fprintf(stderr, "usage: funcref-peer emit | resolve HEXADDR OP\n");
  return 2;
}
