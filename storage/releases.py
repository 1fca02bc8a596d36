"""Releases: named groups of deployments."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from storage import jsontext, outbox
from storage.db import Store
from storage.ids import new_id
from storage.pagination import Keyset, page
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
NEWEST_FIRST = Keyset(columns=("r.created_at", "r.id"), keys=("created_at", "id"))


def ensure_release(
    tx: Store,
    name: str,
    forward: outbox.Router | None = None,
    release: dict[str, Any] | None = None,
) -> tuple[str, bool]:
    """The id of the release `name`, created (with its release.created outbox rows) if new.

    The caller's write transaction must be open. `release` holds the description and
    meta_data of an explicitly created release; a deployment's `release` field creates a bare
    one. Returns (id, created).
    """
    row = tx.one("SELECT id FROM releases WHERE name = ?", [name])
    if row:
        return str(row[0]), False
    release = release if release is not None else {"name": name}
    rid, now = new_id(), time.time()
    inserted = tx.one(
        "INSERT INTO releases (id, name, description, meta_data, created_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING RETURNING id",
        [
            rid,
            name,
            release.get("description"),
            jsontext.dumps(release.get("meta_data") or {}),
            now,
        ],
    )
    if inserted is None:  # a concurrent writer (another replica) created it just now
        row = tx.one("SELECT id FROM releases WHERE name = ?", [name])
        assert row is not None  # its insert committed before ours gave way
        return str(row[0]), False
    if forward is not None:
        outbox.enqueue(tx, "release", rid, None, forward("release", None, release), now)
    return rid, True


def create_release(
    store: Store, release: dict[str, Any], forward: outbox.Router | None = None
) -> tuple[dict[str, Any], bool]:
    """Create a release by name; if it exists, return it unchanged. Returns (release, created)."""
    with store.transaction() as tx:
        _, created = ensure_release(tx, release["name"], forward, release)
    found = get_release(store, release["name"])
    if found is None:  # only a concurrent delete could do this; there is none
        raise LookupError(release["name"])
    return found, created


def get_release(store: Store, id_or_name: str) -> dict[str, Any] | None:
    rows = store.query(_SELECT + " WHERE r.id = ? OR r.name = ? LIMIT 1", [id_or_name, id_or_name])
    return _shape(rows[0]) if rows else None


def list_releases(
    store: Store, *, limit: int = 50, after: Sequence[Any] | None = None
) -> tuple[list[dict[str, Any]], tuple[Any, ...] | None]:
    """Newest first; cursor is (created_at, id) of the last row when more follow."""
    rows, cursor = page(store, _SELECT, NEWEST_FIRST, after=after, limit=limit)
    return [_shape(r) for r in rows], cursor
