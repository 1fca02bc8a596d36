"""Migrations: applying twice is a no-op; the schema is in place (SQLite: in WAL mode)."""

from __future__ import annotations

from collections.abc import Callable

from storage.db import open_db
from tests.conftest import ON_POSTGRES


def test_apply_twice_is_a_noop(new_db: Callable[..., str]) -> None:
    db = open_db(new_db("a"), migrate=True)
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
    if not ON_POSTGRES:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_reopen_keeps_data(new_db: Callable[..., str]) -> None:
    location = new_db("a")
    db = open_db(location, migrate=True)
    with db.transaction():
        db.execute("INSERT INTO components (slug, created_at) VALUES ('x', 0)")
    db.close()
    again = open_db(location, migrate=True)
    assert again.execute("SELECT slug FROM components").fetchall() == [("x",)]
    again.close()
