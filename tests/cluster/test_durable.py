"""Durability: a node that is down, a PostgreSQL restart, ttl; nothing lost, nothing twice."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from tests.cluster.conftest import MARK
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)


def restart(inst):
    """Start an instance again after it was killed (same folder and config)."""
    inst.proc = None
    return inst.start()


def test_a_signal_for_a_killed_node_runs_once_when_it_is_back(make_node):
    a = make_node("a")
    b = make_node("b", [{"num": 55, "handler": MARK}])
    b.kill_group()                                   # kill -9 of the whole node
    for _ in range(3):
        res = a.cli("signal", "55", "--node", "b", "--config", str(a.config_path))
        assert res.returncode == 0, res.stderr      # committed while b is down
    assert b.results() == []
    restart(b)
    b.wait_results(3)
    time.sleep(1.0)                                  # two heartbeats: nothing more comes
    assert len(b.results()) == 3
    assert b.stats()["cluster"]["received"] == 3


def test_a_postgresql_restart_loses_nothing_and_runs_nothing_twice(make_node, tmp_path):
    ctl = os.environ.get("SWITCHBOARD_TEST_PG_CTL")
    if not ctl:
        pytest.skip("the server is not ours to restart ($SWITCHBOARD_TEST_PG_DSN is set)")
    count = 300
    sender = f'''
import uwsgi, sbtest
def stream(num):
    for i in range({count}):
        uwsgi.signal(56, "b")
        sbtest.record("sent", i)
'''
    a = make_node("a", [{"num": 14, "handler": "python:stream:stream"}],
                  modules={"stream": sender})
    b = make_node("b", [{"num": 56, "handler": MARK}], settings={"workers": 2})
    a.raise_signal(14)
    b.wait_results(20)                               # mid-stream: restart the server
    subprocess.run([*ctl.split(), "-m", "fast", "restart"], check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a.wait_results(count, timeout=60)                # every raise returned: committed
    b.wait_results(count, timeout=60)
    time.sleep(1.5)                                  # three heartbeats: nothing twice
    assert len(b.results()) == count
    assert b.stats()["cluster"]["received"] == count
    wait_for(lambda: "PostgreSQL answers again" in b.log, message=lambda: b.log)
    assert b.log.count("PostgreSQL connection lost or refused") == 1   # once per outage


def test_a_signal_older_than_ttl_is_dropped_as_expired(make_node):
    a = make_node("a", cluster={"ttl": 1})
    b = make_node("b", [{"num": 57, "handler": MARK}], cluster={"ttl": 1})
    b.kill_group()
    res = a.cli("signal", "57", "--node", "b", "--config", str(a.config_path))
    assert res.returncode == 0, res.stderr
    time.sleep(1.5)
    restart(b)

    def expired():
        return a.stats()["cluster"]["expired"] + b.stats()["cluster"]["expired"] == 1
    wait_for(expired, message=lambda: (a.log, b.log))
    assert "expired (waited longer than ttl = 1 s)" in a.log + b.log
    assert b.results() == []
