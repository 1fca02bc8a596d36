"""Bugsnag release-groups poller: parsing documented objects, and talking to a local fake Bugsnag."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug.datastructures import MultiDict

from exporter.errors import PollError
from exporter.http import retry_after_seconds
from exporter.pollers.bugsnag import (
    BugsnagProjectTargets,
    BugsnagSource,
    parse_project,
    parse_release_groups,
    poll,
)

TOKEN = "bugsnag-personal-s3cr3t-token"
PROJECT = "515fb9337c1074f6fd000003"
PROJECT_PATH = f"/projects/{PROJECT}"
GROUPS_PATH = f"/projects/{PROJECT}/release_groups"
HEADERS = {"Authorization": f"token {TOKEN}", "X-Version": "2"}
Load = Callable[[str], Any]


def make_source(httpserver: HTTPServer, **changes: Any) -> BugsnagSource:
    values: dict[str, Any] = {
        "name": "bugsnag",
        "token": TOKEN,
        "project_ids": (PROJECT,),
        "release_stages": ("production",),
        "base_url": httpserver.url_for("/").rstrip("/"),
        "per_page": 3,
    }
    return BugsnagSource(**{**values, **changes})


def stage_query(stage: str) -> MultiDict[str, str]:
    return MultiDict([("release_stage_name", stage), ("per_page", "3")])


def serve_good(httpserver: HTTPServer, load_fixture: Load) -> None:
    httpserver.expect_ordered_request(
        PROJECT_PATH, method="GET", headers=HEADERS
    ).respond_with_json(load_fixture("bugsnag/project_with_targets"))
    httpserver.expect_ordered_request(
        GROUPS_PATH, method="GET", headers=HEADERS, query_string=stage_query("production")
    ).respond_with_json(
        load_fixture("bugsnag/release_groups_stability"), headers={"X-Total-Count": "3"}
    )


# --- parsing fixture files -----------------------------------------------------------------


def test_release_groups_with_stability(load_fixture: Load) -> None:
    records = parse_release_groups(PROJECT, load_fixture("bugsnag/release_groups_stability"))
    by_version = {r.app_version: r for r in records}
    assert list(by_version) == ["1.2.0", "1.1.9", "1.3.0-beta"]
    current = by_version["1.2.0"]
    assert current.project_id == PROJECT
    assert current.release_stage == "production"
    assert current.release_group_id == "60a1b2c3d4e5f60718293a4b"
    assert (current.total_sessions, current.unhandled_sessions) == (48000, 96)
    assert (current.users_seen, current.users_with_unhandled) == (9100, 40)
    assert current.crash_free_sessions == pytest.approx(1 - 96 / 48000)  # 0.998
    assert current.crash_free_users == pytest.approx(1 - 40 / 9100)
    assert current.first_released_at == "2024-05-01T12:00:00.000Z"
    assert current.released_at == 1714564800.0
    assert current.sessions_by_status == {"unhandled": 96}


def test_zero_sessions_is_no_data_not_zero_or_full(load_fixture: Load) -> None:
    records = parse_release_groups(PROJECT, load_fixture("bugsnag/release_groups_stability"))
    beta = next(r for r in records if r.app_version == "1.3.0-beta")
    assert beta.total_sessions == 0
    assert beta.crash_free_sessions is None
    assert beta.crash_free_users is None


def test_release_groups_without_stability_monitoring(load_fixture: Load) -> None:
    records = parse_release_groups(PROJECT, load_fixture("bugsnag/release_groups_no_stability"))
    assert [r.app_version for r in records] == ["2.0.0", "1.9.0"]
    for record in records:
        assert record.total_sessions is None
        assert record.unhandled_sessions is None
        assert record.users_seen is None
        assert record.crash_free_sessions is None
        assert record.crash_free_users is None
        assert record.sessions_by_status == {}


def test_missing_stage_falls_back_and_groups_without_version_are_skipped() -> None:
    groups = [{"app_version": "1.0.0"}, {"release_stage_name": "production"}]
    (record,) = parse_release_groups(PROJECT, groups, release_stage="beta")
    assert (record.app_version, record.release_stage, record.released_at) == ("1.0.0", "beta", None)


def test_release_dates_without_an_offset_are_utc(local_timezone: int) -> None:
    groups = [
        {"app_version": v, "release_stage_name": "production", "first_released_at": at}
        for v, at in (
            ("1", "2024-05-01T12:00:00.000Z"),
            ("2", "2024-05-01T12:00:00"),
            ("3", "soon"),
        )
    ]
    released = {r.app_version: r.released_at for r in parse_release_groups(PROJECT, groups)}
    assert released == {"1": 1714564800.0, "2": 1714564800.0, "3": None}


@pytest.mark.parametrize(
    "payload",
    [
        {"release_groups": []},
        ["not an object"],
        [{"app_version": "1", "release_stage_name": "p", "total_sessions_count": "12"}],
    ],
)
def test_release_groups_of_the_wrong_shape(payload: Any) -> None:
    with pytest.raises(PollError):
        parse_release_groups(PROJECT, payload)


def test_project_with_targets(load_fixture: Load) -> None:
    assert parse_project(load_fixture("bugsnag/project_with_targets")) == BugsnagProjectTargets(
        project_id=PROJECT, target_type="user", target_stability=0.995, critical_stability=0.98
    )


def test_project_without_targets(load_fixture: Load) -> None:
    assert parse_project(load_fixture("bugsnag/project_without_targets")) == BugsnagProjectTargets(
        project_id="515fb9337c1074f6fd000004",
        target_type=None,
        target_stability=None,
        critical_stability=None,
    )


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"name": "no id"},
        {"id": PROJECT, "target_stability": {"value": 99.5}},
        {"id": PROJECT, "target_stability": 0.9},
    ],
)
def test_project_of_the_wrong_shape(payload: Any) -> None:
    with pytest.raises(PollError):
        parse_project(payload)


# --- poll() against a local fake Bugsnag ---------------------------------------------------


def test_poll_sends_the_documented_requests(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load
) -> None:
    serve_good(httpserver, load_fixture)

    result = poll(http_session, make_source(httpserver), sleep=pytest.fail)

    httpserver.check_assertions()
    assert result.source == "bugsnag"
    assert result.requests == 2
    assert result.projects == (PROJECT,)
    assert [r.app_version for r in result.records] == ["1.2.0", "1.1.9", "1.3.0-beta"]
    assert result.targets == (BugsnagProjectTargets(PROJECT, "user", 0.995, 0.98),)


def test_every_release_stage_is_listed(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load
) -> None:
    serve_good(httpserver, load_fixture)
    httpserver.expect_ordered_request(
        GROUPS_PATH, headers=HEADERS, query_string=stage_query("staging")
    ).respond_with_json(load_fixture("bugsnag/release_groups_staging"))

    result = poll(http_session, make_source(httpserver, release_stages=("production", "staging")))

    httpserver.check_assertions()
    stages = {(r.release_stage, r.app_version) for r in result.records}
    assert ("staging", "1.3.0") in stages
    assert ("production", "1.2.0") in stages


def test_pagination_follows_the_next_link_as_given(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load
) -> None:
    next_url = (
        httpserver.url_for(GROUPS_PATH)
        + "?release_stage_name=production&per_page=3&page_token=abc%3D%3D"
    )
    httpserver.expect_ordered_request(PROJECT_PATH).respond_with_json(
        load_fixture("bugsnag/project_without_targets")
    )
    httpserver.expect_ordered_request(
        GROUPS_PATH, query_string=stage_query("production")
    ).respond_with_json(
        load_fixture("bugsnag/release_groups_stability"),
        headers={"Link": f'<{next_url}>; rel="next"', "X-Total-Count": "4"},
    )
    httpserver.expect_ordered_request(
        GROUPS_PATH,
        headers=HEADERS,
        query_string="release_stage_name=production&per_page=3&page_token=abc%3D%3D",
    ).respond_with_json(
        load_fixture("bugsnag/release_groups_page2"), headers={"X-Total-Count": "4"}
    )

    result = poll(http_session, make_source(httpserver))

    httpserver.check_assertions()
    assert [r.app_version for r in result.records] == ["1.2.0", "1.1.9", "1.3.0-beta", "1.1.8"]
    assert result.requests == 3
    # a project without targets stores "no target", not 0
    assert result.targets[0].target_stability is None


def test_next_link_to_another_host_is_refused(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load
) -> None:
    httpserver.expect_request(PROJECT_PATH).respond_with_json(
        load_fixture("bugsnag/project_with_targets")
    )
    httpserver.expect_request(GROUPS_PATH).respond_with_json(
        [],
        headers={
            "Link": '<https://evil.example/projects/x/release_groups?page_token=1>; rel="next"'
        },
    )
    with pytest.raises(PollError, match="next page link leaves"):
        poll(http_session, make_source(httpserver))
    assert len(httpserver.log) == 2


def test_429_honours_retry_after(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load, sleeps: list[float]
) -> None:
    httpserver.expect_ordered_request(PROJECT_PATH).respond_with_data(
        "Too Many Requests", status=429, headers={"Retry-After": "7", "X-RateLimit-Remaining": "0"}
    )
    serve_good(httpserver, load_fixture)

    result = poll(http_session, make_source(httpserver), sleep=sleeps.append)

    assert sleeps == [7.0]
    assert len(result.records) == 3
    assert result.requests == 3


def test_429_that_never_ends_gives_up(
    httpserver: HTTPServer, http_session: requests.Session, sleeps: list[float]
) -> None:
    httpserver.expect_request(PROJECT_PATH).respond_with_data(
        "Too Many Requests", status=429, headers={"Retry-After": "2"}
    )
    with pytest.raises(PollError, match="HTTP 429") as caught:
        poll(http_session, make_source(httpserver), sleep=sleeps.append)
    assert caught.value.status == 429
    assert sleeps == [2.0, 2.0]


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_token(
    httpserver: HTTPServer, http_session: requests.Session, status: int
) -> None:
    httpserver.expect_request(PROJECT_PATH).respond_with_json(
        {"errors": [f"bad token {TOKEN}"]}, status=status
    )
    with pytest.raises(PollError) as caught:
        poll(http_session, make_source(httpserver))
    message = str(caught.value)
    assert f"HTTP {status}" in message
    assert "rejected the auth token" in message
    assert TOKEN not in message
    assert caught.value.status == status
    assert TOKEN not in repr(make_source(httpserver))


def test_unknown_project(httpserver: HTTPServer, http_session: requests.Session) -> None:
    httpserver.expect_request(PROJECT_PATH).respond_with_json({"errors": ["Not found"]}, status=404)
    with pytest.raises(PollError, match=f"unknown project '{PROJECT}'.*HTTP 404"):
        poll(http_session, make_source(httpserver))


def test_502_is_retried_by_the_session_then_succeeds(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load
) -> None:
    httpserver.expect_ordered_request(PROJECT_PATH).respond_with_data("bad gateway", status=502)
    serve_good(httpserver, load_fixture)

    result = poll(http_session, make_source(httpserver))

    assert len(result.records) == 3
    assert len(httpserver.log) == 3


def test_server_error_on_release_groups(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load
) -> None:
    httpserver.expect_request(PROJECT_PATH).respond_with_json(
        load_fixture("bugsnag/project_with_targets")
    )
    httpserver.expect_request(GROUPS_PATH).respond_with_data('{"errors": ["boom"]}', status=500)
    with pytest.raises(PollError, match=r"HTTP 500: .*boom") as caught:
        poll(http_session, make_source(httpserver))
    assert caught.value.status == 500
    assert caught.value.url is not None and GROUPS_PATH in caught.value.url


def test_body_that_is_not_json(httpserver: HTTPServer, http_session: requests.Session) -> None:
    httpserver.expect_request(PROJECT_PATH).respond_with_data("<html>maintenance</html>")
    with pytest.raises(PollError, match="not JSON"):
        poll(http_session, make_source(httpserver))


def test_release_groups_that_are_not_a_list(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load
) -> None:
    httpserver.expect_request(PROJECT_PATH).respond_with_json(
        load_fixture("bugsnag/project_with_targets")
    )
    httpserver.expect_request(GROUPS_PATH).respond_with_json({"release_groups": []})
    with pytest.raises(PollError, match="unexpected shape"):
        poll(http_session, make_source(httpserver))


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7.0), ("Thu, 01 Jan 1970 00:16:52 GMT", 12.0), ("", None), ("soon", None)],
)
def test_retry_after_accepts_seconds_and_http_dates(value: str, expected: float | None) -> None:
    response = requests.Response()
    response.headers["Retry-After"] = value
    assert retry_after_seconds(response, now=lambda: 1000.0) == expected
