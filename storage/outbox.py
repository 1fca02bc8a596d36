"""The forwarding outbox: delivery rows written with each event, claimed with a lease, finished.

Ingest only inserts rows (inside the event's own transaction); the one background worker claims
due rows, delivers them and records the outcome here. Nothing here knows HTTP or the targets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from storage.db import Store
from storage.ids import new_id
from storage.pagination import Keyset, page
from storage.timestamps import iso_ts

STATUSES = ("pending", "delivering", "delivered", "failed", "disabled")
OUTCOMES = ("delivered", "retried", "failed", "disabled")
ERROR_CHARS = 500

# (kind, component or None, event fields) -> names of the targets that want this event.
Router = Callable[[str, str | None, dict[str, Any]], Sequence[str]]


@dataclass(frozen=True)
class Delivery:
    """One claimed delivery: which event goes to which target, and how often it was tried."""

    id: str
    seq: int
    event_kind: str
    event_id: str
    component: str | None
    target: str
    attempts: int
    retry_since: float
    created_at: float


@dataclass(frozen=True)
class Result:
    """What the worker decided for a delivery after an attempt."""

    delivery_id: str
    target: str
    outcome: str  # delivered | retried | failed | disabled | released
    status: int | None = None
    error: str | None = None
    next_attempt_at: float | None = None  # for "retried"


def enqueue(
    db: Store,
    kind: str,
    event_id: str,
    component: str | None,
    targets: Iterable[str],
    now: float,
) -> list[str]:
    """Insert one pending delivery per target; the caller's transaction must be open."""
    if not db.in_transaction:
        raise RuntimeError("outbox.enqueue must run inside the event's write transaction")
    rows = [(new_id(), kind, event_id, component, target, now, now, now, now) for target in targets]
    db.executemany(
        "INSERT INTO deliveries (id, event_kind, event_id, component, target, status, "  # pragma: no mutate
        "attempts, next_attempt_at, retry_since, created_at, updated_at) "  # pragma: no mutate
        "VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",  # pragma: no mutate
        rows,
    )
    return [row[0] for row in rows]


def release_orphans(db: Store) -> int:
    """Make every in-flight delivery due again: at start, the one worker owns none of them."""
    with db.transaction():
        cursor = db.execute(
            "UPDATE deliveries SET status = 'pending', lease_until = NULL, updated_at = ? "  # pragma: no mutate
            "WHERE status = 'delivering'",  # pragma: no mutate
            [time.time()],
        )
    return cursor.rowcount


def claim(
    db: Store,
    targets: Sequence[str],
    *,
    now: float,
    lease_seconds: float,
    limit: int,
) -> list[Delivery]:
    """Take up to `limit` due deliveries per target, oldest event first, under a lease.

    Due: pending and next_attempt_at has come, or delivering with an expired lease (the worker
    that held it died). Disabled targets are skipped.
    """
    out: list[Delivery] = []
    with db.transaction():
        disabled = {
            r[0]
            for r in db.execute(
                "SELECT target FROM forward_targets WHERE disabled_at IS NOT NULL"  # pragma: no mutate
            ).fetchall()
        }
        for target in targets:
            if target in disabled:
                continue
            # Two index walks (target, status, seq) rather than one OR, which SQLite answers by
            # scanning every row of the target, delivered history included, under the lock.
            columns = "seq, id, event_kind, event_id, component, attempts, retry_since, created_at"  # pragma: no mutate
            # On PostgreSQL, rows another worker is claiming this instant are skipped, not
            # waited for (and never claimed twice): its claim commits them as 'delivering'.
            due = db.execute(
                f"SELECT {columns} FROM deliveries WHERE target = ? AND status = 'pending' "  # pragma: no mutate
                f"AND next_attempt_at <= ? ORDER BY seq LIMIT ?{db.skip_locked}",  # pragma: no mutate
                [target, now, limit],
            ).fetchall()
            expired = db.execute(
                f"SELECT {columns} FROM deliveries WHERE target = ? AND status = 'delivering' "
                f"AND lease_until < ? ORDER BY seq LIMIT ?{db.skip_locked}",  # pragma: no mutate
                [target, now, limit],
            ).fetchall()
            rows = sorted(due + expired)[:limit]
            for seq, did, kind, event_id, component, attempts, since, created in rows:
                out.append(
                    Delivery(did, seq, kind, event_id, component, target, attempts, since, created)
                )
            if rows:
                db.execute(
                    "UPDATE deliveries SET status = 'delivering', lease_until = ?, updated_at = ? "  # pragma: no mutate
                    f"WHERE seq IN ({', '.join('?' for _ in rows)})",
                    [now + lease_seconds, now, *(r[0] for r in rows)],
                )
    return out


def finish(db: Store, results: Sequence[Result], now: float) -> None:
    """Record the outcome of each attempt and count it; one transaction for the whole batch."""
    if not results:
        return
    with db.transaction():
        for r in results:
            error = r.error[:ERROR_CHARS] if r.error else None
            if r.outcome == "released":  # not attempted (its target is backing off)
                db.execute(
                    "UPDATE deliveries SET status = 'pending', lease_until = NULL, updated_at = ? "  # pragma: no mutate
                    "WHERE id = ? AND status = 'delivering'",  # pragma: no mutate
                    [now, r.delivery_id],
                )
                continue
            if r.outcome == "delivered":
                db.execute(
                    "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, "  # pragma: no mutate
                    "lease_until = NULL, last_status = ?, last_error = NULL, delivered_at = ?, "  # pragma: no mutate
                    "updated_at = ? WHERE id = ?",  # pragma: no mutate
                    [r.status, now, now, r.delivery_id],
                )
            elif r.outcome == "retried":
                db.execute(
                    "UPDATE deliveries SET status = 'pending', attempts = attempts + 1, "  # pragma: no mutate
                    "lease_until = NULL, next_attempt_at = ?, last_status = ?, last_error = ?, "  # pragma: no mutate
                    "updated_at = ? WHERE id = ?",  # pragma: no mutate
                    [r.next_attempt_at or now, r.status, error, now, r.delivery_id],
                )
            elif r.outcome in ("failed", "disabled"):
                db.execute(
                    "UPDATE deliveries SET status = ?, attempts = attempts + 1, lease_until = NULL, "  # pragma: no mutate
                    "last_status = ?, last_error = ?, updated_at = ? WHERE id = ?",  # pragma: no mutate
                    [r.outcome, r.status, error, now, r.delivery_id],
                )
                if r.outcome == "disabled":
                    _disable_target(db, r.target, error or "disabled", now)
            else:
                raise ValueError(f"unknown outcome {r.outcome!r}")
            db.execute(
                "INSERT INTO forward_stats (target, outcome, count) VALUES (?, ?, 1) "  # pragma: no mutate
                "ON CONFLICT(target, outcome) DO UPDATE SET count = forward_stats.count + 1",  # pragma: no mutate
                [r.target, r.outcome],
            )


def _disable_target(db: Store, target: str, reason: str, now: float) -> None:
    """The endpoint is gone (410): stop sending, and park its other pending deliveries."""
    db.execute(
        "INSERT INTO forward_targets (target, disabled_at, reason) VALUES (?, ?, ?) "  # pragma: no mutate
        "ON CONFLICT(target) DO UPDATE SET disabled_at = excluded.disabled_at, "  # pragma: no mutate
        "reason = excluded.reason",  # pragma: no mutate
        [target, now, reason],
    )
    cursor = db.execute(
        "UPDATE deliveries SET status = 'disabled', lease_until = NULL, updated_at = ?, "  # pragma: no mutate
        "last_error = coalesce(last_error, ?) WHERE target = ? AND status IN ('pending', 'delivering')",  # pragma: no mutate
        [now, f"target disabled: {reason}", target],
    )
    if cursor.rowcount:
        db.execute(
            "INSERT INTO forward_stats (target, outcome, count) VALUES (?, 'disabled', ?) "  # pragma: no mutate
            "ON CONFLICT(target, outcome) DO UPDATE SET count = forward_stats.count + excluded.count",  # pragma: no mutate
            [target, cursor.rowcount],
        )


def prune_delivered(db: Store, before: float, *, batch: int = 5000) -> int:
    """Delete delivered rows finished before `before`, in batches that keep the write lock short.

    Failed and disabled rows stay: they are what an operator still has to look at.
    """
    removed = 0
    while True:
        with db.transaction():
            cursor = db.execute(
                "DELETE FROM deliveries WHERE seq IN (SELECT seq FROM deliveries "  # pragma: no mutate
                "WHERE status = 'delivered' AND delivered_at < ? LIMIT ?)",  # pragma: no mutate
                [before, batch],
            )
        removed += cursor.rowcount
        if cursor.rowcount < batch:
            return removed


def disabled_targets(db: Store) -> dict[str, str]:
    return {
        r[0]: r[1] or ""
        for r in db.execute(
            "SELECT target, reason FROM forward_targets WHERE disabled_at IS NOT NULL"  # pragma: no mutate
        ).fetchall()
    }


def retry(db: Store, delivery_id: str, now: float | None = None) -> str | None:
    """Make a delivery due now with a fresh give-up horizon; re-enables its target.

    Returns the previous status, "delivering" (refused: in flight) or None (unknown id).
    """
    now = time.time() if now is None else now
    with db.transaction():
        row = db.execute(
            "SELECT status, target FROM deliveries WHERE id = ?",  # pragma: no mutate
            [delivery_id],
        ).fetchone()
        if row is None:
            return None
        status, target = row
        if status == "delivering":
            return status
        db.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, retry_since = ?, "  # pragma: no mutate
            "lease_until = NULL, updated_at = ? WHERE id = ?",  # pragma: no mutate
            [now, now, now, delivery_id],
        )
        # An operator retrying a delivery of a disabled endpoint says the endpoint is back.
        db.execute(
            "DELETE FROM forward_targets WHERE target = ?",  # pragma: no mutate
            [target],
        )
    return str(status)


NEWEST_FIRST = Keyset(columns=("seq",), keys=("seq",))
_COLUMNS = (
    "seq, id, event_kind, event_id, component, target, status, attempts, next_attempt_at, "
    "last_status, last_error, created_at, updated_at, delivered_at"
)


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "event": {
            "kind": row["event_kind"],
            "id": row["event_id"],
            "component": row["component"],
        },
        "target": row["target"],
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": iso_ts(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        "created_at": iso_ts(row["created_at"]),
        "updated_at": iso_ts(row["updated_at"]),
        "delivered_at": iso_ts(row["delivered_at"]),
    }


def get_delivery(db: Store, delivery_id: str) -> dict[str, Any] | None:
    rows = db.query(f"SELECT {_COLUMNS} FROM deliveries WHERE id = ?", [delivery_id])
    return _shape(rows[0]) if rows else None


def list_deliveries(
    db: Store,
    *,
    status: str | None = None,
    target: str | None = None,
    limit: int = 50,
    after: int | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first; `after` is the seq of the last row seen. Returns (page, next cursor)."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("status", status), ("target", target)):  # pragma: no mutate
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    rows, cursor = page(
        db,
        f"SELECT {_COLUMNS} FROM deliveries",
        NEWEST_FIRST,
        where=where,
        params=params,
        after=(after,) if after is not None else None,
        limit=limit,
    )
    return [_shape(r) for r in rows], (cursor[0] if cursor else None)


@dataclass(frozen=True)
class Backlog:
    """Per target: deliveries not yet finished, and when the oldest of them was created."""

    pending: dict[str, int]
    oldest_created_at: dict[str, float]
    counts: dict[tuple[str, str], int]


def backlog(db: Store) -> Backlog:
    pending: dict[str, int] = {}
    oldest: dict[str, float] = {}
    for target, count, first in db.execute(
        "SELECT target, count(*), min(created_at) FROM deliveries "  # pragma: no mutate
        "WHERE status IN ('pending', 'delivering') GROUP BY target"  # pragma: no mutate
    ).fetchall():
        pending[target] = int(count)
        oldest[target] = float(first)
    counts = {
        (r[0], r[1]): int(r[2])
        for r in db.execute(
            "SELECT target, outcome, count FROM forward_stats"  # pragma: no mutate
        ).fetchall()
    }
    return Backlog(pending, oldest, counts)
