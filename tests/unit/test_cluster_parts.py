"""The cluster's pure parts: [cluster] parsing, unique fire times, the shared state."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from switchboard.cluster import release, settings, unique
from switchboard.cluster.state import ClusterState
from switchboard.config import from_dict
from switchboard.errors import ConfigError
from switchboard.sources import cron
from switchboard.targets import Kind, Target

PATH = "/etc/sb.toml"


def test_cluster_defaults():
    cfg = settings.parse(PATH, {"dsn": "postgresql:///app", "name": "prod", "node": "web-1"})
    assert (cfg.heartbeat, cfg.ttl, cfg.schema) == (5.0, 3600.0, "switchboard")
    assert cfg.channel("web-1") != cfg.channel("web-2") != cfg.channel("*")
    assert len(cfg.channel("x" * 60)) < 63           # a PostgreSQL identifier


def test_the_node_defaults_to_the_host_name():
    cfg = settings.parse(PATH, {"dsn": "postgresql:///app", "name": "prod"})
    assert cfg.node == os.uname().nodename.split(".")[0]


@pytest.mark.parametrize("raw,key", [
    ({"name": "p"}, "dsn"),
    ({"dsn": "postgresql:///a"}, "name"),
    ({"dsn": "postgresql:///a", "name": "p", "node": "*"}, "node"),
    ({"dsn": "postgresql:///a", "name": "p", "node": "h:1"}, "node"),
    ({"dsn": "postgresql:///a", "name": "p", "ttl": "1h"}, "ttl"),
    ({"dsn": "postgresql:///a", "name": "p", "leader": True}, "leader"),
])
def test_bad_cluster_tables_name_the_key(raw, key):
    with pytest.raises(ConfigError) as err:
        from_dict({"cluster": raw}, PATH)
    assert (err.value.entry, err.value.key) == ("[cluster]", key)


def test_unique_with_iterations_is_refused():
    doc = {"cluster": {"dsn": "postgresql:///a", "name": "p"},
           "timer": [{"signal": 1, "seconds": 1, "iterations": 3, "unique": True}]}
    with pytest.raises(ConfigError) as err:
        from_dict(doc, PATH)
    assert err.value.key == "iterations" and "runs forever" in err.value.message


def test_a_unique_timer_fires_on_the_epoch_grid():
    source = unique.UniqueSource(1, 9, period=2.0)
    source.start(1000.5)
    assert source.next_at == 1002.0
    assert source.due(1001.9) is None
    assert source.due(1002.01) == 1002.0
    assert source.next_at == 1004.0


def test_a_late_node_claims_only_the_latest_fire():
    source = unique.UniqueSource(1, 9, period=1.0)
    source.start(100.2)
    assert source.due(104.5) == 104.0            # 101..103 were the other nodes' to claim
    assert source.coalesced == 3 and source.next_at == 105.0


def test_every_node_computes_the_same_key_and_fires():
    a, b = unique.UniqueSource(1, 9, period=0.5), unique.UniqueSource(7, 9, period=0.5)
    a.start(10.01)
    b.start(10.37)
    assert a.key == b.key and a.next_at == b.next_at == 10.5


def test_a_unique_cron_fires_at_matching_local_minutes():
    spec = cron.from_expr("*/15 * * * *")
    source = unique.UniqueSource(1, 5, cron=spec)
    now = dt.datetime(2026, 5, 1, 10, 7, 30).timestamp()
    source.start(now)
    assert source.next_at == dt.datetime(2026, 5, 1, 10, 15).timestamp()
    assert source.key == "cron 5 */15 * * * *"


def test_state_sums_counters_and_publishes_members():
    state = ClusterState(3, "prod", "web-1")
    state.count(1, "sent", 2)
    state.count(2, "sent")
    state.count(0, "received", 5)
    state.set_members([("web-1", 1.5), ("web-2", 2.7)], connected=True)
    doc = state.describe()
    assert (doc["sent"], doc["received"], doc["expired"]) == (3, 5, 0)
    assert doc["members"] == [{"node": "web-1", "last_heartbeat": 1},      # integers, as
                              {"node": "web-2", "last_heartbeat": 2}]      # every number
    assert state.nodes() == ["web-1", "web-2"]


def _owed(fired: int, dropped: int, raised: int, kind: Kind = Kind.WORKER) -> dict:
    spec = {"kind": "timer", "num": 70, "seconds": 1.0}
    counts = [0] * 256
    return release.unrun({1: spec}, [*counts[:70], fired, *counts[71:]],
                         [*counts[:70], dropped, *counts[71:]],
                         [*counts[:70], raised, *counts[71:]], lambda num: Target(kind))


def test_a_stop_releases_only_fires_that_did_not_run_for_certain():
    assert _owed(fired=5, dropped=2, raised=5) == {70: (["timer 70 1"], 2)}
    # two other raises of 70: two of the three drops may have been those
    assert _owed(fired=5, dropped=3, raised=7) == {70: (["timer 70 1"], 1)}
    assert _owed(fired=5, dropped=2, raised=7) == {}
    assert _owed(fired=5, dropped=2, raised=5, kind=Kind.WORKERS) == {}   # some ran it


def test_lost_fires_are_tried_again_for_a_while():
    lost = unique.LostFires()
    source = unique.UniqueSource(1, 70, period=1.0)
    lost.add(source, 100.0)
    lost.add(source, 101.0)
    assert lost.recent(102.0) == [("timer 70 1", 100.0), ("timer 70 1", 101.0)]
    assert lost.won(("timer 70 1", 100.0)) == 70
    assert lost.recent(101.0 + unique.RETRY + 1) == []
