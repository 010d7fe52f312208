"""Periodic timers: tick k is due at start + k * period; missed ticks coalesce."""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_PERIOD = 0.001
_EPSILON = 1e-6         # in periods: 10 * 0.1 s is 1.0 s, though floats disagree


def check_period(seconds: object, name: str = "seconds") -> float:
    """A timer period as a float; ValueError/TypeError naming the value."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"{name} must be a number, not {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds < MIN_PERIOD:
        raise ValueError(f"{name} = {seconds} is not a valid timer period "
                         f"(a number of seconds >= {MIN_PERIOD})")
    return float(seconds)


def check_iterations(iterations: object) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        raise TypeError(f"iterations must be an integer, not {type(iterations).__name__}")
    if iterations < 0:
        raise ValueError(f"iterations = {iterations} is negative (0 means forever)")
    return iterations


@dataclass(eq=False)       # compared and hashed by identity: a source
class Timer:
    num: int
    period: float
    start: float            # the clock reading the ticks count from
    iterations: int = 0     # 0 = forever
    fired: int = 0
    coalesced: int = 0
    origin: str = "master"  # "master" (config, imports) or "child" (added at run time)
    _k: int = 1             # the next tick's index

    @property
    def due(self) -> float:
        return self.start + self._k * self.period

    def _index(self, now: float) -> int:
        """The index of the last grid point at or before `now` (float-safe)."""
        return int((now - self.start) / self.period + _EPSILON)

    @property
    def finished(self) -> bool:
        return bool(self.iterations) and self.fired >= self.iterations

    def advance(self, now: float) -> bool:
        """Called at or after `due`: True if a tick fires now.

        Ticks missed by more than one period are skipped (counted in `coalesced`), so a
        late loop never bursts; the next tick stays on the start + k * period grid.
        """
        latest = self._index(now)
        if latest < self._k:
            return False
        self.coalesced += latest - self._k
        self._k = latest + 1
        self.fired += 1
        return True
