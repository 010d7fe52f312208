"""The socketpairs between the master and its children, and the records they carry.

Master -> child: one byte per signal number.  Child -> master: two-byte records
(op, arg).  The master keeps both ends of every pair for the life of the runtime,
so bytes queued for a child survive its death and its replacement reads them.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

RAISE = 0        # arg: the signal number raised
READY = 1        # the child finished booting
WAIT_ANY = 2     # the child waits in signal_wait() for any signal
WAIT_NUM = 3     # ... for signal `arg`
WAIT_END = 4     # the child stopped waiting
REROUTE = 5      # arg: a signal the child received but cannot run: route it again

RECORD = 2


def record(op: int, arg: int = 0) -> bytes:
    return bytes((op, arg))


def pair() -> tuple[socket.socket, socket.socket]:
    """A (master end, child end) pair; the master's end is non-blocking."""
    master_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    master_end.setblocking(False)
    child_end.setblocking(False)
    return master_end, child_end


@dataclass
class Channels:
    """Every pair: one per child slot, one shared by the workers for `worker`."""

    private: dict[int, tuple[socket.socket, socket.socket]]
    any_worker: tuple[socket.socket, socket.socket]

    @classmethod
    def create(cls, child_slots: range) -> Channels:
        return cls({slot: pair() for slot in child_slots}, pair())

    def all_sockets(self) -> list[socket.socket]:
        return [s for p in [*self.private.values(), self.any_worker] for s in p]

    def keep_for_child(self, slot: int, groups: list[tuple[socket.socket, socket.socket]]
                       ) -> None:
        """In a forked child: close every end but its own and its groups' read ends."""
        keep = {self.private[slot][1].fileno()} | {g[1].fileno() for g in groups}
        for sock in self.all_sockets():
            if sock.fileno() not in keep:
                sock.close()
