"""bench/python/sync.py - Python's multiprocessing Lock, locked Value and
Event, the peers of bench/bench-sync.c.

Bench IDs, system "python":
  lock_uncontended  ns per acquire()+release() pair of a multiprocessing.Lock
                    in one process (bound methods called in a for loop; the
                    loop's own cost, printed on stderr, is included, as in
                    any Python program);
  value_contended   M increments/s in total: two processes each run
                    `with v.get_lock(): v.value += 1` N times on a
                    Value('q') (its default lock, an RLock); the final value
                    must be exactly 2N;
  event_pingpong    us per round trip between two processes with two Events:
                    A: e1.set(); e2.wait(); e2.clear()  B: e1.wait();
                    e1.clear(); e2.set().

Method as in the C bench: the figure is the MEDIAN over rounds; the three
benches take turns round by round so all see the same noise.  The
two-process benches start their processes (fork context) for every round
and time only the work: value_contended's workers meet at a Barrier, each
records its start and end time (time.perf_counter, CLOCK_MONOTONIC, the
same clock in every process) and the round's time is last end - first
start; event_pingpong's A (this process) times N round trips after WARM
untimed ones.  One warm-up round of each runs first and is not counted.

Prints one JSON object a line on stdout, details on stderr.  BENCH_QUICK=1
shrinks the counts.  Exits non-zero if a child fails, a count is wrong or a
child is left running.
"""
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

WARM = 50  # untimed round trips before a timed ping-pong

CTX = mp.get_context("fork")


def lock_round(lock, ops):
    acquire, release = lock.acquire, lock.release
    t0 = time.perf_counter()
    for _ in range(ops):
        acquire()
        release()
    return (time.perf_counter() - t0) * 1e9 / ops


def empty_loop(ops):
    t0 = time.perf_counter()
    for _ in range(ops):
        pass
    return (time.perf_counter() - t0) * 1e9 / ops


def incr_worker(v, n, barrier, times, k):
    lock = v.get_lock()
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(n):
        with lock:
            v.value += 1
    times[2 * k] = t0
    times[2 * k + 1] = time.perf_counter()


def value_round(n):
    v = CTX.Value("q", 0)
    barrier = CTX.Barrier(2)
    times = CTX.RawArray("d", 4)
    ps = [CTX.Process(target=incr_worker, args=(v, n, barrier, times, k))
          for k in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
        if p.exitcode != 0:
            sys.exit("sync.py: value_contended worker exit code %r"
                     % p.exitcode)
    if v.value != 2 * n:
        sys.exit("sync.py: value_contended final value %d, want %d"
                 % (v.value, 2 * n))
    start = min(times[0], times[2])
    end = max(times[1], times[3])
    return 2 * n / (end - start) / 1e6


def ping_b(e1, e2, n):
    for _ in range(WARM + n):
        e1.wait()
        e1.clear()
        e2.set()


def ping_round(n):
    e1, e2 = CTX.Event(), CTX.Event()
    b = CTX.Process(target=ping_b, args=(e1, e2, n))
    b.start()
    for i in range(WARM + n):
        if i == WARM:
            t0 = time.perf_counter()
        e1.set()
        e2.wait()
        e2.clear()
    t = time.perf_counter() - t0
    b.join()
    if b.exitcode != 0:
        sys.exit("sync.py: event_pingpong process B exit code %r" % b.exitcode)
    return t * 1e6 / n


def main():
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    lock_ops = 20000 if quick else 200000
    val_n = 5000 if quick else 50000
    ping_n = 200 if quick else 2000
    lock = CTX.Lock()
    # (bench, rounds, one round, unit, better)
    plan = [
        ("lock_uncontended", 3 if quick else 21,
         lambda: lock_round(lock, lock_ops), "ns", "lower"),
        ("value_contended", 3 if quick else 11,
         lambda: value_round(val_n), "M/s", "higher"),
        ("event_pingpong", 3 if quick else 11,
         lambda: ping_round(ping_n), "us", "lower"),
    ]
    for _, _, fn, _, _ in plan:  # warm-up, not counted
        fn()
    loop_ns = []
    res = {name: [] for name, _, _, _, _ in plan}
    for r in range(max(n for _, n, _, _, _ in plan)):
        order = plan if r % 2 == 0 else plan[::-1]
        for name, n_rounds, fn, _, _ in order:
            if len(res[name]) < n_rounds:
                res[name].append(fn())
                if name == "lock_uncontended":
                    loop_ns.append(empty_loop(lock_ops))
    if mp.active_children():
        sys.exit("sync.py: children left running")
    detail = {
        "lock_uncontended": "%d ops a round; the empty for loop alone: "
                            "%.1f ns/iteration" % (lock_ops,
                                                   statistics.median(loop_ns)),
        "value_contended": "2 processes x %d increments a round" % val_n,
        "event_pingpong": "%d round trips a round, %d warm" % (ping_n, WARM),
    }
    for name, n_rounds, _, unit, _ in plan:
        v = sorted(res[name])
        print("sync.py: %-16s python %s: median %.4g  min %.4g  max %.4g  "
              "(%d rounds; %s; %s %s)"
              % (name, unit, statistics.median(v), v[0], v[-1], n_rounds,
                 detail[name], sys.executable, sys.version.split()[0]),
              file=sys.stderr)
    for name, _, _, unit, better in plan:
        print(json.dumps({"bench": name, "system": "python",
                          "value": round(statistics.median(res[name]), 6),
                          "unit": unit, "better": better}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
