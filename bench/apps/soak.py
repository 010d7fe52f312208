"""The soak app (bench/soak.py): one handler for every target kind, and a driver.

Mule 3 runs `driver`: it raises $SOAK_SIGNALS signals round-robin over every signal
below, in batches, and keeps its progress in a file so a reload (which replaces it)
costs at most one batch.  Between batches it drains what is queued for itself (the
`mules` broadcast reaches it too) with signal_wait(timeout=0).
"""

from __future__ import annotations

import os

import uwsgi

OUT = os.environ.get("BENCH_OUT", "/dev/null")
TOTAL = int(os.environ.get("SOAK_SIGNALS", "0"))
PROGRESS = os.path.join(os.path.dirname(OUT), "progress")
BATCH = 2000
RAISED = (10, 11, 12, 13, 14, 15, 16, 17, 18)

runs = 0


def count(num: int) -> None:
    """The handler of every signal: as cheap as a handler gets, so the soak is about
    the runtime, not the app."""
    global runs
    runs += 1


def _progress() -> int:
    try:
        with open(PROGRESS) as f:
            return int(f.read() or 0)
    except FileNotFoundError:
        return 0


def _drain() -> None:
    while uwsgi.signal_wait(timeout=0) is not None:
        pass


def driver() -> None:
    done = _progress()
    while done < TOTAL:
        for i in range(min(BATCH, TOTAL - done)):
            uwsgi.signal(RAISED[(done + i) % len(RAISED)])
        done += min(BATCH, TOTAL - done)
        with open(PROGRESS + ".tmp", "w") as f:
            f.write(str(done))
        os.replace(PROGRESS + ".tmp", PROGRESS)
        _drain()
    with open(OUT, "a") as f:
        f.write("driver-done\n")
    while True:
        uwsgi.signal_wait()
