"""Published code built on the spooler and mule messages: uwsgi-tasks 0.7.3, unchanged.

Its `@task(executor=SPOOLER)` spools a job with bytes keys (uwsgi.spool), its own
`uwsgi.spooler` decodes them and unpickles the call; `@task(executor=MULE)` pickles the
call through `uwsgi.mule_msg` to its `uwsgi.mule_msg_hook`.  The issue found it dropping
spooled jobs silently; here each task runs once, where it should.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(60)

TASKS = """
import os

import uwsgi
from uwsgi_tasks import TaskExecutor, task

import sbtest


@task(executor=TaskExecutor.SPOOLER)
def in_spooler(x, y=None):
    sbtest.record("spooled", x, y, uwsgi.i_am_the_spooler())


@task(executor=TaskExecutor.SPOOLER, at=0)
def also_in_spooler(word):
    sbtest.record("spooled-too", word, uwsgi.i_am_the_spooler())


@task(executor=TaskExecutor.MULE)
def in_mule(x):
    sbtest.record("mule", x, uwsgi.mule_id())


def go(num):
    in_spooler(1, y="two")
    also_in_spooler("three")
    in_mule(4)
"""


def test_uwsgi_tasks_runs_spooler_and_mule_tasks(make_instance):
    inst = make_instance({"workers": 1, "mules": 1, "spooler": "spool",
                          "import": ["tasks"]},
                         [{"num": 1, "handler": "python:tasks:go"}],
                         modules={"tasks": TASKS})
    inst.raise_signal(1)
    inst.wait_results(3)
    rows = sorted(inst.results())
    assert rows == [["mule", "4", "1"], ["spooled", "1", "two", "True"],
                    ["spooled-too", "three", "True"]]
    assert inst.stop() == 0
