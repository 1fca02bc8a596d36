"""Poll jobs end to end in-process: fake Sentry/Bugsnag -> store -> /metrics, joined to deploys."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pytest_httpserver import HTTPServer

from exporter.app import create_app
from exporter.config import load_settings
from exporter.http import make_session
from exporter.pollers.jobs import ErrorMemory, poll_source
from exporter.settings import Settings
from tests.upstreams import (
    BUGSNAG_PROJECT,
    BUGSNAG_TOKEN,
    SENTRY_TOKEN,
    TOKEN_ENV,
    FakeBugsnag,
    FakeSentry,
    sources_toml,
)

PROD = {"component": "checkout", "stage": "production"}


@pytest.fixture
def fakes(httpserver: HTTPServer) -> tuple[FakeSentry, FakeBugsnag]:
    return FakeSentry(httpserver).install(), FakeBugsnag(httpserver).install()


@pytest.fixture
def settings(
    tmp_path: Path, new_db: Callable[..., str], fakes: tuple[FakeSentry, FakeBugsnag]
) -> Settings:
    cfg = tmp_path / "releasebits.toml"
    cfg.write_text(f'db = "{new_db("rb")}"\n' + sources_toml(*fakes))
    return load_settings(cfg, TOKEN_ENV)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with make_session(backoff_factor=0, timeout=(1, 2)) as s:
        yield s


def deploy(client: Any, auth: dict[str, str], version: str, finished_at: str) -> None:
    resp = client.post(
        "/components/checkout/deployments",
        json={"version": version, "stage": "production", "finished_at": finished_at},
        headers=auth,
    )
    assert resp.status_code == 201, resp.get_json()


def poll_all(db: Any, settings: Settings, session: requests.Session) -> list[Any]:
    return [poll_source(db, s, session, sleep=lambda _: None) for s in settings.sources]


def metric(app: Any, name: str, **labels: str) -> float | None:
    return app.extensions["releasebits"].registry.get_sample_value(name, labels)


def test_polled_health_is_exported_and_joined_to_the_deployed_version(
    app: Any, client: Any, auth: dict[str, str], db: Any, settings: Settings, session: Any
) -> None:
    deploy(client, auth, "1.1.9", "2024-04-20T10:00:00Z")
    deploy(client, auth, "1.2.0", "2024-05-01T12:00:00Z")
    reports = poll_all(db, settings, session)
    assert [r.ok for r in reports] == [True, True]

    rel = {"source": "sentry", "project": "42", "environment": "production"}
    assert metric(
        app, "releasebits_release_crash_free_sessions_ratio", **rel, release="checkout@1.2.0"
    ) == pytest.approx(0.9972826, abs=1e-6)
    assert (
        metric(
            app, "releasebits_release_sessions", **rel, release="checkout@1.2.0", status="crashed"
        )
        == 5
    )
    assert metric(app, "releasebits_release_users", **rel, release="checkout@1.1.9") == 2100
    # A null rate (no sessions) is no data, never a 0 that would look like a total crash.
    billing = {**rel, "project": "43", "release": "billing@2.0.0"}
    assert metric(app, "releasebits_release_crash_free_sessions_ratio", **billing) is None

    # The join: the current version's release name comes from the template checkout@{version}.
    assert metric(
        app,
        "releasebits_deployed_crash_free_sessions_ratio",
        **PROD,
        source="sentry",
        release="checkout@1.2.0",
    ) == pytest.approx(0.9972826, abs=1e-6)
    assert metric(
        app,
        "releasebits_previous_crash_free_sessions_ratio",
        **PROD,
        source="sentry",
        release="checkout@1.1.9",
    ) == pytest.approx(0.9911111, abs=1e-6)
    # Sentry has no stability target: the crash_free_target setting; Bugsnag's project has one.
    assert (
        metric(app, "releasebits_deployed_crash_free_target_ratio", **PROD, source="sentry") == 0.99
    )
    assert (
        metric(app, "releasebits_deployed_crash_free_target_ratio", **PROD, source="bugsnag")
        == 0.995
    )

    # Bugsnag: stability = 1 - unhandled/total of release group 1.2.0 (96 of 48000 sessions).
    assert metric(
        app,
        "releasebits_deployed_crash_free_sessions_ratio",
        **PROD,
        source="bugsnag",
        release="1.2.0",
    ) == pytest.approx(1 - 96 / 48000)
    bug = {"source": "bugsnag", "project": BUGSNAG_PROJECT, "environment": "production"}
    assert (
        metric(app, "releasebits_release_sessions", **bug, release="1.1.9", status="unhandled")
        == 1800
    )
    assert (
        metric(app, "releasebits_release_sessions", **bug, release="1.1.9", status="other")
        == 120000 - 1800
    )
    assert metric(
        app,
        "releasebits_project_critical_stability_ratio",
        source="bugsnag",
        project=BUGSNAG_PROJECT,
    ) == pytest.approx(0.98)
    for source, project in (("sentry", "42"), ("sentry", "43"), ("bugsnag", BUGSNAG_PROJECT)):
        assert metric(app, "releasebits_source_up", source=source, project=project) == 1
        assert (
            metric(
                app,
                "releasebits_source_last_success_timestamp_seconds",
                source=source,
                project=project,
            )
            or 0
        ) > 0


def test_a_failing_source_keeps_last_values_and_logs_once(
    app: Any,
    db: Any,
    settings: Settings,
    session: Any,
    fakes: tuple[FakeSentry, FakeBugsnag],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sentry, _ = fakes
    sentry_source = settings.source("sentry")
    assert sentry_source is not None
    assert poll_source(db, sentry_source, session).ok
    labels = {"source": "sentry", "project": "42", "environment": "production"}
    before = metric(
        app, "releasebits_release_crash_free_sessions_ratio", **labels, release="checkout@1.2.0"
    )
    assert before is not None

    sentry.fail_with(401, '{"detail": "Invalid token"}')
    caplog.set_level(logging.DEBUG, logger="exporter")
    memory = ErrorMemory()  # the worker's, shared by its scheduled polls
    for _ in range(3):  # three scheduled polls with a bad token
        report = poll_source(db, sentry_source, session, memory=memory)
        assert not report.ok and report.status == 401
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "401" in warnings[0].getMessage() and "token_env" in warnings[0].getMessage()
    assert warnings[0].exc_info is None  # one clear line, not a stack trace
    assert SENTRY_TOKEN not in caplog.text
    assert metric(app, "releasebits_source_up", source="sentry", project="42") == 0
    after = metric(
        app, "releasebits_release_crash_free_sessions_ratio", **labels, release="checkout@1.2.0"
    )
    assert after == before

    sentry.recover()
    assert poll_source(db, sentry_source, session).ok
    assert metric(app, "releasebits_source_up", source="sentry", project="42") == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, "<html>oops</html>"),
        (200, "not json"),
        (200, '{"groups": "nope"}'),
        (404, '{"detail": "The requested resource does not exist"}'),
        (403, '{"detail": "You do not have permission to perform this action."}'),
    ],
)
def test_bad_answers_never_raise(
    app: Any,
    db: Any,
    settings: Settings,
    session: Any,
    fakes: tuple[FakeSentry, FakeBugsnag],
    status: int,
    body: str,
) -> None:
    fakes[0].fail_with(status, body)
    fakes[1].fail_with(status, body)
    reports = poll_all(db, settings, session)
    assert [r.ok for r in reports] == [False, False]
    assert all(r.error for r in reports)
    assert metric(app, "releasebits_source_up", source="bugsnag", project=BUGSNAG_PROJECT) == 0
    assert BUGSNAG_TOKEN not in " ".join(r.error or "" for r in reports)


def test_connection_refused_is_a_failed_poll(db: Any, tmp_path: Path, session: Any) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[[sentry]]\nbase_url = "http://127.0.0.1:9"\norganization = "acme"\n'
        'token_env = "SENTRY_TOKEN"\n'
    )
    s = load_settings(cfg, TOKEN_ENV)
    report = poll_source(db, s.sources[0], session)
    assert not report.ok
    assert "cannot be reached" in (report.error or "")
    assert "Connection refused" in (report.error or "")


def test_only_the_newest_releases_and_configured_sources_are_exported(
    db: Any, settings: Settings, session: Any
) -> None:
    poll_all(db, settings, session)
    one = create_app(settings.replace(release_health_max_releases=1), process_metrics=False)
    bug = {"source": "bugsnag", "project": BUGSNAG_PROJECT, "environment": "production"}
    # Newest by first_released_at: 1.3.0-beta (2024-05-02) beats 1.2.0 and 1.1.9.
    assert (
        metric(one, "releasebits_release_crash_free_sessions_ratio", **bug, release="1.2.0") is None
    )
    assert (
        metric(one, "releasebits_release_sessions", **bug, release="1.3.0-beta", status="unhandled")
        == 0
    )
    # A source removed from the config leaves no stale series behind.
    gone = create_app(
        settings.replace(sources=tuple(s for s in settings.sources if s.name != "bugsnag")),
        process_metrics=False,
    )
    assert metric(gone, "releasebits_source_up", source="bugsnag", project=BUGSNAG_PROJECT) is None
    assert metric(gone, "releasebits_source_up", source="sentry", project="42") == 1
