"""Benchmark app: worker 1 raises N signals for worker 2, then a final one that reports.

Order from one raiser to one process is kept, so when `report` runs on worker 2 every
earlier signal has been handled.
"""

import os
import time

import uwsgi
from uwsgidecorators import postfork

N = int(os.environ.get("BENCH_N", "100000"))
KIND = os.environ["BENCH_KIND"]          # "python" or "lua"
count = 0


def handler(num):
    global count
    count += 1


def report(num):
    with open(os.environ["BENCH_OUT"], "a") as f:
        f.write(f"done {time.perf_counter()} {count}\n")


@postfork
def raise_all():
    if uwsgi.worker_id() != 1:
        return
    num = 1 if KIND == "python" else 2
    with open(os.environ["BENCH_OUT"], "a") as f:
        f.write(f"start {time.perf_counter()}\n")
    for _ in range(N):
        uwsgi.signal(num)
    uwsgi.signal(3)
