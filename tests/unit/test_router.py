"""Routing in the master (SPEC sections 3-6): one decision per signal, from the entry as
registered, onto bounded outboxes backed by real socketpairs.

The topology fixture is 3 workers (slots 1-3), 2 mules (4-5, farms heavy=(1, 2) and
light=(2,)) and one spooler (6).
"""

from __future__ import annotations

import logging

import pytest

from switchboard.router import ANY, Router
from switchboard.table import HandlerKind
from switchboard.targets import Kind, Target, parse_target

from .conftest import flush_and_read, fork_call

REF = HandlerKind.REFERENCE
LOCAL = HandlerKind.LOCAL


@pytest.fixture
def router(make_router) -> Router:
    return make_router(limit=4, held_limit=3)


def reg(table, topology, num, target, kind=REF, owner=0, ref="python:m:f"):
    return table.register(num, parse_target(target, topology), kind, ref, owner)


def queued(router: Router) -> dict[str, bytes]:
    """What each outbox holds, by name, leaving out empty ones."""
    out = {name: bytes(box.buf) for name, box in
           [(b.name, b) for b in [*router.groups.values(), *router.boxes.values()]]}
    return {name: data for name, data in out.items() if data}


def read_peer(router: Router, slot: int | None) -> bytes:
    """Flush the outbox and read what reached the child's end of the socketpair."""
    box = router.groups[Target(Kind.WORKER)] if slot is None else router.boxes[slot]
    return flush_and_read(router, box)


# -- where each target goes ------------------------------------------------------------------

@pytest.mark.parametrize("target", ["worker", "worker0", ""])
def test_any_worker_targets_go_to_the_shared_worker_outbox(router, table, topology, target):
    reg(table, topology, 30, target)
    assert router.route(30) is True
    assert queued(router) == {"group worker": bytes([30])}
    assert router.routed[30] == 1


def test_workers_goes_to_every_worker_once(router, table, topology):
    reg(table, topology, 1, "workers")
    assert router.route(1)
    assert queued(router) == {"worker 1": b"\x01", "worker 2": b"\x01", "worker 3": b"\x01"}
    assert router.routed[1] == 3


def test_active_workers_goes_to_every_running_worker(router, table, topology):
    reg(table, topology, 2, "active-workers")
    assert router.route(2)
    assert queued(router) == {"worker 1": b"\x02", "worker 2": b"\x02", "worker 3": b"\x02"}


@pytest.mark.parametrize("n", [1, 2, 3])
def test_worker_n_goes_to_that_worker_only(router, table, topology, n):
    reg(table, topology, 7, f"worker{n}")
    assert router.route(7)
    assert queued(router) == {f"worker {n}": b"\x07"}


@pytest.mark.parametrize("target, expected", [
    ("mule1", {"mule 1": b"\x08"}),
    ("mule2", {"mule 2": b"\x08"}),
    ("mules", {"mule 1": b"\x08", "mule 2": b"\x08"}),
    ("spooler", {"group spooler": b"\x08"}),     # the first available spooler
    ("farm_light", {"group farm_light": b"\x08"}),  # the first available mule of the farm
])
def test_mule_and_spooler_targets(router, table, topology, target, expected):
    reg(table, topology, 8, target)
    assert router.route(8)
    assert queued(router) == expected


@pytest.mark.parametrize("target", ["mule", "farm_heavy"])
def test_a_first_available_mule_target_runs_once_not_on_every_member(router, table, topology,
                                                                     target):
    # SPEC 4: `mule` = the first available mule; `farm_NAME` = the first available mule
    # of that farm.  One raise must run the handler once.
    reg(table, topology, 9, target)
    assert router.route(9)
    assert sum(len(data) for data in queued(router).values()) == 1, queued(router)
    assert router.routed[9] == 1


def test_signals_to_one_process_keep_their_order(make_router, table, topology):
    router = make_router(limit=16)
    for num in (3, 1, 2):
        reg(table, topology, num, "worker2")
    for num in (1, 2, 3, 3, 1):
        assert router.route(num)
    assert read_peer(router, 2) == bytes([1, 2, 3, 3, 1])


# -- back-pressure ---------------------------------------------------------------------------

def test_a_full_outbox_refuses_the_signal(router, table, topology):
    reg(table, topology, 5, "worker")
    for _ in range(4):
        assert router.route(5)
    assert router.route(5) is False
    assert queued(router) == {"group worker": bytes([5] * 4)}
    assert router.routed[5] == 4


def test_a_broadcast_is_all_or_nothing(router, table, topology):
    reg(table, topology, 5, "worker2")
    reg(table, topology, 6, "workers")
    for _ in range(4):
        assert router.route(5)                 # worker 2's outbox is now full
    assert router.route(6) is False
    assert queued(router) == {"worker 2": bytes([5] * 4)}   # no partial broadcast
    assert router.routed[6] == 0
    assert read_peer(router, 2) == bytes([5] * 4)           # room again
    assert router.route(6) is True
    assert queued(router) == {"worker 1": b"\x06", "worker 2": b"\x06", "worker 3": b"\x06"}


def test_signals_in_the_channel_not_yet_read_count_toward_signal_queue(make_router, table,
                                                                      topology):
    # SPEC 5: queues are bounded by signal-queue.  A signal written to a child's channel
    # but not read by the child is still queued: flushing makes no room, reading does.
    router = make_router(limit=3)
    reg(table, topology, 5, "worker1")
    for _ in range(3):
        assert router.route(5)
    assert router.route(5) is False
    box = router.boxes[1]
    box.flush()
    assert not box.buf                          # all three are in the kernel now
    assert router.route(5) is False, "written but unread signals must count"
    peer = next(b for a, b in router.test_boxes.pairs if a is box.sock)
    assert peer.recv(1) == b"\x05"              # the child takes one
    assert router.route(5) is True
    assert router.route(5) is False


def test_a_full_outbox_does_not_block_other_targets(router, table, topology):
    reg(table, topology, 5, "worker1")
    reg(table, topology, 6, "worker3")
    for _ in range(4):
        router.route(5)
    assert router.route(5) is False
    assert router.route(6) is True


def test_outbox_flush_keeps_what_the_socket_did_not_take(make_router):
    router = make_router(limit=1 << 21)
    box = router.boxes[1]
    payload = bytes(range(256)) * 4096           # 1 MiB: more than a socket buffer takes
    box.buf += payload
    box.flush()
    received = b""
    peer = next(b for a, b in router.test_boxes.pairs if a is box.sock)
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            break
        received += chunk
    assert 0 < len(received) < len(payload)
    assert received + bytes(box.buf) == payload
    box.flush()
    assert received + read_peer(router, 1) + bytes(box.buf) == payload


# -- local callables -------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["workers", "worker", "worker2"])
def test_a_child_local_callable_goes_to_its_owner_only(router, table, topology, target):
    reg(table, topology, 11, target, LOCAL, owner=2, ref="<lambda>")
    assert router.route(11)
    assert queued(router) == {"worker 2": b"\x0b"}


def test_a_master_local_callable_follows_its_target(router, table, topology):
    # Registered before the fork: every child inherited it.
    reg(table, topology, 12, "workers", LOCAL, owner=0, ref="<lambda>")
    assert router.route(12)
    assert queued(router) == {"worker 1": b"\x0c", "worker 2": b"\x0c", "worker 3": b"\x0c"}


# -- the table as registered, whoever registered it ------------------------------------------

def test_a_change_in_the_table_changes_the_route(router, table, topology):
    reg(table, topology, 4, "workers")
    router.route(4)
    reg(table, topology, 4, "worker3")
    router.route(4)
    assert queued(router) == {"worker 1": b"\x04", "worker 2": b"\x04",
                              "worker 3": b"\x04\x04"}
    table.unregister(4)
    router.route(4)
    assert list(router.held) == [4]


def test_a_registration_made_in_a_child_is_routed_with_its_target(router, table, topology):
    router.route(40)                         # warm the route cache: 40 is unregistered
    assert list(router.held) == [40]

    def child():
        reg(table, topology, 40, "worker3", owner=1, ref="python:m:from_worker_1")

    assert fork_call(child) == 0
    assert router.route(40)
    assert queued(router) == {"worker 3": b"\x28"}


# -- unregistered signals: held for a waiter -------------------------------------------------

def test_an_unregistered_signal_is_held_not_delivered(router):
    assert router.route(50) is True
    assert router.route(51) is True
    assert list(router.held) == [50, 51]
    assert queued(router) == {}
    assert router.dropped == {}


def test_the_held_queue_drops_its_oldest_beyond_the_limit_and_counts_them(router, caplog):
    for num in (60, 61, 62, 63, 64, 60):
        assert router.route(num) is True        # never refuses: it drops by design
    assert list(router.held) == [63, 64, 60]
    dropped = router.dropped["unregistered"]
    assert (dropped[60], dropped[61], dropped[62]) == (1, 1, 1)
    assert sum(dropped) == 3
    with caplog.at_level(logging.WARNING, logger="switchboard.router"):
        router.log_drops()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert all("dropped" in line and "unregistered" in line for line in lines)
    assert any("signal 61" in line for line in lines)
    caplog.clear()
    router.log_drops()                           # each drop is logged once
    assert caplog.records == []


def test_a_rerouted_signal_goes_to_the_front_of_the_held_queue(router):
    router.route(1)
    router.route(2)
    router.route(3, front=True)
    assert list(router.held) == [3, 1, 2]


def test_waiters_take_held_signals_oldest_first_one_each(router):
    for num in (70, 71, 72):
        router.route(num)
    router.wait(1, ANY)
    router.wait(3, ANY)
    router.serve_waiters()
    assert sorted(queued(router).values()) == [b"\x46", b"\x47"]   # 70 and 71, one each
    assert list(router.held) == [72]
    assert router.waiters == {}                                  # a wait takes one signal
    assert router.routed[70] == 1 and router.routed[71] == 1


def test_a_waiter_for_a_number_takes_only_that_number(router):
    for num in (80, 81, 82):
        router.route(num)
    router.wait(2, 82)
    router.wait(3, 99)
    router.serve_waiters()
    assert queued(router) == {"worker 2": bytes([82])}
    assert list(router.held) == [80, 81]
    assert router.waiters == {3: 99}                             # still waiting
    router.route(99)
    router.serve_waiters()
    assert queued(router) == {"worker 2": bytes([82]), "worker 3": bytes([99])}
    assert list(router.held) == [80, 81]


def test_a_waiter_that_stopped_waiting_gets_nothing(router):
    router.route(90)
    router.wait(1, ANY)
    router.wait(1, None)
    router.serve_waiters()
    assert queued(router) == {}
    assert list(router.held) == [90]


def test_a_waiter_whose_outbox_is_full_keeps_waiting(make_router, table, topology):
    router = make_router(limit=1, held_limit=8)
    reg(table, topology, 5, "worker1")
    router.route(5)                             # worker 1's outbox is full
    router.route(91)
    router.wait(1, ANY)
    router.serve_waiters()
    assert list(router.held) == [91]
    assert router.waiters == {1: ANY}
    read_peer(router, 1)
    router.serve_waiters()
    assert queued(router) == {"worker 1": bytes([91])}


def test_registered_signals_are_not_given_to_waiters(router, table, topology):
    reg(table, topology, 5, "worker1")
    router.wait(2, ANY)
    router.route(5)
    router.serve_waiters()
    assert queued(router) == {"worker 1": b"\x05"}
    assert router.waiters == {2: ANY}


def test_drop_counts_per_reason_and_number(router):
    router.drop(3, "stopped")
    router.drop(3, "stopped", count=4)
    router.drop(4, "died")
    assert router.dropped["stopped"][3] == 5
    assert router.dropped["died"][4] == 1
