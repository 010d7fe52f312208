"""What the `uwsgi` API needs to know about the process it runs in.

The master and each child install their own Context; the API functions read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from switchboard.shared import Shared
from switchboard.table import SignalTable
from switchboard.targets import Role, Topology


@dataclass
class Context:
    role: Role
    ident: int                     # worker/mule/spooler id, 0 for the master
    slot: int
    topology: Topology
    shared: Shared
    table: SignalTable
    masterpid: int
    # number -> (entry generation, callable): callables that are not references
    local_handlers: dict[int, tuple[int, Callable[[int], object]]] = field(default_factory=dict)
    last_received: int = -1
    spool_dir: str = ""            # set when a spooler is configured
    spool_wake: int = -1           # write end of the pipe that wakes the spoolers
    queues: Any = None             # messages.Queues, when there are mules
    signal_timeout: float = 10.0   # how long a sender waits on a full queue

    def raise_signal(self, num: int) -> None:
        """Hand `num` to the master; OSError if it cannot take it in time."""
        raise NotImplementedError

    def add_source(self, spec: dict[str, Any]) -> None:
        """Add or remove a timer, cron or file monitor (`spec` says which)."""
        raise NotImplementedError

    def set_user_harakiri(self, seconds: float) -> None:
        """Only children have a harakiri; in the master it does nothing."""

    async def wait_async(self, num: int | None, timeout: float | None) -> int | None:
        raise RuntimeError(f"signal_wait_async() cannot be called in the {self.role.value}")

    def wait(self, num: int | None, timeout: float | None) -> int | None:
        """Block until a signal (or `num`) arrives; None on timeout."""
        raise RuntimeError(f"signal_wait() cannot be called in the {self.role.value}")

    def receive(self, socks: list[Any], size: int, deadline: float | None,
                signals: bool) -> bytes | None:
        """A message from `socks` (a mule's queues); only a mule has them."""
        raise RuntimeError(f"messages cannot be received in the {self.role.value}")


_current: Context | None = None


def set_current(ctx: Context | None) -> None:
    """Bind this process's Context (binding.install)."""
    global _current
    _current = ctx


def current() -> Context:
    """This process's Context; RuntimeError outside a process Switchboard runs."""
    if _current is None:
        raise RuntimeError("the uwsgi API is only available in processes Switchboard runs")
    return _current
