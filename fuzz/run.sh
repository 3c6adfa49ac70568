#!/bin/sh
# fuzz/run.sh BUILD_DIR [SECONDS] - build mproc's libFuzzer targets with
# clang (-fsanitize=fuzzer,address,undefined) into BUILD_DIR and run each
# for SECONDS (default 10).
#
#   fuzz-frame      Python's message framing: the header parser and the
#                   receive path through a socketpair (src/connection.c)
#   fuzz-handshake  the Listener/Client challenge/response, both roles
#                   (src/auth.c)
#
# The library's sources are compiled here with the same sanitizers (and
# fuzzer coverage), not taken from a CMake build, so the targets see
# every line they exercise.  Each run gets -malloc_limit_mb=256 (a
# decoder that believed a 2^40-byte header would be caught at malloc) and
# -rss_limit_mb=1024, starts from a small seed corpus written below, and
# keeps what it finds in BUILD_DIR/corpus-NAME for the next run.
#
# Exit status: 0 when every target ran its time without a finding; 1 on a
# crash, leak, timeout or limit (the input is kept as BUILD_DIR/NAME-crash-*,
# and the end of libFuzzer's log is printed); 2 on a usage or build error.
#
# Environment: CC (default clang), FUZZ_JOBS (parallel compiles, default
# 2), FUZZ_FLAGS (extra libFuzzer flags).
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: sh fuzz/run.sh BUILD_DIR [SECONDS]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=$1
secs=${2:-10}
cc=${CC:-clang}
jobs=${FUZZ_JOBS:-2}
case "$secs" in
  ''|*[!0-9]*) echo "fuzz/run.sh: SECONDS must be a whole number" >&2; exit 2 ;;
esac
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "fuzz/run.sh: no $cc (libFuzzer needs clang: sh scripts/install-deps.sh)" >&2
  exit 2
fi
mkdir -p "$out/obj"
out=$(cd "$out" && pwd)

san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cflags="-std=c11 -D_GNU_SOURCE -g -O1 $san -I$root/include -I$root/src"

# ---- build ----------------------------------------------------------------
# Library objects with fuzzer coverage but no fuzzer main, compiled
# FUZZ_JOBS at a time; a source newer than its object is rebuilt.
compile() { # src obj
  if [ ! -f "$2" ] || [ "$1" -nt "$2" ]; then
    "$cc" $cflags -fsanitize=fuzzer-no-link -c "$1" -o "$2" || return 1
  fi
}
objs=""
pids=""
n=0
for src in "$root"/src/*.c "$root"/src/platform/*.c "$root"/src/sync/*.c \
           "$root"/src/pool/*.c "$root"/src/process/*.c; do
  [ -f "$src" ] || continue
  rel=${src#"$root"/src/}
  obj="$out/obj/$(printf '%s' "$rel" | tr / _).o"
  objs="$objs $obj"
  compile "$src" "$obj" &
  pids="$pids $!"
  n=$((n + 1))
  if [ "$n" -ge "$jobs" ]; then
    for p in $pids; do wait "$p" || { echo "fuzz/run.sh: compile failed" >&2; exit 2; }; done
    pids=""
    n=0
  fi
done
for p in $pids; do wait "$p" || { echo "fuzz/run.sh: compile failed" >&2; exit 2; }; done

# The headers change too: rebuild the targets every time (two files).
for t in frame handshake; do
  # shellcheck disable=SC2086
  "$cc" $cflags -fsanitize=fuzzer "$here/fuzz-$t.c" $objs \
    -o "$out/fuzz-$t" -lcrypto -lpthread -lm -ldl ||
    { echo "fuzz/run.sh: link of fuzz-$t failed" >&2; exit 2; }
done

# ---- seed corpora -----------------------------------------------------------
# Written with printf octal escapes (POSIX sh has no \x).
seeds="$out/seeds"
rm -rf "$seeds"
mkdir -p "$seeds/frame" "$seeds/handshake"
s() { # dir name bytes...
  d=$1; f=$2; shift 2
  printf "$@" > "$seeds/$d/$f"
}
# frame: max (2 bytes), then the stream.
s frame empty-msg      '\001\000\000\000\000\000'
s frame two-msgs       '\001\000\000\000\000\003abc\000\000\000\001z'
s frame escaped        '\001\000\377\377\377\377\000\000\000\000\000\000\000\004abcd'
s frame huge           '\001\000\377\377\377\377\000\000\001\000\000\000\000\000'
s frame negative       '\000\100\200\000\000\001xx'
s frame over-max       '\000\010\000\000\000\011123456789'
s frame cut            '\001\000\000\000\000\010abc'
s frame into           '\200\004\000\000\001\000abc'
# handshake: flags, key length, key, message.
s handshake modern     '\000\003key#CHALLENGE#{sha256}0123456789012345678901234567890123456789'
s handshake md5        '\000\003key#CHALLENGE#{md5}0123456789012345678901234567890123456789'
s handshake sha3       '\001\003key#CHALLENGE#{sha3_384}0123456789012345678901234567890123456789'
s handshake legacy     '\000\003key#CHALLENGE#01234567890123456789'
s handshake answer     '\004\003key{sha256}01234567890123456789012345678901'
s handshake legacy-ans '\004\003key0123456789abcdef'
s handshake welcome    '\006\000#WELCOME#'

# ---- run ----------------------------------------------------------------------
status=0
for t in frame handshake; do
  corpus="$out/corpus-$t"
  mkdir -p "$corpus"
  log="$out/fuzz-$t.log"
  echo "fuzz-$t: ${secs}s"
  # shellcheck disable=SC2086
  if "$out/fuzz-$t" -max_total_time="$secs" -malloc_limit_mb=256 \
       -rss_limit_mb=1024 -timeout=10 -max_len=4096 \
       -artifact_prefix="$out/$t-" -print_final_stats=1 \
       ${FUZZ_FLAGS:-} "$corpus" "$seeds/$t" > "$log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|Done)' "$log" | sed 's/^/  /' || true
  else
    echo "fuzz-$t: FAILED (log: $log)" >&2
    tail -n 40 "$log" >&2
    status=1
  fi
done
exit $status
