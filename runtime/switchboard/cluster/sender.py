"""Raising a signal on other nodes: `uwsgi.signal(num, "NODE")` and `"*"`.

A child that raises while other processes of its instance raise too hands its raise
to the node's outbox (outbox.py: one thread in the sources helper that commits the
raises of every local process together) and waits for its answer.  A lone raiser, or
one that cannot reach the outbox, commits by itself on its own connection (one hop
less), opened lazily after the fork (one inherited across fork would be shared by two
processes).  The master keeps none open (it forks at any time; invariant 7): it
connects per raise.  A raise returns once PostgreSQL committed it.  Each raise has
one key, kept through retries and the fall-back, so a retry after a lost reply adds
nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid

import psycopg

from switchboard.cluster import outbox, settings
from switchboard.cluster.settings import ClusterConfig
from switchboard.cluster.state import ClusterState
from switchboard.cluster.store import Raise, Store

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
    if remote != ALL and not settings.NAME.fullmatch(remote):
        raise ValueError(f"signal {num}: {remote!r} is not a node name (1-60 letters, "
                         "digits, '_', '.' or '-') nor '*'")
    return remote


class Sender:
    def __init__(self, config: ClusterConfig, state: ClusterState, slot: int,
                 timeout: float, keep: bool) -> None:
        self.config, self.state, self.slot = config, state, slot
        self.timeout, self.keep = timeout, keep
        self._store: Store | None = None
        self._outbox: socket.socket | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def send(self, num: int, remote: str) -> int:
        """Store `num` for `remote` (a node, or "*"); how many nodes it will run on."""
        if self._pid != os.getpid():        # forked since: not ours to use or close
            self._store, self._outbox = None, None
            self._pid, self._lock = os.getpid(), threading.Lock()
        with self._lock:
            key = uuid.uuid4()
            shared = self.keep and self.state.others_raising(self.slot, time.monotonic(),
                                                             outbox.ACTIVE)
            count = self._via_outbox(num, remote, key) if shared else None
            if count is None:
                count = self._send(num, remote, key)
            self.state.count(self.slot, "sent", count)
            return count

    def _via_outbox(self, num: int, remote: str, key: uuid.UUID) -> int | None:
        """Commit through the node's outbox (shared commits); None if it cannot be
        reached or went away (then this process commits the same key itself)."""
        try:
            if self._outbox is None:
                self._outbox = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                self._outbox.settimeout(self.timeout + 2.0)
                self._outbox.connect(self.state.outbox)
            self._outbox.send(outbox.REQUEST.pack(num, key.bytes, self.timeout)
                              + remote.encode())
            reply = self._outbox.recv(512)
        except TimeoutError:
            self._close_outbox()
            raise self._failed(num, remote, "the node's outbox did not answer") from None
        except OSError:
            reply = b""
        if len(reply) < outbox.REPLY.size:
            self._close_outbox()
            return None
        count = outbox.REPLY.unpack_from(reply)[0]
        if count == outbox.NO_NODE:
            raise self._no_node(num, remote)
        if count == outbox.FAILED:
            raise self._failed(num, remote, reply[outbox.REPLY.size:].decode(errors="replace"))
        return int(count)

    def _send(self, num: int, remote: str, key: uuid.UUID) -> int:
        deadline, failures = time.monotonic() + self.timeout, 0
        sender = f"{self.config.node}/{os.getpid()}"
        one = [Raise(num, remote, sender, key, self.config.channel(remote))]
        while True:
            try:
                count = self._connect(deadline).send_batch(one, 3 * self.config.heartbeat)[0]
                if not count and remote != ALL:
                    raise self._no_node(num, remote)
                return count
            except psycopg.Error as exc:
                self._drop()
                pause = _PAUSES[min(failures, len(_PAUSES) - 1)]
                failures += 1
                if time.monotonic() + pause >= deadline:
                    raise self._failed(num, remote, " ".join(str(exc).split())) from None
                time.sleep(pause)
            finally:
                if not self.keep:
                    self._drop()

    def _no_node(self, num: int, remote: str) -> OSError:
        return OSError(f"signal {num} to '{remote}': no node named '{remote}' "
                       f"has joined cluster '{self.config.name}'")

    def _failed(self, num: int, remote: str, reason: str) -> OSError:
        self.state.count(self.slot, "send_failures")
        return OSError(f"signal {num} to '{remote}': PostgreSQL did not take it within "
                       f"{self.timeout:g} s (signal-timeout): {reason}")

    def _connect(self, deadline: float) -> Store:
        if self._store is None:
            left = max(1.0, deadline - time.monotonic())
            self._store = Store.connect(self.config.dsn, self.config.schema, self.config.name,
                                        left, statement_timeout=self.timeout)
        return self._store

    def _close_outbox(self) -> None:
        if self._outbox is not None:
            sock, self._outbox = self._outbox, None
            sock.close()

    def _drop(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            with contextlib.suppress(psycopg.Error):
                store.close()
