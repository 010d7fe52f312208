"""Cheaper mode: run workers 1..K always, the others while any-worker signals wait.

A pure policy: given the time, the queue of the `worker` group and each worker's record,
it says which workers to spawn and which to cheap.  The master carries it out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from switchboard.shared import IDLE, ProcRecord


@dataclass
class Decision:
    spawn: list[int] = field(default_factory=list)
    cheap: list[int] = field(default_factory=list)


class Cheaper:
    def __init__(self, minimum: int, wait: float, idle: float, workers: list[int]) -> None:
        self.minimum, self.wait, self.idle = minimum, wait, idle
        self.workers = workers
        self.cheap: set[int] = set(workers[minimum:])     # no process, keeps its id
        self.leaving: set[int] = set()                     # told to stop, not gone yet
        self._queued_since: float | None = None

    def decide(self, now: float, queued: int, wanted: Callable[[int], bool],
               records: list[ProcRecord]) -> Decision:
        """What to do now: `queued` signals wait in the `worker` group; `wanted(slot)`
        says a cheaped worker has signals addressed to it alone."""
        decision = Decision([s for s in sorted(self.cheap) if wanted(s)])
        if queued:
            if self._queued_since is None:
                self._queued_since = now
            elif now - self._queued_since >= self.wait:
                spare = sorted(self.cheap - set(decision.spawn))
                if spare:
                    decision.spawn.append(spare[0])
                self._queued_since = now
            return decision
        self._queued_since = None
        # Workers 1..K always run; the spare ones above are cheaped when idle long enough.
        spare = [s for s in self.workers[self.minimum:]
                 if s not in self.cheap and s not in self.leaving]
        idle = [s for s in spare if records[s].status == IDLE
                and now - records[s].last_active >= self.idle]
        if idle:
            decision.cheap.append(max(idle))
        return decision

    def wake_at(self) -> float | None:
        """When decide() must run again to keep the cheaper-wait promise."""
        if self._queued_since is None or not self.cheap:
            return None
        return self._queued_since + self.wait

    def spawned(self, slot: int) -> None:
        self.cheap.discard(slot)

    def stopping(self, slot: int) -> None:
        self.leaving.add(slot)

    def gone(self, slot: int) -> bool:
        """A worker exited; True if it was being cheaped (so: no respawn)."""
        if slot not in self.leaving:
            return False
        self.leaving.discard(slot)
        self.cheap.add(slot)
        return True
