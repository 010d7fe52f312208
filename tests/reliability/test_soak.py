"""Soak, short form (issue 15): bench/soak.py --short pushes 200,000 signals through
every target kind while the instance is reloaded 5 times, 10 children are SIGKILLed and
a 1 ms timer ticks 3,000 times, then checks that no process holds more descriptors or
threads than after its warm-up, that no RSS grew past the bound, and that every routed
signal was handled or dropped with a reason.  `python bench/soak.py` is the long form
(10 million signals, 200 reloads, 500 kills, 50,000 ticks; figures in
docs/guarantees.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.timeout(300), pytest.mark.soak]


def test_short_soak_holds_every_bound(tmp_path):
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, str(REPO / "bench" / "soak.py"), "--short",
                          "--json", str(out), "--timeout", "240"],
                         cwd=REPO, capture_output=True, text=True, timeout=280,
                         env={**os.environ, "SOAK_DIR": str(tmp_path / "soak")})
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-5000:]}"
    result = json.loads(out.read_text())
    assert result["problems"] == []
    assert result["reloads"] == 5 and result["kills"] == 10
    signals = result["stats"]["signals"]
    assert sum(signals[str(n)]["raised"] for n in range(10, 19)) >= 200_000
    assert all(signals[str(n)]["handled"] > 0 for n in (*range(10, 19), 20)), signals
    assert signals["20"]["raised"] >= 3_000
    titles = set(result["end"])
    assert {"switchboard master", "switchboard spooler", "switchboard mule 3",
            "switchboard worker 4"} <= titles
