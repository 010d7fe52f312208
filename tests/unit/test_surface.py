"""The `uwsgi` module's surface: one table of names for Python and Lua."""

from __future__ import annotations

import functools
import threading

import pytest

from switchboard import api, binding, decorators
from switchboard.context import Context
from switchboard.hosts import lua
from switchboard.hosts.python import reference_of
from switchboard.targets import Role


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


@pytest.mark.parametrize("call", ["uwsgi:signal(5)", "uwsgi:worker_id()"])
def test_a_colon_call_says_to_use_a_dot(master_ctx, fresh_lua, call):
    """`uwsgi:signal(5)` used to fail with "must be an integer, not _LuaTable"."""
    name = call[6:call.index("(")]
    with pytest.raises(lua._host.module.LuaError,
                       match=rf"call uwsgi\.{name} with a dot, not uwsgi:{name}"):
        fresh_lua.execute(call)


def test_a_dot_call_is_untouched_by_the_colon_check(master_ctx, fresh_lua):
    # a call without arguments must reach Python without an added nil
    assert fresh_lua.eval("uwsgi.signal_registered(5)") is False
    assert fresh_lua.eval("uwsgi.worker_id()") == 0


def test_the_runtime_functions_are_not_on_the_uwsgi_module():
    # uWSGI 2.0.31's `uwsgi` module has neither (checked with dir(uwsgi) in a worker)
    assert not hasattr(api, "install")
    assert not hasattr(api, "run_postfork_hooks")


# -- issue 16, item 4: bugs found on the way ----------------------------------------------

def plain(num):
    return num


def test_a_wraps_wrapper_is_a_local_callable_not_its_functions_name():
    # uwsgiconf registers such a wrapper: the name `plain` runs plain, not the wrapper
    wrapper = functools.wraps(plain)(lambda num: ("wrapped", plain(num)))
    assert reference_of(plain) == f"python:{__name__}:plain"
    assert reference_of(wrapper) is None


def test_postfork_with_a_worker_id_runs_in_that_worker_only(master_ctx):
    # uWSGI 2.0.31: @postfork(2) printed only in worker 2 (of 2 workers and 3 mules)
    calls = []
    decorators.postfork_chain.clear()

    @decorators.postfork(2)
    def second():
        calls.append(api.worker_id())

    for ident in (1, 2):
        binding.install(Context(Role.WORKER, ident, ident, master_ctx.topology,
                                master_ctx.shared, master_ctx.table, master_ctx.masterpid))
        binding.run_postfork_hooks()
    assert calls == [2]


def test_decorators_ignore_keywords_they_do_not_know(master_ctx):
    # uWSGI's signal/timer/cron/rbtimer/filemon/farm take **kwargs and ignore them
    decorators.signal(5, target="worker", extra=1)(plain)
    assert master_ctx.table.get(5) is not None
    assert decorators.timer(1, target="worker", signum=6, extra=1).num == 6
    decorators.farm("f", extra=1)


def test_thread_runs_each_call_in_a_daemon_thread():
    # uWSGI 2.0.31: `@thread` f(5) printed from a thread; the call returns the function
    done = threading.Event()
    seen = []

    @decorators.thread
    def work(x):
        seen.append((x, threading.current_thread() is not threading.main_thread()))
        done.set()

    assert work(5) is work.f
    assert done.wait(5) and seen == [(5, True)]


def test_star_import_of_uwsgidecorators_brings_every_name(master_ctx):
    # uWSGI 2.0.31: after `from uwsgidecorators import *`, "uwsgi" in dir() is True
    namespace: dict[str, object] = {}
    exec("from uwsgidecorators import *", namespace)
    for name in ("uwsgi", "mulefunc", "mule", "muleloop", "mulemsg", "farm", "thread",
                 "postfork", "signal", "timer", "spool", "mule_functions",
                 "mule_msg_dispatcher", "postfork_chain", "spooler_functions"):
        assert name in namespace, name
    assert namespace["uwsgi"] is api


def test_importing_uwsgidecorators_installs_the_mule_message_dispatcher():
    # uWSGI 2.0.31 sets uwsgi.mule_msg_hook = mule_msg_dispatcher at import
    assert api.mule_msg_hook is decorators.mule_msg_dispatcher
