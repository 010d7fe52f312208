"""Unique timers: three nodes, nodes killed and restarted, every fire runs exactly once."""

from __future__ import annotations

import math
import os
import signal
import time

import psycopg
import pytest
from tests.cluster.conftest import MARK
from tests.cluster.test_durable import restart
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)

STAMP = '''
import time, sbtest
def stamp(num):
    sbtest.record(num, repr(time.time()))
'''
UNIQUE = "\n[[timer]]\nsignal = 70\nseconds = 1\nunique = true\n"


def test_a_unique_timer_fires_once_per_period_across_three_nodes(make_node, postgres,
                                                                 cluster_name):
    signals = [{"num": 70, "handler": "python:stamp:stamp"}]
    nodes = [make_node(n, signals, extra=UNIQUE, modules={"stamp": STAMP})
             for n in ("a", "b", "c")]
    start = time.time()
    time.sleep(2.5)
    nodes[0].kill_group()                 # kill -9: the others go on claiming
    time.sleep(2.5)
    restart(nodes[0])
    nodes[1].kill_group()
    time.sleep(2.5)
    restart(nodes[1])
    time.sleep(2.0)
    for inst in nodes:
        inst.stop()
    stamps = sorted(float(r[1]) for inst in nodes for r in inst.results())
    seconds = [math.floor(t) for t in stamps]
    assert len(seconds) == len(set(seconds)), f"a fire ran twice: {stamps}"
    gaps = [b - a for a, b in zip(seconds, seconds[1:], strict=False)]
    assert max(gaps) <= 2, f"fires skipped after a kill: {seconds}"
    assert seconds[0] <= math.floor(start) + 2 and len(seconds) >= 8
    with psycopg.connect(postgres) as conn:
        claimed = conn.execute("SELECT count(*) FROM switchboard.fires WHERE cluster = %s",
                               (cluster_name,)).fetchone()
    # Each run was a claim; a claim is lost only if its node died between claiming and
    # raising (at most once: two kills, at most two such fires)
    assert claimed is not None and len(seconds) <= claimed[0] <= len(seconds) + 2


def test_unique_needs_no_iterations_and_shows_in_check(make_node):
    inst = make_node("a", [{"num": 71, "handler": MARK}], start=False,
                     extra="\n[[cron]]\nsignal = 71\nexpr = \"*/5 * * * *\"\nunique = true\n")
    res = inst.cli("check", str(inst.config_path))
    assert res.returncode == 0, res.stderr
    assert "71  unique cron */5 * * * *" in res.stdout


DECORATED = '''
import time, sbtest
from uwsgidecorators import timer

@timer(0.5, signum=72, unique=True)
def half(num):
    sbtest.record(num, repr(time.time()))
'''


def test_the_timer_decorator_takes_unique(make_node):
    nodes = [make_node(n, settings={"workers": 1, "import": ["half"]},
                       modules={"half": DECORATED}) for n in ("a", "b")]
    time.sleep(3.2)
    for inst in nodes:
        inst.stop()
    ticks = sorted(math.floor(float(r[1]) * 2) for inst in nodes for r in inst.results())
    assert len(ticks) >= 4 and len(ticks) == len(set(ticks)), ticks



BLOCK = '''
import time, sbtest
def block(num):
    sbtest.record(num, repr(time.time()))
    sbtest.wait_file("go")          # the worker is busy until the test says go
'''


def _claims(postgres: str, cluster: str) -> list[tuple[float, str]]:
    with psycopg.connect(postgres) as conn:
        rows = conn.execute("SELECT fire_at, node FROM switchboard.fires WHERE cluster = %s "
                            "ORDER BY fire_at", (cluster,)).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_a_fire_claimed_by_a_stopping_node_still_runs_once(make_node, postgres,
                                                           cluster_name):
    """Node a's only worker is held busy (signal 71), so the next fire a wins waits in
    its queue; a is stopped gracefully right then (SIGTERM, SIGINT, SIGTERM to its
    process group as systemd does), three times.  Before the fix that fire was dropped
    as `stopped`: claimed, never run.  Now a releases the claim and b or c runs it.
    Every fire claimed in the run ran once, and no second was skipped."""
    signals = [{"num": 70, "handler": "python:stamp:stamp"}]
    a = make_node("a", [*signals, {"num": 71, "handler": "python:block:block"}],
                  extra=UNIQUE, modules={"stamp": STAMP, "block": BLOCK})
    others = [make_node(n, signals, extra=UNIQUE, modules={"stamp": STAMP})
              for n in ("b", "c")]

    def fires_of_a() -> list[list[str]]:
        return [r for r in a.results() if r[0] == "70"]

    for cycle, how in enumerate(("SIGTERM", "SIGINT", "group")):
        if cycle:
            (a.dir / "go").unlink()
            restart(a)
        a.signal(71)
        busy = _blocked(a, cycle)
        ran = len(fires_of_a())

        def queued(since: float = busy, ran: int = ran) -> bool:
            won = sum(1 for at, node in _claims(postgres, cluster_name)
                      if node == "a" and at > since)
            return won > 0 and len(fires_of_a()) == ran    # won, waiting behind 71
        wait_for(queued, timeout=30, interval=0.01,
                 message=lambda: f"a never won a fire: {_claims(postgres, cluster_name)}")
        assert a.proc is not None
        if how == "group":
            os.killpg(a.proc.pid, signal.SIGTERM)
        else:
            a.send(getattr(signal, how))
        a.touch("go")
        assert a.wait() == 0
        assert "released for the other nodes" in a.log, a.log[-3000:]
    time.sleep(1.5)                          # b or c runs what a released
    ending = time.time()
    for inst in others:
        assert inst.stop() == 0
    claims = _claims(postgres, cluster_name)
    # Until b and c stop too (then a late node claims only the latest fire, and the
    # last node to stop releases its unrun fires to nobody)
    seconds = [round(at) for at, _ in claims if at < ending - 1]
    assert seconds == list(range(seconds[0], seconds[-1] + 1)), f"a fire skipped: {claims}"
    runs = fires_of_a() + [r for inst in others for r in inst.results()]
    assert len(runs) == len(claims), f"{len(claims)} fires claimed, ran: {runs}"


def _blocked(inst, cycle: int) -> float:
    """When the `cycle`th run of signal 71 started (the worker is busy from then on)."""
    lines = inst.wait_results(cycle + 1, where=lambda r: r[0] == "71")
    return float([r for r in lines if r[0] == "71"][cycle][1])


CRON = "\n[[cron]]\nsignal = 73\nexpr = \"* * * * *\"\nunique = true\n"


def test_a_unique_cron_runs_once_across_three_nodes(make_node, postgres, cluster_name):
    """Three nodes with the same every-minute unique cron: the next minute's fire runs
    on exactly one of them, the one its claim names (waits for one minute boundary)."""
    signals = [{"num": 73, "handler": "python:stamp:stamp"}]
    nodes = {n: make_node(n, signals, extra=CRON, modules={"stamp": STAMP})
             for n in ("a", "b", "c")}
    minute = math.ceil(time.time() / 60) * 60         # every node was aiming at it
    time.sleep(max(0.0, minute + 2.0 - time.time()))
    for inst in nodes.values():
        assert inst.stop() == 0
    runs = {n: [float(r[1]) for r in inst.results()] for n, inst in nodes.items()}
    assert sum(map(len, runs.values())) == 1, runs
    with psycopg.connect(postgres) as conn:
        claims = conn.execute("SELECT source, fire_at, node FROM switchboard.fires "
                              "WHERE cluster = %s", (cluster_name,)).fetchall()
    assert [(source, at) for source, at, _ in claims] == [("cron 73 * * * * *", minute)]
    winner = claims[0][2]
    assert len(runs[winner]) == 1 and minute <= runs[winner][0] < minute + 1, runs
