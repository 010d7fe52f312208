"""Raise-to-start latency: the buckets, the runs of stamps per channel, the histograms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.latency import BUCKETS, RUNS, Latency, Recorder, Summary, bucket, upper

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
    s = Summary(counts, 98 * 100 + 2 * 50_000, 50_000)
    assert s.total == 100
    assert 100 <= s.quantile(0.5) <= 128
    assert s.quantile(0.99) == 50_000     # the bucket's bound is above the max: capped
    assert Summary([0] * BUCKETS, 0, 0).quantile(0.5) == 0


def test_a_position_finds_the_run_it_was_routed_in():
    lat = Latency(slots=2, channels=3, signals=SIGNALS)
    lat.run(1, 5, 10.0)            # positions 0..4 routed at t=10
    lat.run(1, 6, 11.0)            # position 5 at t=11
    lat.run(1, 40, 12.0)           # 6..39 at t=12
    assert lat.find(1, 0) == (0, 5, 10.0)
    assert lat.find(1, 4) == (0, 5, 10.0)
    assert lat.find(1, 5) == (5, 6, 11.0)
    assert lat.find(1, 39) == (6, 40, 12.0)
    assert lat.find(2, 0) == (0, 0, 0.0)       # another channel: nothing routed yet


def test_a_child_far_behind_reads_the_oldest_run_kept_so_its_latency_reads_low():
    lat = Latency(slots=2, channels=2, signals=SIGNALS)
    for i in range(RUNS + 10):
        lat.run(0, i + 1, float(i))
    start, end, stamp = lat.find(0, 0)         # run 0 was overwritten
    assert stamp == 10.0 and end == 11


def test_a_recorded_start_lands_in_its_process_and_signal_histogram():
    lat = Latency(slots=3, channels=3, signals=SIGNALS)
    lat.run(2, 3, 100.0)
    rec = Recorder(lat, slot=2)
    rec.record(2, 0, 30, 100.000_250)          # 250 µs after its routing
    rec.record(2, 1, 30, 100.050)              # 50 ms: a handler before it ran that long
    rec.record(2, 2, 31, 100.001)
    s30, s31 = lat.summary(2, 30), lat.summary(2, 31)
    assert s30.total == 2 and s31.total == 1
    assert s30.max_us == pytest.approx(50_000, abs=1)
    assert s30.sum_us == pytest.approx(50_250, abs=2)
    assert s30.counts[bucket(250)] == 1
    assert lat.summary(1, 30).total == 0       # another process's histogram
