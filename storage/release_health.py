"""Polled release health: replace a source's rows after a good poll, keep them after a bad one."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from storage.db import Store


@dataclass(frozen=True)
class HealthRow:
    """One release of one project/environment as a source reported it."""

    source: str
    project: str
    environment: str
    release: str
    total_sessions: int | None
    users: int | None
    crash_free_sessions: float | None
    crash_free_users: float | None
    sessions_by_status: dict[str, int] = field(default_factory=dict)
    released_at: float | None = None
    # Completed buckets of the poll (start, end, sessions, crashed), for the error-budget
    # counters; not stored here (storage.budgets counts each once).
    buckets: tuple[tuple[float, float, int, int], ...] = ()


@dataclass(frozen=True)
class Target:
    """A project's stability target and critical threshold (Bugsnag), 0..1."""

    source: str
    project: str
    target_type: str | None
    target_stability: float | None
    critical_stability: float | None


def store_poll(
    db: Store,
    source: str,
    rows: Iterable[HealthRow],
    targets: Iterable[Target] = (),
    *,
    projects: Iterable[str] = (),
    duration: float,
) -> None:
    """Record a successful poll: its rows replace the source's previous rows, all at once."""
    now = time.time()
    rows = list(rows)
    with db.transaction():
        # A source without release dates (Sentry's sessions API) keeps the time a release was
        # first seen, so "the newest N releases" stays meaningful from one poll to the next.
        first_seen = {
            (r[0], r[1], r[2]): r[3]
            for r in db.execute(
                "SELECT project, environment, release, released_at FROM release_health "
                "WHERE source = ?",
                [source],
            )
        }
        db.execute("DELETE FROM release_health WHERE source = ?", [source])
        db.executemany(
            "INSERT INTO release_health (source, project, environment, release, "
            "total_sessions, users, crash_free_sessions, crash_free_users, sessions_by_status, "
            "released_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(source, project, environment, release) DO UPDATE SET "
            "total_sessions = excluded.total_sessions, users = excluded.users, "
            "crash_free_sessions = excluded.crash_free_sessions, "
            "crash_free_users = excluded.crash_free_users, "
            "sessions_by_status = excluded.sessions_by_status, "
            "released_at = excluded.released_at, updated_at = excluded.updated_at",
            [
                (
                    r.source,
                    r.project,
                    r.environment,
                    r.release,
                    r.total_sessions,
                    r.users,
                    r.crash_free_sessions,
                    r.crash_free_users,
                    json.dumps(r.sessions_by_status, sort_keys=True),
                    r.released_at
                    if r.released_at is not None
                    else first_seen.get((r.project, r.environment, r.release)) or now,
                    now,
                )
                for r in rows
            ],
        )
        _store_targets(db, targets, now)
        for project in {*projects, *(r.project for r in rows)} or {""}:
            _status(db, source, project, up=True, now=now, duration=duration, error=None)


def _store_targets(db: Store, targets: Iterable[Target], now: float) -> None:
    for t in targets:
        db.execute(
            "INSERT INTO project_targets (source, project, target_type, "
            "target_stability, critical_stability, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(source, project) DO UPDATE SET target_type = excluded.target_type, "
            "target_stability = excluded.target_stability, "
            "critical_stability = excluded.critical_stability, "
            "updated_at = excluded.updated_at",
            [t.source, t.project, t.target_type, t.target_stability, t.critical_stability, now],
        )


def record_failure(
    db: Store,
    source: str,
    error: str,
    *,
    duration: float,
    projects: Iterable[str] = (),
) -> None:
    """A failed poll: the last good rows stay, `up` drops to 0 for the source's projects."""
    now = time.time()
    with db.transaction():
        known = [
            r[0] for r in db.execute("SELECT project FROM source_status WHERE source = ?", [source])
        ]
        for project in {*projects, *known} or {""}:
            _status(db, source, project, up=False, now=now, duration=duration, error=error[:500])


def _status(
    db: Store,
    source: str,
    project: str,
    *,
    up: bool,
    now: float,
    duration: float,
    error: str | None,
) -> None:
    db.execute(
        "INSERT INTO source_status (source, project, up, last_success_ts, last_attempt_ts, "
        "last_duration_seconds, last_error) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(source, project) DO UPDATE SET up = excluded.up, "
        "last_success_ts = coalesce(excluded.last_success_ts, source_status.last_success_ts), "
        "last_attempt_ts = excluded.last_attempt_ts, "
        "last_duration_seconds = excluded.last_duration_seconds, last_error = excluded.last_error",
        [source, project, int(up), now if up else None, now, duration, error],
    )


def newest_releases(db: Store, per_project: int) -> list[dict[str, Any]]:
    """Rows of the newest `per_project` releases of each source/project/environment."""
    rows = db.query(
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY source, project, environment "
        "ORDER BY coalesce(released_at, 0) DESC, coalesce(total_sessions, 0) DESC, release DESC) "
        "AS rank FROM release_health) AS ranked "
        "WHERE rank <= ? ORDER BY source, project, environment, release",
        [per_project],
    )
    for row in rows:
        row["sessions_by_status"] = json.loads(row["sessions_by_status"])
    return rows


def lookup(
    db: Store, source: str, project: str, environment: str, release: str
) -> dict[str, Any] | None:
    rows = db.query(
        "SELECT * FROM release_health WHERE source = ? AND project = ? AND environment = ? "
        "AND release = ?",
        [source, project, environment, release],
    )
    return rows[0] if rows else None


HealthKey = tuple[str, str, str, str]  # source, project, environment, release


def by_key(db: Store) -> dict[HealthKey, dict[str, Any]]:
    """Every polled row by (source, project, environment, release): one read for a join of many
    deployed versions instead of a lookup each."""
    rows = db.query(
        "SELECT source, project, environment, release, crash_free_sessions, crash_free_users "
        "FROM release_health"
    )
    return {(r["source"], r["project"], r["environment"], r["release"]): r for r in rows}


def targets(db: Store) -> list[dict[str, Any]]:
    return db.query("SELECT * FROM project_targets ORDER BY source, project")


def statuses(db: Store) -> list[dict[str, Any]]:
    return db.query("SELECT * FROM source_status ORDER BY source, project")


def rows_for_release(db: Store, release: str) -> list[dict[str, Any]]:
    """Every polled row of a release name, across sources, projects and environments."""
    return db.query(
        "SELECT * FROM release_health WHERE release = ? ORDER BY source, project, environment",
        [release],
    )
