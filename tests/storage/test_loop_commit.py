"""The event loop's group commit (storage.sqlite.LoopGroupCommit), as the web worker's ingest path
uses it: writes awaited on one loop, on a real SQLite file, with other threads writing too."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from storage.db import open_db
from storage.sqlite import LoopGroupCommit

pytestmark = pytest.mark.sqlite_only("the group commit of SQLite's single writer")

T = TypeVar("T")
INSERT = "INSERT INTO worker_state (name, value, updated_at) VALUES (?, 'x', 0)"


def _names(path: Path) -> set[str]:
    db = open_db(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM worker_state")}
    finally:
        db.close()


def _on_a_loop(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run(main()) on a thread of its own, as the web worker's loop thread is (the
    browser tests leave a running loop behind on the test thread)."""
    out: list[T] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(main())))
    thread.start()
    thread.join(30)
    assert out, "the loop did not finish"
    return out[0]


async def _commit_for(db: Any) -> LoopGroupCommit:
    return LoopGroupCommit(db.write_lock, db.synchronous, asyncio.get_running_loop())


def test_concurrent_writes_share_commits_and_a_failing_one_is_undone_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rb.db"
    db = open_db(path, migrate=True)
    failing = {3, 17, 40}

    def work(i: int) -> Any:
        def write(tx: Any) -> int:
            tx.execute(INSERT, [f"w{i}"])
            if i in failing:
                raise ValueError(f"write {i} fails after writing")
            return i

        return write

    async def main() -> list[Any]:
        commit = await _commit_for(db)
        return await asyncio.gather(
            *(commit.write(work(i)) for i in range(60)), return_exceptions=True
        )

    with caplog.at_level(logging.DEBUG, logger="storage.sqlite"):
        answers = _on_a_loop(main)
    for i, answer in enumerate(answers):
        if i in failing:
            assert (
                isinstance(answer, ValueError) and str(answer) == f"write {i} fails after writing"
            )
        else:
            assert answer == i
    assert _names(path) == {f"w{i}" for i in range(60) if i not in failing}
    sizes = [int(m) for m in re.findall(r"group commit of (\d+) writes", caplog.text)]
    assert sum(sizes) == 60 and len(sizes) < 60  # writes ready together shared a COMMIT
    db.close()


def test_a_busy_lock_is_awaited_off_the_loop(tmp_path: Path) -> None:
    """Another thread holds the write lock for 0.4 s: the loop keeps running meanwhile, and the
    write commits once the lock is free."""
    path = tmp_path / "rb.db"
    db = open_db(path, migrate=True)
    holding = threading.Event()

    def hold_the_lock() -> None:
        other = open_db(path)
        with other.transaction():
            other.execute(INSERT, ["thread"])
            holding.set()
            time.sleep(0.4)
        other.close()

    async def main() -> tuple[str, int]:
        commit = await _commit_for(db)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        result = await commit.write(lambda tx: tx.execute(INSERT, ["loop"]) and "stored")
        ticker.cancel()
        return result, ticks

    thread = threading.Thread(target=hold_the_lock)
    thread.start()
    holding.wait(5)
    started = time.monotonic()
    result, ticks = _on_a_loop(main)
    waited = time.monotonic() - started
    thread.join()
    assert result == "stored" and _names(path) == {"thread", "loop"}
    assert waited >= 0.2  # it did wait for the other writer
    assert ticks >= 10  # and the loop ran other work while it waited (0.01 s ticks)
    db.close()


def test_a_failed_commit_fails_every_write_of_its_batch(tmp_path: Path) -> None:
    """A COMMIT that fails (a deferred foreign key, checked only then) leaves nothing of its
    batch, and no caller of it is told its write succeeded; the next batch commits."""
    path = tmp_path / "rb.db"
    db = open_db(path, migrate=True)

    def orphan(tx: Any) -> str:
        tx.execute("PRAGMA defer_foreign_keys = ON")
        tx.execute(
            "INSERT INTO builds (id, component, version, result_class, finished_at, "
            "finished_ts, received_at) VALUES ('b1', 'no-such-component', '1', 'success', "
            "'2026-01-01T00:00:00Z', 0, 0)"
        )
        return "orphan"

    async def main() -> tuple[list[Any], str]:
        commit = await _commit_for(db)
        first = await asyncio.gather(
            commit.write(orphan),
            commit.write(lambda tx: tx.execute(INSERT, ["same batch"]) and "ok"),
            return_exceptions=True,
        )
        after = await commit.write(lambda tx: tx.execute(INSERT, ["next batch"]) and "ok")
        return first, after

    first, after = _on_a_loop(main)
    assert all("FOREIGN KEY" in str(answer) for answer in first), first
    assert after == "ok"
    assert _names(path) == {"next batch"}
    db.close()
