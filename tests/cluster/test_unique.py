"""Unique timers: three nodes, nodes killed and restarted, every fire runs exactly once."""

from __future__ import annotations

import math
import time

import psycopg
import pytest
from tests.cluster.conftest import MARK
from tests.cluster.test_durable import restart

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
