"""Graceful reload (SIGHUP, SPEC 2; reload.py): the config and the handler code are read
again, children are replaced one at a time, no signal is lost meanwhile, and a config
that became invalid (or changes the process layout) is refused while the old one runs on.
"""

from __future__ import annotations

import re
import signal as unix
import textwrap
import threading
import time

import pytest

from switchboard import control

pytestmark = pytest.mark.timeout(90)

APP_V1 = """
import os
import time

import uwsgi
from uwsgidecorators import postfork

import sbtest

VERSION = "v1"


def hello(num):
    sbtest.record(VERSION, num, "w%d" % uwsgi.worker_id(), os.getpid())


@postfork
def boot(version=VERSION):    # the version of the code that defined this function
    sbtest.record("postfork", version, "w%d" % uwsgi.worker_id(), os.getpid())
    if uwsgi.worker_id():
        time.sleep(0.2)        # a slow boot, so the test can watch a worker being replaced
"""

# A different size from v1: Python's bytecode cache checks the source's size and its
# modification time in whole seconds, and this file is rewritten within the second.
APP_V2 = APP_V1.replace('VERSION = "v1"', 'VERSION = "v2"  # the new code') + """

def extra(num):
    sbtest.record("extra", num, "w%d" % uwsgi.worker_id(), os.getpid())
"""

APP_BROKEN = APP_V1 + '\nraise RuntimeError("this module no longer imports")\n'


def _config(inst, workers=2, extra=False, tail=""):
    text = textwrap.dedent(f"""\
        [switchboard]
        workers = {workers}
        mules = 1
        spooler = "spool"
        control = "{inst.control_path}"
        python-path = ["{inst.dir}"]

        [[signal]]
        num = 40
        target = "worker"
        handler = "python:app:hello"

        [[signal]]
        num = 42
        target = "mule1"
        handler = "python:app:hello"
        """)
    if extra:
        text += '\n[[signal]]\nnum = 41\ntarget = "workers"\nhandler = "python:app:extra"\n'
    return text + tail


def _pids(stats):
    return {(g, p["id"]): p["pid"] for g in ("workers", "mules", "spoolers") for p in stats[g]}


class Stream(threading.Thread):
    """Raise signal `num` through the control socket, one request after another, until
    stopped; counts the requests the master accepted."""

    def __init__(self, inst, num):
        super().__init__(daemon=True)
        self.path, self.num = str(inst.control_path), num
        self.accepted, self.errors = 0, []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                reply = control.request(self.path, f"signal {self.num}", 30.0)
            except OSError as exc:
                self.errors.append(repr(exc))
                continue
            if reply.get("ok"):
                self.accepted += 1
            else:
                self.errors.append(reply)
            time.sleep(0.002)

    def stop(self):
        self.halt.set()
        self.join(30)


def test_sighup_reloads_code_and_config_and_replaces_children_one_at_a_time(make_instance):
    inst = make_instance(start=False, modules={"app": APP_V1})
    inst.write_config(text=_config(inst))
    inst.start()
    before = _pids(inst.socket_stats())
    inst.raise_signal(40)
    inst.wait_results(1, where=lambda r: r[0] == "v1")

    # New code, and a new [[signal]] entry that uses it.
    inst.write_module("app", APP_V2)
    inst.write_config(text=_config(inst, extra=True))
    stream = Stream(inst, 40)
    stream.start()
    inst.wait_results(20, where=lambda r: r[:2] == ["v1", "40"])   # the stream flows
    inst.send(unix.SIGHUP)
    # While the children are replaced, sample the workers: at every moment at least one
    # is up (running, not down or still booting).
    samples = []
    deadline = time.monotonic() + 30
    while "reload: done" not in inst.log and time.monotonic() < deadline:
        stats = inst.socket_stats()
        samples.append([(w["id"], w["pid"], w["state"]) for w in stats["workers"]])
        time.sleep(0.005)
    stream.stop()
    log = inst.log
    assert "reload: done" in log, log
    assert not stream.errors, stream.errors[:5]
    assert stream.accepted > 20, stream.accepted
    assert len(samples) > 10, samples
    for sample in samples:
        assert any(pid and status in ("idle", "busy") for _, pid, status in sample), sample
    # ... and the samples did catch workers being replaced, or they would prove nothing.
    assert any(not (pid and status in ("idle", "busy")) for sample in samples
               for _, pid, status in sample), samples

    # Every child was replaced (new pid, same id), not counted as a respawn.
    stats = inst.stats_when(lambda s: all(p["status"] == "idle" for g in
                                          ("workers", "mules", "spoolers") for p in s[g]))
    after = _pids(stats)
    assert set(after) == set(before)
    assert all(after[k] not in (0, before[k]) for k in before), (before, after)
    assert all(p["respawns"] == 0 for g in ("workers", "mules", "spoolers") for p in stats[g])

    # One at a time: each child's replacement is started (and, reload.py waits for it,
    # ready) before the next child is stopped; the log says so in this order.
    events = re.findall(r"reload: ((?:worker|mule) \d+|spooler) \(pid (\d+)\) exited with "
                        r"status 0; starting its replacement|spawned ((?:worker|mule) \d+|"
                        r"spooler) \(pid (\d+)\)", log[log.index("reload: checking"):])
    names = {("workers", 1): "worker 1", ("workers", 2): "worker 2", ("mules", 1): "mule 1",
             ("spoolers", 1): "spooler"}
    expected = []
    for key in sorted(before, key=lambda k: ("workers", "mules", "spoolers").index(k[0])):
        expected += [(names[key], str(before[key]), "", ""), ("", "", names[key], str(after[key]))]
    assert events == expected, events

    # Everything raised during the reload was handled, by the old code or the new.
    total = stream.accepted + 1
    stats = inst.stats_when(lambda s: s["signals"]["40"]["handled"] >= total)
    sig = stats["signals"]["40"]
    assert (sig["raised"], sig["handled"], sig["failed"], sig["dropped"]) == (
        total, total, 0, {}), sig
    runs = [r for r in inst.results() if r[1] == "40" and r[0] in ("v1", "v2")]
    assert len(runs) == total

    # The new code and the new entry run, in the new processes.
    inst.raise_signal(40)
    inst.raise_signal(41)
    inst.raise_signal(42)
    inst.wait_results(total + 1, where=lambda r: r[1] == "40")
    extra = inst.wait_results(2, where=lambda r: r[0] == "extra")
    assert sorted((r[2], int(r[3])) for r in extra if r[0] == "extra") == [
        ("w1", after[("workers", 1)]), ("w2", after[("workers", 2)])]
    mule = inst.wait_results(1, where=lambda r: r[1] == "42")
    assert [r[0] for r in mule if r[1] == "42"] == ["v2"]
    last40 = [r for r in inst.results() if r[1] == "40"][-1]
    assert last40[0] == "v2" and int(last40[3]) in (after[("workers", 1)],
                                                     after[("workers", 2)]), last40
    stats = inst.stats_when(lambda s: s["signals"]["41"]["handled"] == 2)
    assert stats["signals"]["41"]["target"] == "workers"
    assert inst.stop() == 0


def test_a_reload_that_breaks_the_config_or_changes_the_layout_is_refused(make_instance,
                                                                          wait_for):
    inst = make_instance(start=False, modules={"app": APP_V1})
    inst.write_config(text=_config(inst))
    inst.start()
    pids = _pids(inst.socket_stats())
    handled = 0

    def still_the_old_one(refusals):
        nonlocal handled
        wait_for(lambda: inst.log.count("reload refused") == refusals, 30,
                 message=lambda: inst.log[-3000:])
        inst.raise_signal(40)
        handled += 1
        lines = inst.wait_results(handled, where=lambda r: r[1] == "40")
        runs = [r for r in lines if r[1] == "40"]
        assert [r[0] for r in runs] == ["v1"] * handled, runs
        stats = inst.stats_when(lambda s: s["signals"]["40"]["handled"] == handled)
        assert _pids(stats) == pids
        assert "41" not in stats["signals"]
        return [line for line in inst.log.splitlines() if "reload refused" in line][-1]

    # 1. A TOML syntax error.
    inst.write_config(text=_config(inst, extra=True) + "\nworkers = = 3\n")
    inst.send(unix.SIGHUP)
    line = still_the_old_one(1)
    assert "the running config stays" in line and "TOML" in line, line

    # 2. A handler module that no longer imports (the check runs in a new interpreter).
    inst.write_config(text=_config(inst, extra=True))
    inst.write_module("app", APP_BROKEN)
    inst.send(unix.SIGHUP)
    line = still_the_old_one(2)
    assert "this module no longer imports" in line, line

    # 3. A handler reference that does not resolve.
    inst.write_module("app", APP_V2)
    inst.write_config(text=_config(inst, extra=True).replace("app:extra", "app:nope"))
    inst.send(unix.SIGHUP)
    line = still_the_old_one(3)
    assert "nope" in line, line

    # 4. A valid config that changes the process layout.
    inst.write_config(text=_config(inst, workers=3, extra=True))
    inst.send(unix.SIGHUP)
    line = still_the_old_one(4)
    assert "process layout" in line and "restart" in line, line

    # The refusals left the reload machinery working: a good config is applied.
    inst.write_config(text=_config(inst, extra=True))
    inst.send(unix.SIGHUP)
    wait_for(lambda: "reload: done" in inst.log, 30, message=lambda: inst.log[-3000:])
    inst.raise_signal(40)
    lines = inst.wait_results(handled + 1, where=lambda r: r[1] == "40")
    assert [r for r in lines if r[1] == "40"][-1][0] == "v2"
    assert inst.log.count("reload refused") == 4
    assert inst.stop() == 0


def test_after_a_reload_only_the_new_postfork_functions_run(make_instance, wait_for):
    """The new children run the new module's @postfork functions, not the old module's
    as well: "a changed handler module's new code runs after the reload"."""
    inst = make_instance(start=False, modules={"app": APP_V1})
    inst.write_config(text=_config(inst))
    inst.start()
    inst.wait_results(4, where=lambda r: r[0] == "postfork")
    inst.write_module("app", APP_V2)
    inst.send(unix.SIGHUP)
    wait_for(lambda: "reload: done" in inst.log, 30, message=lambda: inst.log[-3000:])
    stats = inst.stats_when(lambda s: all(p["status"] == "idle" for g in
                                          ("workers", "mules", "spoolers") for p in s[g]))
    new = set(_pids(stats).values())
    runs = sorted((int(r[3]), r[1]) for r in inst.results() if r[0] == "postfork"
                  and int(r[3]) in new)
    assert runs == sorted((pid, "v2") for pid in new), (
        "postfork functions run by the replacements (pid, version): "
        f"{runs}\nlog:\n{inst.log[-3000:]}")
    assert inst.stop() == 0


APP_WITH_HELPER = """
import os

import helper
import sbtest


def hello(num):
    sbtest.record("helper", num, helper.WORD, os.getpid())
"""


def test_a_reload_re_imports_only_the_modules_the_config_names(make_instance, wait_for):
    """`import` modules and the modules of `python:` references are re-imported; a
    module they import themselves is not (docs/config.md): its new code needs a restart."""
    inst = make_instance(start=False, modules={"app": APP_V1, "helper": 'WORD = "old"\n',
                                               "uses": APP_WITH_HELPER})
    inst.write_config(text=_config(inst).replace("python:app:hello", "python:uses:hello", 1))
    inst.start()
    inst.raise_signal(40)
    inst.wait_results(1, where=lambda r: r[0] == "helper")
    inst.write_module("helper", 'WORD = "new"  # edited\n')
    inst.write_module("uses", APP_WITH_HELPER.replace('"helper"', '"helper-v2"'))
    inst.send(unix.SIGHUP)
    wait_for(lambda: "reload: done" in inst.log, 30, message=lambda: inst.log[-3000:])
    inst.raise_signal(40)
    lines = inst.wait_results(2, where=lambda r: r[0].startswith("helper"))
    assert [r[:3] for r in lines if r[0].startswith("helper")] == [
        ["helper", "40", "old"], ["helper-v2", "40", "old"]], lines
    assert inst.stop() == 0


def test_a_reload_applies_the_new_signal_queue_to_the_held_queue_too(make_instance,
                                                                     wait_for):
    """`signal-queue` bounds every queue, the held queue of unregistered signals
    included (docs/config.md); a reload that raises it raises every bound."""
    inst = make_instance(start=False, modules={"app": APP_V1})
    inst.write_config(text=_config(inst).replace("workers = 2", "workers = 2\nsignal-queue = 4"))
    inst.start()
    inst.write_config(text=_config(inst).replace("workers = 2", "workers = 2\nsignal-queue = 8"))
    inst.send(unix.SIGHUP)
    wait_for(lambda: "reload: done" in inst.log, 30, message=lambda: inst.log[-3000:])
    for num in range(100, 106):          # six unregistered signals, held for a waiter
        inst.raise_signal(num)
    stats = inst.socket_stats()
    dropped = {n: stats["signals"][str(n)]["dropped"] for n in range(100, 106)}
    assert stats["held"] == 6 and not any(dropped.values()), (stats["held"], dropped)
    assert inst.stop() == 0
