"""A pidfile and systemd's sd_notify, as an init system sees them (issue 17): the
master's pid in `pidfile` while it runs; READY=1 once every child is up, RELOADING=1
then READY=1 around a SIGHUP, STOPPING=1 at a stop, on $NOTIFY_SOCKET; and children
do not inherit NOTIFY_SOCKET (they do not speak for the service)."""

from __future__ import annotations

import signal as unix
import socket

import pytest

pytestmark = pytest.mark.timeout(60)

APP = """
import os

import sbtest


def env(num):
    sbtest.record("notify", os.environ.get("NOTIFY_SOCKET", "unset"))
"""


def test_the_pidfile_holds_the_masters_pid_while_it_runs(make_instance, wait_for):
    inst = make_instance({"workers": 1, "pidfile": "sb.pid"})
    pidfile = inst.dir / "sb.pid"
    assert pidfile.read_text() == f"{inst.pid}\n"
    assert inst.stop() == 0
    assert not pidfile.exists()


def test_sd_notify_tells_systemd_ready_reloading_and_stopping(make_instance, monkeypatch,
                                                             tmp_path, wait_for):
    path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(20)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    try:
        inst = make_instance({"workers": 2}, [{"num": 30, "target": "worker",
                                               "handler": "python:app:env"}],
                             modules={"app": APP})

        def message() -> dict[str, str]:
            text = listener.recv(4096).decode()
            return dict(line.split("=", 1) for line in text.splitlines())

        assert message()["READY"] == "1"            # sent with the `ready` line
        assert "ready:" in inst.log
        inst.signal(30)
        assert inst.wait_results(1) == [["notify", "unset"]]
        inst.send(unix.SIGHUP)
        reloading = message()
        assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
        assert message()["READY"] == "1"
        assert "reload: done" in inst.log
        inst.send(unix.SIGTERM)
        assert message()["STOPPING"] == "1"
        assert inst.wait() == 0
    finally:
        listener.close()
