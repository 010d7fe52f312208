"""A child that dies between reading a signal and marking it started does not lose it.

From its own channel, the signal is still in its ring and the master takes it back;
from a group's shared channel, the read landed in shared memory and the channel's count
tells the master it happened (windows.py), so the signal goes back to the group.  Each
child is a real fork reading real socketpairs; it exits where a kill would stop it.
"""

from __future__ import annotations

import os

import pytest

from switchboard.direct import DirectWriter
from switchboard.procs.child import ANY, Child
from switchboard.router import Outbox, Router
from switchboard.shared import Shared
from switchboard.table import SignalTable
from switchboard.targets import Kind, Role, Target, Topology
from switchboard.windows import ReadWindows

from .conftest import fork_call

WORKERS = Target(Kind.WORKER)
SLOT = 1      # worker 1


@pytest.fixture
def router(make_router) -> Router:
    return make_router(limit=64)


@pytest.fixture
def own_box(router: Router, shared: Shared) -> Outbox:
    """Worker 1's outbox as the master builds it: it knows the child's record."""
    box = router.boxes[SLOT]
    box.flags, box.index, box.sent_flags = shared.pressure, SLOT, shared.sent
    box.record = shared.procs[SLOT]
    return box


@pytest.fixture
def windows(router: Router, shared: Shared, topology: Topology) -> ReadWindows:
    flag_of = {g: topology.slots + i for i, g in enumerate(topology.groups())}
    return ReadWindows(shared, topology, router, flag_of)


def worker_word(windows: ReadWindows, topology: Topology, wid: int) -> int:
    """Worker `wid`'s word in shared.taken for the `worker` group."""
    return (windows.flag_of[WORKERS] - topology.slots) * topology.slots + wid


def queued_then_worker(router, shared, table, topology, windows, signals: list[int], *,
                       start: int) -> Outbox:
    """Queue `signals` in the `worker` channel, let worker 1 take one (starting it if
    `start`) and exit; the group's outbox."""
    group = router.groups[WORKERS]
    group.buf += bytes(signals)
    group.flush()
    run_worker(router, shared, table, topology, windows, take=1, start=start)
    return group


def child_end(router: Router, box: Outbox):
    return next(b for a, b in router.test_boxes.pairs if a is box.sock)  # type: ignore[attr-defined]


def run_worker(router: Router, shared: Shared, table: SignalTable, topology: Topology,
               windows: ReadWindows, *, take: int, start: int) -> None:
    """Fork worker 1: it takes `take` signals, starts the first `start` of them (none is
    registered, so none runs) and exits, as if killed, with the next one in hand."""
    group = router.groups[WORKERS]
    flag = windows.flag_of[WORKERS]

    def child() -> None:
        worker = Child(Role.WORKER, 1, SLOT, topology, shared, table, os.getppid())
        worker.setup(child_end(router, router.boxes[SLOT]), [(child_end(router, group), flag)],
                     os.pipe()[1], 1.0)
        for i in range(take):
            num = worker._read_now()
            if num is not None and i < start:
                worker._dispatch(num, ANY)

    assert fork_call(child) == 0


def test_a_signal_taken_from_the_ring_and_not_started_is_taken_back(
        router, own_box, shared, table, topology, windows):
    own_box.buf += bytes([10, 11, 12])
    own_box.flush()
    run_worker(router, shared, table, topology, windows, take=2, start=1)   # 10 ran; 11 in hand
    assert list(own_box.take_back()) == [11, 12]


def test_a_running_signal_is_not_taken_back_though_own_started_lags(
        router, own_box, shared, table, topology, windows):
    """Killed after marking the run, before moving own_started on: the level says where
    its signal came from, so the master does not run it a second time."""
    own_box.buf += bytes([20, 21])
    own_box.flush()
    run_worker(router, shared, table, topology, windows, take=1, start=1)
    rec = shared.procs[SLOT]
    rec.depth, rec.ring_from[0], rec.own_started = 1, rec.own_started, rec.own_started - 1
    assert list(own_box.take_back()) == [21]


def test_a_signal_read_from_a_group_and_not_started_goes_back_to_the_group(
        router, shared, table, topology, windows):
    group = queued_then_worker(router, shared, table, topology, windows, [7, 8], start=0)

    windows.member_died(SLOT)

    assert list(group.buf) == [7] and not windows.open
    assert group.unread() == 1                  # 8 is still in the channel


def test_nothing_goes_back_when_the_member_died_before_its_read(
        router, shared, table, topology, windows):
    group = queued_then_worker(router, shared, table, topology, windows, [], start=0)
    mine = worker_word(windows, topology, SLOT)
    shared.taken[mine] += 1     # as if killed after opening the window, before reading

    windows.member_died(SLOT)

    assert not group.buf and not windows.open
    assert shared.taken[mine] % 2 == 0      # its replacement starts outside the window


def test_a_marked_signal_is_left_to_the_running_handler_count(
        router, shared, table, topology, windows):
    group = queued_then_worker(router, shared, table, topology, windows, [9], start=1)
    mine = worker_word(windows, topology, SLOT)
    rec = shared.procs[SLOT]
    # Killed after marking (depth moved) and before closing the window:
    shared.taken[mine] -= 1
    rec.depth, rec.read_depth = 1, 0

    windows.member_died(SLOT)

    assert not group.buf and not windows.open
    assert shared.taken[mine] == 2          # one take, completed


def test_the_master_waits_while_a_live_member_is_between_a_read_and_its_mark(
        router, shared, table, topology, windows):
    group = queued_then_worker(router, shared, table, topology, windows, [5, 6], start=0)
    other = worker_word(windows, topology, 2)
    shared.taken[other] += 1          # worker 2 is in its window: the count cannot tell

    windows.member_died(SLOT)
    assert not group.buf and len(windows.open) == 1

    shared.taken[other] -= 1          # worker 2's read found nothing: its window closed
    windows.settle()
    assert list(group.buf) == [5] and not windows.open


def test_raisers_count_a_groups_unread_signals_as_the_kernel_does(
        router, shared, table, topology, windows):
    """A raiser bounds a group's channel from its members' takes and the reads the
    master put back (direct.py), with no system call: the kernel's count, exactly."""
    group = router.groups[WORKERS]
    group.written, group.index = shared.written, windows.flag_of[WORKERS]
    queued_then_worker(router, shared, table, topology, windows, [7, 8, 9], start=0)
    windows.member_died(SLOT)                   # 7 goes back: 8 and 9 in the channel
    group.flush()                               # ... and 7 again, after them
    raiser = DirectWriter(shared, table, topology, 2, {group.index: (group.sock, group.peer)},
                          64)

    assert raiser._unread(group.index) == group.unread() == 3
    assert shared.settled[group.index - topology.slots] == 1
