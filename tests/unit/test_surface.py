"""The `uwsgi` module's surface: one table of names for Python and Lua."""

from __future__ import annotations

import pytest

from switchboard import api
from switchboard.hosts import lua


@pytest.fixture
def fresh_lua(monkeypatch):
    """A throwaway Lua runtime of this process, built from the installed API."""
    monkeypatch.setattr(lua, "_host", lua._Host())
    return lua.runtime()


def test_every_api_name_is_a_python_function_and_a_lua_function(master_ctx, fresh_lua):
    table = fresh_lua.globals().uwsgi
    for name in api.NAMES:
        assert callable(getattr(api, name)), name
        assert lua._type(table[name]) == "function", name


def test_a_name_added_to_the_api_is_added_to_lua(master_ctx, monkeypatch):
    monkeypatch.setattr(api, "answer", lambda n: n * 2, raising=False)
    monkeypatch.setattr(api, "NAMES", (*api.NAMES, "answer"))
    monkeypatch.setattr(lua, "_host", lua._Host())
    # Lua's whole numbers reach Python as int, as every name's arguments do
    assert lua.runtime().eval("uwsgi.answer(21)") == 42


def test_lua_argument_errors_are_lua_errors_at_the_caller(master_ctx, fresh_lua):
    with pytest.raises(lua._host.module.LuaError, match="out of range"):
        fresh_lua.execute("uwsgi.signal(300)")


def test_the_runtime_functions_are_not_on_the_uwsgi_module():
    # uWSGI 2.0.31's `uwsgi` module has neither (checked with dir(uwsgi) in a worker)
    assert not hasattr(api, "install")
    assert not hasattr(api, "run_postfork_hooks")
