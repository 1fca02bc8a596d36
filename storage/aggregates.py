"""Pre-aggregated rows: updated in each event's transaction, read by /metrics in one snapshot, so
a scrape costs O(series) and never scans events."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from storage import jsontext
from storage.db import Store

# Upper bounds in seconds: CI steps take seconds, rollouts up to an hour or more.
DURATION_BUCKETS: tuple[float, ...] = (
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
)  # fmt: skip


def add_event(tx: Store, kind: str, row: dict[str, Any]) -> None:
    """Count one stored event (a deployments/builds row) into every aggregate it touches."""
    stage = row.get("stage") or ""
    tx.execute(
        "INSERT INTO event_stats (kind, component, stage, result_class, count, last_ts) "  # pragma: no mutate
        "VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT(kind, component, stage, result_class) "  # pragma: no mutate
        "DO UPDATE SET count = event_stats.count + 1, last_ts = CASE WHEN excluded.last_ts > "  # pragma: no mutate
        "event_stats.last_ts THEN excluded.last_ts ELSE event_stats.last_ts END",  # pragma: no mutate
        [kind, row["component"], stage, row["result_class"], row["finished_ts"]],
    )
    if row["duration_seconds"] is not None:
        add_duration(tx, kind, row["component"], stage, row["duration_seconds"])
    if kind == "deployment" and row["result_class"] == "success":
        _advance_current_version(tx, row)
    elif kind == "build":
        _advance_last_build(tx, row)


def add_duration(
    tx: Store,
    kind: str,
    component: str,
    stage: str,
    duration: float,
    bounds: tuple[float, ...] = DURATION_BUCKETS,
) -> None:
    """One more observation in the histogram of a kind (deployment, build, or a DORA
    histogram with its own `bounds`), component and stage."""
    found = tx.one(
        "SELECT buckets, sum, count FROM duration_stats "  # pragma: no mutate
        "WHERE kind = ? AND component = ? AND stage = ?",  # pragma: no mutate
        [kind, component, stage],
    )
    buckets = jsontext.loads(found[0]) if found else [0] * (len(bounds) + 1)
    index = next((i for i, bound in enumerate(bounds) if duration <= bound), len(bounds))
    buckets[index] += 1
    tx.execute(
        "INSERT INTO duration_stats (kind, component, stage, buckets, sum, count) "  # pragma: no mutate
        "VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT(kind, component, stage) DO UPDATE SET "  # pragma: no mutate
        "buckets = excluded.buckets, sum = duration_stats.sum + excluded.sum, "  # pragma: no mutate
        "count = duration_stats.count + 1",  # pragma: no mutate
        [kind, component, stage, jsontext.dumps(buckets), duration],
    )


def _advance_current_version(tx: Store, row: dict[str, Any]) -> None:
    """Only a newer successful deployment changes what runs: a late or backfilled event (older
    finished_at) is counted but never makes an old version "current". One statement: the
    upsert's WHERE skips the older event, and since_ts survives a redeploy of the same version."""
    tx.execute(
        "INSERT INTO current_versions "  # pragma: no mutate
        "(component, stage, version, commit_sha, deployment_id, finished_ts, since_ts) "  # pragma: no mutate
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(component, stage) DO UPDATE SET "  # pragma: no mutate
        "version = excluded.version, commit_sha = excluded.commit_sha, "  # pragma: no mutate
        "deployment_id = excluded.deployment_id, finished_ts = excluded.finished_ts, "  # pragma: no mutate
        "since_ts = CASE WHEN current_versions.version = excluded.version "  # pragma: no mutate
        "THEN current_versions.since_ts ELSE excluded.since_ts END "  # pragma: no mutate
        "WHERE excluded.finished_ts >= current_versions.finished_ts",  # pragma: no mutate
        [
            row["component"],
            row["stage"],
            row["version"],
            row["commit_sha"],
            row["id"],
            row["finished_ts"],
            row["finished_ts"],
        ],
    )


def _advance_last_build(tx: Store, row: dict[str, Any]) -> None:
    """The newest build by finished_at, whatever order builds arrive in (one statement)."""
    tx.execute(
        "INSERT INTO last_builds "  # pragma: no mutate
        "(component, build_id, version, result, result_class, finished_ts) "  # pragma: no mutate
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(component) DO UPDATE SET "  # pragma: no mutate
        "build_id = excluded.build_id, version = excluded.version, result = excluded.result, "  # pragma: no mutate
        "result_class = excluded.result_class, finished_ts = excluded.finished_ts "  # pragma: no mutate
        "WHERE excluded.finished_ts >= last_builds.finished_ts",  # pragma: no mutate
        [
            row["component"],
            row["id"],
            row["version"],
            row["result"],
            row["result_class"],
            row["finished_ts"],
        ],
    )


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
    worker_leader: str | None = None  # owner of the unexpired worker lease
    buckets: tuple[float, ...] = DURATION_BUCKETS


_TRACKED = (
    " JOIN components c ON c.slug = t.component AND c.id <= :max_components"
    " LEFT JOIN stages s ON s.name = t.stage"
    " WHERE (t.stage = '' OR s.id <= :max_stages)"
)


def _counts(store: Store, now: float) -> tuple[Any, ...]:
    """Components, releases, the last heartbeat and the unexpired worker lease's owner."""
    counts = store.one(
        "SELECT (SELECT count(*) FROM components), (SELECT count(*) FROM releases), "  # pragma: no mutate
        "(SELECT updated_at FROM worker_state WHERE name = ?), "  # pragma: no mutate
        "(SELECT owner FROM leases WHERE name = ? AND expires_at > ?)",  # pragma: no mutate
        ["heartbeat", "worker", now],  # values, not SQL text: their mutants stay for the tests
    )
    assert counts is not None  # a SELECT without FROM always answers one row
    return counts


def snapshot(
    store: Store,
    *,
    max_components: int,
    max_stages: int,
    component: str | None = None,
    buckets: bool = True,
    now: float | None = None,
) -> Snapshot:
    """Rows for components and stages within the cardinality limits (first seen first),
    sorted by labels so that consecutive scrapes list series in the same order.

    The status page narrows it to one `component`, and skips decoding histogram `buckets` it
    does not draw (row["buckets"] stays the stored JSON text).
    """
    params = {"max_components": max_components, "max_stages": max_stages, "component": component}
    tracked = _TRACKED + (
        " AND t.component = :component"  # pragma: no mutate
        if component is not None
        else ""
    )
    with store.snapshot():
        stats = store.query(
            "SELECT t.* FROM event_stats t" + tracked,  # pragma: no mutate
            params,
        )
        durations = store.query(
            "SELECT t.* FROM duration_stats t"  # pragma: no mutate
            + tracked
            + " AND t.kind IN ('deployment', 'build')"  # pragma: no mutate
            " ORDER BY t.component, t.stage",  # pragma: no mutate
            params,
        )
        for row in durations if buckets else ():
            row["buckets"] = json.loads(row["buckets"])
        current = store.query(
            "SELECT t.* FROM current_versions t"  # pragma: no mutate
            + tracked
            + " ORDER BY t.component, t.stage",  # pragma: no mutate
            params,
        )
        overflow = {
            r["dimension"]: r["count"]
            for r in store.query("SELECT * FROM overflow")  # pragma: no mutate
        }
        counts = _counts(store, time.time() if now is None else now)
    return Snapshot(
        event_stats=stats,
        durations=durations,
        current_versions=current,
        overflow=overflow,
        components=counts[0],
        releases=counts[1],
        worker_heartbeat=counts[2],
        worker_leader=counts[3],
    )
