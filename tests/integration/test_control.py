"""The control socket and the `signal` / `stats` commands (SPEC sections 11 and 12)."""

from __future__ import annotations

import os
import stat

import pytest

pytestmark = pytest.mark.timeout(60)


def test_control_socket_is_private_and_relative_to_the_config(make_instance, cli, wait_for):
    inst = make_instance(text='[switchboard]\nworkers = 1\npython-path = ["."]\n'
                              'control = "run/ctl.sock"\n\n[[signal]]\nnum = 30\n'
                              'handler = "python:sbtest:mark"\n', start=False)
    (inst.dir / "run").mkdir()
    inst.start()
    sock = inst.dir / "run" / "ctl.sock"
    mode = os.stat(sock).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert os.stat(sock).st_uid == os.getuid()
    # Found through --config from another working directory, and through --control.
    res = cli("signal", "30", "--config", str(inst.config_path))
    assert res.returncode == 0, res.stderr
    res = cli("signal", "30", "--control", str(sock))
    assert res.returncode == 0, res.stderr
    inst.wait_results(2)
    res = cli("stats", "--control", str(sock))
    assert res.returncode == 0, res.stderr
    assert '"raised": 2' in res.stdout


def test_stats_document(make_instance, wait_for):
    inst = make_instance({"workers": 2},
                         [{"num": 30, "target": "worker", "handler": "python:sbtest:mark"}])
    inst.signal(30)
    inst.wait_results(1)
    stats = wait_for(lambda: (s := inst.stats())["signals"]["30"]["handled"] == 1 and s, 10)
    assert stats["pid"] == inst.pid
    assert stats["held"] == 0
    assert stats["mules"] == [] and stats["spoolers"] == []
    for w, wid in zip(stats["workers"], [1, 2], strict=True):
        assert w["id"] == wid
        assert {"id", "pid", "status", "signals", "signal_queue", "respawns",
                "harakiri_count", "failed", "waiting"} <= set(w)
        assert w["status"] == "idle" and w["waiting"] is False
        assert w["respawns"] == w["harakiri_count"] == w["failed"] == w["signal_queue"] == 0
    assert sum(w["signals"] for w in stats["workers"]) == 1
    sig = stats["signals"]["30"]
    assert {k: sig[k] for k in ("target", "handler", "raised", "routed", "handled", "failed",
                                "dropped")} == {
        "target": "worker", "handler": "python:sbtest:mark", "raised": 1, "routed": 1,
        "handled": 1, "failed": 0, "dropped": {}}


@pytest.mark.parametrize("num", ["300", "256", "-1"])
def test_signal_number_out_of_range_is_refused(make_instance, num):
    inst = make_instance({"workers": 1})
    res = inst.signal(num, check=False)        # type: ignore[arg-type]
    assert res.returncode != 0
    assert num in res.stderr and "range" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    stats = inst.stats()
    assert all(s["raised"] == 0 for s in stats["signals"].values())


def test_a_non_numeric_signal_is_refused(make_instance):
    inst = make_instance({"workers": 1})
    res = inst.cli("signal", "abc", "--config", str(inst.config_path))
    assert res.returncode != 0
    assert "abc" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("command", ["signal", "stats"])
def test_no_running_instance_is_a_clear_error(cli, tmp_path, command):
    config = tmp_path / "idle.toml"
    config.write_text('[switchboard]\ncontrol = "idle.sock"\n')
    args = [command, "5"] if command == "signal" else [command]
    res = cli(*args, "--config", str(config))
    assert res.returncode != 0
    assert res.stderr.strip(), "no message"
    assert str(tmp_path / "idle.sock") in res.stderr or str(config) in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    res = cli(*args, "--control", str(tmp_path / "none.sock"))
    assert res.returncode != 0
    assert "none.sock" in res.stderr and "Traceback" not in res.stderr


def test_an_unregistered_signal_is_accepted_and_held(make_instance, wait_for):
    inst = make_instance({"workers": 1})
    res = inst.signal(200)
    assert res.returncode == 0 and "no handler is registered" in res.stderr
    stats = wait_for(lambda: (s := inst.stats())["held"] == 1 and s, 10)
    assert stats["signals"]["200"]["raised"] == 1
    assert stats["signals"]["200"]["handler"] is None


def test_without_control_the_socket_is_private_and_found_through_the_config(make_instance):
    inst = make_instance(text='[switchboard]\nworkers = 1\npython-path = ["."]\n\n'
                              '[[signal]]\nnum = 30\nhandler = "python:sbtest:mark"\n',
                         start=False)
    # Started with a relative path from its own folder...
    inst.start(config_arg="switchboard.toml")
    sockets = list(inst.runtime_dir.rglob("*.sock"))
    assert len(sockets) == 1, sockets
    sock = sockets[0]
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(sock.parent).st_mode) & 0o077 == 0   # a private folder
    # ... and reached with its absolute path, from elsewhere.
    res = inst.cli("signal", "30", "--config", str(inst.config_path))
    assert res.returncode == 0, res.stderr
    inst.wait_results(1)
    assert inst.stop() == 0
