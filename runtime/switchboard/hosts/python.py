"""The Python host: references to module-level callables."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any


def resolve(ref: str, rest: str) -> Callable[[int], Any]:
    """Import MODULE and walk QUALNAME in it; ValueError naming the reference."""
    module_name, sep, qualname = rest.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"handler reference '{ref}' must look like python:MODULE:QUALNAME")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(f"handler reference '{ref}': cannot import '{module_name}': "
                         f"{_last_line(exc)}") from None
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"handler reference '{ref}': module '{module_name}' "
                             f"has no '{qualname}'") from None
    if not callable(obj):
        raise ValueError(f"handler reference '{ref}' names a {type(obj).__name__}, "
                         "not a callable")
    return obj


def reference_of(func: object) -> str | None:
    """`python:MOD:QUALNAME` for a module-level function or class, else None.

    Only when the name resolves to that very object: a `functools.wraps` wrapper
    carries its function's name, but the name runs the function, not the wrapper
    (uwsgiconf registers such wrappers).  While the module is still being imported
    (decorators) the name may not be bound yet: then a wrapper is local, anything
    else is taken at its name.
    """
    qualname = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if not isinstance(qualname, str) or not isinstance(module, str):
        return None
    if "<" in qualname or module == "__main__" or not callable(func):
        return None
    if getattr(func, "__self__", None) is not None:   # a bound method
        return None
    found = _lookup(sys.modules.get(module), qualname)
    if found is _MISSING:
        return None if hasattr(func, "__wrapped__") else f"python:{module}:{qualname}"
    return f"python:{module}:{qualname}" if found is func else None


_MISSING = object()


def _lookup(obj: object, qualname: str) -> object:
    """What `qualname` names in `obj` now, without importing; _MISSING if nothing."""
    if obj is None:
        return _MISSING
    for part in qualname.split("."):
        obj = getattr(obj, part, _MISSING)
        if obj is _MISSING:
            return _MISSING
    return obj


def _last_line(exc: BaseException) -> str:
    return traceback.format_exception_only(exc)[-1].strip()


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def user_traceback(exc: BaseException) -> str:
    """The traceback from the first frame outside the runtime: the frame that called
    the handler is ours, not the user's (kept whole if the error is ours alone)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE):
        tb = tb.tb_next
    shown = tb if tb is not None else exc.__traceback__
    return "".join(traceback.format_exception(type(exc), exc, shown)).rstrip()
