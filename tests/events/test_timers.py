"""Timers and rb_timers in a running instance (SPEC sections 5, 7, 9, 10, 14).

Bounds are tolerant (a 50 ms timer over one second fires 17..22 times); nothing waits
for a fixed time to pass: "later" is measured by a clock timer the instance itself runs
(`settle`), and every expectation is polled with a deadline.
"""

from __future__ import annotations

import pytest
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

EV = """
import os
import time

import uwsgi

import sbtest


def stamp(num):
    sbtest.record("tick", num, uwsgi.worker_id(), time.monotonic())


def clock(num):
    sbtest.record("clock", num)


def slow(num):
    sbtest.record("slow", num, time.monotonic())
    time.sleep(0.1)


def slowish(num):
    sbtest.record("slowish", num)
    time.sleep(0.05)


def add_from_worker(num):
    uwsgi.add_timer(11, 0.05, 3)
    sbtest.record("added", uwsgi.worker_id())


def add_rb_from_worker(num):
    uwsgi.add_rb_timer(14, 0.05, 2)
    sbtest.record("added-rb", uwsgi.worker_id())


def delete_12(num):
    uwsgi.del_timer(12)
    sbtest.record("deleted", uwsgi.worker_id())


def many():
    for i in range(100):
        uwsgi.register_signal(100 + i, "worker", stamp)
        uwsgi.add_timer(100 + i, 0.2 + i * 0.002)
"""

MANY = """
import ev

ev.many()
"""


def instance(make_instance, settings=None, signals=(), sources="", modules=None):
    """An instance with the `ev` handlers and `sources` (TOML) appended to its config."""
    inst = make_instance({"workers": 1, **(settings or {})}, signals,
                         modules={"ev": EV, **(modules or {})}, start=False)
    if sources:
        with open(inst.config_path, "a") as f:
            f.write("\n" + sources)
    return inst.start()


def lines(inst, kind, num=None):
    return [r for r in inst.results() if r[0] == kind and (num is None or r[1] == str(num))]


def settle(inst, ticks=10, num=None, timeout=15.0):
    """Wait until the clock timer has ticked `ticks` more times: time has passed in the
    instance (better than a sleep: it also proves the instance kept running)."""
    before = len(lines(inst, "clock", num))
    wait_for(lambda: len(lines(inst, "clock", num)) >= before + ticks, timeout,
             message=lambda: f"the clock timer stopped at {len(lines(inst, 'clock'))}; "
                             f"log:\n{inst.log[-3000:]}")


CLOCK = '[[timer]]\nhandler = "python:ev:clock"\ntarget = "{target}"\nseconds = 0.02\n'


# -- [[timer]] in the config ------------------------------------------------------------------

def test_a_50ms_timer_fires_about_20_times_a_second(make_instance):
    inst = instance(make_instance, {"workers": 2}, [{"num": 5, "handler": "python:ev:stamp"}],
                    "[[timer]]\nsignal = 5\nseconds = 0.05\n")
    inst.wait_results(30, where=lambda r: r[0] == "tick")
    times = [float(r[3]) for r in lines(inst, "tick", 5)]
    assert times == sorted(times)
    start = times[3]                                   # past any start-up catch-up
    in_one_second = [t for t in times if start <= t < start + 1.0]
    assert 17 <= len(in_one_second) <= 22, times
    stats = inst.signal_stats(5)
    assert stats["raised"] >= 30
    assert stats["handled"] >= 30
    assert stats["raised"] - stats["handled"] - stats["coalesced"] in (0, 1, 2)
    assert inst.stop() == 0


def test_a_timer_entry_with_a_handler_takes_the_lowest_free_number(make_instance):
    inst = instance(make_instance, {}, [{"num": 0, "handler": "python:ev:clock"},
                                        {"num": 2, "handler": "python:ev:clock"}],
                    '[[timer]]\nhandler = "python:ev:stamp"\nseconds = 0.05\niterations = 2\n')
    inst.wait_results(2, where=lambda r: r[0] == "tick")
    assert {r[1] for r in lines(inst, "tick")} == {"1"}
    assert inst.signal_stats(1)["handler"] == "python:ev:stamp"


def test_a_handler_entry_never_takes_a_number_another_entry_gives(make_instance):
    """SPEC 14: automatic numbers are taken lowest-free after every explicit number is
    placed, `signal = N` of a source entry included (here 1, raised for a waiter)."""
    inst = make_instance({"workers": 1}, [{"num": 0, "handler": "python:ev:clock"}],
                         modules={"ev": EV}, start=False)
    with open(inst.config_path, "a") as f:
        f.write("\n[[timer]]\nsignal = 1\nseconds = 2\n"
                '[[timer]]\nhandler = "python:ev:stamp"\nseconds = 0.5\n')
    res = inst.cli("check", str(inst.config_path))
    assert res.returncode == 0, res.stderr
    table = [line.split() for line in res.stdout.splitlines()
             if line.strip().endswith("python:ev:stamp")]
    assert len(table) == 1, res.stdout
    assert table[0][0] == "2", f"the handler entry took signal {table[0][0]}:\n{res.stdout}"


def test_a_tick_due_before_the_workers_are_up_is_delivered(make_instance):
    """SPEC 5: signals raised before the children are up are held and delivered."""
    inst = instance(make_instance, {"workers": 2}, [{"num": 4, "handler": "python:ev:stamp"}],
                    "[[timer]]\nsignal = 4\nseconds = 0.001\niterations = 1\n"
                    + CLOCK.format(target="worker2"))
    inst.wait_results(1, where=lambda r: r[:2] == ["tick", "4"])
    settle(inst, 10)
    assert len(lines(inst, "tick", 4)) == 1
    assert inst.signal_stats(4)["handled"] == 1


def test_iterations_count_exactly(make_instance):
    inst = instance(make_instance, {"workers": 2}, [{"num": 7, "handler": "python:ev:stamp"}],
                    "[[timer]]\nsignal = 7\nseconds = 0.02\niterations = 5\n"
                    + CLOCK.format(target="worker2"))
    inst.wait_results(5, where=lambda r: r[:2] == ["tick", "7"])
    settle(inst, 15)                                  # 0.3 s more: no sixth tick
    assert len(lines(inst, "tick", 7)) == 5
    stats = inst.signal_stats(7)
    assert stats["handled"] == 5 and stats["raised"] == 5


def test_iterations_count_handled_ticks_even_with_a_slow_handler(make_instance):
    """SPEC 14: a coalesced tick does not count toward `iterations`: a 10 ms timer with
    5 iterations and a 50 ms handler still runs the handler 5 times."""
    inst = instance(make_instance, {"workers": 2},
                    [{"num": 8, "target": "worker1", "handler": "python:ev:slowish"}],
                    "[[timer]]\nsignal = 8\nseconds = 0.01\niterations = 5\n"
                    + CLOCK.format(target="worker2"))
    inst.wait_results(1, where=lambda r: r[0] == "slowish")
    settle(inst, 25)                                  # 0.5 s: enough for 5 x 50 ms
    got = len(lines(inst, "slowish"))
    stats = inst.signal_stats(8)
    assert got == 5, (f"iterations = 5, but the handler ran {got} times; stats: {stats}")


def test_a_slow_handler_on_a_10ms_timer_coalesces_instead_of_building_a_backlog(make_instance):
    inst = instance(make_instance, {"workers": 1}, [{"num": 9, "handler": "python:ev:slow"}],
                    "[[timer]]\nsignal = 9\nseconds = 0.01\n")
    inst.wait_results(8, timeout=20, where=lambda r: r[0] == "slow")   # ~0.8 s of 100 ms calls
    stats = inst.stats()
    sig = stats["signals"]["9"]
    assert sig["coalesced"] >= 30, sig                # ~10 ticks per 100 ms call
    assert sig["dropped"] == {}
    # every tick was either handled or coalesced; at most one queued and one running
    assert 0 <= sig["raised"] - sig["handled"] - sig["coalesced"] <= 2, sig
    assert stats["signal_queue"] <= 1 and inst.worker(1, stats)["signal_queue"] <= 1, stats
    # ... and it stays so: no backlog builds up over time
    inst.wait_results(12, timeout=20, where=lambda r: r[0] == "slow")
    stats = inst.stats()
    sig = stats["signals"]["9"]
    assert 0 <= sig["raised"] - sig["handled"] - sig["coalesced"] <= 2, sig
    assert stats["signal_queue"] <= 1
    assert inst.stop() == 0                           # the running call finishes: exit 0
    handled = len(lines(inst, "slow"))
    assert handled <= sig["handled"] + 3              # nothing piled up to run at the end


def test_a_one_millisecond_timer_fires_and_coalesces(make_instance):
    inst = instance(make_instance, {}, [{"num": 3, "handler": "python:ev:clock"}],
                    "[[timer]]\nsignal = 3\nseconds = 0.001\n")
    wait_for(lambda: len(lines(inst, "clock", 3)) >= 200, 20,
             message=lambda: f"{len(lines(inst, 'clock', 3))} ticks; log:\n{inst.log[-2000:]}")
    sig = inst.signal_stats(3)
    assert sig["raised"] >= 200
    assert 0 <= sig["raised"] - sig["handled"] - sig["coalesced"] <= 2, sig


def test_rb_timer_entries_fire_like_timers(make_instance):
    inst = instance(make_instance, {"workers": 2},
                    [{"num": 31, "handler": "python:ev:stamp"}],
                    "[[rb_timer]]\nsignal = 31\nseconds = 0.05\niterations = 3\n"
                    '[[rb_timer]]\nhandler = "python:ev:stamp"\ntarget = "worker2"\n'
                    "seconds = 0.03\niterations = 2\n"
                    + CLOCK.format(target="worker1"))
    inst.wait_results(3, where=lambda r: r[:2] == ["tick", "31"])
    inst.wait_results(2, where=lambda r: r[0] == "tick" and r[1] != "31")
    settle(inst, 10)
    assert len(lines(inst, "tick", 31)) == 3
    auto = [r for r in lines(inst, "tick") if r[1] != "31"]
    assert [r[2] for r in auto] == ["2", "2"]            # its target: worker2
    assert len({r[1] for r in auto}) == 1


def test_a_timer_on_workers_reaches_every_worker(make_instance):
    inst = instance(make_instance, {"workers": 3},
                    [{"num": 6, "target": "workers", "handler": "python:ev:stamp"}],
                    "[[timer]]\nsignal = 6\nseconds = 0.05\niterations = 2\n")
    inst.wait_results(6, where=lambda r: r[:2] == ["tick", "6"])
    by_worker = sorted(r[2] for r in lines(inst, "tick", 6))
    assert by_worker == ["1", "1", "2", "2", "3", "3"]


def test_a_timer_for_an_unregistered_signal_reaches_a_waiting_worker(make_instance):
    waiter = """
import uwsgi

import sbtest


def wait(num):
    sbtest.record("waiting")
    got = uwsgi.signal_wait(44, timeout=20)
    sbtest.record("got", got)
"""
    inst = instance(make_instance, {}, [{"num": 1, "handler": "python:waiter:wait"}],
                    "[[timer]]\nsignal = 44\nseconds = 0.05\n", modules={"waiter": waiter})
    inst.signal(1)
    inst.wait_results(1, where=lambda r: r[0] == "got")
    assert lines(inst, "got") == [["got", "44"]]
    held = inst.stats()["held"]
    assert held <= 1                                   # ticks coalesce while nobody waits


# -- add_timer / del_timer from code ----------------------------------------------------------

def test_add_timer_from_a_worker_handler_reaches_the_master(make_instance):
    inst = instance(make_instance, {"workers": 2},
                    [{"num": 10, "target": "worker2", "handler": "python:ev:add_from_worker"},
                     {"num": 11, "handler": "python:ev:stamp"},
                     {"num": 13, "target": "worker2", "handler": "python:ev:add_rb_from_worker"},
                     {"num": 14, "handler": "python:ev:stamp"}],
                    CLOCK.format(target="worker1"))
    inst.signal(10)
    inst.signal(13)
    inst.wait_results(3, where=lambda r: r[:2] == ["tick", "11"])
    inst.wait_results(2, where=lambda r: r[:2] == ["tick", "14"])
    settle(inst, 10)
    assert len(lines(inst, "tick", 11)) == 3
    assert len(lines(inst, "tick", 14)) == 2
    assert lines(inst, "added") == [["added", "2"]]


def test_del_timer_from_a_handler_stops_it(make_instance):
    inst = instance(make_instance, {"workers": 2},
                    [{"num": 12, "handler": "python:ev:stamp", "target": "worker1"},
                     {"num": 15, "handler": "python:ev:delete_12", "target": "worker1"}],
                    "[[timer]]\nsignal = 12\nseconds = 0.02\n"
                    "[[timer]]\nsignal = 12\nseconds = 0.03\n"      # del removes both
                    + CLOCK.format(target="worker2"))
    inst.wait_results(5, where=lambda r: r[:2] == ["tick", "12"])
    inst.signal(15)
    inst.wait_results(1, where=lambda r: r[0] == "deleted")

    def stable() -> bool:
        before = inst.signal_stats(12)["raised"]
        settle(inst, 10)                              # 0.2 s of instance time
        return inst.signal_stats(12)["raised"] == before
    wait_for(stable, 20, interval=0, message="signal 12 kept being raised after del_timer")
    raised = inst.signal_stats(12)["raised"]
    settle(inst, 20)
    assert inst.signal_stats(12)["raised"] == raised
    assert "signal 12: 2 timers removed" in inst.log
    sources = inst.stats().get("event_sources")           # where the stats list them
    if sources is not None:
        assert not [s for s in sources if s["signal"] == 12], sources


def test_one_hundred_timers_in_one_instance_all_fire(make_instance):
    """No fixed cap (uWSGI: 64 timers)."""
    inst = make_instance({"workers": 2, "import": ["many100"]},
                         modules={"ev": EV, "many100": MANY})
    want = {str(n) for n in range(100, 200)}
    wait_for(lambda: want <= {r[1] for r in lines(inst, "tick")}, 30,
             message=lambda: f"never fired: {sorted(want - {r[1] for r in lines(inst, 'tick')})}"
                             f"\nlog:\n{inst.log[-2000:]}")
    stats = inst.stats()["signals"]
    assert all(stats[n]["raised"] >= 1 for n in want)
    assert inst.stop() == 0


# -- Lua ---------------------------------------------------------------------------------------

LUA = """
uwsgi.add_timer(24, 0.05, 2)              -- at load, in the master

function start(sig)
    uwsgi.add_timer(21, 0.05, 3)
    uwsgi.add_rb_timer(22, 0.04, 2)
    print("lua: started timers from worker " .. uwsgi.worker_id())
end

function tick(sig)
    print("lua: tick " .. sig .. " on worker " .. uwsgi.worker_id())
end

function stop(sig)
    uwsgi.del_timer(25)
    print("lua: deleted 25")
end
"""


def test_lua_add_timer_and_del_timer(make_instance):
    inst = make_instance({"workers": 2, "lua": ["t.lua"]},
                         [{"num": 20, "handler": "lua:t.lua:start", "target": "worker2"},
                          {"num": 21, "handler": "lua:t.lua:tick"},
                          {"num": 22, "handler": "lua:t.lua:tick"},
                          {"num": 24, "handler": "lua:t.lua:tick"},
                          {"num": 25, "handler": "python:ev:stamp", "target": "worker1"},
                          {"num": 26, "handler": "lua:t.lua:stop", "target": "worker1"}],
                         modules={"ev": EV}, start=False)
    (inst.dir / "t.lua").write_text(LUA)
    with open(inst.config_path, "a") as f:
        f.write("\n[[timer]]\nsignal = 25\nseconds = 0.02\n" + CLOCK.format(target="worker2"))
    inst.start()

    def count(num):
        return inst.stdout.count(f"lua: tick {num} on worker")
    wait_for(lambda: count(24) == 2, 15, message=lambda: inst.stdout + inst.log[-2000:])
    inst.signal(20)
    wait_for(lambda: count(21) == 3 and count(22) == 2, 15,
             message=lambda: inst.stdout + inst.log[-2000:])
    assert "lua: started timers from worker 2" in inst.stdout
    inst.signal(26)
    wait_for(lambda: "lua: deleted 25" in inst.stdout, 15, message=lambda: inst.stdout)

    def stable() -> bool:
        before = len(lines(inst, "tick", 25))
        settle(inst, 10)
        return len(lines(inst, "tick", 25)) == before
    wait_for(stable, 20, interval=0, message="signal 25 kept firing after Lua's del_timer")
    settle(inst, 5)
    assert (count(21), count(22), count(24)) == (3, 2, 2)


def test_lua_timer_errors_carry_the_python_message(make_instance):
    lua = """
function bad(sig)
    local ok, err = pcall(uwsgi.add_timer, 30, 0)
    print("lua: zero period: " .. tostring(err))
    ok, err = pcall(uwsgi.add_timer, 30, -1)
    print("lua: negative period: " .. tostring(err))
    ok, err = pcall(uwsgi.add_timer, 300, 1)
    print("lua: bad number: " .. tostring(err))
    ok, err = pcall(uwsgi.add_timer, 30, 1, -2)
    print("lua: bad iterations: " .. tostring(err))
end
"""
    inst = make_instance({"workers": 1}, [{"num": 1, "handler": "lua:bad.lua:bad"}],
                         start=False)
    (inst.dir / "bad.lua").write_text(lua)
    inst.start()
    inst.signal(1)
    wait_for(lambda: "lua: bad iterations" in inst.stdout, 15, message=lambda: inst.stdout)
    out = {line.split(": ", 2)[1]: line.split(": ", 2)[2] for line in inst.stdout.splitlines()
           if line.startswith("lua: ")}
    assert "seconds" in out["zero period"] and "0" in out["zero period"]
    assert "seconds" in out["negative period"] and "-1" in out["negative period"]
    assert "300" in out["bad number"]
    assert "iterations" in out["bad iterations"] and "-2" in out["bad iterations"]
