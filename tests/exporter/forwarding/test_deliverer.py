"""The worker's delivery loop: what a failure of one delivery does to the others, when it gives
up, what it logs once per outage, and what a restarted worker does with rows in flight."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Response

from exporter.cli import main
from exporter.forwarding.deliverer import Deliverer
from exporter.forwarding.targets.webhook import WebhookTarget
from storage import outbox
from tests.exporter.forwarding.conftest import Forwarding
from tests.exporter.forwarding.test_outbox import ENV, answer, hooks

Make = Callable[..., Forwarding]
GRAFANA = '[[forward.grafana]]\nurl = "{url}"\ntoken_env = "GRAFANA_TOKEN"\n'
DELIVERER = "exporter.forwarding.deliverer"


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == DELIVERER and r.levelno == level]


def by_version(f: Forwarding) -> dict[str, dict[str, Any]]:
    """Deliveries keyed by the version of their deployment."""
    out = {}
    for row in f.deliveries():
        version = f.db.execute(
            "SELECT version FROM deployments WHERE id = ?", [row["event"]["id"]]
        ).fetchone()
        out[version[0] if version else row["event"]["id"]] = row
    return out


def test_a_permanent_failure_does_not_hold_up_the_next_event(
    httpserver: HTTPServer, forwarding: Make, caplog: pytest.LogCaptureFixture
) -> None:
    f = forwarding(GRAFANA.format(url=httpserver.url_for("/grafana/")), ENV)
    annotations = "/grafana/api/annotations"
    httpserver.expect_ordered_request(annotations).respond_with_json(
        {"message": "Failed to save annotation"}, status=400
    )
    httpserver.expect_ordered_request(annotations).respond_with_json({"id": 1})
    first = f.deploy(version="1")
    f.deploy(version="2")
    assert f.run() == 2
    rows = by_version(f)
    assert (rows["1"]["status"], rows["2"]["status"]) == ("failed", "delivered")
    assert messages(caplog, logging.ERROR) == [
        f"delivery {rows['1']['id']} of deployment {first} to 'grafana' failed for good: "
        'annotation: HTTP 400: { "message": "Failed to save annotation" }'
    ]


def test_an_event_no_longer_stored_fails_its_delivery_and_the_next_goes(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    answer(httpserver, 204)
    f = forwarding(hooks(httpserver), ENV)
    gone = f.deploy(version="1")
    f.deploy(version="2")
    # Say an operator deleted the row, or restored an older database file, before delivery.
    with f.db.transaction():
        f.db.execute("DELETE FROM deployments WHERE id = ?", [gone])
    assert f.run() == 2
    rows = {r["event"]["id"]: r for r in f.deliveries()}
    lost = rows.pop(gone)
    assert (lost["status"], lost["attempts"], lost["last_error"]) == (
        "failed",
        1,
        "the event is no longer stored",
    )
    assert [r["status"] for r in rows.values()] == ["delivered"]
    assert len(httpserver.log) == 1


def test_a_target_that_raises_is_retried_and_its_other_rows_wait(
    httpserver: HTTPServer,
    forwarding: Make,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    answer(httpserver, 204)
    f = forwarding(hooks(httpserver), ENV, forward_retry_base_seconds=10)

    def broken(self: WebhookTarget, *args: Any) -> int:
        raise KeyError("version")

    monkeypatch.setattr(WebhookTarget, "deliver", broken)
    for i in range(3):
        f.deploy(version=f"1.{i}")
    # One round (no time budget for a second): one attempt; the batch's other two rows are
    # handed back, not attempted.
    assert f.deliverer.run(f.db, budget=0) == 1
    rows = by_version(f)
    assert (rows["1.0"]["status"], rows["1.0"]["attempts"]) == ("pending", 1)
    assert rows["1.0"]["last_error"] == "internal error: KeyError"
    assert [(rows[v]["status"], rows[v]["attempts"]) for v in ("1.1", "1.2")] == [
        ("pending", 0),
        ("pending", 0),
    ]
    assert messages(caplog, logging.ERROR) == ["forwarding to 'hooks' raised unexpectedly"]

    monkeypatch.undo()  # the bug is fixed; the rows go out in order
    f.clock.advance(11)
    assert f.run() == 3
    assert {r["status"] for r in f.deliveries()} == {"delivered"}
    assert len(httpserver.log) == 3


def test_an_outage_is_logged_once_and_its_end_once(
    httpserver: HTTPServer, forwarding: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=DELIVERER)
    f = forwarding(hooks(httpserver), ENV, forward_retry_base_seconds=10)
    answer(httpserver, 503, "hooks", "down")
    f.deploy(version="1")
    for _ in range(3):
        f.run()
        f.clock.advance(100)
    assert f.only()["attempts"] == 3
    assert messages(caplog, logging.WARNING) == [
        "forwarding target 'hooks' failed (webhook: HTTP 503: down); retrying with backoff, "
        "events are kept"
    ]
    httpserver.clear_all_handlers()
    answer(httpserver, 204)
    f.run()
    f.deploy(version="2")
    f.run()
    assert [r["status"] for r in f.deliveries()] == ["delivered", "delivered"]
    assert messages(caplog, logging.INFO) == ["forwarding target 'hooks' delivers again"]


def test_gives_up_exactly_at_the_horizon(
    httpserver: HTTPServer, forwarding: Make, caplog: pytest.LogCaptureFixture
) -> None:
    f = forwarding(
        hooks(httpserver),
        ENV,
        forward_retry_base_seconds=1000,
        forward_retry_max_seconds=10_000,
        forward_give_up_hours=1,
    )
    answer(httpserver, 503, "hooks", "down")
    f.deploy()
    (delivery_id, t0) = f.db.execute("SELECT id, retry_since FROM deliveries").fetchone()
    now = [t0]
    f._deliverer = Deliverer(f.settings, clock=lambda: now[0], rand=lambda: 1.0)

    # Each attempt exactly when it is due: 1000 s, then 2000 s, then cut to the horizon.
    for at, next_due in ((t0, t0 + 1000), (t0 + 1000, t0 + 3000), (t0 + 3000, t0 + 3600)):
        now[0] = at
        assert f.run() == 1
        assert f.next_attempt_ts(delivery_id) == next_due
        assert f.only()["status"] == "pending"
    now[0] = t0 + 3600
    assert f.run() == 1
    row = f.only()
    assert (row["status"], row["attempts"]) == ("failed", 4)
    assert row["last_error"] == "gave up after 4 attempts: webhook: HTTP 503: down"
    assert messages(caplog, logging.ERROR) == [
        f"delivery {delivery_id} to 'hooks' failed; giving up after 1 hours: "
        "webhook: HTTP 503: down"
    ]


def test_a_restarted_worker_sends_what_was_in_flight_at_once(
    httpserver: HTTPServer, forwarding: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=DELIVERER)
    answer(httpserver, 204)
    f = forwarding(hooks(httpserver), ENV)
    f.deploy()
    # The previous worker claimed it for an hour, then died.
    outbox.claim(f.db, ["hooks"], now=time.time(), lease_seconds=3600, limit=10)
    assert f.only()["status"] == "delivering"
    assert f.run() == 1
    assert f.only()["status"] == "delivered"
    assert messages(caplog, logging.INFO) == [
        "1 deliveries were in flight when the worker stopped; due again"
    ]


def test_one_run_delivers_more_than_one_batch(httpserver: HTTPServer, forwarding: Make) -> None:
    answer(httpserver, 204)
    f = forwarding(hooks(httpserver), ENV)
    for i in range(25):  # BATCH is 20 per target and round
        f.deploy(version=f"1.{i}")
    assert f.run() == 25
    assert {r["status"] for r in f.deliveries()} == {"delivered"}


def test_a_gone_endpoint_parks_its_other_rows_saying_why(
    httpserver: HTTPServer, forwarding: Make, caplog: pytest.LogCaptureFixture
) -> None:
    f = forwarding(hooks(httpserver), ENV)
    answer(httpserver, 410, "hooks", "bye")
    for i in range(3):
        f.deploy(version=f"1.{i}")
    assert f.run() == 1
    rows = by_version(f)
    reason = "webhook: HTTP 410 Gone: endpoint disabled: bye"
    assert (rows["1.0"]["status"], rows["1.0"]["last_status"], rows["1.0"]["last_error"]) == (
        "disabled",
        410,
        reason,
    )
    for version in ("1.1", "1.2"):
        assert (rows[version]["status"], rows[version]["attempts"]) == ("disabled", 0)
        assert rows[version]["last_error"] == f"target disabled: {reason}"
    assert len(httpserver.log) == 1
    assert messages(caplog, logging.ERROR) == [
        f"forwarding target 'hooks' is gone and now disabled: {reason}"
    ]
    # The status page tells a signed-in operator why the target is off.
    token = f.auth["Authorization"].split()[1]
    assert f.client.post("/ui/sign-in", data={"token": token}).status_code == 303
    assert f'<span class="pill c-red" title="{reason}">disabled</span>' in f.client.get("/").text


def test_only_the_first_run_takes_back_in_flight_rows(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    """At start the worker owns no lease, so rows left delivering are due again; after that,
    a row another target loop holds must stay with it (taking it back would send it twice)."""
    answer(httpserver, 204)
    f = forwarding(hooks(httpserver), ENV)
    f.deploy(version="1")
    assert f.run() == 1
    held = f.deploy(version="2")
    (claimed,) = outbox.claim(f.db, ["hooks"], now=time.time(), lease_seconds=600, limit=10)
    assert claimed.event_id == held
    assert f.run() == 0
    assert by_version(f)["2"]["status"] == "delivering"
    assert len(httpserver.log) == 1


def test_close_waits_for_the_deliveries_under_way(httpserver: HTTPServer, forwarding: Make) -> None:
    """Stopping the worker (close) lets a delivery being sent finish and be recorded, rather
    than leaving it leased until the lease runs out."""

    def slow(request: Any) -> Any:
        time.sleep(0.3)
        return Response("", status=204)

    httpserver.expect_request("/hooks", method="POST").respond_with_handler(slow)
    f = forwarding(hooks(httpserver), ENV)
    f.deploy()
    f.deliverer.dispatch(f.db)
    f.deliverer.close()
    assert f.only()["status"] == "delivered"


# --- the outbox's own contract ----------------------------------------------------------------


def test_outbox_rows_only_inside_the_events_transaction(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    f = forwarding(hooks(httpserver), ENV)
    with pytest.raises(
        RuntimeError, match=r"^outbox\.enqueue must run inside the event's write transaction$"
    ):
        outbox.enqueue(f.db, "deployment", "e-1", "checkout", ["hooks"], time.time())
    with pytest.raises(ValueError, match="unknown outcome 'lost'"):
        outbox.finish(f.db, [outbox.Result("x", "hooks", "lost")], time.time())
    assert f.deliveries() == []


def test_retry_makes_a_delivery_due_at_the_time_given_and_says_what_it_was(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    answer(httpserver, 500)
    f = forwarding(hooks(httpserver), ENV, forward_retry_base_seconds=600)
    f.deploy()
    f.run()
    row = f.only()
    assert outbox.retry(f.db, row["id"], now=1_800_000_000.0) == "pending"
    assert f.only()["next_attempt_at"] == "2027-01-15T08:00:00.000Z"
    env = {**ENV, "RELEASEBITS_CONFIG": f.settings.config_file or ""}
    out = CliRunner().invoke(
        main, ["deliveries", "retry", row["id"], "--db", f.settings.db], env=env
    )
    assert out.exit_code == 0, out.output
    assert out.stdout.strip() == f"delivery {row['id']} (pending) is due again"
