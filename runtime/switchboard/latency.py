"""Raise-to-start latency: stamps per channel and a histogram per process and signal.

The raise time travels beside the bytes, not in them.  Each channel (a child's own,
then each group's) has a ring of *runs* in shared memory: "stream positions below
`end` were routed at `stamp`".  The master appends one run per channel per flush that
moved the channel's stream end (not per signal: a read of many signals is one run).
The child that starts a signal knows the signal's position in its channel's stream
(exactly for its own channel; from the group members' take counts for a group, see
docs/design.md) and finds its run; the handler's start time minus the run's stamp
goes into a fixed histogram: a few memoryview writes, nothing allocated.
"""

from __future__ import annotations

import mmap
from typing import NamedTuple

RUNS = 256                 # runs kept per channel: a child this far behind reads a newer one
BUCKETS = 56               # 0..3 µs exactly, then two per power of two, up to ~134 s
ROW = BUCKETS + 2          # the buckets, then the sum of µs, then the max µs
SUM, MAX = BUCKETS, BUCKETS + 1


def bucket(us: int) -> int:
    """The bucket of a latency in whole µs: 0..3 exact, then halves of each octave."""
    if us < 4:
        return us
    bits = us.bit_length()
    return min(BUCKETS - 1, 2 * bits - 2 + ((us >> (bits - 2)) & 1))


def upper(b: int) -> float:
    """The (exclusive) upper bound of bucket `b`, in µs."""
    if b < 4:
        return float(b + 1)
    bits, half = divmod(b + 2, 2)
    return 2.0 ** (bits - 1) * (2.0 if half else 1.5)


class Summary(NamedTuple):
    """One histogram read back: counts per bucket, sum and max in µs."""

    counts: list[int]
    sum_us: int
    max_us: int

    @property
    def total(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> int:
        """The upper bound (µs) of the bucket holding quantile `q`, capped at max."""
        total = self.total
        if not total:
            return 0
        rank, seen = q * total, 0
        for b, n in enumerate(self.counts):
            seen += n
            if seen >= rank and n:
                return min(self.max_us, int(upper(b)))
        return self.max_us

    def merge(self, other: Summary) -> Summary:
        return Summary([a + b for a, b in zip(self.counts, other.counts, strict=True)],
                       self.sum_us + other.sum_us, max(self.max_us, other.max_us))


EMPTY = Summary([0] * BUCKETS, 0, 0)


class Latency:
    """The shared mapping: runs per channel, histograms per slot and signal."""

    def __init__(self, slots: int, channels: int, signals: int) -> None:
        self.slots, self.channels, self.signals = slots, channels, signals
        runs = channels * RUNS * 8
        hist = slots * signals * ROW * 8
        # Anonymous and shared: made before the first fork, every child maps the same pages,
        # and untouched histograms cost no memory.
        self.map = mmap.mmap(-1, 2 * runs + channels * 8 + hist)
        view = memoryview(self.map)
        self.ends = view[:runs].cast("Q")
        self.stamps = view[runs:2 * runs].cast("d")
        self.counts = view[2 * runs:2 * runs + channels * 8].cast("Q")
        self.hist = view[2 * runs + channels * 8:].cast("Q")

    def run(self, channel: int, end: int, stamp: float) -> None:
        """The master: stream positions of `channel` below `end` were routed at `stamp`."""
        n = self.counts[channel]
        at = channel * RUNS + n % RUNS
        self.ends[at], self.stamps[at] = end, stamp
        self.counts[channel] = n + 1

    def find(self, channel: int, pos: int) -> tuple[int, int, float]:
        """(start, end, stamp) of the run holding stream position `pos`: the oldest run
        kept if it is older than that (then the latency reads low, never high)."""
        n, base, ends = self.counts[channel], channel * RUNS, self.ends
        if not n:
            return 0, 0, 0.0
        j, oldest = n - 1, max(0, n - RUNS)
        while j > oldest and ends[base + (j - 1) % RUNS] > pos:
            j -= 1
        start = ends[base + (j - 1) % RUNS] if j > oldest else 0
        return start, ends[base + j % RUNS], self.stamps[base + j % RUNS]

    def summary(self, slot: int, num: int) -> Summary:
        """One process's histogram for one signal."""
        at = (slot * self.signals + num) * ROW
        row = self.hist[at:at + ROW].tolist()
        return Summary(row[:BUCKETS], row[SUM], row[MAX])


class Recorder:
    """A child's side: turn a start time into a histogram entry, with the run it last
    used cached (consecutive signals of a channel nearly always share one)."""

    def __init__(self, latency: Latency, slot: int) -> None:
        self.latency, self.hist = latency, latency.hist
        self.base = slot * latency.signals * ROW
        self.cached: dict[int, tuple[int, int, float]] = {}

    def record(self, channel: int, pos: int, num: int, started: float) -> None:
        """Count one start of `num` at `started` (CLOCK_MONOTONIC) from `channel`'s `pos`."""
        run = self.cached.get(channel)
        if run is None or not run[0] <= pos < run[1]:
            run = self.cached[channel] = self.latency.find(channel, pos)
        us = int((started - run[2]) * 1e6) if run[2] else 0
        us = max(us, 0)
        hist, at = self.hist, self.base + num * ROW
        hist[at + bucket(us)] += 1
        hist[at + SUM] += us
        if us > hist[at + MAX]:
            hist[at + MAX] = us
