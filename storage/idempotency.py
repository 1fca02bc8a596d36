"""Idempotency keys: a retried CI call gets the first answer back, never a second event."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from storage import jsontext
from storage.db import Store


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key with the hash of the request it came with."""

    scope: str
    key: str
    request_hash: str
    ttl_seconds: float


@dataclass(frozen=True)
class Replay:
    """What an earlier request with the same key was answered, or that its body differed."""

    status: int
    body: dict[str, Any]
    conflict: bool = False


def replay(store: Store, idem: Idempotency, now: float) -> Replay | None:
    """The remembered answer for this key (conflict=True when the body differs), or None.
    Inside a write, the key is held until it ends: a retry racing the first request (at
    another replica) waits for its answer instead of storing a second event."""
    if store.in_transaction:
        store.lock("idempotency", idem.scope, idem.key)
    row = store.one(
        "SELECT request_hash, status, body FROM idempotency_keys "  # pragma: no mutate
        "WHERE scope = ? AND key = ? AND created_at > ?",  # pragma: no mutate
        [idem.scope, idem.key, now - idem.ttl_seconds],
    )
    if row is None:
        return None
    if row[0] != idem.request_hash:
        return Replay(409, {}, conflict=True)
    return Replay(int(row[1]), json.loads(row[2]))


def remember(
    store: Store, idem: Idempotency, status: int, body: dict[str, Any], now: float
) -> None:
    """Keep the answer for the key; the caller's write transaction must be open."""
    store.execute(
        "INSERT INTO idempotency_keys (scope, key, request_hash, status, body, created_at) "  # pragma: no mutate
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(scope, key) DO UPDATE SET "  # pragma: no mutate
        "request_hash = excluded.request_hash, status = excluded.status, "  # pragma: no mutate
        "body = excluded.body, created_at = excluded.created_at",  # pragma: no mutate
        [idem.scope, idem.key, idem.request_hash, status, jsontext.dumps(body), now],
    )


def expire(store: Store, older_than_seconds: float) -> int:
    """Forget keys older than the TTL; returns how many."""
    with store.transaction():
        cursor = store.execute(
            "DELETE FROM idempotency_keys WHERE created_at < ?",  # pragma: no mutate
            [time.time() - older_than_seconds],
        )
    return cursor.rowcount
