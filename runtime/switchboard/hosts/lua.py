"""The Lua host: one lupa runtime per process, and handlers written in Lua.

The master creates the runtime (when the config needs Lua) before it forks, with no
thread inside it, so each child inherits a runtime of its own holding what the
config's scripts set up: functions they defined and registered run in every child,
as in uWSGI.  A handler runs under xpcall, so its error carries the Lua file, line and
traceback; with `lua-budget` a count hook stops a runaway handler.

The Lua `uwsgi` table is built from the API module handed to use_api(): one entry per
name in its NAMES.  To add a name to both languages, write the function in the API (or
a module api.py re-exports) and add it to NAMES; Lua's arguments reach it through
_plain() (whole numbers as int, tables as dicts).  Only if that is not enough, write an
adapter here and list it in _ADAPTERS.  Errors the function raises as ValueError,
TypeError, OSError or RuntimeError become Lua errors at the caller.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from types import ModuleType
from typing import Any

from switchboard.errors import HandlerError

log = logging.getLogger("switchboard.lua")

ENGINES = ("lua54", "lua55", "luajit21")


_NO_MESSAGE = ("error() was called with a value that is not a string: Lua gives "
               "no message, file or line for it (use error(\"text\"))")


class LuaHandlerError(HandlerError):
    """A Lua handler failed; the message holds Lua's own file:line and traceback."""


@dataclass
class _Host:
    engine: str = "lua54"
    folder: str = "."
    budget: float = 0.0
    module: ModuleType | None = None
    runtime: Any = None
    glue: Any = None
    scripts: dict[str, Any] = field(default_factory=dict)   # path -> what it returned
    loading: set[str] = field(default_factory=set)


_host = _Host()
_api: ModuleType | None = None     # the `uwsgi` module its table is built from (use_api)


def configure(engine: str, folder: str, budget: float) -> None:
    """Set the engine, the folder Lua paths are relative to, and the per-call budget."""
    _host.engine, _host.folder, _host.budget = engine, folder, budget


def reset() -> None:
    """A reload: the next use makes a fresh runtime and runs the scripts again."""
    _host.runtime = _host.glue = None
    _host.scripts.clear()
    _host.loading.clear()


def runtime() -> Any:
    """This process's LuaRuntime, created on first use."""
    if _host.runtime is None:
        _create()
    return _host.runtime


def _create() -> None:
    module = importlib.import_module("lupa." + _host.engine)
    lua = module.LuaRuntime(unpack_returned_tuples=True)
    source = resources.files("switchboard.hosts").joinpath("prelude.lua").read_text()
    glue = lua.execute(source, name="@switchboard/prelude.lua")
    glue.setup(lua.table_from(_api_functions()), _write, _host.budget)
    _host.module, _host.runtime, _host.glue = module, lua, glue


def run_script(path: str) -> None:
    """Run a script from the config's `lua` list (once per process)."""
    _load(path)


def resolve(ref: str, rest: str) -> LuaHandler:
    """The handler a `lua:PATH.lua:FUNCTION` reference names; ValueError if none."""
    path, sep, name = rest.rpartition(":")
    if not sep or not path.endswith(".lua") or not name:
        raise ValueError(f"handler reference '{ref}' must look like lua:PATH.lua:FUNCTION")
    try:
        returned = _load(path)
    except ValueError as exc:
        raise ValueError(f"handler reference '{ref}': {exc}") from None
    func = _lookup(returned, name) if _type(returned) == "table" else None
    if func is None:
        func = _lookup(runtime().globals(), name)
    if _type(func) != "function":
        raise ValueError(f"handler reference '{ref}': {path} defines no function '{name}' "
                         "(neither a global nor a field of the table it returns)")
    return LuaHandler(func, ref)


def _load(path: str) -> Any:
    full = os.path.normpath(os.path.join(_host.folder, path))
    if full in _host.scripts:
        return _host.scripts[full]
    if full in _host.loading:
        raise ValueError(f"Lua script {path} refers to itself while it is being loaded "
                         "(register its functions as values, not as lua: references)")
    lua = runtime()
    try:
        with open(full, encoding="utf-8") as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read Lua script {path}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    _host.loading.add(full)
    try:
        result = lua.execute(source, full, name="@" + path)   # the script's `...` = its path
    except _host.module.LuaError as exc:  # type: ignore[union-attr]
        message = _without_glue(str(exc).removeprefix("error loading code: "))
        raise ValueError(f"Lua script {path} failed: {message}") from None
    finally:
        _host.loading.discard(full)
    if isinstance(result, tuple):
        result = result[0] if result else None
    _host.scripts[full] = result
    return result


def _without_glue(message: str) -> str:
    """Drop the prelude's own frames from a Lua traceback: the user did not write them."""
    lines = message.splitlines()
    return "\n".join(line for line in lines
                     if "switchboard/prelude.lua" not in line and "'xpcall'" not in line)


def _lookup(table: Any, dotted: str) -> Any:
    obj = table
    for part in dotted.split("."):
        if _type(obj) != "table":
            return None
        obj = obj[part]
    return obj


def _type(obj: Any) -> str | None:
    return _host.module.lua_type(obj) if _host.module and obj is not None else None


class LuaHandler:
    """A Lua function as a handler (or a mule program), called like a Python one.

    Without a budget the function is called directly (lupa's error carries Lua's
    file:line and traceback); with one, through the prelude's guard.
    """

    __slots__ = ("func", "name", "_guard")

    def __init__(self, func: Any, name: str = "") -> None:
        self.func = func
        self.name = name or _host.glue.describe(func)
        self._guard = _host.glue.call if _host.budget > 0 else None

    def __call__(self, *args: Any) -> None:
        """handler(signum) for a handler; program() for a mule program."""
        if self._guard is None:
            try:
                self.func(*args)
            except _host.module.LuaError as exc:  # type: ignore[union-attr]
                raise LuaHandlerError(_without_glue(str(exc)) or _NO_MESSAGE) from None
            return
        ok, err = self._guard(self.func, *args)
        if ok:
            return
        if isinstance(err, BaseException):
            raise err               # a Python exception raised under Lua, or the stop
        raise LuaHandlerError(_without_glue(err) if isinstance(err, str) else _NO_MESSAGE)

    def fastest(self) -> Any:
        """What the per-signal path calls: without a budget, lupa's function itself
        (a Lua error then reaches the caller as a LuaError: see error_text())."""
        return self.func if self._guard is None else self

    def unbudgeted(self) -> LuaHandler:
        """The same function, called without the lua-budget guard (a mule program)."""
        copy = LuaHandler(self.func, self.name)
        copy._guard = None
        return copy

    def __repr__(self) -> str:
        return self.name


def error_text(exc: BaseException) -> str | None:
    """Lua's own message (file:line and traceback) if `exc` is a Lua error, else None."""
    module = _host.module
    if module is None or not isinstance(exc, module.LuaError):
        return None
    return _without_glue(str(exc)) or _NO_MESSAGE


# -- the `uwsgi` table: built from the API handed to use_api() --------------------------

def use_api(module: ModuleType) -> None:
    """Hand the host the `uwsgi` module whose NAMES make the Lua table (binding.install)."""
    global _api
    _api = module


def _api_functions() -> dict[str, Any]:
    """Every name in the API's NAMES, plus Lua's own log(): Python functions returning
    (ok, value), which the prelude turns into a value or a Lua error."""
    api = _api
    if api is None:
        raise RuntimeError("the Lua host has no API: binding.install() was not called")
    functions = {name: _ADAPTERS.get(name, _plain)(getattr(api, name)) for name in api.NAMES}
    functions.setdefault("log", _log)
    for name, fn in functions.items():
        fn.__qualname__ = name        # argument errors then read as Python's: "signal() ..."
    return {name: _safe(fn) for name, fn in functions.items()}


def _plain(fn: Any) -> Any:
    """The usual conversion: whole numbers as int, a Lua table as a dict."""
    def call(*args: Any) -> Any:
        return fn(*[_from_lua(a) for a in args])
    return call


def _register_signal(fn: Any) -> Any:
    def register_signal(num: Any, target: Any, handler: Any) -> None:
        if _type(handler) == "function":
            handler = LuaHandler(handler)
        elif not isinstance(handler, str):
            kind = _type(handler) or ("nil" if handler is None else type(handler).__name__)
            raise TypeError(f"handler must be a callable or a reference string, not {kind}")
        fn(_int(num), target, handler)
    return register_signal


def _signal_registered(fn: Any) -> Any:
    def signal_registered(num: Any) -> bool:
        return bool(fn(_int(num)))          # Lua has no None to test: a boolean
    return signal_registered


def _add_cron(fn: Any) -> Any:
    def add_cron(num: Any, minute: Any = -1, hour: Any = -1, day: Any = -1, month: Any = -1,
                 weekday: Any = -1, unique: Any = False) -> bool:
        # as uWSGI's Lua plugin: a missing field means -1 (any)
        m, h, d, mo, w = [-1 if v is None else _int(v)
                          for v in (minute, hour, day, month, weekday)]
        return fn(_int(num), m, h, d, mo, w, unique=unique)
    return add_cron


def _add_timer(fn: Any) -> Any:
    def add_timer(num: Any, seconds: Any, iterations: Any = 0, unique: Any = False) -> None:
        fn(_int(num), seconds, _int(iterations), unique=unique)   # Lua has no keywords
    return add_timer


def _as_table(fn: Any) -> Any:
    """A list or dict result as a Lua table (a sequence for a list; nil stays nil)."""
    def call(*args: Any) -> Any:
        value = fn(*[_from_lua(a) for a in args])
        return None if value is None else runtime().table_from(value)
    return call


def _log(*parts: Any) -> None:
    log.info("%s", " ".join(str(p) for p in parts))


# Names whose Lua arguments need more than _plain's conversion.
_ADAPTERS = {"register_signal": _register_signal, "signal_registered": _signal_registered,
             "add_cron": _add_cron, "spooler_jobs": _as_table, "spooler_pids": _as_table,
             "spooler_get_task": _as_table, "cluster_nodes": _as_table,
             "add_timer": _add_timer, "add_rb_timer": _add_timer}


def _safe(fn: Any) -> Any:
    def call(*args: Any) -> tuple[bool, Any]:
        try:
            return True, fn(*args)
        except (ValueError, TypeError, OSError, RuntimeError) as exc:
            return False, str(exc)
    return call


def _from_lua(value: Any) -> Any:
    """A Lua argument as the Python API takes it."""
    if _type(value) == "table":
        return {_from_lua(k): _from_lua(v) for k, v in value.items()}
    return _int(value)


def _int(value: Any) -> Any:
    """Lua numbers that are whole arrive as float on some engines: take them as int."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
