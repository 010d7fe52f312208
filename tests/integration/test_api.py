"""The `uwsgi` / `uwsgidecorators` API as handler code sees it (SPEC section 8)."""

from __future__ import annotations

from collections import Counter

import pytest

pytestmark = pytest.mark.timeout(60)

PROBE = """
import os

from uwsgidecorators import *      # as in uWSGI, this brings `uwsgi` too

import sbtest

uwsgi.custom_setting = "set-in-master"       # user code may add attributes
with open(os.path.join(sbtest.DIR, "counter"), "w") as f:
    f.write("0")


def attempt(label, func):
    try:
        func()
    except Exception as exc:
        sbtest.record(label, type(exc).__name__, str(exc).replace("\\n", " "))
    else:
        sbtest.record(label, "ok")


def probe(num):
    attempt("num-range", lambda: uwsgi.register_signal(300, "worker", probe))
    attempt("num-type", lambda: uwsgi.register_signal("7", "worker", probe))
    attempt("target-bad", lambda: uwsgi.register_signal(7, "nope", probe))
    attempt("target-type", lambda: uwsgi.register_signal(7, 3, probe))
    attempt("handler-type", lambda: uwsgi.register_signal(7, "worker", 42))
    attempt("handler-ref", lambda: uwsgi.register_signal(7, "worker", "python:nosuch:f"))
    attempt("raise-range", lambda: uwsgi.signal(256))
    attempt("raise-type", lambda: uwsgi.signal("5"))
    attempt("wait-timeout-type", lambda: uwsgi.signal_wait(timeout="1"))
    attempt("wait-num-range", lambda: uwsgi.signal_wait(999))
    attempt("unregister-range", lambda: uwsgi.unregister_signal(-1))
    attempt("lock-range", lambda: uwsgi.lock(9999))
    sbtest.record("registered-7", uwsgi.signal_registered(7))
    sbtest.record("custom", uwsgi.custom_setting)
    sbtest.record("done")


@signal(33)                         # no target: the first available worker
def decorated(num):
    sbtest.record("decorated", num, uwsgi.worker_id())


def count(num):
    path = os.path.join(sbtest.DIR, "counter")
    for _ in range(300):
        uwsgi.lock()
        try:
            with open(path) as f:
                value = int(f.read() or "0")
            with open(path, "w") as f:
                f.write(str(value + 1))
        finally:
            uwsgi.unlock()
    sbtest.record("counted", uwsgi.worker_id())
"""


@pytest.fixture
def probe(make_instance):
    return make_instance({"workers": 3, "import": ["probe"]},
                         [{"num": 70, "target": "worker1", "handler": "python:probe:probe"},
                          {"num": 71, "target": "workers", "handler": "python:probe:count"}],
                         modules={"probe": PROBE})


def test_bad_arguments_raise_errors_naming_the_argument_or_value(probe):
    probe.signal(70)
    lines = probe.wait_results(1, where=lambda r: r[0] == "done")
    got = {r[0]: (" ".join(r[1:2]), " ".join(r[2:])) for r in lines}
    expected = {
        "num-range": ("ValueError", "300"),
        "num-type": ("TypeError", "signal number"),
        "target-bad": ("ValueError", "nope"),
        "target-type": ("TypeError", "target"),
        "handler-type": ("TypeError", "handler"),
        "handler-ref": ("ValueError", "nosuch"),
        "raise-range": ("ValueError", "256"),
        "raise-type": ("TypeError", "signal number"),
        "wait-timeout-type": ("TypeError", "timeout"),
        "wait-num-range": ("ValueError", "999"),
        "unregister-range": ("ValueError", "-1"),
        "lock-range": ("ValueError", "9999"),
    }
    for label, (kind, text) in expected.items():
        assert got[label][0] == kind, (label, got[label])
        assert text in got[label][1], (label, got[label])
    assert got["registered-7"] == ("None", "")
    assert got["custom"] == ("set-in-master", "")


def test_decorator_without_target_runs_on_one_worker(probe, wait_for):
    for _ in range(4):
        probe.signal(33)
    probe.wait_results(4, where=lambda r: r[0] == "decorated")
    stats = wait_for(lambda: (s := probe.stats())["signals"]["33"]["handled"] == 4 and s, 10)
    assert stats["signals"]["33"]["target"] == "worker"
    assert stats["signals"]["33"]["handler"] == "python:probe:decorated"
    assert len([r for r in probe.results() if r[0] == "decorated"]) == 4


def test_uwsgi_lock_serialises_workers(probe):
    probe.signal(71)
    lines = probe.wait_results(3, timeout=30, where=lambda r: r[0] == "counted")
    assert Counter(r[1] for r in lines if r[0] == "counted") == {"1": 1, "2": 1, "3": 1}
    assert (probe.dir / "counter").read_text() == "900"
