"""The status page's reads: the merged newest-first feed and the version changes per stage."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from storage import components, events
from tests.conftest import ON_POSTGRES
from tests.storage.test_events import record

LIMITS = events.Limits(max_components=100, max_stages=100)
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _at(minute: int, version: str, stage: str | None = "production", **extra: Any) -> dict:
    event = {
        "version": version,
        "result": None,
        "result_class": "success",
        "finished_at": T0 + timedelta(minutes=minute),
        "started_at": None,
        **extra,
    }
    if stage is not None:
        event["stage"] = stage
    return event


def _page_through(db: Any, limit: int, **kwargs: Any) -> list[tuple[str, str]]:
    seen, after = [], None
    while True:
        rows, after = events.list_recent(db, limit=limit, after=after, **kwargs)
        seen += [(r["kind"], r["version"]) for r in rows]
        if after is None:
            return seen


def test_pages_of_the_merged_feed_neither_skip_nor_repeat(db: Any) -> None:
    rng = random.Random(7)
    expected = []
    for i in range(90):
        kind = rng.choice(["deployment", "build"])
        minute = rng.randrange(20)  # many events share a finished time, across both tables
        component = rng.choice(["a", "b", "c"])
        event = _at(minute, f"v{i}", "production" if kind == "deployment" else None)
        record(db, component, event, kind=kind, limits=LIMITS)
        expected.append((minute, 1 if kind == "deployment" else 0, i, (kind, f"v{i}")))
    newest_first = [item[3] for item in sorted(expected, reverse=True)]
    for limit in (1, 7, 50, 200):
        assert _page_through(db, limit) == newest_first
    only_builds = [e for e in newest_first if e[0] == "build"]
    assert _page_through(db, 5, kinds=("build",)) == only_builds


def test_feed_filters_by_component_stage_and_result(db: Any) -> None:
    record(db, "a", _at(1, "1", "staging"), limits=LIMITS)
    record(db, "a", _at(2, "2", "production", result_class="failure"), limits=LIMITS)
    record(db, "b", _at(3, "3", "production"), limits=LIMITS)
    record(db, "a", _at(4, "4", None), kind="build", limits=LIMITS)
    rows, cursor = events.list_recent(db, component="a")
    assert [r["version"] for r in rows] == ["4", "2", "1"] and cursor is None
    rows, _ = events.list_recent(db, ("deployment",), filters={"stage": "production"})
    assert [r["version"] for r in rows] == ["3", "2"]
    rows, _ = events.list_recent(db, filters={"result_class": "failure"})
    assert [(r["kind"], r["version"]) for r in rows] == [("deployment", "2")]
    assert rows[0]["finished_ts"] == (T0 + timedelta(minutes=2)).timestamp()


def test_version_changes_count_rollbacks_and_ignore_failures_and_repeats(db: Any) -> None:
    for minute, version, result in [
        (1, "1.0", "success"),
        (2, "1.0", "success"),  # another host: not a change
        (3, "1.1", "success"),
        (4, "1.2", "failure"),  # failed: never ran
        (5, "1.0", "success"),  # rollback: a change
    ]:
        record(db, "app", _at(minute, version, result_class=result), limits=LIMITS)
    record(db, "app", _at(6, "2.0", "staging"), limits=LIMITS)
    changes = components.version_changes(db, "app")
    assert [(c["stage"], c["version"]) for c in changes] == [
        ("production", "1.0"),
        ("production", "1.1"),
        ("production", "1.0"),
        ("staging", "2.0"),
    ]
    assert changes[0]["finished_ts"] == (T0 + timedelta(minutes=5)).timestamp()
    assert len(components.version_changes(db, "app", per_stage=1)) == 2
    assert components.stage_order(db) == ["production", "staging"]


def test_the_feed_across_components_walks_an_index_instead_of_sorting(db: Any) -> None:
    if ON_POSTGRES:  # an empty table is cheaper to sort: ask whether the index can serve it
        for table in ("deployments", "builds"):
            with db.transaction():
                db.execute("SET LOCAL enable_sort = off")
                plan = " ".join(
                    str(row[0])
                    for row in db.execute(
                        f"EXPLAIN SELECT d.* FROM {table} d "
                        "ORDER BY d.finished_ts DESC, d.seq DESC LIMIT 51"
                    ).fetchall()
                )
            assert f"Index Scan Backward using {table}_recent" in plan, plan
            assert "Sort" not in plan, plan
        return
    for table in ("deployments", "builds"):
        plan = " ".join(
            str(row[-1])
            for row in db.execute(
                f"EXPLAIN QUERY PLAN SELECT d.* FROM {table} d "
                "ORDER BY d.finished_ts DESC, d.seq DESC LIMIT 51"
            ).fetchall()
        )
        assert f"{table}_recent" in plan and "TEMP B-TREE" not in plan, plan
