"""Raising a signal on other nodes: `uwsgi.signal(num, "NODE")` and `"*"`.

Each process that raises opens its own connection, lazily, after the fork (a
connection is a socket: one inherited across fork would be shared by two processes).
The master keeps none open (it forks at any time; invariant 7): it connects per raise.
A raise returns once PostgreSQL committed it.  It retries a lost connection until
`signal-timeout`, with the same key, so a retry after a lost reply adds nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid

import psycopg

from switchboard.cluster.settings import ClusterConfig
from switchboard.cluster.state import ClusterState
from switchboard.cluster.store import Store

log = logging.getLogger("switchboard.cluster")

ALL = "*"
_PAUSES = (0.05, 0.1, 0.2, 0.5, 1.0)


def check_remote(num: int, remote: object) -> str:
    """The node name (or "*") of a remote raise; OSError for uWSGI's host:port form."""
    if not isinstance(remote, str):
        raise TypeError(f"signal {num}: remote must be a node name (str), "
                        f"not {type(remote).__name__}")
    if ":" in remote:
        raise OSError(f"signal {num} to '{remote}': uWSGI's unauthenticated 'host:port' "
                         "remote signals are not supported; join the instances with "
                         "[cluster] and name the node")
    if not remote:
        raise ValueError(f"signal {num}: remote node name is empty")
    return remote


class Sender:
    def __init__(self, config: ClusterConfig, state: ClusterState, slot: int,
                 timeout: float, keep: bool) -> None:
        self.config, self.state, self.slot = config, state, slot
        self.timeout, self.keep = timeout, keep
        self._store: Store | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def send(self, num: int, remote: str) -> int:
        """Store `num` for `remote` (a node, or "*"); how many nodes it will run on."""
        if self._pid != os.getpid():        # forked since: not ours to use or close
            self._store, self._pid, self._lock = None, os.getpid(), threading.Lock()
        with self._lock:
            return self._send(num, remote)

    def _send(self, num: int, remote: str) -> int:
        key, deadline, failures = uuid.uuid4(), time.monotonic() + self.timeout, 0
        sender = f"{self.config.node}/{os.getpid()}"
        while True:
            try:
                store = self._connect(deadline)
                if remote == ALL:
                    count = store.send_all(num, sender, key, 3 * self.config.heartbeat,
                                           self.config.channel(ALL))
                elif store.send(num, remote, sender, key, self.config.channel(remote)):
                    count = 1
                else:
                    raise OSError(f"signal {num} to '{remote}': no node named '{remote}' "
                                  f"has joined cluster '{self.config.name}'")
                self.state.count(self.slot, "sent", count)
                return count
            except psycopg.Error as exc:
                self._drop()
                pause = _PAUSES[min(failures, len(_PAUSES) - 1)]
                failures += 1
                if time.monotonic() + pause >= deadline:
                    self.state.count(self.slot, "send_failures")
                    reason = " ".join(str(exc).split())
                    raise OSError(f"signal {num} to '{remote}': PostgreSQL did not take it "
                                  f"within {self.timeout:g} s (signal-timeout): "
                                  f"{reason}") from None
                time.sleep(pause)
            finally:
                if not self.keep:
                    self._drop()

    def _connect(self, deadline: float) -> Store:
        if self._store is None:
            left = max(1.0, deadline - time.monotonic())
            self._store = Store.connect(self.config.dsn, self.config.schema, self.config.name,
                                        left, statement_timeout=self.timeout)
        return self._store

    def _drop(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            with contextlib.suppress(psycopg.Error):
                store.close()
