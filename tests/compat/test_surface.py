"""The rest of the `uwsgi` surface signal code touches, against uWSGI 2.0.31.

Checked by running uWSGI 2.0.31 with `master`, `processes = 1`, a spooler and `pyrun`:
`uwsgi.opt` maps str keys to bytes values ({'master': b'1', 'spooler': b'/..', ...}),
`hostname` and `version` are bytes, `started_on` an int, `numproc` the worker count,
`is_locked()` False when free, `uwsgi.log(line)` returns True, `i_am_the_spooler()` is
None outside the spooler.  `reload()` and `stop()` are the master's graceful reload and
stop.  Request functions exist and say Switchboard serves no requests.
"""

from __future__ import annotations

import socket
import time

import pytest
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

PROBE = """
import threading
import time

import uwsgi

import sbtest


def attempt(label, func):
    try:
        sbtest.record(label, "ok", repr(func()).replace(" ", ""))
    except Exception as exc:
        sbtest.record(label, type(exc).__name__, str(exc))


def probe(num):
    opt = uwsgi.opt
    sbtest.record("opt", repr(opt["processes"]), repr(opt["master"]), repr(opt["spooler"]),
                  repr(opt["import"]), all(isinstance(k, str) for k in opt))
    sbtest.record("ids", repr(uwsgi.hostname), uwsgi.version.decode(), uwsgi.started_on,
                  uwsgi.numproc, uwsgi.i_am_the_spooler())
    attempt("log", lambda: uwsgi.log("a line from uwsgi.log"))
    attempt("free", lambda: uwsgi.is_locked(3))
    uwsgi.lock(3)
    attempt("held-here", lambda: uwsgi.is_locked(3))
    uwsgi.unlock(3)
    attempt("freed", lambda: uwsgi.is_locked(3))
    attempt("bad-lock", lambda: uwsgi.is_locked(9999))
    attempt("request", lambda: uwsgi.websocket_recv())
    attempt("keyword", lambda: uwsgi.register_signal(signum=7, who="", handler=probe))
    sbtest.record("probed")


def hold(num):
    uwsgi.lock(4)
    sbtest.record("holding")
    sbtest.wait_file("release")
    uwsgi.unlock(4)


def ask(num):
    attempt("held-elsewhere", lambda: uwsgi.is_locked(4))


def reload_me(num):
    sbtest.record("reload", uwsgi.reload())


def stop_me(num):
    sbtest.record("stop", uwsgi.stop())
"""


def test_the_surface_as_uwsgi_has_it(make_instance):
    inst = make_instance({"workers": 2, "spooler": "spool", "import": ["probe"]},
                         [{"num": 1, "target": "worker1", "handler": "python:probe:probe"},
                          {"num": 2, "target": "worker1", "handler": "python:probe:hold"},
                          {"num": 3, "target": "worker2", "handler": "python:probe:ask"}],
                         modules={"probe": PROBE})
    before = int(time.time())
    inst.raise_signal(1)
    inst.wait_results(1, where=lambda r: r[0] == "probed")
    rows = {r[0]: r[1:] for r in inst.results()}
    spool = str(inst.dir / "spool")
    assert rows["opt"] == ["b'2'", "True", repr(spool.encode()), "b'probe'", "True"]
    hostname, version, started, numproc, spooler = rows["ids"]
    assert hostname == repr(socket.gethostname().encode())
    assert version and int(started) <= before + 1 and started.isdigit()
    assert (numproc, spooler) == ("2", "None")
    assert rows["log"] == ["ok", "True"]
    assert "a line from uwsgi.log" in inst.log
    assert rows["free"] == ["ok", "False"]
    assert rows["held-here"] == ["ok", "True"]
    assert rows["freed"] == ["ok", "False"]
    assert rows["bad-lock"][0] == "ValueError"
    assert " ".join(rows["request"]) == (
        "NoRequestsError uwsgi.websocket_recv(): Switchboard serves no requests (it runs "
        "uWSGI's signal framework, not its HTTP/WSGI server)")
    # positional-only, as uWSGI's C functions: keywords are a TypeError
    assert rows["keyword"][0] == "TypeError"
    inst.raise_signal(2)
    inst.wait_results(1, where=lambda r: r[0] == "holding")
    inst.raise_signal(3)
    inst.wait_results(1, where=lambda r: r[0] == "held-elsewhere")
    assert [r[1:] for r in inst.results() if r[0] == "held-elsewhere"] == [["ok", "True"]]
    inst.touch("release")
    assert inst.stop() == 0


def test_reload_and_stop_from_a_handler(make_instance):
    inst = make_instance({"workers": 1, "import": ["probe"]},
                         [{"num": 1, "handler": "python:probe:reload_me"},
                          {"num": 2, "handler": "python:probe:stop_me"}],
                         modules={"probe": PROBE})
    pid = inst.worker_pids()[1]
    inst.raise_signal(1)
    wait_for(lambda: inst.worker_pids().get(1) not in (None, pid), 20,
             message=lambda: inst.log)
    assert "reload" in inst.log
    inst.raise_signal(2)
    assert inst.wait(20) == 0
    assert [r[1:] for r in inst.results() if r[0] in ("reload", "stop")] == [["True"],
                                                                             ["True"]]


LUA = """
local M = {}
function M.go(sig)
    print("LUA locked " .. tostring(uwsgi.is_locked(2)) .. " spooler "
          .. tostring(uwsgi.i_am_the_spooler()))
end
function M.bye(sig) uwsgi.stop() end
return M
"""


def test_lua_has_the_same_names(make_instance):
    inst = make_instance(start=False)
    (inst.dir / "go.lua").write_text(LUA)
    inst.write_config({"workers": 1}, [{"num": 5, "handler": "lua:go.lua:go"},
                                       {"num": 6, "handler": "lua:go.lua:bye"}])
    inst.start()
    inst.raise_signal(5)
    wait_for(lambda: "LUA locked" in inst.stdout, message=lambda: inst.stdout + inst.log)
    assert "LUA locked false spooler nil" in inst.stdout
    inst.raise_signal(6)
    assert inst.wait(20) == 0
