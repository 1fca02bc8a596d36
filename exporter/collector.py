"""The /metrics collector: fresh metric families per scrape, read from pre-aggregated SQLite rows.

Sample output::

    releasebits_deployments_total{component="checkout",stage="production",result="success"} 12.0
    releasebits_deployed_version_info{component="checkout",stage="production",version="v1.2.3",commit_sha="b927e37"} 1.0
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable, Iterator
from typing import Any

import sqlite_utils
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
from exporter.health import deployed_health
from exporter.validation import RESULT_CLASSES
from storage import components as components_store
from storage import outbox, release_health
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
        return [
            *_families(None),
            *health_families(None, self._settings),
            *forward_families(None, self._settings),
        ]

    def collect(self) -> Iterator[Metric]:
        s = self._settings
        db = thread_db(s.db, synchronous=s.sqlite_synchronous)
        snap = snapshot(db, max_components=s.max_components, max_stages=s.max_stages)
        yield from _families(snap)
        yield from health_families(db, s)
        yield from forward_families(db, s)


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
    default = [
        *_families(None),
        *health_families(None, Settings()),
        *forward_families(None, Settings()),
    ]
    for fam in families if families is not None else default:
        suffix = {"counter": "_total", "info": "_info"}.get(fam.type, "")
        names.append(fam.name + suffix)
    return names


_POLLED = " Polled from the source on its schedule; the last good value stays when a poll fails."
_RELEASE_LABELS = ["source", "project", "environment", "release"]
_DEPLOYED_LABELS = ["component", "stage", "source", "release"]


def health_families(db: sqlite_utils.Database | None, settings: Settings) -> list[Metric]:
    """Release health of configured sources, and of the versions deployed; db=None: empty."""
    sessions = GaugeMetricFamily(
        "releasebits_release_sessions",
        "Sessions of a release in the source's trailing window by status (Sentry: healthy, "
        "errored, crashed, abnormal, unhandled; Bugsnag: unhandled, other)." + _POLLED,
        labels=[*_RELEASE_LABELS, "status"],
    )
    users = GaugeMetricFamily(
        "releasebits_release_users",
        "Distinct users of a release in the source's window." + _POLLED,
        labels=_RELEASE_LABELS,
    )
    cf_sessions = GaugeMetricFamily(
        "releasebits_release_crash_free_sessions_ratio",
        "Share of a release's sessions that did not crash, 0..1 (absent: no data)." + _POLLED,
        labels=_RELEASE_LABELS,
    )
    cf_users = GaugeMetricFamily(
        "releasebits_release_crash_free_users_ratio",
        "Share of a release's users who saw no crash, 0..1 (absent: no data)." + _POLLED,
        labels=_RELEASE_LABELS,
    )
    target = GaugeMetricFamily(
        "releasebits_project_stability_target_ratio",
        "A project's stability target as set in the source (Bugsnag), 0..1." + _POLLED,
        labels=["source", "project"],
    )
    critical = GaugeMetricFamily(
        "releasebits_project_critical_stability_ratio",
        "A project's critical stability threshold as set in the source (Bugsnag), 0..1." + _POLLED,
        labels=["source", "project"],
    )
    dep_sessions = GaugeMetricFamily(
        "releasebits_deployed_crash_free_sessions_ratio",
        "Crash-free sessions ratio of the version currently deployed to a component and stage, "
        "as its mapped source reports it under `release`." + _POLLED,
        labels=_DEPLOYED_LABELS,
    )
    dep_users = GaugeMetricFamily(
        "releasebits_deployed_crash_free_users_ratio",
        "Crash-free users ratio of the version currently deployed to a component and stage."
        + _POLLED,
        labels=_DEPLOYED_LABELS,
    )
    prev_sessions = GaugeMetricFamily(
        "releasebits_previous_crash_free_sessions_ratio",
        "Crash-free sessions ratio of the version deployed to a component and stage before the "
        "current one, for comparison." + _POLLED,
        labels=_DEPLOYED_LABELS,
    )
    dep_target = GaugeMetricFamily(
        "releasebits_deployed_crash_free_target_ratio",
        "The crash-free ratio the deployed version should reach: the source project's stability "
        "target, else the crash_free_target setting.",
        labels=["component", "stage", "source"],
    )
    up = GaugeMetricFamily(
        "releasebits_source_up",
        "1 if the last poll of this source and project succeeded, else 0.",
        labels=["source", "project"],
    )
    last_success = GaugeMetricFamily(
        "releasebits_source_last_success_timestamp_seconds",
        "Unix time of the last successful poll of this source and project.",
        labels=["source", "project"],
    )
    duration = GaugeMetricFamily(
        "releasebits_source_poll_duration_seconds",
        "Wall time of the last poll of this source, including rate-limit waits.",
        labels=["source"],
    )
    fams: list[Metric] = [
        sessions,
        users,
        cf_sessions,
        cf_users,
        target,
        critical,
        dep_sessions,
        dep_users,
        prev_sessions,
        dep_target,
        up,
        last_success,
        duration,
    ]
    configured = {src.name for src in settings.sources}
    if db is None or not configured:
        return fams

    # Rows of sources no longer configured are not exported: no stale series after a rename.
    for row in release_health.newest_releases(db, settings.release_health_max_releases):
        if row["source"] not in configured:
            continue
        labels = [row["source"], row["project"], row["environment"], row["release"]]
        for status, count in sorted(row["sessions_by_status"].items()):
            sessions.add_metric([*labels, status], count)
        total = row["total_sessions"]
        unhandled = row["sessions_by_status"].get("unhandled")
        if total is not None and set(row["sessions_by_status"]) == {"unhandled"}:
            sessions.add_metric([*labels, "other"], max(total - (unhandled or 0), 0))
        if row["users"] is not None:
            users.add_metric(labels, row["users"])
        if row["crash_free_sessions"] is not None:
            cf_sessions.add_metric(labels, row["crash_free_sessions"])
        if row["crash_free_users"] is not None:
            cf_users.add_metric(labels, row["crash_free_users"])
    for row in release_health.targets(db):
        if row["source"] not in configured:
            continue
        if row["target_stability"] is not None:
            target.add_metric([row["source"], row["project"]], row["target_stability"])
        if row["critical_stability"] is not None:
            critical.add_metric([row["source"], row["project"]], row["critical_stability"])
    for row in components_store.current_versions_of(db, sorted(settings.components)):
        for h in deployed_health(db, settings, row["component"], row["stage"]):
            if h.source not in configured:
                continue
            key = [h.component, h.stage, h.source]
            dep_target.add_metric(key, h.target)
            if h.crash_free_sessions is not None:
                dep_sessions.add_metric([*key, h.release], h.crash_free_sessions)
            if h.crash_free_users is not None:
                dep_users.add_metric([*key, h.release], h.crash_free_users)
            if h.previous_release and h.previous_crash_free_sessions is not None:
                prev_sessions.add_metric([*key, h.previous_release], h.previous_crash_free_sessions)
    durations: dict[str, float] = {}
    for row in release_health.statuses(db):
        if row["source"] not in configured:
            continue
        up.add_metric([row["source"], row["project"]], row["up"])
        if row["last_success_ts"] is not None:
            last_success.add_metric([row["source"], row["project"]], row["last_success_ts"])
        if row["last_duration_seconds"] is not None:
            durations[row["source"]] = row["last_duration_seconds"]
    for source, seconds in sorted(durations.items()):
        duration.add_metric([source], seconds)
    return fams


def forward_families(
    db: sqlite_utils.Database | None, settings: Settings, now: float | None = None
) -> list[Metric]:
    """The forwarding outbox per configured target (its `name`); db=None: empty families."""
    deliveries = CounterMetricFamily(
        "releasebits_forward_deliveries_total",
        "Delivery attempts of the forwarding outbox by target and outcome: delivered, retried "
        "(failed, will be tried again), failed (permanent error or gave up), disabled (the "
        "endpoint answered 410 Gone).",
        labels=["target", "outcome"],
    )
    pending = GaugeMetricFamily(
        "releasebits_forward_pending",
        "Deliveries waiting in the outbox (or in flight) per target.",
        labels=["target"],
    )
    oldest = GaugeMetricFamily(
        "releasebits_forward_oldest_pending_age_seconds",
        "Age of the oldest delivery still waiting per target; 0 when none waits.",
        labels=["target"],
    )
    disabled = GaugeMetricFamily(
        "releasebits_forward_target_disabled",
        "1 when a target was disabled (a webhook answered 410 Gone) until a delivery of it is "
        "retried, else 0.",
        labels=["target"],
    )
    fams: list[Metric] = [deliveries, pending, oldest, disabled]
    if db is None or not settings.forward_targets:
        return fams
    now = time.time() if now is None else now
    backlog = outbox.backlog(db)
    off = outbox.disabled_targets(db)
    # Only configured targets: rows of a removed or renamed target leave no stale series.
    for target in settings.forward_targets:
        name = target.name
        for outcome in outbox.OUTCOMES:
            deliveries.add_metric([name, outcome], backlog.counts.get((name, outcome), 0))
        pending.add_metric([name], backlog.pending.get(name, 0))
        first = backlog.oldest_created_at.get(name)
        oldest.add_metric([name], max(now - first, 0.0) if first is not None else 0.0)
        disabled.add_metric([name], 1 if name in off else 0)
    return fams
