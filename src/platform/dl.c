/* dl.c - the objects loaded in this process, and loading more.
 *
 * Design notes
 * ------------
 * The spawn and forkserver start methods run a fresh image of the program,
 * where address-space randomisation has put the main program and every
 * library elsewhere.  A function pointer sent from the parent is turned into
 * the child's own by way of the object that contains it (funcref.c); this
 * file is the operating-system half of that: it lists the loaded objects
 * (dl_iterate_phdr, which also works in a statically linked program) with
 * the span of their loadable segments and their GNU build-id, and loads a
 * library by path.
 *
 * The build-id is read from the object's PT_NOTE segments in memory, not
 * from its file: the file may have been replaced since it was loaded, and
 * what matters is the code that runs.  Notes are parsed with every length
 * checked against the segment, so a malformed note ends the search, never
 * a read past it.
 *
 * A library loaded here is never unloaded: addresses inside it may have
 * been handed to the rest of the program (a pool's task function), and
 * dlclose would make them dangle.
 */
#include "platform.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "mproc/errno.h"

/* The GNU build-id note in one PT_NOTE segment, copied to o; 1 if found. */
static int note_build_id(const unsigned char *p, size_t len, mproc__dlobj *o) {
  size_t off = 0;
  while (len - off >= sizeof(ElfW(Nhdr))) {
    ElfW(Nhdr) nh;
    memcpy(&nh, p + off, sizeof nh);
    off += sizeof nh;
    size_t namesz = ((size_t)nh.n_namesz + 3) & ~(size_t)3;
    size_t descsz = ((size_t)nh.n_descsz + 3) & ~(size_t)3;
    if (namesz > len - off) return 0;
    const unsigned char *name = p + off;
    off += namesz;
    if (descsz > len - off) return 0;
    if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
        memcmp(name, "GNU", 4) == 0 && nh.n_descsz > 0 &&
        nh.n_descsz <= sizeof o->build_id) {
      memcpy(o->build_id, p + off, nh.n_descsz);
      o->build_id_len = nh.n_descsz;
      return 1;
    }
    off += descsz;
  }
  return 0;
}

typedef struct each_ctx {
  int (*fn)(const mproc__dlobj *o, void *ctx);
  void *ctx;
  int first;
  uintptr_t vdso;
} each_ctx;

static int each_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  each_ctx *e = arg;
  mproc__dlobj o;
  memset(&o, 0, sizeof o);
  o.bias = (uintptr_t)info->dlpi_addr;
  o.path = info->dlpi_name ? info->dlpi_name : "";
  /* The loader reports the main program first, under an empty name. */
  o.is_main = e->first && o.path[0] == '\0';
  e->first = 0;
  int loads = 0;
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    uintptr_t lo = o.bias + (uintptr_t)ph->p_vaddr;
    uintptr_t hi = lo + (uintptr_t)ph->p_memsz;
    if (!loads || lo < o.lo) o.lo = lo;
    if (!loads || hi > o.hi) o.hi = hi;
    loads++;
  }
  if (!loads) return 0;
  if (e->vdso && e->vdso >= o.lo && e->vdso < o.hi) o.is_vdso = 1;
  /* The vDSO is named "linux-vdso.so.1" by glibc; its image is not a
   * file, so it is marked whichever way it is recognised. */
  if (strncmp(o.path, "linux-vdso", 10) == 0 ||
      strncmp(o.path, "linux-gate", 10) == 0)
    o.is_vdso = 1;
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE) continue;
    if (note_build_id((const unsigned char *)(o.bias + ph->p_vaddr),
                      (size_t)ph->p_memsz, &o))
      break;
  }
  return e->fn(&o, e->ctx);
}

int mproc__dl_each(int (*fn)(const mproc__dlobj *o, void *ctx), void *ctx) {
  each_ctx e = {fn, ctx, 1, (uintptr_t)getauxval(AT_SYSINFO_EHDR)};
  return dl_iterate_phdr(each_cb, &e);
}

static int gen_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  /* dlpi_adds and dlpi_subs came with glibc 2.4; size tells whether the
   * loader filled them in. */
  if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs)
    *(uint64_t *)arg = (uint64_t)info->dlpi_adds + (uint64_t)info->dlpi_subs;
  return 1;
}

uint64_t mproc__dl_generation(void) {
  uint64_t g = 0;
  dl_iterate_phdr(gen_cb, &g);
  return g;
}

int mproc__dl_open(const char *path, char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!path || !path[0]) {
    if (err && errlen) snprintf(err, errlen, "empty library path");
    return MPROC_ENOFUNC;
  }
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *why = dlerror();
    if (err && errlen) snprintf(err, errlen, "%s", why ? why : "dlopen failed");
    return MPROC_ENOFUNC;
  }
  /* The handle is dropped on purpose: the library stays loaded. */
  return 0;
}

int mproc__self_exe(char *buf, size_t cap) {
  if (!buf || cap < 2) return -EINVAL;
  ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
  if (n < 0) return -errno;
  if ((size_t)n >= cap - 1) return -ENAMETOOLONG;
  buf[n] = '\0';
  return 0;
}
