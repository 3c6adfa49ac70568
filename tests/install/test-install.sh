#!/bin/sh
# tests/install/test-install.sh BUILD_DIR SOURCE_DIR - the install test.
#
# Installs the build tree into a scratch prefix and uses it the way a user
# would, from outside the source tree:
#   1. `cmake --install BUILD_DIR --prefix TMP`; the expected files are there;
#   2. the shared library has the SONAME libmproc.so.MAJOR.MINOR (while the
#      major version is 0), the file it names is installed, and it exports
#      only public mproc_ names;
#   3. every installed header compiles on its own (C11 -Wpedantic, and C++
#      when a C++ compiler is there);
#   4. tests/install/outside.c is built with
#      `$CC outside.c $(pkg-config --cflags --libs mproc)` and run against
#      the installed libmproc.so, then linked with libmproc.a and run;
#   5. tests/install/cmake-consumer is configured with
#      CMAKE_PREFIX_PATH=TMP, finds the package with find_package(mproc),
#      and its two programs (mproc::mproc, mproc::mproc_static) run.
#
# ctest runs it as the case install_pkgconfig, with CC and CMAKE in the
# environment.  Exit status: 0 passed, 1 failed, 77 skipped (only when
# pkg-config is missing).  The scratch directory is always removed; the
# programs it runs join their children and create nothing in /dev/shm.
set -eu

if [ $# -ne 2 ]; then
  echo "usage: sh tests/install/test-install.sh BUILD_DIR SOURCE_DIR" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
CC=${CC:-cc}
CMAKE=${CMAKE:-cmake}

if ! command -v pkg-config >/dev/null 2>&1; then
  echo "SKIP: pkg-config is not installed"
  exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mproc-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
prefix=$tmp/prefix
work=$tmp/work
mkdir "$work"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
step() { echo "== $*"; }
# Run a command quietly; on failure show its output and fail.
quiet() { # what, command...
  what=$1
  shift
  if ! "$@" >"$tmp/log" 2>&1; then
    cat "$tmp/log" >&2
    fail "$what"
  fi
}

# A sanitizer build's library needs its programs built with the same flags.
san=""
if grep -Eiq '^MPROC_SANITIZE:BOOL=(ON|1|TRUE|YES|Y)$' \
     "$build/CMakeCache.txt" 2>/dev/null; then
  san="-fsanitize=address,undefined -fno-omit-frame-pointer"
fi
# Keep an outer make's jobserver out of the consumer's build.
unset MAKEFLAGS MFLAGS MAKELEVEL || true

shm_before=$(ls -A /dev/shm 2>/dev/null || true)

# ---- 1. install -------------------------------------------------------------
step "cmake --install $build --prefix $prefix"
quiet "cmake --install" "$CMAKE" --install "$build" --prefix "$prefix"

pc=$(find "$prefix" -path '*/pkgconfig/mproc.pc' | head -n 1)
[ -n "$pc" ] || fail "no pkgconfig/mproc.pc under $prefix"
PKG_CONFIG_PATH=$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_PATH

version=$(pkg-config --modversion mproc)
libdir=$(pkg-config --variable=libdir mproc)
incdir=$(pkg-config --variable=includedir mproc)
echo "pkg-config: mproc $version, libdir=$libdir, includedir=$incdir"
# The .pc file must describe the prefix it was installed to, not the one
# the build was configured with.
case "$libdir" in "$prefix"/*) ;; *) fail "libdir $libdir is outside $prefix" ;; esac
case "$incdir" in "$prefix"/*) ;; *) fail "includedir $incdir is outside $prefix" ;; esac
libdir=$(cd "$libdir" && pwd)
incdir=$(cd "$incdir" && pwd)

[ -f "$incdir/mproc.h" ] || fail "include/mproc.h not installed"
for h in "$src"/include/mproc/*.h; do
  [ -f "$incdir/mproc/${h##*/}" ] || fail "include/mproc/${h##*/} not installed"
done
[ -f "$libdir/libmproc.a" ] || fail "libmproc.a not installed"
[ -L "$libdir/libmproc.so" ] || fail "libmproc.so (link-time symlink) not installed"
[ -n "$(find "$prefix" -path '*/cmake/mproc/mprocConfig.cmake')" ] ||
  fail "the CMake package (cmake/mproc/mprocConfig.cmake) is not installed"
[ -n "$(find "$prefix" -path '*/cmake/mproc/mprocConfigVersion.cmake')" ] ||
  fail "cmake/mproc/mprocConfigVersion.cmake is not installed"

# ---- 2. SONAME and exported symbols ----------------------------------------
step "SONAME and exports of $libdir/libmproc.so"
if command -v readelf >/dev/null 2>&1; then
  soname=$(readelf -d "$libdir/libmproc.so" |
           sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
elif command -v objdump >/dev/null 2>&1; then
  soname=$(objdump -p "$libdir/libmproc.so" | awk '$1 == "SONAME" { print $2 }')
else
  fail "neither readelf nor objdump is installed"
fi
major=${version%%.*}
minor=${version#*.}
minor=${minor%%.*}
if [ "$major" = 0 ]; then
  want=libmproc.so.$major.$minor # before 1.0 every minor release breaks ABI
else
  want=libmproc.so.$major
fi
echo "SONAME: ${soname:-(none)}"
[ -n "$soname" ] || fail "libmproc.so has no SONAME"
[ "$soname" = "$want" ] || fail "SONAME is $soname, expected $want"
[ -e "$libdir/$soname" ] || fail "$soname (the SONAME's file) is not installed"

if command -v nm >/dev/null 2>&1; then
  syms=$(nm -D --defined-only "$libdir/libmproc.so" | awk 'NF >= 3 { print $3 }')
  printf '%s\n' "$syms" | grep -q '^mproc_' || fail "libmproc.so exports no mproc_ function"
  # Internal mproc__ names and anything unprefixed stay hidden (symbols
  # starting with _ are the toolchain's, e.g. a sanitizer build's).
  bad=$(printf '%s\n' "$syms" | grep -v -e '^_' -e '^mproc_[^_]' |
        tr '\n' ' ' || true)
  [ -z "$bad" ] || fail "libmproc.so exports non-public symbols: $bad"
fi

# ---- 3. headers stand alone --------------------------------------------------
step "each installed header compiles on its own"
cflags=$(pkg-config --cflags mproc)
cxx=""
for c in c++ g++ clang++; do
  if command -v "$c" >/dev/null 2>&1; then
    cxx=$c
    break
  fi
done
for h in "$incdir"/mproc.h "$incdir"/mproc/*.h; do
  h=${h#"$incdir"/}
  printf '#include <%s>\n#include <%s>\nint main(void) { return 0; }\n' \
    "$h" "$h" >"$work/header.c"
  # shellcheck disable=SC2086 # flag lists are split on purpose
  quiet "$h does not compile on its own (C11)" \
    "$CC" -std=c11 -Wall -Wextra -Wpedantic -Wstrict-prototypes -Werror \
    -fsyntax-only $cflags "$work/header.c"
  if [ -n "$cxx" ]; then
    # shellcheck disable=SC2086
    quiet "$h does not compile as C++" \
      "$cxx" -std=c++11 -Wall -Wextra -Werror -fsyntax-only -x c++ \
      $cflags "$work/header.c"
  fi
done

# ---- 4. pkg-config: shared, then static -------------------------------------
outside=$src/tests/install/outside.c
libs=$(pkg-config --libs mproc)
step "$CC outside.c \$(pkg-config --cflags --libs mproc)"
# shellcheck disable=SC2086
quiet "outside.c does not build with pkg-config" \
  "$CC" $san -std=c11 -Wall -Wextra -Werror -o "$work/outside" "$outside" \
  $cflags $libs
if command -v ldd >/dev/null 2>&1; then
  got=$(LD_LIBRARY_PATH=$libdir ldd "$work/outside" | awk '/libmproc/ { print $3 }')
  case "$got" in "$libdir"/*) ;; *) fail "outside loads libmproc from '$got', not $libdir" ;; esac
fi
LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$work/outside" ||
  fail "outside (shared) failed"

step "outside.c linked with libmproc.a and \$(pkg-config --static --libs)"
private=""
for f in $(pkg-config --static --libs-only-l mproc); do
  [ "$f" = -lmproc ] || private="$private $f"
done
# shellcheck disable=SC2086
quiet "outside.c does not link statically" \
  "$CC" $san -std=c11 -Wall -Wextra -Werror -o "$work/outside-static" \
  "$outside" $cflags "$libdir/libmproc.a" $private
if command -v readelf >/dev/null 2>&1 &&
   readelf -d "$work/outside-static" | grep -q 'NEEDED.*libmproc'; then
  fail "outside-static still needs libmproc.so"
fi
env -u LD_LIBRARY_PATH "$work/outside-static" || fail "outside (static) failed"

# ---- 5. CMake: find_package(mproc) ------------------------------------------
step "cmake consumer: find_package(mproc) with CMAKE_PREFIX_PATH=$prefix"
quiet "the consumer project does not configure" \
  "$CMAKE" -S "$src/tests/install/cmake-consumer" -B "$work/consumer" \
  -DCMAKE_C_COMPILER="$CC" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON \
  -DMPROC_EXPECT_VERSION="$version" \
  -DCMAKE_C_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san"
found=$(sed -n 's/^mproc_DIR:PATH=//p' "$work/consumer/CMakeCache.txt")
echo "mproc_DIR: $found"
case "$found" in "$prefix"/*) ;; *) fail "find_package found mproc in '$found', not under $prefix" ;; esac
quiet "the consumer project does not build" "$CMAKE" --build "$work/consumer"
env -u LD_LIBRARY_PATH "$work/consumer/outside_shared" ||
  fail "consumer outside_shared failed"
env -u LD_LIBRARY_PATH "$work/consumer/outside_static" ||
  fail "consumer outside_static failed"

# Entries in /dev/shm are only reported: tests running beside this one may
# create and remove their own.
shm_after=$(ls -A /dev/shm 2>/dev/null || true)
if [ "$shm_before" != "$shm_after" ]; then
  echo "note: /dev/shm changed during the test (other tests may run beside it)"
fi

echo "PASS: install test"
