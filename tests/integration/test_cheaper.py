"""Cheaper mode (SPEC sections 2, 4, 10, 12): K workers when idle, more while signals wait.

`active-workers` reaches the running workers only; `workers` reaches every worker, a
cheaped one when it comes back, with at most one pending copy per signal number (the
others counted as `coalesced`); a `workerN` signal brings its cheaped worker back;
workers are spawned while any-worker signals wait longer than `cheaper-wait` and
cheaped after `cheaper-idle` seconds idle, never below `cheaper`.
"""

from __future__ import annotations

import os
import re
import signal as unix
import time
from collections import Counter

import pytest

pytestmark = pytest.mark.timeout(60)

MARK = "python:sbtest:mark"        # records "<num> <worker_id> <pid>"

HOLD = """
import os
import time

import uwsgi

import sbtest


def hold(num):
    sbtest.record("busy", uwsgi.worker_id(), os.getpid(), "%.3f" % time.monotonic())
    sbtest.wait_file("release")
    sbtest.record("free", uwsgi.worker_id(), os.getpid(), "%.3f" % time.monotonic())
"""










def _statuses(stats):
    return [w["state"] for w in stats["workers"]]


def _ran(inst, num):
    return Counter(r[1] for r in inst.results() if r[0] == str(num))


def _handled(counts):
    return lambda s: all(s["signals"][str(n)]["handled"] >= c for n, c in counts.items())


def test_workers_reach_cheaped_workers_once_and_active_workers_only_running_ones(
        make_instance, wait_for):
    inst = make_instance({"workers": 3, "cheaper": 1, "cheaper-idle": 60},
                         [{"num": 22, "target": "workers", "handler": MARK},
                          {"num": 24, "target": "workers", "handler": MARK},
                          {"num": 23, "target": "active-workers", "handler": MARK},
                          {"num": 17, "target": "worker2", "handler": MARK},
                          {"num": 18, "target": "worker3", "handler": MARK}])
    stats = inst.socket_stats()
    assert [w["id"] for w in stats["workers"]] == [1, 2, 3]
    assert _statuses(stats) == ["idle", "cheap", "cheap"]
    assert stats["workers"][0]["pid"] > 0
    assert [w["pid"] for w in stats["workers"][1:]] == [0, 0]

    inst.raise_signal(23)
    inst.raise_signal(23)
    for _ in range(3):
        inst.raise_signal(22)
    inst.raise_signal(24)
    inst.raise_signal(24)
    stats = inst.stats_when(_handled({23: 2, 22: 3, 24: 2}))
    assert _ran(inst, 23) == {"1": 2} and _ran(inst, 22) == {"1": 3} and _ran(inst, 24) == {"1": 2}
    # `workers` signals wait for the cheaped workers (they do not wake them): one copy
    # per signal number each, the other copies counted as coalesced.
    assert _statuses(stats) == ["idle", "cheap", "cheap"]
    s22, s24 = stats["signals"]["22"], stats["signals"]["24"]
    assert (s22["raised"], s22["routed"], s22["coalesced"]) == (3, 5, 4)
    assert (s24["raised"], s24["routed"], s24["coalesced"]) == (2, 4, 2)
    assert stats["signals"]["23"]["routed"] == 2

    inst.raise_signal(17)                 # for cheaped worker 2 alone: it comes back
    stats = inst.stats_when(_handled({17: 1, 22: 4, 24: 3}))
    assert _statuses(stats)[:2] == ["idle", "idle"] and _statuses(stats)[2] == "cheap"
    pid2 = stats["workers"][1]["pid"]
    assert pid2 > 0
    assert re.search(r"bringing back worker 2", inst.log), inst.log
    assert [r for r in inst.results() if r[1] == "2"] and \
        all(r[2] == str(pid2) for r in inst.results() if r[1] == "2")
    inst.raise_signal(23)                 # active-workers: now workers 1 and 2
    stats = inst.stats_when(_handled({23: 4}))
    assert _ran(inst, 23) == {"1": 3, "2": 1}

    inst.raise_signal(18)                 # and worker 3
    stats = inst.stats_when(_handled({18: 1, 22: 5, 24: 4}))
    assert _statuses(stats) == ["idle", "idle", "idle"]
    inst.raise_signal(23)
    stats = inst.stats_when(_handled({23: 7}))
    assert _ran(inst, 22) == {"1": 3, "2": 1, "3": 1}
    assert _ran(inst, 24) == {"1": 2, "2": 1, "3": 1}
    assert _ran(inst, 23) == {"1": 4, "2": 2, "3": 1}
    assert _ran(inst, 17) == {"2": 1} and _ran(inst, 18) == {"3": 1}
    sig = stats["signals"]
    assert [sig[n]["handled"] for n in ("22", "24", "23")] == [5, 4, 7]
    assert (sig["22"]["routed"], sig["22"]["coalesced"]) == (5, 4)
    assert [w["signals"] for w in stats["workers"]] == [9, 5, 4]
    assert all(w["respawns"] == 0 for w in stats["workers"])
    assert inst.stop() == 0


@pytest.mark.timeout(45)
def test_workers_are_spawned_while_signals_wait_and_cheaped_when_idle(make_instance,
                                                                      wait_for):
    inst = make_instance({"workers": 3, "cheaper": 1, "cheaper-wait": 0.2,
                          "cheaper-idle": 1.0},
                         [{"num": 30, "target": "worker", "handler": "python:app:hold"},
                          {"num": 31, "target": "worker", "handler": MARK}],
                         modules={"app": HOLD})
    assert _statuses(inst.socket_stats()) == ["idle", "cheap", "cheap"]
    inst.raise_signal(30)
    inst.wait_results(1, where=lambda r: r[0] == "busy")
    t0 = time.monotonic()
    inst.raise_signal(30)
    inst.raise_signal(30)
    # Worker 1 is busy: the two waiting signals bring back workers 2 and 3, each only
    # after waiting longer than cheaper-wait.
    lines = inst.wait_results(3, timeout=10, where=lambda r: r[0] == "busy")
    busy = {r[1]: float(r[3]) for r in lines if r[0] == "busy"}
    assert set(busy) == {"1", "2", "3"}, lines
    assert sorted(busy[w] - t0 for w in ("2", "3"))[0] >= 0.15, (busy, t0)
    assert sorted(busy[w] - t0 for w in ("2", "3"))[1] >= 0.35, (busy, t0)
    stats = inst.socket_stats()
    assert _statuses(stats) == ["busy", "busy", "busy"]
    assert re.search(r"bringing back worker 2", inst.log)
    assert re.search(r"bringing back worker 3", inst.log)

    inst.touch("release")
    lines = inst.wait_results(3, where=lambda r: r[0] == "free")
    freed = max(float(r[3]) for r in lines if r[0] == "free")
    # Not before cheaper-idle seconds idle ...
    wait_for(lambda: "cheap" in _statuses(inst.socket_stats()), 10, interval=0.02,
             message=lambda: inst.log)
    assert time.monotonic() - freed >= 0.95, "a worker was cheaped before cheaper-idle"
    # ... then back down to cheaper = 1 running worker.
    stats = inst.stats_when(lambda s: Counter(_statuses(s)) ==
                        {"idle": 1, "cheap": 2}, timeout=15)
    cheap = [w for w in stats["workers"] if w["state"] == "cheap"]
    assert all(w["pid"] == 0 for w in cheap)
    assert len(re.findall(r"cheaped worker \d", inst.log)) == 2, inst.log
    # ... and never below it, however long it stays idle (two more cheaper-idle periods).
    deadline = time.monotonic() + 2.2
    while time.monotonic() < deadline:
        assert Counter(_statuses(inst.socket_stats())) == {"idle": 1, "cheap": 2}
        time.sleep(0.1)
    (running,) = [w for w in inst.socket_stats()["workers"] if w["state"] == "idle"]
    inst.raise_signal(31)
    inst.wait_results(1, where=lambda r: r[0] == "31")
    assert [r for r in inst.results() if r[0] == "31"] == [
        ["31", str(running["id"]), str(running["pid"])]]
    assert len(re.findall(r"cheaped worker \d", inst.log)) == 2, inst.log
    assert inst.stop() == 0


@pytest.mark.parametrize("workers,cheaper", [(2, 2), (2, 3)])
def test_cheaper_must_be_below_workers(cli, tmp_path, workers, cheaper):
    path = tmp_path / "bad.toml"
    path.write_text(f"[switchboard]\nworkers = {workers}\ncheaper = {cheaper}\n")
    for command in ("check", "run"):
        res = cli(command, str(path))
        assert res.returncode == 2, (command, res.returncode, res.stderr)
        assert "Traceback" not in res.stderr
        for part in (str(path), "[switchboard]", "key 'cheaper'", str(cheaper)):
            assert part in res.stderr, (part, res.stderr)
        if command == "run":
            assert "spawned" not in res.stderr


def test_signals_pending_for_cheaped_workers_are_dropped_as_stopped_on_stop(make_instance,
                                                                         wait_for):
    inst = make_instance({"workers": 3, "cheaper": 1, "cheaper-idle": 60},
                         [{"num": 22, "target": "workers", "handler": MARK}])
    inst.raise_signal(22)
    inst.raise_signal(22)
    stats = inst.stats_when(_handled({22: 2}))
    assert (stats["signals"]["22"]["routed"], stats["signals"]["22"]["coalesced"]) == (4, 2)
    assert _statuses(stats) == ["idle", "cheap", "cheap"]
    assert inst.stop() == 0
    assert re.search(r"signal 22: dropped 2 \(stopped", inst.log), inst.log
    assert _ran(inst, 22) == {"1": 2}


# -- a worker the master is cheaping (told to stop, not gone yet) ------------------------
# The window between the master's SIGTERM and the worker's exit is short; stopping the
# worker (SIGSTOP) before the master decides holds it open, so what is routed to the
# worker meanwhile can be checked.

def _sigterm_pending(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & (1 << 14):
                return True
    return False


def _while_worker2_is_being_cheaped(inst, wait_for, raise_meanwhile):
    pid2 = inst.socket_stats()["workers"][1]["pid"]
    assert pid2 > 0
    os.kill(pid2, unix.SIGSTOP)
    try:
        wait_for(lambda: _sigterm_pending(pid2), 10,
                 message=lambda: f"the master never told worker 2 to stop\n{inst.log}")
        raise_meanwhile()
    finally:
        os.kill(pid2, unix.SIGCONT)
    wait_for(lambda: re.search(rf"cheaped worker 2 \(pid {pid2}\)", inst.log), 10,
             message=lambda: inst.log)
    return pid2


@pytest.mark.timeout(45)
def test_a_worker_n_signal_routed_while_its_worker_is_cheaped_brings_it_back(make_instance,
                                                                             wait_for):
    inst = make_instance({"workers": 2, "cheaper": 1, "cheaper-idle": 0.5},
                         [{"num": 17, "target": "worker2", "handler": MARK}])
    inst.raise_signal(17)                 # brings worker 2 back; idle, it is cheaped again
    inst.wait_results(1)
    old = _while_worker2_is_being_cheaped(inst, wait_for, lambda: inst.raise_signal(17))
    # Worker 2 left without starting it: a signal for worker 2 alone must bring it back.
    inst.wait_results(2, timeout=5)
    lines = [r for r in inst.results() if r[0] == "17"]
    assert [r[1] for r in lines] == ["2", "2"] and lines[1][2] != str(old), lines
    assert inst.stop() == 0


@pytest.mark.timeout(45)
def test_a_cheaped_worker_holds_one_copy_of_a_workers_signal_raised_as_it_left(
        make_instance, wait_for):
    inst = make_instance({"workers": 2, "cheaper": 1, "cheaper-idle": 0.5},
                         [{"num": 17, "target": "worker2", "handler": MARK},
                          {"num": 22, "target": "workers", "handler": MARK}])
    inst.raise_signal(17)
    inst.wait_results(1)
    _while_worker2_is_being_cheaped(inst, wait_for, lambda: inst.raise_signal(22))
    inst.raise_signal(22)                 # worker 2 is cheaped now: at most one pending copy
    inst.stats_when(_handled({22: 2}))
    assert _ran(inst, 22) == {"1": 2}
    inst.raise_signal(17)                 # bring worker 2 back: it runs 22 once, then 17
    inst.wait_results(2, where=lambda r: r[0] == "17")
    stats = inst.stats_when(_handled({17: 2}))
    assert _ran(inst, 22) == {"1": 2, "2": 1}, inst.results()
    assert stats["signals"]["22"]["handled"] == 3
    assert stats["signals"]["22"]["coalesced"] == 1
    assert inst.stop() == 0
