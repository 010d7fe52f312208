"""One contract, two hosts: every behaviour here is checked with Python and Lua handlers.

The same handlers are written in both languages (below); the config points at one set
or the other, and each test asserts what a user sees: what the handlers recorded, the
stats, the log.
"""

from __future__ import annotations

import pytest
from tests.conftest import wait_for

PYTHON_HANDLERS = '''
import os
import uwsgi
from sbtest import record


def mark(num):
    record(num, uwsgi.worker_id(), "python")


def boom(num):
    raise RuntimeError(f"boom {num}")


def raiser(num):
    uwsgi.signal(21)


def registrar(num):
    uwsgi.register_signal(22, "workers", mark)
    uwsgi.register_signal(23, "worker", lambda n: record(n, uwsgi.worker_id(), "closure"))
    record("registered", uwsgi.worker_id())


def waiter(num):
    got = uwsgi.signal_wait(41, 20)
    record("waited", got, uwsgi.signal_received())


def waiter_timeout(num):
    got = uwsgi.signal_wait(None, 0.2)
    record("timeout", "nil" if got is None else got)


def misuse(num):
    calls = [lambda: uwsgi.register_signal(300, "worker", mark),
             lambda: uwsgi.register_signal(5, "nowhere", mark),
             lambda: uwsgi.register_signal(5, "worker9", mark),
             lambda: uwsgi.signal(256),
             lambda: uwsgi.signal_wait(999)]
    for call in calls:
        try:
            call()
        except (ValueError, TypeError, OSError) as exc:
            record("error", exc)
'''

LUA_HANDLERS = '''
local M = {}
local RESULTS = "@DIR@/results.txt"

local function record(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    local f = assert(io.open(RESULTS, "a"))
    f:write(table.concat(parts, " ") .. "\\n")
    f:close()
end

function M.mark(sig) record(sig, uwsgi.worker_id(), "lua") end

local function explode(sig) error("boom " .. sig) end
function M.boom(sig) explode(sig) end

function M.raiser(sig) uwsgi.signal(21) end

function M.registrar(sig)
    uwsgi.register_signal(22, "workers", "lua:contract.lua:mark")
    uwsgi.register_signal(23, "worker", function(n) record(n, uwsgi.worker_id(), "closure") end)
    record("registered", uwsgi.worker_id())
end

function M.waiter(sig)
    local got = uwsgi.signal_wait(41, 20)
    record("waited", got, uwsgi.signal_received())
end

function M.waiter_timeout(sig)
    local got = uwsgi.signal_wait(nil, 0.2)
    record("timeout", got == nil and "nil" or got)
end

function M.misuse(sig)
    local calls = {
        function() uwsgi.register_signal(300, "worker", M.mark) end,
        function() uwsgi.register_signal(5, "nowhere", M.mark) end,
        function() uwsgi.register_signal(5, "worker9", M.mark) end,
        function() uwsgi.signal(256) end,
        function() uwsgi.signal_wait(999) end,
    }
    for _, call in ipairs(calls) do
        local ok, err = pcall(call)
        if not ok then record("error", err) end
    end
end

return M
'''

SIGNALS = [  # (num, target, handler name)
    (20, "worker", "mark"), (24, "workers", "mark"), (25, "worker2", "mark"),
    (26, "worker", "boom"), (27, "worker", "raiser"), (21, "worker", "mark"),
    (28, "worker1", "registrar"), (29, "worker1", "waiter"),
    (30, "worker", "waiter_timeout"), (31, "worker", "misuse"),
]

MISUSE_MESSAGES = [
    "signal number 300 is out of range [0, 255]",
    "unknown target 'nowhere'",
    "target 'worker9': there is no worker 9 (workers = 2)",
    "signal number 256 is out of range [0, 255]",
    "signal number 999 is out of range [0, 255]",
]


@pytest.fixture(params=["python", "lua"])
def host(request, make_instance):
    """A running 2-worker instance whose handlers are written in one language."""
    lang = request.param
    inst = make_instance({"workers": 2}, start=False, name=lang)
    if lang == "python":
        inst.write_module("contract_py", PYTHON_HANDLERS)
        ref = "python:contract_py:{}"
    else:
        (inst.dir / "contract.lua").write_text(LUA_HANDLERS.replace("@DIR@", str(inst.dir)))
        ref = "lua:contract.lua:{}"
    inst.write_config({"workers": 2}, [
        {"num": num, "target": target, "handler": ref.format(name)}
        for num, target, name in SIGNALS])
    inst.lang = lang
    return inst.start()


def lines(inst, first: str | None = None) -> list[list[str]]:
    return [r for r in inst.results() if first is None or r[0] == first]


def test_worker_target_runs_each_signal_once(host):
    for _ in range(10):
        host.signal(20)
    got = host.wait_results(10, where=lambda r: r[0] == "20")
    assert len(lines(host, "20")) == 10
    assert all(r[2] == host.lang and r[1] in ("1", "2") for r in got)
    wait_for(lambda: host.signal_stats(20).get("handled") == 10)


def test_workers_target_runs_on_every_worker(host):
    host.signal(24)
    host.wait_results(2, where=lambda r: r[0] == "24")
    assert sorted(r[1] for r in lines(host, "24")) == ["1", "2"]


def test_numbered_worker_target_runs_only_there(host):
    for _ in range(5):
        host.signal(25)
    host.wait_results(5, where=lambda r: r[0] == "25")
    assert {r[1] for r in lines(host, "25")} == {"2"}


def test_handler_error_is_logged_counted_and_the_worker_goes_on(host):
    host.signal(26)
    wait_for(lambda: host.signal_stats(26).get("failed") == 1,
             message=lambda: host.log[-3000:])
    assert "boom 26" in host.log
    if host.lang == "lua":
        assert "contract.lua:" in host.log and "stack traceback" in host.log
    else:
        assert "Traceback" in host.log and "RuntimeError: boom 26" in host.log
    for _ in range(4):
        host.signal(20)
    host.wait_results(4, where=lambda r: r[0] == "20")
    assert host.signal_stats(26)["handled"] == 0


def test_a_handler_raises_a_signal(host):
    host.signal(27)
    got = host.wait_results(1, where=lambda r: r[0] == "21")
    assert [r for r in got if r[0] == "21"][0][2] == host.lang


def test_registration_from_a_worker_is_routed_as_registered(host):
    host.signal(28)
    host.wait_results(1, where=lambda r: r[0] == "registered")
    host.signal(22)
    host.wait_results(2, where=lambda r: r[0] == "22")
    assert sorted(r[1] for r in lines(host, "22")) == ["1", "2"]
    for _ in range(5):
        host.signal(23)
    host.wait_results(5, where=lambda r: r[0] == "23")
    assert {(r[1], r[2]) for r in lines(host, "23")} == {("1", "closure")}


def test_signal_wait_gets_an_unregistered_signal(host):
    host.signal(29)
    wait_for(lambda: host.worker(1)["waiting"], message=lambda: str(host.stats()))
    host.signal(41)
    got = host.wait_results(1, where=lambda r: r[0] == "waited")
    assert [r for r in got if r[0] == "waited"][0] == ["waited", "41", "41"]


def test_signal_wait_times_out_with_nothing(host):
    host.signal(30)
    got = host.wait_results(1, where=lambda r: r[0] == "timeout")
    assert [r for r in got if r[0] == "timeout"][0] == ["timeout", "nil"]


def test_misuse_gives_the_same_messages_in_both_languages(host):
    host.signal(31)
    host.wait_results(len(MISUSE_MESSAGES), where=lambda r: r[0] == "error")
    text = host.results_path.read_text()
    errors = [line for line in text.splitlines() if line.startswith("error ")]
    assert len(errors) == len(MISUSE_MESSAGES)
    for line, expected in zip(errors, MISUSE_MESSAGES, strict=True):
        assert expected in line
