"""The master's timers and crons: what is due, and when to wake next.

Pure but for the clocks, which are passed in: `monotonic` for timers (immune to wall
clock changes), local wall time for cron.  The master asks `due()` on each pass and
sleeps at most until `wake_at()`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from switchboard.sources.cron import CronSpec, matches, next_fire
from switchboard.sources.timer import Timer

_CRON_RECHECK = 60.0      # seconds: re-read the wall clock at least this often


@dataclass(eq=False)       # compared and hashed by identity: a source
class Cron:
    num: int
    spec: CronSpec
    last_minute: dt.datetime | None = None
    fired: int = 0
    origin: str = "master"


@dataclass
class Schedule:
    now: Callable[[], float] = time.monotonic
    wall: Callable[[], dt.datetime] = dt.datetime.now
    timers: list[Timer] = field(default_factory=list)
    crons: list[Cron] = field(default_factory=list)
    _cron_check: float = 0.0

    def add_timer(self, num: int, seconds: float, iterations: int = 0,
                  origin: str = "master") -> Timer:
        timer = Timer(num, seconds, self.now(), iterations, origin=origin)
        self.timers.append(timer)
        return timer

    def add_cron(self, num: int, spec: CronSpec, origin: str = "master") -> Cron:
        cron = Cron(num, spec, origin=origin)
        self.crons.append(cron)
        self._cron_check = 0.0          # look now: the current minute may match
        return cron

    def del_timers(self, num: int) -> list[object]:
        """Remove every timer raising `num`; the removed ones."""
        removed = [t for t in self.timers if t.num == num]
        self.timers = [t for t in self.timers if t.num != num]
        return list(removed)

    def del_crons(self, num: int) -> list[object]:
        removed = [c for c in self.crons if c.num == num]
        self.crons = [c for c in self.crons if c.num != num]
        return list(removed)

    def due(self, deliver: Callable[[object, int], bool] | None = None
            ) -> list[tuple[object, int]]:
        """(source, signal) for every tick due now; finished timers are removed.

        `deliver(source, num)` hands each tick on; a tick it could not place anywhere
        (it coalesced) does not count toward the timer's iterations."""
        now = self.now()
        fired: list[tuple[object, int]] = []
        for timer in self.timers:
            if timer.advance(now):
                if deliver is None or deliver(timer, timer.num):
                    fired.append((timer, timer.num))
                else:
                    timer.fired -= 1
        self.timers = [t for t in self.timers if not t.finished]
        if self.crons and now >= self._cron_check:
            for cron, num in self._due_crons(now):
                if deliver is not None:
                    deliver(cron, num)
                fired.append((cron, num))
        return fired

    def _due_crons(self, now: float) -> list[tuple[object, int]]:
        wall = self.wall()
        minute = wall.replace(second=0, microsecond=0)
        fired: list[tuple[object, int]] = []
        wake = now + _CRON_RECHECK
        for cron in self.crons:
            if cron.last_minute != minute and matches(cron.spec, minute):
                cron.last_minute = minute
                cron.fired += 1
                fired.append((cron, cron.num))
            upcoming = next_fire(cron.spec, wall)     # None: it can never match again
            if upcoming is not None:
                wake = min(wake, now + max(0.0, (upcoming - wall).total_seconds()))
        self._cron_check = wake
        return fired

    def wake_at(self) -> float | None:
        """The monotonic time of the next thing due, if any."""
        times = [t.due for t in self.timers]
        if self.crons:
            times.append(self._cron_check)
        return min(times) if times else None
