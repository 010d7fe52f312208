"""Lua handlers as a deployment uses them (SPEC sections 3 and 10): `lua:` references,
registrations made by the config's Lua scripts, and Lua errors."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.timeout(60)

SCRIPT = """\
local M = {{}}
local RESULTS = {results!r}

local function record(line)
    local f = assert(io.open(RESULTS, "a"))
    f:write(line .. "\\n")
    f:close()
end

function M.mark(sig)
    record(string.format("lua %d %d", sig, uwsgi.worker_id()))
end

M.nested = {{}}
function M.nested.fail(sig)
    error("lua handler failed on " .. sig)
end

-- Registered by the script itself, in the master, with a closure and a target.
uwsgi.register_signal(42, "worker2", function(sig)
    record(string.format("closure %d %d", sig, uwsgi.worker_id()))
end)

return M
"""


@pytest.fixture
def lua_app(make_instance):
    inst = make_instance(start=False)
    (inst.dir / "app.lua").write_text(SCRIPT.format(results=str(inst.results_path)))
    inst.write_config({"workers": 2, "lua": ["app.lua"]},
                      [{"num": 40, "target": "workers", "handler": "lua:app.lua:mark"},
                       {"num": 41, "target": "worker1", "handler": "lua:app.lua:nested.fail"}])
    return inst.start()


def test_lua_reference_and_lua_registered_closure_run_where_targeted(lua_app, wait_for):
    lua_app.signal(40)
    lua_app.signal(42)
    lines = lua_app.wait_results(3)
    assert sorted(lines) == [["closure", "42", "2"], ["lua", "40", "1"], ["lua", "40", "2"]]
    stats = wait_for(lambda: (s := lua_app.stats())["signals"]["42"]["handled"] == 1 and s, 10)
    assert stats["signals"]["40"]["handled"] == 2
    assert stats["signals"]["40"]["handler"] == "lua:app.lua:mark"
    assert stats["signals"]["42"]["target"] == "worker2"


def test_a_lua_error_is_logged_with_file_and_line_and_the_worker_goes_on(lua_app, wait_for):
    pid = lua_app.worker_pids()[1]
    lua_app.signal(41)
    wait_for(lambda: "lua handler failed on 41" in lua_app.log, 10,
             message=lambda: lua_app.log)
    # Lua's own file:line of the error() call (line 16 of app.lua), and which handler.
    assert re.search(r"app\.lua:16\b", lua_app.log), lua_app.log
    assert "lua:app.lua:nested.fail" in lua_app.log
    stats = wait_for(lambda: (s := lua_app.stats())["signals"]["41"]["failed"] == 1 and s, 10)
    assert stats["workers"][0]["pid"] == pid and stats["workers"][0]["respawns"] == 0
    lua_app.signal(40)
    lua_app.wait_results(2)
    assert sorted(r[2] for r in lua_app.results()) == ["1", "2"]


@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_lua_config_is_a_clean_error(cli, tmp_path, command):
    (tmp_path / "ok.lua").write_text("function hello(sig) end\n")
    (tmp_path / "broken.lua").write_text("-- comment\nfunction oops(sig)\n  return (\nend\n")
    missing = tmp_path / "missing-function.toml"
    missing.write_text('[switchboard]\nlua = ["ok.lua"]\n\n[[signal]]\nnum = 3\n'
                       'handler = "lua:ok.lua:nope"\n')
    res = cli(command, str(missing))
    assert res.returncode == 2, res.stderr
    assert str(missing) in res.stderr
    assert "[[signal]] #1" in res.stderr and "handler" in res.stderr and "nope" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    syntax = tmp_path / "syntax.toml"
    syntax.write_text('[switchboard]\nlua = ["broken.lua"]\n')
    res = cli(command, str(syntax))
    assert res.returncode == 2, res.stderr
    assert str(syntax) in res.stderr and "broken.lua" in res.stderr
    assert re.search(r"broken\.lua:\d", res.stderr), res.stderr
    assert "Traceback" not in res.stderr + res.stdout
