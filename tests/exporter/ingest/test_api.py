"""The ingest API driven the way the reference's curl examples drive it, plus bad input."""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage import heartbeat, tokens

# The reference's JSON example, byte for byte: curl -d sends it labelled as a form body.
REFERENCE_JSON_BODY = """ {
        "version": "v1.2.3",
        "result": "success",
        "stage": "staging",
        "host": "host.example.com",
        "code_name": "Funky F\u7aefnke",
        "started_at": "2018-05-27T13:15:30.311Z",
        "finished_at": "2018-05-27T13:15:31.191Z",
        "meta_data": {
          "user_id": "metauser",
          "foo": "bar"
        },
        "commit_sha": "b927e3797fc56fb8bc093d59ee7a624dafddadd2",
        "tag": "tag1.2.3",
        "branch": "release" 
     } """  # noqa: W291 - trailing space as in the reference

REFERENCE_QUERY = (
    "/components/component-slug/deployments?access_token={token}&version=v1.2.3&result=success"
    "&stage=staging&host=host.example.com&code_name=Funky%20F%C3%BCnke"
    "&started_at=2018-05-27T13%3A15%3A30.311Z&finished_at=2018-05-27T13%3A15%3A31.191Z"
    "&meta_data[user_id]=metauser&meta_data[foo]=bar"
    "&commit_sha=b927e3797fc56fb8bc093d59ee7a624dafddadd2&tag=tag1.2.3&branch=release"
)

EXPECTED = {
    "version": "v1.2.3",
    "result": "success",
    "stage": "staging",
    "host": "host.example.com",
    "started_at": "2018-05-27T13:15:30.311Z",
    "finished_at": "2018-05-27T13:15:31.191Z",
    "meta_data": {"user_id": "metauser", "foo": "bar"},
    "commit_sha": "b927e3797fc56fb8bc093d59ee7a624dafddadd2",
    "tag": "tag1.2.3",
    "branch": "release",
}


def post(
    client: Any,
    auth: dict[str, str],
    slug: str = "checkout",
    kind: str = "deployments",
    **fields: Any,
) -> Any:
    return client.post(f"/components/{slug}/{kind}", json=fields, headers=auth)


def test_reference_json_example_verbatim(client: Any, token: str) -> None:
    resp = client.post(
        "/components/component-slug/deployments/",
        data=REFERENCE_JSON_BODY.encode(),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/x-www-form-urlencoded",  # what curl -d sends
        },
    )
    assert resp.status_code == 201, resp.json
    assert set(resp.json) == {"id"}
    uuid.UUID(resp.json["id"])
    got = client.get(
        f"/components/component-slug/deployments/{resp.json['id']}",
        headers={"Authorization": f"Bearer {token}"},
    ).json
    assert {k: got[k] for k in EXPECTED} == EXPECTED
    assert got["code_name"] == "Funky F\u7aefnke"


def test_reference_query_parameter_example_verbatim(client: Any, token: str) -> None:
    resp = client.post(REFERENCE_QUERY.format(token=token))
    assert resp.status_code == 201, resp.json
    listed = client.get(f"/components/component-slug/deployments?access_token={token}")
    assert listed.status_code == 200
    (got,) = listed.json
    assert got["id"] == resp.json["id"]
    assert {k: got[k] for k in EXPECTED} == EXPECTED
    assert got["code_name"] == "Funky F\u00fcnke"


def test_percent_encoded_brackets_work_too(client: Any, token: str) -> None:
    # curl globs [] unless given -g; users who percent-encode the brackets get the same result.
    resp = client.post(
        f"/components/svc/deployments?access_token={token}&version=1&meta_data%5Bk%5D=v"
    )
    assert resp.status_code == 201
    got = client.get(f"/components/svc/deployments/{resp.json['id']}?access_token={token}").json
    assert got["meta_data"] == {"k": "v"}


def test_form_body(client: Any, auth: dict[str, str]) -> None:
    resp = client.post(
        "/components/svc/builds",
        data={"version": "1.0", "result": "failed", "meta_data[run]": "42", "url": "https://ci/1"},
        headers=auth,
    )
    assert resp.status_code == 201
    got = client.get(f"/components/svc/builds/{resp.json['id']}", headers=auth).json
    assert got["result"] == "failed"
    assert got["result_class"] == "failure"
    assert got["meta_data"] == {"run": "42"}
    assert got["url"] == "https://ci/1"


@pytest.mark.parametrize(
    "header",
    [lambda t: {"Authorization": f"Bearer {t}"}, lambda t: {"Authorization": t}],
    ids=["bearer", "bare"],
)
def test_both_authorization_header_forms(client: Any, token: str, header: Any) -> None:
    assert post(client, header(token), version="1").status_code == 201
    assert client.get("/components/checkout/deployments", headers=header(token)).status_code == 200


def test_reference_auth_example_root(client: Any, token: str) -> None:
    assert client.get("/", headers={"Authorization": token}).status_code == 200
    assert client.get(f"/?access_token={token}").status_code == 200


@pytest.mark.parametrize(
    ("headers", "query", "code"),
    [
        ({}, "", "missing_token"),
        ({}, "?access_token=", "invalid_token"),
        ({"Authorization": "Bearer "}, "", "invalid_token"),
        ({"Authorization": "Bearer rb_nope_nope"}, "", "invalid_token"),
        ({"Authorization": "garbage"}, "", "invalid_token"),
    ],
)
def test_missing_or_bad_token_is_401(
    client: Any, db: Any, headers: dict[str, str], query: str, code: str
) -> None:
    resp = client.post(
        f"/components/checkout/deployments{query}", json={"version": "1"}, headers=headers
    )
    assert resp.status_code == 401
    assert resp.json["error"]["code"] == code
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert db.execute("SELECT count(*) FROM deployments").fetchone()[0] == 0


def test_revoked_token_is_401(client: Any, db: Any, token: str, auth: dict[str, str]) -> None:
    """The ingest path remembers a write token it verified (tokens.VerifiedTokens); the write's
    own transaction checks it again, so a revocation by another connection refuses the very
    next write, and the write after that before its body is read."""
    assert post(client, auth, version="1").status_code == 201
    assert tokens.revoke_token(db, "ci")
    resp = post(client, auth, version="2")
    assert resp.status_code == 401
    assert resp.json["error"]["code"] == "invalid_token"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    invalid_body = post(client, auth, version="")  # a live token would get 422
    assert invalid_body.status_code == 401
    assert invalid_body.json["error"]["code"] == "invalid_token"
    assert db.execute("SELECT count(*) FROM deployments").fetchone()[0] == 1


def test_a_revoked_token_gets_no_idempotent_replay(
    client: Any, db: Any, token: str, auth: dict[str, str]
) -> None:
    keyed = {**auth, "Idempotency-Key": "deploy-1"}
    first = post(client, keyed, version="1")
    assert first.status_code == 201
    assert post(client, keyed, version="1").headers.get("Idempotent-Replayed") == "true"
    assert tokens.revoke_token(db, "ci")
    again = post(client, keyed, version="1")
    assert again.status_code == 401
    assert again.json["error"]["code"] == "invalid_token"
    assert first.json["id"] not in again.get_data(as_text=True)


def test_scopes(client: Any, db: Any) -> None:
    reader = tokens.create_token(db, "reader", ("read",))
    writer = tokens.create_token(db, "writer", ("write",))
    resp = post(client, {"Authorization": reader}, version="1")
    assert resp.status_code == 403
    assert resp.json["error"]["code"] == "insufficient_scope"
    assert post(client, {"Authorization": writer}, version="1").status_code == 201
    assert client.get("/components", headers={"Authorization": writer}).status_code == 403
    assert client.get("/components", headers={"Authorization": reader}).status_code == 200


def test_token_never_logged(client: Any, token: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    client.post(REFERENCE_QUERY.format(token=token))
    client.get(f"/components/component-slug/deployments?access_token={token}")
    client.get("/components", headers={"Authorization": f"Bearer {token}"})
    assert token not in caplog.text
    assert "access_token=[redacted]" in caplog.text


def test_stored_events_log_one_info_line_a_minute(
    app: Any, client: Any, token: str, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """At INFO, the first stored event is logged, then one line a minute says how many more
    were stored (each is at DEBUG); a 201's access line is DEBUG, on the lean JSON path and on
    Flask's (query token); a refused post keeps its INFO access line."""
    clock = [1000.0]
    app.extensions["releasebits"].stored_log.clock = lambda: clock[0]
    caplog.set_level("INFO")
    assert post(client, auth, version="v-json").status_code == 201
    assert client.post(REFERENCE_QUERY.format(token=token)).status_code == 201
    assert post(client, auth, version="v-3").status_code == 201
    clock[0] += 61
    assert post(client, auth, version="v-4").status_code == 201
    assert post(client, auth, version="").status_code == 422
    info = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    stored = [line for line in info if line.startswith("stored deployment")]
    assert len(stored) == 2, info
    assert stored[0].endswith("version=v-json")
    assert stored[1].endswith("version=v-4 (2 more events stored since the last such line)")
    assert not [line for line in info if '" 201 ' in line], info
    assert [line for line in info if '"POST /components/checkout/deployments" 422 ' in line]


def test_every_stored_event_is_logged_at_debug(
    client: Any, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    for version in ("d-1", "d-2", "d-3"):
        assert post(client, auth, version=version).status_code == 201
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stored ")]
    assert [line.split("version=")[1].split(" ")[0] for line in lines] == ["d-1", "d-2", "d-3"]


def test_timestamps_normalised_to_utc_and_finished_defaults_to_now(
    client: Any, auth: dict[str, str]
) -> None:
    resp = post(
        client,
        auth,
        version="1",
        started_at="2018-05-27T15:15:30+02:00",
        finished_at="2018-05-27T15:16:00.5+02:00",
    )
    got = client.get(f"/components/checkout/deployments/{resp.json['id']}", headers=auth).json
    assert got["started_at"] == "2018-05-27T13:15:30.000Z"
    assert got["finished_at"] == "2018-05-27T13:16:00.500Z"
    assert got["duration_seconds"] == 30.5
    before = datetime.now(UTC)
    resp = post(client, auth, version="2", finished_at="")
    got = client.get(f"/components/checkout/deployments/{resp.json['id']}", headers=auth).json
    finished = datetime.fromisoformat(got["finished_at"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= finished <= datetime.now(UTC)


def test_unknown_fields_are_ignored_and_reported(client: Any, auth: dict[str, str]) -> None:
    resp = post(client, auth, version="1", environment="prod", foo=1)
    assert resp.status_code == 201
    assert resp.json["ignored_fields"] == ["environment", "foo"]


def test_default_stage_and_result(client: Any, auth: dict[str, str]) -> None:
    resp = post(client, auth, version="1")
    got = client.get(f"/components/checkout/deployments/{resp.json['id']}", headers=auth).json
    assert got["stage"] == "production"
    assert got["result"] is None
    assert got["result_class"] == "success"


def test_slug_and_stage_are_normalised(client: Any, auth: dict[str, str]) -> None:
    resp = client.post(
        "/components/Billing%20API/deployments",
        json={"version": "1", "stage": "Staging"},
        headers=auth,
    )
    assert resp.status_code == 201
    assert resp.headers["Location"].startswith("/components/billing-api/deployments/")
    got = client.get("/components/billing-api", headers=auth).json
    assert got["stages"]["staging"]["version"] == "1"


# --- bad input: a clear error, never a 500, never a stored row --------------------------------

BAD = [
    ({"result": "success"}, 422, "validation_failed", "version"),
    ({"version": ""}, 422, "validation_failed", "version"),
    ({"version": "   "}, 422, "validation_failed", "version"),
    ({"version": None}, 422, "validation_failed", "version"),
    ({"version": ["1"]}, 422, "validation_failed", "version"),
    ({"version": True}, 422, "validation_failed", "version"),
    ({"version": "1", "meta_data": "x"}, 422, "validation_failed", "meta_data"),
    ({"version": "1", "meta_data": [1, 2]}, 422, "validation_failed", "meta_data"),
    ({"version": "1", "meta_data": {"k": "a" * 20000}}, 422, "validation_failed", "meta_data"),
    ({"version": "1", "started_at": "yesterday"}, 422, "validation_failed", "started_at"),
    (
        {"version": "1", "finished_at": "2018-13-45T00:00:00Z"},
        422,
        "validation_failed",
        "finished_at",
    ),
    ({"version": "1", "finished_at": 1527426931000}, 422, "validation_failed", "finished_at"),
    (
        {
            "version": "1",
            "started_at": "2018-05-27T13:15:31Z",
            "finished_at": "2018-05-27T13:15:30Z",
        },
        422,
        "validation_failed",
        "started_at",
    ),
    (
        {"version": "1", "finished_at": "2999-01-01T00:00:00Z"},
        422,
        "validation_failed",
        "finished_at",
    ),
    ({"version": "v" * 256}, 422, "validation_failed", "version"),
    ({"version": "1", "host": "h" * 300}, 422, "validation_failed", "host"),
    ({"version": "1\x002"}, 422, "validation_failed", "version"),
    ({"version": "1", "meta_data": {"k": "a\x00"}}, 422, "validation_failed", "meta_data"),
    ({"version": "1", "stage": "prod uction!"}, 422, "validation_failed", "stage"),
    ({"version": "1", "stage": "s" * 65}, 422, "validation_failed", "stage"),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), BAD)
def test_bad_fields(
    client: Any,
    db: Any,
    auth: dict[str, str],
    body: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    resp = client.post("/components/checkout/deployments", json=body, headers=auth)
    assert resp.status_code == status
    assert resp.json["error"]["code"] == code
    assert field in resp.json["error"]["fields"]
    assert db.execute("SELECT count(*) FROM deployments").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b'{"version": "1"', "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 400, "invalid_body"),
        (b'"v1"', "application/json", 400, "invalid_body"),
        (b"<deployment/>", "application/xml", 415, "unsupported_media_type"),
        (b"version=1", "text/csv", 415, "unsupported_media_type"),
        (b'{"version": "\xff"}', "application/json", 400, "invalid_encoding"),
        # A lone surrogate escape cannot become UTF-8 text: the JSON parser (orjson) refuses it.
        (b'{"version": "\\ud800"}', "application/json", 400, "invalid_json"),
        (b'{"version": "1", "meta_data": {"n": NaN}}', "application/json", 400, "invalid_json"),
        (b"version=1&version=", "application/x-www-form-urlencoded", 422, "validation_failed"),
    ],
)
def test_bad_bodies(
    client: Any,
    db: Any,
    auth: dict[str, str],
    data: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    resp = client.post(
        "/components/checkout/deployments",
        data=data,
        headers={**auth, "Content-Type": content_type},
    )
    assert resp.status_code == status, resp.json
    assert resp.json["error"]["code"] == code
    assert db.execute("SELECT count(*) FROM deployments").fetchone()[0] == 0


def test_oversize_body_is_413(client: Any, auth: dict[str, str]) -> None:
    body = json.dumps({"version": "1", "meta_data": {"k": "x" * 70000}})
    resp = client.post(
        "/components/checkout/deployments",
        data=body,
        headers={**auth, "Content-Type": "application/json"},
    )
    assert resp.status_code == 413
    assert resp.json["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("slug", ["-bad", "bad-", "a" * 70, "caf\u00e9", "a%2Fb", "..", "%00"])
def test_bad_slugs(client: Any, auth: dict[str, str], slug: str) -> None:
    resp = client.post(f"/components/{slug}/deployments", json={"version": "1"}, headers=auth)
    assert resp.status_code in (400, 404)
    assert resp.json["error"]["code"] in ("invalid_slug", "not_found")


def test_unicode_everywhere(client: Any, auth: dict[str, str]) -> None:
    fields = {
        "version": "v1.2.3-\u03b2\U0001f680",
        "code_name": "\u0641\u0646\u0643\u064a \u65e5\u672c",
        "host": "h\u00f6st",
        "meta_data": {"\u7528\u6237": "\u00e9\u00e8", "nested": {"emoji": "\U0001f525"}},
    }
    resp = post(client, auth, **fields)
    assert resp.status_code == 201
    got = client.get(f"/components/checkout/deployments/{resp.json['id']}", headers=auth).json
    assert {k: got[k] for k in fields} == fields


def test_unknown_routes_and_methods_are_json(client: Any, auth: dict[str, str]) -> None:
    resp = client.get("/nope", headers=auth)
    assert resp.status_code == 404
    assert resp.json["error"]["code"] == "not_found"
    resp = client.delete("/components/checkout/deployments", headers=auth)
    assert resp.status_code == 405
    assert resp.json["error"]["code"] == "method_not_allowed"


# --- idempotency ------------------------------------------------------------------------------


def test_idempotency_key(client: Any, db: Any, auth: dict[str, str]) -> None:
    headers = {**auth, "Idempotency-Key": "run-812"}
    first = client.post("/components/checkout/deployments", json={"version": "1"}, headers=headers)
    again = client.post("/components/checkout/deployments", json={"version": "1"}, headers=headers)
    assert first.status_code == 201
    assert again.status_code == 201
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert db.execute("SELECT count(*) FROM deployments").fetchone()[0] == 1
    conflict = client.post(
        "/components/checkout/deployments", json={"version": "2"}, headers=headers
    )
    assert conflict.status_code == 409
    assert conflict.json["error"]["code"] == "idempotency_conflict"
    assert db.execute("SELECT count(*) FROM deployments").fetchone()[0] == 1
    # The key is per component: the same key elsewhere is a new event.
    other = client.post("/components/billing/deployments", json={"version": "1"}, headers=headers)
    assert other.status_code == 201
    assert other.json["id"] != first.json["id"]


# --- listing ----------------------------------------------------------------------------------


def test_list_newest_first_with_filters_and_link_pagination(
    client: Any, auth: dict[str, str]
) -> None:
    ids = []
    for i in range(7):
        resp = post(
            client,
            auth,
            version=f"v{i}",
            stage="staging" if i % 2 else "production",
            result="failed" if i == 3 else "success",
            finished_at=f"2024-01-0{i + 1}T00:00:00Z",
        )
        ids.append(resp.json["id"])
    resp = client.get("/components/checkout/deployments?limit=3", headers=auth)
    seen = [r["id"] for r in resp.json]
    while "Link" in resp.headers:
        match = re.match(r'<([^>]+)>; rel="next"', resp.headers["Link"])
        assert match
        assert "access_token" not in match.group(1)
        resp = client.get(match.group(1), headers=auth)
        seen += [r["id"] for r in resp.json]
    assert seen == list(reversed(ids))

    staging = client.get("/components/checkout/deployments?stage=staging", headers=auth).json
    assert [r["version"] for r in staging] == ["v5", "v3", "v1"]
    failed = client.get("/components/checkout/deployments?result=failure", headers=auth).json
    assert [r["version"] for r in failed] == ["v3"]
    window = client.get(
        "/components/checkout/deployments?since=2024-01-02T00:00:00Z&until=2024-01-04T00:00:00Z",
        headers=auth,
    ).json
    assert [r["version"] for r in window] == ["v2", "v1"]


def all_pages(client: Any, auth: dict[str, str], path: str) -> list[list[dict[str, Any]]]:
    """Every page of a list, following the Link header until a page has none."""
    pages = []
    while True:
        resp = client.get(path, headers=auth)
        assert resp.status_code == 200, resp.json
        pages.append(resp.json)
        if "Link" not in resp.headers:
            return pages
        match = re.match(r'<([^>]+)>; rel="next"', resp.headers["Link"])
        assert match
        path = match.group(1)


def test_events_sharing_a_finished_at_are_paged_each_exactly_once(
    client: Any, auth: dict[str, str]
) -> None:
    # A rollout to five hosts reported with one timestamp, then one later deployment.
    same = [
        post(client, auth, version="v1", host=f"web-{i}", finished_at="2024-01-01T00:00:00Z")
        for i in range(5)
    ]
    later = post(client, auth, version="v2", finished_at="2024-01-02T00:00:00Z")
    pages = all_pages(client, auth, "/components/checkout/deployments?limit=2")
    assert [len(p) for p in pages] == [2, 2, 2]  # the last page is full and has no next link
    seen = [row["id"] for page in pages for row in page]
    # Newest first; within one finished_at, the last received first.
    assert seen == [later.json["id"], *reversed([r.json["id"] for r in same])]


def test_host_and_raw_result_filters(client: Any, auth: dict[str, str]) -> None:
    post(client, auth, version="v1", host="web-1", result="failed")
    post(client, auth, version="v1", host="web-2", result="broken")
    post(client, auth, version="v2", host="web-1", result="passed")
    path = "/components/checkout/deployments"
    by_host = client.get(f"{path}?host=web-1", headers=auth).json
    assert [(r["version"], r["host"]) for r in by_host] == [("v2", "web-1"), ("v1", "web-1")]
    raw = client.get(f"{path}?result=broken", headers=auth).json  # a raw result, not a class
    assert [(r["host"], r["result"]) for r in raw] == [("web-2", "broken")]
    by_class = client.get(f"{path}?result=failure", headers=auth).json
    assert [r["result"] for r in by_class] == ["broken", "failed"]
    both = client.get(f"{path}?host=web-1&result=failure", headers=auth).json
    assert [r["result"] for r in both] == ["failed"]


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=abc", "limit=100000", "cursor=%%%", "cursor=bm9wZQ", "since=never"]
)
def test_bad_list_parameters_are_400(client: Any, auth: dict[str, str], query: str) -> None:
    post(client, auth, version="1")
    resp = client.get(f"/components/checkout/deployments?{query}", headers=auth)
    assert resp.status_code == 400
    assert resp.json["error"]["code"] in ("invalid_parameter", "invalid_cursor")


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        ("/components/checkout/deployments", ["x", "y"]),
        ("/components/checkout/deployments", [1.0, None]),
        ("/releases", ["x", "y"]),
        ("/releases", "x"),
        ("/components", 5),
        ("/deliveries", True),
        ("/deliveries", "7"),
    ],
)
def test_well_formed_but_foreign_cursors_are_400(
    client: Any, auth: dict[str, str], path: str, cursor: Any
) -> None:
    # Valid base64 JSON of the wrong shape must not reach storage (it used to answer 500).
    post(client, auth, version="1")
    text = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode().rstrip("=")
    resp = client.get(f"{path}?cursor={text}", headers=auth)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["code"] == "invalid_cursor"


def test_list_unknown_component_is_404(client: Any, auth: dict[str, str]) -> None:
    resp = client.get("/components/ghost/deployments", headers=auth)
    assert resp.status_code == 404
    assert client.get("/components/ghost/deployments/123", headers=auth).status_code == 404


# --- components and releases ------------------------------------------------------------------


def test_components_show_current_version_per_stage_and_last_build(
    client: Any, auth: dict[str, str]
) -> None:
    post(
        client,
        auth,
        version="v2",
        stage="production",
        finished_at="2024-02-01T00:00:00Z",
        commit_sha="bbb",
    )
    post(client, auth, version="v1", stage="production", finished_at="2024-01-01T00:00:00Z")  # late
    post(
        client,
        auth,
        version="v3",
        stage="production",
        finished_at="2024-03-01T00:00:00Z",
        result="failed",
    )
    post(client, auth, version="v3", stage="staging", finished_at="2024-03-01T00:00:00Z")
    post(
        client,
        auth,
        kind="builds",
        version="v4",
        result="passed",
        finished_at="2024-03-02T00:00:00Z",
    )
    detail = client.get("/components/checkout", headers=auth).json
    assert detail["stages"]["production"]["version"] == "v2"
    assert detail["stages"]["production"]["commit_sha"] == "bbb"
    assert detail["stages"]["staging"]["version"] == "v3"
    assert detail["deployments_count"] == 4
    assert detail["builds_count"] == 1
    assert detail["last_build"]["version"] == "v4"
    assert detail["last_build"]["result_class"] == "success"
    listing = client.get("/components", headers=auth).json
    assert [c["slug"] for c in listing] == ["checkout"]
    assert client.get("/components/ghost", headers=auth).status_code == 404


def test_releases(client: Any, auth: dict[str, str]) -> None:
    created = client.post("/releases", json={"name": "2024.05", "description": "May"}, headers=auth)
    assert created.status_code == 201
    again = client.post("/releases", json={"name": "2024.05"}, headers=auth)
    assert again.status_code == 200
    assert again.json["id"] == created.json["id"]
    post(client, auth, version="1", release="2024.05")
    post(client, auth, slug="billing", version="7", release="2024.05")
    post(client, auth, version="2", release="2024.06")  # joins a release created on the fly
    by_name = client.get("/releases/2024.05", headers=auth).json
    assert by_name["deployments_count"] == 2
    assert {d["component"] for d in by_name["deployments"]} == {"checkout", "billing"}
    by_id = client.get(f"/releases/{created.json['id']}", headers=auth).json
    assert by_id["name"] == "2024.05"
    names = [r["name"] for r in client.get("/releases", headers=auth).json]
    assert sorted(names) == ["2024.05", "2024.06"]
    deployment = client.get("/components/checkout/deployments?version=1", headers=auth).json[0]
    assert deployment["release"] == "2024.05"
    bad = client.post("/releases", json={"description": "no name"}, headers=auth)
    assert bad.status_code == 422
    assert client.get("/releases/ghost", headers=auth).status_code == 404


def test_components_are_paged_in_slug_order(client: Any, auth: dict[str, str]) -> None:
    for slug in ("delta", "alpha", "echo", "charlie", "bravo"):
        post(client, auth, slug=slug, version="1")
    pages = all_pages(client, auth, "/components?limit=2")
    assert [[c["slug"] for c in page] for page in pages] == [
        ["alpha", "bravo"],
        ["charlie", "delta"],
        ["echo"],
    ]


def test_releases_created_by_deployments_are_distinct(client: Any, auth: dict[str, str]) -> None:
    post(client, auth, version="1", release="2024.05")
    post(client, auth, slug="billing", version="7", release="2024.06")
    post(client, auth, version="2", release="2024.06")
    listed = {r["name"]: r for r in client.get("/releases", headers=auth).json}
    assert {name: r["deployments_count"] for name, r in listed.items()} == {
        "2024.05": 1,
        "2024.06": 2,
    }
    assert listed["2024.05"]["id"] != listed["2024.06"]["id"]
    for name, release in listed.items():
        uuid.UUID(release["id"])
        by_id = client.get(f"/releases/{release['id']}", headers=auth).json
        assert by_id["name"] == name
        assert {d["release"] for d in by_id["deployments"]} == {name}


# --- meta -------------------------------------------------------------------------------------


def test_openapi_is_valid_and_complete(app: Any, client: Any) -> None:
    from openapi_spec_validator import validate

    doc = client.get("/openapi.json").json
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    documented = {
        (path, method.upper())
        for path, item in doc["paths"].items()
        for method in item
        if method != "parameters"
    }
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, f"{method} {path} missing from /openapi.json"


def test_landing_page_links_everything(app: Any, client: Any) -> None:
    page = client.get("/").data.decode()
    # Every GET endpoint without a path parameter is linked; the badges are described.
    plain = {r.rule for r in app.url_map.iter_rules() if "GET" in r.methods and "<" not in r.rule}
    assert plain >= {"/metrics", "/healthz", "/openapi.json", "/components", "/deliveries"}
    for link in plain - {"/", "/static/<path:filename>"}:
        assert f'href="{link}"' in page, link
    assert "/badges/components/SLUG/KIND.svg" in page


def test_healthz(client: Any, db: Any) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 503  # no worker runs under the test client: unhealthy
    assert resp.json["database"] == "ok"
    assert resp.json["worker"]["alive"] is False
    heartbeat.beat(db, 1234)
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json["status"] == "ok" and resp.json["worker"]["alive"] is True


def test_no_link_or_page_trusts_the_host_header(client: Any, auth: dict[str, str]) -> None:
    """Issue 17, item 9: a forged Host made the next-page Link and the landing page point at
    the attacker's host. Links are relative now."""
    evil = {"Host": "evil.example"}
    for n in range(3):
        post(client, auth, version=f"v{n}")
    resp = client.get("/components/checkout/deployments?limit=1", headers={**auth, **evil})
    link = resp.headers["Link"]
    assert link.startswith("</components/checkout/deployments?"), link
    assert "evil" not in link
    page = client.get("/", headers=evil).get_data(as_text=True)
    assert "evil" not in page
