"""Signals a dead child had read from a group's channel and not yet marked as started.

A member reads one byte from its group's shared channel, then marks the signal in its
shared record (procs/child.py).  Between the two, the signal is neither in the channel
nor marked: a child killed there would lose it without a count.  So the read lands in
the record (`read_byte`), and each member keeps `2 × (signals it took) + 1 while
between a read and its mark` in `shared.taken`.  When a member dies with that word odd,
the master decides whether the read happened:

- the record shows the level marked (`depth == read_depth + 1`): the usual accounting
  of a running handler counts it (`died`), and the word is made even;
- otherwise the channel's own count settles it: bytes read from it ever
  (`Outbox.consumed()`) minus the members' completed takes is what the members still
  between a read and a mark have read.  When no live member is in such a window, that
  is exactly what the dead ones read, and those signals go back to the front of the
  group's queue, for another member.  While live members are, the master looks again
  on its next housekeeping pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from switchboard.router import Router
from switchboard.shared import Shared
from switchboard.targets import Target, Topology

log = logging.getLogger("switchboard.master")


@dataclass
class _Open:
    """A dead member's read that may have happened: its group and what it would be."""

    group: Target
    num: int


@dataclass
class ReadWindows:
    shared: Shared
    topology: Topology
    router: Router
    flag_of: dict[Target, int]           # a group's pressure flag: slots + its number
    open: list[_Open] = field(default_factory=list)

    def member_died(self, slot: int) -> None:
        """Call when `slot`'s child is gone, before its replacement starts."""
        rec, taken = self.shared.procs[slot], self.shared.taken
        for group in self.topology.groups_of(slot):
            at = self._row(group) + slot
            if not taken[at] % 2:
                continue
            taken[at] -= 1                      # the replacement starts out of the window
            if rec.depth == rec.read_depth + 1:
                taken[at] += 2                  # marked: counted as the running handler
            else:
                self.open.append(_Open(group, rec.read_byte))
        self.settle()

    def settle(self) -> None:
        """Put back what dead members read, where the channel's count can tell."""
        for group in {w.group for w in self.open}:
            unaccounted = self._unaccounted(group)
            if unaccounted is None:
                continue                         # a live member is mid-read: later
            waiting = [w for w in self.open if w.group == group]
            self.open = [w for w in self.open if w.group != group]
            if unaccounted < 0:
                log.error("%s: its channel says %d fewer signals were read than its "
                          "members took; putting none back", group.text(self.topology),
                          -unaccounted)
            lost = waiting[:max(0, unaccounted)]
            if len(waiting) > 1 and 0 < unaccounted < len(waiting):
                log.error("%d members of %s died between reading a signal and starting "
                          "it, and %d of them had read one: putting back the first %d "
                          "of %s (the others may run twice or not at all)",
                          len(waiting), group.text(self.topology), unaccounted,
                          unaccounted, [w.num for w in waiting])
            box = self.router.groups[group]
            if lost and box.direct:
                box.closed[box.index] = 1     # raisers wait behind what we put back
            for w in reversed(lost):
                box.buf[:0] = bytes([w.num])
                log.warning("signal %d: read by a %s member that died before starting "
                            "it; queued again for the group", w.num,
                            group.text(self.topology))
            self.shared.settled[self._number(group)] += len(lost)

    def _unaccounted(self, group: Target) -> int | None:
        """Reads from the group's channel by no live member's window, or None if a live
        member is between a read and its mark (or took one while we looked)."""
        before = self._words(group)
        box = self.router.groups[group]
        with box.locked():              # what raisers wrote and the kernel holds, together
            consumed = box.consumed()
        if self._words(group) != before or any(t % 2 for t in before):
            return None
        return consumed - sum(before) // 2 - self.shared.settled[self._number(group)]

    def consumed(self, group: Target) -> int | None:
        """Signals the group's members took from its channel, ever (for a recount after
        a raiser died writing to it: outbox.py); None while a member is between a read
        and its mark, or a dead member's read is not settled yet."""
        if any(w.group == group for w in self.open):
            return None
        words = self._words(group)
        if any(t % 2 for t in words):
            return None
        return sum(words) // 2 + self.shared.settled[self._number(group)]

    def _words(self, group: Target) -> list[int]:
        """The group's members' words in shared.taken, now."""
        row, taken = self._row(group), self.shared.taken
        return [taken[row + m] for m in self.topology.members(group)]

    def _row(self, group: Target) -> int:
        return self._number(group) * self.topology.slots

    def _number(self, group: Target) -> int:
        return self.flag_of[group] - self.topology.slots
