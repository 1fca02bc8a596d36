"""Opening the SQLite database: pragmas, migrations, and the write-transaction helper."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlite_utils

from storage.migrations import migrations

BUSY_TIMEOUT_MS = 10_000
_local = threading.local()


class StorageError(Exception):
    """The database could not be opened or used."""


T = TypeVar("T")


@dataclass(eq=False)
class _Pending:
    """A function waiting for the next group commit, and what became of it."""

    fn: Callable[[Any], Any]
    done: bool = False
    result: Any = None
    error: BaseException | None = None


def _commit_batch(db: sqlite_utils.Database, batch: list[_Pending]) -> None:
    conn = db.conn
    began = False
    try:
        if conn.in_transaction:
            raise StorageError("a group commit cannot start inside an open transaction")
        conn.execute("BEGIN IMMEDIATE")
        began = True
        for item in batch:
            conn.execute("SAVEPOINT releasebits_write")
            try:
                item.result = item.fn(db)
            except BaseException as exc:  # the caller's own error: undo its writes only
                conn.execute("ROLLBACK TO releasebits_write")
                item.error = exc
            conn.execute("RELEASE releasebits_write")
        conn.execute("COMMIT")
    except BaseException as exc:  # BEGIN or COMMIT failed: nothing of the batch is stored
        if began and conn.in_transaction:
            with suppress(sqlite3.Error):  # the callers get the original error either way
                conn.execute("ROLLBACK")
        for item in batch:
            if item.error is None:
                item.error = exc
    finally:
        for item in batch:
            item.done = True


class WriteLock:
    """Serialises write transactions on one database file, across threads and processes.

    SQLite's own busy handler makes a waiting writer sleep and poll (1, 2, 5 ... 100 ms steps),
    so under concurrent ingest most of the wait is sleep after the lock was already free: that
    was the ingest p99. Waiting here instead wakes the next writer as soon as the lock is
    released: a threading.Lock orders the threads of one process, and flock(2) on
    `<db>.lock` (released by the kernel if the process dies) orders gunicorn's workers and the
    background worker. SQLite's busy_timeout stays as the backstop for outside writers.
    """

    def __init__(self, path: Path):
        self.path = Path(f"{path}.lock")
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = -1
        self._queue: list[_Pending] = []
        self._queue_guard = threading.Lock()

    def _file(self) -> int:
        # A forked worker must not share the parent's open file description (flock locks belong
        # to it, so parent and child would never exclude each other): reopen after fork.
        if self._fd is None or self._pid != os.getpid():
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise StorageError(f"cannot open lock file {self.path}: {exc}") from exc
            self._pid = os.getpid()
        return self._fd

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock, self._file_locked():
            yield

    @contextmanager
    def _file_locked(self) -> Iterator[None]:
        fd = self._file()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def run(self, db: sqlite_utils.Database, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run `fn(db)` in a committed write transaction, sharing the commit with concurrent
        callers (group commit).

        With synchronous=FULL every COMMIT is an fsync, and under concurrent ingest writers
        spent most of their time queued behind each other's fsyncs. Callers queue their
        function; whichever thread gets the lock runs every queued function on its own
        connection, each inside a SAVEPOINT (an exception undoes only that function's writes
        and is raised in its own caller), and commits once. Nobody returns before the COMMIT
        that holds their writes, so an acknowledgement still means "on disk". `fn` must only
        use the connection it is given: it may run on another thread.
        """
        item = _Pending(fn)
        with self._queue_guard:
            self._queue.append(item)
        with self._thread_lock:
            if not item.done:
                with self._queue_guard:
                    batch, self._queue = self._queue, []
                with self._file_locked():
                    _commit_batch(db, batch)
        if item.error is not None:
            raise item.error
        return cast(T, item.result)


_write_locks: dict[str, WriteLock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(path: Path) -> WriteLock:
    key = str(path.resolve())
    with _write_locks_guard:
        lock = _write_locks.get(key)
        if lock is None:
            lock = _write_locks[key] = WriteLock(Path(key))
        return lock


class Store(sqlite_utils.Database):
    """A sqlite_utils.Database that knows the write lock of its file."""

    write_lock: WriteLock


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
    db = Store(conn, execute_plugins=False)
    db.write_lock = _write_lock(path)
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
    lock = getattr(db, "write_lock", None)
    with lock.held() if lock is not None else nullcontext():
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")


def run_write(db: sqlite_utils.Database, fn: Callable[[sqlite_utils.Database], T]) -> T:
    """`fn(db)` in a committed write transaction, group-committed with concurrent callers of
    the same process (see WriteLock.run). `fn` must use only the connection it is given."""
    lock: WriteLock | None = getattr(db, "write_lock", None)
    if lock is None:
        with write_transaction(db):
            return fn(db)
    return lock.run(db, fn)


def close_thread_dbs() -> None:
    """Close this thread's cached connections (tests, and workers that switch databases)."""
    cache = getattr(_local, "dbs", None) or {}
    for db in cache.values():
        db.close()
    cache.clear()
