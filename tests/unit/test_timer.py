"""Timers (SPEC sections 5, 7, 14), without sleeping: `Timer.advance` read with an
injected clock, and the router's tick coalescing over real socketpairs.

- ticks are due at start + k * period (no drift, however late each one is read);
- ticks missed by a late reader coalesce (counted) instead of bursting;
- `iterations` counts fired ticks only, and a finished timer fires no more;
- a source never has more than one undelivered tick per destination.

The router fixtures come from tests/unit/conftest.py: 3 workers (slots 1-3), 2 mules,
one spooler.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from switchboard.sources.timer import MIN_PERIOD, Timer, check_iterations, check_period
from switchboard.table import HandlerKind
from switchboard.targets import Kind, Target, parse_target

from .conftest import flush_and_read


def fire_times(timer: Timer, reads: list[float]) -> list[float]:
    """Read the timer at each clock value; the reads at which it fired."""
    return [now for now in reads if timer.advance(now)]


# -- arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds", [0.001, 0.0015, 1, 2.5, 86400])
def test_a_period_is_any_number_of_seconds_down_to_a_millisecond(seconds):
    assert check_period(seconds) == seconds
    assert isinstance(check_period(seconds), float)
    assert MIN_PERIOD == 0.001


@pytest.mark.parametrize("seconds", [0, -1, -0.5, 0.0009, 0.0, math.inf, -math.inf, math.nan])
def test_a_zero_negative_tiny_or_infinite_period_is_a_value_error_naming_it(seconds):
    with pytest.raises(ValueError) as err:
        check_period(seconds)
    assert "seconds" in str(err.value) and str(seconds) in str(err.value)


@pytest.mark.parametrize("seconds", ["1", None, True, [1], b"1"])
def test_a_period_that_is_not_a_number_is_a_type_error_naming_the_argument(seconds):
    with pytest.raises(TypeError, match="seconds"):
        check_period(seconds)


def test_the_checked_argument_name_appears_in_the_message():
    with pytest.raises(ValueError, match="period"):
        check_period(-2, name="period")


@pytest.mark.parametrize("iterations", [0, 1, 7, 10**9])
def test_iterations_zero_means_forever_and_positive_counts(iterations):
    assert check_iterations(iterations) == iterations


def test_negative_iterations_is_a_value_error_naming_the_value():
    with pytest.raises(ValueError, match=r"iterations.*-3"):
        check_iterations(-3)


@pytest.mark.parametrize("iterations", [1.0, "2", True, None])
def test_iterations_that_are_not_an_integer_are_a_type_error(iterations):
    with pytest.raises(TypeError, match="iterations"):
        check_iterations(iterations)


# -- the grid: start + k * period ----------------------------------------------------------

def test_the_first_tick_is_one_period_after_the_start():
    timer = Timer(5, 0.25, start=100.0)
    assert timer.due == 100.25
    assert timer.advance(100.0) is False
    assert timer.advance(100.2499) is False
    assert timer.advance(100.25) is True
    assert timer.due == 100.5
    assert (timer.fired, timer.coalesced) == (1, 0)


def test_late_reads_do_not_shift_the_grid():
    """A reader that is late by most of a period each time: ticks stay on the grid."""
    timer = Timer(1, 0.25, start=0.0)
    dues = []
    for k in range(1, 41):
        assert timer.due == k * 0.25
        dues.append(timer.due)
        assert timer.advance(k * 0.25 + 0.24) is True      # 240 ms late, every time
    assert dues == [k * 0.25 for k in range(1, 41)]
    assert timer.due == 41 * 0.25                           # no accumulated drift
    assert (timer.fired, timer.coalesced) == (40, 0)


def test_a_decimal_period_is_drift_free_over_many_ticks():
    """0.1 s is not exact in binary: the due times are computed, never accumulated."""
    timer = Timer(1, 0.1, start=1000.0)
    for k in range(1, 10_001):
        due = timer.due
        assert due == pytest.approx(1000.0 + k * 0.1, abs=1e-9)
        assert timer.advance(due) is True
    assert timer.fired == 10_000 and timer.coalesced == 0
    assert timer.due == pytest.approx(1000.0 + 10_001 * 0.1, abs=1e-9)


def test_reads_between_ticks_fire_nothing():
    timer = Timer(1, 1.0, start=0.0)
    reads = [0.1 * i for i in range(1, 100)]               # ten reads per period
    fired = fire_times(timer, reads)
    assert len(fired) == 9                                 # ticks 1..9 (9.9 s read)
    for k, when in enumerate(fired, 1):
        assert k <= when < k + 0.1 + 1e-9                  # each at the first read after k
    assert timer.coalesced == 0


# -- coalescing ----------------------------------------------------------------------------

def test_a_reader_late_by_many_periods_fires_once_and_counts_the_rest():
    timer = Timer(1, 0.25, start=0.0)
    assert timer.advance(2.6) is True          # ticks 1..10 (0.25 .. 2.5) were due
    assert timer.fired == 1
    assert timer.coalesced == 9
    assert timer.due == 2.75                   # the next grid point after the read
    assert timer.advance(2.6) is False         # no burst
    assert timer.advance(2.74) is False
    assert timer.advance(2.75) is True
    assert (timer.fired, timer.coalesced) == (2, 9)


def test_a_read_exactly_on_a_later_grid_point_fires_once():
    timer = Timer(1, 0.5, start=10.0)
    assert timer.advance(15.0) is True          # ticks at 10.5 .. 15.0: ten were due
    assert (timer.fired, timer.coalesced) == (1, 9)
    assert timer.due == 15.5
    assert timer.advance(15.0) is False


def test_a_decimal_period_read_late_on_a_grid_point_does_not_burst():
    """0.1 s read 1 s late (ticks 1..10 due): one tick fires, nine coalesce, and a
    second read at the same instant fires nothing."""
    timer = Timer(1, 0.1, start=0.0)
    assert timer.advance(1.0) is True
    assert timer.advance(1.0) is False, (
        f"fired twice at the same instant: {timer}")
    assert (timer.fired, timer.coalesced) == (1, 9)
    assert timer.due == pytest.approx(1.1)


@settings(max_examples=400, deadline=None)
@given(start=st.floats(0, 1e6, allow_nan=False),
       period=st.floats(0.001, 3600, allow_nan=False),
       gaps=st.lists(st.floats(0, 50, allow_nan=False), min_size=1, max_size=30))
@example(start=0.0, period=0.1, gaps=[10.0])
def test_every_grid_point_is_either_fired_or_coalesced_once(start, period, gaps):
    """Whatever the reads, after each one: every tick up to it was accounted exactly
    once, and the next one due lies in the future (reading again fires nothing)."""
    timer = Timer(1, period, start)
    now = start
    for gap in gaps:
        now += gap * period
        timer.advance(now)
        assert timer.due > now, f"a tick is still due at {now!r} right after a read: {timer}"
        assert timer.advance(now) is False
        passed = timer.fired + timer.coalesced          # ticks up to now, each once
        x = (now - start) / period
        near = round(x)
        allowed = {near - 1, near} if abs(x - near) < 1e-6 else {math.floor(x)}
        assert passed in allowed, (passed, x, timer)
    assert timer.due - now <= period * (1 + 1e-6) + 1e-12 * abs(now)   # the very next one


# -- iterations ----------------------------------------------------------------------------

def test_a_timer_is_finished_right_after_its_last_iteration():
    """(The schedule drops a finished timer: test_schedule.py checks it fires no more.)"""
    timer = Timer(1, 1.0, start=0.0, iterations=3)
    states = []
    for now in (1.0, 2.0, 3.0):
        assert timer.advance(now) is True
        states.append(timer.finished)
    assert states == [False, False, True]
    assert timer.fired == 3


def test_coalesced_ticks_do_not_count_toward_iterations():
    timer = Timer(1, 1.0, start=0.0, iterations=2)
    assert timer.advance(5.5) is True            # five due: one fired, four coalesced
    assert not timer.finished
    assert (timer.fired, timer.coalesced) == (1, 4)
    assert timer.advance(6.0) is True
    assert timer.finished
    assert (timer.fired, timer.coalesced) == (2, 4)


def test_zero_iterations_is_never_finished():
    timer = Timer(1, 0.001, start=0.0)
    for k in range(1, 5001):
        timer.advance(k * 0.001 + 1e-7)
    assert not timer.finished
    assert timer.fired == 5000


def test_a_timer_is_a_source_compared_by_identity():
    a, b = Timer(1, 1.0, 0.0), Timer(1, 1.0, 0.0)
    assert a != b and len({a, b}) == 2


# -- the router: one undelivered tick per source and destination ------------------------------

def _register(table, topology, num, target):
    return table.register(num, parse_target(target, topology), HandlerKind.REFERENCE,
                          "python:m:f", 0)


def test_ticks_coalesce_while_one_is_undelivered(make_router, table, topology):
    router = make_router(limit=16)
    _register(table, topology, 7, "worker")
    box = router.groups[Target(Kind.WORKER)]
    source = Timer(7, 0.01, 0.0)
    taken = [router.tick(source, 7) for _ in range(5)]
    assert taken == [True, False, False, False, False]    # False: coalesced, not queued
    assert bytes(box.buf) == bytes([7])
    assert (router.raised[7], router.routed[7], router.coalesced[7]) == (5, 1, 4)
    box.flush()                                   # in the kernel, still not read
    router.tick(source, 7)
    assert router.coalesced[7] == 5
    assert flush_and_read(router, box) == bytes([7])      # a worker read it
    router.tick(source, 7)
    assert flush_and_read(router, box) == bytes([7])
    assert (router.raised[7], router.routed[7], router.coalesced[7]) == (7, 2, 5)
    assert router.raised[7] == router.routed[7] + router.coalesced[7]


def test_each_source_has_its_own_undelivered_tick(make_router, table, topology):
    router = make_router(limit=16)
    _register(table, topology, 7, "worker")
    one, two = Timer(7, 1.0, 0.0), Timer(7, 2.0, 0.0)
    for _ in range(3):
        router.tick(one, 7)
        router.tick(two, 7)
    assert bytes(router.groups[Target(Kind.WORKER)].buf) == bytes([7, 7])
    assert router.coalesced[7] == 4


def test_a_broadcast_tick_coalesces_per_worker(make_router, table, topology):
    router = make_router(limit=16)
    _register(table, topology, 9, "workers")
    source = Timer(9, 0.01, 0.0)
    router.tick(source, 9)
    assert flush_and_read(router, router.boxes[1]) == bytes([9])    # only worker 1 read its copy
    router.tick(source, 9)
    assert bytes(router.boxes[1].buf) == bytes([9])
    assert bytes(router.boxes[2].buf) == bytes([9])          # still the first copy
    assert bytes(router.boxes[3].buf) == bytes([9])
    assert router.coalesced[9] == 2
    assert router.routed[9] == 4


def test_a_tick_meeting_a_full_queue_waits_and_is_queued_when_room_appears(
        make_router, table, topology):
    router = make_router(limit=2)
    _register(table, topology, 3, "worker1")
    _register(table, topology, 4, "worker1")
    box = router.boxes[1]
    assert router.route(3) and router.route(3)
    source = Timer(4, 0.01, 0.0)
    assert router.tick(source, 4) is True         # full: kept aside, not dropped
    assert router.tick(source, 4) is False        # ... and a second one coalesces with it
    assert bytes(box.buf) == bytes([3, 3])
    assert router.coalesced[4] == 1
    router.retry_ticks()
    assert bytes(box.buf) == bytes([3, 3])        # still no room
    assert flush_and_read(router, box) == bytes([3, 3])
    router.retry_ticks()
    assert bytes(box.buf) == bytes([4])
    assert router.raised[4] == 2 and router.routed[4] == 1


def test_a_removed_source_leaves_no_pending_tick(make_router, table, topology):
    router = make_router(limit=1)
    _register(table, topology, 4, "worker1")
    box = router.boxes[1]
    assert router.route(4)
    source = Timer(4, 0.01, 0.0)
    router.tick(source, 4)                        # full: waiting
    router.forget(source)
    flush_and_read(router, box)
    router.retry_ticks()
    assert bytes(box.buf) == b""


def test_an_unregistered_tick_is_held_once_for_a_waiter(make_router):
    router = make_router(limit=16, held_limit=8)
    source = Timer(99, 0.01, 0.0)
    assert [router.tick(source, 99) for _ in range(4)] == [True, False, False, False]
    assert list(router.held) == [99]
    assert router.coalesced[99] == 3 and router.raised[99] == 4
