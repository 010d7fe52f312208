"""`uwsgidecorators`' spool decorators (@spool, @spoolraw, @spoolforever) and the spooler
function that runs their jobs; decorators.py re-exports them, as uWSGI's one module."""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from typing import Any

from switchboard import api as uwsgi

spooler_functions: dict[str, Callable[..., Any]] = {}
_SPOOLER_KEYS = ("message_dict", "spooler", "priority", "at", "body")


def _decoded(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def manage_spool_request(vars: dict[Any, Any]) -> int:  # noqa: A002 - uWSGI's name
    """The spooler function `@spool` uses: run the decorated function a job names, with
    str keys and values (args/kwargs unpickled), as uWSGI's does."""
    job = {_decoded(k): v for k, v in vars.items()}
    if "ud_spool_func" not in job:
        raise ValueError("spool job without 'ud_spool_func': it was not written by a @spool "
                         "function; set uwsgi.spooler to a function that handles it")
    pickled = {k: pickle.loads(job.pop(k)) for k in ("args", "kwargs") if k in job}
    job = {k: _decoded(v) for k, v in job.items()}
    name = job["ud_spool_func"]
    if name not in spooler_functions:
        raise ValueError(f"spool job for '{name}': no @spool function of that name was "
                         "imported in the spooler")
    func = spooler_functions[name]
    ret = func(*pickled["args"], **pickled["kwargs"]) if pickled else func(job)
    return int(job.get("ud_spool_ret", ret))



class _spoolraw:  # noqa: N801 - uWSGI's names
    """`@spoolraw`: calling the function spools a job; the spooler runs the function
    (whose return value decides the job's fate)."""

    def __init__(self, f: Callable[..., Any], pass_arguments: bool) -> None:
        if not uwsgi._context().spool_dir:
            raise ValueError(f"@{type(self).__name__.lstrip('_')} on {f.__name__}: no spooler "
                             "is configured (set `spooler` in the config)")
        self.f, self.pass_arguments = f, pass_arguments
        self.base_dict: dict[str, Any] = {"ud_spool_func": f.__name__}
        spooler_functions[f.__name__] = f
        f.spool = self.__call__  # type: ignore[attr-defined]  # uWSGI < 1.9.13 spelling

    def __call__(self, *args: Any, **kwargs: Any) -> bytes:
        """Spool a job for the function; the job file's path (bytes, as uWSGI)."""
        job = dict(self.base_dict)
        if self.pass_arguments:
            job.update({k: kwargs.pop(k) for k in _SPOOLER_KEYS if k in kwargs})
            job["args"], job["kwargs"] = pickle.dumps(args), pickle.dumps(kwargs)
        else:
            if args:
                job.update(args[0])
            job.update(kwargs)
        return uwsgi.spool(job)

    def spool(self, *args: Any, **kwargs: Any) -> bytes:
        """`func.spool(...)`: the same as calling it (uWSGI's older spelling)."""
        return self(*args, **kwargs)


class _spool(_spoolraw):  # noqa: N801
    """`@spool`: the job is done (removed) once the function returns."""

    def __call__(self, *args: Any, **kwargs: Any) -> bytes:
        self.base_dict["ud_spool_ret"] = str(uwsgi.SPOOL_OK)
        return super().__call__(*args, **kwargs)


class _spoolforever(_spoolraw):  # noqa: N801
    """`@spoolforever`: the job runs again at every scan, whatever the function returns."""

    def __call__(self, *args: Any, **kwargs: Any) -> bytes:
        self.base_dict["ud_spool_ret"] = str(uwsgi.SPOOL_RETRY)
        return super().__call__(*args, **kwargs)


def spool_decorate(f: Callable[..., Any] | None = None, pass_arguments: bool = False,
                   _class: type[_spoolraw] = _spoolraw) -> Any:
    """Make `f` a spool function of kind `_class` (used bare or with arguments)."""
    if f is None:
        return functools.partial(_class, pass_arguments=pass_arguments)
    return _class(f, pass_arguments)


def spoolraw(f: Callable[..., Any] | None = None, pass_arguments: bool = False) -> Any:
    """`@spoolraw`, `@spoolraw(pass_arguments=True)`."""
    return spool_decorate(f, pass_arguments, _spoolraw)


def spool(f: Callable[..., Any] | None = None, pass_arguments: bool = False) -> Any:
    """`@spool`, `@spool(pass_arguments=True)`."""
    return spool_decorate(f, pass_arguments, _spool)


def spoolforever(f: Callable[..., Any] | None = None, pass_arguments: bool = False) -> Any:
    """`@spoolforever`, `@spoolforever(pass_arguments=True)`."""
    return spool_decorate(f, pass_arguments, _spoolforever)
