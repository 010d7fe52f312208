"""Harakiri (SPEC 2, 12): a handler that never returns costs its own run and its process,
nothing more.

A Python handler asleep in C code, a Lua `while true do end` and a Lua loop that keeps
catching errors with `pcall` (on workers, `harakiri`) and a Lua spin on a mule
(`mule-harakiri`) are all killed within harakiri + 1 s of the handler's start; each
process comes back with its id; the kill is logged (which process, which signal, which
handler, how long) and counted (`harakiri_count`, `dropped: {"harakiri": 1}`).
"""

from __future__ import annotations

import re
import time

import pytest

pytestmark = pytest.mark.timeout(60)

LIMIT = 1                 # harakiri and mule-harakiri, seconds
# The master checks its children at least every 0.5 s (master.py _TICK), so a handler
# is killed between LIMIT and LIMIT + 0.5 s after it started: SPEC asks for LIMIT + 1 s.
BOUND = LIMIT + 1.0
# The test sees the replacement through the stats, polled every 20 ms over the control
# socket on a 2-CPU machine that also runs the instance: allow that much on top.
SEEN_SLACK = 0.5

HK = """
import os
import time

import uwsgi

import sbtest


def sleepy(num):
    sbtest.record("start", num, uwsgi.worker_id(), os.getpid(), "%.6f" % time.monotonic())
    time.sleep(60)
    sbtest.record("woke", num)


def boom(num):
    raise RuntimeError("boom from signal %d" % num)


def where(num):
    sbtest.record("ran", num, "w%d" % uwsgi.worker_id(), "m%d" % uwsgi.mule_id(), os.getpid())
"""

HK_LUA = """
local M = {}
function M.spin(sig) while true do end end
function M.pcall_spin(sig)
    while true do
        pcall(function()
            local x = 0
            for i = 1, 100000 do x = x + i end
            error("caught and tried again")
        end)
    end
end
return M
"""

# signal -> (where it runs, handler, the stats list and id of that process)
CASES = {
    21: ("worker1", "python:hk:sleepy", "workers", 1),
    22: ("worker2", "lua:hk.lua:spin", "workers", 2),
    23: ("worker3", "lua:hk.lua:pcall_spin", "workers", 3),
    24: ("mule1", "lua:hk.lua:spin", "mules", 1),
}
NAMES = {"workers": "worker", "mules": "mule"}


def _proc(stats, group, ident):
    return next(p for p in stats[group] if p["id"] == ident)


def test_runaway_handlers_are_killed_within_harakiri_plus_one_second(make_instance,
                                                                     wait_for):
    signals = [{"num": n, "target": t, "handler": h} for n, (t, h, _, _) in CASES.items()]
    signals += [{"num": 25, "target": "workers", "handler": "python:hk:where"},
                {"num": 26, "target": "mule1", "handler": "python:hk:where"},
                {"num": 27, "target": "worker1", "handler": "python:hk:boom"}]
    inst = make_instance({"workers": 3, "mules": 1, "harakiri": LIMIT, "mule-harakiri": LIMIT},
                         signals, modules={"hk": HK}, start=False)
    (inst.dir / "hk.lua").write_text(HK_LUA)
    inst.start()
    before = inst.socket_stats()
    old = {n: _proc(before, g, i)["pid"] for n, (_, _, g, i) in CASES.items()}
    assert all(old.values()), before

    for num in CASES:
        inst.raise_signal(num)
    # When each handler started: the Python one records it; for the Lua ones (which
    # cannot read CLOCK_MONOTONIC) it is the master's own record of the start, read
    # from the stats as `running_for` (the time of the request minus it is no later
    # than the real start, so the durations below are never under-estimated).
    started: dict[int, float] = {}
    replaced: dict[int, float] = {}
    deadline = time.monotonic() + 20
    while len(replaced) < len(CASES) and time.monotonic() < deadline:
        asked = time.monotonic()
        stats = inst.socket_stats()
        seen = time.monotonic()
        for num, (_, _, group, ident) in CASES.items():
            proc = _proc(stats, group, ident)
            if num not in started and proc.get("signum") == num:
                started[num] = asked - proc["running_for"]
            if num not in replaced and proc["pid"] not in (0, old[num]):
                replaced[num] = seen
        time.sleep(0.02)            # the poll interval
    assert set(replaced) == set(CASES), f"not replaced: {set(CASES) - set(replaced)}\n{inst.log}"
    start_line = next(r for r in inst.results() if r[:2] == ["start", "21"])
    started[21] = float(start_line[4])
    assert set(started) == set(CASES), f"never seen busy: {set(CASES) - set(started)}"

    for num, (_, handler, group, ident) in CASES.items():
        name = f"{NAMES[group]} {ident}"
        took = replaced[num] - started[num]
        assert took < BOUND + SEEN_SLACK, (
            f"signal {num} ({handler}) on {name}: its replacement appeared {took:.2f} s "
            f"after the handler started (harakiri = {LIMIT})\n{inst.log}")
        # The master's own measure, in the log: how long the handler had run when killed.
        match = re.search(rf"harakiri: {name} \(pid {old[num]}\) ran signal {num}'s handler "
                          rf"{re.escape(handler)} for ([\d.]+) s \(limit {LIMIT} s\); killing it",
                          inst.log)
        assert match, f"no harakiri line for {name} / signal {num}:\n{inst.log}"
        assert LIMIT <= float(match.group(1)) <= BOUND, match.group(0)
        assert re.search(rf"{name} \(pid {old[num]}\) was killed by SIGKILL \(harakiri: .*"
                         rf"signal {num}'s handler {re.escape(handler)}.*\); respawning",
                         inst.log), inst.log
        assert re.search(rf"signal {num}: dropped 1 \(harakiri", inst.log), inst.log

    # Counted: per process and per signal; nothing handled, failed or dropped otherwise.
    stats = inst.stats_when(lambda s: all(
        _proc(s, g, i)["status"] == "idle" for _, _, g, i in CASES.values()))
    for num, (_, _, group, ident) in CASES.items():
        proc = _proc(stats, group, ident)
        assert (proc["harakiri_count"], proc["respawns"]) == (1, 1), proc
        sig = stats["signals"][str(num)]
        assert (sig["raised"], sig["routed"], sig["handled"], sig["failed"],
                sig["dropped"]) == (1, 1, 0, 0, {"harakiri": 1}), (num, sig)
    assert not [r for r in inst.results() if r[0] == "woke"]       # never resumed

    # The replacements serve signals, under the same ids; a handler that raises is
    # `failed`, not a harakiri and not a drop, and its process stays.
    for num in (25, 26, 27):
        inst.raise_signal(num)
    lines = inst.wait_results(4, where=lambda r: r[0] == "ran")
    ran = sorted((r[2], r[3], int(r[4])) for r in lines if r[0] == "ran")
    new = {n: _proc(stats, g, i)["pid"] for n, (_, _, g, i) in CASES.items()}
    assert ran == sorted([("w1", "m0", new[21]), ("w2", "m0", new[22]), ("w3", "m0", new[23]),
                          ("w0", "m1", new[24])]), (ran, new)
    stats = inst.stats_when(lambda s: s["signals"]["27"]["failed"] == 1
                            and s["signals"]["25"]["handled"] == 3
                            and s["signals"]["26"]["handled"] == 1)
    assert stats["signals"]["27"]["dropped"] == {}
    assert _proc(stats, "workers", 1)["pid"] == new[21]
    assert _proc(stats, "workers", 1)["harakiri_count"] == 1
    assert inst.stop() == 0
