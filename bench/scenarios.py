"""The benchmark scenarios.  Each case runs once per side per round and returns metrics.

A case is a function `(ctx, side) -> {metric: number}`; `side` is "uwsgi" or
"switchboard".  Both sides run the same app (apps/sigbench.py); only the way it is
started differs (harness.start_uwsgi / harness.start_switchboard).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lua_vs_python
from harness import MULE_BASE, Proc, Shm, median, percentile, start_switchboard, start_uwsgi

UWSGI, SB = "uwsgi", "switchboard"
BOTH = (UWSGI, SB)
WINDOW = 128            # uWSGI lossless mode: at most this many handler runs in flight


@dataclass
class Context:
    uwsgi: Path
    quick: bool
    keep: bool = False                 # keep each instance's folder (logs) for debugging

    def size(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full


@dataclass
class Case:
    name: str                           # key in the results
    title: str
    run: Callable[[Context, str], dict[str, float]]
    sides: tuple[str, ...] = BOTH


def instance(ctx: Context, side: str, *, workers: int, mules: int = 0, program: bool = False,
             plan: dict[str, Any], body: Callable[[Proc, Shm], dict[str, float]],
             prepare: Callable[[Path], dict[str, Any]] | None = None) -> dict[str, float]:
    """Start one instance with `plan`, wait until it is ready, run `body`, stop it."""
    workdir = Path(tempfile.mkdtemp(prefix=f"sb-bench-{side}-"))
    if prepare is not None:
        plan = {**plan, **prepare(workdir)}
    shm = Shm(workdir / "shm")
    env = {"BENCH_PLAN": json.dumps(plan), "BENCH_SHM": str(shm.path)}
    proc = (start_uwsgi(ctx.uwsgi, workdir, workers=workers, mules=mules, program=program,
                        env=env) if side == UWSGI
            else start_switchboard(workdir, workers=workers, mules=mules, program=program,
                                   env=env))
    ok = False
    try:
        ready = proc.wait_ready()
        result = body(proc, shm)
        result.setdefault("ready_s", ready)
        ok = True
        return result
    finally:
        proc.stop()
        shm.close()
        if ok and not ctx.keep:
            proc.cleanup()


def phases(proc: Proc, shm: Shm, timeout: float) -> dict[str, dict[str, str]]:
    """Let mule 1 run its phases; their reports by phase name."""
    proc.wait_for("mule-started", timeout=60)
    shm.go()
    proc.wait_for("phases-done", timeout=timeout)
    out = {}
    for line in proc.lines():
        if line.startswith("phase "):
            name, *fields = line.split()[1:]
            out[name] = dict(f.split("=", 1) for f in fields)
    return out


def burst_metrics(r: dict[str, str]) -> dict[str, float]:
    handled, raised = int(r["handled"]), int(r["raised"])
    seconds = (int(r["last"]) - int(r["t0"])) / 1e9
    out = {"rate": handled / seconds if seconds > 0 else 0.0, "lost": raised - handled,
           "us_per_signal": seconds / handled * 1e6 if handled else float("inf")}
    for role in ("master", "workers", "raiser", "other"):     # CPU µs per handled signal
        out[f"cpu_{role}_us"] = float(r[f"cpu_{role}"]) / max(1, handled) * 1e6
    out["cpu_us"] = sum(out[f"cpu_{role}_us"] for role in ("master", "workers", "raiser", "other"))
    return out


# --- 1, 2, 9: throughput ------------------------------------------------------------------

def _throughput(ctx: Context, side: str, *, target: str, workers: int, n: int,
                free: bool = True) -> dict[str, float]:
    regions = list(range(1, workers + 1))
    fanout = workers if target == "workers" else 1
    burst = {"kind": "burst", "signal": 1, "regions": regions, "fanout": fanout, "n": n}
    plan_phases = []
    if free or side == SB:            # Switchboard never drops: unthrottled is lossless
        plan_phases.append({**burst, "name": "free", "window": 0})
    if side == UWSGI:
        plan_phases.append({**burst, "name": "throttled", "window": WINDOW})
    plan = {"signals": [[1, target, "count"]], "phases": plan_phases}

    def body(proc: Proc, shm: Shm) -> dict[str, float]:
        got = phases(proc, shm, timeout=600)
        out: dict[str, float] = {}
        if free:
            m = burst_metrics(got["free"])
            out.update(free_rate=m["rate"], free_lost=m["lost"])
        m = burst_metrics(got["throttled" if side == UWSGI else "free"])
        out.update(lossless_rate=m["rate"], lossless_lost=m["lost"],
                   us_per_signal=m["us_per_signal"],
                   **{f"lossless_{k}": v for k, v in m.items() if k.startswith("cpu_")})
        return out

    return instance(ctx, side, workers=workers, mules=1, program=True, plan=plan, body=body)


def worker_throughput(ctx: Context, side: str) -> dict[str, float]:
    return _throughput(ctx, side, target="worker", workers=2, n=ctx.size(200_000, 3_000))


def broadcast(ctx: Context, side: str) -> dict[str, float]:
    return _throughput(ctx, side, target="workers", workers=2, n=ctx.size(100_000, 1_500))


def scaling(workers: int) -> Callable[[Context, str], dict[str, float]]:
    def run(ctx: Context, side: str) -> dict[str, float]:
        return _throughput(ctx, side, target="worker", workers=workers,
                           n=ctx.size(150_000, 1_500), free=False)
    return run


# --- 3: latency ---------------------------------------------------------------------------

LATENCY_TARGETS = (("worker", 2, [1, 2], 1), ("workers", 3, [1, 2], 2),
                   ("mule2", 4, [MULE_BASE + 2], 1))


def latency(ctx: Context, side: str) -> dict[str, float]:
    n = ctx.size(1000, 50)
    plan = {"signals": [[num, target, "stamp"] for target, num, _, _ in LATENCY_TARGETS],
            "phases": [{"kind": "latency", "name": target, "signal": num, "regions": regions,
                        "fanout": fanout, "n": n, "gap": 0.001}
                       for target, num, regions, fanout in LATENCY_TARGETS]}

    def body(proc: Proc, shm: Shm) -> dict[str, float]:
        got = phases(proc, shm, timeout=600)
        out: dict[str, float] = {}
        for target, *_ in LATENCY_TARGETS:
            us = [int(v) / 1000 for v in got[target]["samples"].split(",") if v]
            out[f"{target}_p50"] = percentile(us, 50)
            out[f"{target}_p99"] = percentile(us, 99)
            out[f"{target}_max"] = max(us)
            out[f"{target}_lost"] = int(got[target]["lost"])
        return out

    return instance(ctx, side, workers=2, mules=2, program=True, plan=plan, body=body)


# --- 4: Lua vs Python (Switchboard only) --------------------------------------------------

def lua_python(ctx: Context, side: str) -> dict[str, float]:
    """bench/lua_vs_python.py's measurement: Python then Lua, a few pairs back to back;
    the ratio is the median of the pairs' ratios (a pair shares the machine's mood)."""
    n, pairs = ctx.size(200_000, 3_000), ctx.size(3, 1)
    py, lua = [], []
    for _ in range(pairs):
        py.append(lua_vs_python.run_once("python", n))
        lua.append(lua_vs_python.run_once("lua", n))
    return {"python_rate": median(py), "lua_rate": median(lua),
            "lua_over_python": median([b / a for a, b in zip(py, lua, strict=True)])}


# --- 5: timers ----------------------------------------------------------------------------

def timer_metrics(ticks_ns: list[int], period: float) -> dict[str, float]:
    """How far tick k is from t0 + k * period (ms).

    The first tick is a warm-up and is left out.  t0 is the schedule's phase as the
    ticks show it (the first tick's time plus the median offset), so one late tick at
    the start does not shift every offset; drift is the least-squares slope of the
    offsets over the run, times the run's length.
    """
    ticks = ticks_ns[1:]
    first, p = ticks[0], period * 1e9
    ks = [round((t - first) / p) for t in ticks]
    raw = [(t - (first + k * p)) / 1e6 for t, k in zip(ticks, ks, strict=True)]
    mid = statistics.median(raw)
    offsets = [o - mid for o in raw]
    k_mean, o_mean = statistics.fmean(ks), statistics.fmean(offsets)
    var = sum((k - k_mean) ** 2 for k in ks)
    slope = sum((k - k_mean) * (o - o_mean) for k, o in zip(ks, offsets, strict=True)) / var \
        if var else 0.0
    return {"ticks": len(ticks), "missed": ks[-1] + 1 - len(set(ks)),
            "mean_ms": o_mean, "stdev_ms": statistics.pstdev(offsets),
            "p99_ms": percentile([abs(o) for o in offsets], 99),
            "max_ms": max(abs(o) for o in offsets), "drift_ms": slope * ks[-1]}


def _timer(ctx: Context, side: str, period: float, ticks: int) -> dict[str, float]:
    plan = {"signals": [[5, "worker", "stamp"]], "timers": [[5, period]]}

    def body(proc: Proc, shm: Shm) -> dict[str, float]:
        want = ticks + 1
        deadline = time.monotonic() + want * period + 30
        while shm.runs([1, 2]) < want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{shm.runs([1, 2])} of {want} timer ticks; "
                                   f"log:\n{proc.log_tail()}")
            time.sleep(min(period / 4, 0.05))
        return timer_metrics(shm.samples([1, 2])[:want], period)

    return instance(ctx, side, workers=2, plan=plan, body=body)


def timer_1s(ctx: Context, side: str) -> dict[str, float]:
    return _timer(ctx, side, 1, ctx.size(15, 2))       # uWSGI timers are whole seconds


def timer_10ms(ctx: Context, side: str) -> dict[str, float]:
    return _timer(ctx, side, 0.01, ctx.size(1000, 100))


# --- 6: file monitor ----------------------------------------------------------------------

def filemon(ctx: Context, side: str) -> dict[str, float]:
    n, gap = ctx.size(40, 4), 0.15

    def prepare(workdir: Path) -> dict[str, Any]:
        (workdir / "watched").mkdir()
        (workdir / "touched").write_text("")
        return {"monitors": [[6, str(workdir / "watched")], [7, str(workdir / "touched")]]}

    plan = {"signals": [[6, "worker", "stamp"], [7, "worker", "stamp"]]}

    def body(proc: Proc, shm: Shm) -> dict[str, float]:
        serial = iter(range(10**9))

        def create() -> None:
            path = proc.dir / "watched" / f"f{next(serial)}"
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))

        def touch() -> None:
            os.utime(proc.dir / "touched")

        def sample(action: Callable[[], None], timeout: float) -> float | None:
            before = [shm.count(r) for r in (1, 2)]
            t0 = time.monotonic_ns()
            action()
            deadline = time.monotonic() + timeout
            while shm.runs([1, 2]) == sum(before) and time.monotonic() < deadline:
                time.sleep(0.0001)
            changed = [r for r, b in zip((1, 2), before, strict=True) if shm.count(r) > b]
            time.sleep(gap)                   # past Switchboard's 50 ms burst window
            return (shm.last(changed[0]) - t0) / 1e6 if changed else None

        out: dict[str, float] = {}
        for name, action in (("create", create), ("touch", touch)):
            # uWSGI's master registers monitors on its next cycle: wait for a first event.
            deadline = time.monotonic() + 15
            while sample(action, 0.3) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"file monitor '{name}' never fired; "
                                       f"log:\n{proc.log_tail()}")
            ms = [s for s in (sample(action, 2.0) for _ in range(n)) if s is not None]
            out[f"{name}_p50_ms"] = percentile(ms, 50)
            out[f"{name}_p90_ms"] = percentile(ms, 90)
            out[f"{name}_missed"] = n - len(ms)
        return out

    return instance(ctx, side, workers=2, plan=plan, body=body, prepare=prepare)


# --- 7: memory ----------------------------------------------------------------------------

def smaps(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of a process in KiB."""
    pss = rss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
        elif line.startswith("Rss:"):
            rss = int(line.split()[1])
    return pss, rss


def memory(ctx: Context, side: str) -> dict[str, float]:
    plan = {"signals": [[1, "workers", "count"]],
            "phases": [{"kind": "burst", "name": "warm", "signal": 1, "regions": [1, 2],
                        "fanout": 2, "n": 200, "window": WINDOW}]}

    def body(proc: Proc, shm: Shm) -> dict[str, float]:
        phases(proc, shm, timeout=120)
        time.sleep(0.5)
        roles: dict[str, list[tuple[int, int]]] = {}
        for pid, title in proc.family().items():
            words = title.split()
            role = next((w for w in ("master", "worker", "mule") if w in words[:3]), "other")
            if pid == proc.proc.pid:
                role = "master"
            roles.setdefault(role, []).append(smaps(pid))
        out: dict[str, float] = {}
        for role in ("master", "worker", "mule", "other"):
            got = roles.get(role, [])
            out[f"{role}_count"] = len(got)
            out[f"{role}_pss_mb"] = sum(p for p, _ in got) / 1024 / max(1, len(got))
            out[f"{role}_rss_mb"] = sum(r for _, r in got) / 1024 / max(1, len(got))
        every = [x for got in roles.values() for x in got]
        out["total_pss_mb"] = sum(p for p, _ in every) / 1024
        out["total_rss_mb"] = sum(r for _, r in every) / 1024
        return out

    return instance(ctx, side, workers=2, mules=1, program=True, plan=plan, body=body)


# --- 8: start-up --------------------------------------------------------------------------

def startup(ctx: Context, side: str) -> dict[str, float]:
    """Command to ready with 4 workers (median of a few starts)."""
    plan = {"signals": [[1, "worker", "count"]]}

    def settle(proc: Proc, shm: Shm) -> dict[str, float]:
        # uWSGI's master, stopped while its workers still boot, waits out its 60 s mercy.
        time.sleep(0.3)
        return {}

    times = [instance(ctx, side, workers=4, plan=plan, body=settle)["ready_s"]
             for _ in range(ctx.size(3, 1))]
    return {"ready_s": median(times)}


# --- the list -----------------------------------------------------------------------------

def cases(quick: bool) -> list[Case]:
    out = [
        Case("worker", "1. throughput to `worker`", worker_throughput),
        Case("broadcast", "2. broadcast to `workers`", broadcast),
        Case("latency", "3. latency raise -> handler start", latency),
        Case("lua", "4. Lua vs Python handlers", lua_python, sides=(SB,)),
        Case("timer_1s", "5. timer, 1 s period", timer_1s),
        Case("timer_10ms", "5. timer, 10 ms period", timer_10ms, sides=(SB,)),
        Case("filemon", "6. file monitor", filemon),
        Case("memory", "7. memory", memory),
        Case("startup", "8. start-up", startup),
    ]
    for w in scaling_workers(quick):
        out.append(Case(f"scaling_{w}", f"9. scaling, {w} workers", scaling(w)))
    return out


def scaling_workers(quick: bool) -> tuple[int, ...]:
    return (2, 4) if quick else (2, 8, 32)
