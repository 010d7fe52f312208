"""The 256-entry signal table in shared memory: what each number routes to and runs.

Writers hold the cross-process lock and bump both the entry's and the table's
generation; readers keep caches keyed by generation, so the hot path reads one integer.
"""

from __future__ import annotations

import ctypes
import enum
import logging
from dataclasses import dataclass

from switchboard.shared import REF_MAX, SIGNALS, EntryRecord, Shared, TableRecord
from switchboard.targets import MASTER_SLOT, Kind, Target, Topology

log = logging.getLogger(__name__)


class HandlerKind(enum.IntEnum):
    REFERENCE = 1   # `python:MOD:QUALNAME` or `lua:PATH:FUNC`, resolvable in every process
    LOCAL = 2       # a callable that exists only in the owner's memory (and its forks)


@dataclass(frozen=True)
class Entry:
    num: int
    target: Target
    kind: HandlerKind
    ref: str         # the reference, or a description of the local callable
    owner: int       # slot that registered it
    gen: int


def check_signum(num: object) -> int:
    """Return `num` as a signal number, or raise naming the argument or the value."""
    if isinstance(num, bool) or not isinstance(num, int):
        raise TypeError(f"signal number must be an integer, not {type(num).__name__}")
    if not 0 <= num < SIGNALS:
        raise ValueError(f"signal number {num} is out of range [0, 255]")
    return num


class SignalTable:
    def __init__(self, shared: Shared) -> None:
        self._shared = shared
        self._rec = shared.table
        # The entries' generations as plain words: the hot path reads one per signal.
        self._words = memoryview(shared.map)[:ctypes.sizeof(TableRecord)].cast("Q")
        self._table_gen = TableRecord.gen.offset // 8
        first = (TableRecord.entries.offset + EntryRecord.gen.offset) // 8
        # entry_generations[num]: entry num's generation (a strided view of the words)
        self.entry_generations = self._words[first::ctypes.sizeof(EntryRecord) // 8][:SIGNALS]
        self.reserved: set[int] = set()   # numbers free_number() must not hand out

    @property
    def generation(self) -> int:
        """Changes whenever any entry changes."""
        return self._words[self._table_gen]

    def entry_generation(self, num: int) -> int:
        return self.entry_generations[num]

    def register(self, num: int, target: Target, kind: HandlerKind, ref: str,
                 owner: int) -> Entry:
        """Set entry `num`, replacing what was there; returns the stored entry."""
        data = ref.encode()
        if len(data) > REF_MAX:
            raise ValueError(f"handler reference is longer than {REF_MAX} bytes: {ref[:60]}...")
        with self._shared.locked():
            rec = self._rec.entries[num]
            same = (rec.kind, rec.target_kind, rec.target_index, rec.ref) == \
                (kind, target.kind, target.index, data)
            replaced = rec.kind != 0 and not same     # a reload re-registers the same
            rec.kind, rec.target_kind, rec.target_index = kind, target.kind, target.index
            rec.owner, rec.ref_len, rec.ref = owner, len(data), data
            rec.gen += 1
            self._rec.gen += 1
            entry = self._read(num)
        if replaced:
            log.info("signal %d: registration replaced by %s", num, ref)
        assert entry is not None
        return entry

    def unregister(self, num: int) -> bool:
        """Remove entry `num`; False if it was not registered."""
        with self._shared.locked():
            rec = self._rec.entries[num]
            if rec.kind == 0:
                return False
            rec.kind = 0
            rec.gen += 1
            self._rec.gen += 1
        return True

    def get(self, num: int) -> Entry | None:
        with self._shared.locked():
            return self._read(num)

    def entries(self) -> list[Entry]:
        """Every registered entry, in number order (one consistent snapshot)."""
        with self._shared.locked():
            found = (self._read(n) for n in range(SIGNALS))
            return [e for e in found if e is not None]

    def free_number(self) -> int:
        """The lowest unregistered number (uwsgidecorators' get_free_signal)."""
        with self._shared.locked():
            for n in range(SIGNALS):
                if self._rec.entries[n].kind == 0 and n not in self.reserved:
                    return n
        raise ValueError("no free signal number: all 256 are registered")

    def drop_owned_by(self, slot: int) -> list[int]:
        """Remove local-callable entries whose owner died: their callable died with it."""
        dropped = []
        with self._shared.locked():
            for n in range(SIGNALS):
                rec = self._rec.entries[n]
                if rec.kind == HandlerKind.LOCAL and rec.owner == slot:
                    rec.kind = 0
                    rec.gen += 1
                    dropped.append(n)
            if dropped:
                self._rec.gen += 1
        return dropped

    def _read(self, num: int) -> Entry | None:
        rec = self._rec.entries[num]
        if rec.kind == 0:
            return None
        return Entry(num, Target(Kind(rec.target_kind), rec.target_index),
                     HandlerKind(rec.kind), rec.ref[:rec.ref_len].decode(), rec.owner,
                     int(rec.gen))


def describe(entry: Entry, topology: Topology) -> str:
    """One line for `switchboard check` and the logs."""
    line = f"{entry.num:3d}  {entry.target.text(topology):<16} {entry.ref}"
    if entry.kind is HandlerKind.LOCAL and entry.owner == MASTER_SLOT:
        line += "  (a callable from the master, inherited by every child)"
    elif entry.kind is HandlerKind.LOCAL:
        line += f"  (a callable that lives only in {topology.describe(entry.owner)})"
    return line
