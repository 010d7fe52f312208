"""Start benchmarked instances (real uWSGI or Switchboard) and read what their apps report.

Apps report by appending `key value` lines to the file named by $BENCH_OUT, and the
`sigbench` app also writes counters and timestamps into a shared file ($BENCH_SHM, see
apps/sigbench.py).  Every wait polls a file against a deadline; nothing sleeps for a
fixed time to let something happen.

Each instance runs in a process group of its own (start_new_session), so `stop()` can
always clean up: SIGTERM to the master, then SIGKILL to the group after a grace period.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
REPO = HERE.parent

# Layout of the shared file: must match apps/sigbench.py.
REGION = 4104
REGIONS = 64
MULE_BASE = 48
SHM_SIZE = REGION * REGIONS * 8


class Proc:
    """One benchmarked instance: a master we started, its log file and its report file."""

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None,
                 workdir: Path | None = None, ready: Iterable[str] = ()) -> None:
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="sb-bench-"))
        self.out = self.dir / "out.txt"
        self.log_path = self.dir / "log.txt"
        self.ready_patterns = [re.compile(p) for p in ready]
        full_env = dict(os.environ, BENCH_OUT=str(self.out), **(env or {}))
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._log_pos = 0
        self._log_seen = ""
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=self.dir, env=full_env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    # --- waiting ----------------------------------------------------------------------

    def wait_ready(self, timeout: float = 60.0, interval: float = 0.002) -> float:
        """Seconds from the start until every ready pattern has appeared in the log."""
        missing = list(self.ready_patterns)
        deadline = self.started + timeout
        with open(self.log_path, "rb") as f:
            buf = b""
            while True:
                chunk = f.read()
                now = time.monotonic()
                if chunk:
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        text = line.decode(errors="replace")
                        missing = [p for p in missing if not p.search(text)]
                    if not missing:
                        return now - self.started
                if self.proc.poll() is not None:
                    raise RuntimeError(f"instance exited ({self.proc.returncode}) before it was "
                                       f"ready; log:\n{self.log_tail()}")
                if now > deadline:
                    raise RuntimeError(f"not ready within {timeout:g} s; log:\n{self.log_tail()}")
                time.sleep(interval)

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def wait_for(self, key: str, timeout: float = 120.0) -> str:
        """The value of the first `key value` line the apps reported."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines():
                if line == key or line.startswith(key + " "):
                    return line[len(key) + 1:]
            if self.proc.poll() is not None:
                raise RuntimeError(f"instance exited ({self.proc.returncode}) without "
                                   f"reporting '{key}'; log:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no '{key}' from the apps within {timeout:g} s; "
                                   f"log:\n{self.log_tail()}")
            time.sleep(0.01)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # --- processes --------------------------------------------------------------------

    def family(self) -> dict[int, str]:
        """pid -> process title, for the master and every descendant."""
        parents = {pid: fields[1] for pid, fields in _proc_stats()}
        found, todo = {self.proc.pid}, [self.proc.pid]
        while todo:
            pid = todo.pop()
            for child, parent in parents.items():
                if parent == pid and child not in found:
                    found.add(child)
                    todo.append(child)
        titles = {}
        for pid in found:
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            titles[pid] = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        return titles

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the master; SIGKILL to its whole group if anything outlives it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        # The group id stays reserved while a member lives (or the master is unreaped),
        # so this never reaches anyone else's processes.
        if self.proc.poll() is None or self._group_members():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def _group_members(self) -> list[int]:
        return [pid for pid, fields in _proc_stats() if fields[2] == self.proc.pid]

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _proc_stats() -> Iterator[tuple[int, list[int]]]:
    """(pid, the numeric fields of /proc/PID/stat after the name) of every process;
    fields[1] is the parent, fields[2] the process group."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            rest = stat.rsplit(")", 1)[1].split()
            yield int(entry), [int(x) if x.lstrip("-").isdigit() else 0 for x in rest]


class Shm:
    """The driver's view of the shared file the sigbench app writes its counters into."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "wb") as f:
            f.truncate(SHM_SIZE)
        with open(path, "r+b") as f:
            self._map = mmap.mmap(f.fileno(), SHM_SIZE)
        self.q = memoryview(self._map).cast("q")

    def go(self) -> None:
        self.q[0] = 1

    def runs(self, regions: Iterable[int]) -> int:
        return sum(self.q[r * REGION] for r in regions)

    def last(self, region: int) -> int:
        return self.q[region * REGION + 1]

    def count(self, region: int) -> int:
        return self.q[region * REGION]

    def samples(self, regions: Iterable[int]) -> list[int]:
        """Every sample the `stamp` handler recorded in these regions, sorted."""
        out: list[int] = []
        for r in regions:
            b = r * REGION
            n = min(self.q[b + 2], REGION - 8)
            out.extend(self.q[b + 8:b + 8 + n].tolist())
        return sorted(out)

    def close(self) -> None:
        self.q.release()
        self._map.close()


# --- the two sides ------------------------------------------------------------------------

def start_uwsgi(uwsgi: Path, workdir: Path, *, workers: int, mules: int, program: bool,
                env: dict[str, str]) -> Proc:
    """uWSGI with the sigbench app imported in the master; mule 1 runs the raiser script
    when `program`, the other mules are signal-only."""
    argv = [str(uwsgi), "--master", "--processes", str(workers),
            "--socket", str(workdir / "s.sock"), "--pythonpath", str(APPS),
            "--pyimport", "sigbench", "--die-on-term", "--auto-procname"]
    for m in range(1, mules + 1):
        argv.append(f"--mule={APPS / 'sigbench_mule.py'}" if m == 1 and program else "--mule")
    ready = [rf"spawned uWSGI worker {workers}\b"]
    if mules:
        ready.append(rf"spawned uWSGI mule {mules}\b")
    return Proc(argv, env=env, workdir=workdir, ready=ready)


def switchboard_config(*, workers: int, mules: int, program: bool) -> str:
    text = (f"[switchboard]\nworkers = {workers}\nmules = {mules}\n"
            f"python-path = [{str(APPS)!r}]\nimport = [\"sigbench\"]\n")
    if program and mules:
        text += '[[mule]]\nid = 1\nprogram = "python:sigbench:mule_main"\n'
    return text


def start_switchboard(workdir: Path, *, workers: int, mules: int, program: bool,
                      env: dict[str, str]) -> Proc:
    """Switchboard with the same app; `ready:` is an INFO line, hence --log-level INFO
    (lifecycle lines only: signals are logged at DEBUG)."""
    config = workdir / "switchboard.toml"
    config.write_text(switchboard_config(workers=workers, mules=mules, program=program))
    argv = [sys.executable, "-m", "switchboard", "run", str(config), "--log-level", "INFO"]
    return Proc(argv, env=env, workdir=workdir, ready=[r"\bready:"])


class Instance(Proc):
    """A Switchboard instance from a config text (`@APPS@` = bench/apps); used by
    lua_vs_python, whose apps report through $BENCH_OUT only."""

    def __init__(self, config_text: str) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="sb-bench-"))
        self.config = workdir / "switchboard.toml"
        self.config.write_text(config_text.replace("@APPS@", str(APPS)))
        super().__init__([sys.executable, "-m", "switchboard", "run", str(self.config),
                          "--log-level", "WARNING"], workdir=workdir)


# --- statistics ---------------------------------------------------------------------------

def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]
