"""What the world outside hears of the master's life: a pidfile and systemd's sd_notify.

`pidfile` (uWSGI's --pidfile) holds the master's pid from start to stop.  Under systemd
with `Type=notify` (or `notify-reload`), $NOTIFY_SOCKET gets READY=1 once every child
has started, RELOADING=1 and READY=1 around a graceful reload, STOPPING=1 at a stop.
The variable is taken out of the environment, so children (and user code in them)
do not speak for the service.  Neither needs a dependency: a datagram and a file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time

log = logging.getLogger("switchboard.master")


class Lifecycle:
    def __init__(self, pidfile: str) -> None:
        self.pidfile = pidfile
        self._notify = os.environ.pop("NOTIFY_SOCKET", "")

    def started(self) -> None:
        """The master is up (before its children): write the pidfile."""
        if not self.pidfile:
            return
        tmp = f"{self.pidfile}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, self.pidfile)

    def ready(self) -> None:
        self._send("READY=1\nSTATUS=ready")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading")

    def stopping(self) -> None:
        self._send("STOPPING=1\nSTATUS=stopping")

    def stopped(self) -> None:
        """Remove the pidfile, if it is still ours."""
        if not self.pidfile:
            return
        with contextlib.suppress(OSError):
            with open(self.pidfile) as f:
                if f.read().strip() != str(os.getpid()):
                    return
            os.unlink(self.pidfile)

    def _send(self, message: str) -> None:
        if not self._notify:
            return
        address = "\0" + self._notify[1:] if self._notify.startswith("@") else self._notify
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(message.encode(), address)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self._notify, exc)
