"""Every event source of an instance, as the master keeps them.

Timers and crons live here and fire from the master's loop; file monitors and
PostgreSQL listeners are kept here and run in the sources process, which inherits them
at fork and hears later changes as commands.  Any process may add or remove a source:
the master applies the request (from its own code, or as a message from a child).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from switchboard.router import Router
from switchboard.sources.cron import CronSpec, next_fire
from switchboard.sources.pgnotify import Listener
from switchboard.sources.schedule import Schedule

log = logging.getLogger("switchboard.sources")

Command = Callable[[dict[str, Any]], None]


class Registry:
    def __init__(self, router: Router, schedule: Schedule) -> None:
        self.router, self.schedule = router, schedule
        self.monitors: dict[int, dict[str, Any]] = {}     # id -> spec
        self.listeners: list[Listener] = []
        self._ids = itertools.count(1)
        self.tell_helper: Command = lambda command: None   # set by the master

    def apply(self, spec: dict[str, Any], origin: str = "master") -> None:
        """Carry out `spec` (checked by the caller): add_* or del_* of a source.

        `origin` is "master" for what the config and its imports made (a reload
        replaces those) and "child" for what children added at run time (kept)."""
        kind, num = spec["kind"], spec.get("num", -1)
        if kind in ("timer", "rb_timer"):
            self.schedule.add_timer(num, spec["seconds"], spec.get("iterations", 0), origin)
            log.info("signal %d: %s every %g s%s", num, kind.replace("_", ""), spec["seconds"],
                     f", {spec['iterations']} ticks" if spec.get("iterations") else "")
        elif kind == "cron":
            self.schedule.add_cron(num, CronSpec(**spec["cron"]), origin)
            log.info("signal %d: cron %s", num, CronSpec(**spec["cron"]).text())
        elif kind == "file_monitor":
            ident = next(self._ids)
            self.monitors[ident] = {**spec, "id": ident, "origin": origin}
            self.tell_helper({**self.monitors[ident], "kind": "add_monitor"})
            log.info("signal %d: file monitor on %s%s", num, spec["path"],
                     " (recursive)" if spec.get("recursive") else "")
        elif kind == "pgnotify":
            self.listeners.append(Listener(num, spec["dsn"], spec["channel"]))
            log.info("signal %d: PostgreSQL notifications on channel %s", num, spec["channel"])
        elif kind == "del_timer":
            self._forget(self.schedule.del_timers(num), "timers", num)
        elif kind == "del_cron":
            self._forget(self.schedule.del_crons(num), "crons", num)
        elif kind == "del_file_monitor":
            idents = [i for i, m in self.monitors.items() if m["num"] == num]
            for ident in idents:
                del self.monitors[ident]
                self.tell_helper({"kind": "del_monitor", "id": ident})
            log.info("signal %d: %d file monitors removed", num, len(idents))
        elif kind == "monitor_done":
            self.monitors.pop(spec["id"], None)
        else:
            log.error("unknown source request %r; ignored", spec)

    def boot_sources(self) -> list[object]:
        """What the config and its imports made (a reload replaces these)."""
        made: list[object] = [t for t in self.schedule.timers if t.origin == "master"]
        made += [c for c in self.schedule.crons if c.origin == "master"]
        made += [i for i, m in self.monitors.items() if m["origin"] == "master"]
        made += list(self.listeners)
        return made

    def drop_sources(self, sources: list[object]) -> None:
        """Remove sources boot_sources() listed (a reload loaded their successors)."""
        self.schedule.timers = [t for t in self.schedule.timers if t not in sources]
        self.schedule.crons = [c for c in self.schedule.crons if c not in sources]
        for source in sources:
            self.router.forget(source)
            if isinstance(source, int) and source in self.monitors:
                del self.monitors[source]
                self.tell_helper({"kind": "del_monitor", "id": source})
        self.listeners = [x for x in self.listeners if x not in sources]

    def _forget(self, removed: list[object], what: str, num: int) -> None:
        for source in removed:
            self.router.forget(source)
        log.info("signal %d: %d %s removed", num, len(removed), what)

    def fire(self) -> None:
        """Tick every timer and cron that is due."""
        self.schedule.due(self.router.tick)

    def describe(self) -> list[str]:
        """One line per source, for `switchboard check` and the stats."""
        lines = [f"{t.num:3d}  timer every {t.period:g} s"
                 + (f", {t.fired} of {t.iterations} ticks done" if t.iterations else "")
                 for t in self.schedule.timers]
        lines += [f"{c.num:3d}  cron {c.spec.text()}" for c in self.schedule.crons]
        lines += [f"{m['num']:3d}  file monitor {m['path']}"
                  + (" (recursive)" if m.get("recursive") else "") for m in self.monitors.values()]
        lines += [f"{x.num:3d}  pgnotify channel {x.channel}" for x in self.listeners]
        return lines

    def entries(self) -> list[dict[str, Any]]:
        """One structured record per source, for the stats: times in Unix seconds."""
        now, epoch = time.monotonic(), time.time()
        out = [_entry("timer", t.num, f"every {t.period:g} s", epoch + t.due - now,
                      t.fired, t.iterations) for t in self.schedule.timers]
        wall = self.schedule.wall()
        for c in self.schedule.crons:
            upcoming = next_fire(c.spec, wall)
            out.append(_entry("cron", c.num, c.spec.text(),
                              upcoming.timestamp() if upcoming else None, c.fired, 0))
        out += [_entry("file_monitor", m["num"], m["path"] + (" (recursive)" if
                       m.get("recursive") else ""), None, None, m.get("iterations", 0))
                for m in self.monitors.values()]
        out += [_entry("pgnotify", x.num, f"channel {x.channel}", None, None, 0)
                for x in self.listeners]
        return out

    def needs_helper(self) -> bool:
        return bool(self.monitors or self.listeners)


def _entry(kind: str, num: int, schedule: str, next_fire: float | None, fired: int | None,
           iterations: int) -> dict[str, Any]:
    """A source as the stats show it: `iterations_left` is None for one that never ends,
    and a file monitor's ticks are counted in the sources helper (None here)."""
    left = None if not iterations or fired is None else max(0, iterations - fired)
    return {"kind": kind, "signal": num, "schedule": schedule,
            "next_fire": round(next_fire, 3) if next_fire is not None else None,
            "fired": fired, "iterations": iterations, "iterations_left": left}
