"""The sources process: file monitors (watchdog), PostgreSQL listeners (psycopg), and
the cluster's receiver with its unique timers (cluster/receiver.py).

Both need threads, and the master must never fork with a thread running, so the master
forks this helper (`switchboard sources`) to host them; they are created here, after
the fork.  It inherits the sources the config and the master's imports declared, hears
later additions and removals from the master over a pipe (one JSON object per line),
and raises signals through its channel like any child: file-monitor changes as ticks
(which coalesce), each NOTIFY as an ordinary raise.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from switchboard.channels import TICK, record
from switchboard.cluster import unique
from switchboard.sources.filemon import FileMonitors, Monitor
from switchboard.sources.pgnotify import Listener

if TYPE_CHECKING:
    from switchboard.cluster.receiver import Receiver
    from switchboard.procs.child import Child

log = logging.getLogger("switchboard.sources")


class SourcesWork:
    def __init__(self, child: Child, commands_fd: int, monitors: list[dict[str, Any]],
                 listeners: list[Listener], cluster: Receiver | None = None) -> None:
        self.child, self.commands_fd = child, commands_fd
        self.events_r, self.events_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.fds = [commands_fd, self.events_r]
        self._initial, self.listeners = monitors, listeners
        self._notified: collections.deque[int] = collections.deque()
        self._pending = b""
        self._due = True
        self.cluster = cluster

    def start(self) -> None:
        """Create the observer and the listeners' threads (here, after the fork)."""
        self.monitors = FileMonitors(self._wake, time.monotonic)
        for spec in self._initial:
            self._add(spec)
        for listener in self.listeners:
            listener.start(self._on_notify)
        if self.cluster is not None:
            self.cluster.wake = self._wake
            self.cluster.start()

    def stop(self) -> None:
        """On the way out: the cluster puts back the signals it took and did not raise,
        and the fires it won are raised (once the receiver claims no more): a stopping
        master drops them as `stopped` and releases their claims (cluster/release.py)."""
        if self.cluster is not None:
            self.cluster.stop()
            inbox = self.cluster.inbox
            fires = [num for ident, num in inbox if not ident]
            inbox.clear()
            inbox.extend((0, num) for num in fires)
            self._raise_arrivals(self.cluster)
            if inbox:
                log.warning("cluster: %d unique fires (signal %s) won and not raised: "
                            "lost", len(inbox), ", ".join(str(n) for _, n in inbox))

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self.events_w, b"\0")

    def _on_notify(self, num: int) -> None:
        """On a listener's thread: queue the raise for the main thread."""
        self._notified.append(num)
        self._wake()

    def deadline(self) -> float | None:
        return 0.0 if self._due else self.monitors.next_deadline()

    def woken(self, fd: int) -> None:
        data = b""
        with contextlib.suppress(BlockingIOError):
            data = os.read(fd, 65536)
        if fd == self.commands_fd:
            self._commands(data)
        self._due = True

    def run(self) -> None:
        self._due = False
        for monitor in self.monitors.due():
            self.child._send(record(TICK, monitor.num))
            monitor.fired += 1
            if monitor.iterations and monitor.fired >= monitor.iterations:
                self.monitors.remove(monitor.ident)
                self.child.send_message({"kind": "monitor_done", "id": monitor.ident})
        while self._notified:
            self.child.raise_signal(self._notified.popleft())
        if self.cluster is not None:
            self._raise_arrivals(self.cluster)

    def _raise_arrivals(self, cluster: Receiver) -> None:
        """Raise what the cluster handed over; each is acknowledged once the master has it."""
        inbox, done = cluster.inbox, cluster.done
        while inbox:
            ident, num = inbox[0]
            try:
                self.child.raise_signal(num)
            except OSError as exc:      # the master's queue stayed full: try again later
                log.warning("cluster: signal %d waits (%s)", num, exc)
                self._due = True
                return
            if ident:               # in `done` before it leaves the inbox: see _take_back
                done.append(ident)
                cluster.state.count(cluster.slot, "received")
            else:
                cluster.state.fired[num] += 1
            inbox.popleft()

    def _commands(self, data: bytes) -> None:
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            command = json.loads(line)
            if command["kind"] == "add_monitor":
                self._add(command)
            elif command["kind"] == "del_monitor":
                self.monitors.remove(command["id"])
            elif command["kind"] == "add_unique" and self.cluster is not None:
                spec = {**command, "kind": command["source"]}
                self.cluster.add(unique.from_spec(command["id"], spec))
            elif command["kind"] == "del_unique" and self.cluster is not None:
                self.cluster.remove(command["id"])

    def _add(self, spec: dict[str, Any]) -> None:
        self.monitors.add(Monitor(spec["id"], spec["num"], spec["path"],
                                  spec.get("recursive", False), spec.get("iterations", 0)))
