"""signal_wait(): the child's loop with a condition to return, blocking or on an asyncio
loop; the master is told what this process waits for, to route signals to it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from switchboard.channels import WAIT_ANY, WAIT_END, WAIT_NUM, record
from switchboard.shared import WAITING

if TYPE_CHECKING:
    from switchboard.shared import ProcRecord

ANY = -1                # a wait for any signal


class Waiting:
    """Mixed into Child: what it needs of the child is declared below."""

    record: ProcRecord
    _waits: list[int]
    _fds: list[int]
    _readable: list[bool]

    if TYPE_CHECKING:       # Child's own, declared for the type checker only
        def _serve(self, want: int, deadline: float | None) -> int | None: ...
        def _read_now(self) -> int | None: ...
        def _dispatch(self, num: int, want: int) -> bool: ...
        def _send(self, data: bytes, num: int | None = None) -> None: ...

    def wait(self, num: int | None, timeout: float | None) -> int | None:
        want = ANY if num is None else num
        deadline = None if timeout is None else time.monotonic() + timeout
        self._waits.append(want)
        self._send_wait(want)
        rec = self.record
        saved, began = rec.status, time.monotonic()
        rec.status = WAITING
        try:
            return self._serve(want, deadline)
        finally:
            # Time spent waiting is not time the handler ran: harakiri must not count it.
            rec.status, rec.started = saved, rec.started + (time.monotonic() - began)
            self._waits.pop()
            self._send_wait(self._waits[-1] if self._waits else None)

    async def wait_async(self, num: int | None, timeout: float | None) -> int | None:
        """wait() on an asyncio loop: the channels become readers of the loop."""
        import asyncio  # here: only asyncio code pays for importing it
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        want = ANY if num is None else num

        def readable() -> None:
            self._readable[:] = [True] * len(self._fds)
            while not done.done():
                received = self._read_now()
                if received is None:
                    return
                try:
                    if self._dispatch(received, want):
                        done.set_result(received)
                except BaseException as exc:      # the stop: end the wait with it
                    done.set_exception(exc)

        self._waits.append(want)
        self._send_wait(want)
        rec = self.record
        saved, began = rec.status, time.monotonic()
        rec.status = WAITING
        for fd in self._fds:
            loop.add_reader(fd, readable)
        try:
            return await asyncio.wait_for(done, timeout)
        except TimeoutError:
            return None
        finally:
            for fd in self._fds:
                loop.remove_reader(fd)
            rec.status, rec.started = saved, rec.started + (time.monotonic() - began)
            self._waits.pop()
            self._send_wait(self._waits[-1] if self._waits else None)

    def _send_wait(self, want: int | None) -> None:
        if want is None:
            self._send(record(WAIT_END))
        elif want == ANY:
            self._send(record(WAIT_ANY))
        else:
            self._send(record(WAIT_NUM, want))
