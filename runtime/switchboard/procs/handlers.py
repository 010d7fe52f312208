"""Which callable runs a signal in this process: resolved once per table generation and
cached, or why none can (unregistered, another process's callable, lost here)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from switchboard import hosts
from switchboard.channels import REROUTE, record
from switchboard.errors import HandlerError
from switchboard.procs.waiting import ANY
from switchboard.shared import FAILED
from switchboard.table import HandlerKind
from switchboard.targets import MASTER_SLOT

if TYPE_CHECKING:
    from switchboard.shared import ProcRecord
    from switchboard.table import SignalTable

log = logging.getLogger("switchboard.child")

_UNREGISTERED = None
_FOREIGN = "foreign"    # registered as a callable that lives in another process
_LOST = "lost"          # registered, but this process cannot produce the callable

Resolved = Callable[[int], Any] | str | None


class Handlers:
    """Mixed into Child: what it needs of the child is declared below."""

    record: ProcRecord
    slot: int
    table: SignalTable
    local_handlers: dict[int, tuple[int, Callable[[int], object]]]
    _u64: Any
    _cache: dict[int, tuple[int, Resolved, str]]
    _generations: Any

    if TYPE_CHECKING:       # Child's own, declared for the type checker only
        def _send(self, data: bytes, num: int | None = None) -> None: ...
        def _name(self) -> str: ...

    def _cannot_run(self, num: int, want: int, handler: Resolved, ref: str) -> bool:
        """No callable for `num` here: it ends a wait, goes back to the master, or drops."""
        satisfies = want in (ANY, num)
        if handler is _UNREGISTERED and satisfies:
            return True
        if handler is _UNREGISTERED or handler is _FOREIGN:
            self._send(record(REROUTE, num))     # the master routes it again
            return False
        self.record.no_handler[num] += 1
        log.error("signal %d: dropped (no-handler): %s cannot run %s here",
                  num, self._name(), ref)
        return satisfies

    def _failed(self, num: int, ref: str, exc: Exception) -> None:
        """Count and log a handler's failure (called from its except clause)."""
        self._u64[FAILED + num] += 1
        text = str(exc) if isinstance(exc, HandlerError) else hosts.error_text(exc)
        log.error("signal %d: handler %s failed in %s: %s", num, ref, self._name(), text)

    def _handler(self, num: int) -> tuple[int, Resolved, str]:
        """(generation, what to run, its reference), resolved and cached: _dispatch()
        calls this when its cache has nothing for `num`'s current generation."""
        gen = self._generations[num]    # before get(): a change after it shows
        entry = self.table.get(num)
        cached: tuple[int, Resolved, str]
        if entry is None:
            cached = (gen, _UNREGISTERED, "")
        else:
            cached = (entry.gen, self._resolve(entry.kind, entry.owner, num, entry.gen,
                                               entry.ref), entry.ref)
        self._cache[num] = cached
        return cached

    def _resolve(self, kind: HandlerKind, owner: int, num: int, gen: int,
                 ref: str) -> Resolved:
        if kind is HandlerKind.REFERENCE:
            try:
                return hosts.fastest(hosts.resolve(ref))
            except ValueError as exc:
                log.error("signal %d: %s", num, exc)
                return _LOST
        if owner not in (self.slot, MASTER_SLOT):
            return _FOREIGN
        local = self.local_handlers.get(num)
        return hosts.fastest(local[1]) if local is not None and local[0] == gen else _LOST
