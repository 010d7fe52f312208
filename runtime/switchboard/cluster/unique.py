"""Unique timers and crons: fire times every node computes alike, claimed in PostgreSQL.

A unique timer's grid is anchored to the Unix epoch (fires at whole multiples of its
period, wall clock), a unique cron's at its matching local minutes, so each node
computes the same (source key, fire time) pairs; the claim (an INSERT that only one
node's can win) decides which node raises each.  Pure: the clock is passed in.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from switchboard.sources.cron import CronSpec, next_fire

_EPSILON = 1e-6


@dataclass(eq=False)
class UniqueSource:
    ident: int
    num: int
    period: float = 0.0              # a timer's; 0 for a cron
    cron: CronSpec | None = None
    next_at: float = math.inf        # Unix time of the next fire
    claimed: int = 0                 # fires this node won
    coalesced: int = 0               # fires skipped because this node was late

    @property
    def key(self) -> str:
        """The same on every node that configures the same source."""
        if self.cron is not None:
            return f"cron {self.num} {self.cron.text()}"
        return f"timer {self.num} {self.period:g}"

    def start(self, now: float) -> None:
        """Aim at the first fire strictly after `now` (Unix time)."""
        self.next_at = self._after(now)

    def due(self, now: float) -> float | None:
        """The fire time to claim if one is due at `now`; later fires are then aimed at.

        A node that is late by whole periods claims only the latest fire (the ones it
        missed were the other nodes' to claim)."""
        if now + _EPSILON < self.next_at:
            return None
        fire = self.next_at
        if self.cron is None:
            latest = math.floor(now / self.period + _EPSILON) * self.period
            self.coalesced += max(0, round((latest - fire) / self.period))
            fire = max(fire, latest)
        self.next_at = self._after(fire)
        return fire

    def _after(self, when: float) -> float:
        if self.cron is None:
            return (math.floor(when / self.period + _EPSILON) + 1) * self.period
        local = dt.datetime.fromtimestamp(when)
        upcoming = next_fire(self.cron, local)
        return upcoming.timestamp() if upcoming is not None else math.inf


def from_spec(ident: int, spec: dict[str, Any]) -> UniqueSource:
    """A UniqueSource from a registry spec (kind timer, rb_timer or cron)."""
    if spec["kind"] == "cron":
        return UniqueSource(ident, spec["num"], cron=CronSpec(**spec["cron"]))
    return UniqueSource(ident, spec["num"], period=spec["seconds"])


RETRY = 300.0          # seconds a lost fire may still be released by its winner
_KEEP = 1000           # lost fires remembered at most


class LostFires:
    """The fires another node won in the last RETRY seconds, oldest first.

    A node that won a fire and stops before running it releases the claim (deletes
    the row, cluster/release.py); the others then try these again, so the fire still
    runs once while any node is up."""

    def __init__(self) -> None:
        self._fires: dict[tuple[str, float], int] = {}     # (key, fire time) -> number

    def add(self, source: UniqueSource, fire: float) -> None:
        self._fires[(source.key, fire)] = source.num
        if len(self._fires) > _KEEP:
            del self._fires[next(iter(self._fires))]

    def recent(self, now: float) -> list[tuple[str, float]]:
        """The ones still worth a try at `now` (older ones are forgotten)."""
        for key in [k for k in self._fires if k[1] < now - RETRY]:
            del self._fires[key]
        return list(self._fires)

    def won(self, fire: tuple[str, float]) -> int:
        """This node claimed `fire` after all: forget it; its signal number."""
        return self._fires.pop(fire)
