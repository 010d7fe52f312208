"""How a child reads its channels: its own in batches into a ring in shared memory, its
groups' one byte at a time; and what the master takes back when the child is gone.

Each child runs in a real fork over real socketpairs; it reports what it read through a
pipe, so the test sees the order the child saw.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from switchboard.procs.child import ANY, Child
from switchboard.router import Outbox
from switchboard.shared import OWN_RING, Shared
from switchboard.table import SignalTable
from switchboard.targets import Kind, Role, Target, Topology

from .conftest import fork_call, start_child

SLOT = 1      # worker 1


@pytest.fixture
def channels(topology: Topology) -> Iterator[dict[str, tuple[socket.socket, socket.socket]]]:
    pairs = {"own": socket.socketpair(), "group": socket.socketpair()}
    for pair in pairs.values():
        for end in pair:
            end.setblocking(False)
    yield pairs
    for pair in pairs.values():
        for end in pair:
            end.close()


@pytest.fixture
def own_box(channels, shared: Shared) -> Outbox:
    """Worker 1's outbox as the master builds it: it knows the child's record."""
    return Outbox("worker 1", *channels["own"], 64, shared.pressure, SLOT, shared.sent,
                  shared.procs[SLOT])


def run_child(channels, shared: Shared, table: SignalTable, topology: Topology,
              reads: int) -> list[int]:
    """Fork worker 1, let it take and start `reads` signals (none is registered, so none
    runs) and exit."""
    report_r, report_w = os.pipe()
    group_flag = topology.slots + topology.groups().index(Target(Kind.WORKER))

    def child() -> None:
        os.close(report_r)
        worker = Child(Role.WORKER, 1, SLOT, topology, shared, table, os.getppid())
        worker.setup(channels["own"][1], [(channels["group"][1], group_flag)],
                     os.pipe()[1], 1.0)
        taken = []
        for _ in range(reads):
            num = worker._read_now()
            taken.append(255 if num is None else num)
            if num is not None:
                worker._dispatch(num, ANY)      # marked started (unregistered: not run)
        os.write(report_w, bytes(taken))

    assert fork_call(child) == 0
    os.close(report_w)
    with os.fdopen(report_r, "rb") as report:
        return list(report.read())


def test_own_channel_signals_come_first_and_in_order(channels, own_box, shared, table,
                                                     topology):
    channels["group"][0].send(bytes([7, 8]))
    own_box.buf += bytes([1, 2, 3])
    own_box.flush()
    assert run_child(channels, shared, table, topology, 6) == [1, 2, 3, 7, 8, 255]


def test_what_a_dead_child_read_and_had_not_started_is_taken_back_in_order(
        channels, own_box, shared, table, topology):
    own_box.buf += bytes([10] + [11] * 10)
    own_box.flush()
    assert run_child(channels, shared, table, topology, 1) == [10]    # then it "dies"
    own_box.buf += bytes([12])
    own_box.flush()                                    # this one is still in the channel
    assert own_box.unread() == 11

    taken = own_box.take_back()

    assert list(taken) == [11] * 10 + [12]             # the ring's first, then the channel's
    assert own_box.unread() == 0 and own_box.consumed() == 1
    own_box.buf[:0] = taken                            # what Router.requeue() does
    own_box.flush()
    assert run_child(channels, shared, table, topology, 12) == [11] * 10 + [12, 255]


def test_the_ring_wraps_around(channels, own_box, shared, table, topology):
    """More signals than the ring holds, read by children that each stop part way."""
    sent = list(range(3 * OWN_RING))
    seen: list[int] = []
    own_box.limit = len(sent)
    while len(seen) < len(sent):
        own_box.buf[:0] = own_box.take_back()
        if not own_box.buf and not own_box.unread():
            own_box.buf += bytes(sent[len(seen):][:OWN_RING + 5])
        own_box.flush()
        seen += [n for n in run_child(channels, shared, table, topology, 23) if n != 255]
    assert seen == sent


def test_a_batch_for_a_group_wakes_every_waiting_member(channels, shared, table, topology):
    """Members wait on a group's channel with EPOLLEXCLUSIVE, so one write wakes one of
    them; a batch the master writes must still reach each waiting member."""
    group_flag = topology.slots + topology.groups().index(Target(Kind.WORKER))
    members = [1, 2, 3]
    box = Outbox("group worker", *channels["group"], 64, shared.pressure, group_flag,
                 members=[shared.procs[slot] for slot in members])
    report_r, report_w = os.pipe()

    def member(slot: int) -> None:
        worker = Child(Role.WORKER, slot, slot, topology, shared, table, os.getppid())
        own = socket.socketpair()         # its own channel, empty
        own[1].setblocking(False)
        worker.setup(own[1], [(channels["group"][1], group_flag)],
                     os.pipe()[1], 1.0)
        num = None
        while num is None:          # wait, then take one signal, once
            worker._wait(None)
            num = worker._read_now()
        os.write(report_w, bytes([slot, num]))

    pids = [start_child(lambda slot=slot: member(slot)) for slot in members]
    try:
        deadline = time.monotonic() + 10
        while sum(shared.procs[slot].polling for slot in members) < len(members):
            assert time.monotonic() < deadline, "the members never waited"
            time.sleep(0.01)
        box.buf += bytes([5, 6, 7])
        box.flush()
        got = b""
        poller = select.poll()
        poller.register(report_r, select.POLLIN)
        while len(got) < 2 * len(members) and poller.poll(5000):
            got += os.read(report_r, 64)
        taken = {got[i]: got[i + 1] for i in range(0, len(got), 2)}
        assert sorted(taken) == members, f"woken and read: {taken}"
        assert sorted(taken.values()) == [5, 6, 7]
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
