"""Registering signals: in the master, from a worker, with callables and references
(SPEC sections 2, 3 and 8).  uWSGI loses the target of a worker-side registration
(issues #783, #1000, #1800); Switchboard must route by the entry as registered."""

from __future__ import annotations

from collections import Counter

import pytest

pytestmark = pytest.mark.timeout(60)

APP = """
import os

import uwsgi
from uwsgidecorators import postfork, signal

import sbtest

# Runs once, in the master, before any fork.
sbtest.record("imported", os.getpid(), uwsgi.worker_id(), uwsgi.numproc, uwsgi.masterpid())
STATE = os.getpid()
os.environ["SB_SET_BY_MASTER"] = "master-%d" % os.getpid()
FD = os.open(sbtest.RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT)


def mark(num):
    sbtest.mark(num)


def alt(num):
    sbtest.record("alt", num, uwsgi.worker_id())


def inherited(num):
    os.write(FD, ("inherited %d %d %d %s\\n" % (num, uwsgi.worker_id(), STATE,
                                                 os.environ.get("SB_SET_BY_MASTER"))).encode())
    sbtest.record("ids", uwsgi.worker_id(), uwsgi.masterpid(), uwsgi.numproc)


@signal(31, target="workers")
def refresh(num):
    sbtest.record("refresh", num, uwsgi.worker_id())


# A lambda registered in the master is inherited by every child.
uwsgi.register_signal(32, "workers", lambda num: sbtest.record("master-lambda", num,
                                                               uwsgi.worker_id()))


@postfork
def setup():
    if uwsgi.worker_id() == 1:
        uwsgi.register_signal(40, "worker2", mark)               # module-level function
        uwsgi.register_signal(41, "worker3", "python:app:mark")  # reference string
    if uwsgi.worker_id() == 2:
        uwsgi.register_signal(43, "workers", lambda num: sbtest.record(
            "lambda", num, uwsgi.worker_id(), os.getpid()))
        uwsgi.register_signal(44, "worker", lambda num: sbtest.record(
            "lambda", num, uwsgi.worker_id(), os.getpid()))


def register_in_handler(num):
    uwsgi.register_signal(42, "workers", mark)
    sbtest.record("registered", 42, uwsgi.worker_id())


def register_foreign_lambda(num):
    try:
        uwsgi.register_signal(46, "worker2", lambda n: None)
    except ValueError as exc:
        sbtest.record("ValueError", uwsgi.signal_registered(46), str(exc))
    else:
        sbtest.record("accepted", uwsgi.signal_registered(46))


def reregister(num):
    uwsgi.register_signal(50, "worker2", alt)
    sbtest.record("reregistered", 50, uwsgi.signal_registered(50))


def unregister(num):
    removed = uwsgi.unregister_signal(50)
    sbtest.record("unregistered", 50, removed, uwsgi.signal_registered(50))
"""

SIGNALS = [
    {"num": 45, "target": "worker1", "handler": "python:app:register_in_handler"},
    {"num": 47, "target": "worker1", "handler": "python:app:register_foreign_lambda"},
    {"num": 50, "target": "worker", "handler": "python:app:mark"},
    {"num": 51, "target": "worker1", "handler": "python:app:reregister"},
    {"num": 52, "target": "worker1", "handler": "python:app:unregister"},
    {"num": 53, "target": "workers", "handler": "python:app:inherited"},
]


@pytest.fixture
def app(make_instance):
    return make_instance({"workers": 3}, SIGNALS, modules={"app": APP})


def _handled(inst, wait_for, num, count):
    def done():
        stats = inst.stats()
        return stats if stats["signals"][str(num)]["handled"] >= count else None
    return wait_for(done, 15, message=lambda: f"signals: {inst.stats()['signals']}")


def test_postfork_registration_in_a_worker_keeps_its_target(app, wait_for):
    pids = app.worker_pids()
    for _ in range(3):
        app.signal(40)
        app.signal(41)
    app.wait_results(6, where=lambda r: r[0] in ("40", "41"))
    _handled(app, wait_for, 40, 3)
    _handled(app, wait_for, 41, 3)
    mine = [(r[0], r[1], int(r[2])) for r in app.results() if r[0] in ("40", "41")]
    assert Counter(mine) == {("40", "2", pids[2]): 3, ("41", "3", pids[3]): 3}
    sig = app.stats()["signals"]
    assert (sig["40"]["target"], sig["40"]["handler"]) == ("worker2", "python:app:mark")
    assert (sig["41"]["target"], sig["41"]["handler"]) == ("worker3", "python:app:mark")


def test_registration_inside_a_handler_is_honoured(app, wait_for):
    app.signal(45)
    app.wait_results(1, where=lambda r: r[0] == "registered")
    app.signal(42)
    app.wait_results(3, where=lambda r: r[0] == "42")
    _handled(app, wait_for, 42, 3)
    assert sorted(r[1] for r in app.results() if r[0] == "42") == ["1", "2", "3"]
    assert app.signal_stats(42)["target"] == "workers"


def test_lambda_registered_in_a_worker_runs_only_in_that_worker(app, wait_for):
    pids = app.worker_pids()
    for _ in range(2):
        app.signal(43)        # target "workers", but the lambda exists only in worker 2
    for _ in range(4):
        app.signal(44)        # target "worker" (first available): also only worker 2
    app.wait_results(6, where=lambda r: r[0] == "lambda")
    _handled(app, wait_for, 43, 2)
    _handled(app, wait_for, 44, 4)
    lines = [r for r in app.results() if r[0] == "lambda"]
    assert Counter((r[1], r[2], int(r[3])) for r in lines) == {
        ("43", "2", pids[2]): 2, ("44", "2", pids[2]): 4}
    stats = app.stats()
    assert (stats["signals"]["43"]["handled"], stats["signals"]["44"]["handled"]) == (2, 4)
    assert stats["signals"]["43"]["dropped"] == {}
    assert [w["signals"] for w in stats["workers"]][0::2] == [0, 0]


def test_lambda_for_a_target_that_never_reaches_its_worker_is_a_value_error(app):
    app.signal(47)
    [line] = [r for r in app.wait_results(1, where=lambda r: r[0] in ("ValueError", "accepted"))
              if r[0] in ("ValueError", "accepted")]
    assert line[0] == "ValueError", line
    assert line[1] == "None"                     # nothing was registered
    assert "worker2" in " ".join(line[2:])       # the message names the target
    assert "46" not in app.stats()["signals"]


def test_re_registering_replaces_the_entry(app, wait_for):
    app.signal(50)
    app.wait_results(1, where=lambda r: r[0] == "50")
    app.signal(51)
    app.wait_results(1, where=lambda r: r[0] == "reregistered")
    sig = app.signal_stats(50)
    assert (sig["target"], sig["handler"]) == ("worker2", "python:app:alt")
    for _ in range(3):
        app.signal(50)
    app.wait_results(3, where=lambda r: r[0] == "alt")
    _handled(app, wait_for, 50, 4)
    assert [r for r in app.results() if r[0] == "alt"] == [["alt", "50", "2"]] * 3
    assert len([r for r in app.results() if r[0] == "50"]) == 1
    assert "replaced" in app.log


def test_unregister_removes_the_entry_and_the_signal_is_then_held(app, wait_for):
    app.signal(52)
    [line] = [r for r in app.wait_results(1, where=lambda r: r[0] == "unregistered")
              if r[0] == "unregistered"]
    assert line == ["unregistered", "50", "True", "None"]
    res = app.signal(50)                  # accepted: an unregistered signal is held
    assert res.returncode == 0
    stats = wait_for(lambda: (s := app.stats())["held"] == 1 and s, 10,
                     message=lambda: str(app.stats()))
    sig = stats["signals"]["50"]
    assert sig["handler"] is None and sig["target"] is None
    assert sig["raised"] == 1 and sig["handled"] == 0
    # Prove the workers are alive and have read their queues: 50 stays held.
    app.signal(53)
    app.wait_results(3, where=lambda r: r[0] == "inherited")
    assert app.stats()["held"] == 1
    assert not [r for r in app.results() if r[0] in ("50", "alt")]


def test_children_inherit_what_the_master_imported(app, wait_for):
    app.signal(53)
    app.wait_results(3, where=lambda r: r[0] == "inherited")
    _handled(app, wait_for, 53, 3)
    lines = app.results()
    imported = [r for r in lines if r[0] == "imported"]
    # Imported once, in the master (pid = the master's, worker_id 0, numproc 3).
    assert imported == [["imported", str(app.pid), "0", "3", str(app.pid)]]
    inherited = [r for r in lines if r[0] == "inherited"]
    assert sorted(r[2] for r in inherited) == ["1", "2", "3"]
    for r in inherited:   # module state, environment and the open fd came from the master
        assert r[3:] == [str(app.pid), f"master-{app.pid}"]
    ids = [r for r in lines if r[0] == "ids"]
    assert sorted(ids) == [["ids", str(w), str(app.pid), "3"] for w in (1, 2, 3)]


def test_decorator_and_master_lambda_reach_every_worker(app, wait_for):
    app.signal(31)
    app.signal(32)
    app.wait_results(6, where=lambda r: r[0] in ("refresh", "master-lambda"))
    _handled(app, wait_for, 32, 3)
    lines = app.results()
    assert sorted(r[2] for r in lines if r[0] == "refresh") == ["1", "2", "3"]
    assert sorted(r[2] for r in lines if r[0] == "master-lambda") == ["1", "2", "3"]
    assert app.signal_stats(31)["handler"] == "python:app:refresh"
    assert app.signal_stats(31)["target"] == "workers"
