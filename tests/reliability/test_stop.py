"""Stopping (SPEC 2, 14): a graceful stop lets running handlers finish, and nothing
outlives the master, even one killed with SIGKILL."""

from __future__ import annotations

import os
import re
import signal as unix
import textwrap
import time

import pytest

pytestmark = pytest.mark.timeout(60)

MERCY = 3

STOPPER = """
import os
import time

import uwsgi

import sbtest


def who():
    return ("w%d" % uwsgi.worker_id(), "m%d" % uwsgi.mule_id(), os.getpid())


def hold(num):
    sbtest.record("start", num, *who())
    sbtest.wait_file("finish")
    sbtest.record("end", num, *who())


def forever(num):
    sbtest.record("start", num, *who())
    time.sleep(60)
    sbtest.record("end", num, *who())


def job(job):
    sbtest.record("job-start", job[b"name"].decode(), os.getpid())
    sbtest.wait_file("finish")
    sbtest.record("job-end", job[b"name"].decode(), os.getpid())
    return uwsgi.SPOOL_OK


uwsgi.spooler = job
uwsgi.spool({"name": "held"})       # in the master, at boot: the spooler starts on it
"""


def _proc(stats, group, ident):
    return next(p for p in stats[group] if p["id"] == ident)


def test_sigterm_lets_running_handlers_finish_and_the_master_exits_0(make_instance, procs,
                                                                     wait_for):
    inst = make_instance(
        {"workers": 2, "mules": 1, "spooler": "spool", "reload-mercy": MERCY,
         "import": ["stopper"]},
        [{"num": 60, "target": "worker1", "handler": "python:stopper:hold"},
         {"num": 61, "target": "worker2", "handler": "python:stopper:forever"},
         {"num": 62, "target": "mule1", "handler": "python:stopper:hold"}],
        modules={"stopper": STOPPER})
    for num in (60, 60, 60, 61, 62):
        inst.raise_signal(num)
    inst.wait_results(4, where=lambda r: r[0] in ("start", "job-start"))
    stats = inst.stats_when(lambda s: _proc(s, "workers", 1)["signal_queue"] == 2
                            and _proc(s, "spoolers", 1)["state"] == "busy")
    busy = {(g, i): _proc(stats, g, i) for g, i in
            [("workers", 1), ("workers", 2), ("mules", 1), ("spoolers", 1)]}
    assert all(p["state"] == "busy" for p in busy.values()), busy
    children = procs.descendants(inst.pid)
    assert children == {p["pid"] for p in busy.values()}, (children, busy)

    stopped_at = time.monotonic()
    inst.send(unix.SIGTERM)
    wait_for(lambda: "stopping (got SIGTERM)" in inst.log, 10, message=lambda: inst.log)
    # Stopping does not interrupt a handler: all four are still running, and the master
    # still answers `stats`.
    stats = inst.socket_stats()
    assert all(_proc(stats, g, i)["state"] == "busy" for g, i in busy), stats
    assert not [r for r in inst.results() if r[0] in ("end", "job-end")]

    inst.touch("finish")         # three of them can finish now; worker 2 sleeps on
    inst.wait_results(3, where=lambda r: r[0] in ("end", "job-end"))
    stats = inst.stats_when(lambda s: s["signals"]["60"]["handled"] == 1
                            and s["signals"]["62"]["handled"] == 1)
    assert stats["signals"]["61"]["handled"] == 0
    assert inst.wait(MERCY + 10) == 0, inst.log
    took = time.monotonic() - stopped_at
    # Worker 2 holds the stop until reload-mercy runs out; the master then kills it at
    # its next pass (at most 0.5 s later) and exits.
    assert MERCY <= took < MERCY + 2, took

    log = inst.log
    names = {("workers", 1): "worker 1", ("mules", 1): "mule 1", ("spoolers", 1): "spooler"}
    for slot, name in names.items():
        assert re.search(rf"\b{name} \(pid {busy[slot]['pid']}\) exited with status 0", log), \
            (name, log)
    worker2 = busy[("workers", 2)]["pid"]
    assert re.search(rf"worker 2 \(pid {worker2}\) still running after reload-mercy; "
                     "killing it", log), log
    assert re.search(r"signal 61: dropped 1 \(reload-mercy", log), log
    assert re.search(r"signal 60: dropped 2 \(stopped", log), log      # queued, never started
    assert re.search(r"stopped \(exit status 0\)", log), log
    results = inst.results()
    assert sorted(r[:3] for r in results if r[0] == "start") == [
        ["start", "60", "w1"], ["start", "61", "w2"], ["start", "62", "w0"]], results
    assert sorted(r[:3] for r in results if r[0] == "end") == [
        ["end", "60", "w1"], ["end", "62", "w0"]], results
    assert [r[:2] for r in results if r[0] == "job-end"] == [["job-end", "held"]]
    assert not [n for n in os.listdir(inst.dir / "spool") if not n.startswith(".")]
    assert not inst.control_path.exists()
    wait_for(lambda: not any(procs.pid_alive(p) for p in children), 2,
             message=lambda: [(p, procs.cmdline(p)) for p in children if procs.pid_alive(p)])


KILLED = """
import os
import time

import uwsgi

import sbtest


def busy(num):
    sbtest.record("busy", num, os.getpid())
    time.sleep(60)


def loop():
    while True:
        time.sleep(0.01)


def job(job):
    sbtest.record("job-start", os.getpid())
    time.sleep(60)
    return uwsgi.SPOOL_OK


uwsgi.spooler = job
uwsgi.spool({"name": "stuck"})
"""

SPIN_LUA = "function spin() while true do end end\n"


def test_every_child_exits_within_a_second_of_a_master_killed_by_sigkill(make_instance,
                                                                         procs):
    inst = make_instance(start=False, modules={"killed": KILLED})
    (inst.dir / "spin.lua").write_text(SPIN_LUA)
    (inst.dir / "watched").mkdir()
    inst.write_config(text=textwrap.dedent(f"""\
        [switchboard]
        workers = 2
        mules = 2
        spooler = "spool"
        import = ["killed"]
        control = "{inst.control_path}"
        python-path = ["{inst.dir}"]

        [[mule]]
        id = 1
        program = "python:killed:loop"

        [[mule]]
        id = 2
        program = "lua:spin.lua:spin"

        [[signal]]
        num = 70
        target = "worker1"
        handler = "python:killed:busy"

        [[file_monitor]]
        signal = 71
        path = "watched"
        """))
    inst.start()
    inst.raise_signal(70)
    inst.wait_results(2, where=lambda r: r[0] in ("busy", "job-start"))
    # Two workers (one busy in a handler), a Python mule program, a Lua program that
    # never calls the API, a spooler in a job, and the sources helper (file monitor).
    children = procs.descendants(inst.pid)
    titles = sorted(procs.cmdline(p).split(" (")[0].strip() for p in children)
    assert titles == ["switchboard mule 1", "switchboard mule 2", "switchboard sources",
                      "switchboard spooler", "switchboard worker 1", "switchboard worker 2"], \
        titles

    inst.send(unix.SIGKILL)
    killed_at = time.monotonic()
    # PR_SET_PDEATHSIG: the kernel sends each child SIGKILL as the master dies, so they
    # go in milliseconds.  The test polls for up to 3 s so that a slow exit is measured
    # rather than cut short, and asserts 1.5 s: the 1 s of the requirement plus room
    # for a 2-CPU machine busy with the other tests (a child that did not get the
    # kernel's SIGKILL would read EOF from its channel only if it were idle, and the
    # busy ones here never would).
    while time.monotonic() - killed_at < 3.0:
        alive = [p for p in children if procs.pid_alive(p)]
        if not alive:
            break
        time.sleep(0.005)
    took = time.monotonic() - killed_at
    assert not alive, [(p, procs.cmdline(p)) for p in alive]
    assert took < 1.5, f"the children took {took:.2f} s to go"
    assert inst.wait(10) == -unix.SIGKILL
