"""One channel as the master sees it: what it accepted for the channel and has not seen
a child start, wherever that is (its buffer, the socket, a child's ring).

A child's own channel is also written *directly* by raisers (direct.py): a raiser that
holds the channel's lock, finds it open and below `signal-queue`, writes its byte
itself.  So what was written to a channel is counted in shared memory (`written`), the
master writes a private channel under the same lock, and it *closes* the channel to
raisers (a shared flag they read under the lock) whenever their byte would not be the
next one in order: while it holds signals for it, while its worker is cheaped, while it
puts back a dead child's signals, while it recounts after a raiser died mid-write.
"""

from __future__ import annotations

import array
import fcntl
import logging
import socket
import termios
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from switchboard.shared import MAX_NESTED, OWN_RING, ProcRecord

if TYPE_CHECKING:
    from switchboard.shared import Shared

log = logging.getLogger("switchboard.router")

_LOCAL = 512            # channels an outbox without the shared mapping can stand for


class Outbox:
    """Signals accepted for one channel and not yet read by a child.

    They sit in `buf` (the master's memory) or in the channel's kernel buffer;
    `signal-queue` bounds the two together, so the bound is exact whatever the
    kernel's buffer holds.  `in_kernel` is an upper bound, refreshed only when the
    queue looks full (and, for a channel raisers write to, when `buf` was empty), so
    the hot path makes no system call.
    """

    __slots__ = ("name", "sock", "peer", "buf", "limit", "in_kernel", "flags", "index",
                 "sent_flags", "record", "cheap", "wanted", "stamped", "written", "closed",
                 "shared", "direct", "holds", "members")

    def __init__(self, name: str, sock: socket.socket, peer: socket.socket, limit: int,
                 flags: Any = None, index: int = 0, sent_flags: Any = None,
                 record: ProcRecord | None = None, shared: Shared | None = None,
                 members: list[ProcRecord] | None = None) -> None:
        self.name, self.sock, self.peer, self.limit = name, sock, peer, limit
        self.buf = bytearray()
        self.in_kernel = 0
        self.flags, self.index = flags, index    # the shared pressure flag, if any
        self.sent_flags = sent_flags             # a private channel's "sent" flag, if any
        self.record = record     # a private channel's reader, which reads in batches
        self.cheap = False       # its worker is cheaped: hold signals here, unflushed
        self.wanted = False      # ... and something addressed to it alone is waiting
        self.stamped = 0         # stream end (flushed + buf) last given a latency stamp
        self.shared = shared
        self.direct = shared is not None       # raisers write it too (direct.py)
        # Without the shared mapping (tests, benches), counts of its own, by any index.
        self.written = (shared.written if shared is not None
                        else memoryview(bytearray(8 * _LOCAL)).cast("Q"))
        self.closed = shared.closed if shared is not None else bytearray(_LOCAL)
        self.holds: set[str] = set()    # why the channel is closed besides `buf`
        self.members = members or []    # a group's: the records of its readers

    @property
    def flushed(self) -> int:
        """Bytes ever written to the channel (by the master, or by raisers directly)."""
        return self.written[self.index]

    @flushed.setter
    def flushed(self, value: int) -> None:
        self.written[self.index] = value

    # -- raisers' access (direct.py) ----------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the channel's writer lock (a no-op for channels only the master writes)."""
        if not self.direct:
            yield
            return
        assert self.shared is not None
        self.shared.lock_channel(self.index)
        try:
            yield
        finally:
            self.shared.unlock_channel(self.index)

    def reopen(self) -> None:
        """Called before queueing into an empty buffer of a channel raisers write: close
        it to them first, then count what they wrote, with room for the one raiser whose
        write may be under way (full() counts exactly, under the lock)."""
        self.closed[self.index] = 1
        self.in_kernel = self.unread() + 1

    def hold(self, reason: str) -> None:
        """Close the channel to raisers until release(reason); waits out a write under way."""
        with self.locked():
            self.holds.add(reason)
            self.closed[self.index] = 1

    def release(self, reason: str) -> None:
        with self.locked():
            self.holds.discard(reason)
            self._settle_closed()

    def _settle_closed(self) -> None:
        """Open the channel to raisers again if nothing of ours must come first.  Under
        the lock."""
        self.closed[self.index] = 1 if self.buf or self.holds else 0

    def send_queued(self, run: Callable[[int, int, float], None], stamp: float) -> None:
        """Stamp what is queued (latency.py: before a child can read it), write what the
        socket takes, and open the channel to raisers again once nothing is left here;
        under the channel's lock."""
        with self.locked():
            if self.shared is not None and self.shared.writing[self.index]:
                return      # a raiser died writing it: wait for the recount (recount.py)
            end = self.flushed + len(self.buf)
            if end != self.stamped:
                run(self.index, end, stamp)
                self.stamped = end
            if not self.cheap:
                self.flush()
            self._settle_closed()

    def recount(self, consumed: Callable[[], int | None], end: int) -> bool | None:
        """A raiser died writing its byte to this channel at position `end`, so
        `written` may be one off: count it again as what its readers took (`consumed`,
        None while that cannot be told) plus what the kernel still holds.  Whether
        the byte went out; None to try again later."""
        with self.locked():
            taken = consumed()
            if taken is None:
                return None
            count = taken + self._in_socket()
            if count not in (end, end + 1):
                log.error("%s: a raiser died writing its byte at %d, and the channel "
                          "holds %d: counting that", self.name, end, count)
            self.flushed = count
            self.in_kernel = self.unread()
            assert self.shared is not None
            self.shared.writing[self.index] = 0
        return count > end

    def read_by_reader(self, reader_alive: bool) -> int | None:
        """For recount(): what a child's own channel's reader has read, or None while it
        is in the middle of a read.  A reader that died there and a raiser that died
        writing leave nothing exact to count from: logged, and the count is kept (at
        worst one signal too many, where recounting from the reader could lose a
        whole read)."""
        rec = self.record
        assert rec is not None
        before = rec.filling
        read = rec.own_read
        if rec.filling == before and not before % 2:
            return read
        if reader_alive:
            return None
        log.error("%s: a raiser and its reader died together while writing and reading "
                  "it; one signal may run twice", self.name)
        return self.flushed - self._in_socket()

    # -- the master's own writing -------------------------------------------------------

    def full(self) -> bool:
        if len(self.buf) + self.in_kernel < self.limit:
            return False
        with self.locked():             # no raiser writes while we count
            self.in_kernel = self.unread()
        if len(self.buf) + self.in_kernel < self.limit:
            return False
        if self.flags is None:
            return True
        # Ask the next reader to wake us, then look again: a read that happened
        # before the flag was up would otherwise go unnoticed.
        self.flags[self.index] = 1
        self.in_kernel = self.unread()
        return len(self.buf) + self.in_kernel >= self.limit

    def unread(self) -> int:
        """Bytes in the channel that no child has started yet.  A private channel's child
        reads in batches into the ring of its record, so there this is what it has not
        started; a shared channel is read one byte per signal, and the kernel knows."""
        if self.record is not None:
            return self.flushed - self.record.own_started
        return self._in_socket()

    def _in_socket(self) -> int:
        count = array.array("i", [0])
        fcntl.ioctl(self.peer.fileno(), termios.FIONREAD, count)
        return count[0]

    def flush(self) -> None:
        """Write what the socket takes now."""
        try:
            sent = (self._send_split() if self.members and len(self.buf) > 1
                    else self.sock.send(self.buf))
        except BlockingIOError:
            return
        if not sent:
            return
        del self.buf[:sent]
        self.in_kernel += sent
        self.flushed += sent
        if self.sent_flags is not None:
            self.sent_flags[self.index] = 1

    def _send_split(self) -> int:
        """A group's batch: its members wait with EPOLLEXCLUSIVE (child.py), so that a
        lone signal wakes one of them, and one send wakes one: the batch goes in as many
        sends as members wait (up to one per signal), the last ones a byte each."""
        buf = self.buf
        waiting = sum(rec.polling for rec in self.members)
        sent = 0
        for end in range(len(buf) - min(max(waiting, 1), len(buf)) + 1, len(buf) + 1):
            try:
                sent += self.sock.send(buf[sent:end])
            except BlockingIOError:
                break
            if sent < end:
                break
        return sent

    def put_back(self) -> None:
        """The channel's child is gone: what it had not started goes back to the front of
        the buffer, in order, for its replacement (raisers wait behind it)."""
        with self.locked():
            self.buf[:0] = self.take_back()
            self._settle_closed()

    def take_back(self) -> bytes:
        """Take back what no child started (its reader is gone), oldest first: what its
        reader had read into its ring, then what is still in the channel."""
        chunks = []
        while True:
            try:
                data = self.peer.recv(65536)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        taken = b"".join(chunks)
        self.in_kernel = 0
        self.flushed -= len(taken)      # they will be written again
        return self._staged() + taken

    def _staged(self) -> bytes:
        """What the dead reader of a private channel had read and not started."""
        rec = self.record
        if rec is None:
            return b""
        # A running level's signal was started even if own_started does not say so yet
        # (the child dies between marking it and moving own_started on).
        start = max([rec.own_started] + [rec.ring_from[level]
                                         for level in range(min(rec.depth, MAX_NESTED))])
        count = self.flushed - start
        if not 0 <= count <= OWN_RING:
            log.error("%s: its ring says %d signals were read and not started; "
                      "taking back none of them", self.name, count)
            count = 0
        staged = bytes(rec.own_ring[(start + i) % OWN_RING] for i in range(count))
        # the stream goes on from there
        self.flushed = rec.own_started = rec.own_read = start
        rec.filling = 0
        return staged

    def consumed(self) -> int:
        """Bytes children have started from the channel, ever: a tick queued at
        position P has been delivered once this reaches P.  (The kernel is asked before
        `written` is read: a raiser's write in between makes it high by one, never low,
        so a tick is queued again rather than coalesced away.)"""
        if self.record is not None:
            return int(self.record.own_started)
        waiting = self._in_socket()
        return self.flushed - waiting
