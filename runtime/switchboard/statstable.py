"""The stats document as text tables, for a person at a terminal (`switchboard stats`)."""

from __future__ import annotations

import time
from typing import Any


def render(doc: dict[str, Any], now: float | None = None) -> str:
    """Processes, signals (with raise-to-start latency), event sources and queues."""
    now = time.time() if now is None else now
    head = (f"switchboard {doc['version']}  master pid {doc['pid']}  "
            f"up {doc['uptime']:.0f} s  held {doc['held']}")
    parts = [head, _processes(doc), _signals(doc), _sources(doc, now), _queues(doc)]
    return "\n\n".join(p for p in parts if p) + "\n"


def _table(title: str, header: list[str], rows: list[list[Any]], left: int = 1) -> str:
    """Columns sized to fit; the first `left` columns flush left, numbers right."""
    if not rows:
        return f"{title}: none"
    cells = [header] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title]
    for row in cells:
        lines.append("  ".join(c.ljust(w) if i < left else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True)))
                     .rstrip())
    return "\n".join(lines)


def _processes(doc: dict[str, Any]) -> str:
    rows = []
    for role in ("workers", "mules", "spoolers"):
        for p in doc[role]:
            running = f"sig {p['signum']}" if "signum" in p else ""
            rows.append([f"{role[:-1]} {p['id']}", p["pid"] or None,
                         p["state"] + (" (waiting)" if p["waiting"] else ""), running,
                         p["signals"], p["failed"], p["signal_queue"], p["respawns"],
                         p["harakiri_count"], _mib(p["rss"])])
    return _table("PROCESSES", ["process", "pid", "state", "running", "handled", "failed",
                                "queue", "respawns", "harakiri", "rss"], rows)


def _signals(doc: dict[str, Any]) -> str:
    rows = []
    for num, e in sorted(doc["signals"].items(), key=lambda kv: int(kv[0])):
        lat = e["latency"]
        dropped = sum(e["dropped"].values())
        rows.append([num, e["target"] or "(held)", e["handler"] or "(unregistered)",
                     e["raised"], e["handled"], e["failed"], dropped, e["coalesced"],
                     lat["count"], _us(lat["p50"], lat["count"]),
                     _us(lat["p99"], lat["count"]), _us(lat["max"], lat["count"])])
    return _table("SIGNALS (latency: raise to handler start)",
                  ["num", "target", "handler", "raised", "handled", "failed", "dropped",
                   "coalesced", "runs", "p50", "p99", "max"], rows, left=3)


def _sources(doc: dict[str, Any], now: float) -> str:
    rows = []
    for s in doc["event_sources"]:
        upcoming = s["next_fire"]
        when = None if upcoming is None else (
            time.strftime("%H:%M:%S", time.localtime(upcoming))
            + f" (in {max(0.0, upcoming - now):.1f} s)")
        rows.append([s["kind"], s["schedule"], s["signal"], when, s["fired"],
                     s["iterations_left"]])
    return _table("EVENT SOURCES", ["kind", "schedule", "signal", "next fire", "fired",
                                    "left"], rows, left=2)


def _queues(doc: dict[str, Any]) -> str:
    rows = [[name, depth] for name, depth in doc["queues"].items()]
    return _table("QUEUES (first-available groups)", ["queue", "depth"], rows)


def _us(value: int, count: int) -> str | None:
    """A latency for a person: µs below a millisecond, ms below a second, else s."""
    if not count:
        return None
    if value < 1000:
        return f"{value} µs"
    if value < 1_000_000:
        return f"{value / 1000:.1f} ms"
    return f"{value / 1e6:.2f} s"


def _mib(size: int) -> str | None:
    return f"{size / 1048576:.1f} MiB" if size else None
