"""Each target against a local server answering as upstream-apis.md documents: the exact request,
and what each documented status does to the delivery."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from werkzeug import Request, Response

from exporter.config import load_settings
from exporter.forwarding.targets.base import Event
from tests.exporter.forwarding.conftest import Forwarding

GRAFANA_TOKEN = "glsa_fakeGrafanaServiceAccountToken_0123"
SENTRY_TOKEN = "sntrys_fake-sentry-release-token-0123456789"
BUGSNAG_KEY = "1234abcd1234abcd1234abcd1234abcd"
NR_KEY = "NRAK-FAKEFAKEFAKEFAKEFAKEFAKE12"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # Standard Webhooks' documented example
SHA = "6ba09a7c53235ee8a8fa5ee4c1ca8100a5f2c7a5"
DEPLOY = {
    "version": "1.2.0",
    "stage": "production",
    "host": "web-1",
    "started_at": "2024-05-01T12:00:00Z",
    "finished_at": "2024-05-01T12:04:10Z",
    "commit_sha": SHA,
    "branch": "main",
    "meta_data": {"deployId": "812", "attempt": 2},
}
Make = Callable[..., Forwarding]


def expect_one(
    f: Forwarding, httpserver: HTTPServer, status: str, attempts: int = 1
) -> dict[str, Any]:
    f.run()
    httpserver.check_assertions()
    row = f.only()
    assert (row["status"], row["attempts"]) == (status, attempts), row
    return row


# --- Grafana ----------------------------------------------------------------------------------


def grafana(httpserver: HTTPServer, forwarding: Make, extra: str = "") -> Forwarding:
    return forwarding(
        f'[[forward.grafana]]\nurl = "{httpserver.url_for("/grafana/")}"\n'
        f'token_env = "GRAFANA_TOKEN"\n{extra}',
        {"GRAFANA_TOKEN": GRAFANA_TOKEN},
    )


def test_grafana_annotation_exact_request(httpserver: HTTPServer, forwarding: Make) -> None:
    f = grafana(
        httpserver, forwarding, 'dashboard_uid = "jcIIG-07z"\norg_id = 3\ntags = ["team:pay"]\n'
    )
    httpserver.expect_oneshot_request(
        "/grafana/api/annotations",
        method="POST",
        headers={
            "Authorization": f"Bearer {GRAFANA_TOKEN}",
            "Content-Type": "application/json",
            "X-Grafana-Org-Id": "3",
        },
        json={
            "time": 1714564800000,
            "timeEnd": 1714565050000,
            "tags": [
                "deploy",
                "component:checkout",
                "stage:production",
                "version:1.2.0",
                "result:success",
                "team:pay",
            ],
            "text": "Deployed checkout 1.2.0 to production (6ba09a7)",
            "dashboardUID": "jcIIG-07z",
        },
    ).respond_with_json({"message": "Annotation added", "id": 1})
    f.deploy(**DEPLOY)
    row = expect_one(f, httpserver, "delivered")
    assert row["last_status"] == 200 and row["delivered_at"]


def test_grafana_build_is_an_org_annotation(httpserver: HTTPServer, forwarding: Make) -> None:
    f = grafana(httpserver, forwarding)
    httpserver.expect_oneshot_request(
        "/grafana/api/annotations",
        method="POST",
        json={
            "time": 1714565050000,
            "timeEnd": 1714565050000,
            "tags": ["build", "component:checkout", "version:2.0", "result:failure"],
            "text": "Build failure: checkout 2.0",
        },
    ).respond_with_json({"message": "Annotation added", "id": 2})
    f.build(version="2.0", result="failed", finished_at="2024-05-01T12:04:10Z")
    expect_one(f, httpserver, "delivered")


def test_grafana_400_is_permanent(httpserver: HTTPServer, forwarding: Make) -> None:
    f = grafana(httpserver, forwarding)
    httpserver.expect_oneshot_request("/grafana/api/annotations").respond_with_json(
        {"message": "Failed to save annotation"}, status=400
    )
    f.deploy(**DEPLOY)
    row = expect_one(f, httpserver, "failed")
    assert row["last_status"] == 400
    assert "Failed to save annotation" in row["last_error"]
    f.clock.advance(3600)
    assert f.run() == 0  # never tried again


@pytest.mark.parametrize("status", [401, 403, 500])
def test_grafana_auth_and_server_errors_are_retried(
    httpserver: HTTPServer, forwarding: Make, status: int
) -> None:
    f = grafana(httpserver, forwarding)
    httpserver.expect_oneshot_request("/grafana/api/annotations").respond_with_json(
        {"message": "nope"}, status=status
    )
    f.deploy(**DEPLOY)
    row = expect_one(f, httpserver, "pending")
    assert row["last_status"] == status and GRAFANA_TOKEN not in row["last_error"]
    # Retried after the backoff, and delivered once the target is back.
    assert f.run() == 0
    httpserver.expect_oneshot_request("/grafana/api/annotations").respond_with_json(
        {"message": "Annotation added", "id": 7}
    )
    f.clock.advance(f.settings.forward_retry_base_seconds + 0.01)
    expect_one(f, httpserver, "delivered", attempts=2)


# --- Sentry -----------------------------------------------------------------------------------


def sentry(httpserver: HTTPServer, forwarding: Make) -> Forwarding:
    return forwarding(
        f'[[forward.sentry]]\nbase_url = "{httpserver.url_for("/")}"\norganization = "acme"\n'
        'token_env = "SENTRY_RELEASE_TOKEN"\n\n'
        '[components.checkout]\nenvironments = { production = "prod" }\n\n'
        '[components.checkout.forward.sentry]\nproject = "backend"\n'
        'release = "checkout@{version}"\n',
        {"SENTRY_RELEASE_TOKEN": SENTRY_TOKEN},
    )


SENTRY_HEADERS = {"Authorization": f"Bearer {SENTRY_TOKEN}", "Content-Type": "application/json"}
RELEASES = "/api/0/organizations/acme/releases/"
DEPLOYS = "/api/0/organizations/acme/releases/checkout@1.2.0/deploys/"  # as the server decodes it


@pytest.mark.parametrize("created", [201, 208])
def test_sentry_release_then_deploy(httpserver: HTTPServer, forwarding: Make, created: int) -> None:
    f = sentry(httpserver, forwarding)
    httpserver.expect_ordered_request(
        RELEASES,
        method="POST",
        headers=SENTRY_HEADERS,
        json={"version": "checkout@1.2.0", "projects": ["backend"], "ref": SHA},
    ).respond_with_json({"version": "checkout@1.2.0"}, status=created)
    event_id = f.deploy(**DEPLOY)
    httpserver.expect_ordered_request(
        DEPLOYS,
        method="POST",
        headers=SENTRY_HEADERS,
        json={
            "environment": "prod",
            "name": f"releasebits {event_id}",
            "dateFinished": "2024-05-01T12:04:10.000Z",
            "projects": ["backend"],
            "dateStarted": "2024-05-01T12:00:00.000Z",
        },
    ).respond_with_json({"id": "1234567", "environment": "prod"}, status=201)
    expect_one(f, httpserver, "delivered")
    # The version is percent-encoded in the path, as the reference asks.
    raw = httpserver.log[1][0].environ["REQUEST_URI"]
    assert raw == "/api/0/organizations/acme/releases/checkout%401.2.0/deploys/"


def test_sentry_skips_components_without_a_project_and_failed_deploys(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    f = sentry(httpserver, forwarding)
    f.deploy("billing", version="1.0")  # no [components.billing.forward.sentry]
    f.deploy(**{**DEPLOY, "result": "failed"})  # only successful deployments by default
    f.build(version="1.0")  # builds are not deploys
    assert f.deliveries() == []


@pytest.mark.parametrize(
    ("status", "body"),
    [(400, {"projects": ["Invalid project slugs"]}), (409, {"detail": "Release conflict"})],
)
def test_sentry_400_and_409_are_permanent(
    httpserver: HTTPServer, forwarding: Make, status: int, body: dict[str, Any]
) -> None:
    f = sentry(httpserver, forwarding)
    httpserver.expect_ordered_request(RELEASES, method="POST").respond_with_json(
        body, status=status
    )
    f.deploy(**DEPLOY)
    row = expect_one(f, httpserver, "failed")
    assert f"create release: HTTP {status}" in row["last_error"]
    assert str(next(iter(body.values()))).strip("[]'") in row["last_error"]


def test_sentry_self_hosted_api_base_is_not_doubled(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    # The reference writes self-hosted hosts as https://<host>/api/0/; the pollers accept that.
    f = forwarding(
        f'[[forward.sentry]]\nbase_url = "{httpserver.url_for("/api/0/")}"\n'
        'organization = "acme"\ntoken_env = "SENTRY_RELEASE_TOKEN"\nproject = "backend"\n',
        {"SENTRY_RELEASE_TOKEN": SENTRY_TOKEN},
    )
    httpserver.expect_ordered_request(RELEASES, method="POST").respond_with_json({}, status=201)
    httpserver.expect_ordered_request(
        "/api/0/organizations/acme/releases/1.2.0/deploys/", method="POST"
    ).respond_with_json({"id": "1"}, status=201)
    f.deploy(**DEPLOY)
    expect_one(f, httpserver, "delivered")


def test_sentry_deploy_404_is_retried(httpserver: HTTPServer, forwarding: Make) -> None:
    g = sentry(httpserver, forwarding)
    httpserver.expect_ordered_request(RELEASES, method="POST").respond_with_json({}, status=208)
    httpserver.expect_ordered_request(DEPLOYS, method="POST").respond_with_json(
        {"detail": "The requested resource does not exist"}, status=404
    )
    g.deploy(**DEPLOY)
    g.run()
    pending = [r for r in g.deliveries() if r["status"] == "pending"]
    assert len(pending) == 1 and "create deploy: HTTP 404" in pending[0]["last_error"]


def test_sentry_429_waits_for_the_rate_limit_reset(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    f = sentry(httpserver, forwarding)
    reset = int(time.time()) + 120
    httpserver.expect_oneshot_request(RELEASES, method="POST").respond_with_json(
        {
            "detail": "You are attempting to use this endpoint too frequently. Limit is 40 requests in 1 seconds"
        },
        status=429,
        headers={"X-Sentry-Rate-Limit-Reset": str(reset)},
    )
    f.deploy(**DEPLOY)
    row = expect_one(f, httpserver, "pending")
    assert f.next_attempt_ts(row["id"]) == pytest.approx(reset, abs=2)


# --- Bugsnag ----------------------------------------------------------------------------------


def bugsnag(httpserver: HTTPServer, forwarding: Make) -> Forwarding:
    return forwarding(
        f'[[forward.bugsnag]]\nurl = "{httpserver.url_for("/")}"\n\n'
        '[components.checkout.forward.bugsnag]\napi_key_env = "CHECKOUT_BUGSNAG_KEY"\n'
        'repository = "https://github.com/acme/app"\n'
        'environments = { production = "prod" }\n',
        {"CHECKOUT_BUGSNAG_KEY": BUGSNAG_KEY},
    )


def test_bugsnag_build_exact_request(httpserver: HTTPServer, forwarding: Make) -> None:
    f = bugsnag(httpserver, forwarding)
    seen: list[Request] = []

    def handle(request: Request) -> Response:
        seen.append(request)
        return Response("{}", 200, content_type="application/json")

    httpserver.expect_oneshot_request("/", method="POST").respond_with_handler(handle)
    event_id = f.deploy(**DEPLOY)
    expect_one(f, httpserver, "delivered")
    request = seen[0]
    assert request.headers["Content-Type"] == "application/json"
    assert "Authorization" not in request.headers  # the apiKey goes in the body
    assert json.loads(request.data) == {
        "apiKey": BUGSNAG_KEY,
        "appVersion": "1.2.0",
        "releaseStage": "prod",
        "builderName": "releasebits",
        "sourceControl": {
            "provider": "github",
            "repository": "https://github.com/acme/app",
            "revision": SHA,
        },
        "metadata": {  # strings only
            "deployId": "812",
            "attempt": "2",
            "releasebits_id": event_id,
            "host": "web-1",
            "branch": "main",
        },
    }


def test_bugsnag_400_is_never_retried(httpserver: HTTPServer, forwarding: Make) -> None:
    f = bugsnag(httpserver, forwarding)
    httpserver.expect_oneshot_request("/", method="POST").respond_with_json(
        {"errors": ["apiKey is not a valid API key"]}, status=400
    )
    f.deploy(**DEPLOY)
    row = expect_one(f, httpserver, "failed")
    assert "apiKey is not a valid API key" in row["last_error"]
    assert BUGSNAG_KEY not in json.dumps(row)
    f.clock.advance(86400)
    assert f.run() == 0
    assert len(httpserver.log) == 1


@pytest.mark.parametrize("status", [401, 403, 404, 422])
def test_bugsnag_auth_and_not_found_fail_for_good(
    httpserver: HTTPServer, forwarding: Make, status: int
) -> None:
    """Issue 17, item 14: these were retried for 24 h; Bugsnag's reporter retries only 5xx, 408
    and 429, and a wrong key or project answers the same tomorrow."""
    f = bugsnag(httpserver, forwarding)
    httpserver.expect_oneshot_request("/", method="POST").respond_with_json(
        {"errors": ["unauthorized"]}, status=status
    )
    f.deploy(**DEPLOY)
    row = expect_one(f, httpserver, "failed")
    assert row["last_status"] == status


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_bugsnag_retries_what_the_reporter_retries(
    httpserver: HTTPServer, forwarding: Make, status: int
) -> None:
    f = bugsnag(httpserver, forwarding)
    headers = {"Retry-After": "30"} if status == 429 else {}
    httpserver.expect_oneshot_request("/", method="POST").respond_with_data(
        "busy", status=status, headers=headers
    )
    f.deploy(**DEPLOY)
    before = time.time()
    row = expect_one(f, httpserver, "pending")
    wait = 30 if status == 429 else f.settings.forward_retry_base_seconds
    assert f.next_attempt_ts(row["id"]) == pytest.approx(before + wait, abs=2)


# --- New Relic --------------------------------------------------------------------------------


def newrelic(
    httpserver: HTTPServer,
    forwarding: Make,
    api: str = "nerdgraph",
    path: str = "",
    key: str = NR_KEY,
) -> Forwarding:
    return forwarding(
        f'[[forward.newrelic]]\napi = "{api}"\n'
        f'url = "{httpserver.url_for("/").rstrip("/")}{path}"\n'
        'api_key_env = "NEW_RELIC_API_KEY"\ndeployment_type = "ROLLING"\n\n'
        "[components.checkout.forward.newrelic]\n"
        'entity_guid = "MXxBUE18QVBQTElDQVRJT058MTIz"\napp_id = "9999999"\n',
        {"NEW_RELIC_API_KEY": key},
    )


NR_EVENT_ANSWER = {
    "data": {
        "changeTrackingCreateEvent": {
            "changeTrackingEvent": {
                "changeTrackingId": "8a3a594c-e726-4bc2-8078-26dffec9a3d8",
                "category": "Deployment",
                "type": "Rolling",
            },
            "messages": [],
        }
    }
}


def test_newrelic_nerdgraph_exact_request(httpserver: HTTPServer, forwarding: Make) -> None:
    from exporter.forwarding.targets.newrelic import MUTATION

    f = newrelic(httpserver, forwarding)
    now = time.gmtime(time.time() - 60)
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", now)
    httpserver.expect_oneshot_request(
        "/graphql",
        method="POST",
        headers={"API-Key": NR_KEY, "Content-Type": "application/json"},
        json={
            "query": MUTATION,
            # changeTrackingCreateEvent, category deployment (New Relic's docs: "Track changes
            # using NerdGraph", the simple deployment event mutation plus optional fields).
            "variables": {
                "e": {
                    "categoryAndTypeData": {
                        "kind": {"category": "DEPLOYMENT", "type": "ROLLING"},
                        "categoryFields": {"deployment": {"version": "1.2.0", "commit": SHA}},
                    },
                    "entitySearch": {"query": "id = 'MXxBUE18QVBQTElDQVRJT058MTIz'"},
                    "user": "releasebits",
                    "description": "checkout 1.2.0 deployed to production",
                    "timestamp": _epoch_ms(finished),
                    "groupId": "rel-1.2.0",
                }
            },
        },
    ).respond_with_json(NR_EVENT_ANSWER)
    fields = {k: v for k, v in DEPLOY.items() if k != "started_at"}
    f.deploy(**{**fields, "finished_at": finished, "release": "rel-1.2.0"})
    expect_one(f, httpserver, "delivered")


def _epoch_ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def test_newrelic_errors_on_http_200_fail_the_delivery(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    f = newrelic(httpserver, forwarding)
    httpserver.expect_oneshot_request("/graphql", method="POST").respond_with_json(
        {
            "data": {"changeTrackingCreateEvent": None},
            "errors": [{"message": "Timestamp must be within 24 hours of the current time"}],
        }
    )
    f.deploy(**DEPLOY)  # 2024: far outside the window, so no timestamp is sent
    row = expect_one(f, httpserver, "failed")
    assert row["last_status"] == 200
    assert "Timestamp must be within 24 hours" in row["last_error"]
    sent = json.loads(httpserver.log[0][0].data)
    assert "timestamp" not in sent["variables"]["e"]


def test_newrelic_configured_graphql_url_is_used_as_given(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    """Issue 17, item 13: a url ending in /graphql was posted to .../graphql/graphql."""
    f = newrelic(httpserver, forwarding, path="/graphql")
    httpserver.expect_oneshot_request("/graphql", method="POST").respond_with_json(NR_EVENT_ANSWER)
    f.deploy(**DEPLOY)
    expect_one(f, httpserver, "delivered")


def test_newrelic_legacy_rest_api_key_goes_in_x_api_key(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    """Item 13: legacy REST API keys (no NRAK- prefix) only work as X-Api-Key."""
    legacy = "0123456789abcdef0123456789abcdef01234567"
    f = newrelic(httpserver, forwarding, api="rest", key=legacy)
    httpserver.expect_oneshot_request(
        "/v2/applications/9999999/deployments.json", method="POST", headers={"X-Api-Key": legacy}
    ).respond_with_json({"deployment": {"id": 1}}, status=201)
    f.deploy(**DEPLOY)
    expect_one(f, httpserver, "delivered")
    assert "Api-Key" not in httpserver.log[0][0].headers


def test_newrelic_429_is_retried(httpserver: HTTPServer, forwarding: Make) -> None:
    f = newrelic(httpserver, forwarding)
    httpserver.expect_oneshot_request("/graphql", method="POST").respond_with_data(
        "too many concurrent requests", status=429
    )
    f.deploy(**DEPLOY)
    expect_one(f, httpserver, "pending")


def test_newrelic_rest_marker_exact_request(httpserver: HTTPServer, forwarding: Make) -> None:
    f = newrelic(httpserver, forwarding, api="rest")
    finished = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    httpserver.expect_oneshot_request(
        "/v2/applications/9999999/deployments.json",
        method="POST",
        headers={"Api-Key": NR_KEY, "Content-Type": "application/json"},
        json={
            "deployment": {
                "revision": SHA,
                "description": "checkout 1.2.0 deployed to production",
                "user": "releasebits",
                "timestamp": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        },
    ).respond_with_json({"deployment": {"id": 1234567, "revision": SHA}}, status=201)
    f.deploy(**{**DEPLOY, "started_at": None, "finished_at": finished.isoformat()})
    expect_one(f, httpserver, "delivered")


def test_newrelic_rest_marker_of_an_old_event_is_stamped_on_receipt(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    # REST v2 refuses a timestamp older than the app's latest marker (422, permanent), which a
    # backfilled event or a late retry would send; it also refuses 4-byte UTF-8 characters.
    f = newrelic(httpserver, forwarding, api="rest")
    httpserver.expect_oneshot_request(
        "/v2/applications/9999999/deployments.json",
        method="POST",
        json={
            "deployment": {
                "revision": "1.2.0-\ufffd",
                "description": "checkout 1.2.0-\ufffd deployed to production",
                "user": "releasebits",
            }
        },
    ).respond_with_json({"deployment": {"id": 1234568}}, status=201)
    f.deploy(**{**DEPLOY, "commit_sha": None, "version": "1.2.0-\U0001f680"})
    expect_one(f, httpserver, "delivered")


# --- Webhooks ---------------------------------------------------------------------------------


def webhook(httpserver: HTTPServer, forwarding: Make, extra: str = "") -> Forwarding:
    return forwarding(
        f'[[forward.webhook]]\nname = "hooks"\nurl = "{httpserver.url_for("/hooks")}"\n'
        f'secret_env = "WEBHOOK_SECRET"\n{extra}',
        {"WEBHOOK_SECRET": WEBHOOK_SECRET},
        forward_retry_base_seconds=1.0,
    )


def test_webhook_signed_and_same_id_across_retries(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    f = webhook(httpserver, forwarding)
    seen: list[Request] = []
    statuses = [503, 200]

    def handle(request: Request) -> Response:
        seen.append(request)
        return Response("", statuses[len(seen) - 1])

    httpserver.expect_request("/hooks", method="POST").respond_with_handler(handle)
    event_id = f.deploy(**DEPLOY)
    f.run()
    f.clock.advance(1.01)
    f.run()
    assert len(seen) == 2
    row = f.only()
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    for request in seen:
        assert request.headers["webhook-id"] == row["id"]  # stable across retries
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["webhook-signature"].startswith("v1,")
        payload = Webhook(WEBHOOK_SECRET).verify(request.data, dict(request.headers))
        assert payload["type"] == "deployment.created"
        assert payload["data"]["id"] == event_id
        assert payload["data"]["component"] == "checkout"
        assert payload["data"]["version"] == "1.2.0"
    assert seen[0].data == seen[1].data  # the same bytes on every attempt
    # A tampered body does not verify.
    from standardwebhooks import WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(seen[0].data + b" ", dict(seen[0].headers))


def test_webhook_release_and_build_events(httpserver: HTTPServer, forwarding: Make) -> None:
    f = webhook(httpserver, forwarding)
    bodies: list[dict[str, Any]] = []

    def handle(request: Request) -> Response:
        bodies.append(Webhook(WEBHOOK_SECRET).verify(request.data, dict(request.headers)))
        return Response("", 204)

    httpserver.expect_request("/hooks", method="POST").respond_with_handler(handle)
    f.deploy(**{**DEPLOY, "release": "spring"})  # joins (creates) a release
    assert f.client.post("/releases", json={"name": "summer"}, headers=f.auth).status_code == 201
    f.build(version="2.0", url="https://ci.example.com/runs/1")
    f.run()
    types = sorted((b["type"], b["data"].get("name") or b["data"].get("version")) for b in bodies)
    assert types == [
        ("build.created", "2.0"),
        ("deployment.created", "1.2.0"),
        ("release.created", "spring"),
        ("release.created", "summer"),
    ]


def test_webhook_410_disables_the_endpoint_until_a_retry(
    httpserver: HTTPServer, forwarding: Make
) -> None:
    f = webhook(httpserver, forwarding)
    httpserver.expect_oneshot_request("/hooks", method="POST").respond_with_data("gone", status=410)
    first = f.deploy(**DEPLOY)
    second = f.deploy(**{**DEPLOY, "version": "1.2.1"})
    f.run()
    httpserver.check_assertions()
    by_event = {r["event"]["id"]: r for r in f.deliveries()}
    assert by_event[first]["status"] == "disabled" and by_event[first]["last_status"] == 410
    assert by_event[second]["status"] == "disabled" and by_event[second]["attempts"] == 0
    metrics = f.client.get("/metrics").text
    assert 'releasebits_forward_target_disabled{target="hooks"} 1.0' in metrics
    assert 'releasebits_forward_deliveries_total{outcome="disabled",target="hooks"} 2.0' in metrics
    f.clock.advance(3600)
    assert f.run() == 0  # nothing is sent to a disabled endpoint

    # The endpoint is back; an operator retries a delivery: the target is enabled again.
    httpserver.expect_request("/hooks", method="POST").respond_with_data("", status=200)
    resp = f.client.post(f"/deliveries/{by_event[first]['id']}/retry", headers=f.auth)
    assert resp.status_code == 200 and resp.json["status"] == "pending"
    f.run()
    statuses = {r["event"]["id"]: r["status"] for r in f.deliveries()}
    assert statuses == {first: "delivered", second: "disabled"}


@pytest.mark.parametrize("status", [429, 502, 504])
def test_webhook_throttling_honours_retry_after(
    httpserver: HTTPServer, forwarding: Make, status: int
) -> None:
    f = webhook(httpserver, forwarding)
    httpserver.expect_oneshot_request("/hooks", method="POST").respond_with_data(
        "slow down", status=status, headers={"Retry-After": "42"}
    )
    f.deploy(**DEPLOY)
    before = time.time()
    row = expect_one(f, httpserver, "pending")
    assert f.next_attempt_ts(row["id"]) == pytest.approx(before + 42, abs=2)


def test_webhook_redirect_is_not_followed(httpserver: HTTPServer, forwarding: Make) -> None:
    f = webhook(httpserver, forwarding)
    httpserver.expect_oneshot_request("/hooks", method="POST").respond_with_data(
        "", status=301, headers={"Location": httpserver.url_for("/elsewhere")}
    )
    f.deploy(**DEPLOY)
    row = expect_one(f, httpserver, "pending")
    assert row["last_status"] == 301
    assert all(req.path == "/hooks" for req, _ in httpserver.log)


def test_bugsnag_build_host_follows_the_api_key(tmp_path: Path) -> None:
    # Insight Hub accounts (API keys starting 00000) have their own Build API host.
    cfg = tmp_path / "rb.toml"
    cfg.write_text(
        '[[forward.bugsnag]]\n\n[components.checkout.forward.bugsnag]\napi_key_env = "A"\n'
        '[components.hub.forward.bugsnag]\napi_key_env = "B"\n'
    )
    (target,) = load_settings(
        cfg, {"A": BUGSNAG_KEY, "B": "00000" + BUGSNAG_KEY[5:]}
    ).forward_targets
    data = {"version": "1.0", "stage": "production", "finished_at": "2024-05-01T12:00:00Z"}
    urls = {
        c: target.build_requests(Event("deployment", "e1", c, data, 0.0), "d1")[0].url
        for c in ("checkout", "hub")
    }
    assert urls == {
        "checkout": "https://build.bugsnag.com/",
        "hub": "https://build.bugsnag.smartbear.com/",
    }


@pytest.mark.parametrize(
    "version", [".", "..", "latest", "Latest", "a/b", "a\\b", "1.0\x01", "v" * 201]
)
def test_sentry_release_names_sentry_refuses_fail_for_good_unsent(
    httpserver: HTTPServer, forwarding: Make, version: str
) -> None:
    """Issue 17, item 8: '..' went out as a dot segment (POST .../deploys/ of the organization,
    with the token). Versions Sentry refuses anyway fail permanently before anything is sent."""
    f = forwarding(
        f'[[forward.sentry]]\nbase_url = "{httpserver.url_for("/")}"\norganization = "acme"\n'
        'token_env = "SENTRY_RELEASE_TOKEN"\nproject = "backend"\n',
        {"SENTRY_RELEASE_TOKEN": SENTRY_TOKEN},
    )
    f.deploy(**{**DEPLOY, "version": version})
    f.run()
    row = f.only()
    assert (row["status"], row["attempts"]) == ("failed", 1), row
    assert "Sentry refuses the release version" in row["last_error"]
    assert httpserver.log == []  # nothing reached Sentry


# --- Secrets in configured URLs (issue 17, item 4) -----------------------------------------

HOOK_PATH_KEY = "T0001/B0002/XyZsecretPathKey42"
HOOK_QUERY_KEY = "apikeyQuerySecret0123"


@pytest.mark.parametrize("answer", ["refused", "echo"])
def test_webhook_url_keys_never_reach_deliveries_or_logs(
    httpserver: HTTPServer, forwarding: Make, caplog: pytest.LogCaptureFixture, answer: str
) -> None:
    """A webhook URL with a key in its path or query: neither appears in /deliveries (readable
    with any read token) nor in the log, whether the connection fails (requests quotes the URL)
    or the endpoint echoes the URL back in its error body."""
    if answer == "refused":
        base = "http://127.0.0.1:9"  # discard port: nothing listens, the connection is refused
    else:
        base = httpserver.url_for("").rstrip("/")

        def echo(request: Request) -> Response:
            return Response(f"no route for {request.full_path}", status=500)

        httpserver.expect_request(f"/hooks/{HOOK_PATH_KEY}").respond_with_handler(echo)
    url = f"{base}/hooks/{HOOK_PATH_KEY}?apikey={HOOK_QUERY_KEY}&user=u%3Ab"
    f = forwarding(
        f'[[forward.webhook]]\nname = "hooks"\nurl = "{url}"\nsecret_env = "HOOK_SECRET"\n',
        {"HOOK_SECRET": WEBHOOK_SECRET},
    )
    f.deploy(**DEPLOY)
    with caplog.at_level("INFO"):
        f.run()
    listed = f.client.get("/deliveries", headers=f.auth)
    assert listed.status_code == 200
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("exporter")]
    text = json.dumps(listed.json) + "\n".join(ours)
    assert listed.json[0]["last_error"]  # the failure is still explained
    for secret in (HOOK_PATH_KEY, HOOK_QUERY_KEY, "XyZsecretPathKey42"):
        assert secret not in text
