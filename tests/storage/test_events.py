"""record_event: aggregates, out-of-order events, cardinality limits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from storage import aggregates, components, events, idempotency

LIMITS = events.Limits(max_components=2, max_stages=2)


def _event(
    version: str, day: int, result_class: str = "success", stage: str = "production", **extra: Any
) -> dict[str, Any]:
    return {
        "version": version,
        "result": None,
        "result_class": result_class,
        "stage": stage,
        "finished_at": datetime(2024, 1, day, tzinfo=UTC),
        "started_at": None,
        **extra,
    }


def record(
    db: Any,
    component: str,
    event: dict[str, Any],
    kind: str = "deployment",
    limits: events.Limits = LIMITS,
    idem: idempotency.Idempotency | None = None,
) -> events.Outcome:
    event_id = str(uuid.uuid4())
    return events.record_event(
        db,
        kind,
        component,
        event,
        event_id=event_id,
        body={"id": event_id},
        limits=limits,
        idempotency=idem,
    )


def current(db: Any, component: str, stage: str = "production") -> str:
    return db.execute(
        "SELECT version FROM current_versions WHERE component = ? AND stage = ?", [component, stage]
    ).fetchone()[0]


def test_backfill_never_makes_an_old_version_current(db: Any) -> None:
    record(db, "checkout", _event("v3", 10))
    for day in range(1, 10):  # a backfill of older deployments arriving afterwards
        record(db, "checkout", _event(f"v0.{day}", day))
    assert current(db, "checkout") == "v3"
    count = db.execute(
        "SELECT sum(count) FROM event_stats WHERE component = 'checkout'"
    ).fetchone()[0]
    assert count == 10


def test_failed_deployment_does_not_change_current_version(db: Any) -> None:
    record(db, "checkout", _event("v1", 1))
    record(db, "checkout", _event("v2", 2, result_class="failure"))
    assert current(db, "checkout") == "v1"


def test_since_is_kept_when_the_same_version_is_redeployed(db: Any) -> None:
    record(db, "checkout", _event("v1", 1))
    record(db, "checkout", _event("v1", 5))
    row = db.execute("SELECT since_ts, finished_ts FROM current_versions").fetchone()
    assert row[0] == datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    assert row[1] == datetime(2024, 1, 5, tzinfo=UTC).timestamp()


def test_cardinality_limits_store_events_but_export_only_the_first(db: Any) -> None:
    for name in ("a", "b", "c"):
        outcome = record(db, name, _event("1", 1))
    assert outcome.overflow == ["component"]
    record(db, "a", _event("1", 1, stage="s2"))
    outcome = record(db, "a", _event("1", 1, stage="s3"))
    assert outcome.overflow == ["stage"]
    assert db.execute("SELECT count(*) FROM deployments").fetchone()[0] == 5
    snap = aggregates.snapshot(db, max_components=2, max_stages=2)
    assert {(r["component"], r["stage"]) for r in snap.event_stats} == {
        ("a", "production"),
        ("b", "production"),
        ("a", "s2"),
    }
    assert snap.overflow == {"component": 1, "stage": 1}
    # Raising the limits exports what was stored all along.
    wide = aggregates.snapshot(db, max_components=10, max_stages=10)
    assert len(wide.event_stats) == 5


def test_durations_fill_histogram_buckets(db: Any) -> None:
    started = datetime(2024, 1, 1, 0, 0, tzinfo=UTC)
    for seconds in (0.5, 45, 45, 4000, 100000):
        ev = _event("1", 1)
        ev["started_at"] = started
        ev["finished_at"] = datetime.fromtimestamp(started.timestamp() + seconds, UTC)
        record(db, "checkout", ev)
    (row,) = aggregates.snapshot(db, max_components=10, max_stages=10).durations
    bounds = [*aggregates.DURATION_BUCKETS, float("inf")]
    assert row["count"] == 5
    assert row["sum"] == 0.5 + 45 + 45 + 4000 + 100000
    by_bound = dict(zip(bounds, row["buckets"], strict=True))
    assert by_bound[1.0] == 1
    assert by_bound[60.0] == 2
    assert by_bound[7200.0] == 1
    assert by_bound[float("inf")] == 1


def _component(db: Any, slug: str = "checkout") -> dict[str, Any]:
    found = components.get_component(db, slug)
    assert found is not None
    return found


def test_a_late_older_build_never_replaces_the_newest(db: Any) -> None:
    record(db, "checkout", _event("42", 5, result="passed"), kind="build")
    record(db, "checkout", _event("41", 3, result_class="failure", result="failed"), kind="build")
    last = _component(db)["last_build"]
    assert (last["version"], last["result_class"], last["finished_at"]) == (
        "42",
        "success",
        "2024-01-05T00:00:00.000Z",
    )
    record(db, "checkout", _event("43", 6, result_class="failure", result="failed"), kind="build")
    assert _component(db)["last_build"]["version"] == "43"


def test_a_build_reported_again_at_the_same_time_takes_the_later_report(db: Any) -> None:
    # A CI re-run reporting the same finished_at: the newer report is the news.
    first = record(db, "checkout", _event("42", 5, result_class="failure"), kind="build")
    again = record(db, "checkout", _event("42", 5, result="retried ok"), kind="build")
    last = _component(db)["last_build"]
    assert last["id"] == again.body["id"] != first.body["id"]
    assert (last["result"], last["result_class"]) == ("retried ok", "success")


def test_a_deployment_at_the_same_time_as_the_current_one_replaces_it(db: Any) -> None:
    record(db, "checkout", _event("v1", 5))
    record(db, "checkout", _event("v2", 5, commit_sha="abc"))
    stage = _component(db)["stages"]["production"]
    assert (stage["version"], stage["commit_sha"]) == ("v2", "abc")
    assert stage["since"] == stage["deployed_at"] == "2024-01-05T00:00:00.000Z"


def test_backfill_is_compared_with_the_newest_redeploy_not_the_first(db: Any) -> None:
    record(db, "checkout", _event("v1", 1))
    record(db, "checkout", _event("v2", 5))
    record(db, "checkout", _event("v2", 10))  # redeployed: current since day 5, last on day 10
    record(db, "checkout", _event("v1", 7))  # an older deployment, backfilled late
    stage = _component(db)["stages"]["production"]
    assert (stage["version"], stage["since"], stage["deployed_at"]) == (
        "v2",
        "2024-01-05T00:00:00.000Z",
        "2024-01-10T00:00:00.000Z",
    )


def test_an_unknown_filter_is_refused_not_put_into_sql(db: Any) -> None:
    record(db, "checkout", _event("v1", 1))
    with pytest.raises(ValueError, match="unknown filter colour"):
        events.list_events(db, "deployment", filters={"colour": "red"})


def test_idempotency_keys_expire_after_their_ttl_only(db: Any) -> None:
    def key(name: str) -> idempotency.Idempotency:
        return idempotency.Idempotency("ci:deployment:checkout", name, "hash", ttl_seconds=3600)

    old = record(db, "checkout", _event("v1", 1), idem=key("old"))
    new = record(db, "checkout", _event("v2", 2), idem=key("new"))
    with db.transaction():
        db.execute("UPDATE idempotency_keys SET created_at = created_at - 7200 WHERE key = 'old'")
    assert idempotency.expire(db, 3600) == 1
    # The fresh key still answers a retry with the first answer; the expired one is new again.
    assert record(db, "checkout", _event("v2", 2), idem=key("new")).body == new.body
    again = record(db, "checkout", _event("v1", 1), idem=key("old"))
    assert again.created and again.body != old.body


def test_deployments_and_builds_are_merged_newest_first_and_paged_once(db: Any) -> None:
    record(db, "checkout", _event("b1", 3), kind="build")
    record(db, "checkout", _event("d1", 3))  # same time as b1: deployments come first
    record(db, "checkout", _event("b2", 2), kind="build")
    record(db, "checkout", _event("d2", 1))
    order = ["d1", "b1", "b2", "d2"]
    everything, cursor = events.list_recent(db, limit=4)
    assert ([r["version"] for r in everything], cursor) == (order, None)
    seen, after = [], None
    while True:
        page, after = events.list_recent(db, limit=2, after=after)
        seen += [(r["kind"], r["version"]) for r in page]
        if after is None:
            break
    assert seen == [("deployment", "d1"), ("build", "b1"), ("build", "b2"), ("deployment", "d2")]


def test_a_snapshot_narrowed_to_one_component(db: Any) -> None:
    for component in ("a", "b"):
        ev = _event("1", 2)
        ev["started_at"] = datetime(2024, 1, 1, tzinfo=UTC)
        record(db, component, ev)
    snap = aggregates.snapshot(db, max_components=10, max_stages=10, component="b", buckets=False)
    assert {r["component"] for r in snap.event_stats + snap.durations + snap.current_versions} == {
        "b"
    }
    (row,) = snap.durations
    assert isinstance(row["buckets"], str)  # left as stored: the status page draws no histogram
    (decoded,) = aggregates.snapshot(db, max_components=10, max_stages=10, component="a").durations
    assert sum(decoded["buckets"]) == 1
