"""Signal targets, parsed once at registration into small values the router switches on."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

MASTER_SLOT = 0

VALID_FORMS = ("worker, worker0, '' (first available worker), workerN, workers, "
               "active-workers, mule, mule0, muleN, mules, farm_NAME, farmN, spooler")


class Kind(enum.IntEnum):
    """What a target reaches; the router has one branch per kind."""

    WORKER = 1          # the first available worker
    WORKER_N = 2
    WORKERS = 3
    ACTIVE_WORKERS = 4
    MULE = 5            # the first available mule
    MULE_N = 6
    MULES = 7
    FARM = 8            # the first available mule of a farm
    SPOOLER = 9


class Role(enum.Enum):
    MASTER = "master"
    WORKER = "worker"
    MULE = "mule"
    SPOOLER = "spooler"
    SOURCES = "sources"     # the helper hosting file monitors and PostgreSQL listeners


@dataclass(frozen=True)
class Target:
    kind: Kind
    index: int = 0      # worker/mule id for *_N, farm number (1-based) for FARM

    def text(self, topology: Topology) -> str:
        """The canonical string for this target, as a user would write it."""
        if self.kind is Kind.FARM:
            return f"farm_{topology.farm_names[self.index - 1]}"
        return _CANONICAL[self.kind].format(self.index)


_CANONICAL = {
    Kind.WORKER: "worker", Kind.WORKER_N: "worker{}", Kind.WORKERS: "workers",
    Kind.ACTIVE_WORKERS: "active-workers", Kind.MULE: "mule", Kind.MULE_N: "mule{}",
    Kind.MULES: "mules", Kind.SPOOLER: "spooler",
}
_FIXED = {
    "": Target(Kind.WORKER), "worker": Target(Kind.WORKER), "worker0": Target(Kind.WORKER),
    "workers": Target(Kind.WORKERS), "active-workers": Target(Kind.ACTIVE_WORKERS),
    "mule": Target(Kind.MULE), "mule0": Target(Kind.MULE), "mules": Target(Kind.MULES),
    "spooler": Target(Kind.SPOOLER),
}
_NUMBERED = re.compile(r"(worker|mule|farm)([1-9][0-9]*)")


@dataclass(frozen=True)
class Topology:
    """How many processes of each role exist: what a target may name, and slot numbering.

    Slots number every child: 0 is the master, then workers, mules, spoolers.
    """

    workers: int = 1
    mules: int = 0
    spoolers: int = 0
    farms: dict[str, tuple[int, ...]] = field(default_factory=dict)
    sources: int = 0        # 1 when the sources helper may run

    @property
    def farm_names(self) -> list[str]:
        return list(self.farms)

    @property
    def slots(self) -> int:
        """Number of slots including the master's."""
        return 1 + self.workers + self.mules + self.spoolers + self.sources

    def slot(self, role: Role, ident: int) -> int:
        if role is Role.MASTER:
            return MASTER_SLOT
        if role is Role.WORKER:
            return ident
        if role is Role.MULE:
            return self.workers + ident
        if role is Role.SPOOLER:
            return self.workers + self.mules + ident
        return self.workers + self.mules + self.spoolers + ident

    def role_of(self, slot: int) -> tuple[Role, int]:
        """The (role, id) a slot stands for."""
        if slot == MASTER_SLOT:
            return Role.MASTER, 0
        if slot <= self.workers:
            return Role.WORKER, slot
        if slot <= self.workers + self.mules:
            return Role.MULE, slot - self.workers
        if slot <= self.workers + self.mules + self.spoolers:
            return Role.SPOOLER, slot - self.workers - self.mules
        return Role.SOURCES, slot - self.workers - self.mules - self.spoolers

    def describe(self, slot: int) -> str:
        """A slot as log lines name it: `master`, `worker 2`, `mule 1`, `spooler`."""
        role, ident = self.role_of(slot)
        if role in (Role.MASTER, Role.SOURCES) or (role is Role.SPOOLER and self.spoolers == 1):
            return role.value
        return f"{role.value} {ident}"

    def worker_slots(self) -> range:
        return range(1, self.workers + 1)

    def mule_slots(self) -> range:
        return range(self.workers + 1, self.workers + self.mules + 1)

    def spooler_slots(self) -> range:
        start = self.workers + self.mules + 1
        return range(start, start + self.spoolers)

    def groups(self) -> list[Target]:
        """The first-available targets that exist: each has one channel its members share."""
        found = [Target(Kind.WORKER)]
        if self.mules:
            found.append(Target(Kind.MULE))
        found += [Target(Kind.FARM, i) for i in range(1, len(self.farms) + 1)]
        if self.spoolers:
            found.append(Target(Kind.SPOOLER))
        return found

    def groups_of(self, slot: int) -> list[Target]:
        """The shared channels a child reads besides its own."""
        return [g for g in self.groups() if slot in self.members(g)]

    def sources_slot(self) -> int | None:
        return self.slot(Role.SOURCES, 1) if self.sources else None

    def members(self, target: Target) -> list[int]:
        """Every slot the target could ever run on."""
        kind = target.kind
        if kind in (Kind.WORKER, Kind.WORKERS, Kind.ACTIVE_WORKERS):
            return list(self.worker_slots())
        if kind is Kind.WORKER_N:
            return [target.index]
        if kind in (Kind.MULE, Kind.MULES):
            return list(self.mule_slots())
        if kind is Kind.MULE_N:
            return [self.workers + target.index]
        if kind is Kind.FARM:
            ids = self.farms[self.farm_names[target.index - 1]]
            return [self.workers + i for i in ids]
        return list(self.spooler_slots())


def parse_target(text: object, topology: Topology) -> Target:
    """Parse a target string, checking it names something that exists.

    Raises TypeError for a non-string and ValueError naming the value otherwise.
    """
    if not isinstance(text, str):
        raise TypeError(f"target must be a string, not {type(text).__name__}")
    target = _FIXED.get(text)
    if target is None:
        target = _parse_named(text, topology)
    _check_exists(text, target, topology)
    return target


def _parse_named(text: str, topology: Topology) -> Target:
    if text.startswith("farm_") and len(text) > 5:
        name = text[5:]
        if name not in topology.farms:
            raise ValueError(f"target '{text}': no farm named '{name}' "
                             f"(farms: {', '.join(topology.farms) or 'none'})")
        return Target(Kind.FARM, topology.farm_names.index(name) + 1)
    match = _NUMBERED.fullmatch(text)
    if match is None:
        raise ValueError(f"unknown target '{text}' (valid: {VALID_FORMS})")
    kind = {"worker": Kind.WORKER_N, "mule": Kind.MULE_N, "farm": Kind.FARM}[match[1]]
    return Target(kind, int(match[2]))


def _check_exists(text: str, target: Target, topology: Topology) -> None:
    kind, index = target.kind, target.index
    if kind is Kind.WORKER_N and index > topology.workers:
        raise ValueError(f"target '{text}': there is no worker {index} "
                         f"(workers = {topology.workers})")
    if kind in (Kind.MULE, Kind.MULES, Kind.MULE_N) and topology.mules == 0:
        raise ValueError(f"target '{text}' needs mules, but mules = 0")
    if kind is Kind.MULE_N and index > topology.mules:
        raise ValueError(f"target '{text}': there is no mule {index} (mules = {topology.mules})")
    if kind is Kind.FARM and index > len(topology.farms):
        raise ValueError(f"target '{text}': there is no farm {index} "
                         f"({len(topology.farms)} farms configured)")
    if kind is Kind.SPOOLER and topology.spoolers == 0:
        raise ValueError(f"target '{text}' needs a spooler, but none is configured")
