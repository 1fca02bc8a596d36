"""The outbox: rows written in the event's transaction, filters, leases, backoff, giving up, and
its visibility (API, CLI, metrics)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer

from exporter.cli import main
from exporter.config import load_settings
from exporter.errors import ConfigError
from exporter.settings import Settings
from exporter.worker import Worker
from storage import events, outbox, tokens
from tests.exporter.forwarding.conftest import Forwarding

Make = Callable[..., Forwarding]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = {
    "WEBHOOK_SECRET": SECRET,
    "GRAFANA_TOKEN": "glsa_token_0123456789",
    "PASSWORD": "my-super-secret-password-123",  # not a Standard Webhooks secret
}


def hooks(httpserver: HTTPServer, name: str = "hooks", extra: str = "") -> str:
    return (
        f'[[forward.webhook]]\nname = "{name}"\nurl = "{httpserver.url_for("/" + name)}"\n'
        f'secret_env = "WEBHOOK_SECRET"\n{extra}\n'
    )


def answer(httpserver: HTTPServer, status: int, name: str = "hooks", body: str = "") -> None:
    """The webhook target `name` (see hooks) answers every POST with this status and body."""
    httpserver.expect_request("/" + name, method="POST").respond_with_data(body, status=status)


def samples(f: Forwarding) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = f.client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name.startswith("releasebits_forward")
    }


def test_rows_are_written_in_the_events_transaction(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    f = forwarding(hooks(httpserver), ENV)

    # A router that fails after the event row was inserted: nothing of the event remains.
    def broken(kind: str, component: str | None, event: dict[str, Any]) -> list[str]:
        raise RuntimeError("boom")

    event = {
        "version": "1.0",
        "stage": "production",
        "result_class": "success",
        "finished_at": datetime.now(UTC),
    }
    with pytest.raises(RuntimeError):
        events.record_event(
            f.db,
            "deployment",
            "checkout",
            event,
            event_id="e-1",
            body={"id": "e-1"},
            limits=events.Limits(100, 100),
            forward=broken,
        )
    assert f.db.execute("SELECT count(*) FROM deployments").fetchone()[0] == 0
    assert f.deliveries() == []
    # An Idempotency-Key replay is no second event, so no second delivery.
    for _ in range(2):
        resp = f.client.post(
            "/components/checkout/deployments",
            json={"version": "1.0"},
            headers={**f.auth, "Idempotency-Key": "run-1"},
        )
        assert resp.status_code == 201
    assert len(f.deliveries()) == 1


def test_filters_choose_the_targets(httpserver: HTTPServer, forwarding: Make) -> None:
    f = forwarding(
        hooks(httpserver, "prod-only", 'stages = ["production"]\nevents = ["deployment"]')
        + hooks(httpserver, "failures", 'results = ["failure", "timed_out"]')
        + hooks(httpserver, "checkout", 'components = ["checkout"]')
        + f'[[forward.grafana]]\nurl = "{httpserver.url_for("/g")}"\ntoken_env = "GRAFANA_TOKEN"\n',
        ENV,
    )
    f.deploy("checkout", stage="production")
    f.deploy("billing", stage="staging", result="timed_out")
    f.build("billing", result="failed")
    assert f.client.post("/releases", json={"name": "r1"}, headers=f.auth).status_code == 201
    got = sorted(
        (r["event"]["kind"], r["event"]["component"] or "", r["target"]) for r in f.deliveries()
    )
    assert got == [
        ("build", "billing", "failures"),
        ("build", "billing", "grafana"),
        ("deployment", "billing", "failures"),
        ("deployment", "billing", "grafana"),
        ("deployment", "checkout", "checkout"),
        ("deployment", "checkout", "grafana"),
        ("deployment", "checkout", "prod-only"),
        ("release", "", "checkout"),  # releases have no component: component filters pass
        ("release", "", "failures"),
    ]


def test_expired_lease_makes_a_delivery_due_again(httpserver: HTTPServer, forwarding: Make) -> None:
    f = forwarding(hooks(httpserver), ENV)
    f.deploy()
    now = time.time()
    first = outbox.claim(f.db, ["hooks"], now=now, lease_seconds=60, limit=10)
    assert len(first) == 1
    assert outbox.claim(f.db, ["hooks"], now=now + 59, lease_seconds=60, limit=10) == []
    # The worker that held it died: once the lease runs out, the row is claimed again.
    again = outbox.claim(f.db, ["hooks"], now=now + 61, lease_seconds=60, limit=10)
    assert [d.id for d in again] == [first[0].id]
    # And a restarted worker takes back everything in flight at once.
    assert outbox.release_orphans(f.db) == 1
    assert f.only()["status"] == "pending"


def test_backoff_doubles_then_gives_up(httpserver: HTTPServer, forwarding: Make) -> None:
    f = forwarding(
        hooks(httpserver),
        ENV,
        forward_retry_base_seconds=2,
        forward_retry_max_seconds=5,
        forward_give_up_hours=12 / 3600,  # 12 s
    )
    answer(httpserver, 503, "hooks", "down")
    f.deploy()
    created = time.time()
    waits = []
    for _ in range(10):
        f.run()
        row = f.only()
        if row["status"] != "pending":
            break
        due = f.next_attempt_ts(row["id"])
        waits.append(round(due - f.clock(), 1))
        f.clock.advance(due - f.clock() + 0.01)
    # rand() = 1: the full 2, 4, then capped 5 s; the last wait ends exactly at the horizon.
    assert waits[:3] == [2.0, 4.0, 5.0]
    assert f.next_attempt_ts(row["id"]) == pytest.approx(created + 12, abs=1)
    assert row["status"] == "failed"
    assert row["last_error"].startswith("gave up after")
    assert row["last_status"] == 503
    assert (
        samples(f)[
            ("releasebits_forward_deliveries_total", (("outcome", "failed"), ("target", "hooks")))
        ]
        == 1
    )


def test_jitter_spreads_retries() -> None:
    from exporter.forwarding.deliverer import Deliverer

    d = Deliverer(Settings(forward_retry_base_seconds=10), rand=lambda: 0.0)
    assert d.backoff(1) == 5.0 and d.backoff(3) == 20.0  # half of 10, half of 40
    d.close()


def test_a_failing_target_does_not_hold_up_another(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    f = forwarding(hooks(httpserver, "down") + hooks(httpserver, "up"), ENV)
    answer(httpserver, 503, "down")
    answer(httpserver, 204, "up")
    for i in range(5):
        f.deploy(version=f"1.{i}")
    f.run()
    by_target: dict[str, list[str]] = {}
    for r in f.deliveries():
        by_target.setdefault(r["target"], []).append(r["status"])
    assert by_target["up"] == ["delivered"] * 5
    assert sorted(by_target["down"]) == ["pending"] * 5
    # One probe per backoff, not one request per waiting event.
    assert sum(1 for req, _ in httpserver.log if req.path == "/down") == 1
    s = samples(f)
    assert s[("releasebits_forward_pending", (("target", "down"),))] == 5
    assert s[("releasebits_forward_pending", (("target", "up"),))] == 0
    assert s[("releasebits_forward_oldest_pending_age_seconds", (("target", "down"),))] >= 0
    assert s[("releasebits_forward_oldest_pending_age_seconds", (("target", "up"),))] == 0
    assert (
        s[("releasebits_forward_deliveries_total", (("outcome", "delivered"), ("target", "up")))]
        == 5
    )
    assert (
        s[("releasebits_forward_deliveries_total", (("outcome", "retried"), ("target", "down")))]
        == 1
    )


def test_metrics_export_only_configured_targets(httpserver: HTTPServer, forwarding: Make) -> None:
    f = forwarding(hooks(httpserver), ENV)
    f.deploy()
    # A row of a target that was configured once and since removed.
    with f.db.transaction():
        f.db.execute(
            "INSERT INTO deliveries (id, event_kind, event_id, target, status, next_attempt_at, "
            "retry_since, created_at, updated_at) "
            "VALUES ('x', 'build', 'b', 'old', 'pending', 0, 0, 0, 0)"
        )
    s = samples(f)
    assert {dict(labels)["target"] for _, labels in s} == {"hooks"}
    assert s[("releasebits_forward_pending", (("target", "hooks"),))] == 1


def test_deliveries_api(httpserver: HTTPServer, forwarding: Make) -> None:
    f = forwarding(hooks(httpserver, "a") + hooks(httpserver, "b"), ENV)
    answer(httpserver, 400, "a")
    for i in range(3):
        f.deploy(version=f"1.{i}")
    f.run()  # a: 400, retried (Standard Webhooks retry every non-2xx); b: refused, pending
    resp = f.client.get("/deliveries?limit=4", headers=f.auth)
    assert resp.status_code == 200 and len(resp.json) == 4
    link = resp.headers["Link"]
    nxt = link[link.index("?") : link.index(">")]
    rest = f.client.get("/deliveries" + nxt, headers=f.auth).json
    assert len(rest) == 2
    assert {r["id"] for r in resp.json} | {r["id"] for r in rest} == {
        r["id"] for r in f.deliveries()
    }
    only_b = f.client.get("/deliveries?target=b&status=pending", headers=f.auth).json
    assert len(only_b) == 3 and all(r["target"] == "b" for r in only_b)
    assert only_b[0]["event"]["component"] == "checkout"
    bad = f.client.get("/deliveries?status=lost", headers=f.auth)
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_parameter"
    assert f.client.get("/deliveries").status_code == 401
    assert f.client.get("/deliveries?cursor=%%%", headers=f.auth).status_code == 400

    reader = tokens.create_token(f.db, "dash", ("read",))
    rid = only_b[0]["id"]
    denied = f.client.post(f"/deliveries/{rid}/retry", headers={"Authorization": reader})
    assert denied.status_code == 403
    missing = f.client.post("/deliveries/nope/retry", headers=f.auth)
    assert missing.status_code == 404
    outbox.claim(f.db, ["b"], now=time.time() + 10, lease_seconds=60, limit=1)
    in_flight = f.client.post(
        f"/deliveries/{f.deliveries(status='delivering')[0]['id']}/retry", headers=f.auth
    )
    assert in_flight.status_code == 409


def test_cli_lists_and_retries(httpserver: HTTPServer, forwarding: Make, tmp_path: Path) -> None:
    f = forwarding(hooks(httpserver), ENV)
    answer(httpserver, 500)
    f.deploy()
    f.run()
    row = f.only()
    runner = CliRunner()
    env = {**ENV, "RELEASEBITS_CONFIG": f.settings.config_file or ""}
    listed = runner.invoke(
        main, ["deliveries", "list", "--status", "pending", "--db", f.settings.db], env=env
    )
    assert listed.exit_code == 0, listed.output
    assert row["id"] in listed.output and "webhook: HTTP 500" in listed.output
    none = runner.invoke(
        main, ["deliveries", "list", "--target", "x", "--db", f.settings.db], env=env
    )
    assert none.stdout.strip() == "no deliveries"  # stderr names the database
    retried = runner.invoke(
        main, ["deliveries", "retry", row["id"], "--db", f.settings.db], env=env
    )
    assert retried.exit_code == 0, retried.output
    assert f.next_attempt_ts(row["id"]) <= time.time()
    unknown = runner.invoke(main, ["deliveries", "retry", "nope", "--db", f.settings.db], env=env)
    assert unknown.exit_code == 1 and "no delivery 'nope'" in unknown.output
    for args in (["deliveries"], ["deliveries", "list"], ["deliveries", "retry"]):
        assert "Usage:" in runner.invoke(main, [*args, "--help"]).output


# --- configuration ----------------------------------------------------------------------------


def load(tmp_path: Path, toml: str, environ: dict[str, str] | None = None) -> Settings:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    return load_settings(cfg, ENV if environ is None else environ)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[[forward.webhook]]\nurl = "http://x/h"\nsecret_env = "NOPE"\n',
            "forward.webhook[0].secret_env: environment variable NOPE is not set",
        ),
        (
            '[[forward.webhook]]\nsecret_env = "WEBHOOK_SECRET"\n',
            "forward.webhook[0].url: required",
        ),
        (
            '[[forward.webhook]]\nurl = "ftp://x"\nsecret_env = "WEBHOOK_SECRET"\n',
            "forward.webhook[0].url: expected an http(s) URL",
        ),
        (
            '[[forward.webhook]]\nurl = "http://x/h"\nsecret_env = "GRAFANA_TOKEN"\n',
            "forward.webhook[0].secret_env: the value of GRAFANA_TOKEN",
        ),
        (
            '[[forward.webhook]]\nurl = "http://x/a"\nsecret_env = "WEBHOOK_SECRET"\n'
            '[[forward.grafana]]\nname = "webhook"\nurl = "http://g"\ntoken_env = "GRAFANA_TOKEN"\n',
            "forward.webhook[0].name: target 'webhook' is defined twice",
        ),
        ("[[forward.slack]]\nurl = 'http://x'\n", "forward.slack: unknown setting"),
        (
            '[[forward.grafana]]\nurl = "http://g"\ntoken_env = "GRAFANA_TOKEN"\n'
            'events = ["deployment", "release"]\n',
            "forward.grafana[0].events: a grafana target cannot forward 'release' events",
        ),
        (
            '[[forward.webhook]]\nurl = "http://x/h"\nsecret_env = "PASSWORD"\n',
            "forward.webhook[0].secret_env: the value of PASSWORD",
        ),
        (
            '[[forward.grafana]]\nurl = "http://g"\ntoken_env = "GRAFANA_TOKEN"\ntoken = "x"\n',
            "forward.grafana[0].token: unknown setting",
        ),
        (
            '[[forward.grafana]]\nurl = "http://g"\ntoken_env = "GRAFANA_TOKEN"\n'
            'events = ["deploy"]\n',
            "forward.grafana[0].events: unknown event type 'deploy'",
        ),
        (
            "[components.checkout.forward.sentry]\nproject = 'x'\n",
            "components.checkout.forward.sentry: no [[forward.*]] target named 'sentry'",
        ),
        (
            '[[forward.sentry]]\norganization = "acme"\ntoken_env = "GRAFANA_TOKEN"\n'
            "[components.checkout.forward.sentry]\napi_key_env = 'x'\n",
            "components.checkout.forward.sentry.api_key_env: unknown setting",
        ),
        (
            '[[forward.sentry]]\norganization = "acme"\ntoken_env = "GRAFANA_TOKEN"\n'
            'release = "checkout"\n',
            "forward.sentry[0].release: the template must contain {version}",
        ),
        (
            '[[forward.newrelic]]\napi = "graphql"\napi_key_env = "GRAFANA_TOKEN"\n',
            "forward.newrelic[0].api: expected nerdgraph or rest",
        ),
        (
            '[[forward.grafana]]\nurl = "http://g"\ntoken_env = "GRAFANA_TOKEN"\ntimeout = "1h"\n',
            "forward.grafana[0].timeout: at most 300s",
        ),
    ],
)
def test_config_errors_name_the_setting(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, toml)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)
    assert SECRET not in str(info.value)


def test_config_defaults_and_mappings(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[[sentry]]\norganization = "acme"\ntoken_env = "GRAFANA_TOKEN"\n\n'
        '[[forward.sentry]]\norganization = "acme"\ntoken_env = "GRAFANA_TOKEN"\n\n'
        '[[forward.newrelic]]\nregion = "eu"\napi_key_env = "GRAFANA_TOKEN"\n\n'
        '[components.checkout]\nenvironments = { production = "prod" }\n'
        '[components.checkout.sources.sentry]\nproject = "42"\nrelease = "co@{version}"\n'
        '[components.checkout.forward.sentry]\nproject = "checkout-web"\n',
    )
    sentry, newrelic = settings.forward_targets
    assert (sentry.name, newrelic.name) == ("sentry", "newrelic")
    assert newrelic.url == "https://api.eu.newrelic.com"
    # The release name defaults to the poller's template, so health and deploys join.
    assert sentry.release_name("checkout", "1.0") == "co@1.0"
    assert sentry.environment("checkout", "production") == "prod"
    assert sentry.filters.results == ("success",)
    assert "GRAFANA_TOKEN" not in repr(settings) and ENV["GRAFANA_TOKEN"] not in repr(settings)


def test_housekeeping_prunes_old_delivered_rows_only(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    httpserver.expect_request("/hooks").respond_with_data("ok")
    f = forwarding(hooks(httpserver), ENV, forward_keep_days=30)
    old, recent, failed = f.deploy(version="1"), f.deploy(version="2"), f.deploy(version="3")
    f.run()
    rows = {r["event"]["id"]: r for r in f.deliveries()}
    assert {r["status"] for r in rows.values()} == {"delivered"}
    day = 86400
    with f.db.transaction():
        f.db.execute(
            "UPDATE deliveries SET delivered_at = ? WHERE event_id = ?",
            [time.time() - 31 * day, old],
        )
        f.db.execute(
            "UPDATE deliveries SET status = 'failed', delivered_at = NULL, updated_at = ? "
            "WHERE event_id = ?",
            [time.time() - 90 * day, failed],
        )
    Worker(f.settings).housekeeping()
    assert sorted(r["event"]["id"] for r in f.deliveries()) == sorted([recent, failed])


def test_a_hanging_target_delays_only_itself(
    httpserver: HTTPServer, forwarding: Make, tmp_path: Path
) -> None:
    """Issue 17, item 6: a target that accepts TCP and never answers held every other target's
    deliveries for its whole timeout, each worker round. Each target now has its own loop: the
    worker's delivery job returns at once and the good target delivers while the other hangs."""
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)  # accepts connections (the kernel does), never reads nor answers
    port = hang.getsockname()[1]
    answer(httpserver, 200, "good")
    toml = hooks(httpserver, "good") + (
        f'[[forward.webhook]]\nname = "stuck"\nurl = "http://127.0.0.1:{port}/hook"\n'
        'secret_env = "WEBHOOK_SECRET"\ntimeout = "8s"\n'
    )
    f = forwarding(toml, ENV)
    f.deploy()
    worker = Worker(f.settings)
    worker.heartbeat()  # the lease first: only the worker holding it delivers
    assert worker.deliverer is not None
    try:
        started = time.monotonic()
        worker.deliver()
        assert time.monotonic() - started < 1.0  # the job does not wait for any target
        status: dict[str, str] = {}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            status = {r["target"]: r["status"] for r in f.deliveries()}
            if status.get("good") == "delivered":
                break
            time.sleep(0.05)
        assert status == {"good": "delivered", "stuck": "delivering"}
        assert time.monotonic() - started < 3.0  # well inside the stuck target's 8 s timeout
    finally:
        hang.close()
        worker.deliverer.close()


# --- what a delivery row says, and what the worker does with it -------------------------------


def iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_forwarded_event_carries_the_time_it_was_stored(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    answer(httpserver, 204)
    f = forwarding(hooks(httpserver), ENV)
    before = time.time()
    f.deploy(finished_at="2024-01-01T00:00:00Z")  # an old deployment, stored now
    after = time.time()
    created = f.only()["created_at"]
    assert before - 0.001 <= iso_seconds(created) <= after
    f.run()
    ((request, _),) = httpserver.log
    assert request.json["timestamp"] == created
    assert request.json["data"]["finished_at"] == "2024-01-01T00:00:00.000Z"


def test_a_delivery_row_tells_when_it_was_created_updated_and_is_due(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    answer(httpserver, 503)
    f = forwarding(hooks(httpserver), ENV, forward_retry_base_seconds=30)
    f.deploy()
    fresh = f.only()
    assert fresh["status"] == "pending" and fresh["attempts"] == 0
    assert fresh["next_attempt_at"] == fresh["created_at"] == fresh["updated_at"]
    assert fresh["delivered_at"] is None

    f.clock.advance(100)
    f.run()
    retried = f.only()
    tried_at = f.clock()
    assert retried["attempts"] == 1 and retried["last_status"] == 503
    assert retried["created_at"] == fresh["created_at"]
    assert iso_seconds(retried["updated_at"]) == pytest.approx(tried_at, abs=1)
    # rand() = 1: the full base delay after the first failure.
    assert iso_seconds(retried["next_attempt_at"]) == pytest.approx(tried_at + 30, abs=1)

    httpserver.clear_all_handlers()
    answer(httpserver, 204)
    f.clock.advance(31)
    f.run()
    done = f.only()
    assert done["status"] == "delivered" and done["attempts"] == 2
    assert done["next_attempt_at"] is None  # only a pending row is due
    assert iso_seconds(done["delivered_at"]) == pytest.approx(f.clock(), abs=1)
    assert done["delivered_at"] == done["updated_at"]


def test_an_in_flight_delivery_is_not_retried(httpserver: HTTPServer, forwarding: Make) -> None:
    f = forwarding(hooks(httpserver), ENV)
    f.deploy()
    now = time.time()
    (claimed,) = outbox.claim(f.db, ["hooks"], now=now, lease_seconds=600, limit=10)
    resp = f.client.post(f"/deliveries/{claimed.id}/retry", headers=f.auth)
    assert resp.status_code == 409
    assert resp.json["error"]["code"] == "delivery_in_flight"
    # Still leased to the worker that holds it: a second claim would deliver it twice.
    assert f.only()["status"] == "delivering"
    assert outbox.claim(f.db, ["hooks"], now=now + 1, lease_seconds=600, limit=10) == []


def test_a_disabled_target_listed_first_does_not_starve_the_others(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    f = forwarding(hooks(httpserver, "gone") + hooks(httpserver, "up"), ENV)
    answer(httpserver, 410, "gone", "bye")
    answer(httpserver, 204, "up")
    f.deploy(version="1")
    f.run()
    assert {r["target"]: r["status"] for r in f.deliveries()} == {
        "gone": "disabled",
        "up": "delivered",
    }
    f.deploy(version="2")
    f.run()
    statuses = sorted((r["target"], r["status"]) for r in f.deliveries())
    assert statuses == [
        ("gone", "disabled"),
        ("gone", "pending"),  # kept for when an operator re-enables the target
        ("up", "delivered"),
        ("up", "delivered"),
    ]
    assert sum(1 for req, _ in httpserver.log if req.path == "/gone") == 1
    # claim() itself, asked for both targets at once, skips the disabled one and goes on.
    f.deploy(version="3")
    claimed = outbox.claim(f.db, ["gone", "up"], now=time.time(), lease_seconds=60, limit=10)
    assert [(d.target, d.event_id) for d in claimed] == [("up", claimed[0].event_id)]
    with f.db.transaction():
        ids = outbox.enqueue(f.db, "deployment", "e-9", "checkout", ["up", "gone"], time.time())
    queued = {r["id"]: r["target"] for r in f.deliveries() if r["event"]["id"] == "e-9"}
    assert {ids[0]: "up", ids[1]: "gone"} == queued  # enqueue returns the new deliveries' ids


def test_oldest_pending_age_is_the_age_of_the_oldest_waiting_delivery(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    f = forwarding(hooks(httpserver), ENV)
    old, _ = f.deploy(version="1"), f.deploy(version="2")
    with f.db.transaction():
        f.db.execute(
            "UPDATE deliveries SET created_at = ? WHERE event_id = ?", [time.time() - 3600, old]
        )
    age = samples(f)[("releasebits_forward_oldest_pending_age_seconds", (("target", "hooks"),))]
    assert age == pytest.approx(3600, abs=5)


def test_pruning_removes_every_old_delivered_row_in_batches(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    answer(httpserver, 204)
    f = forwarding(hooks(httpserver), ENV)
    ids = [f.deploy(version=f"1.{i}") for i in range(5)]
    f.run()
    with f.db.transaction():
        f.db.execute("UPDATE deliveries SET delivered_at = ?", [time.time() - 86400])
    kept = f.deploy(version="2.0")
    f.run()
    assert len(f.deliveries(status="delivered")) == 6
    assert outbox.prune_delivered(f.db, time.time() - 3600, batch=2) == 5  # 2 + 2 + 1
    assert [r["event"]["id"] for r in f.deliveries()] == [kept]
    assert not set(ids) & {r["event"]["id"] for r in f.deliveries()}
    assert outbox.prune_delivered(f.db, time.time() - 3600, batch=2) == 0


def test_the_last_deliveries_page_has_no_next_link(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    f = forwarding(hooks(httpserver), ENV)
    for i in range(4):
        f.deploy(version=f"1.{i}")
    first = f.client.get("/deliveries?limit=2", headers=f.auth)
    link = first.headers["Link"]
    second = f.client.get("/deliveries" + link[link.index("?") : link.index(">")], headers=f.auth)
    assert len(second.json) == 2
    assert "Link" not in second.headers
    newest_first = [r["event"]["id"] for r in first.json + second.json]
    assert newest_first == [r["event"]["id"] for r in f.deliveries()]
