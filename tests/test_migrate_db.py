"""`releasebits migrate-db`: an SQLite store with a row in every table, copied into PostgreSQL,
answers the same /metrics and API reads; a target that holds rows is refused unless --replace."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from exporter.app import create_app
from exporter.cli import main
from exporter.ingest.validation import validate_event
from exporter.settings import Settings
from storage import (
    budgets,
    commits,
    events,
    feeds,
    heartbeat,
    incidents,
    leases,
    outbox,
    release_health,
    releases,
    tokens,
)
from storage.copy import tables_in_order
from storage.db import SqliteStore, Store, close_all, open_db
from storage.idempotency import Idempotency
from tests import pg

pytestmark = pytest.mark.needs_postgres
NOW = time.time()
LIMITS = events.Limits(max_components=2, max_stages=20)


def _deploy(db: Store, component: str, version: str, hours_ago: float, **fields: Any) -> str:
    finished = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=hours_ago)
    event, _ = validate_event(
        "deployment",
        {"version": version, "finished_at": finished.isoformat(), **fields},
        default_stage="production",
    )
    event_id = f"{component}-{version}-{hours_ago}"
    events.record_event(
        db, "deployment", component, event, event_id=event_id, body={"id": event_id},
        limits=LIMITS, forward=lambda *_: ["hooks"], dora_stages=("production",),
        idempotency=Idempotency("ci", event_id, "h", 3600),
    )  # fmt: skip
    return event_id


def fill(db: Store) -> None:
    """A row in every table, through the functions that write them."""
    tokens.create_token(db, "ci", ("read", "write"))
    db.write(lambda tx: releases.ensure_release(tx, "2024.05"))
    db.write(
        lambda tx: commits.store_commits(
            tx, "checkout", [commits.Commit("abc", None, NOW - 4 * 3600, "main")], NOW
        )
    )
    _deploy(
        db, "checkout", "v1", 3, started_at=datetime.fromtimestamp(NOW - 11000, UTC).isoformat()
    )
    _deploy(db, "checkout", "v2", 2, commit_sha="abc", release="2024.05")
    _deploy(db, "checkout", "v1", 1)  # a rollback: a recovery observed
    for component in ("billing", "search"):  # past max_components: counted as overflow
        _deploy(db, component, "v1", 1)
    build, _ = validate_event("build", {"version": "b1"}, default_stage="production")
    events.record_event(db, "build", "checkout", build, event_id="b1", body={}, limits=LIMITS)
    report = incidents.IncidentReport("checkout", "production", "INC-1", started_ts=NOW - 5000)
    db.write(lambda tx: incidents.report(tx, report, NOW))
    delivery = feeds.Delivery("github", "push", "d-1")
    feeds.write(
        db, delivery, lambda tx: feeds.remember_start(tx, "gh:1", "deployment", NOW, NOW), NOW
    )
    release_health.store_poll(
        db, "sentry",
        [release_health.HealthRow("sentry", "1", "production", "v1", 100, 10, 0.99, 0.98)],
        [release_health.Target("sentry", "1", "stability", 0.99, 0.98)], duration=0.5,
    )  # fmt: skip
    db.write(lambda tx: budgets.count_buckets(tx, ("checkout", "production", "sentry"), [], 0, NOW))
    claimed = outbox.claim(db, ["hooks"], now=time.time(), lease_seconds=60, limit=2)
    outbox.finish(db, [outbox.Result(claimed[0].id, "hooks", "delivered", 200)], NOW)
    outbox.finish(db, [outbox.Result(claimed[1].id, "hooks", "disabled", 410, "gone")], NOW)
    heartbeat.beat(db, "w1")
    leases.acquire(db, leases.WORKER, "w1/abcd", now=NOW, ttl=3600)


def reads(db_location: str) -> dict[str, Any]:
    """What users see: the scrape (minus its own timing) and the API's lists."""
    client = create_app(Settings(db=db_location), process_metrics=False).test_client()
    auth = {"Authorization": f"Bearer {tokens.create_token(open_db(db_location), 'r', ('read',))}"}
    scrape = [
        line
        for line in client.get("/metrics").text.splitlines()
        if "scrape" not in line and "heartbeat" not in line
    ]
    paths = ["/components", "/components/checkout/deployments", "/releases", "/deliveries"]
    return {"metrics": scrape, **{p: client.get(p, headers=auth).json for p in paths}}


@pytest.fixture
def target(pg_cluster: pg.Cluster) -> Iterator[str]:
    url = pg_cluster.database("copy", template="template0")  # empty: migrate-db creates tables
    yield url
    close_all()
    pg_cluster.drop(url)


def test_every_table_is_copied_and_reads_the_same(tmp_path: Path, target: str) -> None:
    source = str(tmp_path / "source.db")
    db = open_db(source, migrate=True)
    fill(db)
    assert isinstance(db, SqliteStore)
    empty = [t for t in tables_in_order(db) if db.one(f"SELECT count(*) FROM {t}") == (0,)]
    assert empty == []  # a new table belongs in fill() too
    db.close()

    result = CliRunner().invoke(main, ["migrate-db", "--from", source, "--to", target])
    assert result.exit_code == 0, result.output
    assert "every count matches" in result.stderr
    assert "  deployments: 5/5 rows" in result.stderr  # progress per table
    assert re.search(r"^deployments +5 +5$", result.stdout, re.M), result.stdout
    assert "rb-test-pw" not in result.output  # the password never printed

    assert reads(target) == reads(source)
    # Generated ids continue after the copied ones: new events insert.
    copied = open_db(target)
    _deploy(copied, "checkout", "v3", 0.5)
    assert copied.one("SELECT max(seq) FROM deployments") == (6,)


def test_a_target_with_rows_is_refused_unless_replace(tmp_path: Path, target: str) -> None:
    source = str(tmp_path / "source.db")
    db = open_db(source, migrate=True)
    _deploy(db, "checkout", "v1", 1)
    db.close()
    runner = CliRunner()
    assert runner.invoke(main, ["migrate-db", "--from", source, "--to", target]).exit_code == 0
    again = runner.invoke(main, ["migrate-db", "--from", source, "--to", target])
    assert again.exit_code == 1
    assert again.stderr.strip().splitlines() == [
        "releasebits: error: --to: the target already holds rows (in components, "
        "current_versions, deliveries, dora_generations, event_stats); pass --replace to "
        "delete them first"
    ]
    replaced = runner.invoke(main, ["migrate-db", "--from", source, "--to", target, "--replace"])
    assert replaced.exit_code == 0, replaced.output
    assert open_db(target).one("SELECT count(*) FROM deployments") == (1,)


def test_bad_arguments_are_one_line(tmp_path: Path, pg_cluster: pg.Cluster) -> None:
    source = tmp_path / "source.db"
    open_db(source, migrate=True).close()
    runner = CliRunner()
    to_file = runner.invoke(main, ["migrate-db", "--from", str(source), "--to", str(source)])
    assert to_file.stderr.strip() == "releasebits: error: --to: expected a postgresql:// URL"
    unreachable = f"postgresql://releasebits:x@127.0.0.1:{pg.free_port()}/nope"
    refused = runner.invoke(main, ["migrate-db", "--from", str(source), "--to", unreachable])
    assert refused.exit_code == 1
    assert refused.stderr.startswith("releasebits: error: cannot connect to postgresql://")
    assert len(refused.stderr.strip().splitlines()) == 1 and ":x@" not in refused.stderr
