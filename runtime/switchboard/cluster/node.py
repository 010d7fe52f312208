"""The master's part: join at boot (before any fork), leave after the last child.

The master opens a connection only in these two moments, when no child is about to
be forked and no thread runs, and closes it at once (DESIGN invariant 7).
"""

from __future__ import annotations

import logging
import os
import socket

import psycopg

from switchboard.cluster.sender import Sender
from switchboard.cluster.settings import ClusterConfig
from switchboard.cluster.state import ClusterState
from switchboard.cluster.store import SchemaError, Store
from switchboard.errors import SwitchboardError

log = logging.getLogger("switchboard.cluster")


class ClusterError(SwitchboardError):
    """The cluster's PostgreSQL cannot be used at start."""


def join(config: ClusterConfig, state: ClusterState, timeout: float) -> None:
    """Create the schema if missing and join; ClusterError (exit 2) if it cannot."""
    try:
        store = Store.connect(config.dsn, config.schema, config.name, timeout)
    except psycopg.Error as exc:
        raise ClusterError(f"[cluster] {config.name}: cannot connect to PostgreSQL "
                           f"({_dsn_text(config.dsn)}): {' '.join(str(exc).split())}"
                           ) from None
    try:
        store.migrate()
        if not store.hold_node(config.node):
            raise ClusterError(f"[cluster] {config.name}: node '{config.node}' is already "
                               f"running ({store.where(config.node)}); give this instance "
                               "another 'node' name")
        store.join(config.node, socket.gethostname(), os.getpid())
        members = store.members(3 * config.heartbeat)
    except (psycopg.Error, SchemaError) as exc:
        raise ClusterError(f"[cluster] {config.name}: cannot join in schema "
                           f"'{config.schema}': {' '.join(str(exc).split())}") from None
    finally:
        store.close()
    state.set_members(members, connected=True)
    log.info("cluster %s: node %s joined (%d members: %s)", config.name, config.node,
             len(members), ", ".join(m[0] for m in members))


def sender(config: ClusterConfig, state: ClusterState, slot: int, timeout: float,
           master: bool) -> Sender:
    """The remote-raise side for one process (the master keeps no connection open)."""
    return Sender(config, state, slot, timeout, keep=not master)


def leave(config: ClusterConfig) -> None:
    """Say this node left (a graceful stop); signals for it keep waiting until `ttl`."""
    try:
        store = Store.connect(config.dsn, config.schema, config.name, 5.0,
                              statement_timeout=5.0)
        try:
            store.leave(config.node)
        finally:
            store.close()
        log.info("cluster %s: node %s left", config.name, config.node)
    except psycopg.Error as exc:
        log.warning("cluster %s: could not say that node %s left (%s); it stops being a "
                    "member after 3 heartbeats", config.name, config.node,
                    " ".join(str(exc).split()))


def on_reload(running: ClusterConfig | None, loaded: ClusterConfig | None
              ) -> ClusterConfig | None:
    """The `[cluster]` a reload keeps: the running one (its shared state, outbox and
    membership were made at start); a changed one is logged and waits for a restart."""
    if loaded != running:
        now = "none" if running is None else f"cluster {running.name}, node {running.node}"
        log.warning("reload: [cluster] changed in the config; it takes effect when the "
                    "instance is restarted (running: %s)", now)
    return running


def _dsn_text(dsn: str) -> str:
    """The dsn without its password, for error messages."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "a dsn psycopg cannot parse"
    parts.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in parts.items())


def raise_from_shell(config: ClusterConfig, num: int, remote: str, timeout: float) -> int:
    """`switchboard signal N --node NODE | --all`: straight to PostgreSQL; how many nodes."""
    state = ClusterState(1, config.name, config.node)
    return Sender(config, state, 0, timeout, keep=False).send(num, remote)
