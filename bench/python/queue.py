"""bench/python/queue.py - Python's multiprocessing Queue and SimpleQueue,
the peers of bench/bench-queue.c.

Bench IDs and systems:
  queue_small       M messages/s, higher is better; 1 producer process ->
                    1 consumer process, messages of 8 bytes
                    (i.to_bytes(8, 'little')), systems python_queue
                    (multiprocessing.Queue: put() hands the object to the
                    feeder thread, which pickles it and writes it to a pipe)
                    and python_simplequeue (SimpleQueue: put() pickles and
                    writes under a lock itself); the consumer sums the
                    values and checks the count and the sum;
  queue_1mib        MB/s (10^6 bytes), higher is better; the same with
                    messages of one 1 MiB bytes object (the same object
                    every time; pickling copies it, as Python always does);
                    the consumer checks every length;
  queue_mpmc_small  M messages/s in total, higher is better; 2 producers ->
                    2 consumers on one Queue (python_queue); producer p puts
                    N/2 values p << 40 | seq, each consumer gets exactly N/2
                    (so all N arrive), then the count and the sum over both
                    consumers are checked.

Method as in the C bench, with fewer messages a round (Python moves about
0.1 M small messages/s: the C bench's 1,000,000 would take 10 s a round):
the figure is the MEDIAN over rounds; the systems take turns round by round,
the order reversed every round, so all see the same noise.  Every round
forks its processes (fork context) before the timed part: the producers
(and, for mpmc, the consumers) wait at a Barrier with this process, each
records its start or end time (time.perf_counter, CLOCK_MONOTONIC, the same
clock in every process), and a round's time is last end - first start.
In the 1 -> 1 benches this process is the consumer.  One warm-up round of
each runs first and is not counted.

Prints one JSON object a line on stdout, details on stderr.  BENCH_QUICK=1
shrinks the counts.  A system that cannot run here (no working
multiprocessing synchronization, for instance) is skipped with a message on
stderr.  Exits non-zero if a child fails, a count or a sum is wrong, or a
child is left running.
"""
import os
import sys

# This file is named queue.py, and Python puts its directory first on
# sys.path: multiprocessing's own `import queue` would load this script
# instead of the standard library's queue module.  Drop that entry first.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(
        os.path.abspath(__file__)):
    del sys.path[0]

import json  # noqa: E402 (after the sys.path fix on purpose)
import multiprocessing as mp  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

CTX = mp.get_context("fork")
MIB = 1 << 20


def die(msg):
    sys.exit("queue.py: " + msg)


def producer_small(q, n, barrier, times, k, tag):
    put = q.put
    barrier.wait()
    times[k] = time.perf_counter()
    for i in range(n):
        put((tag | i).to_bytes(8, "little"))
    if hasattr(q, "join_thread"):  # Queue: flush the feeder first
        q.close()
        q.join_thread()


def producer_big(q, n, barrier, times, k):
    payload = bytes(MIB)
    put = q.put
    barrier.wait()
    times[k] = time.perf_counter()
    for _ in range(n):
        put(payload)
    if hasattr(q, "join_thread"):
        q.close()
        q.join_thread()


def join_all(ps, what):
    for p in ps:
        p.join()
        if p.exitcode != 0:
            die("%s: child exit code %r" % (what, p.exitcode))


def spsc_round(make_queue, n, big):
    """1 -> 1; this process consumes.  Returns M msg/s or MB/s."""
    q = make_queue()
    barrier = CTX.Barrier(2)
    times = CTX.RawArray("d", 1)
    if big:
        p = CTX.Process(target=producer_big, args=(q, n, barrier, times, 0))
    else:
        p = CTX.Process(target=producer_small,
                        args=(q, n, barrier, times, 0, 0))
    p.start()
    get = q.get
    barrier.wait()
    if big:
        for _ in range(n):
            if len(get()) != MIB:
                die("queue_1mib: a message is not 1 MiB long")
    else:
        total = 0
        for _ in range(n):
            total += int.from_bytes(get(), "little")
    t_end = time.perf_counter()
    join_all([p], "queue_1mib" if big else "queue_small")
    if not big and total != n * (n - 1) // 2:
        die("queue_small: sum %d, want %d" % (total, n * (n - 1) // 2))
    if hasattr(q, "join_thread"):
        q.close()
    dt = t_end - times[0]
    if big:
        return n * MIB / dt / 1e6
    return n / dt / 1e6


def consumer_mpmc(q, n, barrier, times, k, sums):
    get = q.get
    barrier.wait()
    total = 0
    count = 0
    for _ in range(n):
        total += int.from_bytes(get(), "little")
        count += 1
    times[k] = time.perf_counter()
    sums[2 * (k - 2)] = total
    sums[2 * (k - 2) + 1] = count


def mpmc_round(n):
    """2 producers -> 2 consumers, n messages in all; M msg/s."""
    half = n // 2
    q = CTX.Queue()
    barrier = CTX.Barrier(4)
    times = CTX.RawArray("d", 4)
    sums = CTX.RawArray("q", 4)
    ps = [CTX.Process(target=producer_small,
                      args=(q, half, barrier, times, k, k << 40))
          for k in range(2)]
    ps += [CTX.Process(target=consumer_mpmc,
                       args=(q, half, barrier, times, k, sums))
           for k in range(2, 4)]
    for p in ps:
        p.start()
    join_all(ps, "queue_mpmc_small")
    count = sums[1] + sums[3]
    total = sums[0] + sums[2]
    want = 2 * (half * (half - 1) // 2) + half * (1 << 40)
    if count != 2 * half or total != want:
        die("queue_mpmc_small: %d messages summing to %d, want %d and %d"
            % (count, total, 2 * half, want))
    q.close()
    dt = max(times[2], times[3]) - min(times[0], times[1])
    return 2 * half / dt / 1e6


def usable(name, fn):
    """Runs fn once (the warm-up round); False, with a message, if this
    Python cannot run it (no sem_open, no /dev/shm, ...)."""
    try:
        fn()
        return True
    except (ImportError, OSError, NotImplementedError) as e:
        print("queue.py: %s skipped: cannot run here: %s: %s"
              % (name, type(e).__name__, e), file=sys.stderr)
        return False


def main():
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    small_n = 10000 if quick else 100000
    big_n = 20 if quick else 200
    mpmc_n = 10000 if quick else 60000
    rounds = 3 if quick else 5
    # (bench, system, one round, unit)
    plan = [
        ("queue_small", "python_queue",
         lambda: spsc_round(CTX.Queue, small_n, False), "M/s"),
        ("queue_small", "python_simplequeue",
         lambda: spsc_round(CTX.SimpleQueue, small_n, False), "M/s"),
        ("queue_1mib", "python_queue",
         lambda: spsc_round(CTX.Queue, big_n, True), "MB/s"),
        ("queue_1mib", "python_simplequeue",
         lambda: spsc_round(CTX.SimpleQueue, big_n, True), "MB/s"),
        ("queue_mpmc_small", "python_queue",
         lambda: mpmc_round(mpmc_n), "M/s"),
    ]
    plan = [p for p in plan if usable("%s %s" % (p[0], p[1]), p[2])]
    res = {(b, s): [] for b, s, _, _ in plan}
    for r in range(rounds):
        for b, s, fn, _ in (plan if r % 2 == 0 else plan[::-1]):
            res[(b, s)].append(fn())
    if mp.active_children():
        die("children left running")
    detail = {
        "queue_small": "1 -> 1, %d messages of 8 B a round" % small_n,
        "queue_1mib": "1 -> 1, %d messages of 1 MiB a round" % big_n,
        "queue_mpmc_small": "2 -> 2, %d messages of 8 B a round in all"
                            % mpmc_n,
    }
    for b, s, _, unit in plan:
        v = sorted(res[(b, s)])
        print("queue.py: %-16s %-18s %s: median %.4g  min %.4g  max %.4g  "
              "(%d rounds; %s; %s %s)"
              % (b, s, unit, statistics.median(v), v[0], v[-1], rounds,
                 detail[b], sys.executable, sys.version.split()[0]),
              file=sys.stderr)
    for b, s, _, unit in plan:
        print(json.dumps({"bench": b, "system": s,
                          "value": round(statistics.median(res[(b, s)]), 6),
                          "unit": unit, "better": "higher"}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
