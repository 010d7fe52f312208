"""Applying a config in the master (SPEC sections 3, 10, 14): python-path relative to the
config, explicit [[signal]] entries before imports, decorators registering while their
module is still being imported, and errors that name the file, the entry and the key.
"""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from switchboard import hosts, loader
from switchboard.config import load
from switchboard.errors import ConfigError
from switchboard.table import HandlerKind
from switchboard.targets import Kind, Target


@pytest.fixture
def app(tmp_path, monkeypatch, master_ctx):
    """A deployment folder; sys.path, sys.modules and the Lua host are restored after."""
    from switchboard.hosts import lua
    monkeypatch.setattr(lua, "_host", lua._Host())
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    (tmp_path / "lib").mkdir()
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("sbu_"):
            del sys.modules[name]


def apply(cfg, table) -> list[dict]:
    """loader.apply; the event sources it asked for."""
    sources: list[dict] = []
    loader.apply(cfg, table, sources.append)
    return sources


def write(folder, name, text):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def unique(tmp_path, stem):
    return f"sbu_{stem}_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**8}"


DECORATED = """
    from uwsgidecorators import signal, get_free_signal

    @signal(40, target="workers")
    def tick(num):
        return num

    FREE = get_free_signal()

    @signal(FREE)
    def auto(num):
        return num
"""


def test_decorators_register_while_their_module_is_imported(app, master_ctx):
    mod = unique(app, "deco")
    write(app / "lib", f"{mod}.py", DECORATED)
    cfg = write(app, "sb.toml", f"""
        [switchboard]
        python-path = ["lib"]
        import = ["{mod}"]

        [[signal]]
        num = 0
        handler = "python:os:getpid"
    """)
    apply(load(str(cfg)), master_ctx.table)
    table = master_ctx.table
    assert str(app / "lib") in sys.path
    tick = table.get(40)
    assert (tick.kind, tick.target) == (HandlerKind.REFERENCE, Target(Kind.WORKERS))
    assert tick.ref == f"python:{mod}:tick"
    assert hosts.resolve(tick.ref) is sys.modules[mod].tick
    assert table.get(0).ref == "python:os:getpid"
    assert table.get(1).ref == f"python:{mod}:auto"       # lowest free after the explicit 0


def test_free_numbers_skip_explicit_entries_whose_handler_module_uses_decorators(app,
                                                                                 master_ctx):
    # The [[signal]] entry's handler lives in the module that also takes a free number:
    # resolving the entry imports the module.  SPEC 14: automatic numbers are taken
    # lowest-free after every explicit number is placed.
    mod = unique(app, "deco2")
    write(app / "lib", f"{mod}.py", DECORATED)
    cfg = write(app, "sb.toml", f"""
        [switchboard]
        workers = 2
        python-path = ["lib"]
        import = ["{mod}"]

        [[signal]]
        num = 0
        target = "worker2"
        handler = "python:{mod}:tick"
    """)
    apply(load(str(cfg)), master_ctx.table)
    table = master_ctx.table
    first = table.get(0)
    assert (first.target, first.ref) == (Target(Kind.WORKER_N, 2), f"python:{mod}:tick")
    assert sys.modules[mod].FREE != 0, "get_free_signal() handed out the config's number 0"
    autos = [e.num for e in table.entries() if e.ref == f"python:{mod}:auto"]
    assert autos == [1], "the decorator's registration was overwritten"


def test_python_path_entries_keep_their_order_and_are_relative_to_the_config(app, master_ctx,
                                                                              monkeypatch):
    write(app, "sb.toml", '[switchboard]\npython-path = ["a", "b", "../c"]\n')
    monkeypatch.chdir("/")
    apply(load(str(app / "sb.toml")), master_ctx.table)
    index = [sys.path.index(str(p)) for p in (app / "a", app / "b", app.parent / "c")]
    assert index == sorted(index)


def test_an_unresolvable_signal_handler_names_file_entry_and_key(app, master_ctx):
    cfg = write(app, "sb.toml", """
        [[signal]]
        num = 3
        handler = "python:os:getpid"

        [[signal]]
        num = 4
        handler = "python:sbu_not_a_module:f"
    """)
    with pytest.raises(ConfigError) as err:
        apply(load(str(cfg)), master_ctx.table)
    assert err.value.path == str(cfg)
    assert "[[signal]] #2" in err.value.entry and err.value.key == "handler"
    assert "python:sbu_not_a_module:f" in str(err.value)


def test_a_failing_import_names_the_module_the_error_and_where(app, master_ctx):
    mod = unique(app, "bad")
    write(app / "lib", f"{mod}.py", """
        from uwsgidecorators import signal

        @signal(300)
        def h(num):
            return num
    """)
    cfg = write(app, "sb.toml", f'[switchboard]\npython-path = ["lib"]\nimport = ["{mod}"]\n')
    with pytest.raises(ConfigError) as err:
        apply(load(str(cfg)), master_ctx.table)
    assert (err.value.entry, err.value.key) == ("[switchboard]", "import")
    text = str(err.value)
    assert f"importing '{mod}'" in text and "300" in text
    # "where in user code it was raised": the user's decorator line, not the runtime's
    assert f"{mod}.py:" in text, text


def test_a_missing_module_in_import_is_a_config_error(app, master_ctx):
    cfg = write(app, "sb.toml", '[switchboard]\nimport = ["sbu_surely_missing"]\n')
    with pytest.raises(ConfigError, match="sbu_surely_missing") as err:
        apply(load(str(cfg)), master_ctx.table)
    assert err.value.key == "import"
