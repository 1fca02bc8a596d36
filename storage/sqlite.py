"""SQLite behind the `Store`: one file in WAL mode, pragmas set on open, a write lock with group
commit, and the checks a file needs (a deleted write-ahead log, PRAGMA quick_check, modes)."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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

    def writer(self, synchronous: str) -> SqliteStore:
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
                self.db_path, synchronous=synchronous, shared_writer=True
            )
            self._writer_pid = os.getpid()
        elif writer.synchronous != synchronous:
            writer.set_synchronous(synchronous)
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

    def try_hold(self) -> bool:
        """Take the lock without waiting (True), or leave it as it was (False)."""
        if not self._thread_lock.acquire(blocking=False):
            return False
        try:
            fcntl.flock(self._file(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._thread_lock.release()
            return False
        except BaseException:
            self._thread_lock.release()
            raise
        return True

    def hold(self) -> None:
        """Take the lock, waiting for it; `release` gives it back (from any thread)."""
        self._thread_lock.acquire()
        try:
            fcntl.flock(self._file(), fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        try:
            fcntl.flock(self._file(), fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    @contextmanager
    def held(self) -> Iterator[None]:
        self.hold()
        try:
            yield
        finally:
            self.release()

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
                    writer = self.writer(store.synchronous)
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
    if _write_batch(store, batch):
        _commit(store, batch)
    for item in batch:
        item.done = True


def _write_batch(store: SqliteStore, batch: list[_Pending]) -> bool:
    """BEGIN IMMEDIATE and every write of the batch, left for `_commit` (True); False when
    nothing is left to commit (BEGIN failed: every caller has the error)."""
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
        return True
    except BaseException as exc:
        _failed(store, batch, exc)
        return False


def _commit(store: SqliteStore, batch: list[_Pending]) -> None:
    """COMMIT what `_write_batch` left open: the fsync (synchronous=FULL)."""
    try:
        if store.conn.in_transaction:
            store.conn.execute("COMMIT")
    except BaseException as exc:  # nothing of the batch is stored
        _failed(store, batch, exc)


def _failed(store: SqliteStore, batch: list[_Pending], exc: BaseException) -> None:
    if store.conn.in_transaction:
        with suppress(sqlite3.Error):  # the callers get the original error either way
            store.conn.execute("ROLLBACK")
    for item in batch:
        if item.error is None:
            item.error = exc


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


class LoopGroupCommit:
    """Group commit for writers on one asyncio event loop (the web server's ingest path).

    `WriteLock.run` blocks its thread until the COMMIT: right for request threads, fatal on an
    event loop. Here a write is queued and awaited instead. The first write of a loop pass
    schedules a flush after every request that is ready has queued its own; the flush takes
    the write lock, runs the whole batch on the process's write connection on the loop thread
    (the statements are CPU work in SQLite's page cache) and hands only the COMMIT (the fsync)
    to a thread, so the loop serves other requests meanwhile; writes queued during it form
    the next batch. Nobody's await returns before the COMMIT holding their writes is done.
    When the lock is busy (the background worker or a request thread writing) it is awaited
    on that thread too, never on the loop. Same failure isolation as `WriteLock.run`: a write
    that raises is undone alone and raised to its own caller.
    """

    def __init__(self, lock: WriteLock, synchronous: str, loop: asyncio.AbstractEventLoop):
        self._lock = lock
        self._synchronous = synchronous
        self._loop = loop
        self._queue: list[tuple[_Pending, asyncio.Future[_Pending]]] = []
        self._busy = False  # a flush is scheduled or under way; it ends by starting the next
        # One thread: waits for the lock and runs each COMMIT, one batch at a time.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="releasebits-commit")

    async def write(self, fn: Callable[[SqliteStore], T]) -> T:
        """`fn(store)` in a committed write transaction shared with the loop's other writes."""
        future: asyncio.Future[_Pending] = self._loop.create_future()
        self._queue.append((_Pending(fn), future))
        if not self._busy:
            self._busy = True
            self._loop.call_soon(self._flush)
        item = await future
        if item.error is not None:
            raise item.error
        return cast(T, item.result)

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            self._busy = False
            return
        try:
            held = self._lock.try_hold()
        except BaseException as exc:  # the lock file cannot be opened
            self._done(batch, exc, held=False)
            return
        if held:
            self._write(batch)
        else:
            waited = self._loop.run_in_executor(self._thread, self._lock.hold)
            waited.add_done_callback(lambda f: self._locked(batch, f))

    def _locked(self, batch: list[tuple[_Pending, asyncio.Future[_Pending]]], waited: Any) -> None:
        exc = waited.exception()
        if exc is not None:
            self._done(batch, exc, held=False)
        else:
            self._write(batch)

    def _write(self, batch: list[tuple[_Pending, asyncio.Future[_Pending]]]) -> None:
        items = [item for item, _ in batch]
        try:
            writer = self._lock.writer(self._synchronous)
        except BaseException as exc:
            self._done(batch, exc, held=True)
            return
        if not _write_batch(writer, items):
            self._done(batch, None, held=True)
            return
        committed = self._loop.run_in_executor(self._thread, _commit, writer, items)
        committed.add_done_callback(lambda _f: self._done(batch, None, held=True))

    def _done(
        self,
        batch: list[tuple[_Pending, asyncio.Future[_Pending]]],
        exc: BaseException | None,
        *,
        held: bool,
    ) -> None:
        if held:
            self._lock.release()
        for item, future in batch:
            if exc is not None and item.error is None:
                item.error = exc
            item.done = True
            if not future.done():  # a caller that went away (client disconnect) has cancelled
                future.set_result(item)
        # How many writes shared this fsync (benchmarks/README.md counts these lines).
        log.debug("group commit of %d writes", len(batch))
        # The next batch after the requests that are ready have queued their writes: bigger
        # batches, fewer fsyncs (-3% CPU per request, +6% requests/s against flushing at once).
        self._loop.call_soon(self._flush)


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
