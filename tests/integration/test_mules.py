"""Mules, farms and mule programs (SPEC sections 2, 4, 8, 10, 12, 14).

Every mule target of the table, first-available mules and farms, Python and Lua mule
programs (signals handled inside their signal_wait(), a signal-only mule once they
return, interrupted by SIGTERM), mule_id()/worker_id() in every process, registration
from workers and mules, errors and harakiri in mules, config errors, and the
samples/mules deployment.
"""

from __future__ import annotations

import os
import re
import shutil
import signal as unix
import textwrap
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]

APP = """
import os

import uwsgi

import sbtest


def where(num):
    sbtest.record(num, "w%d" % uwsgi.worker_id(), "m%d" % uwsgi.mule_id(),
                  "s%d" % int(bool(uwsgi.i_am_the_spooler())), os.getpid())


def hold(num):
    sbtest.record("busy", "m%d" % uwsgi.mule_id(), os.getpid())
    sbtest.wait_file("release")
    sbtest.record("free", "m%d" % uwsgi.mule_id(), os.getpid())
"""

WHERE = "python:app:where"          # records "<num> w<worker_id> m<mule_id> s<0|1> <pid>"










def _handled(num, count):
    return lambda s: s["signals"][str(num)]["handled"] >= count


def _lines(inst, num):
    return [r for r in inst.results() if r[0] == str(num)]


def _mule(stats, mid):
    return next(m for m in stats["mules"] if m["id"] == mid)


# ---------------------------------------------------------------------------------------
# Targets


def test_every_mule_target_routes_as_the_table_says(make_instance, wait_for):
    inst = make_instance(
        {"workers": 1, "mules": 3, "farms": {"light": [1], "heavy": [2, 3], "all": [3, 2, 1]}},
        [{"num": 40, "target": "mule", "handler": WHERE},
         {"num": 41, "target": "mule0", "handler": WHERE},
         {"num": 42, "target": "mule2", "handler": WHERE},
         {"num": 43, "target": "mules", "handler": WHERE},
         {"num": 44, "target": "farm_heavy", "handler": WHERE},
         {"num": 45, "target": "farm1", "handler": WHERE},      # 1-based: farm_light
         {"num": 46, "target": "farm2", "handler": WHERE},      # farm_heavy
         {"num": 47, "target": "farm3", "handler": WHERE}],     # farm_all: a mule may
        modules={"app": APP})                                   # be in several farms
    stats = inst.socket_stats()
    assert [m["id"] for m in stats["mules"]] == [1, 2, 3]
    assert all(m["pid"] > 0 and m["status"] == "idle" for m in stats["mules"]), stats["mules"]
    pids = {m["id"]: m["pid"] for m in stats["mules"]}
    targets = {n: stats["signals"][str(n)]["target"] for n in range(40, 48)}
    assert targets == {40: "mule", 41: "mule", 42: "mule2", 43: "mules", 44: "farm_heavy",
                       45: "farm_light", 46: "farm_heavy", 47: "farm_all"}

    raises = {40: 2, 41: 2, 42: 2, 43: 2, 44: 3, 45: 2, 46: 3, 47: 3}
    for num, times in raises.items():
        for _ in range(times):
            inst.raise_signal(num)
    expected_runs = {num: times * (3 if num == 43 else 1) for num, times in raises.items()}
    inst.wait_results(sum(expected_runs.values()))
    stats = inst.stats_when(lambda s: all(_handled(n, c)(s) for n, c in expected_runs.items()))

    lines = inst.results()
    assert len(lines) == sum(expected_runs.values()), lines
    # Nothing ran in a worker or the spooler; each line names the mule that ran it.
    assert all(r[1] == "w0" and r[3] == "s0" for r in lines), lines
    assert all(int(r[4]) == pids[int(r[2][1:])] for r in lines), (lines, pids)
    mules_of = {num: Counter(r[2] for r in _lines(inst, num)) for num in raises}
    assert sum(mules_of[40].values()) == 2 and set(mules_of[40]) <= {"m1", "m2", "m3"}
    assert sum(mules_of[41].values()) == 2 and set(mules_of[41]) <= {"m1", "m2", "m3"}
    assert mules_of[42] == {"m2": 2}
    assert mules_of[43] == {"m1": 2, "m2": 2, "m3": 2}
    assert sum(mules_of[44].values()) == 3 and set(mules_of[44]) <= {"m2", "m3"}
    assert mules_of[45] == {"m1": 2}
    assert sum(mules_of[46].values()) == 3 and set(mules_of[46]) <= {"m2", "m3"}
    assert sum(mules_of[47].values()) == 3 and set(mules_of[47]) <= {"m1", "m2", "m3"}

    sig = stats["signals"]
    assert (sig["43"]["raised"], sig["43"]["routed"], sig["43"]["handled"]) == (2, 6, 6)
    assert (sig["44"]["raised"], sig["44"]["routed"], sig["44"]["handled"]) == (3, 3, 3)
    assert stats["workers"][0]["signals"] == 0
    per_mule = Counter(r[2] for r in lines)
    assert [m["signals"] for m in stats["mules"]] == [per_mule["m1"], per_mule["m2"],
                                                      per_mule["m3"]]
    assert inst.stop() == 0


@pytest.mark.timeout(45)
def test_a_busy_mule_does_not_hold_up_mule_or_farm_signals(make_instance, wait_for):
    inst = make_instance(
        {"workers": 1, "mules": 2, "farms": {"both": [1, 2]}},
        [{"num": 20, "target": "mule1", "handler": "python:app:hold"},
         {"num": 30, "target": "mule", "handler": WHERE},
         {"num": 31, "target": "farm_both", "handler": WHERE},
         {"num": 32, "target": "farm1", "handler": WHERE}],
        modules={"app": APP})
    inst.raise_signal(20)
    inst.wait_results(1, where=lambda r: r[0] == "busy")
    inst.stats_when(lambda s: _mule(s, 1)["state"] == "busy")
    for num in (30, 31, 32, 30, 31, 32):
        inst.raise_signal(num)
    # Mule 1 stays busy until the test creates `release`: mule 2 takes all six.
    lines = inst.wait_results(6, timeout=5, where=lambda r: r[0] in ("30", "31", "32"))
    ran = [r[:3] for r in lines if r[0] in ("30", "31", "32")]
    assert sorted(ran) == sorted([[n, "w0", "m2"] for n in ("30", "31", "32")] * 2), ran
    assert not [r for r in lines if r[0] == "free"]
    assert _mule(inst.socket_stats(), 1)["state"] == "busy"
    inst.touch("release")
    inst.wait_results(1, where=lambda r: r[0] == "free")
    stats = inst.stats_when(lambda s: _mule(s, 1)["status"] == "idle")
    assert [stats["signals"][n]["handled"] for n in ("20", "30", "31", "32")] == [1, 2, 2, 2]
    assert inst.stop() == 0


IDS = """
import os

import uwsgi

import sbtest

# In the master, at import: every id is 0.
sbtest.record("master", "w%d" % uwsgi.worker_id(), "m%d" % uwsgi.mule_id(),
              "s%d" % int(bool(uwsgi.i_am_the_spooler())), os.getpid())
""" + APP

IDS_LUA = """
local M = {}
function M.ids(sig)
    print(string.format("lua %d w%d m%d", sig, uwsgi.worker_id(), uwsgi.mule_id()))
end
return M
"""


def test_mule_id_and_worker_id_are_right_in_every_process(make_instance, wait_for):
    inst = make_instance(
        {"workers": 2, "mules": 2, "spooler": "spool", "import": ["app"]},
        [{"num": 70, "target": "workers", "handler": WHERE},
         {"num": 71, "target": "mules", "handler": WHERE},
         {"num": 72, "target": "spooler", "handler": WHERE},
         {"num": 73, "target": "mules", "handler": "lua:ids.lua:ids"},
         {"num": 74, "target": "workers", "handler": "lua:ids.lua:ids"},
         {"num": 75, "target": "spooler", "handler": "lua:ids.lua:ids"}],
        modules={"app": IDS}, start=False)
    (inst.dir / "ids.lua").write_text(IDS_LUA)
    inst.start()
    stats = inst.socket_stats()
    for num in range(70, 76):
        inst.raise_signal(num)
    inst.wait_results(5, where=lambda r: r[0] in ("70", "71", "72"))
    wait_for(lambda: inst.stdout.count("lua ") >= 5, 15,
             message=lambda: f"stdout:\n{inst.stdout}\nlog:\n{inst.log[-4000:]}")
    inst.stats_when(lambda s: all(_handled(n, c)(s) for n, c in
                                             [(70, 2), (71, 2), (72, 1), (73, 2), (74, 2),
                                              (75, 1)]))
    lines = inst.results()
    masters = [r for r in lines if r[0] == "master"]
    assert masters and all(r[1:4] == ["w0", "m0", "s0"] and int(r[4]) == inst.pid
                           for r in masters), masters
    assert sorted(r[1:4] for r in _lines(inst, 70)) == [["w1", "m0", "s0"], ["w2", "m0", "s0"]]
    assert sorted(r[1:4] for r in _lines(inst, 71)) == [["w0", "m1", "s0"], ["w0", "m2", "s0"]]
    assert [r[1:4] for r in _lines(inst, 72)] == [["w0", "m0", "s1"]]
    assert int(_lines(inst, 72)[0][4]) == stats["spoolers"][0]["pid"]
    lua = sorted(line for line in inst.stdout.splitlines() if line.startswith("lua "))
    assert lua == ["lua 73 w0 m1", "lua 73 w0 m2", "lua 74 w1 m0", "lua 74 w2 m0",
                   "lua 75 w0 m0"], inst.stdout
    assert inst.stop() == 0


# ---------------------------------------------------------------------------------------
# Mule programs

PROGRAM = """
import os

import uwsgi

import sbtest


def feeder():
    sbtest.record("program-start", "w%d" % uwsgi.worker_id(), "m%d" % uwsgi.mule_id(),
                  os.getpid())
    sbtest.wait_file("go")
    sbtest.record("program-waits")
    while True:
        num = uwsgi.signal_wait(timeout=30)
        sbtest.record("program-saw", num, uwsgi.signal_received())
        if num == 52:
            sbtest.record("program-returns")
            return "ignored"


def handler(num):
    sbtest.record("handler", num, "m%d" % uwsgi.mule_id(), os.getpid())
"""


@pytest.mark.timeout(45)
def test_a_python_mule_program_handles_signals_only_inside_signal_wait(make_instance,
                                                                        wait_for):
    inst = make_instance(start=False, modules={"prog": PROGRAM})
    inst.write_config(text=textwrap.dedent(f"""\
        [switchboard]
        workers = 1
        mules = 2
        control = "{inst.control_path}"
        python-path = ["{inst.dir}"]

        [[mule]]
        id = 1
        program = "python:prog:feeder"

        [[signal]]
        num = 50
        target = "mule1"
        handler = "python:prog:handler"

        [[signal]]
        num = 51
        target = "mule"
        handler = "python:prog:handler"

        [[signal]]
        num = 52
        target = "mule1"
        handler = "python:prog:handler"
        """))
    inst.start()
    start = inst.wait_results(1, where=lambda r: r[0] == "program-start")
    stats = inst.socket_stats()
    pid1 = _mule(stats, 1)["pid"]
    assert start[0][1:] == ["w0", "m1", str(pid1)]
    assert _mule(stats, 1)["program"] == "python:prog:feeder"
    assert "program" not in _mule(stats, 2)

    # The program is not in signal_wait(): a signal for mule 1 waits in its queue, and
    # `mule` signals go to mule 2, the one that can take them.
    inst.raise_signal(50)
    inst.stats_when(lambda s: _mule(s, 1)["signal_queue"] == 1)
    inst.raise_signal(51)
    inst.raise_signal(51)
    inst.wait_results(2, where=lambda r: r[:2] == ["handler", "51"])
    assert [r[2] for r in inst.results() if r[0] == "handler"] == ["m2", "m2"]
    assert not [r for r in inst.results() if r[:2] == ["handler", "50"]]

    inst.touch("go")
    inst.wait_results(1, where=lambda r: r[0] == "program-saw")
    lines = [r for r in inst.results() if r[0] != "program-start"]
    names = [r[0] if r[0] != "handler" else f"handler {r[1]}" for r in lines]
    assert names.index("program-waits") < names.index("handler 50") \
        < names.index("program-saw"), names
    assert ["handler", "50", "m1", str(pid1)] in lines
    assert ["program-saw", "50", "50"] in lines

    inst.raise_signal(52)                 # the program returns after this one
    inst.wait_results(1, where=lambda r: r[0] == "program-returns")
    assert ["program-saw", "52", "52"] in inst.results()
    assert ["handler", "52", "m1", str(pid1)] in inst.results()
    wait_for(lambda: re.search(r"mule 1.*program returned", inst.log), 10,
             message=lambda: inst.log)

    # Now a signal-only mule: the same process runs mule 1's signals by itself.
    inst.raise_signal(50)
    inst.raise_signal(50)
    inst.wait_results(3, where=lambda r: r[:2] == ["handler", "50"])
    assert [r for r in inst.results() if r[:2] == ["handler", "50"]] == \
        [["handler", "50", "m1", str(pid1)]] * 3
    stats = inst.stats_when(_handled(50, 3))
    assert _mule(stats, 1)["pid"] == pid1 and _mule(stats, 1)["respawns"] == 0
    assert len([r for r in inst.results() if r[0] == "program-saw"]) == 2
    assert len([r for r in inst.results() if r[0] == "program-start"]) == 1
    assert inst.stop() == 0


LUA_PROGRAM = """
local M = {}
function M.feeder()
    print(string.format("lua program in mule %d worker %d", uwsgi.mule_id(), uwsgi.worker_id()))
    while true do
        local n = uwsgi.signal_wait(nil, 30)
        print("lua program saw " .. tostring(n) .. " last " .. tostring(uwsgi.signal_received()))
        if n == 56 then return end
    end
end
function M.hello(sig)
    print(string.format("lua handler %d in mule %d", sig, uwsgi.mule_id()))
end
return M
"""


def test_a_lua_mule_program_runs_then_the_mule_goes_on(make_instance, wait_for):
    inst = make_instance(start=False)
    (inst.dir / "prog.lua").write_text(LUA_PROGRAM)
    inst.write_config(text=textwrap.dedent(f"""\
        [switchboard]
        mules = 1
        control = "{inst.control_path}"

        [[mule]]
        id = 1
        program = "lua:prog.lua:feeder"

        [[signal]]
        num = 55
        target = "mule1"
        handler = "lua:prog.lua:hello"

        [[signal]]
        num = 56
        target = "mules"
        handler = "lua:prog.lua:hello"
        """))
    inst.start()
    out = lambda: inst.stdout.splitlines()    # noqa: E731
    wait_for(lambda: "lua program in mule 1 worker 0" in out(), 10,
             message=lambda: inst.stdout + inst.log)
    pid = _mule(inst.socket_stats(), 1)["pid"]
    inst.raise_signal(55)
    wait_for(lambda: "lua program saw 55 last 55" in out(), 10,
             message=lambda: inst.stdout + inst.log)
    assert out().index("lua handler 55 in mule 1") < out().index("lua program saw 55 last 55")
    inst.raise_signal(56)
    wait_for(lambda: "lua program saw 56 last 56" in out(), 10, message=lambda: inst.stdout)
    wait_for(lambda: re.search(r"mule 1.*program returned", inst.log), 10,
             message=lambda: inst.log)
    inst.raise_signal(55)                 # a signal-only mule now
    wait_for(lambda: out().count("lua handler 55 in mule 1") == 2, 10,
             message=lambda: inst.stdout + inst.log)
    stats = inst.stats_when(_handled(55, 2))
    assert _mule(stats, 1)["pid"] == pid
    assert _mule(stats, 1)["program"] == "lua:prog.lua:feeder"
    assert len([line for line in out() if line.startswith("lua program saw")]) == 2
    assert inst.stop() == 0


SPIN = """
import os
import time

import sbtest


def spin():
    sbtest.record("spin-start", os.getpid())
    try:
        while True:
            time.sleep(0.01)
    except SystemExit as exc:
        sbtest.record("spin-interrupted", type(exc).__name__, exc.code)
        raise
"""

WAIT_LUA = """
function waiter()
    print("lua waiter started")
    while true do uwsgi.signal_wait(nil, 30) end
end
"""


@pytest.mark.timeout(45)
@pytest.mark.parametrize("to_group", [False, True], ids=["master", "process-group"])
def test_sigterm_interrupts_running_mule_programs(make_instance, wait_for, procs, to_group):
    inst = make_instance(start=False, modules={"spin": SPIN})
    (inst.dir / "wait.lua").write_text(WAIT_LUA)
    inst.write_config(text=textwrap.dedent(f"""\
        [switchboard]
        mules = 2
        reload-mercy = 15
        control = "{inst.control_path}"
        python-path = ["{inst.dir}"]

        [[mule]]
        id = 1
        program = "python:spin:spin"

        [[mule]]
        id = 2
        program = "lua:wait.lua:waiter"
        """))
    inst.start()
    inst.wait_results(1, where=lambda r: r[0] == "spin-start")
    wait_for(lambda: "lua waiter started" in inst.stdout, 10, message=lambda: inst.stdout)
    children = procs.descendants(inst.pid)
    assert len(children) == 3, [procs.cmdline(p) for p in children]
    if to_group:                                # as systemd does
        os.killpg(inst.pid, unix.SIGTERM)
    assert inst.stop(timeout=10) == 0           # well before reload-mercy would kill them
    for mule in (1, 2):
        assert re.search(rf"mule {mule} \(pid \d+\) exited with status 0", inst.log), inst.log
    assert inst.results()[-1] == ["spin-interrupted", "SystemExit", "0"], inst.results()
    assert "still running after reload-mercy" not in inst.log, inst.log
    assert "killed by" not in inst.log, inst.log
    wait_for(lambda: not any(procs.pid_alive(p) for p in children), 5,
             message=lambda: [procs.cmdline(p) for p in children])


STEALER = """
import uwsgi

import sbtest


def loop():
    while True:
        num = uwsgi.signal_wait(timeout=30)
        sbtest.record("mule-program-got", num)


def waiter(num):
    sbtest.record("worker-waits", uwsgi.worker_id())
    sbtest.record("worker-got", uwsgi.signal_wait(timeout=20))
"""


@pytest.mark.timeout(45)
def test_a_waiting_mule_program_does_not_take_unregistered_signals(make_instance, wait_for):
    # SPEC 6: an unregistered signal goes to the first *worker* waiting in signal_wait
    # (uWSGI hands it to a worker); a mule program's signal_wait() sees the signals
    # targeted at its mule.
    inst = make_instance(start=False, modules={"stealer": STEALER})
    inst.write_config(text=textwrap.dedent(f"""\
        [switchboard]
        workers = 1
        mules = 1
        control = "{inst.control_path}"
        python-path = ["{inst.dir}"]

        [[mule]]
        id = 1
        program = "python:stealer:loop"

        [[signal]]
        num = 10
        target = "worker1"
        handler = "python:stealer:waiter"
        """))
    inst.start()
    inst.stats_when(lambda s: _mule(s, 1)["waiting"])
    inst.raise_signal(10)
    inst.wait_results(1, where=lambda r: r[0] == "worker-waits")
    inst.stats_when(lambda s: s["workers"][0]["waiting"])
    inst.raise_signal(99)                 # registered nowhere
    lines = inst.wait_results(1, where=lambda r: r[0] in ("worker-got", "mule-program-got"))
    assert ["worker-got", "99"] in lines, lines
    assert not [r for r in lines if r[0] == "mule-program-got"], lines
    assert inst.stop() == 0


# ---------------------------------------------------------------------------------------
# Registration from any process

REGISTER = """
import os

import uwsgi

import sbtest
from app import where


def from_worker(num):
    uwsgi.register_signal(60, "mule2", "python:app:where")
    uwsgi.signal(60)
    for bad in ("mule3", "farm2", "farm_nope", "farm0"):
        try:
            uwsgi.register_signal(61, bad, "python:app:where")
        except ValueError as exc:
            sbtest.record("refused", bad, "ValueError", repr(str(exc)).replace(" ", "_"))
        else:
            sbtest.record("accepted", bad)
    try:
        uwsgi.register_signal(62, "mule", lambda n: None)
    except ValueError as exc:
        sbtest.record("refused", "closure-for-mule", "ValueError")
    sbtest.record("from-worker-done", uwsgi.signal_registered(61))


def from_mule(num):
    uwsgi.register_signal(63, "workers", where)
    uwsgi.signal(63)
    uwsgi.register_signal(64, "mule1", lambda n: sbtest.record("closure", n, uwsgi.mule_id()))
    uwsgi.signal(64)
    uwsgi.register_signal(65, "spooler", "python:app:where")
    uwsgi.signal(65)
    sbtest.record("from-mule-done", uwsgi.mule_id())


def from_spooler(num):
    uwsgi.register_signal(66, "farm_only", where)
    uwsgi.signal(66)
    sbtest.record("from-spooler-done", uwsgi.i_am_the_spooler())
"""


def test_mule_targets_can_be_registered_from_workers_and_mules(make_instance, wait_for):
    inst = make_instance(
        {"workers": 2, "mules": 2, "farms": {"only": [1]}, "spooler": "spool"},
        [{"num": 90, "target": "worker1", "handler": "python:register:from_worker"},
         {"num": 91, "target": "mule1", "handler": "python:register:from_mule"},
         {"num": 92, "target": "spooler", "handler": "python:register:from_spooler"}],
        modules={"app": APP, "register": REGISTER})
    inst.raise_signal(90)
    inst.wait_results(1, where=lambda r: r[0] == "from-worker-done")
    inst.wait_results(1, where=lambda r: r[0] == "60")
    lines = inst.results()
    assert [r[1:3] for r in _lines(inst, 60)] == [["w0", "m2"]]
    refused = {r[1]: r for r in lines if r[0] == "refused"}
    assert not [r for r in lines if r[0] == "accepted"], lines
    assert set(refused) == {"mule3", "farm2", "farm_nope", "farm0", "closure-for-mule"}
    for bad in ("mule3", "farm2", "farm_nope"):
        assert bad in refused[bad][3], refused[bad]
    assert ["from-worker-done", "None"] in lines      # 61 was never registered

    inst.raise_signal(91)
    inst.wait_results(1, where=lambda r: r[0] == "from-mule-done")
    inst.wait_results(2, where=lambda r: r[0] == "63")
    inst.wait_results(1, where=lambda r: r[0] == "closure")
    assert sorted(r[1:3] for r in _lines(inst, 63)) == [["w1", "m0"], ["w2", "m0"]]
    assert [r for r in inst.results() if r[0] == "closure"] == [["closure", "64", "1"]]
    inst.wait_results(1, where=lambda r: r[0] == "65")
    assert [r[1:4] for r in _lines(inst, 65)] == [["w0", "m0", "s1"]]
    inst.raise_signal(92)
    inst.wait_results(1, where=lambda r: r[0] == "66")
    assert [r[1:4] for r in _lines(inst, 66)] == [["w0", "m1", "s0"]]
    assert ["from-spooler-done", "True"] in inst.results()
    stats = inst.stats_when(lambda s: _handled(63, 2)(s) and _handled(64, 1)(s)
                        and _handled(65, 1)(s) and _handled(66, 1)(s))
    sig = stats["signals"]
    assert (sig["60"]["target"], sig["60"]["handler"]) == ("mule2", "python:app:where")
    assert sig["63"]["target"] == "workers"
    assert sig["64"]["target"] == "mule1"
    assert (sig["65"]["target"], sig["66"]["target"]) == ("spooler", "farm_only")
    assert "61" not in sig and "62" not in sig
    # Raised again from outside, the worker's and the mule's registrations still route.
    inst.raise_signal(60)
    inst.raise_signal(63)
    inst.wait_results(2, where=lambda r: r[0] == "60")
    inst.wait_results(4, where=lambda r: r[0] == "63")
    assert [r[2] for r in _lines(inst, 60)] == ["m2", "m2"]
    assert inst.stop() == 0


# ---------------------------------------------------------------------------------------
# Errors and harakiri in mules

FAILING = """
import os
import time

import uwsgi

import sbtest


def boom(num):
    sbtest.record("boom", num, uwsgi.mule_id(), os.getpid())
    raise RuntimeError("mule boom %d" % num)


def sleepy(num):
    sbtest.record("sleeping", num, uwsgi.mule_id(), os.getpid())
    time.sleep(30)
    sbtest.record("woke", num)
"""

ERRS_LUA = """
local M = {}
function M.fail(sig)
    local x = nil
    error("lua mule failure " .. sig)
end
return M
"""


@pytest.mark.timeout(45)
def test_mules_report_errors_and_obey_mule_harakiri(make_instance, wait_for):
    inst = make_instance(
        {"workers": 1, "mules": 2, "mule-harakiri": 1},
        [{"num": 80, "target": "mule2", "handler": "python:failing:boom"},
         {"num": 81, "target": "mule2", "handler": "lua:errs.lua:fail"},
         {"num": 82, "target": "mule1", "handler": "python:failing:sleepy"},
         {"num": 83, "target": "mules", "handler": WHERE}],
        modules={"failing": FAILING, "app": APP}, start=False)
    (inst.dir / "errs.lua").write_text(ERRS_LUA)
    inst.start()
    before = {m["id"]: m["pid"] for m in inst.socket_stats()["mules"]}
    inst.raise_signal(80)
    inst.raise_signal(81)
    stats = inst.stats_when(lambda s: s["signals"]["81"]["failed"] == 1
                        and s["signals"]["80"]["failed"] == 1)
    assert _mule(stats, 2)["failed"] == 2 and _mule(stats, 2)["pid"] == before[2]
    wait_for(lambda: "RuntimeError: mule boom 80" in inst.log
             and "lua mule failure 81" in inst.log, 10, message=lambda: inst.log)
    assert "Traceback (most recent call last)" in inst.log
    assert re.search(r"mule 2.*\b80\b.*failing:boom|\b80\b.*failing:boom.*mule 2", inst.log)
    assert re.search(r"errs\.lua:5:.*lua mule failure 81", inst.log), inst.log

    inst.raise_signal(82)
    inst.wait_results(1, where=lambda r: r[0] == "sleeping")
    stats = inst.stats_when(lambda s: _mule(s, 1)["pid"] not in (0, before[1])
                        and _mule(s, 1)["status"] == "idle", timeout=20)
    assert _mule(stats, 1)["harakiri_count"] == 1 and _mule(stats, 1)["respawns"] == 1
    assert _mule(stats, 2)["harakiri_count"] == 0 and _mule(stats, 2)["pid"] == before[2]
    assert stats["workers"][0]["harakiri_count"] == 0
    assert re.search(rf"harakiri.*mule 1 \(pid {before[1]}\)", inst.log), inst.log
    inst.raise_signal(83)
    inst.wait_results(2, where=lambda r: r[0] == "83")
    assert sorted((r[2], int(r[4])) for r in _lines(inst, 83)) == [
        ("m1", _mule(stats, 1)["pid"]), ("m2", before[2])]
    assert not [r for r in inst.results() if r[0] == "woke"]
    assert inst.stop() == 0


# ---------------------------------------------------------------------------------------
# Config errors

PROG_OK = 'program = "python:handlers:prog"\n'

MULE_CASES = {
    "farm-names-unknown-mule": ("[switchboard]\nmules = 2\nfarms = { heavy = [1, 3] }\n",
                                ["[switchboard]", "farms", "heavy", "3"]),
    "mule-id-above-mules": ("[switchboard]\nmules = 1\n\n[[mule]]\nid = 2\n" + PROG_OK,
                            ["[[mule]] #1", "key 'id'", "2"]),
    "duplicate-mule-id": ("[switchboard]\nmules = 2\n\n[[mule]]\nid = 1\n" + PROG_OK
                          + "\n[[mule]]\nid = 1\n" + PROG_OK,
                          ["[[mule]] #2", "key 'id'", "[[mule]] #1"]),
    "unknown-mule-key": ("[switchboard]\nmules = 1\n\n[[mule]]\nid = 1\n" + PROG_OK
                         + "loop = true\n", ["[[mule]] #1", "loop"]),
    "bad-program-reference": ('[switchboard]\nmules = 1\n\n[[mule]]\nid = 1\n'
                              'program = "python:handlers:nope"\n',
                              ["[[mule]] #1", "key 'program'", "nope"]),
    "no-such-mule-target": ('[switchboard]\nmules = 2\n\n[[signal]]\nnum = 30\n'
                            'target = "mule3"\nhandler = "python:handlers:hello"\n',
                            ["[[signal]] #1", "key 'target'", "mule3"]),
    "no-such-farm-number": ('[switchboard]\nmules = 2\nfarms = { a = [1] }\n\n[[signal]]\n'
                            'num = 30\ntarget = "farm2"\nhandler = "python:handlers:hello"\n',
                            ["[[signal]] #1", "key 'target'", "farm2"]),
    "no-such-farm-name": ('[switchboard]\nmules = 2\nfarms = { a = [1] }\n\n[[signal]]\n'
                          'num = 30\ntarget = "farm_b"\nhandler = "python:handlers:hello"\n',
                          ["[[signal]] #1", "key 'target'", "farm_b"]),
    "mule-without-mules": ('[[signal]]\nnum = 30\ntarget = "mule"\n'
                           'handler = "python:handlers:hello"\n',
                           ["[[signal]] #1", "key 'target'", "mule"]),
}

HANDLERS = """
def hello(num):
    print("hello", num)


def prog():
    pass
"""


# `check` loads a config exactly as `run` does; it is also run on these (each CLI call
# costs about half a second).
CHECK_TOO = {"farm-names-unknown-mule", "duplicate-mule-id", "bad-program-reference"}


@pytest.mark.parametrize("case", list(MULE_CASES))
def test_bad_mule_config_exits_2_naming_file_entry_and_key(cli, tmp_path, case):
    text, expected = MULE_CASES[case]
    (tmp_path / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    if not text.startswith("[switchboard]"):
        text = "[switchboard]\n" + text
    text = text.replace("[switchboard]\n", '[switchboard]\npython-path = ["."]\n', 1)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    for command in ("run", "check") if case in CHECK_TOO else ("run",):
        res = cli(command, str(path))
        assert res.returncode == 2, (command, res.returncode, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr, res.stderr
        assert str(path) in res.stderr, res.stderr
        for part in expected:
            assert part in res.stderr, f"{command}: {part!r} not in {res.stderr!r}"
        if command == "run":
            assert "spawned" not in res.stderr and not re.search(r"\bready:", res.stderr)


# ---------------------------------------------------------------------------------------
# The shipped sample


def _copy_repo(tmp_path: Path) -> Path:
    for name in ("samples", "lua", "python_handlers"):
        shutil.copytree(REPO / name, tmp_path / "repo" / name,
                        ignore=shutil.ignore_patterns("__pycache__", "uwsgi_spoolfile_*"))
    return tmp_path / "repo"


@pytest.mark.timeout(45)
def test_mules_sample_runs_as_written(make_instance, wait_for, tmp_path):
    repo = _copy_repo(tmp_path)
    inst = make_instance.existing(repo / "samples" / "mules" / "switchboard.toml")
    out = lambda: inst.stdout.splitlines()      # noqa: E731
    wait_for(lambda: "mule 1: program started" in out(), 10,
             message=lambda: inst.stdout + inst.log)
    stats = inst.stats()
    assert [m["id"] for m in stats["mules"]] == [1, 2, 3]
    assert _mule(stats, 1)["program"] == "python:python_handlers.mules:feeder"
    assert len(stats["spoolers"]) == 1 and stats["spoolers"][0]["pid"] > 0

    def have(count, prefix):
        return lambda: len([line for line in out() if line.startswith(prefix)]) >= count

    def show():
        return f"stdout:\n{inst.stdout}\nlog:\n{inst.log[-4000:]}"

    inst.signal(40)
    wait_for(have(1, "signal 40: handled by mule "), 10, message=show)
    inst.signal(41)
    wait_for(have(1, "signal 41: handled by mule "), 10, message=show)
    inst.signal(42)
    wait_for(have(3, "signal 42: handled by mule "), 10, message=show)
    inst.signal(43)
    wait_for(have(1, "mule 1: program saw signal 43"), 10, message=show)
    inst.signal(44)
    wait_for(have(1, "spool job from-worker-"), 15, message=show)

    lines = out()
    assert len([x for x in lines if x.startswith("signal 40: handled by mule ")]) == 1
    assert [x for x in lines if x.startswith("signal 41:")] in (
        ["signal 41: handled by mule 2"], ["signal 41: handled by mule 3"])
    assert sorted(x for x in lines if x.startswith("signal 42:")) == [
        f"signal 42: handled by mule {i}" for i in (1, 2, 3)]
    assert "mule 1: program saw signal 42" in lines
    assert [x for x in lines if x.startswith("signal 43:")] == ["signal 43: handled by mule 1"]
    spooled = [x for x in lines if x.startswith("signal 44:")]
    assert len(spooled) == 1 and re.fullmatch(r"signal 44: worker [12] spooled a job",
                                              spooled[0]), lines
    worker = spooled[0].split()[3]
    assert [x for x in lines if x.startswith("spool job")] == [
        f"spool job from-worker-{worker}: run by the spooler"]

    stats = wait_for(lambda: (lambda s: s if s["spoolers"][0]["jobs_done"] == 1 else None)(
        inst.stats()), 10, interval=0.2, message=lambda: inst.log)
    sig = stats["signals"]
    assert [sig[str(n)]["raised"] for n in range(40, 45)] == [1] * 5
    assert [sig[str(n)]["handled"] for n in range(40, 45)] == [1, 1, 3, 1, 1]
    assert sig["41"]["target"] == "farm_heavy" and sig["43"]["target"] == "mule1"
    assert not list((repo / "samples" / "mules" / "var" / "spool").glob("uwsgi_spoolfile*"))
    assert inst.stop() == 0

