"""The background worker's heartbeat: proof, in the database, that it is alive."""

from __future__ import annotations

import time

from storage.db import Store


def beat(store: Store, pid: int) -> None:
    _record(store, "heartbeat", pid)


def _record(store: Store, name: str, pid: int) -> None:
    """Commit `name` = pid, now, in worker_state."""
    with store.transaction():
        store.execute(
            "INSERT INTO worker_state (name, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            [name, str(pid), time.time()],
        )


def last_beat(store: Store) -> float | None:
    row = store.one("SELECT updated_at FROM worker_state WHERE name = 'heartbeat'")
    return float(row[0]) if row else None


def database_readable(store: Store) -> None:
    """Raise (sqlite3.Error or StorageError) unless the schema can be read."""
    store.execute("SELECT 1 FROM components LIMIT 1").fetchall()


def probe_write(store: Store, pid: int) -> None:
    """Raise (sqlite3.Error or StorageError) unless a small write commits: a full disk, a
    read-only file or a lock held too long all fail here."""
    _record(store, "web_probe", pid)
