"""Sentry sessions poller: parsing documented answers, and talking to a local fake Sentry."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response
from werkzeug.datastructures import MultiDict

from exporter.errors import PollError
from exporter.http import make_session
from exporter.pollers.sentry import (
    TABLE_KEYS,
    SentryReleaseHealth,
    SentrySource,
    from_table,
    parse_buckets,
    parse_sessions,
    poll,
)
from exporter.settings import Table

TOKEN = "sntrys_s3cr3t-token-value"
PATH = "/api/0/organizations/acme/sessions/"
Load = Callable[[str], Any]


def make_source(httpserver: HTTPServer, **changes: Any) -> SentrySource:
    values: dict[str, Any] = {
        "name": "sentry",
        "organization": "acme",
        "token": TOKEN,
        "base_url": httpserver.url_for("/"),
        "projects": (42, 43),
        "environments": ("production", "staging"),
    }
    return SentrySource(**{**values, **changes})


def documented_query(
    *, by_status: bool, projects: tuple[str, ...] = ("42", "43"), cursor: str | None = None
) -> MultiDict[str, str]:
    """The query the reference documents, written out by hand (not built by the code under test)."""
    fields = (
        ["sum(session)"]
        if by_status
        else [
            "sum(session)",
            "count_unique(user)",
            "crash_free_rate(session)",
            "crash_free_rate(user)",
        ]
    )
    group_by = ["project", "release", "environment"] + (["session.status"] if by_status else [])
    items = [("field", f) for f in fields] + [("groupBy", g) for g in group_by]
    items += [("project", p) for p in projects]
    items += [("environment", "production"), ("environment", "staging")]
    items += [("statsPeriod", "24h"), ("interval", "1h")]
    items += [("includeSeries", "1" if by_status else "0")]
    # 24 hourly buckets (+1 for the floored start): 10000 // 25 - 1 groups a page.
    items += [("per_page", "399")]
    if cursor:
        items.append(("cursor", cursor))
    return MultiDict(items)


def link_header(httpserver: HTTPServer, next_cursor: str, *, more: bool) -> str:
    """Sentry's Link format: both links always present; `results` says whether a page follows."""
    url = httpserver.url_for(PATH)
    return (
        f'<{url}?cursor=0:0:1>; rel="previous"; results="false"; cursor="0:0:1", '
        f'<{url}?cursor={next_cursor}>; rel="next"; results="{"true" if more else "false"}"; '
        f'cursor="{next_cursor}"'
    )


def serve_good(httpserver: HTTPServer, load_fixture: Load) -> None:
    last = {"Link": link_header(httpserver, "0:5000:0", more=False)}
    httpserver.expect_ordered_request(
        PATH, method="GET", query_string=documented_query(by_status=False)
    ).respond_with_json(load_fixture("sentry/sessions_totals"), headers=last)
    httpserver.expect_ordered_request(
        PATH, method="GET", query_string=documented_query(by_status=True)
    ).respond_with_json(load_fixture("sentry/sessions_by_status"), headers=last)


# --- parse_sessions on fixture files -------------------------------------------------------


def test_parse_totals_and_statuses(load_fixture: Load) -> None:
    records = parse_sessions(
        load_fixture("sentry/sessions_totals"), load_fixture("sentry/sessions_by_status")
    )
    by_key = {(r.project_id, r.release, r.environment): r for r in records}
    assert len(records) == 5
    assert by_key[42, "checkout@1.2.0", "production"] == SentryReleaseHealth(
        project_id=42,
        release="checkout@1.2.0",
        environment="production",
        total_sessions=1840,
        users=920,
        crash_free_sessions=pytest.approx(1 - 5 / 1840),
        crash_free_users=pytest.approx(0.99891, abs=1e-5),
        sessions_by_status={"healthy": 1800, "errored": 35, "crashed": 5, "abnormal": 0},
    )
    # the newest metrics backend adds an `unhandled` status; it is kept when present
    assert by_key[42, "checkout@1.1.9", "production"].sessions_by_status["unhandled"] == 0
    staging = by_key[42, "checkout@1.2.0", "staging"]
    assert (staging.total_sessions, staging.crash_free_sessions) == (120, 1.0)


def test_null_rates_stay_none_never_zero(load_fixture: Load) -> None:
    records = parse_sessions(
        load_fixture("sentry/sessions_totals"), load_fixture("sentry/sessions_by_status")
    )
    by_key = {(r.project_id, r.release): r for r in records}
    no_sessions = by_key[43, "billing@2.0.0"]
    assert no_sessions.total_sessions == 0
    assert no_sessions.crash_free_sessions is None
    assert no_sessions.crash_free_users is None
    no_users = by_key[43, "billing@1.9.0"]
    assert no_users.crash_free_sessions == pytest.approx(0.99)
    assert no_users.crash_free_users is None


def test_pages_concatenated_give_the_same_records(load_fixture: Load) -> None:
    page1, page2 = (
        load_fixture("sentry/sessions_totals_page1"),
        load_fixture("sentry/sessions_totals_page2"),
    )
    joined = {**page1, "groups": page1["groups"] + page2["groups"]}
    assert parse_sessions(joined, load_fixture("sentry/sessions_by_status")) == parse_sessions(
        load_fixture("sentry/sessions_totals"), load_fixture("sentry/sessions_by_status")
    )


@pytest.mark.parametrize(
    "name", ["sessions_empty_groups", "sessions_no_data", "sessions_status_example"]
)
def test_answers_without_releases_give_no_records(load_fixture: Load, name: str) -> None:
    payload = load_fixture(f"sentry/{name}")
    assert parse_sessions(payload, payload) == []


def test_seed_status_example_is_ignored_next_to_real_totals(load_fixture: Load) -> None:
    records = parse_sessions(
        load_fixture("sentry/sessions_totals"), load_fixture("sentry/sessions_status_example")
    )
    assert len(records) == 5
    assert all(r.sessions_by_status == {} for r in records)


def test_reference_example_with_series_and_no_environment(load_fixture: Load) -> None:
    (record,) = parse_sessions(load_fixture("sentry/sessions_reference_example"))
    assert (record.project_id, record.release, record.environment) == (42, "app@1.2.0", "")
    assert record.total_sessions == 1840
    assert record.users == 0  # a count that was not requested defaults to 0, like Sentry's
    assert record.crash_free_sessions == pytest.approx(0.9973)
    assert record.crash_free_users is None


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"groups": "nope"},
        {"groups": [{"by": {"project": 1, "release": "r"}}]},
        {"groups": [{"by": {"project": 1, "release": "r"}, "totals": {"sum(session)": "12"}}]},
        {
            "groups": [
                {"by": {"project": 1, "release": "r"}, "totals": {"crash_free_rate(session)": 99.7}}
            ]
        },
    ],
)
def test_unexpected_shapes_raise_poll_error(payload: Any) -> None:
    with pytest.raises(PollError):
        parse_sessions(payload)


# --- poll() against a local fake Sentry ----------------------------------------------------


def test_poll_sends_the_documented_requests(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load
) -> None:
    serve_good(httpserver, load_fixture)

    clock = iter([100.0, 103.25])  # the poll's start and end on the monotonic clock
    result = poll(
        http_session, make_source(httpserver), sleep=pytest.fail, monotonic=lambda: next(clock)
    )

    httpserver.check_assertions()
    assert len(httpserver.log) == 2
    for request, _ in httpserver.log:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Accept"] == "application/json"
    assert result.requests == 2
    assert result.source == "sentry"
    assert result.projects == ("42", "43")
    assert len(result.records) == 5
    # What releasebits_source_poll_duration_seconds will say: wall time of the whole poll.
    assert result.duration_seconds == 3.25
    # What storage is handed.
    row = next(
        r for r in result.rows() if (r.release, r.environment) == ("checkout@1.2.0", "production")
    )
    assert (row.source, row.project, row.total_sessions, row.users) == ("sentry", "42", 1840, 920)
    assert row.crash_free_sessions == pytest.approx(1 - 5 / 1840)
    assert row.crash_free_users == pytest.approx(0.99891, abs=1e-5)
    assert row.sessions_by_status == {"healthy": 1800, "errored": 35, "crashed": 5, "abnormal": 0}


def test_all_projects_are_asked_for_as_minus_one(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load
) -> None:
    httpserver.expect_ordered_request(
        PATH, query_string=documented_query(by_status=False, projects=("-1",))
    ).respond_with_json(load_fixture("sentry/sessions_empty_groups"))
    httpserver.expect_ordered_request(
        PATH, query_string=documented_query(by_status=True, projects=("-1",))
    ).respond_with_json(load_fixture("sentry/sessions_empty_groups"))

    result = poll(http_session, make_source(httpserver, projects=()))

    httpserver.check_assertions()
    assert result.records == ()
    assert result.projects == ()


def test_pagination_follows_next_cursor_until_results_false(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load
) -> None:
    httpserver.expect_ordered_request(
        PATH, query_string=documented_query(by_status=False)
    ).respond_with_json(
        load_fixture("sentry/sessions_totals_page1"),
        headers={"Link": link_header(httpserver, "0:3:0", more=True)},
    )
    httpserver.expect_ordered_request(
        PATH, query_string=documented_query(by_status=False, cursor="0:3:0")
    ).respond_with_json(
        load_fixture("sentry/sessions_totals_page2"),
        headers={"Link": link_header(httpserver, "0:6:0", more=False)},
    )
    httpserver.expect_ordered_request(
        PATH, query_string=documented_query(by_status=True)
    ).respond_with_json(
        load_fixture("sentry/sessions_by_status"),
        headers={"Link": link_header(httpserver, "0:5000:0", more=False)},
    )

    result = poll(http_session, make_source(httpserver))

    httpserver.check_assertions()
    assert result.requests == 3
    releases = {(r.project_id, r.release, r.environment) for r in result.records}
    assert (42, "checkout@1.2.0", "production") in releases  # page 1
    assert (43, "billing@1.9.0", "production") in releases  # page 2
    assert len(releases) == 5


def test_repeated_cursor_is_an_error_not_a_loop(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load
) -> None:
    httpserver.expect_request(PATH).respond_with_json(
        load_fixture("sentry/sessions_totals_page1"),
        headers={"Link": link_header(httpserver, "0:3:0", more=True)},
    )
    with pytest.raises(PollError, match="cursor"):
        poll(http_session, make_source(httpserver))
    assert len(httpserver.log) == 2


def test_429_waits_until_the_rate_limit_reset(
    httpserver: HTTPServer,
    http_session: requests.Session,
    load_fixture: Load,
    sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    httpserver.expect_ordered_request(PATH).respond_with_json(
        {
            "detail": "You are attempting to use this endpoint too frequently. Limit is 40 requests in 1 seconds"
        },
        status=429,
        headers={"X-Sentry-Rate-Limit-Reset": "1012", "X-Sentry-Rate-Limit-Remaining": "0"},
    )
    serve_good(httpserver, load_fixture)

    result = poll(http_session, make_source(httpserver), sleep=sleeps.append, now=lambda: 1000.0)

    assert sleeps == [12.0]
    assert len(result.records) == 5
    assert result.requests == 3
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"Sentry rate limit hit on {PATH}; waiting 12.0 s (attempt 1/3)"
    ]


def test_429_that_never_ends_gives_up(
    httpserver: HTTPServer, http_session: requests.Session, sleeps: list[float]
) -> None:
    httpserver.expect_request(PATH).respond_with_json(
        {
            "detail": "You are attempting to use this endpoint too frequently. Limit is 40 requests in 1 seconds"
        },
        status=429,
        headers={"X-Sentry-Rate-Limit-Reset": "1003"},
    )
    with pytest.raises(PollError, match="too frequently") as caught:
        poll(http_session, make_source(httpserver), sleep=sleeps.append, now=lambda: 1000.0)
    assert caught.value.status == 429
    assert sleeps == [3.0, 3.0]
    assert len(httpserver.log) == 3


def test_429_with_a_distant_reset_gives_up_without_blocking(
    httpserver: HTTPServer, http_session: requests.Session, sleeps: list[float]
) -> None:
    httpserver.expect_request(PATH).respond_with_json(
        {"detail": "too frequently"}, status=429, headers={"X-Sentry-Rate-Limit-Reset": "4600"}
    )
    with pytest.raises(PollError, match="3600 s"):
        poll(http_session, make_source(httpserver), sleep=sleeps.append, now=lambda: 1000.0)
    assert sleeps == []


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_token(
    httpserver: HTTPServer, http_session: requests.Session, status: int
) -> None:
    httpserver.expect_request(PATH).respond_with_json(
        {"detail": f"Invalid token {TOKEN}"}, status=status
    )
    with pytest.raises(PollError) as caught:
        poll(http_session, make_source(httpserver))
    message = str(caught.value)
    if status == 401:
        assert message == (
            "Sentry rejected the auth token (HTTP 401); "
            "check that it is valid and has the org:read scope"
        )
    else:  # TOKEN is an organization token (sntrys_), which cannot read sessions
        assert message == (
            "Sentry rejected the auth token (HTTP 403): organization auth tokens (sntrys_...) "
            "cannot read session data; use a personal or internal-integration token with the "
            "org:read scope"
        )
    assert TOKEN not in message
    assert TOKEN not in (caught.value.url or "")
    assert caught.value.status == status
    assert TOKEN not in repr(make_source(httpserver))


def test_unknown_organization(httpserver: HTTPServer, http_session: requests.Session) -> None:
    httpserver.expect_request(PATH).respond_with_json(
        {"detail": "The requested resource does not exist"}, status=404
    )
    with pytest.raises(PollError, match=r"unknown organization 'acme'.*HTTP 404") as caught:
        poll(http_session, make_source(httpserver))
    assert caught.value.status == 404
    assert caught.value.url is not None and caught.value.url.startswith(httpserver.url_for(PATH))


def test_bad_query_reports_sentry_detail(
    httpserver: HTTPServer, http_session: requests.Session
) -> None:
    httpserver.expect_request(PATH).respond_with_json(
        {"detail": "Cannot group field crash_free_rate(session) by session.status"}, status=400
    )
    with pytest.raises(PollError, match=r"HTTP 400: Cannot group field"):
        poll(http_session, make_source(httpserver))


def test_server_error_reports_status_and_body(
    httpserver: HTTPServer, http_session: requests.Session
) -> None:
    httpserver.expect_request(PATH).respond_with_data("<h1>Internal Server Error</h1>", status=500)
    with pytest.raises(PollError, match=r"HTTP 500: '<h1>Internal Server Error</h1>'") as caught:
        poll(http_session, make_source(httpserver))
    assert caught.value.status == 500


def test_503_is_retried_by_the_session_then_succeeds(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load
) -> None:
    httpserver.expect_ordered_request(PATH).respond_with_data("unavailable", status=503)
    serve_good(httpserver, load_fixture)

    result = poll(http_session, make_source(httpserver))

    assert len(result.records) == 5
    assert len(httpserver.log) == 3


def test_503_that_persists_becomes_a_poll_error(
    httpserver: HTTPServer, http_session: requests.Session
) -> None:
    httpserver.expect_request(PATH).respond_with_data("unavailable", status=503)
    with pytest.raises(PollError, match="HTTP 503") as caught:
        poll(http_session, make_source(httpserver))
    assert caught.value.status == 503


def test_timeout() -> None:
    # A server that accepts connections and never answers, of its own: a slow handler on the
    # shared httpserver went on answering the timed-out requests during the next test.
    with socket.socket() as hang:
        hang.bind(("127.0.0.1", 0))
        hang.listen(8)
        base = f"http://127.0.0.1:{hang.getsockname()[1]}"
        for retries in (0, 1):  # 1: urllib3 gives up and wraps the timeout in a ConnectionError
            session = make_session(timeout=(1, 0.2), retries=retries, backoff_factor=0)
            try:
                with pytest.raises(PollError) as caught:
                    source = SentrySource(
                        name="sentry", organization="acme", token=TOKEN, base_url=base + "/"
                    )
                    poll(session, source)
            finally:
                session.close()
            assert str(caught.value) == f"Sentry timed out ({PATH})"
            assert caught.value.url == base + PATH


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = SentrySource(
        name="s", organization="acme", token=TOKEN, base_url=f"http://127.0.0.1:{port}"
    )
    session = make_session(retries=0)
    try:
        with pytest.raises(PollError) as caught:
            poll(session, source)
    finally:
        session.close()
    assert str(caught.value).startswith("Sentry cannot be reached: NewConnectionError: ")
    assert caught.value.url == source.sessions_url
    assert TOKEN not in str(caught.value)


def test_body_that_is_not_json(httpserver: HTTPServer, http_session: requests.Session) -> None:
    httpserver.expect_request(PATH).respond_with_data(
        "<html>login</html>", content_type="text/html"
    )
    with pytest.raises(PollError, match="not JSON") as caught:
        poll(http_session, make_source(httpserver))
    assert caught.value.status == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "Sentry answered an unexpected shape: expected an object with a `groups` list"),
        (
            {"data": []},
            "Sentry answered an unexpected shape: expected an object with a `groups` list",
        ),
        (
            {"groups": [{"by": "x"}]},
            "Sentry sessions group without `by`/`totals` objects: {'by': 'x'}",
        ),
    ],
)
def test_json_of_the_wrong_shape(
    httpserver: HTTPServer, http_session: requests.Session, body: Any, message: str
) -> None:
    httpserver.expect_request(PATH).respond_with_json(body)
    with pytest.raises(PollError) as caught:
        poll(http_session, make_source(httpserver))
    assert str(caught.value) == message


def test_base_url_may_include_api_0_and_org_is_escaped(httpserver: HTTPServer) -> None:
    source = make_source(httpserver, base_url=httpserver.url_for("/api/0/"), organization="a b")
    assert source.sessions_url == httpserver.url_for("/api/0/organizations/a%20b/sessions/")


# --- Sentry's group limit (issue 17, item 12) -------------------------------------------


class LimitedSentry:
    """Answers like Sentry's sessions endpoint on a large organisation: `releases` groups, at
    most 10,000 data points (groups x buckets) a page. Without per_page it returns
    floor(10000 / buckets) groups and a next link with results="false" (getsentry/sentry
    #48692); a per_page over the limit is a 400 "too granular" (sentry PR #32742)."""

    def __init__(self, httpserver: HTTPServer, releases: int):
        self.httpserver = httpserver
        self.releases = releases
        self.per_pages: list[str | None] = []
        self.intervals: list[str] = []

    def handle(self, request: Request) -> Response:
        window = int(request.args["statsPeriod"][:-1]) * (
            86400 if request.args["statsPeriod"].endswith("d") else 3600
        )
        interval = 86400 if request.args["interval"] == "1d" else 3600
        buckets = window // interval
        per_page = request.args.get("per_page")
        self.per_pages.append(per_page)
        self.intervals.append(request.args["interval"])
        if per_page is not None and int(per_page) * buckets > 10_000:
            return Response('{"detail": "is too granular"}', 400, content_type="application/json")
        limit = int(per_page) if per_page else 10_000 // buckets
        offset = int(request.args.get("cursor", "0:0:0").split(":")[1])
        rows = range(offset, min(offset + limit, self.releases))
        more = per_page is not None and offset + limit < self.releases
        groups = [
            {
                "by": {"project": 42, "release": f"app@{n}", "environment": "production"},
                "totals": {
                    "sum(session)": 10,
                    "count_unique(user)": 5,
                    "crash_free_rate(session)": 1.0,
                    "crash_free_rate(user)": 1.0,
                },
            }
            for n in rows
        ]
        link = link_header(self.httpserver, f"0:{offset + limit}:0", more=more)
        body = {"start": "x", "end": "y", "intervals": [], "groups": groups, "query": ""}
        return Response(json.dumps(body), 200, {"Link": link}, content_type="application/json")


@pytest.mark.parametrize(("window", "interval"), [("24h", "1h"), ("14d", "1d"), ("90d", "1d")])
def test_large_organisations_lose_no_release(
    httpserver: HTTPServer, http_session: requests.Session, window: str, interval: str
) -> None:
    fake = LimitedSentry(httpserver, releases=1000)
    httpserver.expect_request(PATH).respond_with_handler(fake.handle)
    source = from_table(
        Table(
            "sentry[0]", {"organization": "acme", "token_env": "T", "window": window}, TABLE_KEYS
        ),
        "sentry",
        {"T": TOKEN},
    )
    source = SentrySource(**{**source.__dict__, "base_url": httpserver.url_for("/")})
    result = poll(http_session, source)
    assert len({r.release for r in result.records}) == 1000
    assert set(fake.intervals) == {interval}
    assert all(p is not None for p in fake.per_pages)


def test_an_org_token_403_says_org_tokens_cannot_read_sessions(
    httpserver: HTTPServer, http_session: requests.Session
) -> None:
    """Item 15: organization tokens (sntrys_) cannot read sessions; the 403 says so."""
    httpserver.expect_request(PATH).respond_with_json(
        {"detail": "You do not have permission to perform this action."}, status=403
    )
    with pytest.raises(PollError) as caught:
        poll(http_session, make_source(httpserver, token="sntrys_eyJpYXQiOjE3MDAwMDAwMDB9_abc"))
    message = str(caught.value)
    assert "organization auth tokens (sntrys_...) cannot read session data" in message
    assert "\n" not in message


# --- edges of the documented answer -------------------------------------------------------


def group(project: Any, release: Any, environment: Any = "production", **totals: Any) -> Any:
    """One group as the sessions API answers it (shape of sessions_totals.json)."""
    return {
        "by": {"project": project, "release": release, "environment": environment},
        "totals": {
            "sum(session)": 100,
            "count_unique(user)": 10,
            "crash_free_rate(session)": 0.99,
            "crash_free_rate(user)": 0.99,
            **totals,
        },
    }


def test_a_release_where_every_session_crashed_is_0_not_an_error() -> None:
    crashed = group(42, "app@1.0", **{"crash_free_rate(session)": 0, "crash_free_rate(user)": 0.0})
    (record,) = parse_sessions({"groups": [crashed]})
    assert (record.crash_free_sessions, record.crash_free_users) == (0.0, 0.0)


@pytest.mark.parametrize("rate", [1.5, -0.01])
def test_a_rate_outside_0_to_1_is_an_error(rate: float) -> None:
    with pytest.raises(PollError, match=r"crash_free_rate\(session\).*outside 0..1"):
        parse_sessions({"groups": [group(42, "app@1.0", **{"crash_free_rate(session)": rate})]})


def test_skipped_and_duplicate_groups_keep_every_later_release(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.pollers.sentry")
    totals = {
        "groups": [
            {"by": {}, "totals": {"sum(session)": 0}},  # the no-data group
            {"by": {"release": "app@0.9"}, "totals": {"sum(session)": 3}},  # no project
            group(42, "app@1.0", **{"sum(session)": 500}),
            group(42, "", **{"sum(session)": 7}),  # no release name: describes no release
            group(42, "app@1.0", **{"sum(session)": 499}),  # an overlapping page repeats it
            group("43", "app@2.0"),  # a project id sent as a string
        ]
    }
    env = {"environment": "production"}
    statuses = {
        "groups": [
            # without a status, or without a release: counted nowhere
            {"by": {**env, "project": 42, "release": "app@1.0"}, "totals": {"sum(session)": 1}},
            {"by": {**env, "session.status": "healthy"}, "totals": {"sum(session)": 9}},
            {
                "by": {**env, "project": "43", "release": "app@2.0", "session.status": "healthy"},
                "totals": {"sum(session)": 99},
            },
            {
                "by": {**env, "project": 43, "release": "app@2.0", "session.status": "crashed"},
                "totals": {"sum(session)": 1},
            },
        ]
    }
    records = parse_sessions(totals, statuses)
    assert [(r.project_id, r.release, r.total_sessions) for r in records] == [
        (42, "app@1.0", 500),
        (43, "app@2.0", 100),
    ]
    assert records[1].environment == "production"
    assert records[0].sessions_by_status == {}
    assert records[1].sessions_by_status == {"healthy": 99, "crashed": 1}
    assert caplog.messages == ["duplicate Sentry group (42, 'app@1.0', 'production') ignored"]


def test_429_with_an_unreadable_reset_waits_the_default(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load, sleeps: list[float]
) -> None:
    httpserver.expect_ordered_request(PATH).respond_with_data(
        "Too Many Requests", status=429, headers={"X-Sentry-Rate-Limit-Reset": "nan"}
    )
    serve_good(httpserver, load_fixture)
    poll(http_session, make_source(httpserver), sleep=sleeps.append, now=lambda: 1000.0)
    assert sleeps == [5.0]


def test_a_403_for_a_personal_token_names_the_scope_not_org_tokens(
    httpserver: HTTPServer, http_session: requests.Session
) -> None:
    httpserver.expect_request(PATH).respond_with_json({"detail": "no"}, status=403)
    with pytest.raises(PollError) as caught:
        poll(http_session, make_source(httpserver, token="sntryu_personal-token"))
    assert str(caught.value) == (
        "Sentry rejected the auth token (HTTP 403); "
        "check that it is valid and has the org:read scope"
    )


def test_each_request_is_a_debug_line(
    httpserver: HTTPServer,
    http_session: requests.Session,
    load_fixture: Load,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.pollers.client")
    serve_good(httpserver, load_fixture)
    poll(http_session, make_source(httpserver))
    lines = [r.getMessage() for r in caplog.records if r.name == "exporter.pollers.client"]
    assert [line.split("?")[0] for line in lines] == [f"GET {httpserver.url_for(PATH)}"] * 2


def test_429_without_a_reset_header_waits_the_default(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load, sleeps: list[float]
) -> None:
    # Sentry itself always sends X-Sentry-Rate-Limit-Reset; a proxy in front of it may not.
    httpserver.expect_ordered_request(PATH).respond_with_data("Too Many Requests", status=429)
    serve_good(httpserver, load_fixture)

    result = poll(http_session, make_source(httpserver), sleep=sleeps.append, now=lambda: 1000.0)

    assert sleeps == [5.0]
    assert len(result.records) == 5


def test_429_waits_a_full_minute_but_no_longer(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load, sleeps: list[float]
) -> None:
    httpserver.expect_ordered_request(PATH).respond_with_json(
        {"detail": "too frequently"}, status=429, headers={"X-Sentry-Rate-Limit-Reset": "1060"}
    )
    serve_good(httpserver, load_fixture)
    result = poll(http_session, make_source(httpserver), sleep=sleeps.append, now=lambda: 1000.0)
    assert sleeps == [60.0]
    assert len(result.records) == 5


def test_a_300_answer_is_not_a_success(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load
) -> None:
    httpserver.expect_request(PATH).respond_with_json(
        load_fixture("sentry/sessions_totals"), status=300
    )
    with pytest.raises(PollError, match=r"^Sentry answered HTTP 300: ") as caught:
        poll(http_session, make_source(httpserver))
    assert caught.value.status == 300


@pytest.mark.parametrize(
    ("token", "scrubbed"), [(TOKEN, True), ("8charTok", True), ("7charTk", False)]
)
def test_a_token_echoed_in_an_error_is_scrubbed(
    httpserver: HTTPServer, http_session: requests.Session, token: str, scrubbed: bool
) -> None:
    # A token of a real length is replaced wherever it appears; a toy one is left alone, since
    # replacing a short string would mangle the rest of the message.
    httpserver.expect_request(PATH).respond_with_json(
        {"detail": f"Invalid query for token {token}"}, status=400
    )
    with pytest.raises(PollError) as caught:
        poll(http_session, make_source(httpserver, token=token))
    shown = "[token]" if scrubbed else token
    assert str(caught.value) == f"Sentry answered HTTP 400: Invalid query for token {shown}"


def test_a_cursor_that_never_ends_stops_after_50_pages(
    httpserver: HTTPServer, http_session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    def pages(request: Request) -> Response:
        cursor = int(request.args.get("cursor", "0:0:0").split(":")[1]) + 1
        link = link_header(httpserver, f"0:{cursor}:0", more=True)
        return Response('{"groups": []}', content_type="application/json", headers={"Link": link})

    httpserver.expect_request(PATH).respond_with_handler(pages)
    result = poll(http_session, make_source(httpserver))
    assert result.requests == 100  # 50 pages of each of the two queries
    assert result.records == ()
    warnings = [r.getMessage() for r in caplog.records if r.name == "exporter.pollers.sentry"]
    assert warnings == ["Sentry sessions answer truncated after 50 pages"] * 2


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "Sentry sessions answer is not an object with a `groups` list"),
        ({"groups": ["x"]}, "Sentry sessions group without `by`/`totals` objects: 'x'"),
        (
            {"groups": [group(42, "app@1.0", **{"sum(session)": "12"})]},
            "Sentry sum(session) is not a number: '12'",
        ),
        (
            {"groups": [group(42, "app@1.0", **{"crash_free_rate(user)": "0.99"})]},
            "Sentry crash_free_rate(user) is not a number: '0.99'",
        ),
        (
            {"groups": [group(42, "app@1.0", **{"crash_free_rate(session)": 99.7})]},
            "Sentry crash_free_rate(session) = 99.7 is outside 0..1",
        ),
    ],
)
def test_what_is_wrong_with_an_answer_is_said(payload: Any, message: str) -> None:
    with pytest.raises(PollError) as caught:
        parse_sessions(payload)
    assert str(caught.value) == message


# --- per-bucket session counts (the error-budget counters) --------------------------------

SERIES_START = 1706511600.0  # 2024-01-29T07:00:00Z, the first interval of the series fixture


def status_group(release: Any, status: str, counts: Any, project: Any = 42) -> Any:
    """One group of the per-status answer with its series (shape of sessions_by_status_series)."""
    return {
        "by": {
            "project": project,
            "release": release,
            "environment": "production",
            "session.status": status,
        },
        "totals": {"sum(session)": 0},
        "series": {"sum(session)": counts},
    }


def test_a_bucket_counts_once_it_has_ended_and_odd_groups_are_left_out() -> None:
    payload = {
        "intervals": ["2024-01-29T07:00:00Z", "not a time", "2024-01-29T09:00:00Z"],
        "groups": [
            status_group("app@1", "healthy", [10, 20, 30]),
            status_group("app@1", "crashed", [1, None, True]),  # not numbers count 0
            status_group("app@1", "errored", [5, 5]),  # a series of the wrong length
            status_group("app@1", "abnormal", "3"),  # not a series
            status_group("", "healthy", [7, 7, 7]),  # no release
            "not a group",
        ],
    }
    ends_at_now = SERIES_START + 3 * 3600  # the third bucket ends exactly now: it counts
    buckets = parse_buckets(payload, 3600, ends_at_now)
    assert buckets == {
        (42, "app@1", "production"): (
            (SERIES_START, SERIES_START + 3600, 11, 1),
            (SERIES_START + 7200, SERIES_START + 10800, 30, 0),
        )
    }
    assert parse_buckets(payload, 3600, ends_at_now - 1)[42, "app@1", "production"] == (
        (SERIES_START, SERIES_START + 3600, 11, 1),
    )


@pytest.mark.parametrize("payload", [None, [], {"groups": []}, {"intervals": "2024-01-29"}])
def test_an_answer_without_intervals_has_no_buckets(payload: Any) -> None:
    assert parse_buckets(payload, 3600, SERIES_START + 86400) == {}


def test_a_poll_hands_storage_the_completed_buckets(
    httpserver: HTTPServer, http_session: requests.Session, load_fixture: Load
) -> None:
    last = {"Link": link_header(httpserver, "0:5000:0", more=False)}
    httpserver.expect_ordered_request(
        PATH, query_string=documented_query(by_status=False)
    ).respond_with_json(load_fixture("sentry/sessions_totals"), headers=last)
    httpserver.expect_ordered_request(
        PATH, query_string=documented_query(by_status=True)
    ).respond_with_json(load_fixture("sentry/sessions_by_status_series"), headers=last)
    result = poll(http_session, make_source(httpserver), now=lambda: SERIES_START + 2.5 * 3600)
    rows = {(r.release, r.environment): r for r in result.rows()}
    assert rows["checkout@1.2.0", "production"].buckets == (
        (SERIES_START, SERIES_START + 3600, 600, 4),
        (SERIES_START + 3600, SERIES_START + 7200, 640, 6),
    )
    assert rows["checkout@1.2.0", "staging"].buckets == ()
