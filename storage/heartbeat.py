"""The background worker's heartbeat: proof, in the database, that it is alive."""

from __future__ import annotations

import time

from storage.db import Store


def beat(store: Store, instance: str) -> None:
    """The worker holding the lease is alive; `instance` names it (who leads)."""
    _record(store, "heartbeat", instance)


def _record(store: Store, name: str, who: str | int) -> None:
    """Commit `name` = who (an instance name, a pid), now, in worker_state."""
    with store.transaction():
        store.execute(
            "INSERT INTO worker_state (name, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            [name, str(who), time.time()],
        )


def last_beat(store: Store) -> float | None:
    row = store.one("SELECT updated_at FROM worker_state WHERE name = 'heartbeat'")
    return float(row[0]) if row else None


def last_leader(store: Store) -> str | None:
    """The instance whose worker beat last (None before the first beat)."""
    row = store.one("SELECT value FROM worker_state WHERE name = 'heartbeat'")
    return str(row[0]) if row else None


def database_readable(store: Store) -> None:
    """Raise (sqlite3.Error or StorageError) unless the schema can be read."""
    store.execute("SELECT 1 FROM components LIMIT 1").fetchall()


def probe_write(store: Store, pid: int) -> None:
    """Raise (sqlite3.Error or StorageError) unless a small write commits: a full disk, a
    read-only file or a lock held too long all fail here."""
    _record(store, "web_probe", pid)
