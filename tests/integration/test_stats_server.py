"""The stats server of a running instance, seen by the tools operators run: uwsgitop
(from PyPI, unchanged, under tmux), promtool and prometheus_client's parser; and the
raise-to-start latency a person reads in `switchboard stats`."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)

MODULE = """
import time
import uwsgi

def slow(num):
    time.sleep(0.05)

def fast(num):
    pass

def fails(num):
    raise RuntimeError("on purpose")

def kick(num):
    uwsgi.signal(40)        # sleeps 50 ms in worker 1 ...
    uwsgi.signal(41)        # ... so this one starts ~50 ms after its raise
"""


def _config(http: bool, folder: str) -> str:
    return f"""
[switchboard]
workers = 2
mules = 3
farms = {{ pair = [2, 3] }}
spooler = "spool"
python-path = ["{folder}"]
control = "{folder}/control.sock"
stats = "127.0.0.1:0"
stats-http = {"true" if http else "false"}

[[signal]]
num = 40
target = "worker1"
handler = "python:stlat:slow"

[[signal]]
num = 41
target = "worker1"
handler = "python:stlat:fast"

[[signal]]
num = 42
target = "mule1"
handler = "python:stlat:kick"

[[signal]]
num = 43
target = "farm_pair"
handler = "python:stlat:fails"

[[timer]]
signal = 50
seconds = 0.5
iterations = 1000
target = "workers"
handler = "python:stlat:fast"

[[cron]]
signal = 51
expr = "*/5 * * * *"
target = "mule"
handler = "python:stlat:fast"

[[file_monitor]]
signal = 52
path = "watched"
target = "spooler"
handler = "python:stlat:fast"
"""


def _start(make_instance, http: bool):
    inst = make_instance(text="", start=False, modules={"stlat": MODULE})
    inst.write_config(text=_config(http, str(inst.dir)))
    (inst.dir / "spool").mkdir()
    inst.start()
    match = re.search(r"stats server on 127\.0\.0\.1:(\d+)", inst.log)
    assert match, inst.log
    return inst, int(match.group(1))


def _raw(port: int) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return json.loads(b"".join(chunks))


def _get(port: int, path: str, accept: str | None = None) -> tuple[str, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.headers["Content-Type"], reply.read()


def _integers_only(value, where="document"):
    """uwsgi_exporter parses these as integers: no float may hide among them."""
    if isinstance(value, dict):
        for k, v in value.items():
            _integers_only(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _integers_only(v, f"{where}[{i}]")
    else:
        assert not isinstance(value, float), f"{where} is a float: {value}"


UWSGI_TOP = {"version", "pid", "uid", "gid", "cwd", "signal_queue", "load", "locks"}
UWSGI_PROC = {"id", "pid", "accepting", "requests", "exceptions", "harakiri_count", "signals",
              "signal_queue", "status", "rss", "vsz", "running_time", "avg_rt", "last_spawn",
              "respawn_count", "tx", "cores"}


def test_raw_mode_speaks_uwsgis_document_plus_what_uwsgi_lacks(make_instance, wait_for):
    inst, port = _start(make_instance, http=False)
    inst.signal(43)                                  # fails in a farm mule
    doc = wait_for(lambda: (d := _raw(port))["signals"]["43"]["failed"] == 1 and d, 15)
    assert set(doc) >= UWSGI_TOP
    assert doc["pid"] == inst.pid and doc["uid"] == os.getuid()
    for role, count in (("workers", 2), ("mules", 3), ("spoolers", 1)):
        assert [p["id"] for p in doc[role]] == list(range(1, count + 1))
        for proc in doc[role]:
            assert set(proc) >= UWSGI_PROC, (role, set(UWSGI_PROC) - set(proc))
            assert proc["status"] in ("idle", "busy", "cheap") or re.fullmatch(
                r"sig\d+", proc["status"])
            _integers_only({k: proc[k] for k in UWSGI_PROC}, f"{role}.{proc['id']}")
            assert proc["rss"] > 0 and proc["vsz"] >= proc["rss"] and proc["accepting"] == 1
    _integers_only({k: doc[k] for k in UWSGI_TOP})
    failing = [m for m in doc["mules"] if m["exceptions"]]
    assert len(failing) == 1 and failing[0]["id"] in (2, 3)
    kinds = {s["kind"]: s for s in doc["event_sources"]}
    assert set(kinds) == {"timer", "cron", "file_monitor"}
    timer = kinds["timer"]
    assert timer["signal"] == 50 and timer["schedule"] == "every 0.5 s"
    assert time.time() - 1 < timer["next_fire"] <= time.time() + 1
    assert timer["iterations_left"] == 1000 - timer["fired"]
    assert kinds["cron"]["schedule"] == "*/5 * * * *"
    assert kinds["cron"]["next_fire"] > time.time() and kinds["cron"]["iterations_left"] is None
    assert kinds["file_monitor"]["schedule"].endswith("watched")
    assert doc["signals"]["43"]["latency"]["count"] == 1


def test_a_handler_that_sleeps_50_ms_delays_the_next_signal_of_its_worker_by_50_ms(
        make_instance, wait_for):
    inst, port = _start(make_instance, http=False)
    inst.signal(42)                     # mule 1 raises 40 then 41, both for worker 1
    doc = wait_for(lambda: (d := _raw(port))["signals"]["41"]["handled"] == 1 and d, 15)
    slow, fast = doc["signals"]["40"]["latency"], doc["signals"]["41"]["latency"]
    assert slow["count"] == fast["count"] == 1
    assert 45_000 <= fast["max"] < 1_000_000, (slow, fast)
    assert fast["max"] - slow["max"] >= 45_000, (slow, fast)
    worker1 = doc["workers"][0]
    assert worker1["latency"]["41"]["max"] == fast["max"]
    assert worker1["running_time"] >= 50_000      # µs spent in handlers
    # and a person reads it in the table of `switchboard stats`
    table = inst.cli("stats", "--config", str(inst.config_path), "--table").stdout
    row = next(line for line in table.splitlines() if line.startswith("41 "))
    ms = float(re.search(r"([\d.]+) ms\s*$", row).group(1))
    assert ms >= 45, row
    piped = inst.cli("stats", "--config", str(inst.config_path))     # piped: JSON
    assert json.loads(piped.stdout)["signals"]["41"]["latency"]["max"] == fast["max"]


def _tmux(*args: str, server: str) -> str:
    return subprocess.run(["tmux", "-L", server, *args], capture_output=True, text=True,
                          timeout=10, check=True).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize("http", [False, True], ids=["raw", "http"])
def test_uwsgitop_shows_every_worker(make_instance, wait_for, http, tmp_path):
    inst, port = _start(make_instance, http=http)
    doc = json.loads(_get(port, "/")[1]) if http else _raw(port)
    pids = [w["pid"] for w in doc["workers"]]
    uwsgitop = Path(sys.executable).parent / "uwsgitop"
    address = f"http://127.0.0.1:{port}/" if http else f"127.0.0.1:{port}"
    server = f"sbtest-{os.getpid()}-{port}"
    env = {**os.environ, "TERM": "xterm-256color"}
    subprocess.run(["tmux", "-L", server, "-f", "/dev/null", "new-session", "-d", "-x", "160",
                    "-y", "40", f"{uwsgitop} --frequency 1 {address}"],
                   env=env, check=True, timeout=10)
    try:
        screen = wait_for(lambda: (s := _tmux("capture-pane", "-p", server=server))
                          and all(str(pid) in s for pid in pids) and s, 20,
                          message=lambda: _tmux("capture-pane", "-p", server=server))
    finally:
        subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True, timeout=10)
    assert "WID" in screen and "PID" in screen
    rows = [line for line in screen.splitlines() if any(str(p) in line for p in pids)]
    assert len(rows) == 2, screen
    assert f"masterpid: {inst.pid}" in screen


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_metrics_pass_promtool_and_prometheus_clients_parser(make_instance, wait_for):
    from prometheus_client.parser import text_string_to_metric_families
    inst, port = _start(make_instance, http=True)
    inst.signal(42)
    wait_for(lambda: json.loads(_get(port, "/stats.json")[1])["signals"]["41"]["handled"], 15)
    time.sleep(0.15)                            # past the answers' reuse window
    kind, body = _get(port, "/metrics")
    assert kind.startswith("text/plain; version=0.0.4")
    checked = subprocess.run(["promtool", "check", "metrics"], input=body,
                             capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in ("switchboard_signals_raised", "switchboard_signals_handled",
                 "switchboard_signals_failed", "switchboard_signals_dropped",
                 "switchboard_signals_coalesced", "switchboard_process_respawns",
                 "switchboard_process_harakiri_kills", "switchboard_event_source_fires"):
        assert families[name].type == "counter", name
    for name in ("switchboard_queue_depth", "switchboard_process_state",
                 "switchboard_held_signals"):
        assert families[name].type == "gauge", name
    latency = families["switchboard_signal_latency_seconds"]
    assert latency.type == "histogram"
    count = [s for s in latency.samples if s.name.endswith("_count")
             and s.labels == {"signal": "41", "role": "worker", "id": "1"}]
    assert count and count[0].value == 1
    total = [s for s in latency.samples if s.name.endswith("_sum")
             and s.labels["signal"] == "41"][0]
    assert 0.045 <= total.value < 1.0
    raised = {s.labels["signal"]: s.value for s in families["switchboard_signals_raised"].samples}
    assert raised["42"] == 1 and raised["41"] == 1
    states = [s for s in families["switchboard_process_state"].samples if s.value == 1]
    assert len(states) == 2 + 3 + 1         # one state per process
    # the browser's page, on the same address, by Accept
    kind, page = _get(port, "/", accept="text/html")
    assert kind.startswith("text/html") and b"/stats.json" in page
