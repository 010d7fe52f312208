"""Switchboard against real uWSGI 2.0.31, side by side.  See docs/benchmarks.md.

    python bench/run.py [--quick] [--rounds N] [--json PATH] [--only CASE,...]

Installs uWSGI into build/uwsgi-venv if it is missing, then runs every scenario on
uWSGI and on Switchboard alternately (uWSGI, Switchboard, uWSGI, ...) for several
rounds, prints a markdown table (each metric's median for both, their ratio, the goals
met or missed) and writes every measurement to a JSON file.  `--quick` runs each
scenario once, briefly (tests/bench/test_quick.py), to keep the benchmark from rotting.
Run it with the Python that has Switchboard installed (the repository's .venv).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from harness import REPO
from report import summarize, table
from scenarios import Context, cases

UWSGI_VERSION = "2.0.31"
UWSGI_VENV = REPO / "build" / "uwsgi-venv"


def ensure_uwsgi(path: Path) -> Path:
    """uWSGI's binary; pip-installs uWSGI into build/uwsgi-venv when it is missing.

    The venv is made with this interpreter (venv uses its base Python), so uWSGI embeds
    the same Python version that runs Switchboard.
    """
    if path.exists():
        return path
    if path != UWSGI_VENV / "bin" / "uwsgi":
        sys.exit(f"no uWSGI at {path}")
    print(f"installing uWSGI {UWSGI_VERSION} into {UWSGI_VENV} (compiles; takes a minute)",
          file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(UWSGI_VENV)], check=True)
    subprocess.run([str(UWSGI_VENV / "bin" / "pip"), "install", "-q",
                    f"uwsgi=={UWSGI_VERSION}"], check=True)
    return path


def machine(uwsgi: Path) -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    version = subprocess.run([str(uwsgi), "--version"], capture_output=True, text=True)
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True)
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "python": platform.python_version(), "uwsgi": version.stdout.strip(),
            "switchboard_commit": commit.stdout.strip() or "unknown",
            "loadavg_at_start": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def header(info: dict[str, Any], rounds: int, quick: bool, elapsed: float) -> str:
    return (f"{'Quick run' if quick else 'Benchmark'}: {rounds} round(s), medians; "
            f"{info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}, "
            f"Python {info['python']}, Switchboard {info.get('switchboard_commit', '?')}; "
            f"{elapsed:.0f} s.\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every scenario once, briefly")
    parser.add_argument("--rounds", type=int, help="rounds (default 5; 1 with --quick)")
    parser.add_argument("--json", type=Path, help="where to write the results "
                        "(default build/bench/results[-quick].json)")
    parser.add_argument("--only", help="comma-separated case names (worker, broadcast, "
                        "latency, lua, timer_1s, timer_10ms, filemon, memory, startup, "
                        "scaling_N)")
    parser.add_argument("--uwsgi", type=Path, default=UWSGI_VENV / "bin" / "uwsgi",
                        help="the uWSGI binary (default: build/uwsgi-venv/bin/uwsgi)")
    parser.add_argument("--keep", action="store_true",
                        help="keep each instance's folder under /tmp (logs)")
    parser.add_argument("--report", type=Path, metavar="JSON",
                        help="print the table of an earlier run's JSON file, run nothing")
    args = parser.parse_args(argv)
    if args.report:
        saved = json.loads(args.report.read_text())
        text, goals = table(summarize(saved["results"], saved["quick"]))
        print(header(saved["machine"], saved["rounds"], saved["quick"], saved["elapsed_s"]))
        print(text + f"\n\ngoals met: {sum(1 for g in goals if g['met'])} of {len(goals)}")
        return 0
    rounds = args.rounds or (1 if args.quick else 5)
    out_path = args.json or REPO / "build" / "bench" / (
        "results-quick.json" if args.quick else "results.json")

    ctx = Context(uwsgi=ensure_uwsgi(args.uwsgi.resolve()), quick=args.quick, keep=args.keep)
    todo = cases(args.quick)
    if args.only:
        wanted = set(args.only.split(","))
        todo = [c for c in todo if c.name in wanted]
    info = machine(ctx.uwsgi)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        c.name: {side: [] for side in c.sides} for c in todo}
    errors = 0
    started = time.monotonic()
    for r in range(1, rounds + 1):
        for case in todo:
            for side in case.sides:          # alternate: uWSGI, Switchboard, uWSGI, ...
                t, load = time.monotonic(), os.getloadavg()[0]
                got: dict[str, Any]
                try:
                    got = dict(case.run(ctx, side))
                except Exception as e:       # noqa: BLE001 - recorded, the run goes on
                    errors += 1
                    got = {"error": f"{type(e).__name__}: {e}"}
                    traceback.print_exc()
                got["load1"] = load          # the machine's load before the run
                results[case.name][side].append(got)
                print(f"[round {r}/{rounds}] {case.name:<11} {side:<11} "
                      f"{time.monotonic() - t:6.1f} s"
                      + (f"  ERROR {got['error'].splitlines()[0]}" if "error" in got else ""),
                      file=sys.stderr, flush=True)

    summary = summarize(results, args.quick)
    text, goals = table(summary)
    elapsed = time.monotonic() - started
    print(header(info, rounds, args.quick, elapsed))
    print(text)
    met = sum(1 for g in goals if g["met"])
    print(f"\ngoals met: {met} of {len(goals)}" + (f"; {errors} run(s) failed" if errors else ""))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({
        "machine": info, "quick": args.quick, "rounds": rounds, "elapsed_s": elapsed,
        "results": results, "medians": summary.med, "goals": goals, "table": text,
    }, indent=1))
    print(f"results: {out_path}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
