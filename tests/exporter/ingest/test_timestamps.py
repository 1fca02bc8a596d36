"""Timestamps as CI systems hand them out: ISO 8601 or Unix epoch seconds, documented."""

from __future__ import annotations

from typing import Any

import pytest

EPOCH = 1527426930.311  # 2018-05-27T13:15:30.311Z, the reference's started_at
ISO = "2018-05-27T13:15:30.311Z"


@pytest.mark.parametrize(
    "started",
    [EPOCH, 1527426930, "1527426930.311", "1527426930", ISO],
    ids=["json-float", "json-int", "text-float", "text-int", "iso"],
)
def test_started_at_as_epoch_seconds_or_iso(
    client: Any, auth: dict[str, str], started: Any
) -> None:
    resp = client.post(
        "/components/checkout/deployments",
        json={"version": "1", "started_at": started, "finished_at": EPOCH + 1},
        headers=auth,
    )
    assert resp.status_code == 201, resp.get_json()
    got = client.get(f"/components/checkout/deployments/{resp.get_json()['id']}", headers=auth)
    body = got.get_json()
    expected = (
        ISO if isinstance(started, float) or "." in str(started) else "2018-05-27T13:15:30.000Z"
    )
    assert body["started_at"] == expected
    assert body["finished_at"] == "2018-05-27T13:15:31.311Z"


def test_epoch_seconds_in_query_parameters_and_list_filters(
    client: Any, auth: dict[str, str]
) -> None:
    token = auth["Authorization"].split()[1]
    resp = client.post(
        f"/components/checkout/deployments?access_token={token}&version=2&finished_at=1527426930"
    )
    assert resp.status_code == 201, resp.get_json()
    assert (
        client.get(
            "/components/checkout/deployments?since=1527426930&until=1527426931", headers=auth
        ).get_json()[0]["finished_at"]
        == "2018-05-27T13:15:30.000Z"
    )
    assert (
        client.get("/components/checkout/deployments?since=1527426931", headers=auth).get_json()
        == []
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1527426930311, "this looks like milliseconds"),
        ("1527426930311", "this looks like milliseconds"),
        ("yesterday", "ISO 8601 timestamp or Unix epoch seconds"),
        (-5, "between 1970-01-01T00:00:00Z and 2999-12-31T23:59:59Z"),
        (True, "ISO 8601 timestamp or Unix epoch seconds"),
    ],
)
def test_bad_timestamps_say_what_is_accepted(
    client: Any, auth: dict[str, str], value: Any, message: str
) -> None:
    resp = client.post(
        "/components/checkout/deployments",
        json={"version": "1", "finished_at": value},
        headers=auth,
    )
    assert resp.status_code == 422
    assert message in resp.get_json()["error"]["fields"]["finished_at"]


def test_openapi_says_both_forms_are_accepted(client: Any) -> None:
    doc = client.get("/openapi.json").get_json()
    fields = doc["components"]["schemas"]
    inputs = [
        name
        for name, schema in fields.items()
        if "started_at" in schema.get("properties", {}) and "required" in schema
    ]  # outputs are always ISO 8601
    assert len(inputs) >= 3, inputs  # deployments, builds, incidents
    for name in inputs:
        schema = fields[name]
        for field in ("started_at", "finished_at", "resolved_at"):
            if field not in schema["properties"]:
                continue  # incidents have resolved_at instead of finished_at
            prop = schema["properties"][field]
            kinds = {(s["type"], s.get("format")) for s in prop["anyOf"]}
            assert ("number", None) in kinds and ("string", "date-time") in kinds, name
            assert "epoch seconds" in prop["description"]
    since = next(
        p
        for p in doc["paths"]["/components/{slug}/deployments"]["get"]["parameters"]
        if p["name"] == "since"
    )
    assert "epoch seconds" in since["description"]
    assert {s["type"] for s in since["schema"]["anyOf"]} == {"string", "number"}


def test_incidents_take_epoch_seconds_too(client: Any, auth: dict[str, str]) -> None:
    resp = client.post(
        "/components/checkout/incidents",
        json={"started_at": EPOCH, "resolved_at": "1527430530"},
        headers=auth,
    )
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["started_at"] == ISO
    assert resp.get_json()["resolved_at"] == "2018-05-27T14:15:30.000Z"
    bad = client.post(
        "/components/checkout/incidents", json={"started_at": 1527426930311}, headers=auth
    )
    assert bad.status_code == 422
    assert "milliseconds" in bad.get_json()["error"]["fields"]["started_at"]
