"""Deployments and builds: the durable insert (with aggregates and idempotency) and the reads."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlite_utils

from storage import outbox
from storage.db import run_write
from storage.timestamps import iso_datetime

KINDS = ("deployment", "build")
TABLE = {"deployment": "deployments", "build": "builds"}

# Upper bounds in seconds: CI steps take seconds, rollouts up to an hour or more.
DURATION_BUCKETS: tuple[float, ...] = (
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
)  # fmt: skip


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key with the hash of the request it came with."""

    scope: str
    key: str
    request_hash: str
    ttl_seconds: float


@dataclass(frozen=True)
class Limits:
    """How many components and stages become metric label values."""

    max_components: int
    max_stages: int


@dataclass
class Outcome:
    """What record_event did: created a row, replayed an earlier answer, or found a conflict."""

    status: int
    body: dict[str, Any]
    created: bool = False
    conflict: bool = False
    overflow: list[str] = field(default_factory=list)
    component_created: bool = False


def _get_or_create(
    db: sqlite_utils.Database, table: str, column: str, value: str
) -> tuple[int, bool]:
    row = db.execute(f"SELECT id FROM {table} WHERE {column} = ?", [value]).fetchone()
    if row:
        return row[0], False
    cursor = db.execute(
        f"INSERT INTO {table} ({column}, created_at) VALUES (?, ?)",
        [value, time.time()],
    )
    return int(cursor.lastrowid or 0), True


def _release_id(db: sqlite_utils.Database, name: str, forward: outbox.Router | None = None) -> str:
    row = db.execute("SELECT id FROM releases WHERE name = ?", [name]).fetchone()
    if row:
        return str(row[0])
    rid = str(uuid.uuid4())
    now = time.time()
    db.execute(
        "INSERT INTO releases (id, name, meta_data, created_at) VALUES (?, ?, '{}', ?)",
        [rid, name, now],
    )
    if forward is not None:
        targets = forward("release", None, {"name": name})
        outbox.enqueue(db, "release", rid, None, targets, now)
    return rid


def record_event(
    db: sqlite_utils.Database,
    kind: str,
    component: str,
    event: dict[str, Any],
    *,
    event_id: str,
    body: dict[str, Any],
    limits: Limits,
    idempotency: Idempotency | None = None,
    forward: outbox.Router | None = None,
) -> Outcome:
    """Insert one validated event and update every aggregate in a single committed transaction.

    `body` is the 201 answer; it is stored with the Idempotency-Key so a retry gets it back.
    `forward` names the forwarding targets of the event: their outbox rows are written in the
    same transaction, so an event is forwarded if and only if it was stored.
    """
    now = time.time()

    # Runs inside the write transaction, possibly on another request's thread and connection
    # (group commit): it must use only the `db` it is given.
    def work(db: sqlite_utils.Database) -> Outcome:
        if idempotency is not None:
            row = db.execute(
                "SELECT request_hash, status, body FROM idempotency_keys "
                "WHERE scope = ? AND key = ? AND created_at > ?",
                [idempotency.scope, idempotency.key, now - idempotency.ttl_seconds],
            ).fetchone()
            if row is not None:
                if row[0] != idempotency.request_hash:
                    return Outcome(409, {}, conflict=True)
                return Outcome(int(row[1]), json.loads(row[2]))
        outcome = Outcome(201, body, created=True)
        component_rank, component_new = _get_or_create(db, "components", "slug", component)
        if component_rank > limits.max_components:
            outcome.overflow.append("component")
        stage = event.get("stage") or ""
        if kind == "deployment":
            stage_rank, _ = _get_or_create(db, "stages", "name", stage)
            if stage_rank > limits.max_stages:
                outcome.overflow.append("stage")
        finished: datetime = event["finished_at"]
        started: datetime | None = event.get("started_at")
        finished_ts = finished.timestamp()
        duration = (finished - started).total_seconds() if started is not None else None
        row_values: dict[str, Any] = {
            "id": event_id,
            "component": component,
            "version": event["version"],
            "result": event.get("result"),
            "result_class": event["result_class"],
            "started_at": iso_datetime(started) if started is not None else None,
            "finished_at": iso_datetime(finished),
            "finished_ts": finished_ts,
            "duration_seconds": duration,
            "commit_sha": event.get("commit_sha"),
            "code_name": event.get("code_name"),
            "branch": event.get("branch"),
            "tag": event.get("tag"),
            "meta_data": json.dumps(event.get("meta_data") or {}, ensure_ascii=False),
            "received_at": now,
        }
        if kind == "deployment":
            row_values["stage"] = stage
            row_values["host"] = event.get("host")
            release = event.get("release")
            row_values["release_id"] = _release_id(db, release, forward) if release else None
        else:
            row_values["url"] = event.get("url")
        columns = ", ".join(row_values)
        marks = ", ".join("?" for _ in row_values)
        db.execute(
            f"INSERT INTO {TABLE[kind]} ({columns}) VALUES ({marks})",
            list(row_values.values()),
        )
        _update_aggregates(db, kind, component, stage, event, event_id, finished_ts, duration)
        if forward is not None:
            outbox.enqueue(db, kind, event_id, component, forward(kind, component, event), now)
        for dimension in outcome.overflow:
            db.execute(
                "INSERT INTO overflow (dimension, count) VALUES (?, 1) "
                "ON CONFLICT(dimension) DO UPDATE SET count = count + 1",
                [dimension],
            )
        if idempotency is not None:
            db.execute(
                "INSERT OR REPLACE INTO idempotency_keys "
                "(scope, key, request_hash, status, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    idempotency.scope,
                    idempotency.key,
                    idempotency.request_hash,
                    201,
                    json.dumps(body),
                    now,
                ],
            )
        outcome.component_created = component_new
        return outcome

    return run_write(db, work)


def _update_aggregates(
    db: sqlite_utils.Database,
    kind: str,
    component: str,
    stage: str,
    event: dict[str, Any],
    event_id: str,
    finished_ts: float,
    duration: float | None,
) -> None:
    rclass = event["result_class"]
    db.execute(
        "INSERT INTO event_stats (kind, component, stage, result_class, count, last_ts) "
        "VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT(kind, component, stage, result_class) "
        "DO UPDATE SET count = count + 1, last_ts = max(last_ts, excluded.last_ts)",
        [kind, component, stage, rclass, finished_ts],
    )
    if duration is not None:
        row = db.execute(
            "SELECT buckets, sum, count FROM duration_stats "
            "WHERE kind = ? AND component = ? AND stage = ?",
            [kind, component, stage],
        ).fetchone()
        buckets = json.loads(row[0]) if row else [0] * (len(DURATION_BUCKETS) + 1)
        index = next(
            (i for i, bound in enumerate(DURATION_BUCKETS) if duration <= bound),
            len(DURATION_BUCKETS),
        )
        buckets[index] += 1
        db.execute(
            "INSERT OR REPLACE INTO duration_stats (kind, component, stage, buckets, sum, count) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                kind,
                component,
                stage,
                json.dumps(buckets),
                (row[1] if row else 0.0) + duration,
                (row[2] if row else 0) + 1,
            ],
        )
    if kind == "deployment" and rclass == "success":
        # Only a newer successful deployment changes what runs: a late or backfilled event
        # (older finished_at) is counted but never makes an old version "current".
        current = db.execute(
            "SELECT version, finished_ts, since_ts FROM current_versions "
            "WHERE component = ? AND stage = ?",
            [component, stage],
        ).fetchone()
        if current is None or finished_ts >= current[1]:
            since = (
                current[2]
                if current is not None and current[0] == event["version"]
                else finished_ts
            )
            db.execute(
                "INSERT OR REPLACE INTO current_versions "
                "(component, stage, version, commit_sha, deployment_id, finished_ts, since_ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    component,
                    stage,
                    event["version"],
                    event.get("commit_sha"),
                    event_id,
                    finished_ts,
                    since,
                ],
            )
    elif kind == "build":
        last = db.execute(
            "SELECT finished_ts FROM last_builds WHERE component = ?", [component]
        ).fetchone()
        if last is None or finished_ts >= last[0]:
            db.execute(
                "INSERT OR REPLACE INTO last_builds "
                "(component, build_id, version, result, result_class, finished_ts) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [component, event_id, event["version"], event.get("result"), rclass, finished_ts],
            )


def _row_to_event(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "component": row["component"],
        "version": row["version"],
        "result": row["result"],
        "result_class": row["result_class"],
    }
    if kind == "deployment":
        out["stage"] = row["stage"]
        out["host"] = row["host"]
    out.update(
        {
            "code_name": row["code_name"],
            "started_at": row["started_at"],
            "finished_at": row["finished_at"],
            "duration_seconds": row["duration_seconds"],
            "meta_data": json.loads(row["meta_data"]),
            "commit_sha": row["commit_sha"],
            "tag": row["tag"],
            "branch": row["branch"],
        }
    )
    if kind == "deployment":
        out["release"] = row.get("release_name")
    else:
        out["url"] = row["url"]
    return out


def _select(kind: str) -> str:
    if kind == "deployment":
        return (
            "SELECT d.*, r.name AS release_name FROM deployments d "
            "LEFT JOIN releases r ON r.id = d.release_id"
        )
    return "SELECT d.* FROM builds d"


def get_event(
    db: sqlite_utils.Database, kind: str, component: str, event_id: str
) -> dict[str, Any] | None:
    rows = list(
        db.query(_select(kind) + " WHERE d.component = ? AND d.id = ?", [component, event_id])
    )
    return _row_to_event(kind, rows[0]) if rows else None


def list_events(
    db: sqlite_utils.Database,
    kind: str,
    *,
    component: str | None = None,
    filters: dict[str, Any] | None = None,
    release_id: str | None = None,
    limit: int = 50,
    after: tuple[float, int] | None = None,
) -> tuple[list[dict[str, Any]], tuple[float, int] | None]:
    """Newest first by finished_at; `after` is the (finished_ts, seq) cursor of the last row seen.

    Returns the page and the cursor of its last row when more rows follow.
    """
    where: list[str] = []
    params: list[Any] = []
    if component is not None:
        where.append("d.component = ?")
        params.append(component)
    if release_id is not None:
        where.append("d.release_id = ?")
        params.append(release_id)
    for column, value in (filters or {}).items():
        if column == "since":
            where.append("d.finished_ts >= ?")
        elif column == "until":
            where.append("d.finished_ts < ?")
        elif column in {"stage", "host", "version", "result", "result_class"}:
            where.append(f"d.{column} = ?")
        else:
            raise ValueError(f"unknown filter {column}")
        params.append(value)
    if after is not None:
        where.append("(d.finished_ts < ? OR (d.finished_ts = ? AND d.seq < ?))")
        params.extend([after[0], after[0], after[1]])
    sql = _select(kind)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY d.finished_ts DESC, d.seq DESC LIMIT ?"
    params.append(limit + 1)
    rows = list(db.query(sql, params))
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = (rows[-1]["finished_ts"], rows[-1]["seq"]) if more and rows else None
    return [_row_to_event(kind, r) for r in rows], cursor


def count_since(
    db: sqlite_utils.Database, kind: str, component: str, stage: str | None, since_ts: float
) -> int:
    """Number of events of a component (and stage) that finished at or after since_ts."""
    sql = f"SELECT count(*) FROM {TABLE[kind]} WHERE component = ? AND finished_ts >= ?"
    params: list[Any] = [component, since_ts]
    if stage is not None and kind == "deployment":
        sql += " AND stage = ?"
        params.append(stage)
    return int(db.execute(sql, params).fetchone()[0])
