"""Remote signals between instances: durable, exactly once, routed by the receiver."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from tests.cluster.conftest import MARK
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(90)

RAISER = '''
import uwsgi
def to_b(num):
    uwsgi.signal(50, "b")
def to_all(num):
    uwsgi.signal(51, "*")
'''


def test_a_signal_from_a_runs_on_b_with_bs_handler(make_node):
    a = make_node("a", [{"num": 10, "handler": "python:raiser:to_b"}],
                  modules={"raiser": RAISER})
    b = make_node("b", [{"num": 50, "handler": MARK}], settings={"workers": 2})
    a.raise_signal(10)
    b.wait_results(1)
    assert a.results() == []           # a has no handler for 50: it ran on b only
    stats = b.stats()
    assert stats["signals"]["50"]["handled"] == 1
    assert stats["cluster"]["received"] == 1
    assert a.stats()["cluster"]["sent"] == 1
    assert {m["node"] for m in stats["cluster"]["members"]} >= {"a", "b"}


def test_star_runs_once_on_every_member_this_one_included(make_node):
    a = make_node("a", [{"num": 11, "handler": "python:raiser:to_all"},
                        {"num": 51, "handler": MARK}], modules={"raiser": RAISER})
    b = make_node("b", [{"num": 51, "handler": MARK}])
    c = make_node("c", [{"num": 51, "handler": MARK}])
    wait_for(lambda: len(a.stats()["cluster"]["members"]) == 3, message=lambda: a.stats())
    a.raise_signal(11)
    for inst in (a, b, c):
        inst.wait_results(1)
    a.raise_signal(11)
    for inst in (a, b, c):
        inst.wait_results(2)
    assert a.stats()["cluster"]["sent"] == 6
    for inst in (a, b, c):       # a moment more: nothing arrives a second time
        assert len(inst.results()) == 2, inst.results()


def test_lua_raises_remotely_and_lists_the_nodes(make_node):
    lua = '''
function to_b(num)
    local nodes = uwsgi.cluster_nodes()
    print("lua nodes: " .. table.concat(nodes, ","))
    uwsgi.signal(52, "b")
end
function got(num)
    print("lua got " .. num .. " on worker " .. uwsgi.worker_id())
end
'''
    a = make_node("a", [{"num": 12, "handler": "lua:lua_cluster.lua:to_b"}],
                  start=False)
    (a.dir / "lua_cluster.lua").write_text(lua)
    a.start()
    b = make_node("b", [{"num": 52, "handler": "lua:lua_cluster.lua:got"}], start=False)
    (b.dir / "lua_cluster.lua").write_text(lua)
    b.start()
    wait_for(lambda: len(a.stats()["cluster"]["members"]) == 2)
    a.raise_signal(12)
    wait_for(lambda: "lua got 52 on worker 1" in b.stdout, message=lambda: b.log)
    assert "lua nodes: a,b" in a.stdout


def test_the_cli_raises_on_a_node_and_on_all(make_node):
    a = make_node("a", [{"num": 53, "handler": MARK}])
    b = make_node("b", [{"num": 53, "handler": MARK}])
    wait_for(lambda: len(a.stats()["cluster"]["members"]) == 2)
    res = a.cli("signal", "53", "--node", "b", "--config", str(a.config_path))
    assert res.returncode == 0, res.stderr
    b.wait_results(1)
    res = a.cli("signal", "53", "--all", "--config", str(a.config_path))
    assert res.returncode == 0, res.stderr
    a.wait_results(1)
    b.wait_results(2)
    res = a.cli("signal", "53", "--node", "nobody", "--config", str(a.config_path))
    assert res.returncode == 1
    assert "no node named 'nobody' has joined cluster" in res.stderr


def test_order_from_one_raiser_to_one_node_is_kept(make_node):
    sender = '''
import uwsgi
def burst(num):
    for n in range(60, 100):
        uwsgi.signal(n, "b")
'''
    a = make_node("a", [{"num": 13, "handler": "python:burst:burst"}],
                  modules={"burst": sender})
    b = make_node("b", [{"num": n, "handler": MARK} for n in range(60, 100)])
    a.raise_signal(13)
    lines = b.wait_results(40)
    assert [int(r[0]) for r in lines] == list(range(60, 100))


def test_the_cluster_section_is_in_the_stats_server_and_metrics(make_node):
    a = make_node("a", [{"num": 58, "handler": MARK}],
                  settings={"workers": 1, "stats": "127.0.0.1:0", "stats-http": True})
    res = a.cli("signal", "58", "--all", "--config", str(a.config_path))
    assert res.returncode == 0, res.stderr
    a.wait_results(1)
    match = re.search(r"stats server on 127\.0\.0\.1:(\d+)", a.log)
    assert match, a.log

    def section() -> dict:
        url = f"http://127.0.0.1:{match.group(1)}/"
        with urllib.request.urlopen(url, timeout=10) as reply:
            return json.loads(reply.read())["cluster"]
    wait_for(lambda: section()["received"] == 1, message=section)
    assert section()["node"] == "a" and [m["node"] for m in section()["members"]] == ["a"]
    url = f"http://127.0.0.1:{match.group(1)}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    assert "switchboard_cluster_received_total 1.0" in text
    assert "switchboard_cluster_members 1.0" in text
