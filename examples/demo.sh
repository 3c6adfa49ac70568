#!/bin/sh
# demo.sh - run the examples that use Process, one after the other.
#
# Usage: sh examples/demo.sh [EXAMPLES_DIR]   (default: build/examples)
#
# Each example prints a header line, then its own output.  Every example
# runs even when an earlier one failed, so that one run shows all failures;
# the script exits non-zero if any example failed or is missing.  The whole
# run takes well under 15 seconds (process_download sleeps at most 9 s).

dir=${1:-build/examples}

# Seed order: 000 (pids), 002 (downloads), 004 (named processes).
examples="process_pids process_download process_named"

failed=""
for name in $examples; do
  echo "==== $name ===="
  if [ ! -x "$dir/$name" ]; then
    echo "demo.sh: $dir/$name is missing (build the examples first)" >&2
    failed="$failed $name"
    continue
  fi
  "$dir/$name"
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "demo.sh: $name failed with exit status $rc" >&2
    failed="$failed $name"
  fi
  echo
done

if [ -n "$failed" ]; then
  echo "demo.sh: FAILED:$failed" >&2
  exit 1
fi
echo "demo.sh: all examples passed"
