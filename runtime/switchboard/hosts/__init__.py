"""Language hosts: resolve a handler reference to something callable, and call it safely.

A reference names its language: `python:MODULE:QUALNAME` or `lua:PATH.lua:FUNCTION`.
"""

from __future__ import annotations

from collections.abc import Callable

from switchboard.hosts import lua, python

Handler = Callable[[int], object]


def resolve(ref: str) -> Handler:
    """The callable a reference names in this process; ValueError naming the reference."""
    lang, sep, rest = ref.partition(":")
    if not sep:
        raise ValueError(f"handler reference '{ref}' has no language prefix "
                         "(expected python:MODULE:FUNCTION or lua:PATH.lua:FUNCTION)")
    if lang == "python":
        return python.resolve(ref, rest)
    if lang == "lua":
        return lua.resolve(ref, rest)
    raise ValueError(f"handler reference '{ref}': unknown language '{lang}' "
                     "(expected python or lua)")


def fastest(handler: Handler) -> Handler:
    """The cheapest callable that runs `handler` (a Lua function without a budget is
    called straight through lupa); its Lua errors are read with error_text()."""
    return handler.fastest() if isinstance(handler, lua.LuaHandler) else handler


def error_text(exc: BaseException) -> str:
    """A handler error as the user should read it: a Lua error's file:line and
    traceback, or a Python traceback of the user's frames only."""
    return lua.error_text(exc) or python.user_traceback(exc)
