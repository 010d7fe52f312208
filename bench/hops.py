"""Where a lone signal's time goes in Switchboard, hop by hop (the latency analysis).

Run: python bench/hops.py [--n 1000] [--target worker]
Starts an instance (2 workers, 2 mules) whose app (apps/hops.py) stamps each step of
the path raiser -> master -> worker, raises one signal at a time for the target
(`worker`, the group's shared channel, or `worker1`, the worker's own), 1 ms apart, and
prints the median and p90 of each hop in µs.  The stamps cost about a
microsecond each, so the total is a little above the benchmark's latency.
"""

from __future__ import annotations

import argparse
import os
import time

from harness import Instance

CONFIG = """
[switchboard]
workers = 2
mules = 2
python-path = ["@APPS@"]
import = ["hops"]
[[mule]]
id = 1
program = "python:hops:mule_main"
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--target", choices=["worker", "worker1"], default="worker")
    args = parser.parse_args()
    os.environ["BENCH_N"], os.environ["BENCH_TARGET"] = str(args.n), args.target
    inst = Instance(CONFIG)
    try:
        total = inst.wait_for("total", timeout=60 + args.n * 0.01)
        time.sleep(0.1)
        hops = [line[4:].split("|") for line in inst.lines() if line.startswith("hop ")]
    finally:
        inst.stop()
    inst.cleanup()
    print("| path | hop | p50 µs | p90 µs |\n| --- | --- | ---: | ---: |")
    for path, name, p50, p90 in hops:
        print(f"| {path} | {name} | {p50} | {p90} |")
    p50, p90, direct, master, skipped = total.split("|")
    print(f"| both | total (raise -> handler start) | {p50} | {p90} |")
    print(f"\n{direct} signals straight in, {master} through the master "
          f"({skipped} left out: a stamp came from another wake-up)")


if __name__ == "__main__":
    main()
