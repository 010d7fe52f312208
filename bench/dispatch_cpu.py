"""CPU per signal on a worker's own loop, in process: what each start costs the worker.

Run: python bench/dispatch_cpu.py [--n 100000] [--rounds 12] [--channel own|group] [--run N]
Builds the shared memory, a table with one Python handler that does nothing, and a worker
(the runtime's Child) over a real socketpair; queues N signals in the channel (through the
master's Outbox, so its latency runs are stamped as in a real instance), then times the
worker's loop taking and running them all with `time.process_time()`.  Prints the best
and the median of the rounds in µs per signal.  Set PYTHONPATH to another checkout's
`runtime` to measure that one (docs/benchmarks.md compares before/after this way).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time

from switchboard.procs.child import ANY, Child
from switchboard.router import Outbox
from switchboard.shared import Shared
from switchboard.table import HandlerKind, SignalTable
from switchboard.targets import Kind, Role, Target, Topology

NUM = 30


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--channel", choices=["own", "group"], default="own")
    parser.add_argument("--run", type=int, default=20_000,
                        help="signals per latency stamp (a master refilling a full "
                             "channel stamps a few at a time)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "noop_handler.py"), "w") as f:
            f.write("def noop(num):\n    pass\n")
        sys.path.insert(0, folder)
        measure(args.n, args.rounds, args.channel, args.run)


def measure(n: int, rounds: int, channel: str, run: int) -> None:
    """Time `rounds` passes of `n` signals through a worker's loop; print µs per signal."""
    topology = Topology(workers=2)
    shared = Shared(topology.slots, len(topology.groups()))
    table = SignalTable(shared)
    table.register(NUM, Target(Kind.WORKER), HandlerKind.REFERENCE, "python:noop_handler:noop",
                   0)
    own, group = socket.socketpair(), socket.socketpair()
    for end in (*own, *group):
        end.setblocking(False)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    flag = topology.slots + topology.groups().index(Target(Kind.WORKER))
    box = (Outbox("worker 1", *own, 10**9, shared.pressure, 1, shared.sent, shared.procs[1])
           if channel == "own" else
           Outbox("group worker", *group, 10**9, shared.pressure, flag))
    worker = Child(Role.WORKER, 1, 1, topology, shared, table, os.getpid())
    worker.setup(own[1], [(group[1], flag)], os.pipe()[1], 1.0)
    latency = getattr(shared, "latency", None)     # None in a checkout before issue 12
    results = []
    for _ in range(rounds):
        left = n
        cpu = 0.0
        while left:
            batch = min(left, 20_000)        # what the socket buffers hold at once
            for start in range(0, batch, run):
                box.buf += bytes([NUM]) * min(run, batch - start)
                if latency is not None:
                    latency.run(box.index, box.flushed + len(box.buf), time.monotonic())
            while box.buf:
                box.flush()
            start = time.process_time()
            for _ in range(batch):
                num = worker._read_now()
                if num is None:
                    worker._readable[:] = [True] * len(worker._readable)
                    num = worker._read_now()
                worker._dispatch(num, ANY)
            cpu += time.process_time() - start
            left -= batch
        results.append(cpu / n * 1e6)
    handled = shared.procs[1].handled[NUM]
    assert handled == n * rounds, handled
    print(f"{channel} channel, {n} signals x {rounds}: "
          f"best {min(results):.2f} µs, median {statistics.median(results):.2f} µs per signal")


if __name__ == "__main__":
    main()
