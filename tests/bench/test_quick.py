"""The benchmark's quick mode runs every scenario on both sides, so bench/ never rots.

It checks that each run produced its numbers and the table judged every goal; it does
not check the goals themselves (that is what `python bench/run.py` reports).  When
build/uwsgi-venv is missing, the command installs uWSGI first (it compiles: the
timeout leaves room for that).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_quick_benchmark_runs_every_scenario_on_both_sides(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--quick",
                          "--json", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-5000:]}"
    data = json.loads(out.read_text())
    for case, sides in data["results"].items():
        for side, rounds in sides.items():
            assert rounds and all("error" not in r for r in rounds), (case, side, rounds)
    assert {"worker", "broadcast", "latency", "lua", "timer_1s", "timer_10ms", "filemon",
            "memory", "startup"} <= data["results"].keys()
    assert any(case.startswith("scaling_") for case in data["results"])
    assert set(data["results"]["worker"]) == {"uwsgi", "switchboard"}
    assert data["goals"] and all(g["met"] is not None for g in data["goals"]), data["goals"]
    assert "| Metric |" in run.stdout and "goals met:" in run.stdout


@pytest.mark.timeout(120)
def test_hops_breaks_a_lone_signal_down_hop_by_hop() -> None:
    """bench/hops.py wraps the runtime's loop steps by name: a rename must fail here."""
    run = subprocess.run([sys.executable, str(REPO / "bench" / "hops.py"), "--n", "30"],
                         cwd=REPO, capture_output=True, text=True, timeout=100)
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-5000:]}"
    rows = [line.split("|") for line in run.stdout.splitlines() if line.startswith("| ")]
    hops = {(cells[1].strip(), cells[2].strip()): float(cells[3]) for cells in rows[2:]}
    # Lone signals go straight into the channel: the direct path's three hops are there
    # (the master's seven too, for any that went through it), and the total.
    direct = [name for path, name in hops if path == "direct"]
    assert len(direct) == 3, run.stdout
    assert len(hops) in (4, 11) and ("both", "total (raise -> handler start)") in hops, run.stdout
    assert all(value >= 0 for value in hops.values()), run.stdout
    assert hops[("both", "total (raise -> handler start)")] > 0, run.stdout


@pytest.mark.parametrize("channel", ["own", "group"])
def test_dispatch_cpu_drives_a_worker_loop_in_process(channel: str) -> None:
    """bench/dispatch_cpu.py calls the worker's read and dispatch steps by name."""
    run = subprocess.run([sys.executable, str(REPO / "bench" / "dispatch_cpu.py"), "--n",
                          "2000", "--rounds", "1", "--channel", channel],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert f"{channel} channel, 2000 signals x 1: best" in run.stdout, run.stdout
