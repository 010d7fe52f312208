"""The spooler (SPEC sections 2, 4, 8, 10, 12): durable spool jobs and the `spooler` target.

`uwsgi.spool()` and `@spool` write jobs into the spool directory; the spooler process
runs the spooler function and acts on its return value (SPOOL_OK removes the job,
SPOOL_RETRY keeps it for the next scan, SPOOL_IGNORE leaves it alone); a job whose
function raises is kept; jobs survive a dead spooler, spooler-harakiri and a restart
of the whole runtime.
"""

from __future__ import annotations

import os
import re
import signal as unix
from collections import Counter

import pytest

pytestmark = pytest.mark.timeout(60)

JOB_PREFIX = "uwsgi_spoolfile_on_"

# The spooler function every test here uses.  Each run records
#   run <name> <attempt> <i_am_the_spooler> w<worker_id> m<mule_id> <pid> <monotonic>
# and the job's `kind` says what it returns.
JOBS = """
import os
import time

import uwsgi

import sbtest

SPOOL = os.path.join(sbtest.DIR, "spool")


def attempts(name):
    try:
        with open(sbtest.RESULTS) as f:
            return sum(1 for line in f if line.split()[:2] == ["run", name])
    except FileNotFoundError:
        return 0


def spooler(job):
    name = job.get(b"name", b"-").decode()
    kind = job.get(b"kind", b"ok").decode()
    n = attempts(name) + 1
    sbtest.record("run", name, n, uwsgi.i_am_the_spooler(), "w%d" % uwsgi.worker_id(),
                  "m%d" % uwsgi.mule_id(), os.getpid(), "%.3f" % time.monotonic())
    if kind == "retry":                       # kept twice, done the third time
        return uwsgi.SPOOL_OK if n >= 3 else uwsgi.SPOOL_RETRY
    if kind == "raise":                       # fails once, done the second time
        if n == 1:
            raise RuntimeError("spool job %s failed on purpose" % name)
        return uwsgi.SPOOL_OK
    if kind == "ignore":
        return uwsgi.SPOOL_IGNORE
    if kind == "tick":                        # kept for ever: one run per scan
        return uwsgi.SPOOL_RETRY
    if kind == "block":                       # holds this spooler until `release` exists
        sbtest.wait_file("release")
        sbtest.record("released", name, os.getpid())
        return uwsgi.SPOOL_OK
    if kind == "stuck":                       # runs past spooler-harakiri the first time
        if n == 1:
            time.sleep(30)
            sbtest.record("woke", name)
        return uwsgi.SPOOL_OK
    return uwsgi.SPOOL_OK


uwsgi.spooler = spooler

REQUESTS = {}          # signal number -> [(name, kind)], set by each test's module


def spool_jobs(num):
    paths = [uwsgi.spool({"name": name, "kind": kind}) for name, kind in REQUESTS[num]]
    sbtest.record("spooled", num, uwsgi.i_am_the_spooler(), "w%d" % uwsgi.worker_id(),
                  *[os.path.basename(p.decode()) for p in paths])
"""


def jobs_module(requests: dict[int, list[tuple[str, str]]], extra: str = "") -> str:
    return JOBS + f"\nREQUESTS.update({requests!r})\n" + extra










def _runs(inst, name=None):
    return [r for r in inst.results() if r[0] == "run" and (name is None or r[1] == name)]


def _job_files(folder):
    try:
        return sorted(n for n in os.listdir(folder) if n.startswith(JOB_PREFIX))
    except FileNotFoundError:
        return []


def _spool_settings(**extra):
    return {"workers": 1, "spooler": "spool", "import": ["jobs"], **extra}


def _spooler_totals(stats):
    keys = ("jobs_done", "jobs_failed", "jobs_retried")
    return {k: sum(s[k] for s in stats["spoolers"]) for k in keys}


# ---------------------------------------------------------------------------------------

BASIC = """

def spool_basic(num):
    p1 = uwsgi.spool({"name": "dict1", b"bkey": b"bval", "skey": "sval"}).decode()
    p2 = uwsgi.spool(b"raw-bytes-body").decode()
    errors = []
    for bad in (42, ["x"]):
        try:
            uwsgi.spool(bad)
        except TypeError as exc:
            errors.append(type(exc).__name__)
    sbtest.record("basic-spooled", uwsgi.i_am_the_spooler(), os.path.dirname(p1) == SPOOL,
                  os.path.basename(p1), os.path.basename(p2), *errors)


def describe(job):
    task = job["spooler_task_name"].decode()
    body = {k: v for k, v in job.items() if k != "spooler_task_name"}
    sbtest.record("job", ",".join(sorted(k if isinstance(k, str) else k.decode() for k in job)),
                  all(isinstance(k, bytes) for k in body if k != "body"),
                  all(isinstance(v, bytes) for v in job.values()),
                  ",".join("%s=%s" % (k if isinstance(k, str) else k.decode(), v.decode())
                           for k, v in sorted(body.items(), key=lambda kv: str(kv[0]))),
                  os.path.basename(task), os.path.dirname(task) == SPOOL,
                  os.path.exists(task), uwsgi.i_am_the_spooler())
    return uwsgi.SPOOL_OK


uwsgi.spooler = describe
# Spooled in the master while it imports this module: before any spooler exists.
uwsgi.spool({"name": "early"})
"""


def test_spool_runs_the_spooler_function_and_spool_ok_removes_the_job(make_instance,
                                                                      wait_for):
    inst = make_instance(_spool_settings(),
                         [{"num": 100, "target": "worker", "handler": "python:jobs:spool_basic"}],
                         modules={"jobs": jobs_module({}, BASIC)})
    spool_dir = inst.dir / "spool"
    inst.wait_results(1, where=lambda r: r[0] == "job" and "name=early" in r[4])
    inst.raise_signal(100)
    lines = inst.wait_results(3, where=lambda r: r[0] == "job")
    spooled = next(r for r in lines if r[0] == "basic-spooled")
    # In the worker: not the spooler (None, as uWSGI); spool() returned paths (bytes, as
    # uWSGI) in the spool dir; a job that is neither a dict nor bytes is a TypeError.
    assert spooled[1:3] == ["None", "True"], spooled
    assert spooled[5:] == ["TypeError", "TypeError"], spooled
    jobs = {r[4]: r for r in lines if r[0] == "job"}
    assert set(jobs) == {"name=early", "bkey=bval,name=dict1,skey=sval",
                         next(k for k in jobs if "raw-bytes-body" in k)}, jobs
    for job in jobs.values():
        # bytes keys (but 'body' and 'spooler_task_name', as uWSGI 2.0.31 hands them:
        # checked), bytes values, spooler_task_name naming the job's file (still there
        # while the job runs), run in the spooler.
        assert "spooler_task_name" in job[1].split(","), job
        assert job[2:4] == ["True", "True"], job
        assert job[5].startswith(JOB_PREFIX) and job[6:] == ["True", "True", "True"], job
    assert jobs["bkey=bval,name=dict1,skey=sval"][5] == spooled[3]
    assert next(j for k, j in jobs.items() if "raw-bytes-body" in k)[5] == spooled[4]

    stats = inst.stats_when(lambda s: _spooler_totals(s)["jobs_done"] == 3)
    assert _spooler_totals(stats) == {"jobs_done": 3, "jobs_failed": 0, "jobs_retried": 0}
    assert [s["id"] for s in stats["spoolers"]] == [1]
    wait_for(lambda: not _job_files(spool_dir), 5, message=lambda: _job_files(spool_dir))
    assert not [n for n in os.listdir(spool_dir) if not n.startswith(JOB_PREFIX)], \
        os.listdir(spool_dir)          # no temporary file left behind either
    assert len([r for r in inst.results() if r[0] == "job"]) == 3
    assert inst.stop() == 0


def test_spool_retry_and_a_raising_function_keep_the_job_until_it_succeeds(make_instance,
                                                                           wait_for):
    inst = make_instance(_spool_settings(**{"spooler-frequency": 0.2}),
                         [{"num": 100, "handler": "python:jobs:spool_jobs"}],
                         modules={"jobs": jobs_module({100: [("r", "retry"), ("x", "raise")]})})
    inst.raise_signal(100)
    inst.wait_results(1, timeout=15, where=lambda r: r[:3] == ["run", "r", "3"])
    inst.wait_results(1, timeout=15, where=lambda r: r[:3] == ["run", "x", "2"])
    stats = inst.stats_when(lambda s: _spooler_totals(s)["jobs_done"] == 2)
    assert _spooler_totals(stats) == {"jobs_done": 2, "jobs_failed": 1, "jobs_retried": 2}
    assert stats["spoolers"][0]["respawns"] == 0
    pid = stats["spoolers"][0]["pid"]
    assert {(r[3], int(r[6])) for r in _runs(inst)} == {("True", pid)}
    wait_for(lambda: not _job_files(inst.dir / "spool"), 5,
             message=lambda: _job_files(inst.dir / "spool"))
    log = inst.log
    assert "RuntimeError: spool job x failed on purpose" in log, log
    assert "Traceback (most recent call last)" in log
    assert re.search(r"spool job \S+ failed; kept", log), log
    assert re.search(r"spool job \S+ kept for retry", log), log
    # Done means done: both files are gone, neither job ran more than needed.
    names = [r[1] for r in _runs(inst)]
    assert Counter(names) == {"r": 3, "x": 2}, names
    assert inst.stop() == 0


def test_spool_ignore_leaves_the_job_and_this_spooler_never_runs_it_again(make_instance,
                                                                          wait_for):
    inst = make_instance(_spool_settings(**{"spooler-frequency": 0.2}),
                         [{"num": 100, "handler": "python:jobs:spool_jobs"},
                          {"num": 101, "handler": "python:jobs:spool_jobs"}],
                         modules={"jobs": jobs_module({100: [("ign", "ignore"), ("tick", "tick")],
                                                       101: [("later", "ok")]})})
    inst.raise_signal(100)
    inst.wait_results(2, where=lambda r: r[:2] == ["run", "tick"])
    inst.raise_signal(101)                # a new job wakes the spooler for one more scan
    inst.wait_results(1, where=lambda r: r[:2] == ["run", "later"])
    later = float(_runs(inst, "later")[0][7])
    # Every scan (each spooler-frequency) runs `tick` again; `ign` stays where it is.
    inst.wait_results(3, timeout=15,
                      where=lambda r: r[:2] == ["run", "tick"] and float(r[7]) > later)
    assert len(_runs(inst, "ign")) == 1, inst.results()
    assert len(_runs(inst, "later")) == 1
    files = _job_files(inst.dir / "spool")
    assert len(files) == 2, files            # ign and tick; later was removed
    times = [float(r[7]) for r in _runs(inst, "tick") if float(r[7]) > later]
    # Kept jobs wait for the next scan (no new job wakes the spooler after `later`):
    # periodic runs, not a busy loop.
    assert times[2] - times[0] >= 0.3, times
    stats = inst.stats_when(lambda s: _spooler_totals(s)["jobs_retried"] >= 6)
    totals = _spooler_totals(stats)
    assert totals["jobs_done"] == 1 and totals["jobs_failed"] == 0
    assert re.search(r"spool job \S+ ignored", inst.log), inst.log
    assert inst.stop() == 0


DECORATED = """
import os

import uwsgi
from uwsgidecorators import spool

import sbtest


@spool
def plain(args):
    sbtest.record("plain", args["name"], uwsgi.i_am_the_spooler(),
                  all(isinstance(k, str) and isinstance(v, str) for k, v in args.items()),
                  "spooler_task_name" in args, os.getpid())
    return "whatever"          # @spool jobs are done whatever the function returns


@spool(pass_arguments=True)
def with_args(a, b, c=None):
    sbtest.record("args", repr(a), repr(b), repr(c), uwsgi.i_am_the_spooler())


def go(num):
    plain.spool(name="p1")
    plain(name="p2")
    with_args.spool(1, "two", c=3.5)
    sbtest.record("go-done", uwsgi.worker_id())
"""


def test_spool_decorator_installs_the_spooler_function(make_instance, wait_for):
    inst = make_instance({"workers": 1, "spooler": "spool", "import": ["deco"]},
                         [{"num": 100, "handler": "python:deco:go"}],
                         modules={"deco": DECORATED})
    inst.raise_signal(100)
    inst.wait_results(2, where=lambda r: r[0] == "plain")
    inst.wait_results(1, where=lambda r: r[0] == "args")
    stats = inst.stats_when(lambda s: _spooler_totals(s)["jobs_done"] == 3)
    spooler_pid = stats["spoolers"][0]["pid"]
    plain = sorted(r for r in inst.results() if r[0] == "plain")
    assert plain == [["plain", name, "True", "True", "True", str(spooler_pid)]
                     for name in ("p1", "p2")]
    assert [r for r in inst.results() if r[0] == "args"] == [
        ["args", "1", "'two'", "3.5", "True"]]
    assert _spooler_totals(stats) == {"jobs_done": 3, "jobs_failed": 0, "jobs_retried": 0}
    wait_for(lambda: not _job_files(inst.dir / "spool"), 5)
    assert inst.stop() == 0


SPOOLER_HANDLERS = """

def where(num):
    sbtest.record("sig", num, uwsgi.i_am_the_spooler(), "w%d" % uwsgi.worker_id(),
                  "m%d" % uwsgi.mule_id(), os.getpid())


def boom(num):
    raise ValueError("spooler handler boom %d" % num)
"""

SPOOLER_LUA = """
local M = {}
function M.hello(sig)
    print(string.format("lua %d in w%d m%d", sig, uwsgi.worker_id(), uwsgi.mule_id()))
end
function M.fail(sig)
    error("lua spooler failure " .. sig)
end
return M
"""


@pytest.mark.timeout(45)
def test_spooler_target_goes_to_the_first_available_spooler(make_instance, wait_for):
    inst = make_instance(
        _spool_settings(**{"spooler-processes": 2}),
        [{"num": 100, "handler": "python:jobs:spool_jobs"},
         {"num": 101, "handler": "python:jobs:spool_jobs"},
         {"num": 110, "target": "spooler", "handler": "python:jobs:where"},
         {"num": 111, "target": "spooler", "handler": "lua:sp.lua:hello"},
         {"num": 112, "target": "spooler", "handler": "python:jobs:boom"},
         {"num": 113, "target": "spooler", "handler": "lua:sp.lua:fail"}],
        modules={"jobs": jobs_module({100: [("blocker", "block")],
                                      101: [(f"j{i}", "ok") for i in range(5)]},
                                     SPOOLER_HANDLERS)},
        start=False)
    (inst.dir / "sp.lua").write_text(SPOOLER_LUA)
    inst.start()
    stats = inst.socket_stats()
    assert [s["id"] for s in stats["spoolers"]] == [1, 2]
    pids = {s["pid"] for s in stats["spoolers"]}
    inst.raise_signal(100)
    inst.wait_results(1, where=lambda r: r[:2] == ["run", "blocker"])
    busy_pid = int(_runs(inst, "blocker")[0][6])
    assert busy_pid in pids
    (idle_pid,) = pids - {busy_pid}
    # One spooler is stuck in a job: spooler signals go to the other one.
    for num in (110, 111, 110, 111, 110):
        inst.raise_signal(num)
    lines = inst.wait_results(3, timeout=5, where=lambda r: r[0] == "sig")
    assert [r[1:] for r in lines if r[0] == "sig"] == [["110", "True", "w0", "m0",
                                                        str(idle_pid)]] * 3
    wait_for(lambda: inst.stdout.count("lua 111 in w0 m0") == 2, 5,
             message=lambda: inst.stdout + inst.log[-3000:])
    # Errors in the spooler are logged and counted as in any process.
    inst.raise_signal(112)
    inst.raise_signal(113)
    # (one stats document is not an atomic snapshot: poll until both views agree)
    stats = inst.stats_when(lambda s: s["signals"]["112"]["failed"] == 1
                            and s["signals"]["113"]["failed"] == 1
                            and sum(x["failed"] for x in s["spoolers"]) == 2)
    assert sum(s["failed"] for s in stats["spoolers"]) == 2
    wait_for(lambda: "ValueError: spooler handler boom 112" in inst.log, 5,
             message=lambda: inst.log)
    assert re.search(r"sp\.lua:7:.*lua spooler failure 113", inst.log), inst.log
    # Five more jobs while one spooler is busy: each runs once, none twice.
    inst.raise_signal(101)
    inst.wait_results(5, where=lambda r: r[0] == "run" and r[1].startswith("j"))
    inst.touch("release")
    inst.wait_results(1, where=lambda r: r[0] == "released")
    stats = inst.stats_when(lambda s: _spooler_totals(s)["jobs_done"] == 6)
    assert Counter(r[1] for r in _runs(inst)) == {"blocker": 1, **{f"j{i}": 1
                                                                  for i in range(5)}}
    assert {int(r[6]) for r in _runs(inst) if r[1].startswith("j")} <= pids
    assert all(s["respawns"] == 0 for s in stats["spoolers"])
    assert not _job_files(inst.dir / "spool")
    assert inst.stop() == 0


@pytest.mark.timeout(45)
def test_a_job_past_spooler_harakiri_is_run_again_by_the_replacement(make_instance, wait_for):
    inst = make_instance(_spool_settings(**{"spooler-harakiri": 1}),
                         [{"num": 100, "handler": "python:jobs:spool_jobs"}],
                         modules={"jobs": jobs_module({100: [("stuck", "stuck")]})})
    old = inst.socket_stats()["spoolers"][0]["pid"]
    inst.raise_signal(100)
    inst.wait_results(1, where=lambda r: r[:3] == ["run", "stuck", "1"])
    inst.wait_results(1, timeout=20, where=lambda r: r[:3] == ["run", "stuck", "2"])
    stats = inst.stats_when(lambda s: s["spoolers"][0]["jobs_done"] == 1)
    spooler = stats["spoolers"][0]
    assert spooler["harakiri_count"] == 1 and spooler["respawns"] == 1
    assert spooler["pid"] not in (0, old)
    runs = _runs(inst, "stuck")
    assert [(r[2], int(r[6])) for r in runs] == [("1", old), ("2", spooler["pid"])]
    assert not [r for r in inst.results() if r[0] == "woke"]
    assert re.search(rf"harakiri: spooler \(pid {old}\)", inst.log), inst.log
    assert not _job_files(inst.dir / "spool")
    assert inst.stop() == 0


def test_jobs_spooled_while_the_spooler_is_down_run_when_it_comes_back(make_instance,
                                                                       wait_for, procs):
    inst = make_instance(_spool_settings(),
                         [{"num": 100, "handler": "python:jobs:spool_jobs"}],
                         modules={"jobs": jobs_module({100: [("d1", "ok"), ("d2", "ok"),
                                                             ("d3", "ok")]})})
    old = inst.socket_stats()["spoolers"][0]["pid"]
    os.kill(old, unix.SIGSTOP)          # the spooler can run nothing from here on
    try:
        inst.raise_signal(100)
        inst.wait_results(1, where=lambda r: r[0] == "spooled")
        assert len(_job_files(inst.dir / "spool")) == 3
        assert not _runs(inst)
    finally:
        os.kill(old, unix.SIGKILL)      # ... and dies; the master respawns it
    inst.wait_results(3, where=lambda r: r[0] == "run")
    stats = inst.stats_when(lambda s: s["spoolers"][0]["jobs_done"] == 3)
    new = stats["spoolers"][0]["pid"]
    assert new not in (0, old) and stats["spoolers"][0]["respawns"] == 1
    assert sorted((r[1], int(r[6])) for r in _runs(inst)) == [("d1", new), ("d2", new),
                                                               ("d3", new)]
    assert re.search(rf"spooler \(pid {old}\) was killed by SIGKILL", inst.log), inst.log
    wait_for(lambda: not _job_files(inst.dir / "spool"), 5)
    assert inst.stop() == 0


# ---------------------------------------------------------------------------------------
# Durability across a restart of the whole runtime

FIRST_LIFE = """
import os

import uwsgi

import sbtest


def keep(job):
    name = job[b"name"].decode()
    sbtest.record("A", name, os.getpid())
    if name == "blocker":
        sbtest.wait_file("never")          # the spooler is stopped in the middle of it
    return uwsgi.SPOOL_RETRY


uwsgi.spooler = keep


def spool_kept(num):
    for name in ("r1", "r2", "blocker"):
        uwsgi.spool({"name": name})
    sbtest.record("spooled", num)


def spool_more(num):
    for name in ("w1", "w2"):
        uwsgi.spool({"name": name})
    sbtest.record("spooled", num)
"""

SECOND_LIFE = """
import os

import uwsgi

import sbtest


def done(job):
    sbtest.record("B", job[b"name"].decode(), os.getpid())
    return uwsgi.SPOOL_OK


uwsgi.spooler = done
"""


@pytest.mark.timeout(60)
def test_spool_jobs_survive_a_restart_of_the_whole_runtime(make_instance, wait_for, tmp_path):
    spool_dir = tmp_path / "shared-spool"
    first = make_instance({"workers": 1, "spooler": str(spool_dir), "import": ["life"],
                           "reload-mercy": 1, "spooler-frequency": 0.2},
                          [{"num": 100, "handler": "python:life:spool_kept"},
                           {"num": 101, "handler": "python:life:spool_more"}],
                          modules={"life": FIRST_LIFE}, name="first")
    first.raise_signal(100)
    first.wait_results(1, where=lambda r: r[:2] == ["A", "blocker"])
    assert {r[1] for r in first.results() if r[0] == "A"} >= {"r1", "r2"}
    first.raise_signal(101)               # spooled while the spooler is stuck in `blocker`
    first.wait_results(2, where=lambda r: r[0] == "spooled")
    stats = first.socket_stats()
    assert stats["spoolers"][0]["jobs_retried"] >= 2
    assert stats["spoolers"][0]["jobs_done"] == 0
    assert first.stop(timeout=20) == 0
    assert not [r for r in first.results() if r[0] == "A" and r[1] in ("w1", "w2")]
    assert len(_job_files(spool_dir)) == 5, _job_files(spool_dir)

    second = make_instance({"workers": 1, "spooler": str(spool_dir), "import": ["life"],
                            "spooler-frequency": 0.2},
                           modules={"life": SECOND_LIFE}, name="second")
    second.wait_results(5, where=lambda r: r[0] == "B")
    stats = second.stats_when(lambda s: s["spoolers"][0]["jobs_done"] == 5)
    wait_for(lambda: not _job_files(spool_dir), 5, message=lambda: _job_files(spool_dir))
    names = Counter(r[1] for r in second.results() if r[0] == "B")
    assert names == {"r1": 1, "r2": 1, "blocker": 1, "w1": 1, "w2": 1}, second.results()
    assert {int(r[2]) for r in second.results() if r[0] == "B"} == {
        stats["spoolers"][0]["pid"]}
    assert second.stop() == 0
    assert Counter(r[1] for r in second.results() if r[0] == "B") == names
