"""bench/python/pool.py - Python's process pools (multiprocessing.Pool,
concurrent.futures.ProcessPoolExecutor, joblib), the peers of
bench/bench-pool.c.

Bench IDs and systems (W = the CPUs this process may run on, every system):
  map_chunk1       M tasks/s, higher is better; a map of sq(x) = x * x over
                   range(n), chunksize 1; the result list is checked.
                   Python needs ~50 us a task here, so every system maps
                   fewer items than the C bench's 1,000,000 (see COUNTS);
                   the figure is a rate all the same.
  map_default      the same with the default chunksize.
      python_pool    multiprocessing.Pool(W) (fork context), pool.map(sq,
                     items, chunksize=1) / pool.map(sq, items) (Python's
                     formula: ceil(n / (4 * W)));
      python_ppe     concurrent.futures.ProcessPoolExecutor(W, fork
                     context), list(ex.map(sq, items, chunksize=1)) /
                     chunksize=ceil(n / (4 * W)): PPE's own default is 1,
                     so map_default gives it Pool's formula;
      joblib         joblib.Parallel(n_jobs=W, backend='loky',
                     batch_size=1 / 'auto')(delayed(sq)(x) for x in items).
  apply_roundtrip  us per round trip, lower is better; one task at a time:
                   pool.apply_async(inc, (x,)).get() (python_pool), the
                   answer x + 1 checked.
  efficiency_10us  (serial time / map time) / W, higher is better; a map
  efficiency_1ms   (default chunksize, as above) over items that each run
                   a pure-Python loop calibrated here to ~10 us / ~1 ms;
                   the serial time is the same function over the same
                   items in a plain loop in this process, measured in the
                   same round.  Systems python_pool, python_ppe, joblib.
  worker_uss_kib   KiB, lower is better; Private_Clean + Private_Dirty
                   (/proc/PID/smaps_rollup) of the idle workers
                   (pool._pool[i].pid) of a fresh Pool(W) (fork context),
                   made at the end after the other pools were shut down,
                   after pool.map(sq, range(100000)) and 0.2 s of sleep;
                   the median over the workers (python_pool).

Method as in the C bench: the pools are made once, before the rounds, and
live through the whole program; the systems of a bench take turns round by
round, the order reversed every round; one warm-up round of each runs
first and is not counted (it also starts the PPE's and joblib's workers);
the figure is the MEDIAN over rounds; efficiency is computed per round.

Prints one JSON object a line on stdout, details on stderr.  BENCH_QUICK=1
shrinks the counts.  If joblib cannot be imported its rows are left out,
with a note on stderr.  Exits non-zero if a result is wrong or a pool's
process is left running.
"""
import os
import sys

# Python puts this file's directory first on sys.path, and bench/python
# holds queue.py: multiprocessing's and concurrent.futures' `import queue`
# would load it instead of the standard library's.  Drop that entry first.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(
        os.path.abspath(__file__)):
    del sys.path[0]

import concurrent.futures as cf  # noqa: E402 (after the sys.path fix)
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

try:
    import joblib  # noqa: E402
except ImportError as e:  # pragma: no cover - depends on the machine
    joblib = None
    JOBLIB_ERR = "%s: %s" % (type(e).__name__, e)

CTX = mp.get_context("fork")
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
W = len(os.sched_getaffinity(0))

# Items a round, per bench and system (full, quick): about 1-2 s a round.
COUNTS = {
    ("map_chunk1", "python_pool"): (40000, 4000),
    ("map_chunk1", "python_ppe"): (10000, 1000),
    ("map_chunk1", "joblib"): (5000, 500),
    ("map_default", "python_pool"): (1000000, 100000),
    ("map_default", "python_ppe"): (1000000, 100000),
    ("map_default", "joblib"): (200000, 20000),
    ("efficiency_10us", None): (100000, 5000),
    ("efficiency_1ms", None): (1000, 100),
    ("apply_roundtrip", None): (3000, 300),
}
ROUNDS = 3
APPLY_ROUNDS = 3 if QUICK else 7

# Loop steps of burn10 / burn1m: calibrated in main() before any worker
# exists (fork copies them; joblib's cloudpickle sends the globals a
# __main__ function uses).
K10 = 0
K1M = 0


def count(bench, system=None):
    return COUNTS[(bench, system)][1 if QUICK else 0]


def die(msg):
    sys.exit("pool.py: " + msg)


def sq(x):
    return x * x


def inc(x):
    return x + 1


def burn(x, k):
    for _ in range(k):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
    return x


def burn10(x):
    return burn(x, K10)


def burn1m(x):
    return burn(x, K1M)


def calibrate(target_s):
    """Loop steps for target_s seconds: the best of a few timed runs."""
    k = 20000
    best = None
    for _ in range(5):
        t = time.perf_counter()
        burn(1, k)
        dt = (time.perf_counter() - t) / k
        best = dt if best is None or dt < best else best
    return max(1, int(target_s / best))


def py_chunk(n):
    c, extra = divmod(n, 4 * W)
    return c + 1 if extra else c


class Systems:
    """The pools, made once."""

    def __init__(self):
        self.pool = CTX.Pool(W)
        self.ppe = cf.ProcessPoolExecutor(W, mp_context=CTX)

    def map(self, system, fn, items, chunk1):
        if system == "python_pool":
            if chunk1:
                return self.pool.map(fn, items, chunksize=1)
            return self.pool.map(fn, items)
        if system == "python_ppe":
            c = 1 if chunk1 else py_chunk(len(items))
            return list(self.ppe.map(fn, items, chunksize=c))
        if system == "joblib":
            par = joblib.Parallel(n_jobs=W, backend="loky",
                                  batch_size=1 if chunk1 else "auto")
            return par(joblib.delayed(fn)(x) for x in items)
        if system == "serial":
            return [fn(x) for x in items]
        raise ValueError(system)

    def close(self):
        self.pool.close()
        self.pool.join()
        self.ppe.shutdown(wait=True)
        if joblib is not None:
            from joblib.externals.loky import get_reusable_executor
            get_reusable_executor().shutdown(wait=True)


class JoblibBroken(Exception):
    """joblib's loky workers failed to start, again and again."""


def timed_map(sy, system, fn, items, chunk1, want, what):
    for attempt in range(3):
        t = time.perf_counter()
        try:
            got = sy.map(system, fn, items, chunk1)
        except Exception as e:  # noqa: BLE001 - loky's, see below
            # Seen here: a loky worker dies at its start (its named
            # semaphore is gone from /dev/shm: FileNotFoundError in
            # _SemLock._rebuild), and the executor is broken.  The next
            # Parallel call makes a new executor: retry, untimed.
            if system != "joblib":
                raise
            print("pool.py: %s: joblib failed (%s: %s), retrying"
                  % (what, type(e).__name__, str(e).splitlines()[0]),
                  file=sys.stderr)
            if attempt == 2:
                raise JoblibBroken(str(e)) from e
            continue
        break
    dt = time.perf_counter() - t
    if got != want:
        die("%s: %s: wrong results" % (what, system))
    return dt


def bench_map(sy, systems, bench, chunk1):
    """{system: [M tasks/s per round]}"""
    items = {s: range(count(bench, s)) for s in systems}
    want = {s: [x * x for x in items[s]] for s in systems}
    for s in systems:  # warm-up
        n = max(1, len(items[s]) // 4)
        timed_map(sy, s, sq, items[s][:n], chunk1, want[s][:n], bench)
    res = {s: [] for s in systems}
    for r in range(ROUNDS):
        for s in (systems if r % 2 == 0 else systems[::-1]):
            dt = timed_map(sy, s, sq, items[s], chunk1, want[s], bench)
            res[s].append(len(items[s]) / dt / 1e6)
    return res


def bench_efficiency(sy, systems, bench, fn):
    """{system: [efficiency per round]}, median serial seconds a task"""
    n = count(bench)
    items = list(range(n))
    want = [fn(x) for x in items]  # also warms the serial loop up
    for s in systems:
        m = max(1, n // 4)
        timed_map(sy, s, fn, items[:m], False, want[:m], bench)
    order = ["serial"] + systems
    res = {s: [] for s in systems}
    ser = []
    for r in range(ROUNDS):
        t = {}
        for s in (order if r % 2 == 0 else order[::-1]):
            t[s] = timed_map(sy, s, fn, items, False, want, bench)
        ser.append(t["serial"])
        for s in systems:
            res[s].append(t["serial"] / t[s] / W)
    return res, statistics.median(ser) / n


def bench_apply(sy):
    n = count("apply_roundtrip")
    pool = sy.pool

    def one_round(m):
        t = time.perf_counter()
        for i in range(m):
            if pool.apply_async(inc, (i,)).get() != i + 1:
                die("apply_roundtrip: wrong answer")
        return (time.perf_counter() - t) / m * 1e6

    one_round(max(1, n // 4))
    return [one_round(n) for _ in range(APPLY_ROUNDS)]


def uss_kib(pid):
    total, seen = 0, 0
    with open("/proc/%d/smaps_rollup" % pid, encoding="ascii") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
                seen += 1
    if seen != 2:
        raise OSError("no Private_* lines in /proc/%d/smaps_rollup" % pid)
    return total


def bench_uss():
    """A fresh Pool(W) (fork), one map, then its idle workers' USS."""
    n = 100000
    pool = CTX.Pool(W)
    try:
        if pool.map(sq, range(n)) != [x * x for x in range(n)]:
            die("worker_uss_kib: wrong results")
        time.sleep(0.2)  # idle
        uss = [uss_kib(p.pid) for p in pool._pool]
    finally:
        pool.close()
        pool.join()
    return uss, n


def summary(bench, system, unit, v, note):
    v = sorted(v)
    print("pool.py: %-16s %-12s %s: median %.4g  min %.4g  max %.4g  (%s)"
          % (bench, system, unit, statistics.median(v), v[0], v[-1], note),
          file=sys.stderr)
    return statistics.median(v)


def main_benches(sy, systems, rows):
    """Every bench but worker_uss_kib; rows: (bench, system, value, unit,
    better)."""
    for bench, chunk1 in (("map_chunk1", True), ("map_default", False)):
        res = bench_map(sy, systems, bench, chunk1)
        for s in systems:
            n = count(bench, s)
            note = "%d rounds of %d items, chunksize %s, %d workers" % (
                ROUNDS, n, 1 if chunk1 else (
                    "auto" if s == "joblib" else py_chunk(n)), W)
            rows.append((bench, s, summary(bench, s, "M tasks/s", res[s],
                                           note), "M/s", "higher"))
    v = bench_apply(sy)
    rows.append(("apply_roundtrip", "python_pool",
                 summary("apply_roundtrip", "python_pool",
                         "us/round trip", v,
                         "%d rounds of %d round trips" % (
                             APPLY_ROUNDS, count("apply_roundtrip"))),
                 "us", "lower"))
    for bench, fn, k in (("efficiency_10us", burn10, K10),
                         ("efficiency_1ms", burn1m, K1M)):
        res, per = bench_efficiency(sy, systems, bench, fn)
        n = count(bench)
        for s in systems:
            note = ("%d rounds of %d items of %.4g us (serial, median; "
                    "%d loop steps), chunksize %s, %d workers" % (
                        ROUNDS, n, per * 1e6, k,
                        "auto" if s == "joblib" else py_chunk(n), W))
            rows.append((bench, s, summary(bench, s, "efficiency",
                                           res[s], note),
                         "x", "higher"))


def main():
    global K10, K1M
    # The results go to the real stdout; everything else, also what a
    # worker prints (loky's workers print their start-up failures on
    # stdout), goes to stderr.
    results = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)
    K10 = calibrate(10e-6)
    K1M = calibrate(1e-3)
    systems = ["python_pool", "python_ppe"]
    if joblib is not None:
        systems.append("joblib")
    else:
        print("pool.py: joblib rows left out: cannot import joblib (%s)"
              % JOBLIB_ERR, file=sys.stderr)
    sy = Systems()
    rows = []  # (bench, system, value, unit, better)
    try:
        main_benches(sy, systems, rows)
    except JoblibBroken as e:
        print("pool.py: joblib rows left out: its workers keep failing "
              "(%s); rerunning without joblib" % str(e).splitlines()[0],
              file=sys.stderr)
        systems.remove("joblib")
        rows.clear()
        main_benches(sy, systems, rows)
    finally:
        sy.close()
    uss, n = bench_uss()
    rows.append(("worker_uss_kib", "python_pool",
                 summary("worker_uss_kib", "python_pool", "KiB", uss,
                         "%d idle fork workers of a fresh Pool after a map "
                         "of %d items" % (len(uss), n)), "KiB", "lower"))
    if mp.active_children():
        die("children left running")
    print("pool.py: %s %s" % (sys.executable, sys.version.split()[0]),
          file=sys.stderr)
    for bench, s, value, unit, better in rows:
        print(json.dumps({"bench": bench, "system": s,
                          "value": round(value, 6), "unit": unit,
                          "better": better}), file=results)
    results.close()


if __name__ == "__main__":
    main()
