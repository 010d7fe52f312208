"""A reload keeps the running [cluster]: a changed one is logged and waits for a restart."""

from __future__ import annotations

import signal as unix

import pytest
from tests.cluster.conftest import MARK
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(90)

RAISER = '''
import uwsgi
def to_b(num):
    uwsgi.signal(50, "b")
'''


def test_a_reload_keeps_the_running_cluster_and_says_a_change_waits(make_node):
    a = make_node("a", [{"num": 10, "handler": "python:raiser:to_b"}],
                  modules={"raiser": RAISER})
    b = make_node("b", [{"num": 50, "handler": MARK}])
    a.send(unix.SIGHUP)                                  # unchanged: nothing said
    wait_for(lambda: "reload: done" in a.log, message=lambda: a.log[-3000:])
    assert "[cluster] changed" not in a.log
    text = a.config_path.read_text()
    a.config_path.write_text(text.replace('node = "a"', 'node = "a2"'))
    a.send(unix.SIGHUP)
    wait_for(lambda: a.log.count("reload: done") == 2, message=lambda: a.log[-3000:])
    assert "reload: [cluster] changed in the config; it takes effect when the instance " \
           "is restarted (running: cluster " in a.log
    a.raise_signal(10)                                   # the new workers still raise
    b.wait_results(1)
    cluster = a.stats()["cluster"]
    assert cluster["node"] == "a" and cluster["sent"] == 1
    assert "a2" not in [m["node"] for m in cluster["members"]]
