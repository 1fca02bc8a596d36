"""The /metrics collector: fresh metric families per scrape, read from pre-aggregated SQLite rows.

Sample output::

    releasebits_deployments_total{component="checkout",stage="production",result="success"} 12.0
    releasebits_deployed_version_info{component="checkout",stage="production",version="v1.2.3",commit_sha="b927e37"} 1.0
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.config import Settings
from exporter.validation import RESULT_CLASSES
from storage.aggregates import Snapshot, snapshot
from storage.db import thread_db

KIND_LABELS = {"deployment": ["component", "stage"], "build": ["component"]}


def _families(snap: Snapshot | None) -> list[Metric]:
    """Build every family; with snap=None they are empty (used by describe())."""
    deploy_total = CounterMetricFamily(
        "releasebits_deployments_total",
        "Deployments stored, by component, stage and result class.",
        labels=["component", "stage", "result"],
    )
    deploy_last = GaugeMetricFamily(
        "releasebits_deployment_last_timestamp_seconds",
        "Unix time at which the newest deployment of this component, stage and result finished.",
        labels=["component", "stage", "result"],
    )
    build_total = CounterMetricFamily(
        "releasebits_builds_total",
        "Builds stored, by component and result class.",
        labels=["component", "result"],
    )
    build_last = GaugeMetricFamily(
        "releasebits_build_last_timestamp_seconds",
        "Unix time at which the newest build of this component and result finished.",
        labels=["component", "result"],
    )
    deploy_hist = HistogramMetricFamily(
        "releasebits_deployment_duration_seconds",
        "Deployment duration (finished_at - started_at) of deployments that sent started_at.",
        labels=["component", "stage"],
    )
    build_hist = HistogramMetricFamily(
        "releasebits_build_duration_seconds",
        "Build duration (finished_at - started_at) of builds that sent started_at.",
        labels=["component"],
    )
    version_info = InfoMetricFamily(
        "releasebits_deployed_version",
        "The version currently deployed (newest successful deployment) per component and stage.",
        labels=["component", "stage"],
    )
    version_since = GaugeMetricFamily(
        "releasebits_deployed_version_since_timestamp_seconds",
        "Unix time since which the current version has been deployed to this component and stage.",
        labels=["component", "stage"],
    )
    components = GaugeMetricFamily(
        "releasebits_components", "Components known to ReleaseBits (including any past the limit)."
    )
    releases = GaugeMetricFamily("releasebits_releases", "Releases known to ReleaseBits.")
    overflow = CounterMetricFamily(
        "releasebits_series_limit_exceeded_events_total",
        "Events stored but not exported because their component or stage is past "
        "max_components / max_stages.",
        labels=["dimension"],
    )
    heartbeat = GaugeMetricFamily(
        "releasebits_worker_last_heartbeat_timestamp_seconds",
        "Unix time of the background worker's last heartbeat.",
    )
    info = InfoMetricFamily("releasebits", "ReleaseBits' own version.")
    fams: list[Metric] = [
        deploy_total,
        deploy_last,
        deploy_hist,
        version_info,
        version_since,
        build_total,
        build_last,
        build_hist,
        components,
        releases,
        overflow,
        heartbeat,
        info,
    ]
    if snap is None:
        return fams

    info.add_metric([], {"version": __version__, "python_version": platform.python_version()})
    seen_pairs: dict[tuple[str, str], dict[str, tuple[int, float]]] = {}
    seen_builds: dict[str, dict[str, tuple[int, float]]] = {}
    for row in snap.event_stats:
        if row["kind"] == "deployment":
            by_result = seen_pairs.setdefault((row["component"], row["stage"]), {})
        else:
            by_result = seen_builds.setdefault(row["component"], {})
        by_result[row["result_class"]] = (row["count"], row["last_ts"])
    # Every result class of a known component/stage is exported, at 0 when none happened yet,
    # so rate() and failure ratios work from the first failure on.
    for (component, stage), by_result in sorted(seen_pairs.items()):
        for rclass in RESULT_CLASSES:
            count, last = by_result.get(rclass, (0, None))
            deploy_total.add_metric([component, stage, rclass], count)
            if last is not None:
                deploy_last.add_metric([component, stage, rclass], last)
    for component, by_result in sorted(seen_builds.items()):
        for rclass in RESULT_CLASSES:
            count, last = by_result.get(rclass, (0, None))
            build_total.add_metric([component, rclass], count)
            if last is not None:
                build_last.add_metric([component, rclass], last)
    bounds = [*(_fmt(b) for b in snap.buckets), "+Inf"]
    for row in snap.durations:
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, n in zip(bounds, row["buckets"], strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        if row["kind"] == "deployment":
            deploy_hist.add_metric([row["component"], row["stage"]], buckets, row["sum"])
        else:
            build_hist.add_metric([row["component"]], buckets, row["sum"])
    for row in snap.current_versions:
        version_info.add_metric(
            [row["component"], row["stage"]],
            {"version": row["version"], "commit_sha": row["commit_sha"] or ""},
        )
        version_since.add_metric([row["component"], row["stage"]], row["since_ts"])
    components.add_metric([], snap.components)
    releases.add_metric([], snap.releases)
    for dimension in ("component", "stage"):
        overflow.add_metric([dimension], snap.overflow.get(dimension, 0))
    if snap.worker_heartbeat is not None:
        heartbeat.add_metric([], snap.worker_heartbeat)
    return fams


def _fmt(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else str(bound)


class ReleaseBitsCollector(Collector):
    """Reads SQLite at scrape time; describe() never touches the database."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None):
        self._settings = settings
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterable[Metric]:
        return _families(None)

    def collect(self) -> Iterator[Metric]:
        s = self._settings
        db = thread_db(s.db, synchronous=s.sqlite_synchronous)
        snap = snapshot(db, max_components=s.max_components, max_stages=s.max_stages)
        yield from _families(snap)


def build_registry(settings: Settings, *, process_metrics: bool = True) -> CollectorRegistry:
    """ReleaseBits' own registry (never the global one) with process and Python metrics."""
    registry = CollectorRegistry(auto_describe=True)
    ReleaseBitsCollector(settings, registry)
    if process_metrics:
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
    return registry


def described_metric_names(families: Iterable[Any] | None = None) -> list[str]:
    """Names of the families the collector describes (for the README docs test)."""
    names = []
    for fam in families if families is not None else _families(None):
        suffix = {"counter": "_total", "info": "_info"}.get(fam.type, "")
        names.append(fam.name + suffix)
    return names
