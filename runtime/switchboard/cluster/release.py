"""What a graceful stop owes the cluster: the unique fires this node won and did not run.

A fire the sources helper raised just before the stop, or that waited behind a busy
handler, is dropped as `stopped` like any queued signal (SPEC section 14), and its claim
would keep every other node from running it.  So once its children are gone the master
deletes that many of the node's latest claims and wakes the other nodes, which claim
them again (cluster/receiver.py): the fire runs once, on a node that is up.

It releases only what it can prove did not run, never more (a fire runs at most once):
- dropped fires are the latest raised (queues are first in, first out), so the latest
  claims are the ones to release;
- if other code also raised the number, a drop may have been one of those raises:
  `dropped - (raised - fired)` drops are fires for certain;
- a number whose target runs it on several processes (`workers`, `active-workers`,
  `mules`) is not released: a fire that some of them ran did run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from switchboard.cluster.settings import ClusterConfig
from switchboard.cluster.store import Store
from switchboard.cluster.unique import RETRY, from_spec
from switchboard.targets import Kind, Target

log = logging.getLogger("switchboard.cluster")

BROADCAST = {Kind.WORKERS, Kind.ACTIVE_WORKERS, Kind.MULES}


def unrun(unique: dict[int, dict[str, Any]], fired: Sequence[int], dropped: Sequence[int],
          raised: Sequence[int], target: Callable[[int], Target | None]
          ) -> dict[int, tuple[list[str], int]]:
    """Per signal number of a unique source: the sources' keys, and how many of their
    fires were dropped without running for certain."""
    keys: dict[int, list[str]] = {}
    for ident, spec in unique.items():
        keys.setdefault(spec["num"], []).append(from_spec(ident, spec).key)
    owed = {}
    for num, sources in keys.items():
        where = target(num)
        if where is not None and where.kind in BROADCAST:
            continue
        count = min(fired[num], dropped[num] - (raised[num] - fired[num]))
        if count > 0:
            owed[num] = (sources, count)
    return owed


def release(config: ClusterConfig, owed: dict[int, tuple[list[str], int]]) -> None:
    """Delete the claims of the fires this node did not run; the others claim them."""
    if not owed:
        return
    try:
        store = Store.connect(config.dsn, config.schema, config.name, 5.0,
                              statement_timeout=5.0)
        try:
            for num, (sources, count) in owed.items():
                times = store.release_fires(config.node, sources, count, RETRY,
                                            config.channel("*"))
                _told(config, num, count, times)
        finally:
            store.close()
    except psycopg.Error as exc:
        total = sum(count for _, count in owed.values())
        log.warning("cluster %s: %d unique fires won by this node did not run and could not "
                    "be released (%s): they are lost", config.name, total,
                    " ".join(str(exc).split()))


def _told(config: ClusterConfig, num: int, count: int, times: list[float]) -> None:
    when = ", ".join(time.strftime("%H:%M:%S", time.localtime(t)) for t in times[:20])
    if times:
        log.warning("cluster %s: %d fires of signal %d (at %s) won by this node did not run "
                    "before it stopped; released for the other nodes", config.name,
                    len(times), num, when)
    if len(times) < count:
        log.warning("cluster %s: %d fires of signal %d won by this node did not run and are "
                    "lost (claimed more than %g s ago)", config.name, count - len(times),
                    num, RETRY)
