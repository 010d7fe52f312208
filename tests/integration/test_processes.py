"""Process management (SPEC sections 2 and 11): boot, titles, stopping, dying masters."""

from __future__ import annotations

import os
import re
import signal as unix
import time

import pytest

pytestmark = pytest.mark.timeout(60)

SLOW = """
import time

import uwsgi

import sbtest


def slow(num):
    sbtest.record("start", num, uwsgi.worker_id())
    sbtest.wait_file("finish")
    sbtest.record("end", num, uwsgi.worker_id())


def forever(num):
    sbtest.record("start", num, uwsgi.worker_id())
    time.sleep(60)
    sbtest.record("end", num, uwsgi.worker_id())
"""

SLOW_SIGNALS = [{"num": 30, "target": "worker", "handler": "python:slow:slow"},
                {"num": 31, "target": "worker", "handler": "python:slow:forever"}]


def _all_gone(procs, pids):
    return not any(procs.pid_alive(pid) for pid in pids)


def test_ready_line_and_process_titles(make_instance, procs):
    inst = make_instance({"workers": 2})
    ready = [line for line in inst.log.splitlines() if re.search(r"\bready:", line)]
    assert len(ready) == 1, inst.log
    assert re.search(r"ready: 2 workers, 0 mules, 0 spoolers", ready[0]), ready
    stats = inst.stats()
    assert stats["pid"] == inst.pid                 # `switchboard run` is the master
    assert procs.cmdline(inst.pid).startswith("switchboard master")
    for w in stats["workers"]:
        assert procs.cmdline(w["pid"]).startswith(f"switchboard worker {w['id']}")
        assert w["status"] == "idle"
    assert set(procs.descendants(inst.pid)) == {w["pid"] for w in stats["workers"]}


@pytest.mark.parametrize("sig", [unix.SIGTERM, unix.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_stop_everything_with_status_0(make_instance, procs, wait_for, sig):
    inst = make_instance({"workers": 3})
    workers = list(inst.worker_pids().values())
    assert len(workers) == 3 and all(procs.pid_alive(p) for p in workers)
    assert inst.stop(sig) == 0
    wait_for(lambda: _all_gone(procs, workers), 5,
             message=lambda: [(p, procs.cmdline(p)) for p in workers if procs.pid_alive(p)])
    # Nothing listens any more.
    res = inst.signal(30, check=False)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("sig", [unix.SIGTERM, unix.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_whole_process_group_is_a_graceful_stop(make_instance, procs,
                                                                wait_for, sig):
    inst = make_instance({"workers": 2}, SLOW_SIGNALS, modules={"slow": SLOW})
    workers = list(inst.worker_pids().values())
    inst.signal(30)
    inst.wait_results(1, where=lambda r: r[0] == "start")
    os.killpg(inst.pid, sig)           # as systemd (SIGTERM) or Ctrl-C (SIGINT) does
    inst.touch("finish")
    assert inst.wait(20) == 0, inst.log
    assert [r[0] for r in inst.results()] == ["start", "end"]
    wait_for(lambda: _all_gone(procs, workers), 5)


def test_graceful_stop_finishes_the_current_handler_and_counts_the_rest(make_instance):
    inst = make_instance({"workers": 1}, SLOW_SIGNALS, modules={"slow": SLOW})
    for _ in range(3):
        inst.signal(30)
    inst.wait_results(1, where=lambda r: r[0] == "start")
    # To the group (as systemd does): the worker has the stop request before the
    # test lets its handler finish, so the order of events is certain.
    os.killpg(inst.pid, unix.SIGTERM)
    inst.touch("finish")
    assert inst.wait(20) == 0, inst.log
    # The running handler finished; the two queued behind it never started, and the
    # log says they were dropped because the instance stopped.
    assert [r[0] for r in inst.results()] == ["start", "end"]
    assert re.search(r"signal 30\b.*dropped 2\b.*stopped", inst.log), inst.log


def test_reload_mercy_bounds_a_graceful_stop(make_instance, procs, wait_for):
    inst = make_instance({"workers": 1, "reload-mercy": 1}, SLOW_SIGNALS,
                         modules={"slow": SLOW})
    worker = inst.worker_pids()[1]
    inst.signal(31)                     # sleeps 60 s
    inst.wait_results(1, where=lambda r: r[0] == "start")
    start = time.monotonic()
    assert inst.stop(timeout=15) == 0, inst.log
    assert time.monotonic() - start < 8
    assert "reload-mercy" in inst.log
    wait_for(lambda: not procs.pid_alive(worker), 5)
    assert [r[0] for r in inst.results()] == ["start"]


def test_children_die_with_a_master_killed_by_sigkill(make_instance, procs, wait_for):
    inst = make_instance({"workers": 3})
    workers = list(inst.worker_pids().values())
    inst.send(unix.SIGKILL)
    assert inst.wait(10) == -unix.SIGKILL
    wait_for(lambda: _all_gone(procs, workers), 5,
             message=lambda: [(p, procs.cmdline(p)) for p in workers if procs.pid_alive(p)])


FAILING_POSTFORK = """
from uwsgidecorators import postfork


@postfork
def explode():
    raise RuntimeError("postfork exploded")
"""


def test_a_failing_postfork_stops_the_master_with_a_clear_message(make_instance, procs,
                                                                   wait_for):
    start = time.monotonic()
    inst = make_instance({"workers": 2, "import": ["bad"]}, modules={"bad": FAILING_POSTFORK},
                         wait_ready=False)
    code = inst.wait(15)
    assert time.monotonic() - start < 10
    assert code != 0
    log = inst.log
    assert "RuntimeError: postfork exploded" in log
    assert "postfork" in log.replace("RuntimeError: postfork exploded", "")
    assert "ready:" not in log
    assert len(re.findall(r"spawned worker", log)) <= 2, log   # no respawn storm
    assert not procs.descendants(inst.pid)


def test_signals_are_refused_while_stopping(make_instance, wait_for):
    inst = make_instance({"workers": 1}, SLOW_SIGNALS, modules={"slow": SLOW})
    inst.signal(30)
    inst.wait_results(1, where=lambda r: r[0] == "start")
    inst.send(unix.SIGTERM)
    # The handler is still running (it waits for `finish`), so the master is stopping.
    wait_for(lambda: "stopping" in inst.log, 10, message=lambda: inst.log)
    res = inst.signal(30, check=False)
    assert res.returncode != 0
    assert "stopping" in res.stderr and "Traceback" not in res.stderr
    inst.touch("finish")
    assert inst.wait(20) == 0


def test_starts_again_after_the_master_was_killed(make_instance, procs, wait_for):
    first = make_instance({"workers": 1}, [{"num": 30, "handler": "python:sbtest:mark"}])
    workers = list(first.worker_pids().values())
    first.send(unix.SIGKILL)
    first.wait(10)
    wait_for(lambda: _all_gone(procs, workers), 5)
    assert first.control_path.exists()                     # left behind by the crash
    again = make_instance.existing(first.config_path)      # same config, same socket
    again.results_path = first.results_path                # its handlers live in first.dir
    again.signal(30)
    again.wait_results(1)
    assert again.stop() == 0


def test_a_second_instance_on_the_same_control_socket_is_refused(make_instance):
    first = make_instance({"workers": 1}, [{"num": 30, "handler": "python:sbtest:mark"}])
    second = make_instance.existing(first.config_path, wait_ready=False)
    code = second.wait(15)
    assert code != 0
    assert str(first.control_path) in second.log and "Traceback" not in second.log
    assert "spawned worker" not in second.log
    first.signal(30)                                        # the first one still works
    first.wait_results(1)
