"""What a child writes to the master: raised signals and messages, each one system call
in the usual case, waiting up to signal-timeout while the master's queue is full."""

from __future__ import annotations

import errno
import json
import select
import socket
import time
from typing import Any

from switchboard.channels import RAISE, message, record
from switchboard.direct import DirectWriter

_RAISE_RECORDS = [record(RAISE, num) for num in range(256)]


class ToMaster:
    """Mixed into Child: its socket to the master and how long a full queue may block."""

    sock: socket.socket
    signal_timeout: float
    direct: DirectWriter

    def raise_signal(self, num: int) -> None:
        """Straight into the target's channel when that keeps every guarantee (direct.py),
        through the master otherwise."""
        if not self.direct.write(num):
            self._send(_RAISE_RECORDS[num], num)

    def send_message(self, payload: dict[str, Any]) -> None:
        """Tell the master something bigger than a signal (a new timer, ...)."""
        self._send(message(json.dumps(payload).encode()))

    def add_source(self, spec: dict[str, Any]) -> None:
        self.send_message(spec)

    def _send(self, data: bytes, num: int | None = None) -> None:
        """Write a record to the master, waiting up to signal-timeout while it is full."""
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        self.direct.sent += sent
        if sent < len(data):                # the usual case is one system call, done
            self._send_rest(data, sent, num)

    def _send_rest(self, data: bytes, sent: int, num: int | None) -> None:
        deadline = time.monotonic() + self.signal_timeout
        view = memoryview(data)[sent:]
        while view:
            try:
                sent = self.sock.send(view)
                self.direct.sent += sent
                view = view[sent:]
                continue
            except BlockingIOError:
                pass
            left = deadline - time.monotonic()
            if left <= 0 and len(view) == len(data):
                what = f"signal {num}" if num is not None else "a message"
                raise OSError(errno.ETIMEDOUT,
                              f"{what} not accepted by the master within "
                              f"{self.signal_timeout:g} s (signal-timeout): its queue is full")
            select.select([], [self.sock], [], max(left, 0.05))
