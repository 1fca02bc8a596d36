"""`releasebits poll --once`: the setup debugging tool prints what the sources answered."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from pytest_httpserver import HTTPServer

from exporter.cli import main
from storage import events
from storage.db import open_db
from tests.upstreams import TOKEN_ENV, FakeBugsnag, FakeSentry, sources_toml


def _config(
    tmp_path: Path, httpserver: HTTPServer, db: str
) -> tuple[Path, FakeSentry, FakeBugsnag]:
    sentry, bugsnag = FakeSentry(httpserver).install(), FakeBugsnag(httpserver).install()
    cfg = tmp_path / "rb.toml"
    cfg.write_text(f'db = "{db}"\n' + sources_toml(sentry, bugsnag))
    return cfg, sentry, bugsnag


def test_poll_once_prints_releases_and_the_deployed_join(
    tmp_path: Path, httpserver: HTTPServer, new_db: Callable[..., str]
) -> None:
    location = new_db("rb")
    cfg, _, _ = _config(tmp_path, httpserver, location)
    from exporter.ingest.validation import validate_event

    db = open_db(location, migrate=True)
    event, _ = validate_event("deployment", {"version": "1.2.0"}, default_stage="production")
    events.record_event(
        db, "deployment", "checkout", event, event_id="e1", body={}, limits=events.Limits(10, 10)
    )
    db.close()
    result = CliRunner().invoke(main, ["poll", "--once", "--config", str(cfg)], env=TOKEN_ENV)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "sentry source 'sentry': polling" in out
    assert "checkout@1.2.0" in out and "99.73%" in out  # crash_free_rate(session) 0.99728
    assert "bugsnag source 'bugsnag'" in out and "target stability 99.50%" in out
    assert (
        "deployed checkout/production 1.2.0 -> sentry project 42 environment 'production' "
        "release 'checkout@1.2.0': crash-free sessions 99.73%"
    ) in out
    assert TOKEN_ENV["SENTRY_TOKEN"] not in out


def test_poll_once_reports_a_failing_source_and_exits_1(
    tmp_path: Path, httpserver: HTTPServer, new_db: Callable[..., str]
) -> None:
    location = new_db("rb")
    cfg, sentry, _ = _config(tmp_path, httpserver, location)
    sentry.fail_with(401, '{"detail": "Invalid token"}')
    result = CliRunner().invoke(
        main, ["poll", "--once", "--source", "sentry", "--config", str(cfg)], env=TOKEN_ENV
    )
    assert result.exit_code == 1
    assert "FAILED" in result.output and "401" in result.output
    assert "bugsnag source" not in result.output  # --source limits the poll


def test_poll_errors_are_one_line(
    tmp_path: Path, httpserver: HTTPServer, new_db: Callable[..., str]
) -> None:
    location = new_db("rb")
    cfg, _, _ = _config(tmp_path, httpserver, location)
    unknown = CliRunner().invoke(
        main, ["poll", "--source", "nope", "--config", str(cfg)], env=TOKEN_ENV
    )
    assert unknown.exit_code == 1
    assert unknown.output.strip() == (
        "releasebits: error: --source: no source named 'nope' (configured: sentry, bugsnag)"
    )
    none = CliRunner().invoke(main, ["poll", "--db", str(tmp_path / "x.db")])
    assert none.exit_code == 1 and "no release-health sources configured" in none.output
