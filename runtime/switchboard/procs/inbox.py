"""A mule's side of mule messages (messages.py): the hook between signals, and
mule_get_msg()'s wait, which runs signals that arrive meanwhile."""

from __future__ import annotations

import logging
import select
import socket
import time
from typing import TYPE_CHECKING

from switchboard import api, messages
from switchboard.shared import BUSY, IDLE

if TYPE_CHECKING:
    from switchboard.shared import ProcRecord

log = logging.getLogger("switchboard.child")

NEVER = -2              # as child.NEVER: the top-level loop, no signal ends it


class MessageInbox:
    """Mixed into Child: what it needs of the child is declared below."""

    record: ProcRecord
    stopping: bool
    _poll: select.epoll
    _msg_fds: set[int]
    _inbox: list[socket.socket]

    if TYPE_CHECKING:       # Child's own, declared for the type checker only
        def _read_now(self) -> int | None: ...
        def _dispatch(self, num: int, want: int) -> bool: ...
        def _wait(self, deadline: float | None) -> int | None: ...
        def _name(self) -> str: ...

    def _hand_message(self) -> bool:
        """A mule without a program: hand one waiting message to uwsgi.mule_msg_hook
        (as uWSGI); False if none waits.  With no hook set, messages stay queued."""
        hook = api.mule_msg_hook
        if hook is None:
            self._unwatch(self._inbox)
            self._inbox = []
            return False
        msg = messages.take(self._inbox, messages.RECV_SIZE)
        if msg is None:
            return False
        rec = self.record
        rec.status, rec.started = BUSY, time.monotonic()
        try:
            hook(msg)
        except Exception:
            log.exception("%s: mule_msg_hook failed on a message of %d bytes",
                          self._name(), len(msg))
        finally:
            rec.status, rec.user_harakiri = IDLE, 0.0
            rec.last_active = time.monotonic()
        return True

    def receive(self, socks: list[socket.socket], size: int, deadline: float | None,
                signals: bool) -> bytes | None:
        """mule_get_msg(): a message, or None once a signal ran (as uWSGI) or at
        `deadline`; without `signals`, signals wait in their channels."""
        if not signals:
            return messages.wait_for(socks, size, deadline)
        added = self._watch(socks)
        try:
            while True:
                if self.stopping:
                    raise SystemExit(0)
                msg = messages.take(socks, size)
                if msg is not None:
                    return msg
                num = self._read_now()
                if num is not None:
                    self._dispatch(num, NEVER)
                    return None
                if self._wait(deadline) is None:
                    return None
        finally:
            self._unwatch(added)

    def _watch(self, socks: list[socket.socket]) -> list[socket.socket]:
        added = [s for s in socks if s.fileno() not in self._msg_fds]
        for sock in added:
            self._poll.register(sock.fileno(), select.EPOLLIN)
            self._msg_fds.add(sock.fileno())
        return added

    def _unwatch(self, socks: list[socket.socket]) -> None:
        for sock in socks:
            self._poll.unregister(sock.fileno())
            self._msg_fds.discard(sock.fileno())

