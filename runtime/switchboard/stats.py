"""The stats document: uWSGI stats-server shape plus per-signal counters."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from switchboard import __version__
from switchboard.router import Outbox
from switchboard.shared import BUSY, CHEAP, SIGNALS, STATUS_NAMES, WAITING
from switchboard.targets import Kind, Role, Target

if TYPE_CHECKING:
    from switchboard.master import Master


def document(master: Master) -> dict[str, Any]:
    """Everything `switchboard stats` prints."""
    topo = master.topology
    router = master.router
    # One copy of every process's counters, so the per-process and per-signal views
    # of this document agree with each other (children keep counting meanwhile).
    counts = [_Counts(list(r.handled), list(r.failed), list(r.no_handler))
              for r in master.shared.procs]
    return {
        "version": __version__,
        "pid": os.getpid(),
        "uptime": round(time.monotonic() - master.started, 3),
        "workers": [_process(master, slot, counts[slot]) for slot in topo.worker_slots()],
        "mules": [_process(master, slot, counts[slot]) for slot in topo.mule_slots()],
        "spoolers": [_process(master, slot, counts[slot]) for slot in topo.spooler_slots()],
        "event_sources": master.registry.describe(),
        "signal_queue": _queued(router.groups[Target(Kind.WORKER)]),
        "held": len(router.held),
        "signals": _signals(master, counts),
    }


class _Counts(NamedTuple):
    handled: list[int]
    failed: list[int]
    no_handler: list[int]


def _queued(box: Outbox) -> int:
    """Signals queued for a channel: in the master's memory and in the kernel."""
    return len(box.buf) + box.unread()


def _process(master: Master, slot: int, counts: _Counts) -> dict[str, Any]:
    rec = master.shared.procs[slot]
    child = master.children.get(slot)
    status = STATUS_NAMES[rec.status]
    record: dict[str, Any] = {
        "id": master.topology.role_of(slot)[1],
        "pid": child.pid if child else 0,
        "status": "idle" if rec.status == WAITING else status,
        "waiting": rec.status == WAITING,
        "signals": sum(counts.handled),
        "failed": sum(counts.failed),
        "signal_queue": _queued(master.router.boxes[slot]),
        "respawns": master.respawns[slot],
        "harakiri_count": master.harakiris[slot],
        "malformed_records": master.malformed[slot],
    }
    role = master.topology.role_of(slot)[0]
    if role is Role.MULE and record["id"] in master.config.programs:
        record["program"] = master.config.programs[record["id"]].program
    if role is Role.SPOOLER:
        record.update(jobs_done=rec.jobs_done, jobs_failed=rec.jobs_failed,
                      jobs_retried=rec.jobs_retried, jobs_invalid=rec.jobs_invalid)
    if rec.status == BUSY:
        record["signum"] = rec.signum
        record["running_for"] = round(time.monotonic() - rec.started, 3)
    if rec.status == CHEAP:
        record["status"] = "cheap"
    return record


def _signals(master: Master, procs: list[_Counts]) -> dict[str, Any]:
    router = master.router
    registered = {e.num: e for e in master.table.entries()}
    out: dict[str, Any] = {}
    for num in range(SIGNALS):
        handled = sum(rec.handled[num] for rec in procs)
        failed = sum(rec.failed[num] for rec in procs)
        dropped = {reason: counts[num] for reason, counts in router.dropped.items()
                   if counts[num]}
        no_handler = sum(rec.no_handler[num] for rec in procs)
        if no_handler:
            dropped["no-handler"] = no_handler
        counters = (router.raised[num], router.routed[num], handled, failed, dropped)
        if num not in registered and not any(counters):
            continue
        entry = registered.get(num)
        out[str(num)] = {
            "target": entry.target.text(master.topology) if entry else None,
            "handler": entry.ref if entry else None,
            "raised": router.raised[num], "routed": router.routed[num],
            "handled": handled, "failed": failed, "dropped": dropped,
            "coalesced": router.coalesced[num],
        }
    return out
