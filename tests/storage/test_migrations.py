"""Migrations: applying twice is a no-op; WAL and the schema are in place."""

from __future__ import annotations

from pathlib import Path

from storage.db import open_db


def test_apply_twice_is_a_noop(tmp_path: Path) -> None:
    db = open_db(tmp_path / "a.db", migrate=True)
    applied = db.applied_migrations()
    assert applied == [
        "m001_initial",
        "m002_release_health",
        "m003_outbox",
        "m004_feeds",
        "m008_ui",
        "m005_dora",
        "m007_onboarding",
    ]
    db.migrate()
    assert db.applied_migrations() == applied
    assert {"deployments", "builds", "tokens", "event_stats", "current_versions"} <= set(
        db.table_names()
    )
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_reopen_keeps_data(tmp_path: Path) -> None:
    db = open_db(tmp_path / "a.db", migrate=True)
    db.execute("INSERT INTO components (slug, created_at) VALUES ('x', 0)")
    db.conn.commit()
    db.close()
    again = open_db(tmp_path / "a.db", migrate=True)
    assert again.execute("SELECT slug FROM components").fetchall() == [("x",)]
    again.close()
