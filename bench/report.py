"""The results table: each metric's median over the rounds for both sides, their ratio,
and the issue's goals marked met or missed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness import median
from scenarios import SB, UWSGI, scaling_workers

Results = dict[str, dict[str, list[dict[str, float]]]]   # case -> side -> one dict per round
Table = dict[str, dict[str, dict[str, float]]]          # case -> side -> metric -> number


@dataclass
class Summary:
    med: Table          # median over the rounds
    worst: Table        # largest value over the rounds
    quick: bool
    results: Results    # every round

    def paired_ratios(self, case: str, key: str) -> list[float]:
        """Switchboard / uWSGI for each round (the two ran back to back)."""
        sides = self.results.get(case, {})
        out = []
        for u, s in zip(sides.get(UWSGI, []), sides.get(SB, []), strict=False):
            if u.get(key) and s.get(key) is not None:
                out.append(s[key] / u[key])
        return out


def summarize(results: Results, quick: bool) -> Summary:
    med: Table = {}
    worst: Table = {}
    for case, sides in results.items():
        for side, rounds in sides.items():
            good = [r for r in rounds if "error" not in r]
            keys = {k for r in good for k in r}
            values = {k: [r[k] for r in good if k in r] for k in keys}
            med.setdefault(case, {})[side] = {k: median(v) for k, v in values.items()}
            worst.setdefault(case, {})[side] = {k: max(v) for k, v in values.items()}
    return Summary(med, worst, quick, results)


Value = Callable[[Summary, str], "float | None"]


class metric:  # noqa: N801 - used like the other value functions
    """A case's metric, median over the rounds."""

    def __init__(self, case: str, key: str) -> None:
        self.case, self.key = case, key

    def __call__(self, m: Summary, side: str) -> float | None:
        return m.med.get(self.case, {}).get(side, {}).get(self.key)


def worst(case: str, key: str) -> Value:
    """The largest value over the rounds (for loss counts: every round must be 0)."""
    def get(m: Summary, side: str) -> float | None:
        return m.worst.get(case, {}).get(side, {}).get(key)
    return get


def cost_growth(m: Summary, side: str) -> float | None:
    ws = scaling_workers(m.quick)
    lo = metric(f"scaling_{ws[0]}", "us_per_signal")(m, side)
    hi = metric(f"scaling_{ws[-1]}", "us_per_signal")(m, side)
    return hi / lo if lo and hi else None


Judge = Callable[[Summary, "float | None", "float | None"], "bool | None"]


@dataclass
class Row:
    label: str
    value: Value
    fmt: str
    goal: str = ""
    met: Judge | None = None        # (summary, uwsgi, switchboard) -> met; None: no data
    ratio: bool = True


def ratio_at_least(k: float) -> Judge:
    return lambda m, u, s: None if not u or s is None else s / u >= k


def ratio_at_most(k: float) -> Judge:
    return lambda m, u, s: None if not u or s is None else s / u <= k


def at_most(k: float, absolute: bool = False) -> Judge:
    return lambda m, u, s: None if s is None else (abs(s) if absolute else s) <= k


def at_least(k: float) -> Judge:
    return lambda m, u, s: None if s is None else s >= k


def lossless(k: float, case: str) -> Judge:
    def met(m: Summary, u: float | None, s: float | None) -> bool | None:
        if not u or s is None:
            return None
        return s / u >= k and worst(case, "free_lost")(m, SB) == 0
    return met


def cpu_rows(case: str, unit: str) -> list[Row]:
    """Where the CPU goes in the lossless run (user + system time of each process)."""
    return [Row(f"lossless: CPU µs per {unit}, all processes", metric(case, "lossless_cpu_us"),
                "{:.2f}"),
            *(Row(f"… of which {role}", metric(case, f"lossless_cpu_{role}_us"), "{:.2f}")
              for role in ("master", "workers", "raiser"))]


RATE, US, MS, MB, S, N, X = "{:,.0f}", "{:.1f}", "{:.2f}", "{:.1f}", "{:.3f}", "{:.0f}", "{:.2f}"

SECTIONS: list[tuple[str, list[Row]]] = [
    ("1. Throughput to `worker` (2 workers, a mule raises)", [
        Row("raiser unthrottled: handled/s", metric("worker", "free_rate"), RATE),
        Row("raiser unthrottled: lost (worst round)", worst("worker", "free_lost"), N,
            ratio=False),
        Row("lossless: handled/s (uWSGI throttled to <= 128 in flight)",
            metric("worker", "lossless_rate"), RATE,
            ">= 2.5x, Switchboard 0 lost unthrottled", lossless(2.5, "worker")),
        *cpu_rows("worker", "signal"),
    ]),
    ("2. Broadcast to `workers` (2 workers)", [
        Row("raiser unthrottled: handler runs/s", metric("broadcast", "free_rate"), RATE),
        Row("raiser unthrottled: runs lost (worst round)", worst("broadcast", "free_lost"), N,
            ratio=False),
        Row("lossless: handler runs/s (uWSGI throttled)", metric("broadcast", "lossless_rate"),
            RATE, ">= 1.5x", lossless(1.5, "broadcast")),
        *cpu_rows("broadcast", "handler run"),
    ]),
    ("3. Latency raise -> handler start, one at a time (µs)", [
        row for target in ("worker", "workers", "mule2") for row in (
            Row(f"`{target}` p50", metric("latency", f"{target}_p50"), US, "<= 1.0x",
                ratio_at_most(1.0)),
            Row(f"`{target}` p99", metric("latency", f"{target}_p99"), US, "<= 1.25x",
                ratio_at_most(1.25)),
            Row(f"`{target}` max", metric("latency", f"{target}_max"), US),
        )
    ]),
    ("4. Lua vs Python handlers (Switchboard only)", [
        Row("Python handler: signals/s", metric("lua", "python_rate"), RATE, ratio=False),
        Row("Lua handler: signals/s", metric("lua", "lua_rate"), RATE, ratio=False),
        Row("Lua / Python (paired runs)", metric("lua", "lua_over_python"), X, ">= 0.95",
            at_least(0.95), ratio=False),
    ]),
    ("5. Timers: tick offset from t0 + k·period (ms; t0 fitted, drift = slope x run)", [
        *(Row(f"1 s period: {name}", metric("timer_1s", key), MS, ratio=False)
          for name, key in (("mean", "mean_ms"), ("stdev", "stdev_ms"),
                            ("p99 of abs(offset)", "p99_ms"), ("drift over the run", "drift_ms"))),
        Row("10 ms period: mean", metric("timer_10ms", "mean_ms"), MS, ratio=False),
        Row("10 ms period: stdev", metric("timer_10ms", "stdev_ms"), MS, ratio=False),
        Row("10 ms period: p99 of abs(offset) (jitter)", metric("timer_10ms", "p99_ms"), MS,
            "<= 1 ms", at_most(1.0), ratio=False),
        Row("10 ms period: drift over the run", metric("timer_10ms", "drift_ms"), MS,
            "abs(drift) <= 1 ms", at_most(1.0, absolute=True), ratio=False),
        Row("10 ms period: ticks missed", metric("timer_10ms", "missed"), N, ratio=False),
    ]),
    ("6. File monitor: change -> handler start (ms)", [
        Row("create (directory watched) p50", metric("filemon", "create_p50_ms"), MS, "<= 2 ms",
            at_most(2.0)),
        Row("create p90", metric("filemon", "create_p90_ms"), MS),
        Row("touch (file watched) p50", metric("filemon", "touch_p50_ms"), MS, "<= 2 ms",
            at_most(2.0)),
        Row("touch p90", metric("filemon", "touch_p90_ms"), MS),
    ]),
    ("7. Memory, 2 workers + 1 mule (MB, from smaps_rollup)", [
        *(Row(f"{label} {kind}", metric("memory", f"{role}_{kind.lower()}_mb"), MB)
          for label, role in (("master", "master"), ("each worker", "worker"), ("mule", "mule"))
          for kind in ("PSS", "RSS")),
        Row("other processes (count)", metric("memory", "other_count"), N, ratio=False),
        Row("total PSS", metric("memory", "total_pss_mb"), MB, "<= 1.5x", ratio_at_most(1.5)),
        Row("total RSS", metric("memory", "total_rss_mb"), MB),
    ]),
    ("8. Start-up: command -> ready, 4 workers (s)", [
        Row("start-up", metric("startup", "ready_s"), S, "<= 0.5 s", at_most(0.5)),
    ]),
]


def scaling_section(quick: bool) -> tuple[str, list[Row]]:
    ws = scaling_workers(quick)
    rows = [Row(f"{w} workers: µs per signal", metric(f"scaling_{w}", "us_per_signal"), US)
            for w in ws]
    rows.append(Row(f"cost growth {ws[-1]} vs {ws[0]} workers", cost_growth, X,
                    "<= 1.2x", at_most(1.2), ratio=False))
    return ("9. Scaling: per-signal cost to `worker`, lossless (µs)", rows)


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else spec.format(value)


def table(m: Summary) -> tuple[str, list[dict[str, Any]]]:
    """The markdown table and the list of goals with their outcome."""
    lines = ["| Metric | uWSGI 2.0.31 | Switchboard | Switchboard / uWSGI (rounds' range) "
             "| Goal | |",
             "| --- | ---: | ---: | ---: | --- | --- |"]
    goals: list[dict[str, Any]] = []
    for title, rows in [*SECTIONS, scaling_section(m.quick)]:
        lines.append(f"| **{title}** | | | | | |")
        for row in rows:
            u, s = row.value(m, UWSGI), row.value(m, SB)
            ratio = fmt(s / u, X) + "x" if row.ratio and u and s is not None else ""
            if ratio and isinstance(row.value, metric) and (
                    rs := m.paired_ratios(row.value.case, row.value.key)) and len(rs) > 1:
                ratio += f" ({min(rs):.2f}–{max(rs):.2f})"
            status = ""
            if row.met is not None:
                met = row.met(m, u, s)
                status = "—" if met is None else ("met" if met else "**missed**")
                goals.append({"section": title, "metric": row.label, "goal": row.goal,
                              "uwsgi": u, "switchboard": s, "met": met})
            lines.append(f"| {row.label} | {fmt(u, row.fmt)} | {fmt(s, row.fmt)} | {ratio} "
                         f"| {row.goal} | {status} |")
    return "\n".join(lines), goals
