"""Raise-to-start latency: the buckets, the runs of stamps per channel, the histograms."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.latency import BUCKETS, RUNS, Latency, Summary, bucket, upper
from switchboard.procs.child import ANY, Child
from switchboard.table import HandlerKind
from switchboard.targets import Kind, Role, Target

from .conftest import fork_call

SLOT = 1      # worker 1

SIGNALS = 256


@given(st.integers(min_value=0, max_value=10**8))
def test_every_latency_falls_in_a_bucket_whose_bounds_hold_it(us):
    b = bucket(us)
    assert 0 <= b < BUCKETS
    low = upper(b - 1) if b else 0
    assert low <= us < upper(b)


def test_buckets_grow_by_at_most_half_their_size():
    for b in range(5, BUCKETS):
        assert upper(b) / upper(b - 1) <= 1.5 + 1e-9


def test_quantiles_are_bucket_bounds_capped_at_the_max():
    counts = [0] * BUCKETS
    counts[bucket(100)] = 98          # 98 runs at ~100 µs, then two slow ones
    counts[bucket(50_000)] = 2
    s = Summary(counts, 50_000)
    assert s.total == 100
    assert 100 <= s.quantile(0.5) <= 128
    assert s.quantile(0.99) == 50_000     # the bucket's bound is above the max: capped
    assert s.seconds == pytest.approx((98 * 100 + 2 * 50_000) / 1e6, rel=0.25)
    assert Summary([0] * BUCKETS, 0).quantile(0.5) == 0


def test_a_position_finds_the_run_it_was_routed_in():
    lat = Latency(slots=2, channels=3, signals=SIGNALS)
    lat.run(1, 5, 10.0)            # positions 0..4 routed at t=10
    lat.run(1, 6, 11.0)            # position 5 at t=11
    lat.run(1, 40, 12.0)           # 6..39 at t=12
    assert lat.find(1, 0) == (0, 5, 10.0, 0)
    assert lat.find(1, 4) == (0, 5, 10.0, 0)
    assert lat.find(1, 5) == (5, 6, 11.0, 1)
    assert lat.find(1, 39) == (6, 40, 12.0, 2)
    assert lat.find(2, 0) == (0, 0, 0.0, -1)   # another channel: nothing routed yet


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=60),
       st.integers(min_value=0, max_value=3000), st.integers(min_value=-1, max_value=70))
def test_the_search_finds_the_first_run_that_ends_past_a_position(sizes, pos, after):
    """Whatever run the reader had (`after`, the hint tried first), the answer is the
    first run that ends past the position."""
    lat = Latency(slots=1, channels=1, signals=SIGNALS)
    end, runs = 0, []
    for i, size in enumerate(sizes):
        end += size
        lat.run(0, end, float(i + 1))
        runs.append((end - size, end, float(i + 1), i))
    want = next((r for r in runs if r[1] > pos), runs[-1])
    assert lat.find(0, pos, after) == want


def test_a_child_far_behind_reads_the_oldest_run_kept_so_its_latency_reads_low():
    lat = Latency(slots=2, channels=2, signals=SIGNALS)
    for i in range(RUNS + 10):
        lat.run(0, i + 1, float(i))
    start, end, stamp, _ = lat.find(0, 0)      # run 0 was overwritten
    assert stamp == 10.0 and end == 11


def _dispatch_in_child(channels, shared, table, topology, count: int) -> None:
    """Fork worker 1 and let it take and run `count` signals (signal 30 is registered)."""
    group_flag = topology.slots + topology.groups().index(Target(Kind.WORKER))

    def child() -> None:
        worker = Child(Role.WORKER, 1, SLOT, topology, shared, table, os.getppid())
        worker.setup(channels["own"][1], [(channels["group"][1], group_flag)],
                     os.pipe()[1], 1.0)
        for _ in range(count):
            worker._dispatch(worker._read_now(), ANY)

    assert fork_call(child) == 0


@pytest.fixture
def channels() -> Iterator[dict[str, tuple[socket.socket, socket.socket]]]:
    pairs = {"own": socket.socketpair(), "group": socket.socketpair()}
    for end in (*pairs["own"], *pairs["group"]):
        end.setblocking(False)
    yield pairs
    for end in (*pairs["own"], *pairs["group"]):
        end.close()


@pytest.mark.parametrize("channel", ["own", "group"])
def test_a_worker_records_each_start_against_the_stamp_of_its_position(
        channel, channels, shared, table, topology):
    table.register(30, Target(Kind.WORKER), HandlerKind.REFERENCE, "python:operator:abs", 0)
    flag = topology.slots + topology.groups().index(Target(Kind.WORKER))
    index = SLOT if channel == "own" else flag
    now = time.monotonic()
    # positions 0 and 1 were routed 2 s ago; 2 just now (what the master's flush stamps);
    # the forked child may take a while to start on a busy machine, never a whole second
    shared.latency.run(index, 2, now - 2.0)
    shared.latency.run(index, 3, now)
    channels[channel][0].send(bytes([30, 30, 30]))

    _dispatch_in_child(channels, shared, table, topology, 3)

    summary = shared.latency.summary(SLOT, 30)
    assert summary.total == 3
    assert 2_000_000 <= summary.max_us < 10_000_000
    waited_long = sum(n for b, n in enumerate(summary.counts) if upper(b) > 1_000_000)
    assert waited_long == 2                 # the third one was stamped after them
    assert shared.latency.summary(2, 30).total == 0      # worker 2 ran nothing
