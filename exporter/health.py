"""Joins what is deployed to its polled release health, for /metrics and the badges."""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from exporter.config import Settings
from storage import components as components_store
from storage import release_health


@dataclass(frozen=True)
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
    previous_version: str | None = None  # deployed before `version` became current
    previous_release: str | None = None
    previous_crash_free_sessions: float | None = None
    previous_crash_free_users: float | None = None


def deployed_health(
    db: sqlite_utils.Database,
    settings: Settings,
    component: str,
    stage: str,
    version: str | None = None,
) -> list[DeployedHealth]:
    """Health of `version` (default: the current one) of component/stage from each mapped source.

    A source without data for that release yields an entry with None ratios (no data, not 0).
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
    target_by_key = {
        (t["source"], t["project"]): t["target_stability"] for t in release_health.targets(db)
    }
    out = []
    for source, src in sorted(mapping.sources.items()):
        release = src.release_name(component, version)
        environment = mapping.environment(stage, source)
        row = release_health.lookup(db, source, src.project, environment, release)
        prev_release = src.release_name(component, previous) if previous else None
        prev = (
            release_health.lookup(db, source, src.project, environment, prev_release)
            if prev_release
            else None
        )
        target = target_by_key.get((source, src.project))
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
                target=target if target is not None else settings.crash_free_target,
                previous_version=previous,
                previous_release=prev_release,
                previous_crash_free_sessions=prev["crash_free_sessions"] if prev else None,
                previous_crash_free_users=prev["crash_free_users"] if prev else None,
            )
        )
    return out
