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

    def __init__(self, *args: Any, target: str = "", signum: int | None = None,
                 **extra: Any) -> None:
        self.num = get_free_signal() if signum is None else signum
        self.target, self.args, self.extra = target, args, extra

    def __call__(self, f: F) -> F:
        uwsgi.register_signal(self.num, self.target, f)
        self.add(self.num, *self.args, **self.extra)
        return f

    add: Callable[..., Any]


class timer(_source):  # noqa: N801
    """`@timer(seconds, target="", signum=None, unique=False)`."""

    add = staticmethod(uwsgi.add_timer)


class rbtimer(_source):  # noqa: N801
    """`@rbtimer(seconds, target="", signum=None, unique=False)`."""

    add = staticmethod(uwsgi.add_rb_timer)


class cron(_source):  # noqa: N801
    """`@cron(minute, hour, day, month, weekday, target="", signum=None, unique=False)`."""

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


spooler_functions: dict[str, _spoolraw] = {}


def manage_spool_request(job: dict[str, Any]) -> object:
    """The spooler function `@spool` installs: run the decorated function a job names."""
    name = job.get("ud_spool_func")
    if name is None:
        raise ValueError("spool job without 'ud_spool_func': it was not written by a @spool "
                         "function; set uwsgi.spooler to a function that handles it")
    func = spooler_functions[name.decode() if isinstance(name, bytes) else name]
    if "args" in job:
        ret = func.f(*pickle.loads(job["args"]), **pickle.loads(job["kwargs"]))
    else:
        ret = func.f(job)
    return int(job["ud_spool_ret"]) if "ud_spool_ret" in job else ret


class _spoolraw:  # noqa: N801 - uWSGI's names
    """`@spoolraw`: calling the function spools a job; the spooler runs the function."""

    ret: int | None = None

    def __init__(self, f: Callable[..., Any], pass_arguments: bool) -> None:
        if not uwsgi._context().spool_dir:
            raise ValueError(f"@{type(self).__name__.lstrip('_')} on {f.__name__}: no spooler "
                             "is configured (set `spooler` in [switchboard])")
        self.f, self.pass_arguments = f, pass_arguments
        spooler_functions[f.__name__] = self
        f.spool = self.__call__  # type: ignore[attr-defined]  # uWSGI < 1.9.13 spelling
        if uwsgi.spooler is None:
            uwsgi.spooler = manage_spool_request

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        job: dict[str, Any] = {"ud_spool_func": self.f.__name__}
        if self.ret is not None:
            job["ud_spool_ret"] = str(self.ret)
        if self.pass_arguments:
            job["args"], job["kwargs"] = pickle.dumps(args), pickle.dumps(kwargs)
        else:
            if args:
                job.update(args[0])
            job.update(kwargs)
        return uwsgi.spool(job)

    def spool(self, *args: Any, **kwargs: Any) -> str:
        """`func.spool(...)`: the same as calling it (uWSGI's older spelling)."""
        return self(*args, **kwargs)


class _spool(_spoolraw):  # noqa: N801
    ret = uwsgi.SPOOL_OK


class _spoolforever(_spoolraw):  # noqa: N801
    ret = uwsgi.SPOOL_RETRY


def _spool_decorator(kind: type[_spoolraw]) -> Callable[..., Any]:
    def decorate(f: Callable[..., Any] | None = None, pass_arguments: bool = False) -> Any:
        if f is None:
            return functools.partial(kind, pass_arguments=pass_arguments)
        return kind(f, pass_arguments)
    decorate.__name__ = decorate.__qualname__ = kind.__name__.lstrip("_")
    return decorate


spool = _spool_decorator(_spool)
spoolforever = _spool_decorator(_spoolforever)
spoolraw = _spool_decorator(_spoolraw)

__all__ = ["uwsgi", "get_free_signal", "postfork", "signal", "postfork_chain", "spool",
           "spoolforever", "spoolraw", "spooler_functions", "manage_spool_request", "timer",
           "rbtimer", "cron", "filemon", "lock", "harakiri"]
