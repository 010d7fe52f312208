"""PostgreSQL notifications: LISTEN on a channel, raise a signal for each NOTIFY.

One thread per entry, in the sources process.  A lost connection is retried with a
growing pause (1 s up to 30 s), without touching the rest of the instance, and logged
once per outage: a WARNING when it starts, DEBUG for each retry, INFO when it ends.
Notifications sent while the connection is down are lost: PostgreSQL keeps none for an
absent listener (the log says when the listener was down).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("switchboard.pgnotify")

_PAUSES = (1, 2, 5, 10, 30)


def check_dsn(dsn: object) -> str:
    """A connection string psycopg can parse; ValueError naming the problem."""
    if not isinstance(dsn, str):
        raise TypeError(f"dsn must be a string, not {type(dsn).__name__}")
    import psycopg  # here, not at the top: only deployments that listen pay for it
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"bad dsn '{dsn}': {' '.join(str(exc).split())}") from None
    return dsn


@dataclass
class Listener:
    num: int
    dsn: str
    channel: str
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self, notify: Callable[[int], None]) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(notify,), daemon=True,
                                  name=f"pgnotify {self.channel}")
        thread.start()
        return thread

    def _run(self, notify: Callable[[int], None]) -> None:
        import psycopg
        from psycopg import sql
        failures, down_since = 0, 0.0
        while not self.stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    if failures:
                        log.info("pgnotify %s: listening again (signal %d), after %.0f s "
                                 "and %d attempts", self.channel, self.num,
                                 time.monotonic() - down_since, failures)
                    else:
                        log.info("pgnotify %s: listening (signal %d)", self.channel, self.num)
                    failures = 0
                    while not self.stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            notify(self.num)
            except psycopg.Error as exc:
                pause = _PAUSES[min(failures, len(_PAUSES) - 1)]
                reason = " ".join(str(exc).split())          # one line, however psycopg says it
                if not failures:
                    down_since = time.monotonic()
                    log.warning("pgnotify %s: %s; retrying every %d-%d s until it answers "
                                "(notifications sent meanwhile are lost; retries are "
                                "logged at DEBUG)", self.channel, reason, _PAUSES[0],
                                _PAUSES[-1])
                else:
                    log.debug("pgnotify %s: %s; retrying in %d s", self.channel, reason, pause)
                failures += 1
                self.stop.wait(pause)
