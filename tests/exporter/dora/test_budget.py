"""Error-budget counters (each poll bucket counted once, across restarts) and crash-free
change failures, from what the pollers return."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from exporter.dora.budget import after_poll
from exporter.pollers.jobs import PollReport
from exporter.pollers.sentry import parse_buckets
from exporter.settings import ComponentMapping, Settings, SourceMapping
from storage import budgets, dora, release_health
from storage.db import open_db
from storage.release_health import HealthRow
from tests.conftest import FIXTURES

KEY = ("checkout", "production", "sentry")
T7 = 1706511600.0  # 2024-01-29T07:00:00Z


def test_sentry_series_become_completed_buckets() -> None:
    # The documented response shape (upstream-apis.md section 2), grouped by session.status with
    # series: three hourly buckets, the last one still filling at 09:30.
    payload = json.loads((FIXTURES / "sentry/sessions_by_status_series.json").read_text())
    buckets = parse_buckets(payload, 3600, T7 + 2.5 * 3600)
    assert buckets == {
        (42, "checkout@1.2.0", "production"): (
            (T7, T7 + 3600, 600, 4),
            (T7 + 3600, T7 + 7200, 640, 6),
        )
    }


def test_each_bucket_counts_once_across_restarts(new_db: Callable[..., str]) -> None:
    path = new_db("b")
    first = [(T7, T7 + 3600, 600, 4)]
    later = [*first, (T7 + 3600, T7 + 7200, 640, 6)]
    db = open_db(path, migrate=True)
    # The first poll only sets the starting point: history never arrives as one burst.
    assert db.write(lambda tx: budgets.count_buckets(tx, KEY, first, 0, T7)) == (0, 0)
    assert db.write(lambda tx: budgets.count_buckets(tx, KEY, later, 0, T7)) == (640, 6)
    db.close()
    again = open_db(path, migrate=True)  # a restart: the watermark is stored
    assert again.write(lambda tx: budgets.count_buckets(tx, KEY, later, 0, T7)) == (0, 0)
    newer = [*later, (T7 + 7200, T7 + 10800, 700, 70)]
    assert again.write(lambda tx: budgets.count_buckets(tx, KEY, newer, T7 + 7200, T7)) == (700, 70)
    # A bucket from before the release was deployed never counts.
    assert again.write(
        lambda tx: budgets.count_buckets(tx, KEY, [(T7 + 10800, T7 + 14400, 9, 9)], T7 + 20000, T7)
    ) == (0, 0)
    assert budgets.counters(again) == [
        {
            "component": "checkout",
            "stage": "production",
            "source": "sentry",
            "sessions": 1340,
            "crashed": 76,
        }
    ]


def test_running_totals_count_by_growth_per_release(db: Any) -> None:
    key = ("checkout", "production", "bugsnag")
    assert db.write(lambda tx: budgets.count_totals(tx, key, "1.2.0", 48000, 96, 0)) == (0, 0)
    assert db.write(lambda tx: budgets.count_totals(tx, key, "1.2.0", 49000, 100, 0)) == (1000, 4)
    assert db.write(lambda tx: budgets.count_totals(tx, key, "1.3.0", 50, 1, 0)) == (0, 0)
    assert db.write(lambda tx: budgets.count_totals(tx, key, "1.3.0", 80, 1, 0)) == (30, 0)


def _settings(settings: Settings) -> Settings:
    mapping = ComponentMapping(sources={"bugsnag": SourceMapping(project="p1")})
    return settings.replace(components={"checkout": mapping}, crash_free_critical=0.99)


def _report(release: str, total: int, unhandled: int) -> PollReport:
    row = HealthRow(
        source="bugsnag", project="p1", environment="production", release=release,
        total_sessions=total, users=None, crash_free_sessions=1 - unhandled / total,
        crash_free_users=None, sessions_by_status={"unhandled": unhandled},
    )  # fmt: skip
    return PollReport("bugsnag", "bugsnag", ok=True, rows=(row,))


def test_a_current_rollout_below_critical_is_a_change_failure(
    client: Any, auth: dict[str, str], db: Any, settings: Settings
) -> None:
    client.post("/components/checkout/deployments", json={"version": "1.2.0"}, headers=auth)
    s = _settings(settings)
    for report in (_report("1.2.0", 1000, 5), _report("1.2.0", 2000, 30)):
        # release_health rows as poll_source stores them, then the hook.
        release_health.store_poll(db, "bugsnag", report.rows, (), projects=("p1",), duration=0.1)
        after_poll(db, s, report, 0)
    [rollout] = dora.series(db, "checkout", "production", 0)
    assert rollout.crash_failure_ts is not None  # 1 - 30/2000 = 98.5% < 99%
    assert budgets.counters(db)[0]["sessions"] == 1000
    assert budgets.counters(db)[0]["crashed"] == 25
