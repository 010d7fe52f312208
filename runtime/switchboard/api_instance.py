"""What the `uwsgi` module says about the instance, and asks of it: `opt`, `hostname`,
`version`, `started_on`, `log()`, `reload()`, `stop()`, `is_locked()`.

Values have uWSGI 2.0.31's types (checked by running it): `opt` maps str keys to bytes
values (True for a flag, a list for a repeated option), `hostname` and `version` are
bytes, `started_on` is a unix time in whole seconds.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal as unix
import socket
import time

from switchboard import __version__

_log = logging.getLogger("switchboard.app")

UWSGI_VERSION = (2, 0, 31, 0, b"")    # the uWSGI release whose API this one follows


hostname: bytes = socket.gethostname().encode()
version: bytes = __version__.encode()   # (importlib.metadata costs 7 MB of RSS)
version_info: tuple[int, int, int, int, bytes] = UWSGI_VERSION
started_on: int = int(time.time())


def log(logline: str, /) -> bool:
    """Write a line to the instance's log (as uWSGI's uwsgi.log); True."""
    _log.info("%s", logline)
    return True


def reload() -> bool:
    """Ask the master for a graceful reload (as SIGHUP); True."""
    from switchboard.api import masterpid
    os.kill(masterpid(), unix.SIGHUP)
    return True


def stop() -> bool:
    """Ask the master to stop the instance gracefully (as SIGTERM); True."""
    from switchboard.api import masterpid
    os.kill(masterpid(), unix.SIGTERM)
    return True


held: set[int] = set()     # user locks this process holds (POSIX locks are per process)


def is_locked(lock_num: int = 0, /) -> bool:
    """True if user lock `lock_num` is held, by this process or another."""
    from switchboard.api import _context, _user_lock
    n = _user_lock(lock_num)
    if n in held:
        return True
    fd = _context().shared.fd
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, n)
    except OSError:
        return True
    fcntl.lockf(fd, fcntl.LOCK_UN, 1, n)
    return False


def micros() -> int:
    """The current time in microseconds (as uWSGI's micros())."""
    return time.time_ns() // 1000


def mem() -> tuple[int, int]:
    """This process's (rss, vsz) in bytes."""
    with open("/proc/self/statm") as f:
        vsz_pages, rss_pages = (int(x) for x in f.read().split()[:2])
    page = os.sysconf("SC_PAGE_SIZE")
    return rss_pages * page, vsz_pages * page


def setprocname(name: str, /) -> None:
    """Set this process's title (what ps shows)."""
    import setproctitle
    setproctitle.setproctitle(name)
