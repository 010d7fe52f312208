"""What a new user trips over in the first ten minutes (issue 17), as they see it: the
shell's stderr, the log of a reload, a failed handler's traceback."""

from __future__ import annotations

import re
import signal as unix
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

APP = """
import sbtest


def hello(num):
    sbtest.record("hello", num)


def helper(value):
    raise ValueError("bad value %r" % value)


def broken(num):
    helper(num)
"""

SIGNALS = [{"num": 30, "target": "worker", "handler": "python:app:hello"},
           {"num": 31, "target": "workers", "handler": "python:app:broken"}]


def test_a_signal_nobody_handles_says_so_on_stderr(make_instance):
    inst = make_instance({"workers": 2}, SIGNALS, modules={"app": APP})
    res = inst.signal(29)                   # a typo for 30: accepted, held, and said
    assert res.returncode == 0
    assert re.fullmatch(r"switchboard: signal 29: no handler is registered for it; it is "
                        r"held for signal_wait\(\) \(0 processes waiting now\)\n", res.stderr)
    assert inst.signal(30).stderr == ""     # a registered one stays quiet


def test_the_held_line_counts_the_processes_waiting_now(make_instance, wait_for):
    waiter = APP + """

import uwsgi


def wait_twice(num):
    sbtest.record("waiting")
    sbtest.record("got", uwsgi.signal_wait())
"""
    inst = make_instance({"workers": 2}, [*SIGNALS, {"num": 40, "target": "worker1",
                                                     "handler": "python:app:wait_twice"}],
                         modules={"app": waiter})
    inst.signal(40)
    wait_for(lambda: inst.stats()["workers"][0]["state"] == "waiting", 10)
    res = inst.signal(29)
    assert "(1 process waiting now)" in res.stderr, res.stderr
    assert ["got", "29"] in inst.wait_results(2)


def test_a_reload_that_changes_nothing_logs_only_its_start_and_end(make_instance, wait_for):
    inst = make_instance.existing(SAMPLES / "quickstart" / "switchboard.toml")
    inst.send(unix.SIGHUP)
    wait_for(lambda: "reload: done" in inst.log, 20)
    reload = inst.log[inst.log.index("reload: checking"):]
    noisy = [line for line in reload.splitlines()
             if " WARNING " in line or " ERROR " in line or "replace" in line and "signal" in line]
    assert noisy == [], reload


def test_a_real_replacement_still_warns(make_instance):
    inst = make_instance({"workers": 2}, SIGNALS, modules={"app": APP})
    inst.write_module("app", APP + "\n\ndef hello2(num):\n    pass\n")
    text = inst.config_path.read_text()
    inst.config_path.write_text(text.replace('"python:app:hello"', '"python:app:hello2"'))
    inst.send(unix.SIGHUP)
    inst.stats_when(lambda s: "reload: done" in inst.log)
    assert re.search(r"WARNING .*signal 30: \[\[signal\]\] #1 .*replaces python:app:hello,",
                     inst.log), inst.log


def test_a_failed_handler_shows_the_users_frames_only(make_instance):
    inst = make_instance({"workers": 1}, SIGNALS, modules={"app": APP})
    inst.signal(31)
    inst.stats_when(lambda s: s["signals"]["31"]["failed"] == 1)
    start = inst.log.index("signal 31: handler python:app:broken failed")
    trace = inst.log[start:]
    assert "Traceback (most recent call last):" in trace
    assert 'app.py", line' in trace and "in broken" in trace and "in helper" in trace
    assert "ValueError: bad value 31" in trace
    assert "switchboard" not in trace.split("Traceback", 1)[1].split("ValueError")[0], trace
