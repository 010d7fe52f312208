"""Raise-to-start latency: stamps per channel and a histogram per process and signal.

The raise time travels beside the bytes, not in them.  Each channel (a child's own,
then each group's) has a ring of *runs* in shared memory: "stream positions below
`end` were routed at `stamp`".  The master appends one run per channel per flush that
moved the channel's stream end (not per signal: a read of many signals is one run).
The child that starts a signal knows the signal's position in its channel's stream
(exactly for its own channel; from the group members' take counts for a group, see
docs/design.md) and finds its run; the handler's start time minus the run's stamp
goes into a fixed histogram: a few memoryview writes, nothing allocated, inline in
`Child._dispatch` (each call saved there is a tenth of a microsecond per signal).
"""

from __future__ import annotations

import mmap
from typing import NamedTuple

RUNS = 4096                # runs kept per channel: a child this far behind reads a newer one
BUCKETS = 56               # 0..3 µs exactly, then two per power of two, up to ~134 s
ROW = BUCKETS + 1          # the buckets, then the max (µs)
MAX = BUCKETS


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


def lower(b: int) -> float:
    """The (inclusive) lower bound of bucket `b`, in µs."""
    return upper(b - 1) if b else 0.0


class Summary(NamedTuple):
    """One histogram read back: counts per bucket and the max in µs."""

    counts: list[int]
    max_us: int

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def seconds(self) -> float:
        """The sum of the latencies, estimated from the buckets' midpoints (within a
        quarter of each value above 4 µs): no exact sum is kept, it would cost every
        signal another shared write."""
        return sum(n * min(self.max_us, (lower(b) + upper(b) - 1) / 2)
                   for b, n in enumerate(self.counts) if n) / 1e6

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
                       max(self.max_us, other.max_us))


EMPTY = Summary([0] * BUCKETS, 0)


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

    def find(self, channel: int, pos: int, after: int = -1) -> tuple[int, int, float, int]:
        """(start, end, stamp, number) of the run holding stream position `pos`: the
        oldest run kept if it is older than that (then the latency reads low, never
        high).  A reader moves forward through the runs, so the run after `after` (the
        number of the run it had) is tried first: a master refilling a full channel
        stamps a few signals per run.  Otherwise a binary search (runs' ends grow)."""
        n, base, ends = self.counts[channel], channel * RUNS, self.ends
        if not n:
            return 0, 0, 0.0, -1
        oldest = max(0, n - RUNS)
        nxt = after + 1
        if oldest < nxt < n and ends[base + after % RUNS] <= pos < ends[base + nxt % RUNS]:
            at = base + nxt % RUNS
            return ends[base + after % RUNS], ends[at], self.stamps[at], nxt
        lo, hi = oldest, n - 1          # the first run whose end is past pos
        while lo < hi:
            mid = (lo + hi) // 2
            if ends[base + mid % RUNS] > pos:
                hi = mid
            else:
                lo = mid + 1
        start = ends[base + (lo - 1) % RUNS] if lo > oldest else 0
        return start, ends[base + lo % RUNS], self.stamps[base + lo % RUNS], lo

    def summary(self, slot: int, num: int) -> Summary:
        """One process's histogram for one signal."""
        at = (slot * self.signals + num) * ROW
        row = self.hist[at:at + ROW].tolist()
        return Summary(row[:BUCKETS], row[MAX])


FAST = 1 << 16             # below this many µs, a bucket is one index into a table
BUCKET_OF = bytes(bucket(us) for us in range(FAST))
