"""File monitors, run in the sources process with watchdog (created there, after the fork).

A monitor watches a file or a directory (a tree with `recursive`).  A path that does not
exist yet is watched from its nearest existing ancestor until it appears (uWSGI #279);
a watched path that is deleted goes back to that state.  Bursts coalesce: the first
change raises the signal 0.3 ms later (so the events one write or touch makes count once);
further changes in the 50 ms after that raise it once more when the window closes, so the
handler always sees the final state (and the master merges that second tick into the
first while the first is still queued).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from watchdog import events
from watchdog.observers import Observer

log = logging.getLogger("switchboard.filemon")

WINDOW = 0.05          # a burst: changes this close to the last raise make one more
SETTLE = 0.0003        # the first raise waits this long, to take the syscall's other events
_CHANGES = {events.EVENT_TYPE_CREATED, events.EVENT_TYPE_DELETED, events.EVENT_TYPE_MODIFIED,
            events.EVENT_TYPE_MOVED, events.EVENT_TYPE_CLOSED, events.EVENT_TYPE_ATTRIB}


@dataclass
class Monitor:
    ident: int
    num: int
    path: str
    recursive: bool = False
    iterations: int = 0
    fired: int = 0
    fire_at: float = 0.0          # a change came: raise at this time (after SETTLE)
    window_end: float = 0.0       # monotonic end of the current burst window
    trailing: bool = False        # a change came in during the window
    watching: str = ""            # the path watchdog watches now (itself, or an ancestor)
    watch: Any = None
    handler: Any = None


class FileMonitors:
    """Every monitor of this process, over one watchdog Observer.

    Watchdog calls `_on_event` on its own thread; that only marks the monitor and wakes
    the process (`wake()`), and `due()` on the main thread decides what to raise.
    """

    def __init__(self, wake: Callable[[], None], clock: Callable[[], float]) -> None:
        self.wake, self.clock = wake, clock
        self.monitors: dict[int, Monitor] = {}
        self._changed: set[int] = set()
        self._changed_lock = threading.Lock()
        self.observer = Observer()
        self.observer.start()

    def add(self, monitor: Monitor) -> None:
        if monitor.ident in self.monitors:
            return                  # a command repeated after a respawn: already here
        self.monitors[monitor.ident] = monitor
        self._place(monitor)

    def remove(self, ident: int) -> None:
        monitor = self.monitors.pop(ident, None)
        if monitor is not None:
            self._unwatch(monitor)

    def _place(self, monitor: Monitor) -> None:
        """Watch the path if it exists, else its nearest existing ancestor."""
        self._unwatch(monitor)
        target = _nearest_existing(monitor.path)
        exists = target == monitor.path
        handler = _Handler(self, monitor)
        recursive = monitor.recursive and exists and os.path.isdir(target)
        try:
            monitor.watch = self.observer.schedule(handler, target, recursive=recursive)
        except OSError as exc:
            log.error("file monitor for signal %d: cannot watch %s: %s", monitor.num, target,
                      exc.strerror or exc)
            return
        monitor.handler, monitor.watching = handler, target
        if not exists and _nearest_existing(monitor.path) != target:
            # Something on the way appeared before the watch was in place (`mkdir -p`
            # and a write at once): its event may never come, so act as if it had.
            self._mark(-monitor.ident)

    def _mark(self, ident: int) -> None:
        """From any thread: monitor `ident` changed (-ident: its path came closer)."""
        with self._changed_lock:
            self._changed.add(ident)
        self.wake()

    def _unwatch(self, monitor: Monitor) -> None:
        """Stop this monitor's watch (another monitor may share the same path)."""
        if monitor.watch is not None:
            self.observer.remove_handler_for_watch(monitor.handler, monitor.watch)
            monitor.watch = monitor.handler = None

    def _on_event(self, monitor: Monitor, event: events.FileSystemEvent) -> None:
        if event.event_type not in _CHANGES:
            return
        ident = monitor.ident
        if monitor.watching != monitor.path:   # waiting for the path to appear
            if not _leads_to(event, monitor.watching, monitor.path):
                return
            ident = -ident                     # watch closer (on the main thread)
        self._mark(ident)

    def due(self) -> list[Monitor]:
        """On the main thread: the monitors whose signal must be raised now."""
        with self._changed_lock:
            changed, self._changed = self._changed, set()
        now = self.clock()
        fire: list[Monitor] = []
        for ident in changed:
            monitor = self.monitors.get(abs(ident))
            if monitor is None:
                continue
            if ident < 0:
                self._place(monitor)
                if monitor.watching != monitor.path:
                    continue                   # a folder on the way appeared, not the path
            if now < monitor.window_end:
                monitor.trailing = True
            elif not monitor.fire_at:
                monitor.fire_at = now + SETTLE
        for monitor in self.monitors.values():
            leading = monitor.fire_at and now >= monitor.fire_at
            if leading or (monitor.trailing and now >= monitor.window_end):
                monitor.fire_at, monitor.trailing = 0.0, False   # one raise covers both
                monitor.window_end = now + WINDOW
                fire.append(monitor)
        for monitor in fire:
            if monitor.watching == monitor.path and not os.path.exists(monitor.path):
                self._place(monitor)           # deleted: wait for it to come back
        return fire

    def next_deadline(self) -> float | None:
        ends = [m.fire_at or m.window_end for m in self.monitors.values()
                if m.fire_at or m.trailing]
        return min(ends) if ends else None

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=2)


class _Handler(events.FileSystemEventHandler):
    def __init__(self, monitors: FileMonitors, monitor: Monitor) -> None:
        self.monitors, self.monitor = monitors, monitor

    def on_any_event(self, event: events.FileSystemEvent) -> None:
        self.monitors._on_event(self.monitor, event)


def _nearest_existing(path: str) -> str:
    """`path` if it exists, else its nearest existing ancestor."""
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def _leads_to(event: events.FileSystemEvent, watching: str, path: str) -> bool:
    """Does a change seen in the ancestor we watch make (part of) the path we wait for?"""
    for touched in (event.src_path, getattr(event, "dest_path", "")):
        touched = os.fsdecode(touched) if touched else ""
        if not touched or touched == watching:
            continue                           # the ancestor itself changed: not news
        if path == touched or path.startswith(touched.rstrip("/") + "/"):
            return True
    return False
