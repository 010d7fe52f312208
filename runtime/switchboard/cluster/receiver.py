"""The node's side of the cluster, in the sources helper: join, heartbeat, receive.

One thread with one connection.  It claims the signals waiting for this node (marks
them taken by this run's token), hands them to the helper's main thread, which raises
each to the local master, and deletes them once raised (`ack`).  So:
- a signal is deleted only after the local master holds it: never lost by a
  PostgreSQL restart (after reconnecting, the thread takes back what its token took);
- the window between "taken" and "raised" falls on the at-most-once side: a run that
  dies inside it leaves rows taken by its token, and the next run drops them as
  `uncertain` (counted, logged) instead of running them a second time;
- a graceful stop puts back what was taken and not raised.
Unique fires: the thread claims each one (an INSERT only one node wins).  A fire
another node won is remembered for a while: if that node stops before running it, it
releases the claim and says so (`RELEASED` on the cluster's channel), and the others
claim it again (`_retry_lost`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import psycopg
from psycopg import sql

from switchboard.cluster.outbox import Outbox
from switchboard.cluster.settings import ClusterConfig
from switchboard.cluster.state import ClusterState
from switchboard.cluster.store import RELEASED, Store
from switchboard.cluster.unique import LostFires, UniqueSource

log = logging.getLogger("switchboard.cluster")

BATCH = 1000           # signals claimed at once, and most held in the hand-over queue
_PAUSES = (0.2, 0.5, 1, 2, 5)
_POLL = 1.0            # seconds: look for waiting signals even without a notification
COALESCE = 0.002       # seconds between claims while signals stream in:
STREAM = 4             # when a claim took this many or more


class Receiver:
    def __init__(self, config: ClusterConfig, state: ClusterState, slot: int,
                 sources: list[UniqueSource], wake: Callable[[], None]) -> None:
        self.config, self.state, self.slot, self.wake = config, state, slot, wake
        self.token = uuid.uuid4()
        self.inbox: collections.deque[tuple[int, int]] = collections.deque()  # (id, num)
        self.done: collections.deque[int] = collections.deque()              # ids raised
        self.sources = {s.ident: s for s in sources}
        self.lost = LostFires()
        self._retry = False          # another node released fires: claim them again
        self._changes: collections.deque[tuple[str, object]] = collections.deque()
        self._stop = threading.Event()
        self._store: Store | None = None
        self._first = True
        self._beat_at = 0.0
        self._held: bool | None = False   # the node's lock: None once told it is not
        self.outbox = Outbox(config, state, slot)

    # -- the main thread's side ----------------------------------------------------------

    def start(self) -> None:
        self.outbox.start()
        self.thread = threading.Thread(target=self._run, daemon=True, name="cluster")
        self.thread.start()

    def add(self, source: UniqueSource) -> None:
        self._changes.append(("add", source))

    def remove(self, ident: int) -> None:
        self._changes.append(("remove", ident))

    def stop(self) -> None:
        """Put back what was taken and not raised, then end the thread."""
        self._stop.set()
        self.outbox.stop()
        self.thread.join(5.0)

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        failures, down_since = 0, 0.0
        while not self._stop.is_set():
            try:
                self._connect()
                if failures:
                    log.info("cluster %s: PostgreSQL answers again (after %.1f s)",
                             self.config.name, time.monotonic() - down_since)
                failures = 0
                while not self._stop.is_set():
                    self._step()
                self._leave_cleanly()
            except Exception as exc:     # psycopg's errors, and any bug: never end quietly
                if not isinstance(exc, psycopg.Error):
                    log.exception("cluster %s: the receiver failed; starting it again",
                                  self.config.name)
                self._drop()
                if not failures:
                    down_since = time.monotonic()
                    log.warning("cluster %s: PostgreSQL connection lost or refused (%s); "
                                "retrying with backoff, signals wait in PostgreSQL",
                                self.config.name, " ".join(str(exc).split()))
                    self.state.set_members([], connected=False)
                self._stop.wait(_PAUSES[min(failures, len(_PAUSES) - 1)])
                failures += 1

    def _connect(self) -> None:
        cfg = self.config
        store = self._store = Store.connect(cfg.dsn, cfg.schema, cfg.name, 10.0)
        for node in (cfg.node, "*"):
            store.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(cfg.channel(node))))
        self._held = False
        self._hold(store)
        store.join(cfg.node, socket.gethostname(), os.getpid())
        self._beat_at = 0.0
        self._retry = True           # a release may have been told while disconnected
        if self._first:
            self._first = False
            lost = store.forget_uncertain(cfg.node, self.token)
            if lost:
                self.state.count(self.slot, "uncertain", len(lost))
                log.warning("cluster %s: %d signals (%s) were taken by this node's previous "
                            "run, which ended before it could say whether they ran; "
                            "dropped as uncertain (a signal runs at most once)",
                            cfg.name, len(lost), ", ".join(map(str, lost[:20])))
        else:
            self._take_back(store)
        log.info("cluster %s: node %s joined", cfg.name, cfg.node)

    def _hold(self, store: Store) -> None:
        """Hold the lock that tells a second instance with this node name to stop at its
        start (node.join).  A previous run's session may hold it a moment longer (its
        process just died): then try again at each heartbeat."""
        if store.hold_node(self.config.node):
            if self._held is None:
                log.info("cluster %s: node name %s held again", self.config.name,
                         self.config.node)
            self._held = True
        elif self._held is False:
            self._held = None
            log.warning("cluster %s: another session holds node name %s (%s); trying again "
                        "at each heartbeat", self.config.name, self.config.node,
                        store.where(self.config.node))

    def _take_back(self, store: Store) -> None:
        """After a lost connection: what this run took is raised again unless the main
        thread has it (in the inbox, or raised and waiting in `done` for its ack)."""
        self._ack(store)
        taken = store.taken(self.token)
        have = {ident for ident, _ in list(self.inbox)} | set(list(self.done))
        self.inbox.extend((ident, num) for ident, num, _ in taken if ident not in have)
        self.wake()

    def _step(self) -> None:
        store = self._store
        assert store is not None
        self._apply_changes()
        full = busy = False
        room = BATCH - len(self.inbox)
        if room > 0:
            acked = self._drain_done()
            try:
                rows = store.claim(self.config.node, self.token, room, self.config.ttl,
                                   acked)
            except psycopg.Error:
                self.done.extendleft(reversed(acked))   # acked after reconnecting
                raise
            self._hand_over(store, rows)
            full, busy = len(rows) == room, len(rows) >= STREAM
        else:
            self._ack(store)
        now = time.time()
        self._fire_unique(store, now)
        if self._retry:
            self._retry_lost(store, now)
        if time.monotonic() >= self._beat_at:
            self._beat(store)
        if busy and not full:          # a stream: let the next claim take a bigger batch
            self._stop.wait(COALESCE)
        self._wait(store, 0.001 if full or len(self.inbox) >= BATCH else self._timeout(now))

    def _hand_over(self, store: Store, rows: list[tuple[int, int, bool]]) -> None:
        expired = [(ident, num) for ident, num, old in rows if old]
        if expired:
            store.ack([ident for ident, _ in expired])
            self._expired([num for _, num in expired], "this node")
        fresh = [(ident, num) for ident, num, old in rows if not old]
        if fresh:
            self.inbox.extend(fresh)
            self.wake()

    def _expired(self, nums: list[int], whose: str) -> None:
        self.state.count(self.slot, "expired", len(nums))
        log.warning("cluster %s: dropped %d signals (%s) for %s: expired (waited longer "
                    "than ttl = %g s)", self.config.name, len(nums),
                    ", ".join(map(str, nums[:20])), whose, self.config.ttl)

    def _drain_done(self) -> list[int]:
        ids = []
        while self.done:
            ids.append(self.done.popleft())
        return ids

    def _ack(self, store: Store) -> None:
        ids = self._drain_done()
        if ids:
            try:
                store.ack(ids)
            except psycopg.Error:
                self.done.extendleft(reversed(ids))    # acked after reconnecting
                raise

    def _fire_unique(self, store: Store, now: float) -> None:
        for source in list(self.sources.values()):
            fire = source.due(now)
            if fire is None:
                continue
            if store.claim_fire(source.key, fire, self.config.node):
                source.claimed += 1
                self.state.count(self.slot, "fires_claimed")
                self.inbox.append((0, source.num))
                self.wake()
            else:
                self.state.count(self.slot, "fires_elsewhere")
                self.lost.add(source, fire)

    def _retry_lost(self, store: Store, now: float) -> None:
        """Claim again the recent fires other nodes won: those a node released (it
        stopped before running them) are ours now."""
        fires = self.lost.recent(now)
        won = store.claim_fires(fires, self.config.node) if fires else []
        self._retry = False
        for source, fire in won:
            num = self.lost.won((source, fire))
            self.state.count(self.slot, "fires_claimed")
            self.inbox.append((0, num))
            log.info("cluster %s: the fire of %s at %s was released by the node that won "
                     "it (stopped before running it); raised here", self.config.name,
                     source, time.strftime("%H:%M:%S", time.localtime(fire)))
        if won:
            self.wake()

    def _beat(self, store: Store) -> None:
        cfg = self.config
        self._beat_at = time.monotonic() + cfg.heartbeat
        if not self._held:
            self._hold(store)
        store.heartbeat(cfg.node)
        self.state.set_members(store.members(3 * cfg.heartbeat), connected=True)
        for node, num in store.expire_absent(cfg.ttl):
            self._expired([num], f"node {node}")
        store.prune_fires(max(cfg.ttl, 3600.0))

    def _timeout(self, now: float) -> float:
        wakes = [_POLL, self._beat_at - time.monotonic()]
        wakes += [s.next_at - now for s in self.sources.values()]
        if self.done:
            wakes.append(0.01)                 # ack soon: it narrows the uncertain window
        return max(0.0, min(wakes))

    def _wait(self, store: Store, timeout: float) -> None:
        """Until a notification says something waits for this node, or `timeout`."""
        for note in store.conn.notifies(timeout=timeout, stop_after=1):
            if note.payload == RELEASED:
                self._retry = True

    def _apply_changes(self) -> None:
        while self._changes:
            what, item = self._changes.popleft()
            if what == "add" and isinstance(item, UniqueSource):
                item.start(time.time())
                self.sources[item.ident] = item
            elif isinstance(item, int):
                self.sources.pop(item, None)

    def _leave_cleanly(self) -> None:
        store = self._store
        if store is None:
            return
        try:
            self._ack(store)
            back = store.release(self.token)
            if back:
                log.info("cluster %s: %d signals put back for this node's next run",
                         self.config.name, back)
        except psycopg.Error as exc:
            log.warning("cluster %s: could not put back taken signals (%s); the next run "
                        "drops them as uncertain", self.config.name, exc)
        self._drop()

    def _drop(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            with contextlib.suppress(psycopg.Error):
                store.close()
