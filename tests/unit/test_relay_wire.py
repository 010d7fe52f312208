"""What children send the master, fuzzed (issue 15): any bytes a child writes to its
channel cost at most that child.  The master never raises, every well-formed record
before the junk is acted on, the junk poisons only that link (counted once, the child
to be killed), and after the child's exit its replacement's records are read cleanly.

Real Relay, Router and socketpairs; the "child" is the other end of worker 1's pair.
Before the check, an unknown record type was logged and skipped two bytes at a time, so
one stray byte shifted the stream and the rest was read as other records: `ff` then
READY then RAISE 30 raised signal 0
(`test_one_stray_byte_does_not_turn_later_records_into_raises`).
"""

from __future__ import annotations

import json
import os
import selectors
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.channels import MESSAGE, RAISE, READY, REROUTE, TICK, WAIT_END, message, record
from switchboard.latency import Latency
from switchboard.relay import KNOWN, MAX_MESSAGE, Relay

SLOT = 1


class Wire:
    """A relay over a real router, with what it reported."""

    def __init__(self, router) -> None:
        self.router = router
        self.malformed: list[tuple[int, str]] = []
        self.messages: list[bytes] = []
        self.ready: list[int] = []
        topo = router.topology
        self.relay = Relay(router, self.ready.append, self._message,
                           lambda slot, what: self.malformed.append((slot, what)),
                           Latency(topo.slots, topo.slots + len(router.groups), 256))
        self.selector = selectors.DefaultSelector()
        self.pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.relay.start(self.selector, self.pipe[0])
        self.link = self.relay._by_slot[SLOT]
        self.child_end = next(b for a, b in router.test_boxes.pairs if a is self.link.sock)

    def _message(self, slot: int, payload: bytes) -> bool:
        try:
            json.loads(payload)
        except ValueError:
            return False
        self.messages.append(payload)
        return True

    def send(self, data: bytes) -> None:
        """The child writes; the master reads it all, as its loop would."""
        self.child_end.sendall(data)
        while True:
            self.relay._on_link(self.link, selectors.EVENT_READ)
            if not _pending(self.link.sock):
                return

    def close(self) -> None:
        self.selector.close()
        for fd in self.pipe:
            os.close(fd)


def _pending(sock) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False


@pytest.fixture
def wire(make_router):
    w = Wire(make_router(limit=1 << 16, held_limit=1 << 16))
    yield w
    w.close()


def well_formed() -> st.SearchStrategy[bytes]:
    raise_ = st.integers(0, 255).map(lambda n: record(RAISE, n))
    msg = st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(
        lambda d: message(json.dumps(d).encode()))
    other = st.sampled_from([record(READY), record(WAIT_END)])
    return st.one_of(raise_, msg, other)


def expected(data: bytes) -> tuple[int, bool]:
    """(raises acted on, junk seen) when `data` is read from the start of a stream."""
    i, raises = 0, 0
    while i + 2 <= len(data):
        op = data[i]
        if op == MESSAGE:
            if i + 6 > len(data):
                return raises, False
            size = int.from_bytes(data[i + 2:i + 6], "big")
            if size > MAX_MESSAGE:
                return raises, True
            if i + 6 + size > len(data):
                return raises, False
            try:
                json.loads(data[i + 6:i + 6 + size])
            except ValueError:
                return raises, True
            i += 6 + size
            continue
        if op not in KNOWN:
            return raises, True
        raises += op in (RAISE, TICK)       # a tick counts as raised, merged or not
        i += 2
    return raises, False


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(good=st.lists(well_formed(), max_size=8), junk=st.binary(max_size=64),
       after=st.lists(well_formed(), max_size=4))
def test_any_bytes_cost_at_most_the_child_that_sent_them(wire, good, junk, after):
    wire.relay.child_exited(SLOT)           # each example starts on a clean stream
    wire.malformed.clear()
    before = sum(wire.router.raised)
    data = b"".join(good) + junk + b"".join(after)
    wire.send(data)
    raises, is_junk = expected(data)
    assert sum(wire.router.raised) - before == raises
    assert len(wire.malformed) == int(is_junk)
    assert all(slot == SLOT for slot, _ in wire.malformed)
    # The child dies (killed, or by itself); its replacement starts on a clean stream.
    wire.relay.child_exited(SLOT)
    assert not wire.link.poisoned and not wire.link.inbox
    mark = sum(wire.router.raised)
    wire.send(record(RAISE, 7) + record(RAISE, 8))
    assert sum(wire.router.raised) - mark == 2


def test_one_stray_byte_does_not_turn_later_records_into_raises(wire):
    wire.send(b"\xff" + record(READY) + record(RAISE, 30))     # ff 01 | 00 00 | 1e
    assert sum(wire.router.raised) == 0 and not wire.ready
    assert len(wire.malformed) == 1 and "unknown type 255" in wire.malformed[0][1]


def test_a_huge_length_is_refused_at_once_not_awaited(wire):
    wire.send(bytes((MESSAGE, 0)) + (MAX_MESSAGE + 1).to_bytes(4, "big"))
    assert len(wire.malformed) == 1 and f"{MAX_MESSAGE + 1} bytes" in wire.malformed[0][1]
    assert not wire.link.inbox


def test_a_poisoned_link_ignores_the_rest_until_its_child_exits(wire):
    wire.send(b"\xee\x00")
    wire.send(record(RAISE, 5) + record(REROUTE, 6) + record(TICK, 7))
    assert sum(wire.router.raised) == 0 and len(wire.malformed) == 1


def test_a_record_left_half_written_by_a_dying_child_is_cut_off(wire):
    wire.send(record(RAISE, 3) + message(b'{"kind": "x"}')[:5])
    assert sum(wire.router.raised) == 1
    wire.relay.child_exited(SLOT)
    wire.send(record(RAISE, 4))
    assert wire.router.raised[4] == 1 and not wire.malformed
