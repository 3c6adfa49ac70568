"""bench/python/pipe.py - Python's multiprocessing Pipe, the peer of
bench/bench-pipe.c.

Bench ID pipe_pingpong, system python_pipe: us per round trip, lower is
better.  Two processes and one Pipe() (duplex: a connected pair of Unix
stream sockets, as mproc_pipe(duplex=1)); A (this process) sends 8 bytes
with send_bytes() and waits for the answer with recv_bytes_into() into a
bytearray(8); B receives the same way and sends the 8 bytes back.  A checks
that every answer is the message it sent (its round-trip number).

Method as in the C bench: B is forked (fork context) before the timed part;
A times N round trips (time.perf_counter) after WARM untimed ones; the
figure is the MEDIAN over rounds.  One warm-up round runs first and is not
counted.

Prints one JSON object a line on stdout, details on stderr.  BENCH_QUICK=1
shrinks the counts.  If Pipe cannot be made here, says so on stderr and
prints nothing.  Exits non-zero if the child fails, an answer is wrong, or
a child is left running.
"""
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

WARM = 200  # untimed round trips before a timed ping-pong

CTX = mp.get_context("fork")


def ping_b(conn, n):
    buf = bytearray(8)
    recv_into, send = conn.recv_bytes_into, conn.send_bytes
    for _ in range(WARM + n):
        if recv_into(buf) != 8:
            sys.exit(3)
        send(buf)
    conn.close()


def ping_round(n):
    a, b = CTX.Pipe()
    p = CTX.Process(target=ping_b, args=(b, n))
    p.start()
    b.close()
    buf = bytearray(8)
    recv_into, send = a.recv_bytes_into, a.send_bytes
    for i in range(WARM + n):
        if i == WARM:
            t0 = time.perf_counter()
        msg = i.to_bytes(8, "little")
        send(msg)
        if recv_into(buf) != 8 or buf != msg:
            sys.exit("pipe.py: pipe_pingpong: answer %r to %r" % (buf, msg))
    t = time.perf_counter() - t0
    p.join()
    if p.exitcode != 0:
        sys.exit("pipe.py: pipe_pingpong process B exit code %r" % p.exitcode)
    a.close()
    return t * 1e6 / n


def main():
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    n = 500 if quick else 5000
    rounds = 3 if quick else 11
    try:
        ping_round(n // 10)  # warm-up, not counted
    except (ImportError, OSError, NotImplementedError) as e:
        print("pipe.py: pipe_pingpong python_pipe skipped: cannot run here: "
              "%s: %s" % (type(e).__name__, e), file=sys.stderr)
        return
    v = sorted(ping_round(n) for _ in range(rounds))
    if mp.active_children():
        sys.exit("pipe.py: children left running")
    print("pipe.py: pipe_pingpong    python_pipe us/round trip: median %.4g  "
          "min %.4g  max %.4g  (%d rounds x %d round trips, %d warm; "
          "send_bytes + recv_bytes_into of 8 B; %s %s)"
          % (statistics.median(v), v[0], v[-1], rounds, n, WARM,
             sys.executable, sys.version.split()[0]), file=sys.stderr)
    print(json.dumps({"bench": "pipe_pingpong", "system": "python_pipe",
                      "value": round(statistics.median(v), 6),
                      "unit": "us", "better": "lower"}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
