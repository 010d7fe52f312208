"""Lua in a deployment: scripts, references, engines, errors and runaway handlers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]

RUNAWAY = '''
local M = {}
function M.spin(sig) while true do end end
function M.pcall_spin(sig) while true do pcall(function() while true do end end) end end
function M.unhook(sig) debug.sethook() end
function M.hello(sig) print("hello from lua " .. sig .. " in worker " .. uwsgi.worker_id()) end
function M.logs(sig) uwsgi.log("lua says", sig, true) end
return M
'''


def runaway_instance(make_instance, **settings):
    inst = make_instance(start=False)
    (inst.dir / "runaway.lua").write_text(RUNAWAY)
    inst.write_config({"workers": 1, **settings}, [
        {"num": 1, "handler": "lua:runaway.lua:spin"},
        {"num": 2, "handler": "lua:runaway.lua:pcall_spin"},
        {"num": 3, "handler": "lua:runaway.lua:unhook"},
        {"num": 4, "handler": "lua:runaway.lua:hello"},
        {"num": 5, "handler": "lua:runaway.lua:logs"},
    ])
    return inst.start()


def copy_samples(tmp_path: Path) -> Path:
    """The repo's samples, lua/ and python_handlers/, as a user would have them."""
    for name in ("samples", "lua", "python_handlers"):
        shutil.copytree(REPO / name, tmp_path / "repo" / name)
    return tmp_path / "repo"


def test_seed_lua_example_runs_as_written(make_instance, tmp_path):
    repo = copy_samples(tmp_path)
    inst = make_instance.existing(repo / "samples" / "seed" / "switchboard.toml")
    inst.signal(1)
    wait_for(lambda: "i am Lua, received signal 1" in inst.stdout,
             message=lambda: inst.stdout + inst.log)
    assert inst.stop() == 0


@pytest.mark.parametrize("engine", ["lua54", "lua55", "luajit21"])
def test_mixed_sample_chains_python_and_lua(make_instance, tmp_path, engine):
    repo = copy_samples(tmp_path)
    config = repo / "samples" / "mixed" / "switchboard.toml"
    config.write_text(config.read_text().replace(
        "workers = 2", f'workers = 2\nlua-engine = "{engine}"'))
    inst = make_instance.existing(config)
    # the sample's one-shot timer runs the chain once at 1 s; then once more by hand
    wait_for(lambda: inst.stdout.count("from Lua") == 2, message=lambda: inst.stdout + inst.log)
    inst.signal(10)
    wait_for(lambda: inst.stdout.count("from Lua") == 4, message=lambda: inst.stdout + inst.log)
    out = inst.stdout
    assert "python: worker" in out and "raising 11 for Lua" in out
    assert "lua: worker" in out and "raising 12 for Python" in out
    inst.signal(13)
    wait_for(lambda: "lua: worker 2 got 13 (a Lua closure)" in inst.stdout,
             message=lambda: inst.stdout + inst.log)
    stats = inst.stats()["signals"]
    assert [stats[n]["handled"] for n in ("10", "11", "12", "13")] == [2, 2, 4, 1]
    assert inst.stop() == 0


def test_lua_syntax_error_is_a_startup_error(make_instance, cli):
    inst = make_instance({"lua": ["broken.lua"]}, start=False)
    (inst.dir / "broken.lua").write_text("local x = 1\nx = = 2\n")
    for command in ("check", "run"):
        res = cli(command, str(inst.config_path))
        assert res.returncode == 2, res.stderr
        assert "broken.lua:2:" in res.stderr and "key 'lua'" in res.stderr
        assert "Traceback" not in res.stderr


def test_unknown_engine_is_a_config_error(make_instance, cli):
    inst = make_instance({"lua-engine": "lua99"}, start=False)
    res = cli("check", str(inst.config_path))
    assert res.returncode == 2
    assert "lua-engine" in res.stderr and "lua99" in res.stderr


def test_budget_stops_a_runaway_handler_and_keeps_the_process(make_instance):
    inst = runaway_instance(make_instance, **{"lua-budget": 0.3})
    pid = inst.worker(1)["pid"]
    inst.signal(1)
    wait_for(lambda: inst.signal_stats(1).get("failed") == 1, timeout=20,
             message=lambda: inst.log[-3000:])
    assert "exceeded lua-budget of 0.3 s" in inst.log
    assert "runaway.lua:3:" in inst.log   # the line of `spin`
    inst.signal(4)
    wait_for(lambda: "hello from lua 4 in worker 1" in inst.stdout)
    assert inst.worker(1)["pid"] == pid


def test_budget_cannot_be_removed_by_the_handler(make_instance):
    inst = runaway_instance(make_instance, **{"lua-budget": 0.3})
    inst.signal(3)
    wait_for(lambda: inst.signal_stats(3).get("failed") == 1, message=lambda: inst.log)
    assert "debug.sethook is reserved" in inst.log


def test_harakiri_stops_what_the_budget_cannot(make_instance):
    inst = runaway_instance(make_instance, **{"lua-budget": 0.2, "harakiri": 1})
    pid = inst.worker(1)["pid"]
    inst.signal(2)
    wait_for(lambda: inst.worker(1)["harakiri_count"] == 1, timeout=20,
             message=lambda: inst.log[-3000:])
    wait_for(lambda: inst.worker(1)["pid"] not in (0, pid), message=lambda: inst.log[-2000:])
    assert "harakiri" in inst.log and "lua:runaway.lua:pcall_spin" in inst.log
    assert inst.signal_stats(2)["dropped"] == {"harakiri": 1}
    inst.signal(4)
    wait_for(lambda: "hello from lua 4 in worker 1" in inst.stdout)


def test_harakiri_kills_a_runaway_without_budget(make_instance):
    inst = runaway_instance(make_instance, harakiri=1)
    inst.signal(1)
    wait_for(lambda: inst.worker(1)["harakiri_count"] == 1, timeout=20,
             message=lambda: inst.log[-3000:])
    wait_for(lambda: "respawning" in inst.log)


def test_uwsgi_log_and_print(make_instance):
    inst = runaway_instance(make_instance)
    inst.signal(5)
    inst.signal(4)
    wait_for(lambda: "lua says 5 True" in inst.log, message=lambda: inst.log)
    wait_for(lambda: "hello from lua 4 in worker 1" in inst.stdout)
