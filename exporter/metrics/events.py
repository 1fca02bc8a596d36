"""Deployment and build families, filled from the aggregates snapshot.

Sample output::

    releasebits_deployments_total{component="checkout",stage="production",result="success"} 12.0
    releasebits_deployed_version_info{component="checkout",stage="production",version="v1.2.3",commit_sha="b927e37"} 1.0
"""

from __future__ import annotations

import platform

from exporter import __version__
from exporter.metrics.families import Families, Family, histogram_buckets
from exporter.names import RESULT_CLASSES
from storage.aggregates import Snapshot
from storage.leases import instance_of

_DEPLOY = ("component", "stage")
FAMILIES = (
    Family(
        "releasebits_deployments_total",
        "counter",
        "Deployments stored, by component, stage and result class.",
        (*_DEPLOY, "result"),
    ),
    Family(
        "releasebits_deployment_last_timestamp_seconds",
        "gauge",
        "Unix time at which the newest deployment of this component, stage and result finished.",
        (*_DEPLOY, "result"),
    ),
    Family(
        "releasebits_deployment_duration_seconds",
        "histogram",
        "Deployment duration (finished_at - started_at) of deployments that sent started_at.",
        _DEPLOY,
    ),
    Family(
        "releasebits_deployed_version",
        "info",
        "The version currently deployed (newest successful deployment) per component and stage.",
        _DEPLOY,
    ),
    Family(
        "releasebits_deployed_version_since_timestamp_seconds",
        "gauge",
        "Unix time since which the current version has been deployed to this component and stage.",
        _DEPLOY,
    ),
    Family(
        "releasebits_builds_total",
        "counter",
        "Builds stored, by component and result class.",
        ("component", "result"),
    ),
    Family(
        "releasebits_build_last_timestamp_seconds",
        "gauge",
        "Unix time at which the newest build of this component and result finished.",
        ("component", "result"),
    ),
    Family(
        "releasebits_build_duration_seconds",
        "histogram",
        "Build duration (finished_at - started_at) of builds that sent started_at.",
        ("component",),
    ),
    Family(
        "releasebits_components",
        "gauge",
        "Components known to ReleaseBits (including any past the limit).",
    ),
    Family("releasebits_releases", "gauge", "Releases known to ReleaseBits."),
    Family(
        "releasebits_series_limit_exceeded_events_total",
        "counter",
        "Events stored but not exported because their component or stage is past "
        "max_components / max_stages.",
        ("dimension",),
    ),
    Family(
        "releasebits_worker_last_heartbeat_timestamp_seconds",
        "gauge",
        "Unix time of the background worker's last heartbeat.",
    ),
    Family(
        "releasebits_worker_leader",
        "gauge",
        "1 for the instance whose background worker holds the worker lease (absent while "
        "none does); the same from every replica.",
        ("instance",),
    ),
    Family("releasebits", "info", "ReleaseBits' own version."),
)
# Per kind: the count and the last-time family.
_COUNTERS = {
    "deployment": (
        "releasebits_deployments_total",
        "releasebits_deployment_last_timestamp_seconds",
    ),
    "build": ("releasebits_builds_total", "releasebits_build_last_timestamp_seconds"),
}
_HISTOGRAMS = {
    "deployment": "releasebits_deployment_duration_seconds",
    "build": "releasebits_build_duration_seconds",
}


def fill(fams: Families, snap: Snapshot) -> None:
    fams.add(
        "releasebits", [], {"version": __version__, "python_version": platform.python_version()}
    )
    _fill_counts(fams, snap)
    for row in snap.durations:
        buckets = histogram_buckets(snap.buckets, row["buckets"])
        fams.add(_HISTOGRAMS[row["kind"]], _labels(row), buckets, row["sum"])
    for row in snap.current_versions:
        labels = [row["component"], row["stage"]]
        info = {"version": row["version"], "commit_sha": row["commit_sha"] or ""}
        fams.add("releasebits_deployed_version", labels, info)
        fams.add("releasebits_deployed_version_since_timestamp_seconds", labels, row["since_ts"])
    fams.add("releasebits_components", [], snap.components)
    fams.add("releasebits_releases", [], snap.releases)
    for dimension in ("component", "stage"):
        fams.add(
            "releasebits_series_limit_exceeded_events_total",
            [dimension],
            snap.overflow.get(dimension, 0),
        )
    if snap.worker_heartbeat is not None:
        fams.add("releasebits_worker_last_heartbeat_timestamp_seconds", [], snap.worker_heartbeat)
    if snap.worker_leader is not None:
        fams.add("releasebits_worker_leader", [instance_of(snap.worker_leader)], 1)


def _labels(row: dict[str, object]) -> list[str]:
    """component (and stage, for deployments) of an aggregate row."""
    if row["kind"] == "deployment":
        return [str(row["component"]), str(row["stage"])]
    return [str(row["component"])]


def _fill_counts(fams: Families, snap: Snapshot) -> None:
    """Every result class of a known component/stage is exported, at 0 when none happened yet,
    so rate() and failure ratios work from the first failure on."""
    seen: dict[tuple[str, tuple[str, ...]], dict[str, tuple[int, float]]] = {}
    for row in snap.event_stats:
        by_result = seen.setdefault((row["kind"], tuple(_labels(row))), {})
        by_result[row["result_class"]] = (row["count"], row["last_ts"])
    for (kind, labels), by_result in sorted(seen.items()):
        total, last = _COUNTERS[kind]
        for rclass in RESULT_CLASSES:
            count, last_ts = by_result.get(rclass, (0, None))
            fams.add(total, [*labels, rclass], count)
            if last_ts is not None:
                fams.add(last, [*labels, rclass], last_ts)
