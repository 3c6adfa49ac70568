#!/bin/sh
# bench/run.sh [BUILD_DIR] - run every benchmark and print the table.
#
# Runs each C bench program BUILD_DIR/bench/bench-* and each Python peer
# bench/python/*.py; every one prints one JSON result a line on stdout
# (details on stderr), collected into BUILD_DIR/bench/results.jsonl
# (truncated first).  Then bench/report.py prints the table with the ratios
# and the target checks.
#
# Benchmarks are not tests: a missed target or a slow figure never fails.
# Exit status: non-zero only when a bench program fails (crash, non-zero
# exit, no output, or more than BENCH_TIMEOUT seconds) or when report.py
# cannot read the results.
#
# Environment: BENCH_QUICK=1 shrinks every bench's counts (a smoke run);
# BENCH_TIMEOUT (seconds, default 600) limits each bench program;
# PYTHON picks the interpreter (default /usr/bin/python3 when it exists:
# Debian's starts about 4x faster than a pyenv build, and the spawn figure
# pays one interpreter start per process).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
BUILD_DIR=${1:-build}
if [ ! -d "$BUILD_DIR" ]; then
  echo "bench/run.sh: no build directory $BUILD_DIR (configure and build it first)" >&2
  exit 1
fi
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
OUT_DIR=$BUILD_DIR/bench
RESULTS=$OUT_DIR/results.jsonl
mkdir -p "$OUT_DIR" || exit 1
: >"$RESULTS" || exit 1

if [ -z "${PYTHON:-}" ]; then
  if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
TIMEOUT=${BENCH_TIMEOUT:-600}
if command -v timeout >/dev/null 2>&1; then
  WITH_TIMEOUT="timeout $TIMEOUT"
else
  WITH_TIMEOUT=""
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mproc-bench.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

# CPU time counters, for the steal share of this run (KVM guests lose CPU
# to their neighbours; a run with a high steal share is worth repeating).
cpu_stat() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9, $9; exit}' /proc/stat 2>/dev/null; }
STAT0=$(cpu_stat)
# shellcheck disable=SC2012 # names only, compared as text
ls -A /dev/shm 2>/dev/null | sort >"$TMP/shm.before"

cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo 2>/dev/null)
echo "mproc benchmarks: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc 2>/dev/null || echo '?') CPUs${cpu_model:+ ($cpu_model)}"
echo "python peer: $PYTHON ($("$PYTHON" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo 'not found'))${BENCH_QUICK:+, BENCH_QUICK=$BENCH_QUICK}"
echo "results: $RESULTS"
echo

failed=0
# run_one NAME CMD...: run a bench, its stdout appended to the results.
run_one() {
  name=$1
  shift
  echo "== $name" >&2
  $WITH_TIMEOUT "$@" >"$TMP/out"
  rc=$?
  cat "$TMP/out" >>"$RESULTS"
  if [ "$rc" -ne 0 ]; then
    if [ "$rc" -eq 124 ]; then
      echo "bench/run.sh: $name: timed out after ${TIMEOUT}s" >&2
    else
      echo "bench/run.sh: $name: FAILED (exit status $rc)" >&2
    fi
    failed=1
  elif [ ! -s "$TMP/out" ]; then
    echo "bench/run.sh: $name: FAILED (no results printed)" >&2
    failed=1
  fi
}

n_c=0
for exe in "$OUT_DIR"/bench-*; do
  if [ ! -f "$exe" ] || [ ! -x "$exe" ]; then continue; fi
  n_c=$((n_c + 1))
  run_one "$(basename "$exe")" "$exe"
done
if [ "$n_c" -eq 0 ]; then
  echo "bench/run.sh: no bench programs in $OUT_DIR (build with -DMPROC_BUILD_BENCH=ON first)" >&2
  failed=1
fi

for py in "$HERE"/python/*.py; do
  [ -f "$py" ] || continue
  run_one "python/$(basename "$py")" "$PYTHON" "$py"
done

# Nothing may be left behind: no bench process still running, nothing new
# in /dev/shm.
for d in /proc/[0-9]*; do
  exe=$(readlink "$d/exe" 2>/dev/null) || continue
  case $exe in
    "$OUT_DIR"/bench-*)
      echo "bench/run.sh: WARNING: process ${d#/proc/} ($exe) still running" >&2 ;;
  esac
done
# shellcheck disable=SC2012
ls -A /dev/shm 2>/dev/null | sort >"$TMP/shm.after"
new_shm=$(comm -13 "$TMP/shm.before" "$TMP/shm.after" 2>/dev/null | tr '\n' ' ')
if [ -n "$new_shm" ]; then
  echo "bench/run.sh: WARNING: new in /dev/shm during the run (maybe another program's): $new_shm" >&2
fi

STAT1=$(cpu_stat)
echo >&2
"$PYTHON" "$HERE/report.py" "$RESULTS"
report_rc=$?
if [ -n "$STAT0" ] && [ -n "$STAT1" ]; then
  echo "$STAT0 $STAT1" | awk '{ dt = $3 - $1; ds = $4 - $2;
    if (dt > 0) printf "CPU steal during the run: %.1f%% of CPU time (taken by the hypervisor for other guests; ratios from one run are what count)\n", 100 * ds / dt }'
fi

if [ "$failed" -ne 0 ]; then
  echo "bench/run.sh: some bench programs failed (see above)" >&2
  exit 1
fi
exit "$report_rc"
