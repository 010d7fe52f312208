"""`uwsgidecorators` for Switchboard: the decorators of uWSGI's module.

As in uWSGI, `from uwsgidecorators import *` brings every module-level name, `uwsgi`
included (code relies on it), and extra keywords a decorator does not know are ignored.
The spool decorators live in decorators_spool.py and are imported here, as uWSGI's names.
"""

from __future__ import annotations

import functools
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from switchboard import api as uwsgi
from switchboard.decorators_spool import (  # noqa: F401 - uwsgidecorators' names
    _spool,
    _spoolforever,
    _spoolraw,
    manage_spool_request,
    spool,
    spool_decorate,
    spooler_functions,
    spoolforever,
    spoolraw,
)

F = TypeVar("F", bound=Callable[..., Any])

postfork_chain: list[Callable[[], object]] = []


def get_free_signal() -> int:
    """The lowest unregistered signal number."""
    return uwsgi._context().table.free_number()


class postfork:  # noqa: N801 - uWSGI's name
    """Run the function in every worker, mule and spooler right after it is forked;
    `@postfork(N)`: in worker N only (as uWSGI)."""

    def __init__(self, f: Callable[[], object] | int) -> None:
        self.f: Callable[[], object] | None = f if callable(f) else None
        self.wid = 0 if callable(f) else f
        postfork_chain.append(self)

    def __call__(self, *args: Any, **kwargs: Any) -> object:
        if self.f is None:          # @postfork(N) applied to the function
            self.f = args[0]
            return self
        if args or kwargs:          # called directly, as the function it decorates
            return self.f(*args, **kwargs)
        if self.wid > 0 and self.wid != uwsgi.worker_id():
            return None
        return self.f()


class signal:  # noqa: N801 - uWSGI's name
    """`@signal(num, target="")`: register the function as the handler of `num`."""

    def __init__(self, num: int, **kwargs: Any) -> None:
        self.num = num
        self.target = kwargs.get("target", "")

    def __call__(self, f: F) -> F:
        uwsgi.register_signal(self.num, self.target, f)
        return f


class _source:  # noqa: N801
    """Register the function for a signal (`signum`, or the lowest free one when it is
    -1, the default, or None) and add the source that raises it."""

    def __init__(self, *args: Any, target: str = "", signum: int | None = -1,
                 **ignored: Any) -> None:
        self.num = get_free_signal() if signum is None or signum == -1 else signum
        self.target, self.args = target, args
        # `unique` (SPEC 13) goes on to add_timer/add_cron; other keywords are ignored
        self.extra = {"unique": ignored["unique"]} if "unique" in ignored else {}

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


class thread:  # noqa: N801
    """`@thread`: each call runs the function in a new daemon thread (as uWSGI)."""

    def __init__(self, f: Callable[..., Any]) -> None:
        self.f = f
        functools.update_wrapper(self, f)

    def __call__(self, *args: Any) -> Callable[..., Any]:
        threading.Thread(target=self.f, args=args, daemon=True).start()
        return self.f


# -- mules: @mulefunc, @mule, @muleloop, @mulemsg, @farm (uWSGI's semantics) ------------

mule_functions: dict[str, Callable[..., Any]] = {}


class mulefunc:  # noqa: N801
    """`@mulefunc`, `@mulefunc(N)`, `@mulefunc("farm")`: calling the function sends the
    call (pickled) to any mule, mule N or the farm, whose mule_msg_hook runs it."""

    def __init__(self, f: Callable[..., Any] | int | str, **ignored: Any) -> None:
        self.fname: str | None = None
        self.mule: int | str = 0
        if callable(f):
            self._bind(f)
        else:
            self.mule = f

    def _bind(self, f: Callable[..., Any]) -> None:
        self.fname = f.__name__
        mule_functions[f.__name__] = f

    def real_call(self, *args: Any, **kwargs: Any) -> bool:
        return uwsgi.mule_msg(pickle.dumps({"service": "uwsgi_mulefunc", "func": self.fname,
                                            "args": args, "kwargs": kwargs}), self.mule)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.fname is None:      # @mulefunc(N) applied to the function
            self._bind(args[0])
            return self.real_call
        return self.real_call(*args, **kwargs)


def mule_msg_dispatcher(message: bytes) -> Any:
    """uwsgi.mule_msg_hook: run the @mulefunc call a message carries."""
    msg = pickle.loads(message)
    if msg["service"] == "uwsgi_mulefunc":
        return mule_functions[msg["func"]](*msg["args"], **msg["kwargs"])
    return None


uwsgi.mule_msg_hook = mule_msg_dispatcher


def _fail_mule(exc: BaseException) -> None:
    """A mule's function raised: print it and end the mule (it is respawned), as uWSGI."""
    sys.excepthook(type(exc), exc, exc.__traceback__)
    raise SystemExit(1)


class MuleProgram:
    """A postfork chain entry that is a mule's program: the mule runs it once it is up
    (binding.run_postfork_hooks), as its program (signals run inside its waits)."""

    num = 0

    def runs_here(self) -> bool:
        return uwsgi.mule_id() == self.num


class mule_brain(MuleProgram):  # noqa: N801
    """In the postfork chain: run the function once in mule `num`."""

    def __init__(self, f: Callable[[], object], num: int) -> None:
        self.f, self.num = f, num

    def __call__(self) -> None:
        if uwsgi.mule_id() == self.num:
            try:
                self.f()
            except Exception as exc:
                _fail_mule(exc)


class mule_brainloop(mule_brain):  # noqa: N801
    """... and forever."""

    def __call__(self) -> None:
        if uwsgi.mule_id() == self.num:
            while True:
                try:
                    self.f()
                except Exception as exc:
                    _fail_mule(exc)


class mule:  # noqa: N801
    """`@mule(N)`: mule N runs the function once after its fork."""

    def __init__(self, num: int, **ignored: Any) -> None:
        self.num = num

    def __call__(self, f: Callable[[], object]) -> None:
        postfork_chain.append(mule_brain(f, self.num))


class muleloop(mule):  # noqa: N801
    """`@muleloop(N)`: mule N runs the function over and over."""

    def __call__(self, f: Callable[[], object]) -> None:
        postfork_chain.append(mule_brainloop(f, self.num))


class mulemsg_loop(MuleProgram):  # noqa: N801
    """In the postfork chain: mule `num` hands every message it receives to `f`."""

    def __init__(self, f: Callable[[bytes], object], num: int) -> None:
        self.f, self.num = f, num

    def __call__(self) -> None:
        if uwsgi.mule_id() == self.num:
            while True:
                message = uwsgi.mule_get_msg()
                if message:
                    self.f(message)


class mulemsg:  # noqa: N801
    """`@mulemsg(N)`: mule N calls the function with each message it receives."""

    def __init__(self, num: int, **ignored: Any) -> None:
        self.num = num

    def __call__(self, f: Callable[[bytes], object]) -> None:
        postfork_chain.append(mulemsg_loop(f, self.num))


class farm_loop(MuleProgram):  # noqa: N801
    """In the postfork chain: each mule of farm `farm` hands it the farm's messages."""

    def __init__(self, f: Callable[[bytes], object], farm: str | None) -> None:
        self.f, self.farm = f, farm

    def runs_here(self) -> bool:
        return uwsgi.mule_id() != 0 and bool(uwsgi.in_farm(self.farm or ""))

    def __call__(self) -> None:
        if uwsgi.mule_id() == 0 or not uwsgi.in_farm(self.farm or ""):
            return
        while True:
            message = uwsgi.farm_get_msg()
            if message:
                self.f(message)


class farm:  # noqa: N801
    """`@farm(name)`: every mule of the farm calls the function with each farm message
    it takes (one mule per message)."""

    def __init__(self, name: str | None = None, **ignored: Any) -> None:
        self.name = name

    def __call__(self, f: Callable[[bytes], object]) -> None:
        postfork_chain.append(farm_loop(f, self.name))


farmloop = farm     # the spelling; uWSGI 2.0.31 has only @farm (already a loop)
