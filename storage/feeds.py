"""What the webhook receivers need besides events: delivery dedupe, request counts and the
natural keys of events whose final status has not arrived yet."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from storage.db import Store

T = TypeVar("T")

# GitHub lets a delivery be redelivered for 3 days; a week covers it with room. Past that,
# natural keys (deployment id, run id + attempt, commit sha, incident id) still dedupe.
KEEP_DELIVERIES_SECONDS = 7 * 86400
OUTCOMES = ("accepted", "duplicate", "ignored", "unauthorized", "invalid")


@dataclass(frozen=True)
class Delivery:
    """One webhook request: its receiver, its event (a bounded label value) and the sender's
    delivery id (None when the sender gave none)."""

    receiver: str
    event: str
    id: str | None = None


def count(tx: Store, receiver: str, event: str, outcome: str) -> None:
    """Count one request in releasebits_webhook_requests_total."""
    tx.execute(
        "INSERT INTO webhook_stats (receiver, event, outcome, count) VALUES (?, ?, ?, 1) "
        "ON CONFLICT(receiver, event, outcome) DO UPDATE SET count = webhook_stats.count + 1",
        [receiver, event, outcome],
    )


def count_request(store: Store, delivery: Delivery, outcome: str) -> None:
    """Count a request that stored nothing (ignored, unauthorized, invalid) in its own write."""
    store.write(lambda tx: count(tx, delivery.receiver, delivery.event, outcome))


def seen(tx: Store, delivery: Delivery) -> bool:
    if delivery.id is None:
        return False
    row = tx.one(
        "SELECT 1 FROM webhook_deliveries WHERE receiver = ? AND delivery_id = ?",
        [delivery.receiver, delivery.id],
    )
    return row is not None


def begin(tx: Store, delivery: Delivery | None) -> bool:
    """Inside a write: True (and counted as a duplicate) when this delivery was stored before.
    A delivery id is held until the write ends: a redelivery racing it (to another replica)
    waits, then finds it stored."""
    if delivery is not None and delivery.id is not None:
        tx.lock("delivery", delivery.receiver, delivery.id)
    if delivery is None or not seen(tx, delivery):
        return False
    count(tx, delivery.receiver, delivery.event, "duplicate")
    return True


def accept(tx: Store, delivery: Delivery | None, now: float) -> None:
    """Inside the write that stored the delivery's data: remember its id and count it."""
    if delivery is None:
        return
    if delivery.id is not None:
        tx.execute(
            "INSERT INTO webhook_deliveries (receiver, delivery_id, event, received_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(receiver, delivery_id) DO NOTHING",
            [delivery.receiver, delivery.id, delivery.event, now],
        )
    count(tx, delivery.receiver, delivery.event, "accepted")


def write(
    store: Store, delivery: Delivery | None, fn: Callable[[Store], T], now: float
) -> tuple[bool, T | None]:
    """`fn(tx)` in one committed transaction with the delivery's dedupe mark and count.

    Returns (duplicate, result): a delivery seen before runs nothing and answers (True, None).
    """

    def work(tx: Store) -> tuple[bool, T | None]:
        if begin(tx, delivery):
            return True, None
        result = fn(tx)
        accept(tx, delivery, now)
        return False, result

    return store.write(work)


def expire_deliveries(store: Store, before: float) -> int:
    """Forget delivery ids received before `before`; returns how many."""
    with store.transaction():
        cursor = store.execute("DELETE FROM webhook_deliveries WHERE received_at < ?", [before])
    return cursor.rowcount


def stats(store: Store) -> list[dict[str, Any]]:
    return store.query(
        "SELECT receiver, event, outcome, count FROM webhook_stats ORDER BY receiver, event, outcome"
    )


# --- natural keys ----------------------------------------------------------------------------


def key_row(tx: Store, key: str) -> tuple[str | None, float | None] | None:
    """(event id once final, earliest start seen) of a natural key, or None if never seen.
    Inside a write, the key is held until it ends: two final statuses of one deployment
    (at two replicas) store one event."""
    if tx.in_transaction:
        tx.lock("feed", key)
    row = tx.one("SELECT event_id, started_ts FROM feed_keys WHERE key = ?", [key])
    return (row[0], row[1]) if row is not None else None


def bind(tx: Store, key: str, kind: str, event_id: str, now: float) -> None:
    """The natural key now names a stored event."""
    tx.execute(
        "INSERT INTO feed_keys (key, kind, event_id, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(key) DO UPDATE SET event_id = excluded.event_id, "
        "updated_at = excluded.updated_at",
        [key, kind, event_id, now],
    )


def remember_start(tx: Store, key: str, kind: str, started_ts: float, now: float) -> float:
    """Keep the earliest start seen for a key whose final status has not arrived; returns it."""
    tx.execute(
        "INSERT INTO feed_keys (key, kind, started_ts, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(key) DO UPDATE SET updated_at = excluded.updated_at, started_ts = "
        "CASE WHEN feed_keys.started_ts IS NULL OR excluded.started_ts < feed_keys.started_ts "
        "THEN excluded.started_ts ELSE feed_keys.started_ts END",
        [key, kind, started_ts, now],
    )
    row = tx.one("SELECT started_ts FROM feed_keys WHERE key = ?", [key])
    assert row is not None  # just written
    return float(row[0])
