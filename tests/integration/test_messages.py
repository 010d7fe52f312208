"""Mule and farm messages (issue 16, item 1): mule_msg and friends, in Python and Lua,
the mule decorators, and uWSGI 2.0.31's own tests/mulefunc.py.

What uWSGI does was checked on /work/uwsgi-venv/bin/uwsgi (2.0.31, --master --mule
--mule --mule --farm topogigio:3): mule_msg() targets any mule / mule N / a farm and
returns True; a programless mule hands each message to uwsgi.mule_msg_hook, which
importing uwsgidecorators sets to mule_msg_dispatcher; mule_get_msg() returns the
bytes, or None after it ran a signal that arrived meanwhile, or at its timeout;
in_farm() is True or None.
"""

from __future__ import annotations

import os
import signal as unix
import tarfile
import textwrap

import pytest
from tests.compat.test_uwsgi_sdist import _sdist

pytestmark = pytest.mark.timeout(60)

def _wait(inst, count, where, timeout=15.0):
    """The result lines matching `where`, once there are at least `count`."""
    inst.wait_results(count, timeout, where=where)
    return [r for r in inst.results() if where(r)]


def uwsgi_test_file(name: str) -> str:
    """A file of uWSGI 2.0.31's sdist (fetched with pip once, skipped without PyPI)."""
    with tarfile.open(_sdist()) as tar:
        member = tar.extractfile(f"uwsgi-2.0.31/{name}")
        assert member is not None
        return member.read().decode()


DRIVE = """
import mulefunc


def request(num):
    # what a request to uWSGI's test app does: its WSGI callable calls the functions
    mulefunc.application({}, lambda *args: None)
"""


def test_uwsgi_mulefunc_runs_every_function_on_the_intended_mule(make_instance, wait_for):
    inst = make_instance(
        {"workers": 1, "mules": 3, "farms": {"topogigio": [3]},
         "import": ["mulefunc", "drive"]},
        [{"num": 100, "target": "worker", "handler": "python:drive:request"}],
        modules={"mulefunc": uwsgi_test_file("tests/mulefunc.py"), "drive": DRIVE})
    for _ in range(3):
        inst.raise_signal(100)

    def lines() -> list[str]:
        return [line for line in inst.stdout.splitlines() if line.startswith("MULE ID")]
    wait_for(lambda: len(lines()) == 9, message=lambda: inst.stdout + inst.log)
    got = lines()
    assert got.count("MULE ID 2: conto_fino_a_venti 4 5 6") == 3
    assert got.count("MULE ID 3: conto_fino_a_trenta 7 8 9") == 3
    dieci = [line for line in got if "conto_fino_a_dieci 1 2 3" in line]
    assert len(dieci) == 3 and all(line[8] in "123" for line in dieci), got
    wait_for(lambda: "3 seconds elapsed" in inst.stdout, 10)    # its timer, on mule 1
    assert inst.stop() == 0


APP = """
import os
import time

import uwsgi

import sbtest


def hook(message):
    sbtest.record("got", "m%d" % uwsgi.mule_id(), message.decode())
    if message == b"hold":
        sbtest.wait_file("release")


uwsgi.mule_msg_hook = hook


def send_each(num):
    sbtest.record("sent", uwsgi.mule_msg(b"to-1", 1), uwsgi.mule_msg("to-2", 2),
                  uwsgi.mule_msg(b"to-any"), uwsgi.mule_msg(b"to-any0", 0),
                  uwsgi.mule_msg(b"to-farm", "pair"), uwsgi.farm_msg("pair", b"farm-msg"))


def send_many(num):
    uwsgi.mule_msg(b"hold", 1)
    for i in range(200):
        uwsgi.mule_msg(b"n%d" % i, 1)
    sbtest.record("sent-many")


def fill(num):
    uwsgi.mule_msg(b"hold", 1)
    sbtest.wait_file("busy")
    began, sent = time.monotonic(), 0
    while uwsgi.mule_msg(b"x" * 60000, 1):
        sent += 1
    sbtest.record("full", sent, round(time.monotonic() - began, 2))


def bad(num):
    for call in (lambda: uwsgi.mule_msg(b"x", 9), lambda: uwsgi.mule_msg(b"x", "nofarm"),
                 lambda: uwsgi.mule_msg(42, 1), lambda: uwsgi.mule_get_msg()):
        try:
            call()
        except (TypeError, ValueError) as exc:
            sbtest.record("error", type(exc).__name__, str(exc).replace(" ", "_"))
"""


def _app(make_instance, **settings):
    return make_instance(
        {"workers": 1, "mules": 3, "farms": {"pair": [2, 3]}, "import": ["app"], **settings},
        [{"num": 10, "target": "worker", "handler": "python:app:send_each"},
         {"num": 11, "target": "worker", "handler": "python:app:send_many"},
         {"num": 12, "target": "worker", "handler": "python:app:fill"},
         {"num": 13, "target": "worker", "handler": "python:app:bad"}],
        modules={"app": APP})


def test_mule_msg_reaches_mule_n_any_mule_and_a_farm(make_instance):
    inst = _app(make_instance)
    inst.raise_signal(10)
    got = {r[2]: r[1] for r in _wait(inst, 6, where=lambda r: r[0] == "got")}
    assert _wait(inst, 1, where=lambda r: r[0] == "sent") == [["sent"] + ["True"] * 6]
    assert got["to-1"] == "m1" and got["to-2"] == "m2"
    assert got["to-any"] in ("m1", "m2", "m3") and got["to-any0"] in ("m1", "m2", "m3")
    assert got["to-farm"] in ("m2", "m3") and got["farm-msg"] in ("m2", "m3")


def test_bad_targets_and_messages_are_clear_errors(make_instance):
    inst = _app(make_instance)
    inst.raise_signal(13)
    errors = [r[1:] for r in _wait(inst, 4, where=lambda r: r[0] == "error")]
    assert errors[0] == ["ValueError", "mule_msg():_there_is_no_mule_9_(mules_=_3)"]
    assert errors[1] == ["ValueError", "no_farm_named_'nofarm'_(farms:_pair)"]
    assert errors[2] == ["TypeError", "a_message_must_be_str_or_bytes,_not_int"]
    assert errors[3] == ["ValueError",
                         "mule_get_msg():_messages_are_received_only_in_a_mule,_not_in_the_worker"]


def test_messages_wait_while_the_mule_is_busy_and_survive_its_respawn(make_instance,
                                                                      wait_for):
    inst = _app(make_instance)
    inst.raise_signal(11)
    _wait(inst, 1, where=lambda r: r[:2] == ["got", "m1"])     # holding on "hold"
    _wait(inst, 1, where=lambda r: r[0] == "sent-many")
    pid = next(m["pid"] for m in inst.socket_stats()["mules"] if m["id"] == 1)
    os.kill(pid, unix.SIGKILL)          # killed in the middle of "hold"
    inst.touch("release")
    _wait(inst, 201, timeout=30, where=lambda r: r[:2] == ["got", "m1"])
    assert [r[2] for r in inst.results() if r[0] == "got"] == \
        ["hold"] + [f"n{i}" for i in range(200)]


def test_mule_msg_returns_false_when_the_queue_stays_full(make_instance):
    inst = _app(make_instance, **{"signal-timeout": 0.5})
    inst.raise_signal(12)
    _wait(inst, 1, where=lambda r: r[:3] == ["got", "m1", "hold"])
    inst.touch("busy")
    full = _wait(inst, 1, where=lambda r: r[0] == "full")[0]
    accepted, waited = int(full[1]), float(full[2])
    assert accepted >= 1 and waited >= 0.5
    inst.touch("release")               # every accepted message is delivered
    _wait(inst, 1 + accepted, where=lambda r: r[:2] == ["got", "m1"])


PROGRAM = """
import uwsgi

import sbtest


def reader():
    sbtest.record("in_farm", uwsgi.in_farm(), uwsgi.in_farm("pair"), uwsgi.in_farm("no"))
    sbtest.touch("reading")
    while True:
        message = uwsgi.mule_get_msg(timeout=20)
        sbtest.record("program", repr(message).replace(" ", "_"), uwsgi.signal_received())
        if message == b"stop":
            return


def handler(num):
    sbtest.record("handler", num, uwsgi.mule_id())


def send(num):
    uwsgi.mule_msg(b"one", 2)
    uwsgi.mule_msg(b"two", 2)
"""

LUA = """
local M = {}
function M.reader()
    print("lua in_farm", tostring(uwsgi.in_farm("pair")), uwsgi.mule_msg_recv_size())
    while true do
        local msg = uwsgi.mule_get_msg(true, true, 65536, 20)
        print("lua got " .. tostring(msg))
        if msg == "stop" then return end
    end
end
function M.send(sig)
    print("lua sent", uwsgi.mule_msg("from lua", 1), uwsgi.farm_msg("pair", "farm from lua"))
end
return M
"""


def test_mule_get_msg_in_python_and_lua_programs(make_instance, wait_for):
    inst = make_instance(start=False, modules={"prog": PROGRAM})
    (inst.dir / "prog.lua").write_text(LUA)
    inst.write_config(text=textwrap.dedent(f"""\
        [switchboard]
        workers = 1
        mules = 2
        farms = {{ pair = [2] }}
        control = "{inst.control_path}"
        python-path = ["{inst.dir}"]

        [[mule]]
        id = 1
        program = "lua:prog.lua:reader"

        [[mule]]
        id = 2
        program = "python:prog:reader"

        [[signal]]
        num = 20
        target = "mule2"
        handler = "python:prog:handler"

        [[signal]]
        num = 21
        target = "worker"
        handler = "python:prog:send"

        [[signal]]
        num = 22
        target = "worker"
        handler = "lua:prog.lua:send"
        """))
    inst.start()
    assert _wait(inst, 1, where=lambda r: r[0] == "in_farm")[0] == \
        ["in_farm", "True", "True", "None"]
    wait_for(lambda: os.path.exists(inst.dir / "reading"))
    inst.raise_signal(20)               # a signal ends the wait with None (as uWSGI)
    # messages skip the master: raise 21 (which sends two) once 20 has ended the wait
    _wait(inst, 1, where=lambda r: r[0] == "program")
    inst.raise_signal(21)
    programs = _wait(inst, 3, where=lambda r: r[0] == "program")
    assert programs == [["program", "None", "20"], ["program", "b'one'", "20"],
                        ["program", "b'two'", "20"]]
    assert ["handler", "20", "2"] in inst.results()
    inst.raise_signal(22)               # Lua sends to mule 1 (Lua) and the farm (mule 2)
    wait_for(lambda: "lua got from lua" in inst.stdout, message=lambda: inst.stdout + inst.log)
    assert "lua in_farm\tnil\t65536" in inst.stdout
    assert "lua sent\ttrue\ttrue" in inst.stdout
    _wait(inst, 1, where=lambda r: r[:2] == ["program", "b'farm_from_lua'"])


DECORATED = """
import uwsgi
from uwsgidecorators import farm, mule, mulemsg, muleloop

import sbtest

loops = []


@mule(1)
def once():
    sbtest.record("once", uwsgi.mule_id())


@muleloop(2)
def looping():
    loops.append(1)
    if len(loops) <= 3:
        sbtest.record("loop", uwsgi.mule_id(), len(loops))
    uwsgi.signal_wait(timeout=30)


@mulemsg(3)
def on_message(message):
    sbtest.record("mulemsg", uwsgi.mule_id(), message.decode())


@farm("pair", ignored_keyword=1)
def on_farm(message):
    sbtest.record("farm", uwsgi.mule_id(), message.decode())


def send(num):
    uwsgi.mule_msg(b"hello", 3)
    uwsgi.farm_msg("pair", b"farmed")
"""


def test_mule_decorators_run_where_uwsgi_runs_them(make_instance):
    inst = make_instance(
        {"workers": 1, "mules": 4, "farms": {"pair": [4]}, "import": ["deco"]},
        [{"num": 30, "target": "worker", "handler": "python:deco:send"},
         {"num": 31, "target": "mule2", "handler": "python:os:getpid"}],
        modules={"deco": DECORATED})
    assert _wait(inst, 1, where=lambda r: r[0] == "once") == [["once", "1"]]
    inst.raise_signal(31)
    inst.raise_signal(31)
    assert _wait(inst, 3, where=lambda r: r[0] == "loop") == \
        [["loop", "2", "1"], ["loop", "2", "2"], ["loop", "2", "3"]]
    inst.raise_signal(30)
    assert _wait(inst, 1, where=lambda r: r[0] == "mulemsg") == \
        [["mulemsg", "3", "hello"]]
    assert _wait(inst, 1, where=lambda r: r[0] == "farm") == [["farm", "4", "farmed"]]
