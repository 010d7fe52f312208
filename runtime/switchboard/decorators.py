"""`uwsgidecorators` for Switchboard: the signal decorators of uWSGI's module.

As in uWSGI, `from uwsgidecorators import *` also brings `uwsgi`.
"""

from __future__ import annotations

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


__all__ = ["uwsgi", "get_free_signal", "postfork", "signal", "postfork_chain"]
