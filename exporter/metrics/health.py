"""Release health: the polled families, and the join of what is deployed to its release health
(used by /metrics, the badges and `releasebits poll`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.metrics.families import Families, Family
from exporter.settings import Settings
from storage import budgets, release_health
from storage import components as components_store
from storage.db import Store


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~3x, and the status page makes 2,500
class DeployedHealth:
    """Release health of the version currently deployed to one component/stage, per source."""

    component: str
    stage: str
    version: str
    source: str
    project: str
    environment: str
    release: str
    crash_free_sessions: float | None
    crash_free_users: float | None
    target: float  # the source's stability target for the project, else crash_free_target
    critical: float  # the source's critical stability, else crash_free_critical
    previous_version: str | None = None  # deployed before `version` became current
    previous_release: str | None = None
    previous_crash_free_sessions: float | None = None
    previous_crash_free_users: float | None = None


def deployed_health(
    db: Store,
    settings: Settings,
    component: str,
    stage: str,
    version: str | None = None,
    *,
    targets: Mapping[tuple[str, str], float | None] | None = None,
    polled: Mapping[release_health.HealthKey, Mapping[str, Any]] | None = None,
    criticals: Mapping[tuple[str, str], float | None] | None = None,
) -> list[DeployedHealth]:
    """Health of `version` (default: the current one) of component/stage from each mapped source.

    A source without data for that release yields an entry with None ratios (no data, not 0).
    `targets` (from `stability_targets`) and `polled` (from `release_health.by_key`) save
    queries per call when joining many components.
    """
    mapping = settings.components.get(component)
    if mapping is None or not mapping.sources:
        return []
    previous: str | None = None
    if version is None:
        current = components_store.current_version(db, component, stage)
        if current is None:
            return []
        version = str(current["version"])
        previous = components_store.previous_version(
            db, component, stage, version, float(current["since_ts"])
        )
    target_by_key = targets if targets is not None else stability_targets(db)
    critical_by_key = criticals if criticals is not None else critical_levels(db)
    out = []
    for source, src in sorted(mapping.sources.items()):
        environment = mapping.environment(stage, source)
        release = src.release_name(component, version)
        where = (source, src.project, environment)
        prev_release = src.release_name(component, previous) if previous else None
        row, prev = (_polled(db, polled, where, name) for name in (release, prev_release))
        out.append(
            DeployedHealth(
                component=component,
                stage=stage,
                version=version,
                source=source,
                project=src.project,
                environment=environment,
                release=release,
                crash_free_sessions=row["crash_free_sessions"] if row else None,
                crash_free_users=row["crash_free_users"] if row else None,
                target=crash_free_target(target_by_key.get((source, src.project)), settings),
                critical=_or(
                    critical_by_key.get((source, src.project)), settings.crash_free_critical
                ),
                previous_version=previous,
                previous_release=prev_release,
                previous_crash_free_sessions=prev["crash_free_sessions"] if prev else None,
                previous_crash_free_users=prev["crash_free_users"] if prev else None,
            )
        )
    return out


def _polled(
    db: Store,
    polled: Mapping[release_health.HealthKey, Mapping[str, Any]] | None,
    where: tuple[str, str, str],
    release: str | None,
) -> Mapping[str, Any] | None:
    """A release's polled row (source, project, environment) from the caller's `by_key` map,
    else from the database; None for no release."""
    if release is None:
        return None
    if polled is not None:
        return polled.get((*where, release))
    return release_health.lookup(db, *where, release)


def stability_targets(
    db: Store, rows: list[dict[str, Any]] | None = None
) -> dict[tuple[str, str], float | None]:
    """Each (source, project)'s stability target as the source reports it (from `rows` of
    release_health.targets when the caller has read them already)."""
    rows = rows if rows is not None else release_health.targets(db)
    return {(t["source"], t["project"]): t["target_stability"] for t in rows}


def critical_levels(
    db: Store, rows: list[dict[str, Any]] | None = None
) -> dict[tuple[str, str], float | None]:
    """Each (source, project)'s critical stability as the source reports it (Bugsnag)."""
    rows = rows if rows is not None else release_health.targets(db)
    return {(t["source"], t["project"]): t["critical_stability"] for t in rows}


def _or(value: float | None, default: float) -> float:
    return value if value is not None else default


def crash_free_target(target: float | None, settings: Settings) -> float:
    """The source project's stability target, else the crash_free_target setting."""
    return target if target is not None else settings.crash_free_target


_POLLED = " Polled from the source on its schedule; the last good value stays when a poll fails."
_RELEASE = ("source", "project", "environment", "release")
_DEPLOYED = ("component", "stage", "source", "release")
FAMILIES = (
    Family(
        "releasebits_release_sessions",
        "gauge",
        "Sessions of a release in the source's trailing window by status (Sentry: healthy, "
        "errored, crashed, abnormal, unhandled; Bugsnag: unhandled, other)." + _POLLED,
        (*_RELEASE, "status"),
    ),
    Family(
        "releasebits_release_users",
        "gauge",
        "Distinct users of a release in the source's window." + _POLLED,
        _RELEASE,
    ),
    Family(
        "releasebits_release_crash_free_sessions_ratio",
        "gauge",
        "Share of a release's sessions that did not crash, 0..1 (absent: no data)." + _POLLED,
        _RELEASE,
    ),
    Family(
        "releasebits_release_crash_free_users_ratio",
        "gauge",
        "Share of a release's users who saw no crash, 0..1 (absent: no data)." + _POLLED,
        _RELEASE,
    ),
    Family(
        "releasebits_project_stability_target_ratio",
        "gauge",
        "A project's stability target as set in the source (Bugsnag), 0..1." + _POLLED,
        ("source", "project"),
    ),
    Family(
        "releasebits_project_critical_stability_ratio",
        "gauge",
        "A project's critical stability threshold as set in the source (Bugsnag), 0..1." + _POLLED,
        ("source", "project"),
    ),
    Family(
        "releasebits_deployed_crash_free_sessions_ratio",
        "gauge",
        "Crash-free sessions ratio of the version currently deployed to a component and stage, "
        "as its mapped source reports it under `release`." + _POLLED,
        _DEPLOYED,
    ),
    Family(
        "releasebits_deployed_crash_free_users_ratio",
        "gauge",
        "Crash-free users ratio of the version currently deployed to a component and stage."
        + _POLLED,
        _DEPLOYED,
    ),
    Family(
        "releasebits_previous_crash_free_sessions_ratio",
        "gauge",
        "Crash-free sessions ratio of the version deployed to a component and stage before the "
        "current one, for comparison." + _POLLED,
        _DEPLOYED,
    ),
    Family(
        "releasebits_deployed_crash_free_target_ratio",
        "gauge",
        "The crash-free ratio the deployed version should reach: the source project's stability "
        "target, else the crash_free_target setting.",
        ("component", "stage", "source"),
    ),
    Family(
        "releasebits_deployed_crash_free_critical_ratio",
        "gauge",
        "Below this crash-free ratio the deployed version counts as a change failure: the source "
        "project's critical stability, else the crash_free_critical setting.",
        ("component", "stage", "source"),
    ),
    Family(
        "releasebits_deployed_sessions_total",
        "counter",
        "Sessions of the release deployed to a component and stage, per source, from completed "
        "poll buckets, each counted once (for ratio SLOs: crashed / sessions).",
        ("component", "stage", "source"),
    ),
    Family(
        "releasebits_deployed_crashed_sessions_total",
        "counter",
        "Crashed sessions (Sentry crashed, Bugsnag unhandled) of the deployed release, counted "
        "like releasebits_deployed_sessions_total.",
        ("component", "stage", "source"),
    ),
    Family(
        "releasebits_source_up",
        "gauge",
        "1 if the last poll of this source and project succeeded, else 0.",
        ("source", "project"),
    ),
    Family(
        "releasebits_source_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful poll of this source and project.",
        ("source", "project"),
    ),
    Family(
        "releasebits_source_poll_duration_seconds",
        "gauge",
        "Wall time of the last poll of this source, including rate-limit waits.",
        ("source",),
    ),
)


def fill(fams: Families, db: Store, settings: Settings) -> None:
    """Release health of configured sources, and of the versions deployed.

    Rows of sources no longer configured are not exported: no stale series after a rename.
    """
    configured = {src.name for src in settings.sources}
    if not configured:
        return
    _fill_releases(fams, db, settings, configured)
    targets = release_health.targets(db)
    for row in targets:
        if row["source"] not in configured:
            continue
        key = [row["source"], row["project"]]
        if row["target_stability"] is not None:
            fams.add("releasebits_project_stability_target_ratio", key, row["target_stability"])
        if row["critical_stability"] is not None:
            fams.add("releasebits_project_critical_stability_ratio", key, row["critical_stability"])
    _fill_deployed(
        fams, db, settings, configured, stability_targets(db, targets), critical_levels(db, targets)
    )
    _fill_status(fams, db, settings)
    for row in budgets.counters(db):
        if row["source"] in configured:
            key = [str(row["component"]), str(row["stage"]), str(row["source"])]
            fams.add("releasebits_deployed_sessions_total", key, row["sessions"])
            fams.add("releasebits_deployed_crashed_sessions_total", key, row["crashed"])


def _fill_releases(fams: Families, db: Store, settings: Settings, configured: set[str]) -> None:
    for row in release_health.newest_releases(db, settings.release_health_max_releases):
        if row["source"] not in configured:
            continue
        labels = [row["source"], row["project"], row["environment"], row["release"]]
        by_status = row["sessions_by_status"]
        for status, count in sorted(by_status.items()):
            fams.add("releasebits_release_sessions", [*labels, status], count)
        total = row["total_sessions"]
        if total is not None and set(by_status) == {"unhandled"}:
            other = max(total - (by_status.get("unhandled") or 0), 0)
            fams.add("releasebits_release_sessions", [*labels, "other"], other)
        if row["users"] is not None:
            fams.add("releasebits_release_users", labels, row["users"])
        if row["crash_free_sessions"] is not None:
            fams.add(
                "releasebits_release_crash_free_sessions_ratio", labels, row["crash_free_sessions"]
            )
        if row["crash_free_users"] is not None:
            fams.add("releasebits_release_crash_free_users_ratio", labels, row["crash_free_users"])


def _fill_deployed(
    fams: Families,
    db: Store,
    settings: Settings,
    configured: set[str],
    targets: Mapping[tuple[str, str], float | None],
    criticals: Mapping[tuple[str, str], float | None],
) -> None:
    polled = release_health.by_key(db)
    for row in components_store.current_versions_of(db, sorted(settings.components)):
        for h in deployed_health(
            db,
            settings,
            row["component"],
            row["stage"],
            targets=targets,
            polled=polled,
            criticals=criticals,
        ):
            if h.source not in configured:
                continue
            key = [h.component, h.stage, h.source]
            fams.add("releasebits_deployed_crash_free_target_ratio", key, h.target)
            fams.add("releasebits_deployed_crash_free_critical_ratio", key, h.critical)
            if h.crash_free_sessions is not None:
                fams.add(
                    "releasebits_deployed_crash_free_sessions_ratio",
                    [*key, h.release],
                    h.crash_free_sessions,
                )
            if h.crash_free_users is not None:
                fams.add(
                    "releasebits_deployed_crash_free_users_ratio",
                    [*key, h.release],
                    h.crash_free_users,
                )
            if h.previous_release and h.previous_crash_free_sessions is not None:
                fams.add(
                    "releasebits_previous_crash_free_sessions_ratio",
                    [*key, h.previous_release],
                    h.previous_crash_free_sessions,
                )


def source_statuses(db: Store, settings: Settings) -> list[dict[str, Any]]:
    """Poll status per source and project, of configured sources only (no stale rows)."""
    configured = {src.name for src in settings.sources}
    return [r for r in release_health.statuses(db) if r["source"] in configured]


def _fill_status(fams: Families, db: Store, settings: Settings) -> None:
    durations: dict[str, float] = {}
    for row in source_statuses(db, settings):
        key = [row["source"], row["project"]]
        fams.add("releasebits_source_up", key, row["up"])
        if row["last_success_ts"] is not None:
            fams.add(
                "releasebits_source_last_success_timestamp_seconds", key, row["last_success_ts"]
            )
        if row["last_duration_seconds"] is not None:
            durations[row["source"]] = row["last_duration_seconds"]
    for source, seconds in sorted(durations.items()):
        fams.add("releasebits_source_poll_duration_seconds", [source], seconds)
