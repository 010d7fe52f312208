"""The node's outbox: concurrent remote raises share commits, and lose nothing when it
is gone (cluster/outbox.py)."""

from __future__ import annotations

import os
import socket
import time

import psycopg
import pytest
from tests import conftest as procs
from tests.cluster.conftest import MARK
from tests.conftest import wait_for

from switchboard.cluster import sender
from switchboard.cluster.outbox import Outbox
from switchboard.cluster.sender import Sender
from switchboard.cluster.settings import ClusterConfig
from switchboard.cluster.state import ClusterState
from switchboard.cluster.store import Store

pytestmark = pytest.mark.timeout(90)

BURST = '''
import os, time, uwsgi, sbtest
def burst(num):
    me = uwsgi.worker_id()
    sbtest.touch(f"ready-{me}")           # the 4 workers start together: they overlap
    while not all(os.path.exists(os.path.join(sbtest.DIR, f"ready-{w}")) for w in range(1, 5)):
        time.sleep(0.001)
    first = 100 + 25 * (me - 1)
    for n in range(first, first + 25):
        uwsgi.signal(n, "b")
def to_b(num):
    uwsgi.signal(100, "b")
'''


def helpers_of(inst) -> list[int]:
    """The pids of the instance's sources helper (where the outbox runs): one, or none
    while it is being restarted."""
    return [p for p in procs.descendants(inst.pid)
            if procs.cmdline(p).startswith("switchboard sources")]


def helper_of(inst) -> int:
    found = helpers_of(inst)
    assert len(found) == 1, [(p, procs.cmdline(p)) for p in procs.descendants(inst.pid)]
    return found[0]


def test_concurrent_raisers_share_commits_and_keep_their_order(make_node):
    a = make_node("a", [{"num": 14, "handler": "python:burst:burst", "target": "workers"}],
                  settings={"workers": 4}, modules={"burst": BURST})
    b = make_node("b", [{"num": n, "handler": MARK} for n in range(100, 200)])
    a.raise_signal(14)                  # each of a's 4 workers raises its own 25, at once
    nums = [int(r[0]) for r in b.wait_results(100, timeout=30)]
    assert sorted(nums) == list(range(100, 200))          # each exactly once
    for first in range(100, 200, 25):                      # each raiser's order kept
        mine = [n for n in nums if first <= n < first + 25]
        assert mine == list(range(first, first + 25)), nums
    cluster = a.stats_when(lambda s: s["cluster"]["sent"] == 100)["cluster"]
    assert 1 <= cluster["commits"] <= 100, cluster       # they went through the outbox
    assert b.stats()["cluster"]["received"] == 100


@pytest.fixture
def parts(postgres, cluster_name):
    """An outbox in this process (its threads, real sockets, the tests' PostgreSQL) for
    nodes a and b, and a shared state in which another process is raising right now."""
    config = ClusterConfig(postgres, cluster_name, "a", heartbeat=0.5)
    store = Store.connect(postgres, config.schema, cluster_name, 5.0)
    store.migrate()
    for node in ("a", "b"):
        store.join(node, "here", os.getpid())
    state = ClusterState(3, cluster_name, "a")
    state.raised_at[0] = time.monotonic() + 3600      # slot 0 raises: share commits
    box = Outbox(config, state, 2)
    box.start()
    yield config, state, box, store
    box.stop()
    store.close()


def waiting_for(store, node):
    return store.conn.execute("SELECT count(*) FROM switchboard.signals WHERE cluster = %s "
                              "AND node = %s", (store.cluster, node)).fetchone()[0]


def test_the_outbox_commits_and_answers_for_its_raisers(parts):
    config, state, _, store = parts
    raiser = Sender(config, state, 1, 2.0, keep=True)
    assert raiser.send(7, "b") == 1
    assert raiser.send(7, "*") == 2
    with pytest.raises(OSError, match="no node named 'nobody' has joined cluster"):
        raiser.send(7, "nobody")
    assert (waiting_for(store, "a"), waiting_for(store, "b")) == (1, 2)
    assert state.totals()["commits"] == 3 and state.totals()["sent"] == 3


def test_a_raiser_commits_by_itself_once_the_outbox_is_gone(parts):
    config, state, box, store = parts
    raiser = Sender(config, state, 1, 2.0, keep=True)
    raiser.send(7, "b")
    box.stop()                             # its sockets close, as when the helper dies
    assert raiser.send(7, "b") == 1        # by itself, with the same key
    assert waiting_for(store, "b") == 2
    assert state.totals()["commits"] == 1


def test_the_outbox_gives_up_after_signal_timeout(tmp_path):
    down = ClusterConfig(f"host={tmp_path} port=1 user=nobody dbname=none", "c", "a")
    state = ClusterState(3, "c", "a")
    state.raised_at[0] = time.monotonic() + 3600
    box = Outbox(down, state, 2)
    box.start()
    try:
        with pytest.raises(OSError, match=r"PostgreSQL did not take it within 1 s "
                                          r"\(signal-timeout\)"):
            Sender(down, state, 1, 1.0, keep=True).send(7, "b")
    finally:
        box.stop()
    assert state.totals()["send_failures"] == 1 and state.totals()["commits"] == 0


def outbox_address(pid: int) -> str:
    """The abstract socket address the process `pid` listens on (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    with open("/proc/net/unix") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if len(fields) == 8 and fields[6] in inodes and \
                    fields[7].startswith("@switchboard-cluster-"):
                return "\0" + fields[7][1:]
    raise AssertionError(f"no outbox socket in process {pid}")


def test_a_process_outside_the_instance_is_refused(make_node):
    a = make_node("a")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(10)
        sock.connect(outbox_address(helper_of(a)))
        try:            # the outbox may close it before the request is even sent
            sock.send(b"\0\x64" + os.urandom(16) + b"\0" * 8 + b"a")
            answer = sock.recv(64)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""
        assert answer == b""                # closed without storing anything
    wait_for(lambda: "refused a raiser" in a.log, message=lambda: a.log[-3000:])
    assert a.stats()["cluster"]["sent"] == 0


TRY = '''
import time, uwsgi, sbtest
def to_a(num):
    uwsgi.signal(3, "a")
def to_nobody(num):
    try:
        uwsgi.signal(3, "nobody")
    except OSError as exc:
        sbtest.record("OSError", str(exc).replace(" ", "_"))
def timed(num):
    began = time.monotonic()
    try:
        uwsgi.signal(3, "a")
    except OSError as exc:
        sbtest.record("OSError", round(time.monotonic() - began, 1), str(exc).replace(" ", "_"))
'''


def test_no_such_node_and_signal_timeout_for_a_lone_raiser(make_node, postgres,
                                                              cluster_name):
    role = f"r{cluster_name}"
    admin = psycopg.connect(postgres, autocommit=True)
    admin.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    try:
        a = make_node("a", [{"num": 2, "handler": "python:trier:to_a"},
                            {"num": 3, "handler": MARK},
                            {"num": 4, "handler": "python:trier:to_nobody"},
                            {"num": 5, "handler": "python:trier:timed"}],
                      cluster={"dsn": f"{postgres} user={role}"},
                      settings={"workers": 1, "signal-timeout": 2}, modules={"trier": TRY})
        a.raise_signal(2)
        a.wait_results(1)                   # by itself: its connection is open
        a.raise_signal(4)
        nobody = a.wait_results(2)[1]
        assert nobody[0] == "OSError" and "no_node_named_'nobody'_has_joined" in nobody[1]
        admin.execute(f'ALTER ROLE "{role}" NOLOGIN')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE usename = %s", (role,))
        a.raise_signal(5)
        failed = a.wait_results(3, timeout=30)[2]
        assert failed[0] == "OSError" and float(failed[1]) >= 1.5, failed
        assert "PostgreSQL_did_not_take_it_within_2_s_(signal-timeout)" in failed[2]
        assert a.stats()["cluster"]["send_failures"] == 1
    finally:
        admin.execute(f'ALTER ROLE "{role}" LOGIN')
        admin.close()


@pytest.mark.parametrize("remote", ["b,c", "{b}", "web 1", "x" * 61])
def test_a_remote_that_cannot_be_a_node_name_is_refused(remote):
    with pytest.raises(ValueError, match="is not a node name"):
        sender.check_remote(50, remote)
