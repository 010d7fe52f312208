"""The event-source side of `uwsgi` and `uwsgidecorators` in a running instance
(SPEC sections 6, 7, 8, 10, 14): the `timer`, `rbtimer`, `cron`, `filemon`, `lock` and
`harakiri` decorators as in uWSGI, argument errors naming the argument, and
`signal_wait_async` on an asyncio loop in a mule program.
"""

from __future__ import annotations

import pytest
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

DECO = """
import os

from uwsgidecorators import *      # brings uwsgi too, as in uWSGI

import sbtest

WATCHED = os.path.join(sbtest.DIR, "watched")


@timer(0.05, target="worker1")
def every_50ms(num):
    sbtest.record("timer", num, uwsgi.worker_id())


@rbtimer(0.05, signum=20)
def rb_every_50ms(num):
    sbtest.record("rbtimer", num, uwsgi.worker_id())


@cron(-1, -1, -1, -1, -1, target="workers")
def every_minute(num):
    sbtest.record("cron", num, uwsgi.worker_id())


@filemon(WATCHED)
def on_change(num):
    sbtest.record("filemon", num, uwsgi.worker_id())


@timer(0.05, signum=21)
def numbered(num):
    sbtest.record("numbered", num)


@signal(22)
def plain(num):
    sbtest.record("plain", num, every_50ms is not None, callable(every_50ms))
"""


def test_decorators_take_the_lowest_free_numbers_and_fire(make_instance):
    inst = make_instance({"workers": 2, "import": ["deco"]},
                         [{"num": 0, "handler": "python:sbtest:mark"},
                          {"num": 2, "handler": "python:sbtest:mark"}],
                         modules={"deco": DECO})
    signals = inst.stats()["signals"]
    # 0 and 2 are the config's: the decorators without signum take 1, 3, 4, 5 in order
    assert signals["1"]["handler"] == "python:deco:every_50ms"
    assert signals["1"]["target"] == "worker1"
    assert signals["20"]["handler"] == "python:deco:rb_every_50ms"
    assert signals["3"]["handler"] == "python:deco:every_minute"
    assert signals["3"]["target"] == "workers"
    assert signals["4"]["handler"] == "python:deco:on_change"
    assert signals["21"]["handler"] == "python:deco:numbered"
    assert signals["22"]["handler"] == "python:deco:plain"
    assert "5" not in signals

    inst.wait_results(3, where=lambda r: r[0] == "timer")
    inst.wait_results(3, where=lambda r: r[0] == "rbtimer")
    inst.wait_results(3, where=lambda r: r[0] == "numbered")
    inst.wait_results(2, where=lambda r: r[0] == "cron")       # at start-up, on both workers
    results = inst.results()
    assert {tuple(r[1:]) for r in results if r[0] == "timer"} == {("1", "1")}
    assert {r[1] for r in results if r[0] == "rbtimer"} == {"20"}
    assert {r[1] for r in results if r[0] == "numbered"} == {"21"}
    assert sorted(r[2] for r in results if r[0] == "cron")[:2] == ["1", "2"]

    def changed() -> bool:
        with open(inst.dir / "watched", "a") as f:
            f.write("x")
        return any(r[0] == "filemon" for r in inst.results())
    wait_for(changed, 15, interval=0.1, message=lambda: inst.log[-2000:])
    assert {r[1] for r in inst.results() if r[0] == "filemon"} == {"4"}
    inst.signal(22)
    inst.wait_results(1, where=lambda r: r[0] == "plain")
    assert [r for r in inst.results() if r[0] == "plain"] == [["plain", "22", "True", "True"]]
    assert inst.stop() == 0


# -- @harakiri and @lock --------------------------------------------------------------------------

GUARDED = """
import os
import time

from uwsgidecorators import harakiri, lock

import sbtest


@harakiri(1)
def stuck(num):
    sbtest.record("stuck", os.getpid())
    time.sleep(30)
    sbtest.record("woke")


@harakiri(1)
def quick(num):
    sbtest.record("quick", os.getpid())


def long_undecorated(num):
    sbtest.record("long", os.getpid())
    time.sleep(1.6)                    # past the 1 s of the earlier @harakiri(1) call
    sbtest.record("long-done", os.getpid())


@lock
def serial(num):
    sbtest.record("enter", uwsgi_id(), time.monotonic())
    time.sleep(0.15)
    sbtest.record("exit", uwsgi_id(), time.monotonic())


def uwsgi_id():
    import uwsgi
    if uwsgi.i_am_the_spooler():
        return "spooler"
    return "w%d" % uwsgi.worker_id()


def spooler(job):
    import uwsgi
    return uwsgi.SPOOL_OK
"""


def test_harakiri_decorator_kills_a_call_that_runs_too_long(make_instance):
    inst = make_instance({"workers": 1},
                         [{"num": 1, "handler": "python:guarded:quick"},
                          {"num": 2, "handler": "python:guarded:long_undecorated"},
                          {"num": 3, "handler": "python:guarded:stuck"}],
                         modules={"guarded": GUARDED})
    pid = inst.worker_pids()[1]
    inst.signal(1)
    inst.signal(2)                     # the limit ended with the decorated call
    inst.wait_results(1, where=lambda r: r[0] == "long-done")
    stats = inst.stats()
    assert inst.worker(1, stats)["pid"] == pid and inst.worker(1, stats)["harakiri_count"] == 0
    inst.signal(3)
    inst.wait_results(1, where=lambda r: r[0] == "stuck")

    def replaced():
        w = inst.worker(1)
        return w if w["pid"] not in (0, pid) and w["status"] == "idle" else None
    worker = wait_for(replaced, 20, interval=0.2, message=lambda: inst.log[-3000:])
    assert worker["harakiri_count"] == 1 and worker["respawns"] == 1
    assert "harakiri" in inst.log
    assert not [r for r in inst.results() if r[0] == "woke"]
    inst.signal(1)                     # the replacement serves
    inst.wait_results(2, where=lambda r: r[0] == "quick")


def test_lock_decorator_serialises_workers_and_does_nothing_in_the_spooler(make_instance):
    inst = make_instance({"workers": 3, "spooler": "spool", "import": ["guarded"]},
                         [{"num": 5, "target": "workers", "handler": "python:guarded:serial"},
                          {"num": 6, "target": "spooler", "handler": "python:guarded:serial"}],
                         modules={"guarded": GUARDED
                                  + "\nimport uwsgi\nuwsgi.spooler = spooler\n"})
    inst.signal(6)
    inst.signal(5)
    inst.wait_results(3, where=lambda r: r[0] == "exit")
    wait_for(lambda: inst.signal_stats(6)["handled"] == 1, 10,
             message=lambda: str(inst.signal_stats(6)))
    rows = inst.results()
    assert not [r for r in rows if r[1] == "spooler"]          # not run in the spooler
    spans = sorted((float(e[2]), float(x[2])) for e in rows if e[0] == "enter"
                   for x in rows if x[0] == "exit" and x[1] == e[1])
    assert len(spans) == 3 and {r[1] for r in rows if r[0] == "enter"} == {"w1", "w2", "w3"}
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"two workers were inside @lock at once: {spans}"


# -- argument errors ---------------------------------------------------------------------

ERRORS = """
import uwsgi

import sbtest


def attempt(name, call):
    try:
        call()
        sbtest.record("ok", name)
    except (TypeError, ValueError) as exc:
        sbtest.record("err", name, type(exc).__name__, str(exc).replace(" ", "_"))


def probe(num):
    attempt("timer-zero", lambda: uwsgi.add_timer(40, 0))
    attempt("timer-tiny", lambda: uwsgi.add_timer(40, 0.0001))
    attempt("timer-type", lambda: uwsgi.add_timer(40, "1"))
    attempt("timer-num", lambda: uwsgi.add_timer(300, 1))
    attempt("timer-iter", lambda: uwsgi.add_timer(40, 1, -1))
    attempt("rb-negative", lambda: uwsgi.add_rb_timer(40, -2))
    attempt("fm-empty", lambda: uwsgi.add_file_monitor(40, ""))
    attempt("fm-type", lambda: uwsgi.add_file_monitor(40, 5))
    attempt("fm-recursive", lambda: uwsgi.add_file_monitor(40, "/tmp", recursive="yes"))
    attempt("del-num", lambda: uwsgi.del_timer(-1))
    attempt("harakiri", lambda: uwsgi.set_user_harakiri(-1))
    attempt("timer-ms", lambda: uwsgi.add_timer(41, 0.001, 3))
    attempt("async-num", lambda: __import__("asyncio").run(uwsgi.signal_wait_async(999, 0.01)))
"""


def test_bad_arguments_raise_errors_naming_the_argument(make_instance):
    inst = make_instance({"workers": 1}, [{"num": 1, "handler": "python:errors:probe"},
                                          {"num": 41, "handler": "python:sbtest:mark"}],
                         modules={"errors": ERRORS})
    inst.signal(1)
    inst.wait_results(13, where=lambda r: r[0] in ("ok", "err"))
    got = {r[1]: r[2:] for r in inst.results() if r[0] in ("ok", "err")}
    expect = {
        "timer-zero": ("ValueError", ["seconds", "0"]),
        "timer-tiny": ("ValueError", ["seconds", "0.0001"]),
        "timer-type": ("TypeError", ["seconds"]),
        "timer-num": ("ValueError", ["300"]),
        "timer-iter": ("ValueError", ["iterations", "-1"]),
        "rb-negative": ("ValueError", ["seconds", "-2"]),
        "fm-empty": (("TypeError", "ValueError"), ["path"]),
        "fm-type": ("TypeError", ["path"]),
        "fm-recursive": ("TypeError", ["recursive"]),
        "del-num": ("ValueError", ["-1"]),
        "harakiri": ("ValueError", ["seconds"]),
        "async-num": ("ValueError", ["999"]),
    }
    for name, (kind, words) in expect.items():
        assert got[name][0] in ((kind,) if isinstance(kind, str) else kind), (name, got[name])
        for word in words:
            assert word in got[name][1], (name, got[name])
    assert got["timer-ms"] == []                     # 1 ms is the smallest valid period
    inst.wait_results(3, where=lambda r: r[0] == "41")


# -- signal_wait_async in a mule program ------------------------------------------------

ASYNC = """
import asyncio

import uwsgi

import sbtest


def program():
    asyncio.run(main())


async def main():
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    got = await uwsgi.signal_wait_async(timeout=0.3)
    sbtest.record("timeout", got, ticks >= 5)
    sbtest.record("waiting", ticks)
    got = await uwsgi.signal_wait_async(timeout=30)
    sbtest.record("got", got, uwsgi.signal_received(), ticks)
    got = await uwsgi.signal_wait_async(72, timeout=30)
    sbtest.record("got72", got)
    uwsgi.add_timer(73, 0.05, 1)                               # from a mule, too
    got = await uwsgi.signal_wait_async(timeout=30)            # its tick
    sbtest.record("tick", got)
    task.cancel()
    sbtest.record("done")
"""


def test_signal_wait_async_in_a_mule_program_on_an_asyncio_loop(make_instance):
    inst = make_instance({"workers": 1, "mules": 1},
                         [{"num": 71, "target": "mule1", "handler": "python:sbtest:mark"},
                          {"num": 72, "target": "mule1", "handler": "python:sbtest:mark"},
                          {"num": 73, "target": "mule1", "handler": "python:sbtest:mark"}],
                         modules={"aprog": ASYNC}, start=False)
    with open(inst.config_path, "a") as f:
        f.write('\n[[mule]]\nid = 1\nprogram = "python:aprog:program"\n')
    inst.start()
    inst.wait_results(1, where=lambda r: r[0] == "waiting")
    rows = inst.results()
    assert ["timeout", "None", "True"] in rows           # None on timeout; the loop ran
    inst.signal(71)                    # (addressed to the mule: kept for it until it reads)
    inst.wait_results(1, where=lambda r: r[0] == "got")
    rows = inst.results()
    waiting_ticks = int(next(r for r in rows if r[0] == "waiting")[1])
    got = next(r for r in rows if r[0] == "got")
    assert got[1:3] == ["71", "71"]
    assert int(got[3]) > waiting_ticks                   # the loop kept running meanwhile
    assert [r[:2] for r in rows if r[0] == "71"] == [["71", "0"]]    # its handler ran first

    inst.signal(71)                    # while waiting for 72: handled, the wait goes on
    inst.wait_results(2, where=lambda r: r[0] == "71")
    assert not [r for r in inst.results() if r[0] == "got72"]
    inst.signal(72)
    inst.wait_results(1, where=lambda r: r[0] == "got72")
    assert [r for r in inst.results() if r[0] == "got72"] == [["got72", "72"]]
    inst.wait_results(1, where=lambda r: r[0] == "done")
    assert [r for r in inst.results() if r[0] == "tick"] == [["tick", "73"]]
    assert inst.stop() == 0
