"""Events with a natural key (a webhook's deployment or run id): start statuses remembered before
the final one, filled in after it, and deliveries deduplicated; what each call answers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from storage import components, events
from storage.feeds import Delivery

LIMITS = events.Limits(max_components=10, max_stages=10)
KEY = "github:deployment:145988746"


def at(minute: int, second: int = 0) -> datetime:
    return datetime(2019, 5, 15, 15, minute, second, tzinfo=UTC)


def final(
    db: Any,
    finished: datetime,
    started: datetime | None = None,
    delivery: Delivery | None = None,
) -> events.Outcome:
    event = {
        "version": "f95f852bd8fc",
        "result": "success",
        "result_class": "success",
        "stage": "production",
        "finished_at": finished,
        "started_at": started,
    }
    event_id = str(uuid.uuid4())
    return events.record_event(
        db,
        "deployment",
        "hello-world",
        event,
        event_id=event_id,
        body={"id": event_id},
        limits=LIMITS,
        natural_key=KEY,
        delivery=delivery,
    )


def stored(db: Any) -> dict[str, Any]:
    rows, _ = events.list_events(db, "deployment", component="hello-world")
    assert len(rows) == 1
    return rows[0]


def duration_count(db: Any) -> int:
    row = db.execute("SELECT count FROM duration_stats WHERE component = 'hello-world'").fetchone()
    return int(row[0]) if row else 0


def test_the_earliest_start_wins_whichever_status_brought_it(db: Any, local_timezone: int) -> None:
    answer = events.record_start(db, "deployment", KEY, at(20, 40))
    assert (answer.status, answer.body) == (200, {"started_at": "2019-05-15T15:20:40.000Z"})
    later = events.record_start(db, "deployment", KEY, at(20, 50))
    assert later.body == {"started_at": "2019-05-15T15:20:40.000Z"}  # the earliest so far
    # The final status has its own, earlier start: the earlier of the two is kept.
    created = final(db, at(20, 55), started=at(20, 30))
    assert created.status == 201 and created.created
    row = stored(db)
    assert (row["started_at"], row["duration_seconds"]) == ("2019-05-15T15:20:30.000Z", 25.0)


def test_a_remembered_start_after_the_finish_is_not_used(db: Any) -> None:
    events.record_start(db, "deployment", KEY, at(21))  # a clock ahead, or a confused sender
    final(db, at(20, 55))
    assert stored(db)["started_at"] is None
    assert duration_count(db) == 0


def test_a_remembered_start_equal_to_the_finish_is_a_zero_duration(db: Any) -> None:
    events.record_start(db, "deployment", KEY, at(20, 55))
    final(db, at(20, 55))
    assert (stored(db)["started_at"], stored(db)["duration_seconds"]) == (
        "2019-05-15T15:20:55.000Z",
        0.0,
    )


def test_a_start_after_the_final_status_fills_the_missing_start_once(
    db: Any, local_timezone: int
) -> None:
    first = final(db, at(20, 55))
    event_id = first.body["id"]
    assert stored(db)["started_at"] is None
    filled = events.record_start(db, "deployment", KEY, at(20, 40))
    assert (filled.status, filled.body) == (200, {"id": event_id, "updated": True})
    row = stored(db)
    assert (row["started_at"], row["duration_seconds"]) == ("2019-05-15T15:20:40.000Z", 15.0)
    assert duration_count(db) == 1
    # It has a start now: a later start status, or a later final one, changes nothing.
    again = events.record_start(db, "deployment", KEY, at(20, 30))
    assert again.body == {"id": event_id, "updated": False}
    repeat = final(db, at(21), started=at(20, 10))
    assert (repeat.status, repeat.body, repeat.created) == (
        200,
        {"id": event_id, "updated": False},
        False,
    )
    assert stored(db)["started_at"] == "2019-05-15T15:20:40.000Z"
    assert duration_count(db) == 1


def test_a_repeated_final_status_with_a_start_fills_it_in(db: Any) -> None:
    first = final(db, at(20, 55))
    repeat = final(db, at(20, 55), started=at(20, 45))
    assert repeat.body == {"id": first.body["id"], "updated": True}
    assert stored(db)["duration_seconds"] == 10.0


def test_a_start_after_the_finish_never_fills_in(db: Any) -> None:
    first = final(db, at(20, 55))
    late = events.record_start(db, "deployment", KEY, at(20, 56))
    assert late.body == {"id": first.body["id"], "updated": False}
    assert stored(db)["started_at"] is None
    at_finish = events.record_start(db, "deployment", KEY, at(20, 55))
    assert at_finish.body == {"id": first.body["id"], "updated": True}
    assert stored(db)["duration_seconds"] == 0.0


def test_a_delivery_seen_before_stores_nothing_and_says_so(db: Any) -> None:
    start = Delivery("github", "deployment_status", "d-1")
    assert not events.record_start(db, "deployment", KEY, at(20, 40), start).duplicate
    again = events.record_start(db, "deployment", KEY, at(20, 30), start)
    assert (again.status, again.body, again.duplicate) == (200, {"duplicate": True}, True)
    done = Delivery("github", "deployment_status", "d-2")
    assert final(db, at(20, 55), delivery=done).created
    twice = final(db, at(20, 55), delivery=done)
    assert (twice.status, twice.body, twice.duplicate, twice.created) == (
        200,
        {"duplicate": True},
        True,
        False,
    )
    assert stored(db)["started_at"] == "2019-05-15T15:20:40.000Z"  # not 15:20:30
    assert components.get_component(db, "hello-world")["deployments_count"] == 1  # type: ignore[index]
