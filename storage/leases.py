"""Named leases with an owner and an expiry: exactly one holder at a time, renewed by heartbeat.

Portable SQL only (INSERT ... ON CONFLICT DO UPDATE ... WHERE, RETURNING): the PostgreSQL
backend elects the one worker among replicas with the same statements.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from storage.db import Store

WORKER = "worker"  # the lease of the one background worker per database


@dataclass(frozen=True)
class Lease:
    name: str
    owner: str
    acquired_at: float
    renewed_at: float
    expires_at: float

    @property
    def instance(self) -> str:
        return instance_of(self.owner)


def owner_for(instance: str) -> str:
    """A unique owner id for a process named `instance`: two processes given the same name
    (a copied config) still never share a lease."""
    return f"{instance}/{secrets.token_hex(4)}"


def instance_of(owner: str) -> str:
    """The instance name inside an owner id (the owner itself if it has no suffix)."""
    return owner.rpartition("/")[0] or owner


def acquire(store: Store, name: str, owner: str, *, now: float, ttl: float) -> bool:
    """Take or renew `name` for `owner` until now + ttl; False while someone else holds it.

    One statement: a free name is inserted; a held one is updated only when its owner is the
    caller (a renewal) or its lease has expired (a takeover). RETURNING says whether it was.
    """
    with store.transaction():
        rows = store.execute(
            "INSERT INTO leases (name, owner, acquired_at, renewed_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET "
            "acquired_at = CASE WHEN leases.owner = excluded.owner "
            "THEN leases.acquired_at ELSE excluded.acquired_at END, "
            "owner = excluded.owner, renewed_at = excluded.renewed_at, "
            "expires_at = excluded.expires_at "
            "WHERE leases.owner = excluded.owner OR leases.expires_at <= excluded.renewed_at "
            "RETURNING owner",
            [name, owner, now, now, now + ttl],
        ).fetchall()  # read to the end: a RETURNING statement left open blocks the COMMIT
    return bool(rows)


def release(store: Store, name: str, owner: str) -> bool:
    """Give `name` up (on a clean stop) so a standby takes over at once; False if not held."""
    with store.transaction():
        rows = store.execute(
            "DELETE FROM leases WHERE name = ? AND owner = ? RETURNING name", [name, owner]
        ).fetchall()
    return bool(rows)


def holder(store: Store, name: str) -> Lease | None:
    """Who holds `name` (possibly expired), or None."""
    row = store.one(
        "SELECT name, owner, acquired_at, renewed_at, expires_at FROM leases WHERE name = ?",
        [name],
    )
    return Lease(str(row[0]), str(row[1]), *map(float, row[2:])) if row else None
