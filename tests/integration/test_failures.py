"""What happens when a handler fails: exceptions, harakiri, dying workers (SPEC 2, 3, 12)."""

from __future__ import annotations

import os
import re
import signal as unix

import pytest

pytestmark = pytest.mark.timeout(60)

FAILING = """
import os
import time

import uwsgi

import sbtest


def boom(num):
    sbtest.record("boom", num, uwsgi.worker_id(), os.getpid())
    raise RuntimeError("boom from signal %d" % num)


def sleepy(num):
    sbtest.record("sleeping", num, uwsgi.worker_id(), os.getpid())
    time.sleep(30)
    sbtest.record("woke", num)
"""


def _stats_when(inst, wait_for, predicate, timeout=15):
    def check():
        stats = inst.stats()
        return stats if predicate(stats) else None
    return wait_for(check, timeout, interval=0.1,
                    message=lambda: f"stats: {inst.stats()}\nlog:\n{inst.log}")


def test_a_handler_exception_is_logged_counted_and_the_worker_goes_on(make_instance, wait_for):
    inst = make_instance({"workers": 1},
                         [{"num": 95, "handler": "python:failing:boom"},
                          {"num": 96, "handler": "python:sbtest:mark"}],
                         modules={"failing": FAILING})
    pid = inst.worker_pids()[1]
    inst.signal(95)
    inst.signal(96)
    inst.wait_results(1, where=lambda r: r[0] == "96")
    stats = _stats_when(inst, wait_for, lambda s: s["signals"]["96"]["handled"] == 1)
    wait_for(lambda: "RuntimeError: boom from signal 95" in inst.log, 10,
             message=lambda: inst.log)
    log = inst.log
    assert "Traceback (most recent call last)" in log
    assert "failing.py" in log                      # the traceback reaches the handler
    # The log line says which process, which signal and which handler.
    assert re.search(r"worker 1.*\b95\b.*failing:boom|\b95\b.*failing:boom.*worker 1", log), log
    sig = stats["signals"]["95"]
    assert (sig["raised"], sig["failed"], sig["handled"]) == (1, 1, 0)
    worker = inst.worker(1, stats)
    assert worker["failed"] == 1
    assert worker["pid"] == pid and worker["respawns"] == 0
    assert [r[:2] for r in inst.results()] == [["boom", "95"], ["96", "1"]]
    # And again: each failure is counted, the worker keeps serving.
    inst.signal(95)
    inst.signal(96)
    stats = _stats_when(inst, wait_for, lambda s: s["signals"]["96"]["handled"] == 2)
    assert stats["signals"]["95"]["failed"] == 2
    assert inst.worker(1, stats)["pid"] == pid


@pytest.mark.timeout(45)
def test_harakiri_kills_a_stuck_handler_and_the_worker_is_respawned(make_instance, wait_for):
    inst = make_instance({"workers": 1, "harakiri": 1},
                         [{"num": 97, "handler": "python:failing:sleepy"},
                          {"num": 96, "handler": "python:sbtest:mark"}],
                         modules={"failing": FAILING})
    old = inst.worker_pids()[1]
    inst.signal(97)
    inst.wait_results(1, where=lambda r: r[0] == "sleeping")
    stats = _stats_when(inst, wait_for, lambda s: s["workers"][0]["pid"] not in (0, old)
                        and s["workers"][0]["status"] == "idle", timeout=20)
    worker = stats["workers"][0]
    assert worker["harakiri_count"] == 1
    assert worker["respawns"] == 1
    assert "harakiri" in inst.log
    assert re.search(rf"worker 1 \(pid {old}\).*(killed|SIGKILL)", inst.log), inst.log
    # The replacement serves signals; the sleeper never woke.
    inst.signal(96)
    inst.wait_results(1, where=lambda r: r[0] == "96")
    assert [r for r in inst.results() if r[0] == "96"] == [["96", "1", str(worker["pid"])]]
    assert not [r for r in inst.results() if r[0] == "woke"]
    assert len([r for r in inst.results() if r[0] == "sleeping"]) == 1     # not re-run


def test_a_worker_that_dies_is_respawned_with_its_id(make_instance, wait_for, procs):
    inst = make_instance({"workers": 2}, [{"num": 96, "target": "worker2",
                                           "handler": "python:sbtest:mark"}])
    pids = inst.worker_pids()
    os.kill(pids[2], unix.SIGKILL)
    stats = _stats_when(inst, wait_for, lambda s: s["workers"][1]["pid"] not in (0, pids[2]))
    new = stats["workers"][1]["pid"]
    assert stats["workers"][1]["id"] == 2 and stats["workers"][1]["respawns"] == 1
    assert stats["workers"][0]["pid"] == pids[1] and stats["workers"][0]["respawns"] == 0
    assert re.search(rf"worker 2 \(pid {pids[2]}\).*killed by SIGKILL", inst.log), inst.log
    assert procs.cmdline(new).startswith("switchboard worker 2")
    inst.signal(96)
    inst.wait_results(1)
    assert inst.results() == [["96", "2", str(new)]]
