"""Input that used to answer 500 (issue 17, item 5), and the limits that replaced it: every
answer is a 4xx in the JSON error shape, and nothing of a refused request is stored."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from exporter.app import create_app


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    return dict(resp.json["error"])


@pytest.mark.parametrize(
    "stamp",
    [
        "0001-01-01T00:00:00+01:00",  # an offset that crosses year 1: OverflowError
        "9999-12-31T23:59:59-01:00",  # ... and year 9999
        "0999-06-01T00:00:00Z",  # stored as '999-06-01...': breaks date-time and badges
        "1969-12-31T23:59:59Z",
        "3000-01-01T00:00:00Z",
    ],
)
def test_timestamps_outside_the_accepted_range_are_422(
    client: Any, auth: dict[str, str], stamp: str
) -> None:
    for field in ("finished_at", "started_at"):
        resp = client.post(
            "/components/edge/deployments", json={"version": "1", field: stamp}, headers=auth
        )
        err = _error(resp, 422)
        assert "1970-01-01" in err["fields"][field]
    assert client.get("/components/edge", headers=auth).status_code == 404


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0999-06-01T00:00:00"]
)
def test_since_and_until_outside_the_range_are_400(
    client: Any, auth: dict[str, str], stamp: str
) -> None:
    assert (
        client.post("/components/edge/deployments", json={"version": "1"}, headers=auth).status_code
        == 201
    )
    for name in ("since", "until"):
        resp = client.get("/components/edge/deployments", query_string={name: stamp}, headers=auth)
        assert _error(resp, 400)["code"] == "invalid_parameter"


def test_the_range_edges_themselves_are_accepted(client: Any, auth: dict[str, str]) -> None:
    resp = client.post(
        "/components/edge/deployments",
        json={"version": "1", "started_at": "1970-01-01T01:00:00+01:00"},
        headers=auth,
    )
    assert resp.status_code == 201, resp.json
    stored = client.get(f"/components/edge/deployments/{resp.json['id']}", headers=auth).json
    assert stored["started_at"] == "1970-01-01T00:00:00.000Z"


def test_events_in_the_future_are_refused_past_max_future_seconds(
    client: Any, auth: dict[str, str]
) -> None:
    """A finished_at 23 h ahead pinned the 'current' version over later real deploys."""
    now = datetime.now(UTC)
    ahead = (now + timedelta(hours=23)).isoformat()
    err = _error(
        client.post(
            "/components/clock/deployments",
            json={"version": "2", "finished_at": ahead},
            headers=auth,
        ),
        422,
    )
    assert "300 seconds in the future" in err["fields"]["finished_at"]
    slightly = (now + timedelta(seconds=60)).isoformat()  # a clock a little ahead is fine
    resp = client.post(
        "/components/clock/deployments",
        json={"version": "1", "finished_at": slightly},
        headers=auth,
    )
    assert resp.status_code == 201


def test_max_future_seconds_is_a_setting(settings: Any, db: Any, auth: dict[str, str]) -> None:
    app = create_app(settings.replace(max_future_seconds=0), process_metrics=False)
    ahead = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
    resp = app.test_client().post(
        "/components/clock/deployments", json={"version": "2", "finished_at": ahead}, headers=auth
    )
    assert resp.status_code == 422


def test_json_nested_1000_deep_is_400_not_500(client: Any, auth: dict[str, str]) -> None:
    body = '{"version": "1", "meta_data": ' + '{"a": ' * 1000 + "1" + "}" * 1000 + "}"
    resp = client.post(
        "/components/deep/deployments",
        data=body,
        content_type="application/json",
        headers=auth,
    )
    assert resp.status_code in (400, 422), resp.get_data(as_text=True)
    assert resp.json["error"]["code"] in ("invalid_json", "validation_failed")


def test_meta_data_nested_past_32_levels_is_422(client: Any, auth: dict[str, str]) -> None:
    meta: dict[str, Any] = {}
    inner = meta
    for _ in range(40):
        inner["a"] = {}
        inner = inner["a"]
    resp = client.post(
        "/components/deep/deployments", json={"version": "1", "meta_data": meta}, headers=auth
    )
    assert "32 levels" in _error(resp, 422)["fields"]["meta_data"]


@pytest.mark.parametrize(
    "cursor",
    [[1e308, 10**100], [1.0, 10**30], [10**400, 1], [1.0, 1e308], ["x", 1], [1.0, True]],
)
def test_hostile_cursors_are_400(client: Any, auth: dict[str, str], cursor: Any) -> None:
    assert (
        client.post("/components/cur/deployments", json={"version": "1"}, headers=auth).status_code
        == 201
    )
    for path in ("/components/cur/deployments", "/components/cur/builds", "/releases"):
        resp = client.get(path, query_string={"cursor": _cursor(cursor)}, headers=auth)
        assert _error(resp, 400)["code"] == "invalid_cursor", path
    resp = client.get("/deliveries", query_string={"cursor": _cursor(10**30)}, headers=auth)
    assert _error(resp, 400)["code"] == "invalid_cursor"


@pytest.mark.parametrize(
    ("method", "url", "name"),
    [
        ("GET", "/deliveries?target=a%00b", "target"),
        ("POST", "/deliveries/a%00b/retry", "delivery_id"),
        ("GET", "/components/nul/deployments?version=a%00b", "version"),
        ("GET", "/components/nul/deployments/a%00b", "event_id"),
        ("GET", "/components/nul/builds/a%00b", "event_id"),
        ("GET", "/components/nul/incidents?stage=a%00b", "stage"),
        ("GET", "/components/nul/incidents/a%00b", "incident_id"),
        ("GET", "/releases/a%00b", "id_or_name"),
    ],
)
def test_a_nul_in_the_url_is_400_on_every_backend(
    client: Any, auth: dict[str, str], method: str, url: str, name: str
) -> None:
    """Found by schemathesis on PostgreSQL, which cannot compare text with NUL: those answered
    503 "database unavailable; retry" there (and 404 or an empty list on SQLite)."""
    assert client.post("/components/nul/deployments", json={"version": "1"}, headers=auth)
    resp = client.open(url, method=method, headers=auth)
    error = _error(resp, 400)
    assert error["code"] == "invalid_parameter"
    assert error["fields"] == {name: "must not contain NUL characters"}


def test_a_nul_in_the_idempotency_key_is_400(client: Any, auth: dict[str, str]) -> None:
    headers = {**auth, "Idempotency-Key": "k\x00"}
    resp = client.post("/components/nul/deployments", json={"version": "1"}, headers=headers)
    assert _error(resp, 400)["code"] == "invalid_idempotency_key"
    assert client.get("/components/nul/deployments", headers=auth).status_code == 404  # none


def test_release_meta_data_is_capped_like_deployments(client: Any, auth: dict[str, str]) -> None:
    """Item 10: 60 KB of release meta_data was accepted (deployments cap 16 KiB)."""
    big = {"pad": "x" * 17_000}
    resp = client.post("/releases", json={"name": "r1", "meta_data": big}, headers=auth)
    assert "16384 bytes" in _error(resp, 422)["fields"]["meta_data"]


def test_release_name_must_be_a_string_as_the_document_says(
    client: Any, auth: dict[str, str]
) -> None:
    """Item 10: the OpenAPI document types `name` as a string; the server took an integer."""
    resp = client.post("/releases", json={"name": 12345}, headers=auth)
    assert "must be a string" in _error(resp, 422)["fields"]["name"]


def test_components_past_max_components_warn_once_a_minute(
    settings: Any, db: Any, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Item 10: 5,000 posts to new components logged 4,518 WARNING lines."""
    client = create_app(settings.replace(max_components=2), process_metrics=False).test_client()
    with caplog.at_level("WARNING", logger="exporter.ingest.routes"):
        for n in range(40):
            resp = client.post(f"/components/c{n}/deployments", json={"version": "1"}, headers=auth)
            assert resp.status_code == 201
    warnings = [r for r in caplog.records if "past max_components" in r.getMessage()]
    assert len(warnings) == 1
