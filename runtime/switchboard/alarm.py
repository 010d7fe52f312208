"""A timerfd: a file descriptor that becomes readable at a CLOCK_MONOTONIC deadline.

epoll_wait() and poll() take whole milliseconds (Python rounds the timeout up), so a
10 ms timer that waits in them fires up to 1 ms late.  A timerfd in the same wait fires
on time, to the tens of microseconds, and costs a system call only when the deadline
changes.  It is two libc calls through ctypes (os.timerfd_create() is Python 3.13+).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time

_CLOCK_MONOTONIC = time.CLOCK_MONOTONIC       # time.monotonic() reads this clock
_TFD_NONBLOCK, _TFD_CLOEXEC, _TFD_TIMER_ABSTIME = os.O_NONBLOCK, os.O_CLOEXEC, 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class Alarm:
    """Wakes a selector or poll() that watches `fd` at the deadline given to set()."""

    def __init__(self) -> None:
        self._armed: float | None = None
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")

    def set(self, deadline: float | None) -> None:
        """Ring at `deadline` (time.monotonic() seconds); None disarms it."""
        if deadline == self._armed:
            return
        self._armed = deadline
        # 0 disarms a timerfd, so an already-passed deadline is moved to 1 ns
        self._settime(max(deadline, 1e-9) if deadline is not None else 0.0)

    def clear(self) -> None:
        """Consume the ring (the fd stays readable until this is called)."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)
        self._armed = None

    def close(self) -> None:
        os.close(self.fd)

    def _settime(self, deadline: float) -> None:
        seconds = int(deadline)
        spec = _Itimerspec(_Timespec(0, 0),
                           _Timespec(seconds, int((deadline - seconds) * 1e9)))
        if self._libc.timerfd_settime(self.fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec),
                                      None) < 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
