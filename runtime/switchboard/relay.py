"""The master's half of the signal path: children's channels in, outboxes out.

Each pass reads what children raised in large chunks, routes each record (one table
lookup and an append), and writes every outbox with one send per socket.  A raiser whose
signal meets a full queue is paused at that record (its later records wait behind it,
so its order holds) and retried when room appears: after a flush, or when a child that
drained a full channel wakes the master through the pressure pipe.

A child is trusted code, but a handler may write junk to an inherited descriptor: a
record the master cannot parse poisons that link.  The master kills the child, discards
whatever that link sends until the child is reaped, and counts it; nothing else is
affected.  A record a dying child left half-written is cut off at its exit, so its
replacement's records are read from a record boundary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import time
from collections.abc import Callable

from switchboard.channels import (
    MESSAGE,
    RAISE,
    READY,
    RECORD,
    REROUTE,
    TICK,
    WAIT_ANY,
    WAIT_END,
    WAIT_NUM,
    Channels,
)
from switchboard.latency import Latency
from switchboard.router import ANY, Outbox, Router

log = logging.getLogger("switchboard.master")

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
CHUNK = 262144          # bytes read from a child's channel per system call, at most
MAX_MESSAGE = 1 << 20   # a MESSAGE longer than this is junk, not a request
KNOWN = frozenset((RAISE, READY, WAIT_ANY, WAIT_NUM, WAIT_END, REROUTE, TICK))
NOT_YET = 1 << 63       # `processed` while a dead child's records are still being acted on


class Link:
    """The master's end of one child's channel: what it raised, and what waits for it."""

    __slots__ = ("slot", "sock", "inbox", "blocked", "outbox", "mask", "poisoned", "acted")

    def __init__(self, slot: int, outbox: Outbox) -> None:
        self.slot, self.outbox, self.sock = slot, outbox, outbox.sock
        self.inbox = bytearray()
        self.blocked = False
        self.mask = 0
        self.poisoned = False       # it sent junk: ignored until its child is reaped
        # Bytes of its child's records acted on (negative: a dead child's still to do).
        # Published once they are routed and flushed: until the child sees all it sent
        # there, it raises through us, so its signals keep their order (direct.py).
        self.acted = 0


class Relay:
    def __init__(self, router: Router, on_ready: Callable[[int], None],
                 on_message: Callable[[int, bytes], bool],
                 on_malformed: Callable[[int, str], None], latency: Latency) -> None:
        self.router, self._on_ready, self._on_message = router, on_ready, on_message
        self._on_malformed = on_malformed
        self.latency = latency
        self._records = {slot: box.record for slot, box in router.boxes.items()}
        # When what is being routed now was raised, as far as the master can tell: the
        # read that brought it, or the pass that routed a tick or a control request.
        self.stamp = 0.0
        self.links = [Link(slot, box) for slot, box in router.boxes.items()]
        self._by_slot = {link.slot: link for link in self.links}
        self._group_masks: dict[str, int] = {}
        # One buffer for every read: a fresh 256 KiB object per recv() costs an mmap and
        # an munmap (malloc's threshold is 128 KiB), the slowest part of a lone signal.
        self._chunk = memoryview(bytearray(CHUNK))

    def start(self, selector: selectors.BaseSelector, drained_fd: int) -> None:
        """Watch the channels (in the master, after boot)."""
        self.selector, self._drained_fd = selector, drained_fd
        selector.register(drained_fd, READ, self._on_drained)

    def move(self) -> None:
        """One pass: flush, retry paused raisers, serve waiters, flush what that queued."""
        self.stamp = time.monotonic()
        self._flush()
        blocked = [link for link in self.links if link.blocked]
        for link in blocked:
            self._process(link)     # the flush may have made room for them
        router = self.router
        if router.held and router.waiters:
            router.serve_waiters()
        if blocked or router.held:
            self._flush()
        for link in blocked:
            self._publish(link)

    def _on_drained(self, mask: int) -> None:
        """A child read from a channel we found full: the next pass retries raisers."""
        with contextlib.suppress(BlockingIOError):
            os.read(self._drained_fd, 4096)

    def _on_link(self, link: Link, mask: int) -> None:
        if mask & READ and not link.blocked:
            try:
                size = link.sock.recv_into(self._chunk)
            except BlockingIOError:
                return
            if link.poisoned:
                return
            self.stamp = time.monotonic()     # one stamp per read, not per signal
            link.inbox += self._chunk[:size]
            self._process(link)
            self._flush()     # now, not at the end of the pass: this is the latency
            self._publish(link)

    def _publish(self, link: Link) -> None:
        """Tell the link's child how much of what it sent has been acted on."""
        rec = self._records.get(link.slot)
        if rec is not None:
            rec.processed = link.acted if link.acted >= 0 else NOT_YET

    def _process(self, link: Link) -> None:
        """Act on every whole record in the link's inbox, pausing at a full queue."""
        buf, router, slot = link.inbox, self.router, link.slot
        route, raised = router.route, router.raised
        i, end, stalled = 0, len(buf) - 1, False
        while i < end:
            op, arg = buf[i], buf[i + 1]
            if op == RAISE:
                if not route(arg):
                    stalled = True
                    break
                raised[arg] += 1
            elif op == REROUTE:
                if not route(arg, front=True):
                    stalled = True
                    break
            elif op == TICK:
                router.tick((slot, arg), arg)
            elif op == MESSAGE:
                size = int.from_bytes(buf[i + 2:i + 6], "big") if i + 6 <= len(buf) else -1
                if size > MAX_MESSAGE:
                    return self._poison(link, f"a request of {size} bytes "
                                              f"(at most {MAX_MESSAGE})")
                if size < 0 or i + 6 + size > len(buf):
                    break                       # the rest has not arrived yet
                if not self._on_message(slot, bytes(buf[i + 6:i + 6 + size])):
                    return self._poison(link, "a request that is not valid JSON")
                i += 6 + size
                continue
            elif op == WAIT_ANY:
                router.wait(slot, ANY)
            elif op == WAIT_NUM:
                router.wait(slot, arg)
            elif op == WAIT_END:
                router.wait(slot, None)
            elif op == READY:
                self._on_ready(slot)
            else:
                return self._poison(link, f"a record of unknown type {op}")
            i += RECORD
        del buf[:i]
        link.acted += i
        link.blocked = stalled

    def _poison(self, link: Link, what: str) -> None:
        """The link's stream cannot be trusted past this point: drop it, have the child
        killed, and read nothing from it until the child is reaped."""
        dropped = len(link.inbox)
        link.inbox.clear()
        link.blocked, link.poisoned = False, True
        self._on_malformed(link.slot, f"{what}; {dropped} unread bytes discarded")

    def child_exited(self, slot: int) -> None:
        """Take what a dead child wrote, up to its last whole record; its replacement
        starts on a clean stream."""
        link = self._by_slot[slot]
        tail = _drain(link.sock)
        if link.poisoned:
            link.inbox.clear()
            link.poisoned = False
            link.acted = 0
            self._publish(link)
            return
        link.inbox += tail
        whole = _whole_records(link.inbox)
        if whole < len(link.inbox):
            log.warning("%s died in the middle of a record: %d bytes discarded",
                        self.router.topology.describe(slot), len(link.inbox) - whole)
            del link.inbox[whole:]
        if not link.blocked:
            self._process(link)
        if link.poisoned:           # junk it sent just before dying
            link.inbox.clear()
            link.poisoned = False
        link.acted = -len(link.inbox)   # its replacement's records come after these
        self._publish(link)

    def _flush(self) -> None:
        run, stamp = self.latency.run, self.stamp
        for link in self.links:
            box = link.outbox
            if box.buf and not box.cheap:       # a cheaped worker's signals wait here
                box.send_queued(run, stamp)
            if link.mask == READ and not link.blocked and not box.buf:
                continue                        # the usual case: nothing to change
            mask = (0 if link.blocked else READ) | (WRITE if box.buf and not box.cheap else 0)
            if mask != link.mask:
                self._interest(link.sock, link.mask, mask, lambda m, k=link: self._on_link(k, m))
                link.mask = mask
        for box in self.router.groups.values():
            if box.buf:
                box.send_queued(run, stamp)
            want = WRITE if box.buf else 0
            mask = self._group_masks.get(box.name, 0)
            if want != mask:
                self._interest(box.sock, mask, want, _nothing)
                self._group_masks[box.name] = want

    def _interest(self, sock: object, old: int, new: int, callback: object) -> None:
        if old == 0:
            self.selector.register(sock, new, callback)   # type: ignore[arg-type]
        elif new == 0:
            self.selector.unregister(sock)   # type: ignore[arg-type]
        else:
            self.selector.modify(sock, new, callback)   # type: ignore[arg-type]

    def count_stopped(self, channels: Channels) -> None:
        """Count every signal queued and not started as dropped (stopped)."""
        router = self.router
        for link in self.links:
            if link.outbox.direct:
                link.outbox.hold("stopping")    # from now on raisers come through us
        for link in self.links:
            link.inbox += _drain(link.sock)
            for i in range(0, len(link.inbox) - 1, RECORD):
                op, num = link.inbox[i], link.inbox[i + 1]
                if op == RAISE:
                    router.raised[num] += 1
                if op in (RAISE, REROUTE):
                    router.drop(num, "stopped")
        queued = bytearray()
        for box in [*(link.outbox for link in self.links), *self.router.groups.values()]:
            queued += box.buf
            box.buf.clear()
        for _, child_end in [*channels.private.values(), *channels.groups.values()]:
            queued += _drain(child_end)
        queued.extend(router.held)
        router.held.clear()
        for num in queued:
            router.drop(num, "stopped")
        router.log_drops()


def _drain(sock: object) -> bytes:
    chunks = []
    while True:
        try:
            data = sock.recv(CHUNK)  # type: ignore[attr-defined]
        except (BlockingIOError, OSError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def _whole_records(buf: bytearray) -> int:
    """How many leading bytes of `buf` are whole records."""
    i = 0
    while i + RECORD <= len(buf):
        if buf[i] != MESSAGE:
            i += RECORD
            continue
        if i + 6 > len(buf):
            break
        end = i + 6 + int.from_bytes(buf[i + 2:i + 6], "big")
        if end > len(buf):
            break
        i = end
    return i


def _nothing(mask: int) -> None:
    """The shared worker channel needs no callback: every pass flushes it."""
