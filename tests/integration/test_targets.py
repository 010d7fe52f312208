"""Targets (SPEC section 4): which worker runs a signal, and how many times."""

from __future__ import annotations

from collections import Counter

import pytest

pytestmark = pytest.mark.timeout(60)

MARK = "python:sbtest:mark"        # records "<num> <worker_id> <pid>"


def _settle(inst, wait_for, num, handled):
    """Wait until stats count `handled` runs of `num`; the stats then."""
    def done():
        s = inst.stats()
        return s if s["signals"][str(num)]["handled"] >= handled else None
    return wait_for(done, 15, message=lambda: f"stats: {inst.stats()['signals']}")


@pytest.mark.parametrize("target", ["worker", "worker0", ""])
def test_first_available_runs_exactly_once_per_raise(make_instance, wait_for, target):
    inst = make_instance({"workers": 3}, [{"num": 30, "target": target, "handler": MARK}])
    for _ in range(5):
        inst.signal(30)
    inst.wait_results(5)
    stats = _settle(inst, wait_for, 30, 5)
    assert stats["signals"]["30"]["raised"] == 5
    assert stats["signals"]["30"]["handled"] == 5
    assert stats["signals"]["30"]["target"] == "worker"
    assert stats["signal_queue"] == 0
    lines = inst.results()
    assert len(lines) == 5, lines
    assert {line[0] for line in lines} == {"30"}
    assert {line[1] for line in lines} <= {"1", "2", "3"}


def test_a_signal_without_target_goes_to_the_first_available_worker(make_instance, wait_for):
    inst = make_instance({"workers": 2}, [{"num": 12, "handler": MARK}])
    assert inst.signal_stats(12)["target"] == "worker"
    inst.signal(12)
    inst.signal(12)
    inst.wait_results(2)
    assert _settle(inst, wait_for, 12, 2)["signals"]["12"]["handled"] == 2
    assert len(inst.results()) == 2


def test_worker_n_runs_only_on_that_worker(make_instance, wait_for):
    inst = make_instance({"workers": 3}, [{"num": 17, "target": "worker2", "handler": MARK}])
    pids = inst.worker_pids()
    for _ in range(4):
        inst.signal(17)
    inst.wait_results(4)
    stats = _settle(inst, wait_for, 17, 4)
    assert [(r[0], r[1], int(r[2])) for r in inst.results()] == [("17", "2", pids[2])] * 4
    assert [w["signals"] for w in stats["workers"]] == [0, 4, 0]


@pytest.mark.parametrize("target", ["workers", "active-workers"])
def test_every_worker_runs_it_once_per_raise(make_instance, wait_for, target):
    inst = make_instance({"workers": 3}, [{"num": 22, "target": target, "handler": MARK}])
    pids = inst.worker_pids()
    inst.signal(22)
    inst.wait_results(3)
    inst.signal(22)
    inst.wait_results(6)
    stats = _settle(inst, wait_for, 22, 6)
    lines = inst.results()
    assert len(lines) == 6, lines
    assert Counter((r[1], int(r[2])) for r in lines) == {
        (str(w), pid): 2 for w, pid in pids.items()}
    sig = stats["signals"]["22"]
    assert (sig["raised"], sig["routed"], sig["handled"]) == (2, 6, 6)
    assert [w["signals"] for w in stats["workers"]] == [2, 2, 2]


FIRST_AVAILABLE = """
import uwsgi
import sbtest


def hold(num):
    sbtest.record("busy", uwsgi.worker_id())
    sbtest.wait_file("release")
    sbtest.record("free", uwsgi.worker_id())
"""


@pytest.mark.timeout(45)
def test_a_busy_worker_does_not_hold_up_first_available_signals(make_instance, wait_for):
    inst = make_instance(
        {"workers": 2},
        [{"num": 20, "target": "worker1", "handler": "python:app:hold"},
         {"num": 30, "target": "worker", "handler": MARK}],
        modules={"app": FIRST_AVAILABLE})
    inst.signal(20)
    inst.wait_results(1, where=lambda r: r[0] == "busy")
    wait_for(lambda: inst.worker(1)["state"] == "busy", 10)
    for _ in range(3):
        inst.signal(30)
    # Worker 1 stays busy until the test creates `release`: all three run on worker 2.
    lines = inst.wait_results(3, timeout=5, where=lambda r: r[0] == "30")
    assert [r[:2] for r in lines if r[0] == "30"] == [["30", "2"]] * 3
    assert ["free", "1"] not in lines
    stats = inst.stats()
    assert inst.worker(1, stats)["state"] == "busy"
    inst.touch("release")
    inst.wait_results(1, where=lambda r: r[0] == "free")
    stats = _settle(inst, wait_for, 30, 3)
    assert stats["signals"]["30"]["handled"] == 3
    assert stats["signals"]["20"]["handled"] == 1
