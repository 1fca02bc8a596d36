"""Opening the SQLite database: pragmas, migrations, and the write-transaction helper."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from storage.migrations import migrations

BUSY_TIMEOUT_MS = 10_000
_local = threading.local()


class StorageError(Exception):
    """The database could not be opened or used."""


def open_db(
    path: str | Path, *, synchronous: str = "full", migrate: bool = False
) -> sqlite_utils.Database:
    """Open a connection with ReleaseBits' pragmas; optionally apply pending migrations."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise StorageError(f"directory {path.parent} does not exist")
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=True)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # WAL lets scrapes and badge reads run while the ingest path writes.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StorageError(f"could not enable WAL on {path} (journal_mode={mode})")
        # FULL fsyncs the WAL on every commit: a 201 survives power loss, not just kill -9.
        conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {path}: {exc}") from exc
    db = sqlite_utils.Database(conn, execute_plugins=False)
    if migrate:
        migrations.apply(db)
    return db


def thread_db(path: str | Path, *, synchronous: str = "full") -> sqlite_utils.Database:
    """One long-lived connection per thread and database path (sqlite3 objects are per-thread)."""
    cache: dict[tuple[str, str], sqlite_utils.Database] | None = getattr(_local, "dbs", None)
    if cache is None:
        cache = _local.dbs = {}
    key = (str(path), synchronous)
    db = cache.get(key)
    if db is None:
        db = cache[key] = open_db(path, synchronous=synchronous)
    return db


@contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """BEGIN IMMEDIATE ... COMMIT: take the write lock up front so read-then-write steps
    (idempotency checks, aggregate updates) cannot race another process."""
    conn = db.conn
    if conn.in_transaction:
        raise StorageError("write_transaction does not nest")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def close_thread_dbs() -> None:
    """Close this thread's cached connections (tests, and workers that switch databases)."""
    cache = getattr(_local, "dbs", None) or {}
    for db in cache.values():
        db.close()
    cache.clear()
