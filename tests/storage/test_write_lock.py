"""Concurrent writers from several processes and threads: none fails with "database is locked"
(SQLite), none loses a write (PostgreSQL, where several replicas write at once)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storage import tokens
from storage.db import StorageError, close_all, open_db
from tests.conftest import ON_POSTGRES, in_threads


def _writer(path: str, proc: int, rounds: int) -> None:
    def work(thread: int) -> None:
        # One connection per thread, as the web tier has; each round mixes a read-then-write
        # (create_token) with plain inserts, the pattern that used to fail under contention.
        db = open_db(path)
        try:
            for i in range(rounds):
                tokens.create_token(db, f"p{proc}-t{thread}-{i}", ("read",))
                with db.transaction():
                    db.execute(
                        "INSERT INTO worker_state (name, value, updated_at) VALUES (?, 'x', 0)",
                        [f"p{proc}-t{thread}-{i}"],
                    )
        finally:
            db.close()

    in_threads(work, 4, f"writer {proc}")


def test_writers_in_several_processes_all_commit(
    new_db: Callable[..., str], tmp_path: Path
) -> None:
    path = new_db("rb")
    open_db(path, migrate=True).close()
    close_all()  # a forked writer must not inherit a pooled connection
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, p, 40)) for p in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    db = open_db(path)
    assert db.execute("SELECT count(*) FROM tokens").fetchone()[0] == 3 * 4 * 40
    assert db.execute("SELECT count(*) FROM worker_state").fetchone()[0] == 3 * 4 * 40
    if not ON_POSTGRES:  # the lock file lives beside the database, private to its owner
        assert (tmp_path / "rb.db.lock").stat().st_mode & 0o077 == 0


def test_a_failed_transaction_releases_the_lock(new_db: Callable[..., str]) -> None:
    location = new_db("rb")
    db = open_db(location, migrate=True)
    try:
        with db.transaction():
            db.execute("INSERT INTO worker_state (name, value, updated_at) VALUES ('a', 'x', 0)")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    other = open_db(location)
    with other.transaction():  # would block forever if the lock had leaked
        other.execute("INSERT INTO worker_state (name, value, updated_at) VALUES ('b', 'x', 0)")
    assert [r[0] for r in db.execute("SELECT name FROM worker_state ORDER BY name")] == ["b"]


def test_group_commit_isolates_a_failing_writer_and_commits_the_rest(
    new_db: Callable[..., str],
) -> None:
    path = new_db("rb")
    open_db(path, migrate=True).close()
    start = threading.Barrier(8)
    returned: dict[int, list[object]] = {i: [] for i in range(8)}
    raised: dict[int, int] = dict.fromkeys(range(8), 0)
    failing = {0, 3, 6}

    def writer(i: int) -> None:
        db = open_db(path)
        start.wait()
        for k in range(20):

            def work(conn_db: Any, k: int = k) -> tuple[int, int]:
                conn_db.execute(
                    "INSERT INTO worker_state (name, value, updated_at) VALUES (?, 'x', 0)",
                    [f"w{i}-{k}"],
                )
                if i in failing:
                    raise ValueError(f"writer {i} fails after writing")
                return (i, k)

            try:
                returned[i].append(db.write(work))
            except ValueError:
                raised[i] += 1
        db.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each caller got its own answer: its return value, or its own exception.
    assert raised == {i: 20 if i in failing else 0 for i in range(8)}
    assert returned == {i: [] if i in failing else [(i, k) for k in range(20)] for i in range(8)}
    # Every write of a successful call is on disk; none of a failed call survived.
    names = {r[0] for r in open_db(path).execute("SELECT name FROM worker_state")}
    assert names == {f"w{i}-{k}" for i in range(8) if i not in failing for k in range(20)}


@pytest.mark.sqlite_only("the group commit of SQLite's single writer")
def test_a_failed_commit_fails_every_caller_of_the_batch(tmp_path: Path) -> None:
    db = open_db(tmp_path / "rb.db", migrate=True)
    db.conn.execute("BEGIN")  # a transaction left open: the batch cannot start
    try:
        db.write(lambda d: d.execute("SELECT 1"))
    except StorageError as exc:
        assert "open transaction" in str(exc)
    else:
        raise AssertionError("write started inside an open transaction")
    db.conn.execute("ROLLBACK")
    assert db.write(lambda d: d.execute("SELECT 41 + 1").fetchone()[0]) == 42


def _handles_on(path: Path) -> int:
    """How many of this process's file descriptors are open on `path`."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if fd.exists() and fd.resolve() == path.resolve())


@pytest.mark.sqlite_only("the SQLite write connection of a process")
def test_group_commits_run_on_one_write_connection_closed_with_the_last_store(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rb.db"
    full = open_db(path, migrate=True)
    normal = open_db(path, synchronous="normal")

    def connection_and_mode(tx: Any) -> tuple[int, int]:
        return id(tx.conn), tx.execute("PRAGMA synchronous").fetchone()[0]

    # Every write of the process shares one connection (its page cache stays warm), with the
    # durability its caller asked for: synchronous FULL is 2, NORMAL 1.
    first, mode = full.write(connection_and_mode)
    assert mode == 2 and first not in (id(full.conn), id(normal.conn))
    assert normal.write(connection_and_mode) == (first, 1)
    assert full.write(connection_and_mode) == (first, 2)
    assert _handles_on(path) == 3
    normal.close()
    assert full.write(connection_and_mode) == (first, 2)  # it stays while a store is open
    full.close()
    assert _handles_on(path) == 0  # and goes with the last one: nothing holds the file open


@pytest.mark.sqlite_only("the group commit of SQLite's single writer")
def test_a_batch_that_cannot_start_fails_every_caller_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the write connection cannot be opened, every caller whose write was in the batch
    gets the error: none is told it succeeded, none is run later behind its caller's back."""
    from storage import sqlite

    db = open_db(tmp_path / "rb.db", migrate=True)
    lock = db.write_lock
    ran: list[str] = []
    waiting = sqlite._Pending(lambda tx: ran.append("queued"))
    lock._queue.append(waiting)  # another thread's write, queued behind this one

    def no_connection(self: Any, synchronous: str) -> Any:
        raise StorageError("cannot open the write connection")

    monkeypatch.setattr(sqlite.WriteLock, "writer", no_connection)
    with pytest.raises(StorageError, match="cannot open the write connection"):
        db.write(lambda tx: ran.append("leader"))
    assert waiting.done and isinstance(waiting.error, StorageError)
    monkeypatch.undo()
    assert db.write(lambda tx: tx.execute("SELECT 1").fetchone()[0]) == 1
    assert ran == []  # neither failed write ran, then or with the next batch
