"""The stats document: uWSGI's stats-server shape, plus mules, spoolers, per-signal
counters, raise-to-start latency and the event sources.

It reads a narrow `View` of the instance (the shared records and table, the router's
counters, the sources), never the master itself; one more section (a cluster's, say) is
one more entry in `View.sections`.  Every number a uWSGI tool parses is an integer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from switchboard import __version__
from switchboard.latency import EMPTY, Summary
from switchboard.router import Outbox, Router
from switchboard.shared import (
    BUSY,
    CHEAP,
    DOWN,
    IDLE,
    SIGNALS,
    STARTING,
    STATUS_NAMES,
    WAITING,
    Shared,
)
from switchboard.sources.registry import Registry
from switchboard.table import SignalTable
from switchboard.targets import Kind, Role, Target, Topology

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class View:
    """What the stats read: live references, handed over by the master at boot."""

    topology: Topology
    shared: Shared
    table: SignalTable
    router: Router
    registry: Registry
    started: float                                 # CLOCK_MONOTONIC at boot
    pids: Callable[[], dict[int, tuple[int, float]]]   # slot -> (pid, spawned, monotonic)
    respawns: list[int]
    harakiris: list[int]
    malformed: list[int]                           # per slot: records the master refused
    programs: Callable[[], dict[int, str]]         # mule id -> its program reference
    sections: dict[str, Callable[[], Any]] = field(default_factory=dict)


class _Counts(NamedTuple):
    handled: list[int]
    failed: list[int]
    no_handler: list[int]
    run_us: int
    direct_raised: list[int]    # signals it raised straight into channels (direct.py)
    direct_routed: list[int]    # ... and the copies that wrote


def document(view: View) -> dict[str, Any]:
    """Everything `switchboard stats` and the stats server show."""
    topo, router = view.topology, view.router
    # One copy of every process's counters, so the per-process and per-signal views
    # of this document agree with each other (children keep counting meanwhile).
    counts = [_Counts(list(r.handled), list(r.failed), list(r.no_handler), int(r.busy * 1e6),
                      list(r.direct_raised), list(r.direct_routed))
              for r in view.shared.procs]
    latency = _latencies(view, counts)
    pids = view.pids()
    procs = {role: [_process(view, slot, counts[slot], latency, pids) for slot in slots]
             for role, slots in (("workers", topo.worker_slots()), ("mules", topo.mule_slots()),
                                 ("spoolers", topo.spooler_slots()))}
    doc: dict[str, Any] = {
        "version": __version__,
        "pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),
        "uptime": round(time.monotonic() - view.started, 3),
        "signal_queue": _queued(router.groups[Target(Kind.WORKER)]),
        # uWSGI's, for its tools: there is no listening socket, so no listen queue
        "listen_queue": 0, "listen_queue_errors": 0, "sockets": [],
        "load": sum(1 for r in view.shared.procs[1:] if r.status == BUSY),
        "locks": view.shared.holders(),
        "held": len(router.held),
        **procs,
        "signals": _signals(view, counts, latency),
        "event_sources": view.registry.entries(),
        "queues": _queues(view),
    }
    for name, section in view.sections.items():
        doc[name] = section()
    return doc


def _queued(box: Outbox) -> int:
    """Signals queued for a channel: in the master's memory and in the kernel."""
    return len(box.buf) + box.unread()


def _queues(view: View) -> dict[str, int]:
    """Every group channel's depth, by target (the private ones are per process)."""
    return {box.name.removeprefix("group "): _queued(box)
            for box in view.router.groups.values()}


def _latencies(view: View, counts: list[_Counts]) -> dict[tuple[int, int], Summary]:
    """(slot, signal) -> histogram, for every process that ran the signal."""
    lat = view.shared.latency
    return {(slot, num): lat.summary(slot, num)
            for slot, c in enumerate(counts) if slot
            for num in range(SIGNALS) if c.handled[num] or c.failed[num]}


def quantiles(summary: Summary) -> dict[str, int]:
    """count, p50, p99 and max (µs) of one histogram."""
    return {"count": summary.total, "p50": summary.quantile(0.5),
            "p99": summary.quantile(0.99), "max": summary.max_us}


def _status(state: int, signum: int) -> str:
    """uWSGI's words: `sig<N>` while running a handler, `cheap` when no process runs."""
    if state == BUSY:
        return f"sig{signum}" if signum >= 0 else "busy"
    if state in (CHEAP, DOWN, STARTING):
        return "cheap"
    return "idle"


def _process(view: View, slot: int, counts: _Counts,
             latency: dict[tuple[int, int], Summary],
             pids: dict[int, tuple[int, float]]) -> dict[str, Any]:
    rec = view.shared.procs[slot]
    role, ident = view.topology.role_of(slot)
    pid, spawned = pids.get(slot, (0, 0.0))
    runs = sum(counts.handled) + sum(counts.failed)
    rss, vsz = _memory(pid)
    state = rec.status
    record: dict[str, Any] = {
        "id": ident, "pid": pid,
        "accepting": int(bool(pid) and state in (IDLE, BUSY, WAITING)),
        "requests": runs, "exceptions": sum(counts.failed),
        "harakiri_count": view.harakiris[slot],
        "signals": sum(counts.handled), "failed": sum(counts.failed),
        "signal_queue": _queued(view.router.boxes[slot]),
        "status": _status(state, rec.signum), "state": STATUS_NAMES[state],
        "waiting": state == WAITING,
        "rss": rss, "vsz": vsz,
        "running_time": counts.run_us, "avg_rt": counts.run_us // runs if runs else 0,
        "last_spawn": int(time.time() - (time.monotonic() - spawned)) if pid else 0,
        "respawn_count": view.respawns[slot] + 1 if pid else view.respawns[slot],
        "respawns": view.respawns[slot],
        "malformed_records": view.malformed[slot],
        "tx": 0,
        "cores": [_core(runs, state == BUSY)], "apps": [],
        "latency": {str(num): quantiles(s) for (s_slot, num), s in latency.items()
                    if s_slot == slot},
    }
    if role is Role.MULE and ident in (programs := view.programs()):
        record["program"] = programs[ident]
    if role is Role.SPOOLER:
        record.update(jobs_done=rec.jobs_done, jobs_failed=rec.jobs_failed,
                      jobs_retried=rec.jobs_retried, jobs_invalid=rec.jobs_invalid)
    if state == BUSY:
        record["signum"] = rec.signum
        record["running_for"] = round(time.monotonic() - rec.started, 3)
    return record


def _core(runs: int, busy: bool) -> dict[str, Any]:
    """uWSGI's per-core record: one core per process (handlers run one at a time)."""
    return {"id": 0, "requests": runs, "static_requests": 0, "routed_requests": 0,
            "offloaded_requests": 0, "write_errors": 0, "read_errors": 0,
            "in_request": int(busy), "vars": [], "req_info": {}}


def _memory(pid: int) -> tuple[int, int]:
    """(rss, vsz) in bytes, from /proc; zeros for a process that is gone."""
    if not pid:
        return 0, 0
    try:
        with open(f"/proc/{pid}/statm") as f:
            vsz, rss = f.read().split()[:2]
    except (OSError, ValueError):
        return 0, 0
    return int(rss) * _PAGE, int(vsz) * _PAGE


def _signals(view: View, procs: list[_Counts],
             latency: dict[tuple[int, int], Summary]) -> dict[str, Any]:
    router, topo = view.router, view.topology
    registered = {e.num: e for e in view.table.entries()}
    merged: dict[int, Summary] = {}
    for (_, num), summary in latency.items():
        merged[num] = merged.get(num, EMPTY).merge(summary)
    out: dict[str, Any] = {}
    for num in range(SIGNALS):
        handled = sum(rec.handled[num] for rec in procs)
        failed = sum(rec.failed[num] for rec in procs)
        dropped = {reason: counts[num] for reason, counts in router.dropped.items()
                   if counts[num]}
        no_handler = sum(rec.no_handler[num] for rec in procs)
        if no_handler:
            dropped["no-handler"] = no_handler
        direct = sum(rec.direct_raised[num] for rec in procs)   # straight to channels
        raised = router.raised[num] + direct
        routed = router.routed[num] + sum(rec.direct_routed[num] for rec in procs)
        counters = (raised, routed, handled, failed, dropped)
        if num not in registered and not any(counters):
            continue
        entry = registered.get(num)
        out[str(num)] = {
            "target": entry.target.text(topo) if entry else None,
            "handler": entry.ref if entry else None,
            "language": _language(entry.ref) if entry else None,
            "raised": raised, "routed": routed, "direct": direct,
            "handled": handled, "failed": failed, "dropped": dropped,
            "coalesced": router.coalesced[num],
            "latency": quantiles(merged.get(num, EMPTY)),
        }
    return out


def _language(ref: str) -> str:
    """What a handler is written in, from its reference (`lua:…` or else Python)."""
    return "lua" if ref.startswith("lua:") else "python"
