"""signal_wait() and unregistered signals (SPEC section 6)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(60)

WAITER = """
import time

import uwsgi

import sbtest


def wait_any(num):
    sbtest.record("waiting", uwsgi.worker_id())
    got = uwsgi.signal_wait(timeout=30)
    sbtest.record("got", got, uwsgi.signal_received(), uwsgi.worker_id())


def wait_77(num):
    sbtest.record("waiting", uwsgi.worker_id())
    got = uwsgi.signal_wait(77, timeout=30)
    sbtest.record("got", got, uwsgi.signal_received(), uwsgi.worker_id())


def wait_short(num):
    start = time.monotonic()
    got = uwsgi.signal_wait(timeout=0.5)
    sbtest.record("timeout", got, time.monotonic() - start)
"""

SIGNALS = [
    {"num": 60, "target": "worker1", "handler": "python:waiter:wait_any"},
    {"num": 61, "target": "workers", "handler": "python:sbtest:mark"},
    {"num": 62, "target": "worker1", "handler": "python:waiter:wait_77"},
    {"num": 63, "target": "worker1", "handler": "python:waiter:wait_short"},
    {"num": 64, "target": "workers", "handler": "python:waiter:wait_any"},
    {"num": 79, "target": "worker1", "handler": "python:sbtest:mark"},
]


@pytest.fixture
def waiters(make_instance):
    return make_instance({"workers": 2}, SIGNALS, modules={"waiter": WAITER})


def _got(inst, count=1):
    lines = inst.wait_results(count, where=lambda r: r[0] == "got")
    return [r[1:] for r in lines if r[0] == "got"]


def _start_waiting(inst, wait_for, num, worker=1):
    inst.signal(num)
    inst.wait_results(1, where=lambda r: r[:2] == ["waiting", str(worker)])
    wait_for(lambda: inst.worker(worker)["waiting"], 10,
             message=lambda: f"worker {worker} never shown as waiting: {inst.stats()['workers']}")


def test_a_waiting_worker_receives_an_unregistered_signal(waiters, wait_for):
    _start_waiting(waiters, wait_for, 60)
    assert waiters.signal(99).returncode == 0
    assert _got(waiters) == [["99", "99", "1"]]
    stats = waiters.stats()
    assert stats["held"] == 0
    assert stats["signals"]["99"]["raised"] == 1
    assert not waiters.worker(1, stats)["waiting"]


def test_an_idle_worker_never_consumes_an_unregistered_signal(waiters, wait_for):
    assert waiters.signal(99).returncode == 0         # accepted, and held
    wait_for(lambda: waiters.stats()["held"] == 1, 10)
    # Both workers run a signal raised after it: they are reading their queues,
    # and still nobody took 99.
    waiters.signal(61)
    waiters.wait_results(2, where=lambda r: r[0] == "61")
    stats = waiters.stats()
    assert stats["held"] == 1
    assert [w["signals"] for w in stats["workers"]] == [1, 1]
    assert not [r for r in waiters.results() if r[0] == "got"]
    # The first waiter gets it at once.
    waiters.signal(60)
    assert _got(waiters) == [["99", "99", "1"]]
    assert waiters.stats()["held"] == 0


def test_signal_wait_for_a_number_returns_only_that_number(waiters, wait_for):
    _start_waiting(waiters, wait_for, 62)
    waiters.signal(78)               # unregistered: not what worker 1 waits for
    waiters.signal(79)               # registered for worker 1: runs during the wait
    waiters.wait_results(1, where=lambda r: r[0] == "79")
    stats = waiters.stats()
    assert stats["held"] == 1        # 78 is still held for another waiter
    assert waiters.worker(1, stats)["waiting"]
    assert not [r for r in waiters.results() if r[0] == "got"]
    waiters.signal(77)
    assert _got(waiters) == [["77", "77", "1"]]
    kinds = [r[0] for r in waiters.results()]
    assert kinds.index("79") < kinds.index("got")
    assert waiters.stats()["held"] == 1


def test_a_registered_signal_runs_its_handler_first_then_ends_the_wait(waiters, wait_for):
    _start_waiting(waiters, wait_for, 60)
    waiters.signal(79)
    assert _got(waiters) == [["79", "79", "1"]]
    kinds = [r[0] for r in waiters.results()]
    assert kinds == ["waiting", "79", "got"]


def test_signal_wait_times_out_with_none(waiters):
    waiters.signal(63)
    [line] = [r for r in waiters.wait_results(1, where=lambda r: r[0] == "timeout")]
    assert line[1] == "None"
    assert 0.45 <= float(line[2]) < 10


def test_one_unregistered_signal_goes_to_exactly_one_waiter(waiters, wait_for):
    waiters.signal(64)               # both workers wait
    waiters.wait_results(2, where=lambda r: r[0] == "waiting")
    wait_for(lambda: all(w["waiting"] for w in waiters.stats()["workers"]), 10)
    waiters.signal(99)
    first = _got(waiters)
    assert len(first) == 1 and first[0][:2] == ["99", "99"]
    # The other worker is still waiting; the next unregistered signal is its.
    other = "2" if first[0][2] == "1" else "1"
    stats = waiters.stats()
    assert [w["waiting"] for w in stats["workers"]].count(True) == 1
    waiters.signal(98)
    assert _got(waiters, 2)[1] == ["98", "98", other]
    assert waiters.stats()["held"] == 0


def test_the_held_queue_drops_its_oldest_beyond_signal_queue(make_instance, wait_for):
    inst = make_instance({"workers": 1, "signal-queue": 4}, SIGNALS[:1],
                         modules={"waiter": WAITER})
    for num in range(100, 106):
        assert inst.signal(num).returncode == 0
    stats = wait_for(lambda: (s := inst.stats())["held"] == 4 and s, 10,
                     message=lambda: str(inst.stats()))
    sig = stats["signals"]
    assert sig["100"]["dropped"] == {"unregistered": 1}
    assert sig["101"]["dropped"] == {"unregistered": 1}
    assert all(sig[str(n)]["dropped"] == {} for n in range(102, 106))
    wait_for(lambda: "dropped" in inst.log and "unregistered" in inst.log, 10,
             message=lambda: inst.log)
    inst.signal(60)
    assert _got(inst) == [["102", "102", "1"]]
    assert inst.stats()["held"] == 3
