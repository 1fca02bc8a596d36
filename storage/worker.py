"""Background worker state (heartbeat) and housekeeping."""

from __future__ import annotations

import time

import sqlite_utils

from storage.db import write_transaction


def heartbeat(db: sqlite_utils.Database, pid: int) -> None:
    with write_transaction(db):
        db.execute(
            "INSERT OR REPLACE INTO worker_state (name, value, updated_at) VALUES ('heartbeat', ?, ?)",
            [str(pid), time.time()],
        )


def last_heartbeat(db: sqlite_utils.Database) -> float | None:
    row = db.execute("SELECT updated_at FROM worker_state WHERE name = 'heartbeat'").fetchone()
    return float(row[0]) if row else None


def expire_idempotency_keys(db: sqlite_utils.Database, older_than_seconds: float) -> int:
    with write_transaction(db):
        cursor = db.execute(
            "DELETE FROM idempotency_keys WHERE created_at < ?", [time.time() - older_than_seconds]
        )
    return cursor.rowcount
