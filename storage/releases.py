"""Releases: named groups of deployments."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import sqlite_utils

from storage import outbox
from storage.db import write_transaction
from storage.timestamps import iso_ts


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "meta_data": json.loads(row["meta_data"]),
        "created_at": iso_ts(row["created_at"]),
        "deployments_count": row.get("deployments_count", 0),
    }


_SELECT = (
    "SELECT r.*, (SELECT count(*) FROM deployments d WHERE d.release_id = r.id) "
    "AS deployments_count FROM releases r"
)


def create_release(
    db: sqlite_utils.Database, release: dict[str, Any], forward: outbox.Router | None = None
) -> tuple[dict[str, Any], bool]:
    """Create a release by name; if it exists, return it unchanged. Returns (release, created).

    A new release gets its outbox rows (release.created) in the same transaction.
    """
    with write_transaction(db):
        existing = db.execute(
            "SELECT id FROM releases WHERE name = ?", [release["name"]]
        ).fetchone()
        created = existing is None
        if created:
            rid, now = str(uuid.uuid4()), time.time()
            db.execute(
                "INSERT INTO releases (id, name, description, meta_data, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    rid,
                    release["name"],
                    release.get("description"),
                    json.dumps(release.get("meta_data") or {}, ensure_ascii=False),
                    now,
                ],
            )
            if forward is not None:
                outbox.enqueue(db, "release", rid, None, forward("release", None, release), now)
    found = get_release(db, release["name"])
    assert found is not None
    return found, created


def get_release(db: sqlite_utils.Database, id_or_name: str) -> dict[str, Any] | None:
    rows = list(
        db.query(_SELECT + " WHERE r.id = ? OR r.name = ? LIMIT 1", [id_or_name, id_or_name])
    )
    return _shape(rows[0]) if rows else None


def list_releases(
    db: sqlite_utils.Database, *, limit: int = 50, after: tuple[float, str] | None = None
) -> tuple[list[dict[str, Any]], tuple[float, str] | None]:
    """Newest first; cursor is (created_at, id) of the last row when more follow."""
    params: list[Any] = []
    sql = _SELECT
    if after is not None:
        sql += " WHERE (r.created_at < ? OR (r.created_at = ? AND r.id < ?))"
        params.extend([after[0], after[0], after[1]])
    sql += " ORDER BY r.created_at DESC, r.id DESC LIMIT ?"
    params.append(limit + 1)
    rows = list(db.query(sql, params))
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = (rows[-1]["created_at"], rows[-1]["id"]) if more and rows else None
    return [_shape(r) for r in rows], cursor
