"""The direct path: a raiser writes a signal straight into its target's channels.

Through the master a signal costs two wake-ups (raiser -> master -> target); written
straight to the target's channel it costs one.  A raiser takes it for any entry the
master would route to fixed channels (a process's own channel, a group's shared channel,
every member's channel for `workers`, `active-workers` and `mules`), and only when every
guarantee of the master's path holds on it; otherwise it raises through the master,
which is always right.  Holding the channels' locks (shared.py; a broadcast takes all of
its members', or none), it writes only if:

- everything it sent the master before has been acted on (`processed`): a signal still
  at the master must not be overtaken by a later one from the same raiser;
- the master has not closed the channel (outbox.py): it closes it while it holds
  signals for it, and while its worker is cheaped (which also keeps `workers` and
  `active-workers` on the master's path then), being put back or recounted; and no
  raiser died writing it (its `writing` flag is still up: recount.py);
- each channel holds fewer than `signal-queue` signals not started, and fewer than
  DEPTH: a backlog goes through the master, which batches;
- the socket takes the byte now.

Before each write it stamps the byte's position (latency.py) and adds it to `written`;
after, it raises a child's channel's *sent* flag and counts the signal in its own record.
If it dies in between, `written` may be one off and its counts behind: its record says
which channel (`direct_pending`), which signal and its counts before this raise, and the
master recounts that channel from what its readers took and what the kernel still holds
(Outbox.recount), which tells whether the byte went out, and sets the counts from that.
"""

from __future__ import annotations

import errno
import socket
import threading
import time

from switchboard.shared import (
    DIRECT_BASE_RAISED,
    DIRECT_BASE_ROUTED,
    DIRECT_END,
    DIRECT_NUM,
    DIRECT_PENDING,
    DIRECT_RAISED,
    DIRECT_ROUTED,
    OWN_STARTED,
    PROCESSED,
    RecordView,
    Shared,
)
from switchboard.table import HandlerKind, SignalTable
from switchboard.targets import MASTER_SLOT, Kind, Topology

_BYTES = [bytes([num]) for num in range(256)]
# A channel holding this many signals not started goes through the master, which
# batches: a backlog is not what this path is for, and below it the kernel always
# takes a one-byte write (a channel holds about 280 of them).
DEPTH = 8
# A raise this soon after the previous one is part of a burst, which the master's
# batching serves better (one write, one wake-up for many signals: with 32 idle
# workers on a group's channel, one write per signal woke all 32 for each).
LONE = 0.0002


class DirectWriter:
    """One raiser's side of the direct path (in a child)."""

    def __init__(self, shared: Shared, table: SignalTable, topology: Topology, slot: int,
                 channels: dict[int, tuple[socket.socket, socket.socket]],
                 limit: int) -> None:
        """`channels`: by channel number (a child's slot, or a group's number after the
        slots), the master's end (we write it) and the child's end."""
        self.shared, self.table, self.topology = shared, table, topology
        self.channels, self.limit = channels, min(limit, DEPTH)
        me = RecordView(shared, slot)
        self._u64 = me.u64
        self._records = {s: RecordView(shared, s) for s in channels if s < shared.slots}
        self._groups = {shared.slots + i: self._words(shared, topology, i)
                        for i in range(len(topology.groups()))
                        if shared.slots + i in channels}
        self._group_of = {g: topology.slots + i for i, g in enumerate(topology.groups())}
        self._generations = table.entry_generations
        # num -> (generation, its channels; none: the master's path)
        self._routes: dict[int, tuple[int, tuple[int, ...]]] = {}
        self._thread = threading.Lock()     # the channel lock is per process, not thread
        self._run = shared.latency.run
        self._try_lock, self._unlock = shared.lock_channel, shared.unlock_channel
        self.sent = 0                       # bytes this process sent the master, ever
        self._last = 0.0                    # when it last raised

    def write(self, num: int) -> bool:
        """Raise `num` straight into its target's channels; False to go through the master."""
        now = time.monotonic()
        last, self._last = self._last, now
        if now - last < LONE:
            return False        # a burst: the master batches it, at less CPU per signal
        route = self._routes.get(num)
        if route is None or route[0] != self._generations[num]:
            route = self._resolve(num)
        channels = route[1]
        if not channels or self._u64[PROCESSED] != self.sent:
            return False
        with self._thread:
            if len(channels) == 1:          # the usual case, one lock
                if not self._try_lock(channels[0], False):
                    return False
                try:
                    return self._write_locked(num, channels)
                finally:
                    self._unlock(channels[0])
            locked = self._lock_all(channels)
            try:
                return len(locked) == len(channels) and self._write_locked(num, channels)
            finally:
                for channel in locked:
                    self._unlock(channel)

    def _lock_all(self, channels: tuple[int, ...]) -> list[int]:
        """Take every channel's lock, in order, without waiting: the ones taken."""
        locked = []
        for channel in channels:
            if not self._try_lock(channel, False):
                break
            locked.append(channel)
        return locked

    def _write_locked(self, num: int, channels: tuple[int, ...]) -> bool:
        shared, written, u64, writing = (self.shared, self.shared.written, self._u64,
                                         self.shared.writing)
        for channel in channels:
            if (shared.closed[channel] or writing[channel]
                    or self._unread(channel) >= self.limit):
                return False
        # What the master needs to finish our accounting if we die from here on
        u64[DIRECT_NUM] = num
        raised = u64[DIRECT_BASE_RAISED] = u64[DIRECT_RAISED + num]
        routed = u64[DIRECT_BASE_ROUTED] = u64[DIRECT_ROUTED + num]
        now = self._last
        for i, channel in enumerate(channels):
            end = u64[DIRECT_END] = written[channel]
            u64[DIRECT_PENDING] = i << 16 | channel + 1
            writing[channel] = 1            # left up if we die: see recount.py
            sent = 0
            try:
                written[channel] = end + 1
                self._run(channel, end + 1, now)    # before a reader can see the byte
                try:  # noqa: SIM105 (contextlib.suppress costs a microsecond here)
                    sent = self.channels[channel][0].send(_BYTES[num])
                except BlockingIOError:
                    pass
            finally:        # (an exception here, from a Unix signal's handler, too)
                if not sent:
                    written[channel] = end
                    shared.latency.counts[channel] -= 1     # the stamp we just put
                    u64[DIRECT_PENDING] = 0
                writing[channel] = 0
            if not sent:
                if i:
                    self._partial(num, channels, i)
                return False
            u64[DIRECT_ROUTED + num] = routed + i + 1
            if channel < shared.slots:
                shared.sent[channel] = 1    # a child's own channel: tell it without a read
        u64[DIRECT_RAISED + num] = raised + 1
        u64[DIRECT_PENDING] = 0
        return True

    def _partial(self, num: int, channels: tuple[int, ...], done: int) -> None:
        """A broadcast's write failed after others were made.  Cannot happen while each
        channel holds fewer than DEPTH bytes (the kernel takes ~280 one-byte writes);
        if it does, the raiser is told rather than the signal raised twice."""
        self._u64[DIRECT_RAISED + num] += 1
        raise OSError(errno.EAGAIN, f"signal {num}: written to {done} of its "
                                    f"{len(channels)} processes only: the kernel refused "
                                    "the next write")

    def _unread(self, channel: int) -> int:
        """Signals in the channel not started yet: for a child's own channel, from its
        record; for a group's, from its members' takes (a member between a read and its
        mark counts as not started: high by one, never low) and the reads of dead
        members the master put back (windows.py)."""
        rec = self._records.get(channel)
        written = self.shared.written[channel]
        if rec is not None:
            return written - rec.u64[OWN_STARTED]
        words, number = self._groups[channel]
        return written - sum(words) // 2 - self.shared.settled[number]

    @staticmethod
    def _words(shared: Shared, topology: Topology, number: int) -> tuple[memoryview, int]:
        """Group `number`'s members' words in shared.taken, and its number."""
        members = topology.members(topology.groups()[number]) or [0]
        row = number * shared.slots
        return shared.taken[row + min(members):row + max(members) + 1], number

    def _resolve(self, num: int) -> tuple[int, tuple[int, ...]]:
        """What write() needs of `num`'s entry (see _routes), as the router decides it."""
        gen = self._generations[num]        # before get(): a change after it shows
        entry = self.table.get(num)
        channels: tuple[int, ...] = ()
        if entry is not None:
            kind, topo = entry.target.kind, self.topology
            if entry.kind is HandlerKind.LOCAL and entry.owner != MASTER_SLOT:
                channels = (entry.owner,)
            elif kind is Kind.WORKER_N:
                channels = (entry.target.index,)
            elif kind is Kind.MULE_N:
                channels = (topo.workers + entry.target.index,)
            elif kind in (Kind.WORKERS, Kind.ACTIVE_WORKERS):
                channels = tuple(topo.worker_slots())
            elif kind is Kind.MULES:
                channels = tuple(topo.mule_slots())
            elif entry.target in self._group_of:
                channels = (self._group_of[entry.target],)
        if any(c not in self.channels for c in channels):
            channels = ()
        self._routes[num] = route = (gen, channels)
        return route
