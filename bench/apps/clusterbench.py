"""The cluster benchmark's app (bench/cluster.py): node `a` raises, node `b` handles.

Times are wall-clock (time.time()): both nodes run on this machine, one clock.
Lines go to files in the instance's folder, one O_APPEND write each.
"""

import os
import time

import uwsgi

N = int(os.environ.get("CLUSTER_BENCH_N", "500"))
M = int(os.environ.get("CLUSTER_BENCH_M", "5000"))
GAP = 0.005


def _append(name, text):
    fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def lone(num):
    """Node a, one worker: N lone signals to b, GAP apart; their raise times."""
    raised = []
    for _ in range(N):
        raised.append(time.time())
        uwsgi.signal(80, "b")
        time.sleep(GAP)
    _append("raised.txt", "".join(f"{t!r}\n" for t in raised))


def stream(num):
    """Node a, every worker: M signals each to b as fast as commits go."""
    begin = time.time()
    for _ in range(M):
        uwsgi.signal(81, "b")
    _append("stream.txt", f"{begin!r} {time.time()!r}\n")


def started(num):
    """Node b: when each signal started."""
    _append(f"started-{num}.txt", f"{time.time()!r}\n")
