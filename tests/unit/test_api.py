"""The `uwsgi` API and `uwsgidecorators` (SPEC sections 3 and 8), bound to a master-less
context: the master's context over real shared memory and a router over socketpairs,
or a child's context in a real forked process.
"""

from __future__ import annotations

import fcntl
import functools
import os

import pytest

from switchboard import api, binding, decorators, hosts
from switchboard.context import Context
from switchboard.hosts.python import reference_of
from switchboard.shared import REF_MAX, USER_LOCKS
from switchboard.table import HandlerKind
from switchboard.targets import Kind, Role, Target

from .conftest import fork_call, start_child

REF = HandlerKind.REFERENCE
LOCAL = HandlerKind.LOCAL


def module_level_handler(num):
    return num


def child_context(master_ctx, role: Role, ident: int) -> Context:
    topo = master_ctx.topology
    return Context(role, ident, topo.slot(role, ident), topo, master_ctx.shared,
                   master_ctx.table, master_ctx.masterpid)


# -- register_signal: argument checks ------------------------------------------------------

@pytest.mark.parametrize("num", [True, False, "5", 5.0, None])
def test_register_signal_number_type_errors_name_the_argument(master_ctx, num):
    with pytest.raises(TypeError, match="signal number"):
        api.register_signal(num, "worker", "python:os:getpid")
    assert master_ctx.table.entries() == []


@pytest.mark.parametrize("num", [-1, 256, 10**6])
def test_register_signal_number_range_errors_name_the_value(master_ctx, num):
    with pytest.raises(ValueError, match=str(num)):
        api.register_signal(num, "worker", "python:os:getpid")


@pytest.mark.parametrize("target", ["nope", "worker4", "Worker", "mule3", "farm_nope",
                                    "farm3", "cluster"])
def test_register_signal_bad_targets_name_the_value(master_ctx, target):
    with pytest.raises(ValueError, match=target):
        api.register_signal(1, target, "python:os:getpid")
    assert master_ctx.table.get(1) is None


def test_register_signal_mule_and_spooler_targets_need_those_processes(restore_api, shared,
                                                                       table):
    from switchboard.master import MasterContext
    from switchboard.targets import Topology
    topo = Topology(workers=2)
    ctx = MasterContext(Role.MASTER, 0, 0, topo, shared, table, os.getpid())
    binding.install(ctx)
    for target in ("mule", "mules", "mule1", "spooler", "farm1"):
        with pytest.raises(ValueError, match=target):
            api.register_signal(1, target, "python:os:getpid")
    assert table.entries() == []


@pytest.mark.parametrize("target", [None, 1, b"worker", ["worker"]])
def test_register_signal_target_type_error_names_the_argument(master_ctx, target):
    with pytest.raises(TypeError, match="target"):
        api.register_signal(1, target, "python:os:getpid")


@pytest.mark.parametrize("handler", [None, 5, b"python:os:getpid", ["python:os:getpid"]])
def test_register_signal_handler_type_error_names_the_argument(master_ctx, handler):
    with pytest.raises(TypeError, match="handler"):
        api.register_signal(1, "worker", handler)
    assert master_ctx.table.get(1) is None


# -- register_signal: references -------------------------------------------------------------

def test_a_reference_string_is_resolved_and_stored(master_ctx, handler_module):
    ref = f"python:{handler_module.__name__}:hello"
    api.register_signal(30, "worker2", ref)
    entry = master_ctx.table.get(30)
    assert (entry.kind, entry.ref, entry.target, entry.owner) == (
        REF, ref, Target(Kind.WORKER_N, 2), 0)
    assert api.signal_registered(30) is True


@pytest.mark.parametrize("suffix, needle", [
    ("", "python:MODULE:QUALNAME"),                  # "python:NAME" with no function
    (":", "python:MODULE:QUALNAME"),
    (":nothing_here", "nothing_here"),
    (":NOT_CALLABLE", "int"),
    (":Box.nothing", "Box.nothing"),
])
def test_unresolvable_python_references_name_the_reference(master_ctx, handler_module,
                                                           suffix, needle):
    ref = f"python:{handler_module.__name__}{suffix}"
    with pytest.raises(ValueError) as err:
        api.register_signal(3, "worker", ref)
    assert ref in str(err.value) and needle in str(err.value)
    assert master_ctx.table.get(3) is None


def test_a_reference_to_a_missing_module_names_it(master_ctx):
    with pytest.raises(ValueError) as err:
        api.register_signal(3, "worker", "python:no_such_module_sb:f")
    assert "no_such_module_sb" in str(err.value)


def test_a_module_that_fails_to_import_gives_its_error(master_ctx, handler_module):
    ref = f"python:{handler_module.__name__}_broken:f"
    with pytest.raises(ValueError) as err:
        api.register_signal(3, "worker", ref)
    assert ref in str(err.value) and "boom at import" in str(err.value)


@pytest.mark.parametrize("ref", ["getpid", "os:getpid", "ruby:x:y", "PYTHON:os:getpid",
                                 "lua:nope", "lua:x.py:f"])
def test_other_bad_references_are_value_errors_naming_them(master_ctx, ref):
    with pytest.raises(ValueError) as err:
        api.register_signal(3, "worker", ref)
    assert ref in str(err.value)
    assert master_ctx.table.get(3) is None


def test_a_lua_reference_to_a_missing_script_names_the_script(master_ctx, monkeypatch):
    from switchboard.hosts import lua
    monkeypatch.setattr(lua, "_host", lua._Host())       # a throwaway Lua runtime
    with pytest.raises(ValueError, match="/nonexistent/sb_unit.lua"):
        api.register_signal(3, "worker", "lua:/nonexistent/sb_unit.lua:f")
    assert master_ctx.table.get(3) is None


def test_a_reference_longer_than_the_table_holds_is_refused(master_ctx, handler_module):
    name = handler_module.LONG_NAME
    assert len(f"python:{handler_module.__name__}:{name}") > REF_MAX
    func = getattr(handler_module, name)
    with pytest.raises(ValueError, match=str(REF_MAX)):
        api.register_signal(3, "worker", func)
    with pytest.raises(ValueError, match=str(REF_MAX)):
        api.register_signal(3, "worker", f"python:{handler_module.__name__}:{name}")
    assert master_ctx.table.get(3) is None


# -- register_signal: callables --------------------------------------------------------------

def test_a_module_level_function_is_stored_as_its_reference(master_ctx, handler_module):
    api.register_signal(4, "workers", handler_module.hello)
    entry = master_ctx.table.get(4)
    assert entry.kind is REF
    assert entry.ref == f"python:{handler_module.__name__}:hello"
    assert hosts.resolve(entry.ref) is handler_module.hello
    assert 4 not in master_ctx.local_handlers


def test_a_lambda_in_the_master_is_a_local_callable_every_child_inherits(master_ctx):
    def handler(num):
        return num

    api.register_signal(5, "workers", handler)
    entry = master_ctx.table.get(5)
    assert (entry.kind, entry.owner, entry.target) == (LOCAL, 0, Target(Kind.WORKERS))
    gen, func = master_ctx.local_handlers[5]
    assert func is handler and gen == entry.gen
    assert "handler" in entry.ref


def test_re_registering_replaces_the_entry(master_ctx, handler_module):
    api.register_signal(6, "worker", lambda n: n)
    first = master_ctx.table.get(6)
    api.register_signal(6, "worker3", handler_module.hello)
    second = master_ctx.table.get(6)
    assert (second.kind, second.target) == (REF, Target(Kind.WORKER_N, 3))
    assert second.gen > first.gen
    assert len(master_ctx.table.entries()) == 1


def test_unregister_signal(master_ctx):
    api.register_signal(7, "worker", "python:os:getpid")
    assert api.unregister_signal(7) is True
    assert api.signal_registered(7) is None
    assert api.unregister_signal(7) is False
    with pytest.raises(TypeError):
        api.unregister_signal(True)
    with pytest.raises(ValueError, match="256"):
        api.unregister_signal(256)


def test_signal_registered_is_true_or_none(master_ctx):
    assert api.signal_registered(8) is None
    api.register_signal(8, "worker", "python:os:getpid")
    assert api.signal_registered(8) is True
    with pytest.raises(ValueError, match="-3"):
        api.signal_registered(-3)


# -- the local-callable rule in a child ------------------------------------------------------

@pytest.mark.parametrize("target", ["worker2", "worker3", "mules", "mule1", "spooler",
                                    "farm_light"])
def test_a_child_cannot_register_a_closure_for_a_target_that_never_reaches_it(
        master_ctx, target):
    binding.install(child_context(master_ctx, Role.WORKER, 1))
    with pytest.raises(ValueError) as err:
        api.register_signal(9, target, lambda n: n)
    message = str(err.value)
    assert "worker 1" in message and target in message
    assert master_ctx.table.get(9) is None


@pytest.mark.parametrize("target", ["worker1", "workers", "worker", "active-workers"])
def test_a_child_may_register_a_closure_for_a_target_that_includes_it(master_ctx, target):
    ctx = child_context(master_ctx, Role.WORKER, 1)
    binding.install(ctx)
    api.register_signal(9, target, lambda n: n)
    entry = master_ctx.table.get(9)
    assert (entry.kind, entry.owner) == (LOCAL, 1)
    assert 9 in ctx.local_handlers


def test_a_child_may_register_a_module_level_function_for_any_target(master_ctx,
                                                                      handler_module):
    binding.install(child_context(master_ctx, Role.MULE, 2))
    api.register_signal(10, "worker3", handler_module.hello)
    entry = master_ctx.table.get(10)
    assert (entry.kind, entry.target, entry.owner) == (REF, Target(Kind.WORKER_N, 3), 5)


def test_a_forked_worker_registration_is_routed_by_the_master_as_registered(master_ctx,
                                                                            handler_module):
    table, router = master_ctx.table, master_ctx.router

    def worker_1():
        binding.install(child_context(master_ctx, Role.WORKER, 1))
        with pytest.raises(ValueError):
            api.register_signal(11, "worker2", lambda n: n)
        api.register_signal(11, "workers", lambda n: n)      # a closure: worker 1 only
        api.register_signal(12, "worker3", handler_module.hello)   # a reference: as given

    assert fork_call(worker_1) == 0
    assert router.route(11) and router.route(12)
    assert bytes(router.boxes[1].buf) == b"\x0b"
    assert bytes(router.boxes[2].buf) == b""
    assert bytes(router.boxes[3].buf) == b"\x0c"
    # worker 1 is gone: its closure went with it, the reference stays
    assert table.drop_owned_by(1) == [11]
    assert table.get(12).ref.endswith(":hello")


# -- reference_of ----------------------------------------------------------------------------

def test_reference_of_module_level_things(handler_module):
    name = handler_module.__name__
    assert reference_of(handler_module.hello) == f"python:{name}:hello"
    assert reference_of(handler_module.Box) == f"python:{name}:Box"
    assert reference_of(handler_module.Box.static) == f"python:{name}:Box.static"
    assert reference_of(module_level_handler) == f"python:{__name__}:module_level_handler"
    for func in (handler_module.hello, handler_module.Box.static, module_level_handler):
        assert hosts.resolve(reference_of(func)) is func


def test_reference_of_things_that_live_only_in_this_process(handler_module):
    def nested(num):
        return num

    class Callable:
        def __call__(self, num):
            return num

    main_func = functools.partial(module_level_handler)

    def in_main(num):
        return num
    in_main.__module__ = "__main__"
    in_main.__qualname__ = "in_main"

    for thing in (lambda n: n, nested, handler_module.Box().method, main_func, Callable(),
                  in_main, Callable, print, os.getpid):
        assert reference_of(thing) is None, thing


# -- uwsgidecorators -------------------------------------------------------------------------

def test_install_injects_uwsgi_and_uwsgidecorators(master_ctx):
    import uwsgi
    import uwsgidecorators
    assert uwsgi is api and uwsgidecorators is decorators
    namespace: dict = {}
    exec("from uwsgidecorators import *", namespace)
    assert namespace["uwsgi"] is api
    uwsgi.user_attribute = 1                 # user code may set attributes on uwsgi
    assert api.user_attribute == 1
    del uwsgi.user_attribute


def test_the_signal_decorator_registers_and_returns_the_function(master_ctx, handler_module):
    func = handler_module.hello
    assert decorators.signal(21, target="workers")(func) is func
    entry = master_ctx.table.get(21)
    assert (entry.kind, entry.target) == (REF, Target(Kind.WORKERS))
    assert decorators.signal(22)(func) is func
    assert master_ctx.table.get(22).target == Target(Kind.WORKER)   # default target ""


def test_the_signal_decorator_checks_like_register_signal(master_ctx):
    with pytest.raises(ValueError, match="300"):
        decorators.signal(300)(module_level_handler)
    with pytest.raises(ValueError, match="worker9"):
        decorators.signal(1, target="worker9")(module_level_handler)


def test_get_free_signal_is_the_lowest_free(master_ctx):
    assert decorators.get_free_signal() == 0
    api.register_signal(0, "worker", "python:os:getpid")
    api.register_signal(2, "worker", "python:os:getpid")
    assert decorators.get_free_signal() == 1


def test_postfork_functions_run_in_order(master_ctx):
    calls = []
    decorators.postfork_chain.clear()

    @decorators.postfork
    def first():
        calls.append("first")

    decorators.postfork(lambda: calls.append("second"))
    api.post_fork_hook = lambda: calls.append("hook")
    binding.install(child_context(master_ctx, Role.WORKER, 1))
    binding.run_postfork_hooks()
    assert calls == ["first", "second", "hook"]
    first()
    assert calls[-1] == "first"


@pytest.mark.parametrize("role", [Role.MASTER, Role.SOURCES])
def test_the_postfork_chain_runs_in_workers_mules_and_spoolers_only(master_ctx, role):
    # uWSGI 2.0.31 runs it in workers, mules and spoolers (checked: a @postfork printing
    # its pid runs once per worker/mule/spooler, never in the master)
    calls = []
    decorators.postfork_chain.clear()
    decorators.postfork(lambda: calls.append("ran"))
    binding.install(child_context(master_ctx, role, 0 if role is Role.MASTER else 1))
    binding.run_postfork_hooks()
    assert calls == []


# -- raising from the master -----------------------------------------------------------------

def test_signal_hands_the_number_to_the_router(master_ctx):
    router = master_ctx.router
    api.register_signal(30, "worker", "python:os:getpid")
    api.signal(30)
    assert bytes(router.groups[Target(Kind.WORKER)].buf) == b"\x1e"
    assert router.raised[30] == 1
    api.signal(31)                                      # unregistered: held for a waiter
    assert list(router.held) == [31]


def test_signal_to_a_full_queue_is_an_os_error(master_ctx):
    router = master_ctx.router
    api.register_signal(30, "worker2", "python:os:getpid")
    while not router.boxes[2].full():
        api.signal(30)
    raised = router.raised[30]
    with pytest.raises(OSError, match="30"):
        api.signal(30)
    assert router.raised[30] == raised


@pytest.mark.parametrize("num, exc", [(True, TypeError), (256, ValueError),
                                      (-1, ValueError), ("1", TypeError)])
def test_signal_checks_its_number(master_ctx, num, exc):
    with pytest.raises(exc):
        api.signal(num)


def test_a_remote_signal_is_not_supported_yet(master_ctx):
    with pytest.raises(OSError, match="remote|not supported"):
        api.signal(1, "10.0.0.1:3031")


@pytest.mark.parametrize("kwargs, exc", [
    ({"num": 256}, ValueError), ({"num": True}, TypeError), ({"timeout": -1}, ValueError),
    ({"timeout": "1"}, TypeError), ({"timeout": True}, TypeError),
])
def test_signal_wait_checks_its_arguments(master_ctx, kwargs, exc):
    with pytest.raises(exc):
        api.signal_wait(**kwargs)


# -- who am I --------------------------------------------------------------------------------

def test_identity_in_the_master(master_ctx):
    assert api.worker_id() == 0 and api.mule_id() == 0
    assert api.i_am_the_spooler() is None      # as uWSGI 2.0.31 (checked)
    assert api.masterpid() == os.getpid()
    assert api.numproc == master_ctx.topology.workers
    assert api.signal_received() == -1


@pytest.mark.parametrize("role, ident, expected", [
    (Role.WORKER, 2, (2, 0, None)), (Role.MULE, 1, (0, 1, None)),
    (Role.SPOOLER, 1, (0, 0, True)),
])
def test_identity_in_children(master_ctx, role, ident, expected):
    binding.install(child_context(master_ctx, role, ident))
    assert (api.worker_id(), api.mule_id(), api.i_am_the_spooler()) == expected


def test_the_api_outside_switchboard_says_so(restore_api):
    api._ctx = None
    with pytest.raises(RuntimeError, match="Switchboard"):
        api.register_signal(1, "worker", "python:os:getpid")


# -- user locks ------------------------------------------------------------------------------

@pytest.mark.parametrize("n, exc", [(True, TypeError), ("0", TypeError), (-1, ValueError),
                                    (USER_LOCKS, ValueError)])
def test_lock_numbers_are_checked(master_ctx, n, exc):
    with pytest.raises(exc, match="lock number"):
        api.lock(n)
    with pytest.raises(exc, match="lock number"):
        api.unlock(n)


@pytest.mark.timeout(20)
def test_a_user_lock_excludes_other_processes_and_only_that_lock(master_ctx):
    fd = master_ctx.shared.fd

    def try_lock(byte):
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
        except OSError:
            return False
        return True

    mine, other = api._user_lock(3), api._user_lock(4)     # the bytes they lock
    api.lock(3)
    try:
        assert fork_call(lambda: _check(not try_lock(mine))) == 0
        assert fork_call(lambda: _check(try_lock(other))) == 0
        assert fork_call(lambda: _check(try_lock(0))) == 0     # nor the table's lock
    finally:
        api.unlock(3)
    assert fork_call(lambda: _check(try_lock(mine))) == 0


def _check(condition: bool) -> None:
    assert condition


@pytest.mark.timeout(20)
def test_a_user_lock_held_by_a_dead_process_is_released(master_ctx):
    r, w = os.pipe()

    def holder():
        api.lock(0)
        os.write(w, b"x")
        os._exit(0)                     # dies holding it

    pid = start_child(holder)
    assert os.read(r, 1) == b"x"
    os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    api.lock(0)                         # would hang if the lock had outlived its holder
    api.unlock(0)
