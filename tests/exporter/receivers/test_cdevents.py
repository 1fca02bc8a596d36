"""POST /webhooks/cdevents: the cdevents/spec conformance examples over the CloudEvents HTTP
binding, in binary and structured mode, authenticated with a write token."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest

from storage import incidents, tokens
from tests.exporter.receivers.conftest import fixture, metric


def binary(
    client: Any, auth: dict[str, str], cdevent: dict[str, Any], ce_id: str | None = None
) -> Any:
    """Binary mode per the CDEvents CloudEvents binding: ce-* headers from the context, the
    whole CDEvent as the JSON body."""
    ctx = cdevent["context"]
    headers = {
        **auth,
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": ce_id or ctx["id"],
        "ce-source": ctx["source"],
        "ce-type": ctx["type"],
        "ce-time": ctx["timestamp"],
        "ce-subject": cdevent["subject"]["id"],
    }
    return client.post("/webhooks/cdevents", data=json.dumps(cdevent).encode(), headers=headers)


def structured(
    client: Any, auth: dict[str, str], cdevent: dict[str, Any], ce_id: str | None = None
) -> Any:
    ctx = cdevent["context"]
    envelope = {
        "specversion": "1.0",
        "id": ce_id or ctx["id"],
        "source": ctx["source"],
        "type": ctx["type"],
        "time": ctx["timestamp"],
        "datacontenttype": "application/json",
        "data": cdevent,
    }
    headers = {**auth, "Content-Type": "application/cloudevents+json; charset=UTF-8"}
    return client.post("/webhooks/cdevents", data=json.dumps(envelope).encode(), headers=headers)


@pytest.mark.parametrize("send", [binary, structured])
@pytest.mark.parametrize("version", ["v0.5.1", "v0.4.1"])
def test_service_deployed_is_a_deployment(
    hooks: Any, auth: dict[str, str], send: Any, version: str
) -> None:
    resp = send(hooks, auth, fixture(f"cdevents/{version}_service_deployed.json"))
    assert resp.status_code == 201, resp.json
    [stored] = hooks.get("/components/mysubject123/deployments", headers=auth).json
    assert stored["stage"] == "test123"
    # The version of the artifact's package URL, percent-decoded.
    assert (
        stored["version"]
        == "sha256:0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"
    )
    assert stored["finished_at"] == "2023-03-20T14:27:05.315Z"


def test_upgraded_and_rolledback_are_deployments_and_rolledback_marks_a_rollback(
    hooks: Any, auth: dict[str, str], db: Any
) -> None:
    assert (
        binary(hooks, auth, fixture("cdevents/v0.5.1_service_upgraded.json"), "a").status_code
        == 201
    )
    assert (
        binary(hooks, auth, fixture("cdevents/v0.5.1_service_rolledback.json"), "b").status_code
        == 201
    )
    rows = db.query("SELECT rollback FROM deployments ORDER BY seq")
    assert [r["rollback"] for r in rows] == [0, 1]
    labels = {"receiver": "cdevents", "event": "service.rolledback", "outcome": "accepted"}
    assert metric(hooks, "releasebits_webhook_requests_total", **labels) == 1


def test_same_source_and_id_is_a_duplicate(hooks: Any, auth: dict[str, str]) -> None:
    event = fixture("cdevents/v0.5.1_service_deployed.json")
    assert binary(hooks, auth, event).status_code == 201
    again = structured(hooks, auth, event)  # the same source + id, another mode
    assert (again.status_code, again.json) == (200, {"duplicate": True})
    moved = copy.deepcopy(event)
    moved["context"]["source"] = "/event/source/456"
    assert binary(hooks, auth, moved).status_code == 201
    assert len(hooks.get("/components/mysubject123/deployments", headers=auth).json) == 2


@pytest.mark.parametrize("version", ["v0.5.1", "v0.4.1"])
def test_pipelinerun_finished_is_a_build(hooks: Any, auth: dict[str, str], version: str) -> None:
    resp = binary(hooks, auth, fixture(f"cdevents/{version}_pipelinerun_finished.json"))
    assert resp.status_code == 201, resp.json
    [build] = hooks.get("/components/mypipeline/builds", headers=auth).json
    assert (build["result_class"], build["version"]) == ("failure", "mySubject123")
    assert build["url"] == "https://www.example.com/mySubject123"


def test_incidents_detected_then_resolved_are_one_incident(
    hooks: Any, auth: dict[str, str], db: Any
) -> None:
    detected = fixture("cdevents/v0.5.1_incident_detected.json")
    resolved = copy.deepcopy(fixture("cdevents/v0.5.1_incident_resolved.json"))
    resolved["context"]["timestamp"] = "2022-11-11T14:52:20.079Z"
    first = binary(hooks, auth, detected)
    assert first.status_code == 201
    second = binary(hooks, auth, resolved, str(uuid.uuid4()))  # the examples share an id
    assert (second.status_code, second.json["id"]) == (200, first.json["id"])
    [incident] = incidents.list_for(db, "myapp")
    assert incident["stage"] == "prod1"
    assert incident["external_id"] == "incident-123"
    assert (incident["started_at"], incident["resolved_at"]) == (
        "2022-11-11T13:52:20.079Z",
        "2022-11-11T14:52:20.079Z",
    )
    assert incident["title"] == "Response time above threshold of 100ms"


def test_write_token_required(hooks: Any, db: Any) -> None:
    event = fixture("cdevents/v0.5.1_service_deployed.json")
    assert binary(hooks, {}, event).status_code == 401
    reader = tokens.create_token(db, "reader", ("read",))
    assert binary(hooks, {"Authorization": f"Bearer {reader}"}, event).status_code == 403
    labels = {"receiver": "cdevents", "event": "service.deployed", "outcome": "unauthorized"}
    assert metric(hooks, "releasebits_webhook_requests_total", **labels) == 2


def test_bad_cloudevents_are_400_and_store_nothing(hooks: Any, auth: dict[str, str]) -> None:
    event = fixture("cdevents/v0.5.1_service_deployed.json")
    body = json.dumps(event).encode()
    base = {
        **auth,
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-source": "/s",
        "ce-type": event["context"]["type"],
    }
    no_id = hooks.post("/webhooks/cdevents", data=body, headers=base)
    assert (no_id.status_code, no_id.json["error"]["code"]) == (400, "invalid_cloudevent")
    assert "ce-id" in no_id.json["error"]["message"]
    plain = hooks.post(
        "/webhooks/cdevents", data=body, headers={**auth, "Content-Type": "application/json"}
    )
    assert plain.status_code == 400
    bad_time = hooks.post(
        "/webhooks/cdevents", data=body, headers={**base, "ce-id": "1", "ce-time": "not-a-time"}
    )
    assert bad_time.status_code == 400
    broken = hooks.post(
        "/webhooks/cdevents",
        data=b"{not json",
        headers={**auth, "Content-Type": "application/cloudevents+json"},
    )
    assert broken.status_code == 400
    assert hooks.get("/components/mysubject123", headers=auth).status_code == 404


def test_other_cdevents_are_202(hooks: Any, auth: dict[str, str]) -> None:
    resp = binary(hooks, auth, fixture("cdevents/v0.5.1_artifact_published.json"))
    assert resp.status_code == 202 and "artifact.published" in resp.json["ignored"]
