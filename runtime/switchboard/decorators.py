"""`uwsgidecorators` for Switchboard: the signal decorators of uWSGI's module.

As in uWSGI, `from uwsgidecorators import *` also brings `uwsgi`.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

from switchboard import api as uwsgi

F = TypeVar("F", bound=Callable[..., Any])

postfork_chain: list[Callable[[], object]] = []


def get_free_signal() -> int:
    """The lowest unregistered signal number."""
    return uwsgi._context().table.free_number()


class postfork:  # noqa: N801 - uWSGI's name
    """Run the function in every child right after it is forked."""

    def __init__(self, f: Callable[[], object]) -> None:
        self.f = f
        postfork_chain.append(f)

    def __call__(self, *args: Any, **kwargs: Any) -> object:
        return self.f(*args, **kwargs)


class signal:  # noqa: N801 - uWSGI's name
    """`@signal(num, target="")`: register the function as the handler of `num`."""

    def __init__(self, num: int, **kwargs: Any) -> None:
        self.num = num
        self.target = kwargs.get("target", "")

    def __call__(self, f: F) -> F:
        uwsgi.register_signal(self.num, self.target, f)
        return f


class _source:  # noqa: N801
    """Register the function for a signal (`signum`, or the lowest free one) and add
    the source that raises it."""

    def __init__(self, *args: Any, target: str = "", signum: int | None = None) -> None:
        self.num = get_free_signal() if signum is None else signum
        self.target, self.args = target, args

    def __call__(self, f: F) -> F:
        uwsgi.register_signal(self.num, self.target, f)
        self.add(self.num, *self.args)
        return f

    add: Callable[..., Any]


class timer(_source):  # noqa: N801
    """`@timer(seconds, target="", signum=None)`."""

    add = staticmethod(uwsgi.add_timer)


class rbtimer(_source):  # noqa: N801
    """`@rbtimer(seconds, target="", signum=None)`."""

    add = staticmethod(uwsgi.add_rb_timer)


class cron(_source):  # noqa: N801
    """`@cron(minute, hour, day, month, weekday, target="", signum=None)`."""

    add = staticmethod(uwsgi.add_cron)


class filemon(_source):  # noqa: N801
    """`@filemon(path, target="", signum=None)`."""

    add = staticmethod(uwsgi.add_file_monitor)


class lock:  # noqa: N801
    """Run the function under uwsgi.lock() (not at all in the spooler, as uWSGI)."""

    def __init__(self, f: Callable[..., Any]) -> None:
        self.f = f
        functools.update_wrapper(self, f)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if uwsgi.i_am_the_spooler():
            return None
        uwsgi.lock()
        try:
            return self.f(*args, **kwargs)
        finally:
            uwsgi.unlock()


class harakiri:  # noqa: N801
    """`@harakiri(seconds)`: kill the process if one call runs longer."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, f: F) -> F:
        @functools.wraps(f)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            uwsgi.set_user_harakiri(self.seconds)
            try:
                return f(*args, **kwargs)
            finally:
                uwsgi.set_user_harakiri(0)
        return guarded  # type: ignore[return-value]


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


def postfork_chain_hook() -> None:
    """uWSGI's `uwsgi.post_fork_hook`: run the `@postfork` functions."""
    for func in postfork_chain:
        func()


def install_hooks() -> None:
    """Set `uwsgi.spooler` and `uwsgi.post_fork_hook`, as importing uWSGI's module does."""
    if uwsgi.spooler is None:
        uwsgi.spooler = manage_spool_request
    if uwsgi.post_fork_hook is None:
        uwsgi.post_fork_hook = postfork_chain_hook


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


__all__ = ["uwsgi", "get_free_signal", "postfork", "signal", "postfork_chain", "spool",
           "spoolforever", "spoolraw", "spooler_functions", "manage_spool_request",
           "postfork_chain_hook", "spool_decorate", "timer",
           "rbtimer", "cron", "filemon", "lock", "harakiri"]
