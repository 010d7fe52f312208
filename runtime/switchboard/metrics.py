"""Prometheus metrics: a custom collector over the stats document and the shared
latency histograms, read in the serving process (no files per process).

Names follow Prometheus' conventions: counters end in `_total`, times are in seconds.
One more section is one more function in `EXTRA` (or `Collector.extra`), which yields
metric families from the document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from switchboard.latency import BUCKETS, upper
from switchboard.shared import STATUS_NAMES
from switchboard.stats import View, document
from switchboard.targets import Role

_LE = [f"{upper(b) / 1e6:.9g}" for b in range(BUCKETS - 1)] + ["+Inf"]
_ROLES = ("workers", "mules", "spoolers")

Extra = Callable[[dict[str, Any]], Iterator[Metric]]


class Collector:
    """Everything at `GET /metrics`, from one stats document per scrape."""

    def __init__(self, view: View, extra: list[Extra] | None = None) -> None:
        self.view, self.extra = view, list(extra or [])

    def collect(self) -> Iterator[Metric]:
        doc = document(self.view)
        yield from _signals(doc)
        yield _latency(self.view, doc)
        yield from _processes(doc)
        yield from _queues(doc)
        yield from _sources(doc)
        yield from _server(doc)
        yield from _cluster(doc)
        for extra in self.extra:
            yield from extra(doc)

    def text(self) -> bytes:
        """The exposition text of one scrape."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)


def _signals(doc: dict[str, Any]) -> Iterator[Metric]:
    names = ("raised", "routed", "handled", "failed", "coalesced")
    families = {n: CounterMetricFamily(f"switchboard_signals_{n}",
                                       f"Signals {n}, by signal number.", labels=["signal"])
                for n in names}
    dropped = CounterMetricFamily("switchboard_signals_dropped",
                                  "Signals dropped, by signal number and reason.",
                                  labels=["signal", "reason"])
    for num, entry in doc["signals"].items():
        for n in names:
            families[n].add_metric([num], entry[n])
        for reason, count in entry["dropped"].items():
            dropped.add_metric([num, reason], count)
    yield from families.values()
    yield dropped


def _latency(view: View, doc: dict[str, Any]) -> Metric:
    """Raise-to-start latency, per signal and process, from the shared histograms."""
    family = HistogramMetricFamily(
        "switchboard_signal_latency_seconds",
        "Time from a signal's raise to its handler's start.",
        labels=["signal", "role", "id"])
    lat, topo = view.shared.latency, view.topology
    for role in _ROLES:
        for proc in doc[role]:
            slot = topo.slot(Role(role[:-1]), proc["id"])
            for num in proc["latency"]:
                summary = lat.summary(slot, int(num))
                cumulative, buckets = 0, []
                for b, count in enumerate(summary.counts):
                    cumulative += count
                    if b < BUCKETS - 1:
                        buckets.append((_LE[b], cumulative))
                buckets.append(("+Inf", cumulative))
                family.add_metric([num, role[:-1], str(proc["id"])], buckets,
                                  summary.seconds)
    return family


def _processes(doc: dict[str, Any]) -> Iterator[Metric]:
    labels = ["role", "id"]
    state = GaugeMetricFamily("switchboard_process_state",
                              "1 for the state each process is in now.",
                              labels=[*labels, "state"])
    gauges: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
        "rss": GaugeMetricFamily("switchboard_process_resident_memory_bytes",
                                 "Resident memory of each process.", labels=labels),
        "signal_queue": GaugeMetricFamily("switchboard_process_queue_depth",
                                          "Signals queued for the process's own channel.",
                                          labels=labels),
    }
    counters = {
        "signals": CounterMetricFamily("switchboard_process_handled",
                                       "Handler runs that returned.", labels=labels),
        "failed": CounterMetricFamily("switchboard_process_failed",
                                      "Handler runs that raised.", labels=labels),
        "respawns": CounterMetricFamily("switchboard_process_respawns",
                                        "Times the process was respawned.", labels=labels),
        "harakiri_count": CounterMetricFamily("switchboard_process_harakiri_kills",
                                              "Times harakiri killed the process.",
                                              labels=labels),
        "malformed_records": CounterMetricFamily("switchboard_process_malformed_records",
                                                 "Malformed records the process sent "
                                                 "(it was killed for each).", labels=labels),
    }
    running = CounterMetricFamily("switchboard_process_handler_seconds",
                                  "Time spent running handlers.", labels=labels)
    for role in _ROLES:
        for proc in doc[role]:
            ident = [role[:-1], str(proc["id"])]
            for name in STATUS_NAMES:
                state.add_metric([*ident, name], 1 if proc["state"] == name else 0)
            for key, family in [*gauges.items(), *counters.items()]:
                family.add_metric(ident, proc[key])
            running.add_metric(ident, proc["running_time"] / 1e6)
    yield state
    yield from gauges.values()
    yield from counters.values()
    yield running


def _queues(doc: dict[str, Any]) -> Iterator[Metric]:
    queues = GaugeMetricFamily("switchboard_queue_depth",
                               "Signals queued for each first-available group's channel.",
                               labels=["queue"])
    for name, depth in doc["queues"].items():
        queues.add_metric([name], depth)
    yield queues
    yield GaugeMetricFamily("switchboard_held_signals",
                            "Unregistered signals held for signal_wait().", value=doc["held"])
    yield GaugeMetricFamily("switchboard_uptime_seconds", "Seconds since the master started.",
                            value=doc["uptime"])


def _sources(doc: dict[str, Any]) -> Iterator[Metric]:
    fires = CounterMetricFamily("switchboard_event_source_fires",
                                "Ticks fired by each timer and cron.",
                                labels=["source", "kind", "signal", "schedule"])
    left = GaugeMetricFamily("switchboard_event_source_iterations_left",
                             "Ticks a limited source will still fire.",
                             labels=["source", "kind", "signal", "schedule"])
    for i, source in enumerate(doc["event_sources"]):
        labels = [str(i), source["kind"], str(source["signal"]), source["schedule"]]
        if source["fired"] is not None:
            fires.add_metric(labels, source["fired"])
        if source["iterations_left"] is not None:
            left.add_metric(labels, source["iterations_left"])
    yield fires
    yield left


def _server(doc: dict[str, Any]) -> Iterator[Metric]:
    served = doc.get("stats_server")
    if served is None:
        return
    family = CounterMetricFamily("switchboard_stats_requests",
                                 "Requests to the stats server, by outcome.",
                                 labels=["outcome"])
    for outcome, count in served.items():
        family.add_metric([outcome], count)
    yield family


def _cluster(doc: dict[str, Any]) -> Iterator[Metric]:
    """The `cluster` section (docs/cluster.md), when [cluster] is configured."""
    section = doc.get("cluster")
    if section is None:
        return
    for name in ("sent", "received", "expired", "uncertain", "fires_claimed",
                 "fires_elsewhere", "send_failures", "commits"):
        counter = CounterMetricFamily(f"switchboard_cluster_{name}",
                                      f"Cluster signals: {name.replace('_', ' ')}.")
        counter.add_metric([], section[name])
        yield counter
    members = GaugeMetricFamily("switchboard_cluster_members",
                                "Live members of the cluster (this node included).")
    members.add_metric([], len(section["members"]))
    yield members
