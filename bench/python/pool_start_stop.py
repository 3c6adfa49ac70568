"""bench/python/pool_start_stop.py - the life of a multiprocessing.Pool
with one task, under each start method: the peer of bench/bench-pool.c's
pool_start_stop rows.

Bench ID pool_start_stop (ms per pool life, lower is better), systems:
  python_fork        get_context('fork').Pool(W); apply(noop); close();
                     join()
  python_spawn       the same with get_context('spawn'): a fresh
                     interpreter per worker
  python_forkserver  the same with get_context('forkserver')
report.py compares each with the mproc row of the same method (mproc,
mproc_spawn, mproc_forkserver).

W = the CPUs this process may run on (sched_getaffinity, as
mproc_cpu_count in the C bench).
Pool() returns once its workers are started (for spawn and the
forkserver: once each child's preparation data is sent, not once it has
imported anything); close() + join() then waits for every worker to
finish its start, take the sentinel and exit, and for the pool's three
handler threads: one life is every worker's whole start and end, as in
the C bench.

Method as in the C benches: the systems' rounds alternate, the order
reversed every round; a round times OPS lives one after the other; the
figure is the MEDIAN over rounds of the per-life time.  Warm-up lives of
every system run first and are not counted (the first spawn or
forkserver start also starts the resource tracker; the first forkserver
start the server, which imports this module once as its preload).  This
file imports nothing heavy at the top, since every spawned worker imports
it again as __mp_main__ (pool.py imports joblib; a spawned worker of it
would pay for that too).

Prints one JSON object a line on stdout, details on stderr.  BENCH_QUICK=1
shrinks the counts.  Exits non-zero if a child is left running.
"""
import os
import sys

# Python puts this file's directory first on sys.path, and bench/python
# holds queue.py: multiprocessing.pool's `import queue` would load it
# instead of the standard library's.  Drop that entry first.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(
        os.path.abspath(__file__)):
    del sys.path[0]

import json  # noqa: E402 (after the sys.path fix)
import multiprocessing as mp  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

WORKERS = len(os.sched_getaffinity(0))


def noop():
    return None


def one_round(ctx, ops):
    t0 = time.perf_counter()  # CLOCK_MONOTONIC on Linux
    for _ in range(ops):
        pool = ctx.Pool(WORKERS)
        pool.apply(noop)
        pool.close()
        pool.join()
    return (time.perf_counter() - t0) * 1e3 / ops


def main():
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    # (system, context, rounds, lives per round)
    rounds = 3 if quick else 11
    plan = [
        ("python_fork", mp.get_context("fork"), 3 if quick else 8),
        ("python_spawn", mp.get_context("spawn"), 1 if quick else 2),
        ("python_forkserver", mp.get_context("forkserver"),
         2 if quick else 8),
    ]
    for _, ctx, _ in plan:  # warm-up, not counted
        one_round(ctx, 1)
    per_life = {name: [] for name, _, _ in plan}
    for r in range(rounds):
        order = plan if r % 2 == 0 else plan[::-1]  # reversed every round
        for name, ctx, ops in order:
            per_life[name].append(one_round(ctx, ops))
    if mp.active_children():
        sys.exit("pool_start_stop.py: children left running")
    for name, _, ops in plan:
        v = sorted(per_life[name])
        print("pool_start_stop.py: %-17s ms per life: median %.3f  min %.3f"
              "  max %.3f  (%d rounds x %d lives of a Pool(%d); %s %s)"
              % (name, statistics.median(v), v[0], v[-1], rounds, ops,
                 WORKERS, sys.executable, sys.version.split()[0]),
              file=sys.stderr)
    for name, _, _ in plan:
        print(json.dumps({"bench": "pool_start_stop", "system": name,
                          "value": round(statistics.median(per_life[name]),
                                         6),
                          "unit": "ms", "better": "lower"}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
