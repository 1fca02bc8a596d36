"""Ingest validation as CI jobs meet it, through the HTTP API and read back as stored: time
zones, the spellings of results, field limits and the error each bad field gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from exporter.errors import ValidationError
from exporter.ingest.validation import (
    EARLIEST,
    LATEST,
    TIMESTAMP_HELP,
    parse_timestamp,
    validate_event,
)
from exporter.names import SLUG_RULE, normalize_slug, tag_of, version_of
from storage import dora


def post(client: Any, auth: dict[str, str], kind: str = "deployments", **fields: Any) -> Any:
    return client.post(f"/components/checkout/{kind}", json=fields, headers=auth)


def stored(client: Any, auth: dict[str, str], resp: Any, kind: str = "deployments") -> Any:
    assert resp.status_code == 201, resp.json
    got = client.get(f"/components/checkout/{kind}/{resp.json['id']}", headers=auth)
    assert got.status_code == 200
    return got.json


# --- time -------------------------------------------------------------------------------------


def test_timestamps_without_an_offset_are_utc_whatever_the_local_zone(
    client: Any, auth: dict[str, str], local_timezone: int
) -> None:
    first = post(
        client,
        auth,
        version="1",
        started_at="2024-03-01T10:00:00",
        finished_at="2024-03-01T10:05:30.250",
    )
    got = stored(client, auth, first)
    assert (got["started_at"], got["finished_at"], got["duration_seconds"]) == (
        "2024-03-01T10:00:00.000Z",
        "2024-03-01T10:05:30.250Z",
        330.25,
    )
    post(client, auth, version="2", finished_at="2024-03-01T12:00:00")
    path = "/components/checkout/deployments"
    window = client.get(
        f"{path}?since=2024-03-01T10:05:30.250&until=2024-03-01T12:00:00", headers=auth
    )
    assert [r["version"] for r in window.json] == ["1"]  # since is inclusive, until exclusive
    later = client.get(f"{path}?since=2024-03-01T10:05:30.251", headers=auth)
    assert [r["version"] for r in later.json] == ["2"]


def test_started_at_equal_to_finished_at_is_a_zero_duration(
    client: Any, auth: dict[str, str]
) -> None:
    at = "2024-03-01T10:00:00Z"
    got = stored(client, auth, post(client, auth, version="1", started_at=at, finished_at=at))
    assert got["duration_seconds"] == 0.0


def test_finished_at_may_be_a_little_ahead_of_the_server_clock(
    client: Any, auth: dict[str, str]
) -> None:
    # A CI runner whose clock runs ahead: accepted up to max_future_seconds (300 by default).
    now = datetime.now(UTC)
    ahead = (now + timedelta(seconds=300) - timedelta(seconds=30)).isoformat()
    assert post(client, auth, version="1", finished_at=ahead).status_code == 201
    too_far = (now + timedelta(seconds=300 + 30)).isoformat()
    resp = post(client, auth, version="2", finished_at=too_far)
    assert resp.status_code == 422
    assert resp.json["error"]["fields"] == {
        "finished_at": "is more than 300 seconds in the future (check the sender's clock; "
        "the limit is the max_future_seconds setting)"
    }


# --- results ----------------------------------------------------------------------------------

# Result spellings as CI systems send them (GitHub Actions conclusions, GitLab and Jenkins
# statuses, Buildkite/CircleCI states, deploy tools), mapped onto the five result classes.
SPELLINGS = {
    "success": "success",
    "SUCCESS": "success",
    "succeeded": "success",
    "successful": "success",
    "succeed": "success",
    "passed": "success",
    "pass": "success",
    "ok": "success",
    "done": "success",
    "complete": "success",
    "completed": "success",
    "deployed": "success",
    "green": "success",
    "failure": "failure",
    "FAILURE": "failure",
    "failed": "failure",
    "fail": "failure",
    "failing": "failure",
    "broken": "failure",
    "red": "failure",
    "rolled_back": "failure",
    "rolled-back": "failure",
    "rolled back": "failure",
    "rollback": "failure",
    "rolledback": "failure",
    "error": "error",
    "errored": "error",
    "erred": "error",
    "timeout": "error",
    "timed_out": "error",
    "timed out": "error",
    "Timed-Out": "error",
    "timedout": "error",
    "infrastructure_fail": "error",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "cancel": "cancelled",
    "aborted": "cancelled",
    "ABORTED": "cancelled",
    "abort": "cancelled",
    "skipped": "cancelled",
    "stopped": "cancelled",
    "killed": "cancelled",
    "unstable": "other",
    "neutral": "other",
}


def test_result_spellings_ci_systems_send(client: Any, auth: dict[str, str]) -> None:
    got = {}
    for spelling in SPELLINGS:
        build = stored(
            client, auth, post(client, auth, "builds", version="1", result=spelling), "builds"
        )
        assert build["result"] == spelling  # the raw result is kept as sent
        got[spelling] = build["result_class"]
    assert got == SPELLINGS


# --- field values -----------------------------------------------------------------------------


def test_numbers_where_text_is_expected_are_kept_as_text(client: Any, auth: dict[str, str]) -> None:
    # CI templates often render build numbers unquoted: "version": {{ BUILD_NUMBER }}.
    got = stored(client, auth, post(client, auth, "builds", version=42, tag=7, branch=0), "builds")
    assert (got["version"], got["tag"], got["branch"]) == ("42", "7", "0")


def test_values_at_their_limits_are_accepted_and_trimmed(client: Any, auth: dict[str, str]) -> None:
    fields = {
        "version": "v" * 255,
        "result": "r" * 64,
        "commit_sha": "c" * 128,
        "branch": "b" * 255,
        "tag": "t" * 255,
        "code_name": "n" * 255,
        "host": "h" * 255,
        "release": "R" * 255,
        "stage": "s" * 64,
    }
    got = stored(client, auth, post(client, auth, **fields))
    assert {k: got[k] for k in fields} == fields
    url = "https://ci.example.com/" + "u" * (2048 - 23)
    build = stored(client, auth, post(client, auth, "builds", version=" 1.0 ", url=url), "builds")
    assert (build["version"], build["url"]) == ("1.0", url)


def test_meta_data_holds_any_json_up_to_16_kib(client: Any, auth: dict[str, str]) -> None:
    meta = {"tags": ["blue", "canary"], "attempt": 2, "nested": {"ok": True, "none": None}}
    assert (
        stored(client, auth, post(client, auth, version="1", meta_data=meta))["meta_data"] == meta
    )
    # The limit counts UTF-8 bytes of the stored (compact) JSON: {"k":"..."} is 8 bytes around
    # the text.
    at_limit = {"k": "x" * (16 * 1024 - 8)}
    assert post(client, auth, version="2", meta_data=at_limit).status_code == 201
    accented = {"k": "\u00e9" * 8000}  # 2 bytes each: 16008 bytes
    assert post(client, auth, version="3", meta_data=accented).status_code == 201
    resp = post(client, auth, version="4", meta_data={"k": "x" * (16 * 1024 - 7)})
    assert resp.status_code == 422
    assert resp.json["error"]["fields"] == {"meta_data": "must be at most 16384 bytes as JSON"}


def test_fields_of_the_other_kind_are_reported_as_ignored(
    client: Any, auth: dict[str, str]
) -> None:
    build = post(client, auth, "builds", version="1", stage="production", host="web-1", release="r")
    assert build.status_code == 201
    assert build.json["ignored_fields"] == ["host", "release", "stage"]
    deployment = post(client, auth, version="1", url="https://ci/1", access_token="not-a-field")
    assert deployment.json["ignored_fields"] == ["url"]  # access_token is how auth may come


BAD_FIELDS = [
    ({"result": "r" * 65}, "result", "must be at most 64 characters"),
    ({"result": ["passed"]}, "result", "must be a string, got list"),
    ({"commit_sha": "c" * 129}, "commit_sha", "must be at most 128 characters"),
    ({"branch": "b" * 256}, "branch", "must be at most 255 characters"),
    ({"branch": {"name": "main"}}, "branch", "must be a string, got dict"),
    ({"tag": "t" * 256}, "tag", "must be at most 255 characters"),
    ({"tag": 1.5}, "tag", "must be a string, got float"),
    ({"code_name": "n" * 256}, "code_name", "must be at most 255 characters"),
    ({"code_name": "Funky\x00"}, "code_name", "must be valid Unicode without NUL characters"),
    ({"release": "R" * 256}, "release", "must be at most 255 characters"),
    ({"release": ["2024.05"]}, "release", "must be a string, got list"),
    ({"host": False}, "host", "must be a string, got bool"),
    (
        {"started_at": 1527426931000},  # Date.now() in JavaScript: milliseconds, not seconds
        "started_at",
        "must be Unix epoch seconds (this looks like milliseconds)",
    ),
    (
        {"started_at": "27/05/2018 13:15"},
        "started_at",
        "must be an ISO 8601 timestamp or Unix epoch seconds, such as 2018-05-27T13:15:30.311Z "
        "or 1527426930.311",
    ),
    ({"finished_at": "x" * 65}, "finished_at", "must be at most 64 characters"),
    ({"stage": "s" * 65}, "stage", "must be at most 64 characters"),
    (
        {"started_at": "2018-05-27T13:15:31Z", "finished_at": "2018-05-27T13:15:30Z"},
        "started_at",
        "is after finished_at",
    ),
    (
        {"stage": "prod uction"},
        "stage",
        "must be 1-64 characters of a-z, 0-9, '.', '_', '-' starting with a letter or digit",
    ),
    ({"meta_data": ["a", "b"]}, "meta_data", "must be an object, got list"),
    (
        {"meta_data": {"tags": ["ok", "a\x00"]}},
        "meta_data",
        "must be valid Unicode without NUL characters",
    ),
    ({"meta_data": {"bad\x00key": 1}}, "meta_data", "must be valid Unicode without NUL characters"),
]


@pytest.mark.parametrize(("fields", "field", "message"), BAD_FIELDS)
def test_each_bad_field_is_named_with_what_to_fix(
    client: Any, db: Any, auth: dict[str, str], fields: dict[str, Any], field: str, message: str
) -> None:
    resp = post(client, auth, version="1", **fields)
    assert resp.status_code == 422, resp.json
    assert resp.json["error"]["code"] == "validation_failed"
    assert resp.json["error"]["fields"] == {field: message}
    assert db.execute("SELECT count(*) FROM deployments").fetchone()[0] == 0


def test_bad_url_of_a_build(client: Any, auth: dict[str, str]) -> None:
    resp = post(client, auth, "builds", version="1", url="https://ci/" + "u" * (2049 - 11))
    assert resp.status_code == 422
    assert resp.json["error"]["fields"] == {"url": "must be at most 2048 characters"}


def test_a_nul_in_a_meta_data_key_is_refused(client: Any, auth: dict[str, str]) -> None:
    resp = client.post(
        "/components/checkout/deployments",
        data=b'{"version": "1", "meta_data": {"a\\u0000b": 1}}',
        headers={**auth, "Content-Type": "application/json"},
    )
    assert resp.status_code == 422
    assert resp.json["error"]["fields"] == {
        "meta_data": "must be valid Unicode without NUL characters"
    }


def test_a_lone_surrogate_is_refused_by_validation_too() -> None:
    # The HTTP body parser (orjson) already refuses "\\ud800" with a 400; validation keeps its
    # own check for other callers (a receiver's payload), where it cannot be stored as UTF-8.
    with pytest.raises(ValidationError) as caught:
        validate_event(
            "deployment",
            {"version": "1\ud800", "meta_data": {"\ud800": 1}},
            default_stage="production",
        )
    assert caught.value.fields == {
        "version": "must be valid Unicode without NUL characters",
        "meta_data": "must be valid Unicode without NUL characters",
    }


# --- releases ---------------------------------------------------------------------------------


def test_release_description_and_meta_data_are_kept(client: Any, auth: dict[str, str]) -> None:
    body = {
        "name": " 2024.05 ",
        "description": "May: new checkout",
        "meta_data": {"jira": ["REL-5"]},
    }
    created = client.post("/releases", json=body, headers=auth)
    assert created.status_code == 201
    got = client.get("/releases/2024.05", headers=auth).json
    assert (got["name"], got["description"], got["meta_data"]) == (
        "2024.05",
        "May: new checkout",
        {"jira": ["REL-5"]},
    )
    bare = client.post("/releases", json={"name": "2024.06"}, headers=auth).json
    assert (bare["description"], bare["meta_data"]) == (None, {})


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"description": "no name"}, {"name": "is required"}),
        (
            {"name": "r", "description": "d" * 4097},
            {"description": "must be at most 4096 characters"},
        ),
        ({"name": "r", "meta_data": "x"}, {"meta_data": "must be an object, got str"}),
        (
            {"name": "n" * 256, "meta_data": {"k": "\x00"}},
            {
                "name": "must be at most 255 characters",
                "meta_data": "must be valid Unicode without NUL characters",
            },
        ),
    ],
)
def test_bad_releases_name_each_field(
    client: Any, auth: dict[str, str], body: dict[str, Any], fields: dict[str, str]
) -> None:
    resp = client.post("/releases", json=body, headers=auth)
    assert resp.status_code == 422
    assert resp.json["error"]["fields"] == fields
    assert client.get("/releases", headers=auth).json == []


def test_a_release_description_may_be_long(client: Any, auth: dict[str, str]) -> None:
    notes = "Release notes: " + "n" * (4096 - 15)
    created = client.post("/releases", json={"name": "r", "description": notes}, headers=auth)
    assert created.status_code == 201
    assert client.get("/releases/r", headers=auth).json["description"] == notes


# --- component slugs --------------------------------------------------------------------------


def test_slugs_are_normalised_or_refused_with_the_rule(client: Any, auth: dict[str, str]) -> None:
    resp = client.post(
        "/components/Billing_API  v2/deployments", json={"version": "1"}, headers=auth
    )
    assert resp.status_code == 201
    assert resp.headers["Location"].startswith("/components/billing-api-v2/deployments/")
    slug = "a" * 90
    bad = client.post(f"/components/{slug}/deployments", json={"version": "1"}, headers=auth)
    assert bad.status_code == 400
    assert bad.json["error"] == {
        "code": "invalid_slug",
        "message": f"invalid component slug {'a' * 80!r}",  # long input is cut in the message
        "fields": {
            "slug": "component slug must be 1-64 characters of a-z, 0-9, '.', '-' "
            "starting and ending with a letter or digit (capitals, spaces and '_' are accepted "
            "and normalised)"
        },
    }


# --- a deployment's commits (DORA lead time) --------------------------------------------------

OK_COMMIT = {"sha": "a1", "timestamp": "2024-03-01T09:00:00Z"}


@pytest.mark.parametrize(
    ("commits", "fields"),
    [
        ("a1b2c3", {"commits": "must be a list of {sha, timestamp} objects"}),
        (
            [OK_COMMIT] * 1001,
            {"commits": "at most 1000 commits; send the newest 1000"},
        ),
        (["a1b2c3"], {"commits[0].sha": "is required", "commits[0].timestamp": "is required"}),
        ([{"sha": "a1b2c3"}], {"commits[0].timestamp": "is required"}),
        (
            [OK_COMMIT, {"sha": "b" * 129, "timestamp": "2024-03-01T09:00:00Z"}],
            {"commits[1].sha": "must be at most 128 characters"},
        ),
        (
            [{"sha": "a1", "timestamp": "x" * 65}],
            {"commits[0].timestamp": "must be at most 64 characters"},
        ),
        (
            [OK_COMMIT, {"sha": "a1", "timestamp": "yesterday"}],
            {"commits[1].timestamp": "must be an ISO 8601 timestamp"},
        ),
    ],
)
def test_bad_commits_name_the_commit_and_field(
    client: Any, auth: dict[str, str], commits: Any, fields: dict[str, str]
) -> None:
    resp = post(client, auth, version="1", commits=commits)
    assert resp.status_code == 422
    assert resp.json["error"]["fields"] == fields


def test_commit_times_without_an_offset_are_utc(
    client: Any, auth: dict[str, str], db: Any, local_timezone: int
) -> None:
    commits = [OK_COMMIT] * 999 + [{"sha": "b2", "timestamp": "2024-03-01T09:30:00"}]
    resp = post(client, auth, version="1", finished_at="2024-03-01T10:00:00Z", commits=commits)
    assert resp.status_code == 201, resp.json  # 1000 commits: the limit itself is fine
    leads = sorted(s for _, s in dora.lead_times(db, "checkout", "production", 0))
    assert leads == [1800.0, 3600.0]  # one row per distinct commit


# --- the edges of the accepted ranges ----------------------------------------------------------


def test_a_started_at_in_the_future_is_named_as_such() -> None:
    now = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    edge = {"version": "1", "finished_at": "2024-03-01T12:05:00Z"}  # exactly 300 s ahead
    event, _ = validate_event("deployment", edge, default_stage="production", now=now)
    assert event["finished_at"] == now + timedelta(seconds=300)
    with pytest.raises(ValidationError) as caught:
        validate_event(
            "deployment",
            {"version": "1", "started_at": "2024-03-01T12:05:01Z", "finished_at": "2025-01-01"},
            default_stage="production",
            now=now,
        )
    future = (
        "is more than 300 seconds in the future (check the sender's clock; "
        "the limit is the max_future_seconds setting)"
    )
    assert caught.value.fields == {"started_at": future, "finished_at": future}


def test_timestamps_at_the_edges_of_the_range() -> None:
    assert parse_timestamp(0) == EARLIEST  # 1970-01-01T00:00:00Z as epoch seconds
    assert parse_timestamp(LATEST.timestamp()) == datetime.fromtimestamp(LATEST.timestamp(), UTC)
    assert parse_timestamp("2999-12-31T23:59:59.999999Z") == LATEST
    with pytest.raises(ValueError, match=r"^must be Unix epoch seconds \(this looks like milli"):
        parse_timestamp(1e11)  # the first value read as milliseconds
    # A 64-character timestamp (a long fraction) is read; a 65th character is refused.
    sixty_four = "2024-03-01T10:00:00." + "1" * 38 + "+00:00"
    assert len(sixty_four) == 64
    assert parse_timestamp(sixty_four) == datetime(2024, 3, 1, 10, 0, 0, 111111, tzinfo=UTC)
    with pytest.raises(ValueError) as caught:
        parse_timestamp(sixty_four.replace("+00:00", "1+00:00"))
    assert str(caught.value) == TIMESTAMP_HELP


def test_meta_data_may_nest_exactly_32_levels(client: Any, auth: dict[str, str]) -> None:
    def nested(levels: int) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        for _ in range(levels - 1):
            meta = {"a": meta}
        return meta

    assert post(client, auth, version="1", meta_data=nested(32)).status_code == 201
    resp = post(client, auth, version="2", meta_data=nested(33))
    assert resp.status_code == 422
    assert resp.json["error"]["fields"] == {"meta_data": "must nest at most 32 levels deep"}


def test_an_incident_without_its_start_is_told_it_is_required(
    client: Any, auth: dict[str, str]
) -> None:
    resp = client.post("/components/checkout/incidents", json={"title": "down"}, headers=auth)
    assert resp.status_code == 422
    assert resp.json["error"]["fields"] == {"started_at": "is required"}


def test_a_slug_that_does_not_normalise_is_refused_with_the_rule() -> None:
    # Receivers turn repository names into slugs; what cannot become one says why.
    with pytest.raises(ValidationError) as caught:
        normalize_slug("-" + "x" * 100)
    assert str(caught.value) == f"invalid component slug {'-' + 'x' * 79!r}"
    assert caught.value.fields == {"slug": SLUG_RULE}


@pytest.mark.parametrize(
    ("ref", "tag"),
    [
        (None, None),
        ("", None),
        ("refs/tags/release-7", "release-7"),
        ("v1.2.3", "v1.2.3"),
        ("2024.05.1-rc.1", "2024.05.1-rc.1"),
        ("main", None),
        ("refs/heads/v1.2", None),
    ],
)
def test_the_tag_a_ref_names(ref: str | None, tag: str | None) -> None:
    assert tag_of(ref) == tag


def test_the_version_an_event_reports() -> None:
    sha = "  0123456789abcdef0123  "
    assert version_of(" 1.0 ", "v2", sha) == "1.0"
    assert version_of("  ", "v2", sha) == "v2"
    assert version_of(None, None, sha) == "0123456789ab"  # the short SHA, 12 characters
    assert version_of(None, None, "   ") is None
    assert version_of(None, None, None) is None
