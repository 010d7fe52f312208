"""The master's side of a raiser that died writing straight to a channel (direct.py).

Between a raiser's reservation in `written` and its counts after the write, a kill
leaves two things in doubt: whether its byte went out (so `written` may be one off,
and with it every position the master derives from it), and how many copies its own
counts took in.  Its record says where it was: the channel and that channel's count
before the write, the signal, its index in the signal's route (a broadcast writes one
member's channel after another) and the raiser's counts before this raise.  The
master copies that at the death (the slot is respawned and writes its record again),
closes the channel to raisers, and recounts it once its readers can tell what they
took: the kernel's count plus theirs says whether the byte went out.  Then the signal's
counts are set right through the router's (the replacement keeps counting in the
record meanwhile, so the record is not written here), and the channel opens again.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from switchboard.outbox import Outbox
from switchboard.router import Router
from switchboard.shared import Shared
from switchboard.targets import Topology
from switchboard.windows import ReadWindows

log = logging.getLogger("switchboard.master")


@dataclass(frozen=True)
class _Cut:
    """Where a raiser was in a direct write when it died."""

    channel: int
    index: int          # the channel's place in the signal's route
    end: int            # the channel's count before the write
    num: int
    raised: int         # its counts of the signal before this raise, and at its death
    routed: int
    raised_at_death: int
    routed_at_death: int


class Recounts:
    def __init__(self, shared: Shared, topology: Topology, router: Router,
                 windows: ReadWindows, alive: Callable[[int], bool]) -> None:
        self.shared, self.topology, self.router = shared, topology, router
        self.windows, self.alive = windows, alive
        self.cuts: list[_Cut] = []

    def died(self, slot: int) -> None:
        """Call when `slot`'s child is gone, before its replacement starts."""
        rec = self.shared.procs[slot]
        pending, rec.direct_pending = rec.direct_pending, 0
        if pending:
            num = rec.direct_num
            cut = _Cut((pending & 0xFFFF) - 1, pending >> 16, rec.direct_end, num,
                       rec.direct_base_raised, rec.direct_base_routed,
                       rec.direct_raised[num], rec.direct_routed[num])
            self.box(cut.channel).hold("recount")
            self.cuts.append(cut)
        self.settle()

    def before_put_back(self, slot: int) -> None:
        """`slot`'s child is gone and its channel is about to be taken back, which
        relies on the channel's count: if a raiser died writing it and has not been
        reaped yet, recount now (the reader is dead, so what it read is final)."""
        box = self.box(slot)
        with box.locked():
            orphaned = bool(self.shared.writing[slot])
        if not orphaned:
            return
        if any(cut.channel == slot for cut in self.cuts):
            self.settle()           # its raiser was reaped first: the reader is final now
            return
        raiser = next((s for s, rec in enumerate(self.shared.procs)
                       if (rec.direct_pending & 0xFFFF) - 1 == slot), None)
        if raiser is None:
            log.error("%s: a raiser died writing it and left no record of it", box.name)
            self.shared.writing[slot] = 0
            return
        self.died(raiser)

    def settle(self) -> None:
        """Recount every channel whose readers can tell now what they took."""
        for cut in list(self.cuts):
            box = self.box(cut.channel)
            went_out = box.recount(functools.partial(self._consumed, cut.channel), cut.end)
            if went_out is None:
                continue
            copies = cut.index + went_out
            self.router.routed[cut.num] += cut.routed + copies - cut.routed_at_death
            self.router.raised[cut.num] += cut.raised + (copies > 0) - cut.raised_at_death
            self.cuts.remove(cut)
            box.release("recount")

    def _consumed(self, channel: int) -> int | None:
        """What a channel's readers took from it, ever, if that can be told now."""
        if channel in self.router.boxes:
            return self.router.boxes[channel].read_by_reader(self.alive(channel))
        return self.windows.consumed(self.topology.groups()[channel - self.topology.slots])

    def box(self, channel: int) -> Outbox:
        if channel in self.router.boxes:
            return self.router.boxes[channel]
        return self.router.groups[self.topology.groups()[channel - self.topology.slots]]
