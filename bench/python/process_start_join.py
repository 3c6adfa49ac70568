"""bench/python/process_start_join.py - Python's multiprocessing.Process
start+join of a no-op target, the peer of bench/bench-process.c.

Bench ID process_start_join, systems:
  python_fork   get_context('fork').Process(target=noop); start(); join()
  python_spawn  get_context('spawn').Process(target=noop); start(); join()
  python_forkserver
                get_context('forkserver').Process(target=noop); start();
                join()

Method as in the C bench: the systems' rounds alternate, the order
reversed every round, so all see the same noise; a round times OPS
start+join one after the other (object creation included); the figure is
the MEDIAN over rounds of the per-op time, in ms.  Warm-up starts of every
system run first and are not counted (the first spawn also starts
multiprocessing's resource tracker process, the first forkserver start
the forkserver, which imports this module once as its preload).  Spawn
runs a fresh interpreter per process, so it runs fewer ops.

Run it with the interpreter you want measured: bench/run.sh uses Debian's
/usr/bin/python3 when it exists (it starts about 4x faster than a pyenv
build, and spawn pays one interpreter start per process).

Prints one JSON object a line on stdout, details on stderr.  BENCH_QUICK=1
shrinks the counts.  Exits non-zero if a child does not exit with code 0 or
a child is left running.
"""
import json
import multiprocessing as mp
import os
import statistics
import sys
import time


def noop():
    pass


def one_round(ctx, ops):
    t0 = time.perf_counter()  # CLOCK_MONOTONIC on Linux
    for _ in range(ops):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        if p.exitcode != 0:
            sys.exit("process_start_join.py: %s child exit code %r, want 0"
                     % (ctx.get_start_method(), p.exitcode))
        p.close()
    return (time.perf_counter() - t0) * 1e3 / ops


def main():
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    # (system, context, rounds, ops per round)
    plan = [
        ("python_fork", mp.get_context("fork"), 5 if quick else 21,
         5 if quick else 20),
        ("python_spawn", mp.get_context("spawn"), 3 if quick else 9,
         2 if quick else 5),
        ("python_forkserver", mp.get_context("forkserver"),
         5 if quick else 21, 5 if quick else 20),
    ]
    for _, ctx, _, _ in plan:  # warm-up, not counted
        for _ in range(2):
            one_round(ctx, 1)
    rounds = max(r for _, _, r, _ in plan)
    per_op = {name: [] for name, _, _, _ in plan}
    for r in range(rounds):
        order = plan if r % 2 == 0 else plan[::-1]  # reversed every round
        for name, ctx, n_rounds, ops in order:
            if len(per_op[name]) < n_rounds:
                per_op[name].append(one_round(ctx, ops))
    if mp.active_children():
        sys.exit("process_start_join.py: children left running")
    for name, _, n_rounds, ops in plan:
        v = sorted(per_op[name])
        print("process_start_join.py: %-17s per op ms: median %.3f  min %.3f"
              "  max %.3f  (%d rounds x %d ops; %s %s)"
              % (name, statistics.median(v), v[0], v[-1], n_rounds, ops,
                 sys.executable, sys.version.split()[0]), file=sys.stderr)
    for name, _, _, _ in plan:
        print(json.dumps({"bench": "process_start_join", "system": name,
                          "value": round(statistics.median(per_op[name]), 6),
                          "unit": "ms", "better": "lower"}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
