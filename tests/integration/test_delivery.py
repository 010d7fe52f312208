"""Raising and delivery (SPEC section 5): order, exactly-once, back-pressure, and
signals that outlive the process they were queued for."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

pytestmark = pytest.mark.timeout(90)

MARK = "python:sbtest:mark"


def _handled(inst, wait_for, num, count, timeout=20):
    def done():
        stats = inst.stats()
        return stats if stats["signals"][str(num)]["handled"] >= count else None
    return wait_for(done, timeout, interval=0.2,
                    message=lambda: f"signals: {inst.stats()['signals'].get(str(num))}")


ORDER = """
import uwsgi

import sbtest


def seq(num):
    sbtest.record("seq", num, uwsgi.worker_id())


def raise_all(num):
    for n in range(1, 201):
        uwsgi.signal(n)
    sbtest.record("raised-all")


for n in range(1, 201):
    uwsgi.register_signal(n, "worker2", seq)
"""


def test_signals_from_one_raiser_to_one_worker_keep_their_order(make_instance, wait_for):
    inst = make_instance(
        {"workers": 2, "import": ["order"]},
        [{"num": 250, "target": "worker1", "handler": "python:order:raise_all"}],
        modules={"order": ORDER})
    inst.signal(250)
    lines = inst.wait_results(200, timeout=30, where=lambda r: r[0] == "seq")
    seq = [r for r in lines if r[0] == "seq"]
    assert {r[2] for r in seq} == {"2"}
    assert [int(r[1]) for r in seq] == list(range(1, 201))
    stats = inst.stats()
    assert all(stats["signals"][str(n)]["handled"] == 1 for n in range(1, 201))


BURST = """
import time

import uwsgi

import sbtest


def burst(num):
    start = time.monotonic()
    for _ in range(20000):
        uwsgi.signal(30)
    sbtest.record("raised", 20000, time.monotonic() - start)
"""


def test_a_burst_of_20000_is_handled_exactly_once_each(make_instance, wait_for):
    inst = make_instance(
        {"workers": 2},
        [{"num": 30, "target": "worker", "handler": MARK},
         {"num": 81, "target": "worker1", "handler": "python:burst:burst"}],
        modules={"burst": BURST})
    inst.signal(81)
    inst.wait_results(20000, timeout=60, where=lambda r: r[0] == "30")
    stats = _handled(inst, wait_for, 30, 20000)
    sig = stats["signals"]["30"]
    assert (sig["raised"], sig["routed"], sig["handled"], sig["failed"]) == (
        20000, 20000, 20000, 0)
    assert sig["dropped"] == {}
    lines = inst.results()
    assert Counter(r[0] for r in lines) == {"30": 20000, "raised": 1}
    assert sum(w["signals"] for w in stats["workers"]) == 20001


SIGNALS_BEFORE_READY = """
import uwsgi

for _ in range(3):
    uwsgi.signal(30)
uwsgi.signal(22)
"""


def test_signals_raised_before_the_children_are_up_are_delivered(make_instance, wait_for):
    inst = make_instance(
        {"workers": 2, "import": ["early"]},
        [{"num": 30, "target": "worker", "handler": MARK},
         {"num": 22, "target": "workers", "handler": MARK}],
        modules={"early": SIGNALS_BEFORE_READY})
    inst.wait_results(5)
    stats = _handled(inst, wait_for, 22, 2)
    _handled(inst, wait_for, 30, 3)
    counts = Counter((r[0], r[1]) for r in inst.results())
    assert sum(n for (num, _), n in counts.items() if num == "30") == 3
    assert counts[("22", "1")] == counts[("22", "2")] == 1
    assert stats["signals"]["30"]["raised"] == 3


BACKPRESSURE = """
import time

import uwsgi

import sbtest


def stuck(num):
    sbtest.record("stuck", uwsgi.worker_id())
    sbtest.wait_file("release")


def nothing(num):
    pass


def flood(num):
    accepted = 0
    while accepted < 1_000_000:
        start = time.monotonic()
        try:
            uwsgi.signal(82)
        except OSError as exc:
            sbtest.record("OSError", accepted, time.monotonic() - start,
                          type(exc).__name__)
            return
        accepted += 1
    sbtest.record("no-error", accepted)


def steady(num):
    start = time.monotonic()
    for i in range(3000):
        try:
            uwsgi.signal(82)
        except OSError as exc:
            sbtest.record("OSError", i, time.monotonic() - start)
            return
    sbtest.record("no-error", 3000, time.monotonic() - start)
"""

BACKPRESSURE_SIGNALS = [
    {"num": 80, "target": "worker2", "handler": "python:bp:stuck"},
    {"num": 81, "target": "worker1", "handler": "python:bp:flood"},
    {"num": 82, "target": "worker2", "handler": "python:bp:nothing"},
    {"num": 83, "target": "worker1", "handler": "python:bp:steady"},
]


def test_a_raiser_facing_a_full_queue_gets_oserror_and_nothing_is_dropped(
        make_instance, wait_for):
    inst = make_instance({"workers": 2, "signal-queue": 8, "signal-timeout": 1},
                         BACKPRESSURE_SIGNALS, modules={"bp": BACKPRESSURE})
    inst.signal(80)
    inst.wait_results(1, where=lambda r: r[0] == "stuck")
    inst.signal(81)
    lines = inst.wait_results(1, timeout=30, where=lambda r: r[0] in ("OSError", "no-error"))
    [result] = [r for r in lines if r[0] in ("OSError", "no-error")]
    assert result[0] == "OSError", f"uwsgi.signal() never failed: {result}"
    accepted, waited = int(result[1]), float(result[2])
    assert accepted > 0
    assert waited >= 0.9, "signal() gave up before signal-timeout"
    assert waited < 10
    sig = inst.signal_stats(82)
    assert sig["dropped"] == {} and sig["handled"] == 0
    # Everything signal() accepted runs once worker 2 is free again.
    inst.touch("release")
    stats = _handled(inst, wait_for, 82, accepted, timeout=60)
    sig = stats["signals"]["82"]
    assert (sig["raised"], sig["handled"], sig["dropped"]) == (accepted, accepted, {})


def test_the_cli_cannot_raise_into_a_full_queue_either(make_instance):
    # Once worker 1 got OSError because worker 2's queue is full (worker 2 is stuck),
    # `switchboard signal` for that target waits signal-timeout and fails too.
    inst = make_instance({"workers": 2, "signal-queue": 8, "signal-timeout": 1},
                         BACKPRESSURE_SIGNALS, modules={"bp": BACKPRESSURE})
    inst.signal(80)
    inst.wait_results(1, where=lambda r: r[0] == "stuck")
    inst.signal(81)
    lines = inst.wait_results(1, timeout=30, where=lambda r: r[0] in ("OSError", "no-error"))
    assert [r[0] for r in lines if r[0] in ("OSError", "no-error")] == ["OSError"]
    start = time.monotonic()
    res = inst.signal(82, check=False)
    waited = time.monotonic() - start
    assert res.returncode != 0, (
        "switchboard signal 82 was accepted right after uwsgi.signal(82) failed with "
        f"'queue full', although worker 2 is still stuck; stats: {inst.signal_stats(82)}")
    assert "Traceback" not in res.stderr and "82" in res.stderr
    assert waited >= 0.9


def test_a_small_signal_queue_slows_raisers_without_failing_them(make_instance, wait_for):
    # Worker 2 keeps up with worker 1; the queue of 8 only paces the raiser, so
    # 3000 raises succeed long before signal-timeout matters.
    inst = make_instance({"workers": 2, "signal-queue": 8, "signal-timeout": 2},
                         BACKPRESSURE_SIGNALS, modules={"bp": BACKPRESSURE})
    inst.signal(83)
    lines = inst.wait_results(1, timeout=40, where=lambda r: r[0] in ("OSError", "no-error"))
    [result] = [r for r in lines if r[0] in ("OSError", "no-error")]
    assert result[0] == "no-error", (
        f"uwsgi.signal() failed after {result[1]} raises, {float(result[2]):.2f} s, "
        "although worker 2 was idle and handling them")
    stats = _handled(inst, wait_for, 82, 3000, timeout=20)
    assert stats["signals"]["82"]["handled"] == 3000


DEATH = """
import os

import uwsgi

import sbtest


def die(num):
    sbtest.record("dying", uwsgi.worker_id(), os.getpid())
    sbtest.wait_file("die")
    os._exit(7)
"""


@pytest.mark.parametrize("workers,target", [(2, "worker1"), (1, "worker")])
def test_signals_queued_for_a_worker_that_dies_go_to_its_replacement(
        make_instance, wait_for, workers, target):
    inst = make_instance({"workers": workers},
                         [{"num": 90, "target": target, "handler": "python:death:die"},
                          {"num": 91, "target": target, "handler": MARK}],
                         modules={"death": DEATH})
    old = inst.worker_pids()[1]
    inst.signal(90)
    inst.wait_results(1, where=lambda r: r[0] == "dying")
    for _ in range(3):
        inst.signal(91)
    wait_for(lambda: inst.signal_stats(91)["routed"] == 3, 10)
    assert not [r for r in inst.results() if r[0] == "91"]
    inst.touch("die")                  # worker 1 exits with status 7, three 91s queued
    lines = inst.wait_results(3, timeout=20, where=lambda r: r[0] == "91")
    stats = _handled(inst, wait_for, 91, 3)
    new = inst.worker(1, stats)["pid"]
    assert new not in (0, old)
    assert [r for r in lines if r[0] == "91"] == [["91", "1", str(new)]] * 3
    assert len([r for r in inst.results() if r[0] == "dying"]) == 1        # not re-run
    assert inst.worker(1, stats)["respawns"] == 1
    assert stats["signals"]["91"]["dropped"] == {}
    assert re.search(rf"worker 1\b.*\b{old}\b.*exited with status 7", inst.log), inst.log
    assert "respawn" in inst.log
