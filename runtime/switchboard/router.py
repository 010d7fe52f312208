"""Routing: one decision per signal, in the master, from the entry as registered.

The router turns a signal number into appends on bounded outboxes (one per child
channel, one per first-available group).  A full outbox refuses the signal and the
caller keeps it (back-pressure); nothing here drops a signal except the held queue of
unregistered signals, which SPEC allows to drop its oldest, counted and logged.
"""

from __future__ import annotations

import logging
from collections import Counter, deque

from switchboard.outbox import Outbox
from switchboard.shared import SIGNALS
from switchboard.table import Entry, HandlerKind, SignalTable
from switchboard.targets import MASTER_SLOT, Kind, Target, Topology

log = logging.getLogger("switchboard.router")

ANY = -1
__all__ = ["ANY", "Outbox", "Router"]


class Router:
    def __init__(self, table: SignalTable, topology: Topology, boxes: dict[int, Outbox],
                 groups: dict[Target, Outbox], held_limit: int) -> None:
        self.table, self.topology = table, topology
        self.boxes, self.groups = boxes, groups
        self.workers = [boxes[s] for s in topology.worker_slots()]
        self.active_workers = list(self.workers)
        self.held: deque[int] = deque()
        self.held_limit = held_limit
        self.waiters: dict[int, int] = {}          # slot -> wanted number or ANY
        self.any_cheap = False
        self.raised = [0] * SIGNALS
        self.routed = [0] * SIGNALS
        self.coalesced = [0] * SIGNALS     # `workers` copies a cheaped worker already had
        self.dropped: dict[str, list[int]] = {}
        self._pending_drops: Counter[tuple[str, int]] = Counter()
        self._marks: dict[tuple[object, Outbox], int] = {}        # where a tick sits
        self._waiting_ticks: dict[tuple[object, Outbox], int] = {}
        self._seen_gen = -1
        self._routes: list[list[Outbox] | None] = [None] * SIGNALS

    def route(self, num: int, front: bool = False) -> bool:
        """Queue `num` where its entry says; False (and nothing done) if a queue is full."""
        if self.table.generation != self._seen_gen:
            self._refresh()
        boxes = self._routes[num]
        if boxes is None:
            self.hold(num, front)
            return True
        if self.any_cheap:
            return self._route_with_cheap(num, boxes)
        for box in boxes:
            if not box.buf and box.direct:
                box.reopen()        # raisers wrote to it meanwhile: count them (outbox.py)
            if len(box.buf) + box.in_kernel >= box.limit and box.full():
                return False
        for box in boxes:
            box.buf.append(num)
        self.routed[num] += len(boxes)
        return True

    def tick(self, source: object, num: int) -> bool:
        """A timer, cron or file-monitor tick: never blocks, and each source keeps at most
        one undelivered tick per destination (the others coalesce, counted).  False if
        it coalesced everywhere (so it does not count toward a timer's iterations)."""
        self.raised[num] += 1
        if self.table.generation != self._seen_gen:
            self._refresh()
        boxes = self._routes[num]
        if boxes is None:
            if num in self.held:
                self.coalesced[num] += 1
                return False
            self.hold(num)
            return True
        broadcast, taken = boxes is self.workers, False
        for box in boxes:
            key = (source, box)
            if key in self._waiting_ticks or self._marks.get(key, 0) > box.consumed():
                self.coalesced[num] += 1
                continue
            taken = True
            if not box.buf and box.direct:
                box.reopen()
            if len(box.buf) + box.in_kernel >= box.limit and box.full():
                self._waiting_ticks[key] = num      # delivered when room appears
            else:
                self._queue_tick(key, box, num, broadcast)
        return taken

    def retry_ticks(self) -> None:
        """Queue ticks that met a full queue, where there is room now."""
        for key, num in list(self._waiting_ticks.items()):
            box = key[1]
            if not box.buf and box.direct:
                box.reopen()
            if not box.full():
                del self._waiting_ticks[key]
                self._queue_tick(key, box, num, False)

    def forget(self, source: object) -> None:
        """A source was removed: drop what we remember of its ticks."""
        for table in (self._marks, self._waiting_ticks):
            for key in [k for k in table if k[0] is source]:
                del table[key]

    def _queue_tick(self, key: tuple[object, Outbox], box: Outbox, num: int,
                    broadcast: bool) -> None:
        box.buf.append(num)
        self._marks[key] = box.flushed + len(box.buf)
        self.routed[num] += 1
        if box.cheap and not broadcast:
            box.wanted = True

    def _route_with_cheap(self, num: int, boxes: list[Outbox]) -> bool:
        """route() when workers are cheaped: a cheaped worker holds at most one copy of
        each `workers` signal (uWSGI piles them up: #775); anything addressed to it
        alone marks it wanted, so the master brings it back."""
        broadcast = boxes is self.workers
        chosen = []
        for box in boxes:
            if box.cheap and broadcast and num in box.buf:
                continue
            if not box.buf and box.direct:
                box.reopen()
            if len(box.buf) + box.in_kernel >= box.limit and box.full():
                return False
            chosen.append(box)
        for box in chosen:
            box.buf.append(num)
            if box.cheap and not broadcast:
                box.wanted = True
        self.routed[num] += len(chosen)
        self.coalesced[num] += len(boxes) - len(chosen)
        return True

    def set_cheap(self, slot: int, cheap: bool) -> None:
        """Worker `slot` was cheaped (or comes back): `active-workers` follows.

        A worker cheaped with signals still in its channel (raised while it was leaving)
        has them taken back into the master's buffer, where the one-copy rule for
        `workers` sees them; any signal addressed to it alone brings it back."""
        box = self.boxes[slot]
        box.cheap, box.wanted = cheap, False
        if cheap:
            box.hold("cheap")       # its signals wait here, raisers' too
            self.requeue(slot)
            box.wanted = any(self._routes[n] not in (None, self.workers, self.active_workers)
                             for n in box.buf)
        else:
            box.release("cheap")
        self.active_workers[:] = [b for b in self.workers if not b.cheap]
        self.any_cheap = any(b.cheap for b in self.workers)

    def requeue(self, slot: int) -> None:
        """The child of `slot` is gone: what it had not started goes back to the front of
        its outbox, in order, for its replacement."""
        self.boxes[slot].put_back()

    def _refresh(self) -> None:
        self._seen_gen = self.table.generation
        routes: list[list[Outbox] | None] = [None] * SIGNALS
        for entry in self.table.entries():
            routes[entry.num] = self._destinations(entry)
        self._routes = routes

    def _destinations(self, entry: Entry) -> list[Outbox]:
        if entry.kind is HandlerKind.LOCAL and entry.owner != MASTER_SLOT:
            return [self.boxes[entry.owner]]    # only its owner has the callable
        group = self.groups.get(entry.target)
        if group is not None:
            return [group]
        kind = entry.target.kind
        if kind is Kind.WORKERS:
            return self.workers
        if kind is Kind.ACTIVE_WORKERS:
            return self.active_workers
        return [self.boxes[slot] for slot in self.topology.members(entry.target)]

    # -- unregistered signals: held for a waiter -----------------------------------------

    def hold(self, num: int, front: bool = False) -> None:
        if front:
            self.held.appendleft(num)
        else:
            self.held.append(num)
        if len(self.held) > self.held_limit:
            self.drop(self.held.popleft(), "unregistered")

    def wait(self, slot: int, want: int | None) -> None:
        """A child started (want) or stopped (None) waiting in signal_wait().

        Only workers take unregistered signals (SPEC 6); a mule or spooler that waits
        gets what is addressed to it, nothing held."""
        if slot not in self.topology.worker_slots():
            return
        if want is None:
            self.waiters.pop(slot, None)
        else:
            self.waiters[slot] = want

    def serve_waiters(self) -> None:
        """Hand held signals to waiting workers, one per waiter per wait."""
        for slot, want in list(self.waiters.items()):
            if not self.held:
                return
            box = self.boxes[slot]
            if not box.buf and box.direct:
                box.reopen()
            if box.full():
                continue
            num = self._take_held(want)
            if num is not None:
                box.buf.append(num)
                self.routed[num] += 1
                del self.waiters[slot]

    def _take_held(self, want: int) -> int | None:
        if want == ANY:
            return self.held.popleft()
        try:
            self.held.remove(want)
        except ValueError:
            return None
        return want

    # -- drops: counted per reason, logged once per loop pass ----------------------------

    def drop(self, num: int, reason: str, count: int = 1) -> None:
        self.dropped.setdefault(reason, [0] * SIGNALS)[num] += count
        self._pending_drops[(reason, num)] += count

    def log_drops(self) -> None:
        for (reason, num), count in sorted(self._pending_drops.items()):
            log.warning("signal %d: dropped %d (%s)", num, count, _REASONS.get(reason, reason))
        self._pending_drops.clear()


_REASONS = {
    "unregistered": "unregistered: no waiter took it and the held queue is full",
    "stopped": "stopped: queued but not started when the instance stopped",
    "died": "died: its process died before the handler finished",
    "harakiri": "harakiri: its handler ran past the harakiri limit and was killed",
    "reload-mercy": "reload-mercy: its handler was killed when the stop's mercy ran out",
}
