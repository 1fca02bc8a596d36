"""SQLite behind the `Store`: one file in WAL mode, pragmas set on open, a write lock with group
commit, and the checks a file needs (a deleted write-ahead log, PRAGMA quick_check, modes)."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import sqlite_utils

from storage.migrations import migrations
from storage.store import Params, StorageError, Store, T

BUSY_TIMEOUT_MS = 10_000
log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Pending:
    """A function waiting for the next group commit, and what became of it."""

    fn: Callable[[SqliteStore], Any]
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class WriteLock:
    """Serialises write transactions on one database file, across threads and processes.

    SQLite's own busy handler makes a waiting writer sleep and poll (1, 2, 5 ... 100 ms steps),
    so under concurrent ingest most of the wait is sleep after the lock was already free: that
    was the ingest p99. Waiting here instead wakes the next writer as soon as the lock is
    released: a threading.Lock orders the threads of one process, and flock(2) on
    `<db>.lock` (released by the kernel if the process dies) orders the web server's workers and the
    background worker. SQLite's busy_timeout stays as the backstop for outside writers.
    """

    def __init__(self, path: Path):
        self.db_path = path
        self.path = Path(f"{path}.lock")
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = -1
        self._queue: list[_Pending] = []
        self._queue_guard = threading.Lock()
        self._writer: SqliteStore | None = None
        self._writer_pid = -1
        self._open_stores = 0

    def _writer_for(self, store: SqliteStore) -> SqliteStore:
        """This process's write connection to the file, which every group commit uses.

        A connection empties its page cache whenever another connection committed since its
        last transaction. Group commits ran on the leading request's own connection, a
        different one nearly every time, so each batch read every page it touched again; one
        connection that only this process's writes use stays warm (benchmarks/README.md, issue
        16). Called with the thread lock held; opened again in a forked child.
        """
        writer = self._writer
        if writer is None or self._writer_pid != os.getpid():
            writer = self._writer = open_sqlite(
                self.db_path, synchronous=store.synchronous, shared_writer=True
            )
            self._writer_pid = os.getpid()
        elif writer.synchronous != store.synchronous:
            writer.set_synchronous(store.synchronous)
        return writer

    def opened(self) -> None:
        with self._queue_guard:
            self._open_stores += 1

    def closed(self) -> None:
        """A store of this file closed; the last one closes the write connection too."""
        with self._queue_guard:
            self._open_stores -= 1
            last = self._open_stores <= 0
        if last:
            self.close_writer()

    def close_writer(self) -> None:
        with self._thread_lock:
            writer, self._writer = self._writer, None
            if writer is not None and self._writer_pid == os.getpid():
                writer.close()

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

    def run(self, store: SqliteStore, fn: Callable[[SqliteStore], T]) -> T:
        """Run `fn(store)` in a committed write transaction, sharing the commit with concurrent
        callers (group commit).

        With synchronous=FULL every COMMIT is an fsync, and under concurrent ingest writers
        spent most of their time queued behind each other's fsyncs. Callers queue their
        function; whichever thread gets the lock runs every queued function on its own
        connection, each inside a SAVEPOINT (an exception undoes only that function's writes
        and is raised in its own caller), and commits once. Nobody returns before the COMMIT
        that holds their writes, so an acknowledgement still means "on disk". `fn` must only
        use the store it is given: the process's write connection, on whichever thread leads.
        """
        if store.conn.in_transaction:  # the caller's own connection: the batch would wait on it
            raise StorageError("a group commit cannot start inside an open transaction")
        item = _Pending(fn)
        with self._queue_guard:
            self._queue.append(item)
        with self._thread_lock:
            if not item.done:
                with self._queue_guard:
                    batch, self._queue = self._queue, []
                try:
                    writer = self._writer_for(store)
                    with self._file_locked():
                        _commit_batch(writer, batch)
                except BaseException as exc:  # no connection or no lock: the batch never ran
                    for pending in batch:
                        if not pending.done:
                            pending.error, pending.done = exc, True
                # How many writes shared this fsync (benchmarks/README.md counts these lines).
                log.debug("group commit of %d writes", len(batch))
        if item.error is not None:
            raise item.error
        return cast(T, item.result)


def _commit_batch(store: SqliteStore, batch: list[_Pending]) -> None:
    conn = store.conn
    try:
        if conn.in_transaction:
            raise StorageError("a group commit cannot start inside an open transaction")
        # Nearly every batch has no failing write: run them all without a SAVEPOINT each (two
        # statements fewer per write). If one raises, nothing of that run is kept and the batch
        # runs again with a SAVEPOINT around each write, so only its own caller gets the error.
        # Running a write twice is safe: write functions touch nothing but the store.
        if not _run(store, batch, isolate=len(batch) == 1):
            _run(store, batch, isolate=True)
        if conn.in_transaction:
            conn.execute("COMMIT")
    except BaseException as exc:  # BEGIN or COMMIT failed: nothing of the batch is stored
        if conn.in_transaction:
            with suppress(sqlite3.Error):  # the callers get the original error either way
                conn.execute("ROLLBACK")
        for item in batch:
            if item.error is None:
                item.error = exc
    finally:
        for item in batch:
            item.done = True


def _run(store: SqliteStore, batch: list[_Pending], *, isolate: bool) -> bool:
    """BEGIN IMMEDIATE and every write of the batch, left uncommitted.

    `isolate`: a write that raises is undone alone (inside a SAVEPOINT; a batch of one needs
    none, its failure rolls back a transaction holding nothing else) and its error kept for its
    caller. Otherwise the first write that raises rolls the whole transaction back and the
    answer is False."""
    conn = store.conn
    savepoints = isolate and len(batch) > 1
    conn.execute("BEGIN IMMEDIATE")
    for item in batch:
        item.result = item.error = None
        if savepoints:
            conn.execute("SAVEPOINT releasebits_write")
        try:
            item.result = item.fn(store)
        except BaseException as exc:  # the caller's own error: undo its writes only
            if not isolate:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                return False
            item.error = exc
            if savepoints:
                conn.execute("ROLLBACK TO releasebits_write")
            elif conn.in_transaction:
                conn.execute("ROLLBACK")
        if savepoints:
            conn.execute("RELEASE releasebits_write")
    return True


_write_locks: dict[str, WriteLock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(path: Path) -> WriteLock:
    key = str(path.resolve())
    with _write_locks_guard:
        lock = _write_locks.get(key)
        if lock is None:
            lock = _write_locks[key] = WriteLock(Path(key))
        return lock


def close_writers() -> None:
    """Close this process's write connections (before a fork, at exit)."""
    with _write_locks_guard:
        locks = list(_write_locks.values())
    for lock in locks:
        lock.close_writer()


class SqliteStore(Store):
    """One open connection to the database file, and the only way storage functions reach it.

    Connections are per thread (sqlite3 objects are); `thread_store()` keeps one per thread.
    """

    dialect: ClassVar[str] = "sqlite"

    def __init__(
        self, path: Path, conn: sqlite3.Connection, synchronous: str = "full", counted: bool = True
    ):
        self.path = path
        self.location = str(path)
        self.conn = conn
        self.synchronous = synchronous
        self.write_lock = _write_lock(path)
        self._counted = counted
        if counted:  # the write connection itself does not keep itself open
            self.write_lock.opened()
        self._db = sqlite_utils.Database(conn, execute_plugins=False)

    def set_synchronous(self, synchronous: str) -> None:
        self.conn.execute(f"PRAGMA synchronous = {_synchronous(synchronous)}")
        self.synchronous = synchronous

    # --- statements ------------------------------------------------------------------------

    def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def query(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """Every row of a SELECT as a dict keyed by column name."""
        return list(self._db.query(sql, params if isinstance(params, Sequence) else dict(params)))

    def one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row of a SELECT as a tuple, or None."""
        row = self.conn.execute(sql, params).fetchone()
        return cast("tuple[Any, ...] | None", row)

    # --- transactions ----------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def write(self, fn: Callable[[Store], T]) -> T:
        """`fn(store)` in a committed write transaction, group-committed with concurrent callers
        of the same process (see WriteLock.run). `fn` must use only the store it is given."""
        return self.write_lock.run(self, fn)

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """BEGIN IMMEDIATE ... COMMIT under the write lock: read-then-write steps (idempotency
        checks, claims, aggregate updates) cannot race another process."""
        if self.conn.in_transaction:
            raise StorageError("write transactions do not nest")
        with self.write_lock.held():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[Store]:
        """One read transaction: every query inside sees the same committed state."""
        started = not self.conn.in_transaction
        if started:
            self.conn.execute("BEGIN")
        try:
            yield self
        finally:
            if started and self.conn.in_transaction:
                self.conn.execute("COMMIT")

    def rollback(self) -> None:
        """Abandon a transaction a failed request left open (nothing of it is kept)."""
        if self.conn.in_transaction:
            self.conn.rollback()

    def migrate(self) -> None:
        migrations.apply(self._db)

    def applied_migrations(self) -> list[str]:
        return [m.name for m in migrations.applied(self._db)]

    def table_names(self) -> list[str]:
        return list(self._db.table_names())

    def close(self) -> None:
        self.conn.close()
        if self._counted:
            self._counted = False
            self.write_lock.closed()


def check_files(path: str | Path) -> None:
    """Refuse a database whose write-ahead log was deleted after a crash.

    After a crash the newest committed transactions (every acknowledged event since the last
    checkpoint) live only in `<db>-wal`; deleting it loses them for good, and SQLite would
    open the older main file without a word. `<db>-shm` left without its `-wal` is the trace
    of exactly that, so starting stops and says so.
    """
    path = Path(path)
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if shm.exists() and not wal.exists() and path.exists():
        raise StorageError(
            f"{shm} exists but {wal} does not: the write-ahead log was deleted after a crash, "
            "and the events it held are lost. Put the -wal file back if you have it; otherwise "
            f"delete {shm} to start from what {path.name} holds"
        )


def integrity_problem(store: SqliteStore) -> str | None:
    """PRAGMA quick_check: None when the file is sound, else SQLite's first complaint (it
    reads every page: 5-6 s per GB cached, ~22 s cold, on the 2-core VM)."""
    try:
        rows = store.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    problems = [str(r[0]) for r in rows if r[0] != "ok"]
    return "; ".join(problems) or None


def _create_private(path: Path) -> None:
    """Create a new database file readable by its owner only; SQLite gives the -wal and -shm
    files it creates the same mode. An existing file keeps the mode its operator chose."""
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


def _synchronous(setting: str) -> str:
    return "FULL" if setting == "full" else "NORMAL"


def open_sqlite(
    path: str | Path,
    *,
    synchronous: str = "full",
    migrate: bool = False,
    shared_writer: bool = False,
) -> SqliteStore:
    """Open a connection with ReleaseBits' pragmas; optionally apply pending migrations.
    `shared_writer`: the process's write connection (WriteLock), used by one thread at a time
    under the write lock, whichever thread that is."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise StorageError(f"directory {path.parent} does not exist")
    try:
        _create_private(path)
    except OSError as exc:
        raise StorageError(f"cannot create database {path}: {exc}") from exc
    try:
        conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=not shared_writer
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # WAL lets scrapes and badge reads run while the ingest path writes.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StorageError(f"could not enable WAL on {path} (journal_mode={mode})")
        # FULL fsyncs the WAL on every commit: a 201 survives power loss, not just kill -9.
        conn.execute(f"PRAGMA synchronous = {_synchronous(synchronous)}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Group commit wraps each write of a batch in a SAVEPOINT; its statement journal spilled
        # to a temp file (open, unlink, ~25 writes) once past 64 KiB, i.e. on most batches.
        # In memory it costs RAM for temp b-trees too, which ReleaseBits' queries keep small.
        conn.execute("PRAGMA temp_store = MEMORY")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {path}: {exc}") from exc
    store = SqliteStore(path, conn, synchronous, counted=not shared_writer)
    if migrate:
        store.migrate()
    return store
