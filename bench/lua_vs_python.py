"""Lua handler vs Python handler dispatch throughput (issue: Lua >= 0.9x Python).

Run: python bench/lua_vs_python.py [--rounds 5] [--n 100000]
Each round runs both kinds alternately; prints medians and the ratio.  bench/run.py runs
the same measurement as its scenario 4 (`run_once`).
"""

from __future__ import annotations

import argparse
import os

from harness import Instance, median

CONFIG = """
[switchboard]
workers = 2
python-path = ["@APPS@"]
[[signal]]
num = 1
target = "worker2"
handler = "python:lua_vs_python:handler"
[[signal]]
num = 2
target = "worker2"
handler = "lua:@APPS@/lua_vs_python.lua:handler"
[[signal]]
num = 3
target = "worker2"
handler = "python:lua_vs_python:report"
"""


def run_once(kind: str, n: int) -> float:
    os.environ["BENCH_KIND"], os.environ["BENCH_N"] = kind, str(n)
    inst = Instance(CONFIG)
    try:
        start = float(inst.wait_for("start"))
        end = float(inst.wait_for("done").split()[0])
    finally:
        inst.stop()
    inst.cleanup()
    return n / (end - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=100000)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"python": [], "lua": []}
    for _ in range(args.rounds):
        for kind in rates:
            rates[kind].append(run_once(kind, args.n))
    py, lua = median(rates["python"]), median(rates["lua"])
    print("| handler | signals/s (median) |\n| --- | --- |")
    print(f"| python | {py:,.0f} |\n| lua | {lua:,.0f} |")
    print(f"\nlua / python = {lua / py:.2f}")


if __name__ == "__main__":
    main()
