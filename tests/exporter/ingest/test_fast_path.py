"""The lean ingest path (exporter/ingest/fast.py) answers exactly as the Flask route does.

Every request below is sent twice to the same database: through the app as served (the lean
path takes plain JSON POSTs) and straight to the Flask app behind it. Status, JSON body (ids
aside), and headers must agree; and the lean path must really be the one answering.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from werkzeug.test import Client

from exporter.ingest.fast import FastIngest
from storage import tokens

LONG = "x" * 300
CASES: list[tuple[str, str, dict[str, str], bytes]] = [
    ("/components/checkout/deployments", "application/json", {}, b'{"version": "1.0"}'),
    ("/components/checkout/builds/", "application/json", {}, b'{"version": "7", "url": "u"}'),
    ("/components/Billing%20API/deployments", "application/json", {}, b'{"version": "2"}'),
    ("/components/-bad-/deployments", "application/json", {}, b'{"version": "1"}'),
    ("/components/checkout/deployments", "application/json", {}, b'{"version": ""}'),
    ("/components/checkout/deployments", "application/json", {}, b'{"version": "1"'),
    ("/components/checkout/deployments", "application/json", {}, b"[1]"),
    ("/components/checkout/deployments", "application/json", {}, b'{"version": "\xff"}'),
    ("/components/checkout/deployments", "application/json; charset=utf-8", {}, b'{"v": 1}'),
    ("/components/checkout/deployments", "application/json", {}, b'{"version": "1", "x": 2}'),
    (
        "/components/checkout/deployments",
        "application/json",
        {},
        json.dumps({"version": "1", "finished_at": "3000-01-01T00:00:00Z"}).encode(),
    ),
    ("/components/checkout/deployments", "application/json", {"Idempotency-Key": ""}, b"{}"),
    ("/components/checkout/deployments", "application/json", {"Idempotency-Key": LONG}, b"{}"),
]


def _call(client: Client, path: str, ctype: str, headers: dict[str, str], body: bytes) -> Any:
    return client.post(path, data=body, headers={"Content-Type": ctype, **headers})


def _normal(resp: Any) -> tuple[int, Any, dict[str, str]]:
    body = resp.get_json()
    if isinstance(body, dict) and "id" in body:
        body = {**body, "id": "<id>"}
    headers = {
        k: v
        for k, v in resp.headers.items()
        if k in ("Content-Type", "WWW-Authenticate", "Idempotent-Replayed", "Retry-After")
    }
    if "Location" in resp.headers:
        headers["Location"] = resp.headers["Location"].rsplit("/", 1)[0]
    return resp.status_code, body, headers


@pytest.mark.parametrize(("path", "ctype", "headers", "body"), CASES)
@pytest.mark.parametrize(
    "auth_header", ["Bearer {t}", "{t}", "Bearer rb_nope_nope", "Bearer ", "Bearer {r}"]
)
def test_lean_path_answers_as_the_flask_route_does(
    app: Any,
    token: str,
    db: Any,
    path: str,
    ctype: str,
    headers: dict[str, str],
    body: bytes,
    auth_header: str,
) -> None:
    read_only = tokens.create_token(db, "reader", ("read",))
    auth = {"Authorization": auth_header.format(t=token, r=read_only)}
    assert isinstance(app.wsgi_app, FastIngest)
    lean = Client(app.wsgi_app)
    flask = Client(app.wsgi_app.app)
    a = _normal(_call(lean, path, ctype, {**auth, **headers}, body))
    b = _normal(_call(flask, path, ctype, {**auth, **headers}, body))
    assert a == b


def test_the_lean_path_is_the_one_answering(app: Any, auth: dict[str, str]) -> None:
    """Flask's hooks do not run for the lean path: a before_request that refuses everything
    leaves a plain JSON POST answered, and a form POST refused."""

    @app.before_request
    def _refuse() -> Any:
        return ("flask", 418)

    client = app.test_client()
    resp = client.post("/components/c/deployments", json={"version": "1"}, headers=auth)
    assert resp.status_code == 201
    resp = client.post("/components/c/deployments", data={"version": "1"}, headers=auth)
    assert resp.status_code == 418


def test_idempotent_replay_through_both_paths(app: Any, auth: dict[str, str]) -> None:
    lean, flask = Client(app.wsgi_app), Client(app.wsgi_app.app)
    headers = {**auth, "Idempotency-Key": "run-1", "Content-Type": "application/json"}
    first = lean.post("/components/c/deployments", data=b'{"version": "1"}', headers=headers)
    again = flask.post("/components/c/deployments", data=b'{"version": "1"}', headers=headers)
    assert first.status_code == 201 and again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.get_json()["id"] == again.get_json()["id"]
    other = lean.post("/components/c/deployments", data=b'{"version": "2"}', headers=headers)
    assert other.status_code == 409
