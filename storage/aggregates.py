"""Reads of the pre-aggregated rows for /metrics: cost grows with series, not stored events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from storage.events import DURATION_BUCKETS


@dataclass(frozen=True)
class Snapshot:
    """Everything the collector exports, read in one transaction for a consistent scrape."""

    event_stats: list[dict[str, Any]]
    durations: list[dict[str, Any]]
    current_versions: list[dict[str, Any]]
    overflow: dict[str, int]
    components: int
    releases: int
    worker_heartbeat: float | None
    buckets: tuple[float, ...] = DURATION_BUCKETS


_TRACKED = (
    " JOIN components c ON c.slug = t.component AND c.id <= :max_components"
    " LEFT JOIN stages s ON s.name = t.stage"
    " WHERE (t.stage = '' OR s.id <= :max_stages)"
)


def snapshot(db: sqlite_utils.Database, *, max_components: int, max_stages: int) -> Snapshot:
    """Rows for components and stages within the cardinality limits (first seen first),
    sorted by labels so that consecutive scrapes list series in the same order."""
    params = {"max_components": max_components, "max_stages": max_stages}
    conn = db.conn
    # One read transaction: every family of a scrape sees the same committed state.
    started = not conn.in_transaction
    if started:
        conn.execute("BEGIN")
    try:
        stats = list(db.query("SELECT t.* FROM event_stats t" + _TRACKED, params))
        durations = []
        for row in db.query(
            "SELECT t.* FROM duration_stats t" + _TRACKED + " ORDER BY t.component, t.stage", params
        ):
            row["buckets"] = json.loads(row["buckets"])
            durations.append(row)
        current = list(
            db.query(
                "SELECT t.* FROM current_versions t" + _TRACKED + " ORDER BY t.component, t.stage",
                params,
            )
        )
        overflow = {r[0]: r[1] for r in conn.execute("SELECT dimension, count FROM overflow")}
        n_components = conn.execute("SELECT count(*) FROM components").fetchone()[0]
        n_releases = conn.execute("SELECT count(*) FROM releases").fetchone()[0]
        hb = conn.execute("SELECT updated_at FROM worker_state WHERE name = 'heartbeat'").fetchone()
    finally:
        if started:
            conn.execute("COMMIT")
    return Snapshot(
        event_stats=stats,
        durations=durations,
        current_versions=current,
        overflow=overflow,
        components=n_components,
        releases=n_releases,
        worker_heartbeat=hb[0] if hb else None,
    )
