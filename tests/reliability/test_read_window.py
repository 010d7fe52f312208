"""A worker killed right after it read a signal from the `worker` channel, before it
marked it started, loses nothing: the signal runs once, in another worker
(docs/guarantees.md, "between a read and its mark").

strace holds the worker inside that window: it delays the return of the worker's
`readv()` (the signal is already out of the channel by then), and the test kills the
worker there.  The other worker is stopped meanwhile, so it cannot take the signal first.
"""

from __future__ import annotations

import os
import shutil
import signal as unix
import subprocess

import pytest

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")]


def _traced(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as status:
        return any(line.startswith("TracerPid:") and line.split()[1] != "0"
                   for line in status)


def test_a_worker_killed_between_its_read_and_its_mark_loses_nothing(make_instance, wait_for):
    inst = make_instance({"workers": 2},
                         [{"num": 5, "target": "worker", "handler": "python:sbtest:mark"}])
    pids = inst.worker_pids()
    trace = inst.dir / "strace.txt"
    os.kill(pids[2], unix.SIGSTOP)
    tracer = subprocess.Popen(["strace", "-q", "-p", str(pids[1]), "-e", "trace=readv",
                               "-e", "inject=readv:delay_exit=5000000", "-o", str(trace)],
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _traced(pids[1]), 10, message="strace did not attach")
        inst.signal(5)
        # The read returned one byte and is held on its way back to the worker:
        wait_for(lambda: trace.exists() and "= 1 (DELAYED)" in trace.read_text(), 10,
                 message=lambda: f"no held read; strace: {trace.read_text()!r}")
        os.kill(pids[1], unix.SIGKILL)
    finally:
        os.kill(pids[2], unix.SIGCONT)
        tracer.wait(timeout=15)

    lines = inst.wait_results(1, timeout=20, where=lambda r: r[0] == "5")
    stats = inst.stats_when(lambda s: s["signals"]["5"]["handled"] >= 1)
    assert [r for r in lines if r[0] == "5"] == [lines[0]]
    assert lines[0][2] != str(pids[1])                   # not the killed process
    assert stats["signals"]["5"]["handled"] == 1
    assert stats["signals"]["5"]["dropped"] == {}
    assert "signal 5: read by a worker member that died before starting it" in inst.log
    assert len([r for r in inst.results() if r[0] == "5"]) == 1
