"""What a user sees when the cluster is misused or unreachable."""

from __future__ import annotations

import pytest
from tests.cluster.conftest import MARK

pytestmark = pytest.mark.timeout(60)

TRY = '''
import uwsgi, sbtest
def try_remote(num):
    for remote in ("b", "10.0.0.1:1717"):
        try:
            uwsgi.signal(1, remote)
        except (OSError, ValueError) as exc:
            sbtest.record(type(exc).__name__, str(exc).replace(" ", "_"))
    try:
        uwsgi.cluster_nodes()
    except OSError as exc:
        sbtest.record(type(exc).__name__, str(exc).replace(" ", "_"))
'''


def test_a_remote_raise_without_cluster_says_so(make_instance):
    inst = make_instance({"workers": 1}, [{"num": 2, "handler": "python:trier:try_remote"}],
                         modules={"trier": TRY})
    inst.raise_signal(2)
    (no_cluster, host_port, nodes) = inst.wait_results(3)
    assert no_cluster[0] == "OSError"
    assert "not_in_a_cluster_(add_a_[cluster]_section" in no_cluster[1]
    assert host_port[0] == "OSError"
    assert "'host:port'" in host_port[1] and "[cluster]" in host_port[1]
    assert nodes[0] == "OSError" and "[cluster]" in nodes[1]


def test_an_unreachable_server_at_start_is_exit_2(make_node, tmp_path):
    inst = make_node("a", [{"num": 1, "handler": MARK}], start=False,
                     cluster={"dsn": f"host={tmp_path} port=1 user=nobody dbname=none"})
    inst.start(wait_ready=False)
    assert inst.wait() == 2
    assert "[cluster]" in inst.log and "cannot connect to PostgreSQL" in inst.log


@pytest.mark.parametrize("key,value,message", [
    ("dsn", "nonsense", "bad dsn"),
    ("node", "web 1", "is not a valid node"),
    ("schema", "Bad-Schema", "is not a schema name"),
    ("heartbeat", 0, "out of range"),
])
def test_bad_cluster_keys_are_config_errors(cli, tmp_path, key, value, message):
    table = {"dsn": "postgresql:///x", "name": "c", "node": "a", key: value}
    lines = "".join(f"{k} = {value!r}\n".replace("'", '"') if k == key else
                    f'{k} = "{v}"\n' for k, v in table.items())
    path = tmp_path / "c.toml"
    path.write_text("[switchboard]\nworkers = 1\n\n[cluster]\n" + lines)
    res = cli("check", str(path))
    assert res.returncode == 2
    assert "[cluster]" in res.stderr and f"key '{key}'" in res.stderr
    assert message in res.stderr


def test_unique_without_cluster_is_a_config_error(cli, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[switchboard]\nworkers = 1\n\n[[timer]]\nsignal = 3\nseconds = 1\n"
                    "unique = true\n")
    res = cli("check", str(path))
    assert res.returncode == 2
    assert "[[timer]] #1: key 'unique': needs a [cluster] section" in res.stderr


def test_a_second_instance_with_the_same_node_name_is_exit_2(make_node):
    a = make_node("a", [{"num": 1, "handler": MARK}])
    dup = make_node("a-again", start=False, cluster={"node": "a"})
    dup.start(wait_ready=False)
    assert dup.wait() == 2
    assert "[cluster] " in dup.log and "node 'a' is already running (host " in dup.log
    assert "give this instance another 'node' name" in dup.log
    res = a.cli("signal", "1", "--node", "a", "--config", str(a.config_path))
    assert res.returncode == 0, res.stderr          # the running one goes on
    a.wait_results(1)
