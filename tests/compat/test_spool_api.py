"""The spooler's API as uWSGI 2.0.31 hands it over, in Python and in Lua (SPEC §8, §9).

Each expectation was checked by running uWSGI 2.0.31 (/work/uwsgi-venv/bin/uwsgi) with
the same calls: spool() and send_to_spooler() return the job's path as bytes, a
`priority` job lands in the numbered sub-folder, the spooler function gets bytes keys
(but str 'body' and 'spooler_task_name') and bytes values, @spool hands str and
unpickles pass_arguments, spooler_jobs() lists the folder's job files as bytes,
spooler_get_task() reads one (None for a missing file), spooler_pids() is a list of
ints, i_am_the_spooler() is None outside the spooler.
"""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.timeout(60)

JOBS = """
import json
import os
import time

import uwsgi
from uwsgidecorators import manage_spool_request, spool

import sbtest

SPOOL = os.path.join(sbtest.DIR, "spool")


def js(value):
    return json.dumps(value, separators=(",", ":"))


def show(value):
    if isinstance(value, bytes):
        return "b:" + value.decode()
    return value


def spooler(job):
    if "ud_spool_func" in job or b"ud_spool_func" in job:
        return manage_spool_request(job)
    sbtest.record("raw", js(sorted([show(k), show(v)] for k, v in job.items())),
                  "%.3f" % time.time(), uwsgi.i_am_the_spooler())
    return uwsgi.SPOOL_OK


uwsgi.spooler = spooler


@spool(pass_arguments=True)
def with_args(*args, **kwargs):
    sbtest.record("args", js([list(args), kwargs]), "%.3f" % time.time())


@spool
def plain(arguments):
    sbtest.record("plain", js(sorted(arguments.items())))


def attempt(label, func):
    try:
        sbtest.record(label, "ok", show(func()))
    except Exception as exc:
        sbtest.record(label, type(exc).__name__, str(exc))


def go(num):
    at = time.time() + 1.5
    later = uwsgi.send_to_spooler({b"name": b"later", b"at": str(at).encode()})
    sbtest.record("later", "%.3f" % at, type(later).__name__, later.decode())
    sbtest.record("jobs", js([p.decode() for p in uwsgi.spooler_jobs()]))
    task = uwsgi.spooler_get_task(later.decode())
    sbtest.record("task", js(sorted([show(k), show(v)] for k, v in task.items())))
    sbtest.record("no-task", uwsgi.spooler_get_task(os.path.join(SPOOL, "missing")))
    p3 = uwsgi.spool({b"name": b"p3", b"priority": b"3"})
    sbtest.record("priority", os.path.dirname(p3.decode()) == os.path.join(SPOOL, "3"))
    uwsgi.spool({"name": "body", "body": b"BODY"})
    uwsgi.spool(name=b"kw", spooler=SPOOL.encode())
    attempt("other-spooler", lambda: uwsgi.spool({b"a": b"b", b"spooler": b"/elsewhere"}))
    attempt("bad-priority", lambda: uwsgi.spool({b"a": b"b", b"priority": b"high"}))
    attempt("frequency", lambda: uwsgi.set_spooler_frequency(0.2))
    with_args({"key": "value"}, 2, key1="value1", at=str(at))
    plain(name="decoded", other=b"bytes")
    sbtest.record("pids", js(uwsgi.spooler_pids()), uwsgi.spooler_pid(),
                  uwsgi.spooler_dir().decode(), uwsgi.i_am_the_spooler())
    sbtest.record("go-done")
"""


def test_the_spooler_api_as_uwsgi_hands_it_over(make_instance):
    inst = make_instance({"workers": 1, "spooler": "spool", "import": ["jobs"]},
                         [{"num": 100, "handler": "python:jobs:go"}],
                         modules={"jobs": JOBS})
    spool = str(inst.dir / "spool")
    inst.raise_signal(100)
    inst.wait_results(1, where=lambda r: r[0] == "go-done")
    rows = {r[0]: r[1:] for r in inst.results()}
    at, kind, later = rows["later"]
    assert kind == "bytes" and os.path.dirname(later) == spool
    assert later in json.loads(rows["jobs"][0])          # not due yet: still listed
    assert ["b:name", "b:later"] in json.loads(rows["task"][0])
    assert ["spooler_task_name", "b:" + later] in json.loads(rows["task"][0])
    assert rows["no-task"] == ["None"]
    assert rows["priority"] == ["True"]
    assert " ".join(rows["other-spooler"]) == (f"ValueError spool(): spooler b'/elsewhere' "
                                               f"is not this instance's spool folder ({spool})")
    assert rows["bad-priority"][0] == "ValueError"
    assert rows["frequency"] == ["ok", "True"]
    pids, pid, folder, spooler_here = rows["pids"]
    stats = inst.stats()
    assert json.loads(pids) == [int(pid)] == [stats["spoolers"][0]["pid"]]
    assert folder == spool and spooler_here == "None"

    inst.wait_results(1, timeout=20, where=lambda r: r[0] == "args")
    inst.wait_results(4, timeout=20, where=lambda r: r[0] == "raw")
    raws = [r for r in inst.results() if r[0] == "raw"]
    jobs = {dict(json.loads(r[1])).get("b:name"): (json.loads(r[1]), float(r[2]), r[3])
            for r in raws}
    # bytes keys and values, but str 'body' and 'spooler_task_name'; run in the spooler
    body, _, where = jobs["b:body"]
    assert ["body", "b:BODY"] in body and where == "True"
    assert all(k in ("body", "spooler_task_name") or k.startswith("b:") for k, _ in body)
    assert ["b:spooler", "b:" + spool] in jobs["b:kw"][0]
    # `at`: not before its time (the file's mtime says when, as uWSGI)
    assert jobs["b:later"][1] >= float(at) - 0.01
    args = next(r for r in inst.results() if r[0] == "args")
    assert json.loads(args[1]) == [[{"key": "value"}, 2], {"key1": "value1"}]
    assert float(args[2]) >= float(at) - 0.01       # at= went to the job, not the function
    inst.wait_results(1, where=lambda r: r[0] == "plain")
    plain = next(r for r in inst.results() if r[0] == "plain")
    assert ["name", "decoded"] in json.loads(plain[1])
    assert ["other", "bytes"] in json.loads(plain[1])       # @spool hands str values
    assert ["ud_spool_func", "plain"] in json.loads(plain[1])
    assert inst.stop() == 0


LUA = """
local M = {}
function M.go(sig)
    local path = uwsgi.spool({name = "lua", priority = 2})
    local later = uwsgi.spool({name = "later", at = os.time() + 3600})
    local jobs = uwsgi.spooler_jobs()
    local task = uwsgi.spooler_get_task(later)
    print("LUA jobs " .. #jobs .. " " .. tostring(jobs[1] == later) .. " task " .. task.name
          .. " pids " .. #uwsgi.spooler_pids() .. " missing "
          .. tostring(uwsgi.spooler_get_task("/nonexistent")))
    print("LUA spool " .. type(path) .. " " .. path)
    print("LUA pid " .. uwsgi.spooler_pid() .. " locked " .. tostring(uwsgi.is_locked()))
    print("LUA spooler " .. tostring(uwsgi.i_am_the_spooler()))
    local ok, err = pcall(uwsgi.spool, {a = "b", priority = "high"})
    print("LUA bad " .. tostring(ok) .. " " .. tostring(err))
end
return M
"""

LUA_SPOOLER = """
import uwsgi
import sbtest


def spooler(job):
    sbtest.record("lua-job", job[b"name"].decode(), job[b"priority"].decode())
    return uwsgi.SPOOL_OK


uwsgi.spooler = spooler
"""


def test_lua_spools_and_asks_about_the_spooler(make_instance, wait_for):
    inst = make_instance(start=False, modules={"luajobs": LUA_SPOOLER})
    (inst.dir / "go.lua").write_text(LUA)
    inst.write_config({"workers": 1, "spooler": "spool", "import": ["luajobs"]},
                      [{"num": 5, "handler": "lua:go.lua:go"}])
    inst.start()
    inst.raise_signal(5)
    inst.wait_results(1, where=lambda r: r[0] == "lua-job")
    assert [r[1:] for r in inst.results() if r[0] == "lua-job"] == [["lua", "2"]]
    wait_for(lambda: "LUA bad" in inst.stdout, message=lambda: inst.stdout + inst.log)
    out = inst.stdout
    spool = str(inst.dir / "spool")
    assert f"LUA spool string {spool}/2/uwsgi_spoolfile_on_" in out, out
    assert f"LUA pid {inst.stats()['spoolers'][0]['pid']} locked false" in out, out
    assert "LUA spooler nil" in out, out
    # lists and dicts come back as Lua tables: the later job is the folder's one job
    assert "LUA jobs 1 true task later pids 1 missing nil" in out, out
    assert "LUA bad false" in out and "'priority' must be a whole number" in out, out
    assert inst.stop() == 0
