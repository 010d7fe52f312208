"""The master's schedule of timers and crons (SPEC sections 7 and 14), with injected clocks.

`Schedule(now=..., wall=...)`: `now` is the monotonic clock (timers, wake-ups), `wall`
the local wall clock (cron).  The rule at the top of sources/cron.py: an entry fires once
in each local minute that matches, at the start of the minute (or when the master
reaches that minute, if it was busy); never twice in one minute; at start-up it fires at
once only if the current minute matches.

`Clocks` moves both clocks together; `run()` plays the master's loop: sleep until
`wake_at()`, then take what `due()` gives.  Nothing sleeps for real.
"""

from __future__ import annotations

import datetime as dt

import pytest

from switchboard.sources.cron import from_expr, from_ints
from switchboard.sources.schedule import Cron, Schedule
from switchboard.sources.timer import Timer

D = dt.datetime
T0 = 5000.0          # an arbitrary monotonic reading


class Clocks:
    """A monotonic clock and a wall clock that advance together (unless told not to)."""

    def __init__(self, wall: dt.datetime, mono: float = T0) -> None:
        self.mono, self.offset = mono, wall - dt.timedelta(seconds=mono)
        self.wall_calls = 0

    def now(self) -> float:
        return self.mono

    def wall(self) -> dt.datetime:
        self.wall_calls += 1
        return self.offset + dt.timedelta(seconds=self.mono)

    def advance(self, seconds: float) -> None:
        self.mono += seconds

    def set_wall(self, wall: dt.datetime) -> None:
        """Step the wall clock (NTP, an admin) without moving the monotonic one."""
        self.offset = wall - dt.timedelta(seconds=self.mono)

    def schedule(self) -> Schedule:
        return Schedule(now=self.now, wall=self.wall)


def step(schedule: Schedule) -> list[tuple[object, int]]:
    """One pass of the master's loop over the schedule: what is due, then drop the
    timers whose iterations are done (as Registry.fire does)."""
    fired = schedule.due()
    sweep = getattr(schedule, "sweep", None)
    if sweep is not None:
        sweep()
    return fired


def run(schedule: Schedule, clocks: Clocks, seconds: float, late: float = 0.0,
        max_passes: int = 200_000) -> list[tuple[int, float, dt.datetime]]:
    """Play the master's loop for `seconds`: wake at wake_at() (+ `late`), take step().

    Each fire as (signal, monotonic time, wall time)."""
    end = clocks.mono + seconds
    fires: list[tuple[int, float, dt.datetime]] = []
    for _ in range(max_passes):
        wake = schedule.wake_at()
        if wake is None or wake + late > end:
            clocks.mono = max(clocks.mono, end)
            return fires
        clocks.mono = max(clocks.mono, wake + late)
        for _source, num in step(schedule):
            fires.append((num, clocks.mono, clocks.offset + dt.timedelta(seconds=clocks.mono)))
    pytest.fail(f"the loop did not reach its end in {max_passes} passes (busy loop?)")


# -- timers ---------------------------------------------------------------------------------

def test_a_timer_counts_from_when_it_is_added():
    clocks = Clocks(D(2025, 6, 2, 10, 0))
    sched = clocks.schedule()
    clocks.advance(3.3)
    timer = sched.add_timer(7, 0.5)
    assert isinstance(timer, Timer) and timer.start == T0 + 3.3
    assert sched.wake_at() == pytest.approx(T0 + 3.8)
    assert step(sched) == []
    clocks.advance(0.5)
    assert step(sched) == [(timer, 7)]
    assert sched.wake_at() == pytest.approx(T0 + 4.3)


def test_timers_fire_on_their_grid_when_the_loop_wakes_on_time():
    clocks = Clocks(D(2025, 6, 2, 10, 0))
    sched = clocks.schedule()
    sched.add_timer(1, 0.25)
    sched.add_timer(2, 0.1)
    fires = run(sched, clocks, 10.0)
    ones = [t for n, t, _ in fires if n == 1]
    twos = [t for n, t, _ in fires if n == 2]
    assert len(ones) == 40
    assert len(twos) in (99, 100)          # the 100th lands on the end, within rounding
    for k, t in enumerate(ones, 1):
        assert t == pytest.approx(T0 + k * 0.25, abs=1e-9)
    for k, t in enumerate(twos, 1):
        assert t == pytest.approx(T0 + k * 0.1, abs=1e-9)


def test_a_loop_that_always_wakes_late_does_not_drift():
    clocks = Clocks(D(2025, 6, 2, 10, 0))
    sched = clocks.schedule()
    timer = sched.add_timer(1, 0.05)
    fires = run(sched, clocks, 60.0, late=0.02)          # 20 ms late at every pass
    assert len(fires) == pytest.approx(1200, abs=1)       # still 20 per second
    assert timer.coalesced == 0
    for k, (_, t, _) in enumerate(fires, 1):
        assert t == pytest.approx(T0 + k * 0.05 + 0.02, abs=1e-6)


def test_a_master_busy_for_a_while_gets_one_tick_then_the_grid_again():
    clocks = Clocks(D(2025, 6, 2, 10, 0))
    sched = clocks.schedule()
    timer = sched.add_timer(1, 0.1)
    clocks.advance(2.05)                     # busy: 20 ticks were due
    assert step(sched) == [(timer, 1)]
    assert step(sched) == []
    assert timer.coalesced == 19
    assert sched.wake_at() == pytest.approx(T0 + 2.1)
    fires = run(sched, clocks, 1.0)
    assert len(fires) in (9, 10)
    assert timer.fired + timer.coalesced == pytest.approx(30, abs=1)


def test_iterations_fire_exactly_and_the_finished_timer_is_dropped():
    clocks = Clocks(D(2025, 6, 2, 10, 0))
    sched = clocks.schedule()
    sched.add_timer(3, 0.2, iterations=4)
    forever = sched.add_timer(4, 1.0)
    fires = run(sched, clocks, 5.0)
    assert [t for n, t, _ in fires if n == 3] == pytest.approx([T0 + 0.2 * k for k in (1, 2, 3, 4)])
    assert sched.timers == [forever]
    sched.del_timers(4)
    assert sched.wake_at() is None
    assert run(sched, clocks, 10.0) == []


def test_iterations_count_fired_ticks_not_coalesced_ones():
    clocks = Clocks(D(2025, 6, 2, 10, 0))
    sched = clocks.schedule()
    timer = sched.add_timer(3, 0.1, iterations=3)
    clocks.advance(1.05)                       # ten due: one fires, nine coalesce
    assert len(step(sched)) == 1
    assert sched.timers == [timer]
    assert len(run(sched, clocks, 1.0)) == 2
    assert timer.fired == 3 and sched.timers == []


def test_del_timers_removes_every_timer_of_that_number_only():
    clocks = Clocks(D(2025, 6, 2, 10, 0))
    sched = clocks.schedule()
    a, b = sched.add_timer(5, 1.0), sched.add_timer(5, 0.3)
    c = sched.add_timer(6, 0.5)
    removed = sched.del_timers(5)
    assert set(map(id, removed)) == {id(a), id(b)}
    assert sched.timers == [c]
    assert sched.del_timers(5) == []
    assert {n for n, _, _ in run(sched, clocks, 3.0)} == {6}


def test_an_empty_schedule_has_nothing_to_wake_for():
    clocks = Clocks(D(2025, 6, 2, 10, 0))
    sched = clocks.schedule()
    assert sched.wake_at() is None
    assert step(sched) == []


def test_many_timers_all_fire():
    """No fixed cap on the number of timers (uWSGI: 64)."""
    clocks = Clocks(D(2025, 6, 2, 10, 0))
    sched = clocks.schedule()
    for num in range(200):
        sched.add_timer(num % 256, 0.05 + num * 0.001, iterations=1)
    fires = run(sched, clocks, 1.0)
    assert sorted(n for n, _, _ in fires) == sorted(num % 256 for num in range(200))
    assert sched.timers == []


# -- cron: the start-up rule -----------------------------------------------------------------

def test_at_start_up_a_cron_fires_at_once_if_the_current_minute_matches():
    clocks = Clocks(D(2025, 6, 2, 10, 5, 42))
    sched = clocks.schedule()
    entry = sched.add_cron(9, from_ints(-5, -1, -1, -1, -1))
    assert isinstance(entry, Cron)
    assert sched.wake_at() <= clocks.mono          # look now
    assert step(sched) == [(entry, 9)]
    assert entry.fired == 1


def test_at_start_up_a_cron_does_not_fire_if_the_current_minute_does_not_match():
    clocks = Clocks(D(2025, 6, 2, 10, 7, 30))
    sched = clocks.schedule()
    sched.add_cron(9, from_ints(-5, -1, -1, -1, -1))
    assert step(sched) == []
    fires = run(sched, clocks, 200.0)           # to 10:10:50
    assert [(n, w) for n, _, w in fires] == [(9, D(2025, 6, 2, 10, 10))]


def test_an_expression_follows_the_same_start_up_rule():
    clocks = Clocks(D(2025, 6, 2, 9, 0, 59, 900000))
    sched = clocks.schedule()
    sched.add_cron(4, from_expr("*/5 9-17 * * 1-5"))
    assert [n for _, n in step(sched)] == [4]
    clocks = Clocks(D(2025, 6, 2, 8, 59, 59))
    sched = clocks.schedule()
    sched.add_cron(4, from_expr("*/5 9-17 * * 1-5"))
    assert step(sched) == []
    assert [w for _, _, w in run(sched, clocks, 2.0)] == [D(2025, 6, 2, 9, 0)]


# -- cron: once per matching minute, at its start ----------------------------------------------

def test_a_cron_fires_once_per_matching_minute_at_its_start():
    clocks = Clocks(D(2025, 6, 2, 8, 0, 0))               # a Monday
    sched = clocks.schedule()
    sched.add_cron(4, from_ints(-5, -1, -1, -1, -1))
    fires = run(sched, clocks, 3 * 3600 - 1)
    walls = [w for _, _, w in fires]
    expected = [D(2025, 6, 2, 8, 0) + dt.timedelta(minutes=5 * i) for i in range(36)]
    assert walls == expected


def test_an_every_minute_cron_over_a_day_fires_1440_times_never_twice_a_minute():
    clocks = Clocks(D(2025, 6, 2, 0, 0, 0, 1))
    sched = clocks.schedule()
    sched.add_cron(1, from_ints(-1, -1, -1, -1, -1))
    fires = run(sched, clocks, 86400 - 1)
    minutes = [w.replace(second=0, microsecond=0) for _, _, w in fires]
    assert len(minutes) == 1440 and len(set(minutes)) == 1440
    assert all(w.second == 0 and w.microsecond <= 1 for _, _, w in fires[1:])


def test_a_cron_never_fires_twice_in_a_minute_however_often_asked():
    clocks = Clocks(D(2025, 6, 2, 10, 5, 0))
    sched = clocks.schedule()
    sched.add_cron(2, from_ints(-1, -1, -1, -1, -1))
    count = 0
    for _ in range(600):                       # every 0.1 s through 10:05
        sched._cron_check = 0.0               # even if forced to look each time
        count += len(step(sched))
        clocks.advance(0.0999)
    assert count == 1


def test_a_busy_master_fires_when_it_reaches_the_minute():
    clocks = Clocks(D(2025, 6, 2, 10, 4, 59))
    sched = clocks.schedule()
    entry = sched.add_cron(2, from_ints(5, -1, -1, -1, -1))
    assert step(sched) == []
    clocks.advance(41.0)                       # the master looks at 10:05:40
    assert step(sched) == [(entry, 2)]
    clocks.advance(10.0)
    assert step(sched) == []


def test_a_wall_clock_stepped_back_within_the_minute_does_not_fire_again():
    clocks = Clocks(D(2025, 6, 2, 10, 5, 30))
    sched = clocks.schedule()
    sched.add_cron(2, from_ints(-5, -1, -1, -1, -1))
    assert len(step(sched)) == 1
    clocks.set_wall(D(2025, 6, 2, 10, 5, 2))              # NTP steps back 28 s
    sched.add_cron(3, from_ints(59, 23, -1, -1, -1))     # makes the schedule look now
    assert step(sched) == []
    fires = run(sched, clocks, 300.0)                     # to 10:10:02
    assert [w for _, _, w in fires] == [D(2025, 6, 2, 10, 10)]


def test_cron_wakes_at_the_next_matching_minute_and_rechecks_at_least_every_minute():
    clocks = Clocks(D(2025, 6, 2, 10, 0, 10))
    sched = clocks.schedule()
    sched.add_cron(1, from_ints(-1, -1, -1, -1, -1))
    step(sched)
    assert sched.wake_at() == pytest.approx(clocks.mono + 50.0)     # 10:01:00
    clocks = Clocks(D(2025, 6, 2, 10, 0, 10))
    sched = clocks.schedule()
    sched.add_cron(1, from_ints(30, 12, -1, -1, -1))
    step(sched)
    assert sched.wake_at() == pytest.approx(clocks.mono + 60.0)     # re-read the clock


def test_the_wall_clock_is_read_only_when_a_cron_check_is_due():
    clocks = Clocks(D(2025, 6, 2, 10, 0, 10))
    sched = clocks.schedule()
    sched.add_cron(1, from_ints(-1, -1, -1, -1, -1))
    sched.add_timer(2, 0.01)
    step(sched)
    calls = clocks.wall_calls
    fires = run(sched, clocks, 40.0)           # timer ticks only, before 10:01
    assert {n for n, _, _ in fires} == {2}
    assert clocks.wall_calls == calls


def test_a_cron_added_later_is_looked_at_at_once():
    clocks = Clocks(D(2025, 6, 2, 10, 0, 10))
    sched = clocks.schedule()
    sched.add_cron(1, from_ints(59, 23, -1, -1, -1))
    step(sched)                                 # next look in 60 s
    clocks.advance(5)
    entry = sched.add_cron(2, from_ints(-1, -1, -1, -1, -1))
    assert sched.wake_at() <= clocks.mono
    assert step(sched) == [(entry, 2)]


def test_each_cron_keeps_its_own_minute():
    clocks = Clocks(D(2025, 6, 2, 10, 0, 30))
    sched = clocks.schedule()
    a = sched.add_cron(1, from_ints(-1, -1, -1, -1, -1))
    assert step(sched) == [(a, 1)]
    clocks.advance(1)
    b = sched.add_cron(2, from_ints(-1, -1, -1, -1, -1))
    assert step(sched) == [(b, 2)]                  # a does not fire again this minute
    clocks.advance(30)
    assert sorted(n for _, n in step(sched)) == [1, 2]


def test_timers_and_crons_together_wake_for_the_earliest():
    clocks = Clocks(D(2025, 6, 2, 10, 0, 30))
    sched = clocks.schedule()
    sched.add_cron(1, from_ints(-1, -1, -1, -1, -1))
    step(sched)
    sched.add_timer(2, 7.0)
    assert sched.wake_at() == pytest.approx(clocks.mono + 7.0)
    sched.del_timers(2)
    assert sched.wake_at() == pytest.approx(clocks.mono + 30.0)


def test_del_crons_removes_every_cron_of_that_number():
    clocks = Clocks(D(2025, 6, 2, 10, 0, 30))
    sched = clocks.schedule()
    a = sched.add_cron(3, from_ints(-1, -1, -1, -1, -1))
    b = sched.add_cron(3, from_expr("* * * * *"))
    c = sched.add_cron(4, from_ints(-1, -1, -1, -1, -1))
    assert set(map(id, sched.del_crons(3))) == {id(a), id(b)}
    assert sched.crons == [c]
    assert [n for _, n in step(sched)] == [4]
    sched.del_crons(4)
    assert sched.wake_at() is None
    assert run(sched, clocks, 300.0) == []


def test_many_crons_all_fire():
    """No fixed cap on the number of crons (uWSGI: 64)."""
    clocks = Clocks(D(2025, 6, 2, 10, 0, 1))
    sched = clocks.schedule()
    for num in range(100):
        sched.add_cron(num, from_ints(-1, -1, -1, -1, -1))
    assert sorted(n for _, n in step(sched)) == list(range(100))


def test_a_cron_that_can_never_fire_sleeps_and_fires_nothing():
    clocks = Clocks(D(2025, 6, 2, 10, 0, 1))
    sched = clocks.schedule()
    sched.add_cron(1, from_ints(0, 0, 31, 2, -1))
    assert step(sched) == []
    assert sched.wake_at() == pytest.approx(clocks.mono + 60.0)
    assert run(sched, clocks, 600.0) == []


def test_an_impossible_expression_neither_fires_nor_breaks_the_other_sources():
    """A config may hold `expr = "0 0 31 2 *"` (croniter accepts it); the master's loop
    asks due() on each pass, so it must not raise, and the others keep firing."""
    clocks = Clocks(D(2025, 6, 2, 10, 0, 1))
    sched = clocks.schedule()
    sched.add_cron(1, from_expr("0 0 31 2 *"))
    other = sched.add_cron(2, from_ints(-1, -1, -1, -1, -1))
    assert step(sched) == [(other, 2)]
    fires = run(sched, clocks, 180.0)
    assert [n for n, _, _ in fires] == [2, 2, 2]
