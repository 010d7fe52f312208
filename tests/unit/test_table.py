"""The shared signal table (SPEC section 3): entries, generations, numbers, and the lock.

Cross-process behaviour is checked with real forks over the real memfd.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal as unix

import pytest

from switchboard.shared import REF_MAX, SIGNALS, Shared
from switchboard.table import HandlerKind, SignalTable, check_signum, describe
from switchboard.targets import Kind, Target

from .conftest import close_shared, fork_call, start_child

REF = HandlerKind.REFERENCE
LOCAL = HandlerKind.LOCAL
WORKER = Target(Kind.WORKER)
WORKERS = Target(Kind.WORKERS)


# -- check_signum ----------------------------------------------------------------------------

@pytest.mark.parametrize("num", [0, 1, 30, 255])
def test_check_signum_accepts_0_to_255(num):
    assert check_signum(num) == num


@pytest.mark.parametrize("num", [-1, 256, 1000, -(2**70), 2**70])
def test_check_signum_range_error_names_the_value(num):
    with pytest.raises(ValueError) as err:
        check_signum(num)
    assert str(num) in str(err.value)


@pytest.mark.parametrize("num", [True, False, 5.0, "5", None, b"\x05", [5]])
def test_check_signum_type_error_names_the_argument(num):
    # bool is an int in Python, but True is not a signal number.
    with pytest.raises(TypeError) as err:
        check_signum(num)
    assert "signal number" in str(err.value)
    assert type(num).__name__ in str(err.value)


# -- register / get / entries ----------------------------------------------------------------

def test_an_empty_table(table):
    assert table.get(0) is None and table.get(255) is None
    assert table.entries() == []
    assert table.free_number() == 0


def test_register_stores_target_handler_and_owner(table):
    entry = table.register(30, Target(Kind.WORKER_N, 2), REF, "python:pkg.mod:hello", 3)
    assert (entry.num, entry.target, entry.kind, entry.ref, entry.owner) == (
        30, Target(Kind.WORKER_N, 2), REF, "python:pkg.mod:hello", 3)
    assert table.get(30) == entry
    assert table.entries() == [entry]


def test_entries_are_in_number_order(table):
    for num in (200, 5, 255, 0, 17):
        table.register(num, WORKER, REF, f"python:m:f{num}", 0)
    assert [e.num for e in table.entries()] == [0, 5, 17, 200, 255]
    assert [e.ref for e in table.entries()] == [f"python:m:f{n}" for n in (0, 5, 17, 200, 255)]


def test_re_register_replaces_and_bumps_both_generations(table, caplog):
    first = table.register(7, WORKER, REF, "python:a.very.long.module:first_handler", 0)
    gen = table.generation
    with caplog.at_level(logging.INFO, logger="switchboard.table"):
        second = table.register(7, WORKERS, LOCAL, "<lambda>", 2)
    assert table.get(7) == second
    assert (second.target, second.kind, second.ref, second.owner) == (WORKERS, LOCAL,
                                                                       "<lambda>", 2)
    assert second.gen > first.gen
    assert table.entry_generation(7) == second.gen
    assert table.generation > gen
    assert len(table.entries()) == 1
    # SPEC: re-registering a number replaces its entry (logged).
    assert any("7" in r.getMessage() and "replaced" in r.getMessage() for r in caplog.records)


def test_a_shorter_reference_replacing_a_longer_one_reads_back_exactly(table):
    table.register(1, WORKER, REF, "python:x" * 40, 0)
    table.register(1, WORKER, REF, "python:m:f", 0)
    assert table.get(1).ref == "python:m:f"


def test_other_entries_keep_their_generation(table):
    table.register(1, WORKER, REF, "python:m:a", 0)
    table.register(2, WORKER, REF, "python:m:b", 0)
    gen2 = table.entry_generation(2)
    table.register(1, WORKER, REF, "python:m:c", 0)
    assert table.entry_generation(2) == gen2


def test_unregister_removes_and_reports_whether_it_was_there(table):
    table.register(9, WORKER, REF, "python:m:f", 0)
    gen = table.generation
    assert table.unregister(9) is True
    assert table.get(9) is None
    assert table.entries() == []
    assert table.generation > gen
    gen = table.generation
    assert table.unregister(9) is False
    assert table.generation == gen          # nothing changed, nothing to refresh


def test_register_after_unregister_has_a_new_generation(table):
    old = table.register(9, WORKER, REF, "python:m:f", 0)
    table.unregister(9)
    new = table.register(9, WORKER, REF, "python:m:f", 0)
    assert new.gen > old.gen   # caches keyed by (num, gen) must not reuse the old handler


# -- free numbers ----------------------------------------------------------------------------

def test_free_number_is_the_lowest_unregistered(table):
    for num in (0, 1, 3):
        table.register(num, WORKER, REF, "python:m:f", 0)
    assert table.free_number() == 2
    table.register(2, WORKER, REF, "python:m:f", 0)
    assert table.free_number() == 4
    table.unregister(1)
    assert table.free_number() == 1


def test_free_number_when_all_256_are_taken(table):
    for num in range(SIGNALS):
        table.register(num, WORKER, REF, "python:m:f", 0)
    with pytest.raises(ValueError, match="256"):
        table.free_number()
    table.unregister(255)
    assert table.free_number() == 255


# -- reference length ------------------------------------------------------------------------

def test_a_reference_of_exactly_the_limit_round_trips(table):
    ref = "python:m:" + "f" * (REF_MAX - len("python:m:"))
    assert len(ref.encode()) == REF_MAX
    assert table.register(4, WORKER, REF, ref, 0).ref == ref
    assert table.get(4).ref == ref


def test_a_reference_over_the_limit_is_refused_and_the_entry_is_unchanged(table):
    table.register(4, WORKER, REF, "python:m:old", 0)
    gen = table.generation
    with pytest.raises(ValueError, match=str(REF_MAX)):
        table.register(4, WORKERS, REF, "python:m:" + "f" * REF_MAX, 0)
    assert table.get(4).ref == "python:m:old"
    assert table.get(4).target == WORKER
    assert table.generation == gen


def test_the_limit_counts_utf8_bytes_not_characters(table):
    ok = "é" * (REF_MAX // 2)             # 2 bytes each: exactly REF_MAX bytes
    assert table.register(5, WORKER, REF, ok, 0).ref == ok
    with pytest.raises(ValueError):
        table.register(6, WORKER, REF, "é" * (REF_MAX // 2 + 1), 0)
    assert table.get(6) is None


# -- local callables of a dead process -------------------------------------------------------

def test_drop_owned_by_removes_only_that_slots_local_callables(table):
    table.register(1, WORKER, LOCAL, "<lambda>", 2)
    table.register(2, WORKER, REF, "python:m:f", 2)     # a reference survives its owner
    table.register(3, WORKER, LOCAL, "<lambda>", 1)
    table.register(4, WORKER, LOCAL, "<lambda>", 2)
    gen = table.generation
    assert table.drop_owned_by(2) == [1, 4]
    assert [e.num for e in table.entries()] == [2, 3]
    assert table.generation > gen
    gen = table.generation
    assert table.drop_owned_by(2) == []
    assert table.generation == gen


def test_describe_names_target_handler_and_local_owner(table, topology):
    line = describe(table.register(12, Target(Kind.WORKER_N, 2), REF, "python:m:f", 0),
                    topology)
    assert "12" in line and "worker2" in line and "python:m:f" in line
    local = describe(table.register(13, WORKERS, LOCAL, "<function <lambda>>", 1), topology)
    assert "workers" in local and "<lambda>" in local
    assert "worker 1" in local                 # which process holds the callable
    assert "worker 1" not in line and "master" not in line


# -- across processes ------------------------------------------------------------------------

def test_two_views_of_one_mapping_agree(shared):
    a, b = SignalTable(shared), SignalTable(shared)
    a.register(8, WORKERS, REF, "python:m:f", 0)
    assert b.get(8) == a.get(8)
    assert b.generation == a.generation


def test_a_registration_in_a_forked_child_is_visible_in_the_parent(table):
    before = table.generation

    def child():
        table.register(40, Target(Kind.WORKER_N, 2), LOCAL, "<lambda>", 1)

    assert fork_call(child) == 0
    entry = table.get(40)
    assert entry is not None
    assert (entry.target, entry.kind, entry.owner) == (Target(Kind.WORKER_N, 2), LOCAL, 1)
    assert table.generation > before


def test_a_registration_in_the_parent_after_the_fork_is_visible_in_the_child(table):
    go_r, go_w = os.pipe()

    def child():
        os.close(go_w)
        assert os.read(go_r, 1) == b"g"
        entry = table.get(41)
        assert entry is not None and entry.ref == "python:m:late"
        assert entry.target == WORKERS
        assert table.get(42) is None        # unregistered by the parent, after the fork

    table.register(42, WORKER, REF, "python:m:gone", 0)
    pid = start_child(child)
    os.close(go_r)
    table.register(41, WORKERS, REF, "python:m:late", 0)
    table.unregister(42)
    os.write(go_w, b"g")
    os.close(go_w)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_concurrent_registrations_from_several_children_lose_no_update(table):
    per_child, children = 300, 4

    def child(base):
        for i in range(per_child):
            table.register(base, WORKER, REF, f"python:m:f{i}", 0)
            table.register(base + 1, WORKER, REF, f"python:m:g{i}", 0)

    pids = [start_child(lambda b=b: child(b)) for b in range(0, 2 * children, 2)]
    for i in range(per_child):
        table.register(200, WORKER, REF, f"python:m:h{i}", 0)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    # every writer bumped the table's generation under the lock: none lost
    assert table.generation == per_child * (2 * children + 1)
    assert all(table.entry_generation(n) == per_child for n in range(2 * children))
    assert table.get(0).ref == f"python:m:f{per_child - 1}"


def _lock_is_free(shared: Shared, byte: int = 0) -> bool:
    """Ask without waiting whether another process holds lock byte `byte`."""
    try:
        fcntl.lockf(shared.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
    except OSError as exc:
        assert exc.errno in (errno.EAGAIN, errno.EACCES)
        return False
    fcntl.lockf(shared.fd, fcntl.LOCK_UN, 1, byte)
    return True


@pytest.mark.timeout(20)
def test_a_child_killed_while_holding_the_table_lock_does_not_wedge_the_table(table, shared):
    held_r, held_w = os.pipe()

    def child():
        os.close(held_r)
        shared.acquire()                       # the table lock, as register() takes it
        os.write(held_w, b"h")
        while True:
            unix.pause()                       # hold it until SIGKILL

    pid = start_child(child)
    os.close(held_w)
    try:
        assert os.read(held_r, 1) == b"h"
        assert not _lock_is_free(shared), "the child should hold the lock now"
    finally:
        os.kill(pid, unix.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(held_r)
    assert os.waitstatus_to_exitcode(status) == -unix.SIGKILL
    assert _lock_is_free(shared), "the kernel releases a dead process's lockf lock"
    table.register(3, WORKER, REF, "python:m:after", 0)
    assert table.get(3).ref == "python:m:after"


@pytest.mark.timeout(20)
def test_the_table_lock_excludes_other_processes_while_held(table, shared):
    shared.acquire()
    try:
        assert fork_call(lambda: _assert(not _lock_is_free(shared))) == 0
    finally:
        shared.release()
    assert fork_call(lambda: _assert(_lock_is_free(shared))) == 0


def _assert(condition: bool) -> None:
    assert condition


def test_each_shared_mapping_is_its_own_table(topology):
    one, two = Shared(topology.slots), Shared(topology.slots)
    try:
        SignalTable(one).register(1, WORKER, REF, "python:m:f", 0)
        assert SignalTable(two).get(1) is None
    finally:
        close_shared(one)
        close_shared(two)


def test_process_records_start_with_no_signal(shared, topology):
    assert len(shared.procs) == topology.slots
    assert all(rec.signum == -1 and rec.last_received == -1 for rec in shared.procs)
