"""Cron entries in a running instance (SPEC sections 7, 9, 10, 14).

A cron entry fires once per matching minute of local time and, at start-up, at once
only if the current minute matches.  A test cannot wait for minutes to pass, so these
tests use entries that match every minute (they fire at once) or a minute half an hour
away (they must not fire); the exact minute-by-minute rule is tested with injected
clocks in tests/unit/test_schedule.py.
"""

from __future__ import annotations

import datetime as dt

import pytest
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

EV = """
import time

import uwsgi

import sbtest


def minute(num):
    sbtest.record("cron", num, uwsgi.worker_id(), time.strftime("%Y%m%d%H%M"))


def clock(num):
    sbtest.record("clock", num)


def add_every_minute(num):
    ok = uwsgi.add_cron(41, -1, -1, -1, -1, -1)
    sbtest.record("added", ok)


def delete_42(num):
    uwsgi.del_cron(42)
    sbtest.record("deleted")


def bad_calls(num):
    for name, call in [
        ("minute", lambda: uwsgi.add_cron(43, 60, -1, -1, -1, -1)),
        ("weekday", lambda: uwsgi.add_cron(43, -1, -1, -1, -1, 8)),
        ("day", lambda: uwsgi.add_cron(43, -1, -1, 0, -1, -1)),
        ("type", lambda: uwsgi.add_cron(43, "5", -1, -1, -1, -1)),
        ("signum", lambda: uwsgi.add_cron(256, -1, -1, -1, -1, -1)),
    ]:
        try:
            call()
            sbtest.record("bad", name, "accepted")
        except (ValueError, TypeError) as exc:
            sbtest.record("bad", name, type(exc).__name__, str(exc).replace(" ", "_"))


def many():
    for i in range(70):
        uwsgi.register_signal(100 + i, "worker", minute)
        uwsgi.add_cron(100 + i, -1, -1, -1, -1, -1)
"""

CLOCK = '[[timer]]\nhandler = "python:ev:clock"\nseconds = 0.02\n'


def instance(make_instance, settings=None, signals=(), sources="", modules=None,
             start=True):
    inst = make_instance({"workers": 1, **(settings or {})}, signals,
                         modules={"ev": EV, **(modules or {})}, start=False)
    if sources:
        with open(inst.config_path, "a") as f:
            f.write("\n" + sources)
    return inst.start() if start else inst


def lines(inst, kind, num=None):
    return [r for r in inst.results() if r[0] == kind and (num is None or r[1] == str(num))]


def settle(inst, ticks=10, timeout=15.0):
    before = len(lines(inst, "clock"))
    wait_for(lambda: len(lines(inst, "clock")) >= before + ticks, timeout,
             message=lambda: f"the clock timer stopped; log:\n{inst.log[-3000:]}")


def far_minute() -> int:
    """A minute of the hour half an hour from now: it cannot match during a test."""
    return (dt.datetime.now().minute + 30) % 60


def once_per_minute(records: list[list[str]]) -> bool:
    minutes = [r[3] for r in records]
    return len(minutes) == len(set(minutes))


# -- config entries ----------------------------------------------------------------------------

def test_an_every_minute_expression_fires_at_start_up_once_in_the_minute(make_instance):
    inst = instance(make_instance, {}, [{"num": 5, "handler": "python:ev:minute"}],
                    '[[cron]]\nsignal = 5\nexpr = "* * * * *"\n' + CLOCK)
    inst.wait_results(1, where=lambda r: r[:2] == ["cron", "5"])
    settle(inst, 25)                                # 0.5 s more: never twice in a minute
    records = lines(inst, "cron", 5)
    assert 1 <= len(records) <= 2 and once_per_minute(records), records
    stats = inst.signal_stats(5)
    assert stats["raised"] == stats["handled"] == len(records)
    assert inst.stop() == 0


def test_uwsgi_integers_and_handler_entries(make_instance):
    inst = instance(make_instance, {"workers": 2}, [{"num": 0, "handler": "python:ev:clock"}],
                    "[[cron]]\nsignal = 6\nminute = -1\nhour = -1\nday = -1\nmonth = -1\n"
                    "weekday = -1\n"
                    '[[cron]]\nhandler = "python:ev:minute"\ntarget = "workers"\n'
                    '[[cron]]\nhandler = "python:ev:minute"\nexpr = "*/1 * * * *"\n'
                    '[[signal]]\nnum = 6\nhandler = "python:ev:minute"\n')
    # 0 and 6 are taken: the handler entries get 1 and 2
    inst.wait_results(1, where=lambda r: r[:2] == ["cron", "6"])
    inst.wait_results(2, where=lambda r: r[:2] == ["cron", "1"])
    inst.wait_results(1, where=lambda r: r[:2] == ["cron", "2"])
    assert sorted(r[2] for r in lines(inst, "cron", 1))[:2] == ["1", "2"]   # both workers
    assert inst.signal_stats(1)["target"] == "workers"


def test_a_cron_whose_minute_is_not_now_does_not_fire_at_start_up(make_instance):
    far = far_minute()
    inst = instance(make_instance, {}, [{"num": 7, "handler": "python:ev:minute"},
                                        {"num": 8, "handler": "python:ev:minute"}],
                    f"[[cron]]\nsignal = 7\nminute = {far}\n"
                    f'[[cron]]\nsignal = 8\nexpr = "{far} * * * *"\n'
                    '[[cron]]\nsignal = 9\nexpr = "* * * * *"\n'
                    '[[signal]]\nnum = 9\nhandler = "python:ev:minute"\n' + CLOCK)
    inst.wait_results(1, where=lambda r: r[:2] == ["cron", "9"])    # the matching one fired
    settle(inst, 25)
    assert lines(inst, "cron", 7) == [] and lines(inst, "cron", 8) == []
    stats = inst.stats()["signals"]
    assert stats["7"]["raised"] == 0 and stats["8"]["raised"] == 0


def test_an_impossible_date_never_fires_and_does_not_stop_the_rest(make_instance):
    """`expr = "0 0 31 2 *"` is a valid crontab line that never comes: it must neither
    fire nor disturb the master (timers, other crons, raised signals)."""
    inst = instance(make_instance, {}, [{"num": 10, "handler": "python:ev:minute"},
                                        {"num": 11, "handler": "python:ev:minute"},
                                        {"num": 12, "handler": "python:ev:clock"}],
                    '[[cron]]\nsignal = 10\nexpr = "0 0 31 2 *"\n'
                    "[[cron]]\nsignal = 10\nminute = 0\nhour = 0\nday = 30\nmonth = 2\n"
                    '[[cron]]\nsignal = 11\nexpr = "* * * * *"\n' + CLOCK, start=False)
    inst.start(wait_ready=False)
    wait_for(lambda: "ready:" in inst.log, 10,
             message=lambda: f"no 'ready:' line; the log starts:\n{inst.log[:3000]}")
    inst.wait_results(1, where=lambda r: r[:2] == ["cron", "11"])
    settle(inst, 10)
    inst.signal(12)
    inst.wait_results(1, where=lambda r: r[:2] == ["clock", "12"])
    assert lines(inst, "cron", 10) == []
    assert "internal error" not in inst.log and "Traceback" not in inst.log, inst.log[-3000:]


def test_seventy_crons_in_one_instance_all_fire(make_instance):
    """No fixed cap (uWSGI: 64 crons)."""
    inst = make_instance({"workers": 2, "import": ["many70"]},
                         modules={"ev": EV, "many70": "import ev\nev.many()\n"})
    want = {str(n) for n in range(100, 170)}
    wait_for(lambda: want <= {r[1] for r in lines(inst, "cron")}, 20,
             message=lambda: f"never fired: {sorted(want - {r[1] for r in lines(inst, 'cron')})}")


# -- add_cron / del_cron from code --------------------------------------------------------------

def test_add_cron_from_a_worker_handler_fires_in_the_current_minute(make_instance):
    inst = instance(make_instance, {"workers": 2},
                    [{"num": 40, "handler": "python:ev:add_every_minute"},
                     {"num": 41, "handler": "python:ev:minute"}])
    inst.signal(40)
    inst.wait_results(1, where=lambda r: r[:2] == ["cron", "41"])
    assert lines(inst, "added") == [["added", "True"]]
    assert "signal 41: cron -1 -1 -1 -1 -1" in inst.log


def test_add_cron_rejects_bad_fields_with_messages_naming_them(make_instance):
    inst = instance(make_instance, {}, [{"num": 1, "handler": "python:ev:bad_calls"}])
    inst.signal(1)
    inst.wait_results(5, where=lambda r: r[0] == "bad")
    got = {r[1]: r[2:] for r in lines(inst, "bad")}
    assert got["minute"][0] == "ValueError" and "minute_=_60" in got["minute"][1]
    assert got["weekday"][0] == "ValueError" and "weekday_=_8" in got["weekday"][1]
    assert got["day"][0] == "ValueError" and "day_=_0" in got["day"][1]
    assert got["type"][0] == "TypeError" and "minute" in got["type"][1]
    assert got["signum"][0] == "ValueError" and "256" in got["signum"][1]


def test_del_cron_removes_the_entries_of_that_number(make_instance):
    inst = instance(make_instance, {}, [{"num": 42, "handler": "python:ev:minute"},
                                        {"num": 43, "handler": "python:ev:delete_42"}],
                    '[[cron]]\nsignal = 42\nexpr = "* * * * *"\n'
                    "[[cron]]\nsignal = 42\nminute = -1\n")
    inst.wait_results(2, where=lambda r: r[:2] == ["cron", "42"])   # two entries, both fired
    inst.signal(43)
    inst.wait_results(1, where=lambda r: r[0] == "deleted")
    wait_for(lambda: "signal 42: 2 crons removed" in inst.log, 10, message=lambda: inst.log)
    sources = inst.stats().get("event_sources")           # where the stats list them
    if sources is not None:
        assert not [s for s in sources if s["signal"] == 42], sources


LUA = """
function add(sig)
    local ok = uwsgi.add_cron(50, -1, -1, -1, -1, -1)
    print("lua: add_cron returned " .. tostring(ok))
    local good, err = pcall(uwsgi.add_cron, 51, 99, -1, -1, -1, -1)
    print("lua: bad minute: " .. tostring(err))
end

function fired(sig)
    print("lua: cron " .. sig .. " on worker " .. uwsgi.worker_id())
end

function remove(sig)
    uwsgi.del_cron(50)
    print("lua: removed")
end
"""


def test_lua_add_cron_and_del_cron(make_instance):
    inst = make_instance({"workers": 1},
                         [{"num": 49, "handler": "lua:c.lua:add"},
                          {"num": 50, "handler": "lua:c.lua:fired"},
                          {"num": 52, "handler": "lua:c.lua:remove"}], start=False)
    (inst.dir / "c.lua").write_text(LUA)
    inst.start()
    inst.signal(49)
    wait_for(lambda: "lua: cron 50 on worker 1" in inst.stdout, 15,
             message=lambda: inst.stdout + inst.log[-2000:])
    assert "lua: add_cron returned true" in inst.stdout
    bad = next(line for line in inst.stdout.splitlines() if "bad minute" in line)
    assert "minute" in bad and "99" in bad
    inst.signal(52)
    wait_for(lambda: "signal 50: 1 crons removed" in inst.log, 15, message=lambda: inst.log)
