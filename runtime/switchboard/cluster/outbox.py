"""The node's outbox: one thread in the sources helper that commits remote raises for
every process of this instance, many per transaction (a group commit).

A raiser (worker, mule, spooler) sends its raise over a local socket and waits; the
thread takes every raise waiting at that moment, stores them with one INSERT and one
NOTIFY per node in one transaction, and answers each raiser after the commit.  So
`signal()` still returns only once PostgreSQL committed the signal, and a raiser's
signals keep their order (it waits for each before raising the next), but concurrent
raisers share one commit: PostgreSQL's NOTIFY lock, held across the commit's flush,
serializes committing transactions, and the statement's own cost is paid per batch.

The socket is abstract (Linux) and answers only this instance's processes: the
master and its children (SO_PEERCRED at accept).  A raiser that cannot reach it (the
helper is starting or restarting) commits by itself, as before (sender.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import struct
import threading
import time
import uuid

import psycopg

from switchboard.cluster.settings import NAME, ClusterConfig
from switchboard.cluster.state import ClusterState
from switchboard.cluster.store import Raise, Store

log = logging.getLogger("switchboard.cluster")

REQUEST = struct.Struct("!H16sd")      # num, key, seconds the raiser waits at most
REPLY = struct.Struct("!i")            # nodes it will run on; NO_NODE or FAILED
NO_NODE, FAILED = -1, -2
BATCH = 500                            # raises in one transaction at most
FILL = 0.0005                          # seconds a batch waits at most for busy raisers
ACTIVE = 0.005                         # a raiser is busy if it raised this recently
_PAUSES = (0.05, 0.1, 0.2, 0.5, 1.0)
_PEERCRED = struct.Struct("3i")        # pid, uid, gid


class Waiting:
    """A raise read from a raiser's socket, not answered yet."""

    def __init__(self, conn: socket.socket, pid: int, data: bytes) -> None:
        num, key, timeout = REQUEST.unpack_from(data)
        self.conn, self.num, self.key = conn, num, uuid.UUID(bytes=key)
        self.node = data[REQUEST.size:].decode(errors="replace")
        self.sender, self.timeout = pid, timeout
        self.deadline = time.monotonic() + timeout


class Outbox:
    def __init__(self, config: ClusterConfig, state: ClusterState, slot: int) -> None:
        self.config, self.state, self.slot = config, state, slot
        self.address = state.outbox
        self._stop = threading.Event()
        self._store: Store | None = None
        self._waiting: list[Waiting] = []
        self._last: dict[socket.socket, float] = {}     # each raiser's last raise

    def start(self) -> None:
        """Listen (here, in the helper, after the fork) and start the thread."""
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(self.address)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.thread = threading.Thread(target=self._run, daemon=True, name="cluster-outbox")
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5.0)

    def _run(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                self._collect(0.0 if self._waiting else 0.5)
                if not self._waiting:
                    continue
                self._fill()
                if self._commit():
                    failures = 0
                else:
                    self._stop.wait(_PAUSES[min(failures, len(_PAUSES) - 1)])
                    failures += 1
        except Exception:                  # a bug: raisers fall back to their own commits
            log.exception("cluster %s: the outbox failed; processes commit their remote "
                          "signals themselves", self.config.name)
        finally:
            self._close()

    def _fill(self) -> None:
        """Wait a moment (FILL at most) for the raisers that raised just now and are
        about to raise again, so that they share this commit; a lone raiser never waits."""
        until = time.monotonic() + FILL
        while True:
            now = time.monotonic()
            busy = sum(1 for at in self._last.values() if at > now - ACTIVE)
            if len(self._waiting) >= min(busy, BATCH) or now >= until:
                return
            self._collect(until - now)

    def _collect(self, timeout: float) -> None:
        """Accept raisers, and read every raise waiting now."""
        for key, _ in self.selector.select(timeout):
            if key.data is None:
                self._accept()
            else:
                self._read(key.fileobj, key.data)   # type: ignore[arg-type]

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError):
            conn, _ = self.listener.accept()
            pid, uid, _gid = _PEERCRED.unpack(
                conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
            if uid != os.geteuid() or not _ours(pid):
                log.warning("cluster %s: refused a raiser (pid %d, uid %d) that is not one "
                            "of this instance's processes", self.config.name, pid, uid)
                conn.close()
                return
            conn.setblocking(False)
            self.selector.register(conn, selectors.EVENT_READ, pid)

    def _read(self, conn: socket.socket, pid: int) -> None:
        while True:
            try:
                data = conn.recv(512)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if len(data) < REQUEST.size:      # gone (or not speaking our protocol)
                self.selector.unregister(conn)
                self._last.pop(conn, None)
                conn.close()
                return
            waiting = Waiting(conn, pid, data)
            if waiting.node != "*" and not NAME.fullmatch(waiting.node):
                _answer(conn, REPLY.pack(NO_NODE))  # never in an array literal (store.py)
                continue
            self._waiting.append(waiting)
            self._last[conn] = time.monotonic()

    def _commit(self) -> bool:
        """Store the waiting raises (up to BATCH) and answer them; False if PostgreSQL
        did not take them (they stay, until their raisers' time is up)."""
        batch = self._waiting[:BATCH]
        cfg = self.config
        try:
            if self._store is None:      # every raiser here has the same signal-timeout
                left = max(1.0, batch[0].deadline - time.monotonic())
                self._store = Store.connect(cfg.dsn, cfg.schema, cfg.name, left,
                                            statement_timeout=batch[0].timeout)
            counts = self._store.send_batch(
                [Raise(w.num, w.node, f"{cfg.node}/{w.sender}", w.key, cfg.channel(w.node))
                 for w in batch], 3 * cfg.heartbeat)
        except psycopg.Error as exc:
            self._drop()
            self._expire(" ".join(str(exc).split()))
            return False
        del self._waiting[:len(batch)]
        self.state.count(self.slot, "commits")
        for waiting, count in zip(batch, counts, strict=True):
            _answer(waiting.conn, REPLY.pack(count if count or waiting.node == "*"
                                             else NO_NODE))
        return True

    def _expire(self, reason: str) -> None:
        """Answer FAILED to the raisers whose time is up (they raise OSError)."""
        now = time.monotonic()
        for waiting in [w for w in self._waiting if w.deadline <= now]:
            self._waiting.remove(waiting)
            _answer(waiting.conn, REPLY.pack(FAILED) + reason.encode()[:400])

    def _drop(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            with contextlib.suppress(psycopg.Error):
                store.close()

    def _close(self) -> None:
        self._drop()
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()                 # type: ignore[union-attr]
        self.selector.close()


def _answer(conn: socket.socket, reply: bytes) -> None:
    with contextlib.suppress(OSError):         # the raiser is gone: nobody to tell
        conn.send(reply)


def _ours(pid: int) -> bool:
    """Whether `pid` is this instance's master or one of its children."""
    master = os.getppid()
    if pid == master:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return int(stat.rsplit(b")", 1)[1].split()[1]) == master
