"""The database file itself (issue 17, items 7, 10 and 11): corruption found at start and at run
time, nothing writable, file modes, and a write-ahead log deleted after a crash."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.app import create_app
from exporter.settings import Settings
from exporter.web import state
from storage import heartbeat, tokens
from storage.db import check_files, close_thread_stores, integrity_problem, open_db

PAGE = 4096
pytestmark = pytest.mark.sqlite_only("the database file: quick_check, -wal/-shm, file modes")


def _filled(path: Path, rows: int = 3000) -> None:
    """A database with enough deployment rows to span many pages, closed cleanly."""
    db = open_db(path, migrate=True)
    db.execute("INSERT INTO components (slug, created_at) VALUES ('c', 0)")
    db.executemany(
        "INSERT INTO deployments (id, component, version, result_class, finished_at, "
        "finished_ts, meta_data, received_at, stage) VALUES (?, 'c', ?, 'success', "
        "'2024-01-01T00:00:00.000Z', ?, '{}', 0, 'production')",
        [(f"id-{n:06d}", f"1.{n}" + "x" * 100, 1_700_000_000 + n) for n in range(rows)],
    )
    db.conn.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _corrupt(path: Path) -> None:
    """Garbage over the middle of the file, as the review wrote it."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek((size // PAGE // 2) * PAGE)
        f.write(b"\xde\xad\xbe\xef" * (PAGE * 4 // 4))


def _run(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RELEASEBITS_DB": str(db), "RELEASEBITS_PORT": "1"}
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_corrupted_file_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "rb.db"
    _filled(path)
    store = open_db(path)
    assert integrity_problem(store) is None
    store.close()
    _corrupt(path)
    store = open_db(path)
    assert integrity_problem(store) is not None
    store.close()
    for command in ("serve", "web", "worker"):
        done = _run(command, db=path)
        assert done.returncode == 1, (command, done.stderr)
        last = done.stderr.strip().splitlines()[-1]
        assert "failed SQLite's integrity check" in last, last
        assert "Traceback" not in done.stderr


def test_corruption_at_run_time_answers_503_and_unhealthy(tmp_path: Path) -> None:
    """The review's daemon said 'ok' on /healthz and answered 500 on /components over a
    corrupted file; now both say 503."""
    path = tmp_path / "rb.db"
    _filled(path)
    db = open_db(path)
    token = tokens.create_token(db, "ci", ("read", "write"))
    heartbeat.beat(db, 1)
    db.close()
    client = create_app(Settings(db=str(path)), process_metrics=False).test_client()
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/healthz").status_code == 200
    close_thread_stores()
    with path.open("r+b") as f:  # every page after the schema: tables and indexes
        f.seek(PAGE * 2)
        f.write(os.urandom(path.stat().st_size - PAGE * 2))
    for url in ("/components", "/components/c/deployments", "/healthz"):
        resp = client.get(url, headers=auth)
        assert resp.status_code == 503, (url, resp.get_data(as_text=True))
    resp = client.post("/components/c/deployments", json={"version": "2"}, headers=auth)
    assert resp.status_code in (401, 503)  # the token table is garbage too: never a 201 or 500


def test_healthz_is_unhealthy_when_nothing_can_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/healthz said 200 "ok" on a read-only file and a full disk. It now commits a small write
    and says 503 when that fails. Tests run as root, which ignores file modes, so the web
    connection is made query_only: SQLite then refuses writes as it does on a read-only file."""
    path = tmp_path / "rb.db"
    db = open_db(path, migrate=True)
    heartbeat.beat(db, 1)
    db.close()
    client = create_app(Settings(db=str(path)), process_metrics=False).test_client()
    assert client.get("/healthz").status_code == 200
    readonly = open_db(path)
    readonly.execute("PRAGMA query_only = ON")
    monkeypatch.setattr(state, "thread_store", lambda *_a, **_k: readonly)
    resp = client.get("/healthz")
    assert resp.status_code == 503, resp.json
    assert resp.json["database"] == "read-only"
    readonly.close()


def test_new_database_files_are_private(tmp_path: Path) -> None:
    """Item 10: the DB, -wal and -shm were created 0644 (anyone on the host could read every
    event and token hash); now 0600 like the lock file."""
    path = tmp_path / "rb.db"
    old = os.umask(0o022)
    try:
        db = open_db(path, migrate=True)
        db.execute("INSERT INTO worker_state (name, value, updated_at) VALUES ('x', 'y', 0)")
        db.conn.commit()
        for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        db.close()
    finally:
        os.umask(old)


def test_shm_without_wal_is_refused(tmp_path: Path) -> None:
    """Item 11: deleting -wal after a crash silently lost acknowledged events (108 of 3,426
    in the review). The -shm it leaves behind gives it away: starting refuses, saying why."""
    path = tmp_path / "rb.db"
    _filled(path, rows=10)
    Path(f"{path}-shm").write_bytes(b"\0" * 32768)
    with pytest.raises(Exception, match="write-ahead log was deleted"):
        check_files(path)
    done = _run("serve", db=path)
    assert done.returncode == 1
    assert "write-ahead log was deleted" in done.stderr.strip().splitlines()[-1]
    Path(f"{path}-wal").write_bytes(b"")
    check_files(path)  # both present: the normal state after a crash
