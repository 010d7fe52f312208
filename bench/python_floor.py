"""What plain Python can do on this machine, with none of Switchboard's code.

Two measurements that bound the latency and timer goals from below:

1. relay: three minimal Python processes pass one byte raiser -> relay -> worker over
   socketpairs (epoll in the relay, poll in the worker, as in Switchboard's master and
   children), one at a time, 1 ms apart.  The raiser waits for the worker's stamp the
   way the benchmark's mule does (sleeping 100 µs between looks).  p50/p99 of raise ->
   worker read, in µs.
2. sleeper: one Python process sleeps on a timerfd until each tick of a 10 ms grid;
   p50/p99/max of how late it wakes, in ms.

Run: python bench/python_floor.py [--n 1000]
"""

from __future__ import annotations

import argparse
import mmap
import os
import select
import signal
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))
from switchboard.alarm import Alarm  # noqa: E402  (the same timerfd the runtime uses)


def relay_latency(n: int) -> list[float]:
    stamps = memoryview(mmap.mmap(-1, 16)).cast("q")     # [count, last read time]
    raiser_end, relay_in = socket.socketpair()
    relay_out, worker_end = socket.socketpair()

    def relay() -> None:
        poller = select.epoll()
        poller.register(relay_in.fileno(), select.EPOLLIN)
        while True:
            poller.poll()
            relay_out.send(relay_in.recv(65536))

    def worker() -> None:
        poller = select.poll()
        poller.register(worker_end.fileno(), select.POLLIN)
        while True:
            poller.poll()
            os.read(worker_end.fileno(), 1)
            stamps[1] = time.monotonic_ns()
            stamps[0] += 1

    pids = [_fork(relay), _fork(worker)]
    try:
        time.sleep(0.2)
        samples = []
        for i in range(n):
            before = time.monotonic_ns()
            raiser_end.send(b"\1")
            while stamps[0] <= i:
                time.sleep(0.0001)
            samples.append((stamps[1] - before) / 1000)
            time.sleep(0.001)
        return samples
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def timer_lateness(n: int, period: float = 0.01) -> list[float]:
    alarm = Alarm()
    poller = select.poll()
    poller.register(alarm.fd, select.POLLIN)
    start = time.monotonic() + period
    late = []
    for k in range(n):
        due = start + k * period
        alarm.set(due)
        poller.poll()
        alarm.clear()
        late.append((time.monotonic() - due) * 1000)
    alarm.close()
    return late


def _fork(body) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    relay = relay_latency(args.n)
    print(f"relay raise -> worker read (µs): p50 {statistics.median(relay):.1f} "
          f"p99 {_pct(relay, 0.99):.1f}")
    late = timer_lateness(args.n)
    print(f"10 ms timerfd sleeper, lateness (ms): p50 {statistics.median(late):.3f} "
          f"p99 {_pct(late, 0.99):.3f} max {max(late):.3f}")


if __name__ == "__main__":
    main()
