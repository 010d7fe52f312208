"""Where a lone signal's time goes, hop by hop (Switchboard only; run by bench/hops.py).

Imported in the master, before the fork: it wraps a few of the runtime's own functions
so that each stamps CLOCK_MONOTONIC into a shared anonymous mapping, and registers the
handler for $BENCH_TARGET (`worker` or `worker1`).  Mule 1's program raises one signal
at a time (as the benchmark's latency scenario does) and reports the median and p90 of
each hop through $BENCH_OUT.

These are measurements of internals, so they change when the internals do: the names
wrapped here are the runtime's loop steps (master: wait, read a channel, route, send;
child: wait, raise, run).  A lone signal normally goes straight into the channel; the
ones that went through the master (a raise too soon after the previous one, a channel
the master had closed) are reported apart.
"""

from __future__ import annotations

import mmap
import os
import selectors
import time

import uwsgi

from switchboard import relay, router
from switchboard.procs import child

N = int(os.environ.get("BENCH_N", "1000"))
SLOTS = 16                      # words per row: row 0 the raiser's and the master's,
OTHERS = 3                      # rows 1 and 2 the workers', row 3 anyone else's
_map = mmap.mmap(-1, 8 * SLOTS * 4, mmap.MAP_SHARED)   # inherited by every child
V = memoryview(_map).cast("q")
ns = time.monotonic_ns

RAISED, SENT, HANDLED_BY = 0, 1, 2                     # mule's and handler's words
MASTER_WOKE, MASTER_READS, MASTER_ROUTED, MASTER_SENDS = 3, 4, 5, 6
WORKER_WOKE, WORKER_RUNS = 0, 1                        # in worker w's row: SLOTS * w + i
# Through the master, and straight into the channel (docs/design.md, "Two paths")
HOPS = {"master": [("raiser: raise -> its send returned", RAISED, SENT),
                   ("kernel: -> master woke", SENT, MASTER_WOKE),
                   ("master: woke -> reads the channel", MASTER_WOKE, MASTER_READS),
                   ("master: read + route", MASTER_READS, MASTER_ROUTED),
                   ("master: routed -> its send", MASTER_ROUTED, MASTER_SENDS),
                   ("kernel: -> worker woke", MASTER_SENDS, "woke"),
                   ("worker: woke -> handler starts", "woke", "runs")],
        "direct": [("raiser: raise -> its write returned", RAISED, SENT),
                   ("kernel: -> worker woke", SENT, "woke"),
                   ("worker: woke -> handler starts", "woke", "runs")]}


def _stamp_after(owner: object, name: str, index: int) -> None:
    original = getattr(owner, name)

    def wrapped(*args: object, **kwargs: object) -> object:
        result = original(*args, **kwargs)
        V[index()] = ns()
        return result
    setattr(owner, name, wrapped)


def _stamp_before(owner: object, name: str, index: int) -> None:
    original = getattr(owner, name)

    def wrapped(*args: object, **kwargs: object) -> object:
        V[index] = ns()
        return original(*args, **kwargs)
    setattr(owner, name, wrapped)


_stamp_after(selectors.EpollSelector, "select", lambda: MASTER_WOKE)
_stamp_before(relay.Relay, "_on_link", MASTER_READS)
_stamp_after(relay.Relay, "_process", lambda: MASTER_ROUTED)
_stamp_before(router.Outbox, "flush", MASTER_SENDS)
_stamp_after(child.Child, "_wait", lambda: SLOTS * (uwsgi.worker_id() or OTHERS) + WORKER_WOKE)
_stamp_after(child.Child, "raise_signal", lambda: SENT)


def handler(num: int) -> None:
    me = uwsgi.worker_id()
    V[SLOTS * me + WORKER_RUNS] = ns()
    V[HANDLED_BY] = me


uwsgi.register_signal(1, os.environ.get("BENCH_TARGET", "worker"), handler)


def _sample() -> tuple[str, list[int]] | None:
    """The path and hops of the last signal, or None if a stamp came from an unrelated
    wake-up.  The master's stamps are older than the raise when it was not on the path."""
    row = SLOTS * V[HANDLED_BY]
    stamps = {key: V[key] for key in (RAISED, SENT, MASTER_WOKE, MASTER_READS,
                                      MASTER_ROUTED, MASTER_SENDS)}
    stamps["woke"], stamps["runs"] = V[row + WORKER_WOKE], V[row + WORKER_RUNS]
    path = "master" if stamps[MASTER_SENDS] > stamps[RAISED] else "direct"
    hops = [stamps[b] - stamps[a] for _, a, b in HOPS[path]]
    return (path, hops) if all(h >= 0 for h in hops) else None


def mule_main() -> None:
    time.sleep(0.5)
    samples: dict[str, list[list[int]]] = {"master": [], "direct": []}
    skipped = 0
    for i in range(N + 100):                 # the first 100 warm up
        V[HANDLED_BY] = 0
        V[RAISED] = ns()
        uwsgi.signal(1)
        while not V[HANDLED_BY]:
            time.sleep(0.0001)
        got = _sample()
        if i >= 100:
            if got is None:
                skipped += 1
            else:
                samples[got[0]].append(got[1])
        time.sleep(0.001)
    with open(os.environ["BENCH_OUT"], "a") as out:
        for path, taken in samples.items():
            if not taken:
                continue
            for k, (name, _, _) in enumerate(HOPS[path]):
                values = sorted(s[k] / 1000 for s in taken)
                out.write(f"hop {path}|{name}|{values[len(values) // 2]:.1f}|"
                          f"{values[int(len(values) * 0.9)]:.1f}\n")
        every = sorted(sum(s) / 1000 for taken in samples.values() for s in taken)
        out.write(f"total {every[len(every) // 2]:.1f}|{every[int(len(every) * 0.9)]:.1f}"
                  f"|{len(samples['direct'])}|{len(samples['master'])}|{skipped}\n")
    while True:
        time.sleep(1)
