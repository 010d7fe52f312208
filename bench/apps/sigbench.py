"""The benchmark app: the same code runs under real uWSGI and under Switchboard.

Both load it in the master (uWSGI `--pyimport sigbench`, Switchboard `import =
["sigbench"]`), so what it registers is inherited by every child.  What to register and
what mule 1 does come from $BENCH_PLAN (JSON, written by bench/scenarios.py).

Measurements go to a shared file mapped by every process ($BENCH_SHM, created and
read by the benchmark driver): an array of int64, one region per process (worker w is
region w, mule m is region MULE_BASE + m).  Each process writes only its own region,
so handlers need no lock: a handler costs two or three int64 stores.

    region[0] handler runs   region[1] start time of the last run (monotonic ns)
    region[2] samples taken  region[8 + i] start time of run i (`stamp` handler only)

CLOCK_MONOTONIC is system-wide on Linux, so times taken in different processes (and by
the driver) compare directly.  Region 0 is the control block: the driver sets word 0
("go") once the instance is ready; mule 1 waits for it before its phases.
"""

from __future__ import annotations

import json
import mmap
import os
import time

import uwsgi

REGION = 4104             # int64 words per region (8 header words + 4096 samples)
SAMPLES = REGION - 8
REGIONS = 64
MULE_BASE = 48            # mule m uses region 48 + m; workers 1..47 use their id
SIZE = REGION * REGIONS * 8

PLAN = json.loads(os.environ.get("BENCH_PLAN", "{}"))
OUT = os.environ.get("BENCH_OUT", "/dev/null")

_fd = os.open(os.environ["BENCH_SHM"], os.O_RDWR)
_map = mmap.mmap(_fd, SIZE, mmap.MAP_SHARED)
os.close(_fd)
Q = memoryview(_map).cast("q")

_pid = 0
_base = 0
monotonic_ns = time.monotonic_ns


def region() -> int:
    """This process's region index (0 in the master)."""
    mule = uwsgi.mule_id()
    return MULE_BASE + mule if mule else uwsgi.worker_id()


def _my_base() -> int:
    global _pid, _base
    pid = os.getpid()
    if pid != _pid:
        _pid, _base = pid, region() * REGION
        Q[_base + 3] = pid
    return _base


# --- handlers -------------------------------------------------------------------------

def count(num: int) -> None:
    """Count a run and remember when it started."""
    b = _base if _pid else _my_base()
    Q[b + 1] = monotonic_ns()
    Q[b] += 1


def stamp(num: int) -> None:
    """Count a run and record its start time as a sample."""
    t = monotonic_ns()
    b = _my_base()
    n = Q[b + 2]
    Q[b + 8 + n % SAMPLES] = t
    Q[b + 2] = n + 1
    Q[b + 1] = t
    Q[b] += 1


HANDLERS = {"count": count, "stamp": stamp}


# --- what the master sets up (inherited by every child) --------------------------------

def _setup() -> None:
    for num, target, handler in PLAN.get("signals", []):
        uwsgi.register_signal(num, target, HANDLERS[handler])
    for num, seconds in PLAN.get("timers", []):
        uwsgi.add_timer(num, seconds)
    for num, path in PLAN.get("monitors", []):
        uwsgi.add_file_monitor(num, path)


if uwsgi.masterpid() == os.getpid():
    _setup()


# --- mule 1: the raiser ----------------------------------------------------------------

def report(line: str) -> None:
    with open(OUT, "a") as f:
        f.write(line + "\n")


def runs(regions: list[int]) -> int:
    """Handler runs so far in these regions."""
    return sum(Q[r * REGION] for r in regions)


_TICK = os.sysconf("SC_CLK_TCK")


def family_cpu() -> dict[str, float]:
    """CPU seconds (user + system) so far of the master and its children, by role:
    `raiser` is this process; titles tell workers from other processes."""
    master, me = uwsgi.masterpid(), os.getpid()
    out = {"master": 0.0, "workers": 0.0, "raiser": 0.0, "other": 0.0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(entry)
        if pid != master and int(fields[1]) != master:
            continue
        role = ("master" if pid == master else "raiser" if pid == me
                else "workers" if " worker " in f" {title} " else "other")
        out[role] += (int(fields[11]) + int(fields[12])) / _TICK
    return out


def burst(p: dict) -> None:
    """Raise p["n"] signals as fast as allowed; wait until the handlers went quiet.

    With p["window"] > 0 the raiser keeps at most that many handler runs pending
    (raised * fanout - handled), polling the shared counters: uWSGI's only lossless mode.
    """
    regions, fanout, window, sig = p["regions"], p["fanout"], p["window"], p["signal"]
    n, signal, sleep = p["n"], uwsgi.signal, time.sleep
    cpu0 = family_cpu()
    base = runs(regions)
    t0 = monotonic_ns()
    if window:
        done = 0
        for i in range(n):
            if i * fanout - done >= window:
                done = runs(regions) - base
                while i * fanout - done >= window:
                    sleep(0.00005)
                    done = runs(regions) - base
            signal(sig)
    else:
        for _ in range(n):
            signal(sig)
    t_raised = monotonic_ns()
    want, seen, quiet_since = n * fanout, -1, time.monotonic()
    while True:
        got = runs(regions) - base
        if got >= want:
            break
        if got != seen:
            seen, quiet_since = got, time.monotonic()
        elif time.monotonic() - quiet_since > p.get("quiet", 1.0):
            break
        sleep(0.001)
    last = max(Q[r * REGION + 1] for r in regions)
    cpu = " ".join(f"cpu_{k}={v - cpu0[k]:.3f}" for k, v in family_cpu().items())
    report(f"phase {p['name']} raised={n * fanout} handled={got} t0={t0} "
           f"raised_at={t_raised} last={last} {cpu}")


def latency(p: dict) -> None:
    """Raise one signal at a time; sample = handler start - time before raising."""
    regions, fanout, sig = p["regions"], p["fanout"], p["signal"]
    samples, lost = [], 0
    for _ in range(p["n"]):
        before = [Q[r * REGION] for r in regions]
        want = sum(before) + fanout
        t0 = monotonic_ns()
        uwsgi.signal(sig)
        deadline = time.monotonic() + 2.0
        while runs(regions) < want and time.monotonic() < deadline:
            time.sleep(0.0001)
        for r, b in zip(regions, before, strict=True):
            if Q[r * REGION] > b:
                samples.append(Q[r * REGION + 1] - t0)
        lost += max(0, want - runs(regions))
        time.sleep(p.get("gap", 0.001))
    report(f"phase {p['name']} lost={lost} samples={','.join(map(str, samples))}")


PHASES = {"burst": burst, "latency": latency}


def mule_main() -> None:
    """Mule 1's program: wait for the driver's go, run the plan's phases, then idle."""
    _my_base()
    report("mule-started")
    while Q[0] == 0:
        time.sleep(0.005)
    for phase in PLAN.get("phases", []):
        PHASES[phase["kind"]](phase)
    report("phases-done")
    while True:               # a uWSGI mule script that returns is run again
        time.sleep(3600)
