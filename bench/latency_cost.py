"""What recording raise-to-start latency costs lossless throughput (issue 12's budget: 5 %).

Run: python bench/latency_cost.py [--rounds 6] [--n 200000]

Builds build/no-latency/runtime, a copy of the runtime whose workers skip the
recording (the blocks between `latency recording` markers in procs/child.py),
then runs bench/run.py's lossless `worker` scenario (2 workers, one raiser, target
`worker`) alternately on the runtime as it is and on that copy, through PYTHONPATH, and
prints each round and the medians: handled/s and CPU µs per signal of all processes.
On a shared machine, CPU per signal is the steadier of the two: the rate moves with
whatever else runs, the CPU each signal takes much less.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

from harness import REPO
from scenarios import SB, Context, _throughput

BEGIN = "# -- latency recording"
END = "# -- end of latency recording"
STRIPPED = REPO / "build" / "no-latency"


def build_stripped() -> Path:
    """A runtime copy without the recording; fails loudly if the markers moved."""
    shutil.rmtree(STRIPPED, ignore_errors=True)
    runtime = STRIPPED / "runtime"
    shutil.copytree(REPO / "runtime", runtime,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    child = runtime / "switchboard" / "procs" / "child.py"
    lines = child.read_text().splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip().startswith(BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if (not starts or len(starts) != len(ends)
            or any(not s < e for s, e in zip(starts, ends, strict=True))
            or any(not e < s for e, s in zip(ends, starts[1:], strict=False))):
        sys.exit(f"{child}: expected '{BEGIN}' ... '{END}' blocks")
    for start, end in reversed(list(zip(starts, ends, strict=True))):
        del lines[start:end + 1]
    child.write_text("".join(lines))
    return runtime


def one_round(ctx: Context, n: int, pythonpath: str | None) -> dict[str, float]:
    saved = os.environ.pop("PYTHONPATH", None)
    if pythonpath:
        os.environ["PYTHONPATH"] = pythonpath
    try:
        return _throughput(ctx, SB, target="worker", workers=2, n=n)
    finally:
        os.environ.pop("PYTHONPATH", None)
        if saved is not None:
            os.environ["PYTHONPATH"] = saved


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()
    stripped = str(build_stripped())
    ctx = Context(uwsgi=Path("/nonexistent"), quick=False)
    runs: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
    print("| round | recording | handled/s | CPU µs/signal | of which workers | load |\n"
          "| --- | --- | ---: | ---: | ---: | ---: |")
    for i in range(1, args.rounds + 1):
        for name, path in (("with", None), ("without", stripped)):
            result = one_round(ctx, args.n, path)
            runs[name].append(result)
            print(f"| {i} | {name} | {result['lossless_rate']:,.0f} | "
                  f"{result['lossless_cpu_us']:.2f} | {result['lossless_cpu_workers_us']:.2f} | "
                  f"{os.getloadavg()[0]:.2f} |", flush=True)
    rate = {k: statistics.median(r["lossless_rate"] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r["lossless_cpu_us"] for r in v) for k, v in runs.items()}
    workers = {k: statistics.median(r["lossless_cpu_workers_us"] for r in v)
               for k, v in runs.items()}
    print(f"\nmedians: {rate['with']:,.0f} vs {rate['without']:,.0f} handled/s "
          f"({(1 - rate['with'] / rate['without']) * 100:+.1f} % cost); "
          f"{cpu['with']:.2f} vs {cpu['without']:.2f} CPU µs per signal "
          f"({(cpu['with'] / cpu['without'] - 1) * 100:+.1f} %), of which the workers "
          f"{workers['with']:.2f} vs {workers['without']:.2f}")


if __name__ == "__main__":
    main()
