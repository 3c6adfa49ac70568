#!/bin/sh
# scripts/install-deps.sh - install the Debian packages mproc's build, tests
# and benchmarks need, when they are missing.
#
#   sh scripts/install-deps.sh          check; install what is missing
#   sh scripts/install-deps.sh --check  check only; never install
#   sh scripts/install-deps.sh --bench  also the benchmarks' peers
#                                       (`make bench` runs this one)
#
# `make check`, `make demo` and `make bench` run this first, so a fresh
# Debian (or Ubuntu) machine needs nothing else.
#
# - Everything present: prints nothing and exits 0 at once (one dpkg-query
#   call), so running it before every build costs nothing.
# - Something missing, running as root: apt-get update, then apt-get
#   install of the missing packages only (no recommends, non-interactive).
#   Nothing is fetched from anywhere but the machine's apt sources.
# - Something missing, not root (or --check): prints the one command that
#   installs it and exits 1.
# - No dpkg (not a Debian system): checks the tools named in the table
#   below with `command -v` and says which are missing; it installs nothing.
#
# MPROC_SKIP_DEPS=1 skips the whole check (for packagers and for systems
# where the tools come from elsewhere).
set -eu

# ---- the package list -------------------------------------------------------
# One package a line: the Debian package, then the commands that show it is
# there on a system without dpkg (none for libraries).  To add a dependency,
# add a line here; nothing else needs changing.
DEPS='
build-essential  cc make
cmake            cmake
pkg-config       pkg-config
python3          python3
libssl-dev
clang            clang
libclang-rt-dev
'
# Only the benchmarks need these (the peers they are measured against);
# `make check` and `make demo` do not ask for them.
BENCH_DEPS='
python3-joblib
'
# -----------------------------------------------------------------------------

if [ "${MPROC_SKIP_DEPS:-0}" = 1 ]; then
  exit 0
fi

check_only=0
case "${1:-}" in
  --check) check_only=1 ;;
  --bench) DEPS="$DEPS$BENCH_DEPS" ;;
  "") ;;
  *) echo "usage: sh scripts/install-deps.sh [--check|--bench]" >&2; exit 2 ;;
esac

packages=$(printf '%s\n' "$DEPS" | awk 'NF { print $1 }')

# Every command of a DEPS line present?  (Lines without commands: unknown.)
commands_present() { # package
  cmds=$(printf '%s\n' "$DEPS" | awk -v p="$1" '$1 == p { $1 = ""; print }')
  [ -n "$cmds" ] || return 1
  for c in $cmds; do
    command -v "$c" >/dev/null 2>&1 || return 1
  done
  return 0
}

if ! command -v dpkg-query >/dev/null 2>&1; then
  missing=""
  for p in $packages; do
    cmds=$(printf '%s\n' "$DEPS" | awk -v p="$p" '$1 == p { $1 = ""; print }')
    for c in $cmds; do
      command -v "$c" >/dev/null 2>&1 || missing="$missing $c"
    done
  done
  if [ -n "$missing" ]; then
    echo "mproc: not a Debian system, and these tools are missing:$missing" >&2
    echo "mproc: install them with your package manager" \
         "(or set MPROC_SKIP_DEPS=1)." >&2
    exit 1
  fi
  exit 0
fi

# One dpkg-query for all packages: "name<TAB>status" for each known one.
# shellcheck disable=SC2086 # word splitting of the list is intended
installed=$(dpkg-query -W -f='${Package}\t${Status}\n' $packages 2>/dev/null |
            awk -F '\t' '$2 ~ / installed$/ { print $1 }') || true

missing=""
for p in $packages; do
  if printf '%s\n' "$installed" | grep -qx -- "$p"; then
    continue
  fi
  # A virtual or renamed package (pkg-config is pkgconf's on newer Debian)
  # is not listed by that name; its commands being there is enough.
  if commands_present "$p"; then
    continue
  fi
  missing="$missing $p"
done

if [ -z "$missing" ]; then
  exit 0
fi

if [ "$check_only" = 0 ] && [ "$(id -u)" = 0 ] &&
   command -v apt-get >/dev/null 2>&1; then
  echo "mproc: installing missing Debian packages:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086 # word splitting of the list is intended
  apt-get install -y -qq --no-install-recommends $missing
  exit 0
fi

echo "mproc: missing Debian packages:$missing; install them with:" >&2
echo "sudo apt-get install -y --no-install-recommends$missing"
exit 1
