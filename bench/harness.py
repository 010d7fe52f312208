"""Start a Switchboard instance for a benchmark and wait for what its apps report.

Apps report by appending `key value` lines to the file named by $BENCH_OUT; the
harness polls that file (with a deadline) rather than sleeping.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Instance:
    def __init__(self, config_text: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sb-bench-"))
        self.out = self.dir / "out.txt"
        self.config = self.dir / "switchboard.toml"
        self.config.write_text(config_text.replace("@APPS@", str(HERE / "apps")))
        env = dict(os.environ, BENCH_OUT=str(self.out))
        self.log = open(self.dir / "log.txt", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "run", str(self.config),
             "--log-level", "WARNING"],
            cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_for(self, key: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.out.exists():
                for line in self.out.read_text().splitlines():
                    if line.startswith(key + " "):
                        return line.split(" ", 1)[1]
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"no '{key}' from the apps; log:\n{self.log_text()}")

    def log_text(self) -> str:
        return (self.dir / "log.txt").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def median(values: list[float]) -> float:
    return statistics.median(values)
