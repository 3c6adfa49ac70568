#!/bin/sh
# demo.sh - run the examples, one after the other.
#
# Usage: sh examples/demo.sh [EXAMPLES_DIR]   (default: build/examples)
#
# Each example prints a header line, then its own output.  Every example
# runs even when an earlier one failed, so that one run shows all failures;
# the script exits non-zero if any example failed or is missing.  The whole
# run takes well under 30 seconds (linecount walks and counts at most
# 20000 files of /usr/share twice, a few seconds; process_download sleeps
# at most 9 s; the seed-001 Lock/Value/Array examples about 1 to 2 s each;
# the queue and pool examples under 1 s each).

dir=${1:-build/examples}

# First seed 004's real-world program: count the lines of the text files
# under /usr/share (its default directory) with a pool, and serially.
examples="linecount"
# Seed order: 000 (pids), 002 (downloads), 004 (named processes).
examples="$examples process_pids process_download process_named"
# Seed 001 (Lock, Value, Array): in the tutorial's order.
examples="$examples lock_add_nolock lock_add_lock value_add array_negate"
# Queues: seed 000 (put/get), 003 (a pool's results), 002 (producers and
# consumers on a JoinableQueue).
examples="$examples queue_put_get queue_results producer_consumer"
# Pools: seed 003 (例7.1 apply_async, 例7.2 apply, 例7.3 results,
# 例7.4 several functions), seed 004 (map of squares).
examples="$examples pool_apply_async pool_apply pool_results pool_functions"
examples="$examples pool_map_squares"
# Beyond the seeds: a worker killed mid-task, a task over its timeout, an
# adaptive map with a progress bar.
examples="$examples pool_faults"
# The start methods: fork, spawn and forkserver in a program with a thread.
examples="$examples start_methods"

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
