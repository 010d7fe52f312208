"""Cross-node signals: raise->start latency and throughput between two instances.

Starts a private PostgreSQL (or uses --dsn), two Switchboard instances `a` and `b` in
one cluster on this machine, then:
- latency: a worker of `a` raises N lone signals on `b` (5 ms apart); each one's
  latency is the time from just before `uwsgi.signal(80, "b")` to the start of its
  handler on `b` (one clock: the same machine);
- throughput: every worker of `a` raises M signals on `b` as fast as PostgreSQL commits
  them; signals/s from the first raise to the last start on `b`, and whether every one
  arrived (nothing lost) and none twice.

    .venv/bin/python bench/cluster.py [--n 500] [--m 5000] [--workers 4] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import APPS, Proc, percentile  # noqa: E402


@contextlib.contextmanager
def private_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on a unix socket (initdb + pg_ctl), its dsn."""
    found = shutil.which("initdb") or (sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
                                       or [None])[-1]
    if found is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql), "
                 "or give --dsn")
    bindir = os.path.dirname(os.path.realpath(found))
    folder = tempfile.mkdtemp(prefix="sb-bench-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd
        pw = pwd.getpwnam("postgres")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(folder, "data"), 55000 + os.getpid() % 1000
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U",
                    "postgres"], check=True, capture_output=True)
    pg_ctl = [*as_user, f"{bindir}/pg_ctl", "-D", data, "-w", "-l",
              os.path.join(folder, "log")]
    subprocess.run([*pg_ctl, "-o", f"-p {port} -k {folder} -c listen_addresses=''",
                    "start"], check=True, capture_output=True)
    try:
        yield f"host={folder} port={port} user=postgres dbname=postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def start(node: str, dsn: str, cluster: str, workers: int, signals: str, env: dict[str, str]
          ) -> Proc:
    workdir = Path(tempfile.mkdtemp(prefix=f"sb-bench-{node}-"))
    config = workdir / "switchboard.toml"
    config.write_text(f"[switchboard]\nworkers = {workers}\npython-path = [{str(APPS)!r}]\n"
                      f"control = {str(workdir / 'control.sock')!r}\n{signals}\n"
                      f"[cluster]\ndsn = {dsn!r}\nname = {cluster!r}\nnode = {node!r}\n"
                      "heartbeat = 1\n")
    argv = [sys.executable, "-m", "switchboard", "run", str(config), "--log-level", "INFO"]
    proc = Proc(argv, env=env, workdir=workdir, ready=[r"\bready:"])
    proc.wait_ready()
    return proc


def raise_local(proc: Proc, num: int) -> None:
    subprocess.run([sys.executable, "-m", "switchboard", "signal", str(num), "--control",
                    str(proc.dir / "control.sock")], check=True)


def stats(proc: Proc) -> dict[str, Any]:
    """The instance's stats document (its `cluster` section: sent, commits)."""
    out = subprocess.run([sys.executable, "-m", "switchboard", "stats", "--json", "--control",
                          str(proc.dir / "control.sock")], check=True, capture_output=True,
                         text=True).stdout
    return dict(json.loads(out))


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def wait_lines(path: Path, count: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(found := lines(path)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def run(dsn: str, n: int, m: int, workers: int) -> dict[str, float]:
    env = {"CLUSTER_BENCH_N": str(n), "CLUSTER_BENCH_M": str(m)}
    cluster = f"bench{os.getpid()}"
    handler = '[[signal]]\nnum = {0}\ntarget = "{1}"\nhandler = "python:clusterbench:{2}"\n'
    b = start("b", dsn, cluster, 2, handler.format(80, "worker", "started")
              + handler.format(81, "worker", "started"), env)
    a = start("a", dsn, cluster, workers, handler.format(90, "worker1", "lone")
              + handler.format(91, "workers", "stream"), env)
    try:
        raise_local(a, 90)
        raised = [float(t) for t in wait_lines(a.dir / "raised.txt", n, 120)]
        begun = [float(t) for t in wait_lines(b.dir / "started-80.txt", n, 30)]
        latency = [(s - r) * 1e6 for r, s in zip(raised, begun, strict=True)]
        raise_local(a, 91)
        total = m * workers
        wait_lines(a.dir / "stream.txt", 2 * workers, 300)
        starts = [float(t) for t in wait_lines(b.dir / "started-81.txt", total, 120)]
        time.sleep(2.0)                      # two heartbeats: anything twice shows now
        starts = [float(t) for t in lines(b.dir / "started-81.txt")]
        spans = [float(t) for t in lines(a.dir / "stream.txt")]
        first, last_raise = min(spans[0::2]), max(spans[1::2])
        sent = stats(a)["cluster"]
        return {"latency_p50_us": percentile(latency, 50),
                "latency_p99_us": percentile(latency, 99),
                "latency_max_us": max(latency), "lone_signals": len(latency),
                "raised": total, "arrived": len(starts),
                "raise_per_s": total / (last_raise - first),
                "throughput_per_s": len(starts) / (max(starts) - first),
                "raises_per_commit": sent["sent"] / max(1, sent["commits"])}
    finally:
        for proc in (a, b):
            proc.stop()
            proc.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="lone signals for the latency")
    parser.add_argument("--m", type=int, default=5000, help="signals per raising worker")
    parser.add_argument("--workers", type=int, default=4, help="raising workers on node a")
    parser.add_argument("--dsn", help="an existing PostgreSQL (default: a private one)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        dsn = args.dsn or stack.enter_context(private_postgres())
        result = run(dsn, args.n, args.m, args.workers)
    print("| Metric | Value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key} | {value:,.2f} |" if key == "raises_per_commit" else
              f"| {key} | {value:,.0f} |")
    lost = result["raised"] - result["arrived"]
    print(f"\nlost: {max(0, lost):.0f}, twice: {max(0, -lost):.0f}")


if __name__ == "__main__":
    main()
