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
    cluster: Any = None            # a cluster.sender.Sender when [cluster] is configured

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
