"""The socketpairs between the master and its children, and the records they carry.

Master -> child: one byte per signal number.  Child -> master: two-byte records
(op, arg).  The master keeps both ends of every pair for the life of the runtime,
so bytes queued for a child survive its death and its replacement reads them.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from switchboard.targets import Target, Topology

RAISE = 0        # arg: the signal number raised
READY = 1        # the child finished booting
WAIT_ANY = 2     # the child waits in signal_wait() for any signal
WAIT_NUM = 3     # ... for signal `arg`
WAIT_END = 4     # the child stopped waiting
REROUTE = 5      # arg: a signal the child received but cannot run: route it again
MESSAGE = 6      # followed by a 4-byte big-endian length and that much JSON
TICK = 7         # arg: a file-monitor tick (coalesces, never blocks the master)

RECORD = 2


def record(op: int, arg: int = 0) -> bytes:
    return bytes((op, arg))


def message(payload: bytes) -> bytes:
    """A MESSAGE record: for what does not fit in one byte (adding a timer, ...)."""
    return bytes((MESSAGE, 0)) + len(payload).to_bytes(4, "big") + payload


def pair() -> tuple[socket.socket, socket.socket]:
    """A (master end, child end) pair; the master's end is non-blocking."""
    master_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    master_end.setblocking(False)
    child_end.setblocking(False)
    return master_end, child_end


@dataclass
class Channels:
    """Every pair: one per child slot, one per first-available group (`worker`, `mule`,
    each farm, `spooler`), shared by the group's members."""

    private: dict[int, tuple[socket.socket, socket.socket]]
    groups: dict[Target, tuple[socket.socket, socket.socket]]
    # Children write a byte here when they drain a channel the master found full.
    wake: tuple[int, int]
    # uwsgi.spool() writes a byte here to wake the spoolers (they read it).
    spool_wake: tuple[int, int]

    @classmethod
    def create(cls, topology: Topology) -> Channels:
        return cls({slot: pair() for slot in range(1, topology.slots)},
                   {group: pair() for group in topology.groups()},
                   os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC), os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC))

    def all_sockets(self) -> list[socket.socket]:
        return [s for p in [*self.private.values(), *self.groups.values()] for s in p]

    def keep_for_child(self, slot: int, spooler: bool) -> None:
        """In a forked child: close every end but its own, its groups' read ends, the
        master's ends of every channel and the groups' other ends (the direct path
        writes them, and asks the kernel what a group's holds: direct.py) and the write
        ends of the wake pipes (and, in a spooler, the spool wake's read end)."""
        keep = {self.private[slot][1].fileno()}
        keep |= {master_end.fileno() for master_end, _ in self.private.values()}
        keep |= {end.fileno() for pair in self.groups.values() for end in pair}
        for sock in self.all_sockets():
            if sock.fileno() not in keep:
                sock.close()
        os.close(self.wake[0])
        if not spooler:
            os.close(self.spool_wake[0])
