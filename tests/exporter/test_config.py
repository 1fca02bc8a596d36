"""Settings: defaults, TOML, environment precedence and one-line errors naming the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.config import load_settings
from exporter.errors import ConfigError
from exporter.settings import SETTINGS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_work_without_config() -> None:
    s = load_settings(None, {})
    assert (s.host, s.port, s.db) == ("127.0.0.1", 8080, "releasebits.db")


def test_web_workers_default_to_one_on_sqlite_and_two_on_postgresql() -> None:
    assert load_settings(None, {}).web_workers == 1
    pg = {"RELEASEBITS_DB": "postgresql://rb@db.example:5432/rb"}
    assert load_settings(None, pg).web_workers == 2
    assert load_settings(None, {**pg, "RELEASEBITS_WORKERS": "3"}).web_workers == 3
    assert load_settings(None, {"RELEASEBITS_WORKERS": "4"}).web_workers == 4
    with pytest.raises(ConfigError, match="workers: must be between 0 and 64"):
        load_settings(None, {"RELEASEBITS_WORKERS": "-1"})


def test_precedence_file_env_override(tmp_path: Path) -> None:
    cfg = tmp_path / "rb.toml"
    cfg.write_text('port = 9000\ndb = "/tmp/x.db"\nworkers = 3\n')
    s = load_settings(cfg, {"RELEASEBITS_PORT": "9100"}, {"workers": 5})
    assert (s.port, s.db, s.workers) == (9100, "/tmp/x.db", 5)
    assert load_settings(None, {"RELEASEBITS_CONFIG": str(cfg)}).port == 9000


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"RELEASEBITS_PORT": "http"}, "port: expected an integer"),
        ({"RELEASEBITS_PORT": "70000"}, "port: must be between 1 and 65535"),
        (
            {"RELEASEBITS_METRICS_REQUIRE_TOKEN": "maybe"},
            "metrics_require_token: expected true or false",
        ),
        ({"RELEASEBITS_LOG_LEVEL": "loud"}, "log_level: expected one of"),
        ({"RELEASEBITS_DEFAULT_STAGE": "Prod Env!"}, "default_stage:"),
        (
            {"RELEASEBITS_CONFIG": "/nonexistent.toml"},
            "config: file /nonexistent.toml does not exist",
        ),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "rb.toml"
    cfg.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg, {})
    cfg.write_text("prot = 80\n")
    with pytest.raises(ConfigError, match="prot: unknown setting"):
        load_settings(cfg, {})


def test_every_setting_is_documented_in_readme() -> None:
    readme = README.read_text()
    missing = [s.env for s in SETTINGS if s.env not in readme or f"`{s.name}`" not in readme]
    assert not missing, f"README.md does not document: {missing}"


SOURCES = """
[[sentry]]
organization = "acme"
token_env = "SENTRY_TOKEN"
projects = [42]
environments = ["production"]
window = "14d"

[[bugsnag]]
name = "mobile"
base_url = "https://api.bugsnag.smartbear.com/"
token_env = "BUGSNAG_TOKEN"
projects = ["515fb9337c1074f6fd000003"]
release_stages = ["production", "beta"]
poll_interval = "1h"

[components.checkout]
environments = { production = "prod" }

[components.checkout.sources.sentry]
project = "42"
release = "checkout@{version}"

[components.checkout.sources.mobile]
project = "515fb9337c1074f6fd000003"
environments = { production = "release" }
"""
ENV = {"SENTRY_TOKEN": "sntrys_x", "BUGSNAG_TOKEN": "b-token"}


def test_sources_and_component_mappings(tmp_path: Path) -> None:
    cfg = tmp_path / "rb.toml"
    cfg.write_text(SOURCES)
    s = load_settings(cfg, ENV)
    sentry, mobile = s.sources
    assert (sentry.name, sentry.kind, sentry.interval_seconds) == ("sentry", "sentry", 300)
    assert sentry.config.token == "sntrys_x"  # type: ignore[union-attr]
    assert (sentry.config.projects, sentry.config.environments) == ((42,), ("production",))  # type: ignore[union-attr]
    assert sentry.config.sessions_url == "https://sentry.io/api/0/organizations/acme/sessions/"  # type: ignore[union-attr]
    assert (mobile.name, mobile.interval_seconds) == ("mobile", 3600)
    assert mobile.config.base_url == "https://api.bugsnag.smartbear.com"
    checkout = s.components["checkout"]
    assert checkout.sources["sentry"].release_name("checkout", "1.2.0") == "checkout@1.2.0"
    assert checkout.environment("production", "sentry") == "prod"
    assert checkout.environment("production", "mobile") == "release"
    assert checkout.environment("staging", "sentry") == "staging"
    assert "sntrys_x" not in repr(s)  # tokens stay out of reprs and therefore logs


@pytest.mark.parametrize(
    ("window", "interval"),
    [
        ("24h", "1h"),
        ("47h", "1h"),
        ("48h", "1d"),
        ("2d", "1d"),
        ("14d", "1d"),
        ("90d", "1d"),
        ("999d", "1d"),
    ],
)
def test_long_sentry_windows_use_daily_buckets(tmp_path: Path, window: str, interval: str) -> None:
    # Sentry answers 400 beyond 1000 buckets, and caps groups at 10000 / buckets: windows of 2
    # days or more use daily buckets (issue 17, item 12).
    cfg = tmp_path / "rb.toml"
    cfg.write_text(SOURCES.replace('window = "14d"', f'window = "{window}"'))
    sentry = load_settings(cfg, ENV).sources[0].config
    assert (sentry.window, sentry.interval) == (window, interval)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t, "sentry[0].token_env: environment variable SENTRY_TOKEN is not set"),
        (
            lambda t: t.replace('window = "14d"', 'window = "forever"'),
            "sentry[0].window: expected a period",
        ),
        (lambda t: t.replace("projects = [42]", 'projects = ["checkout"]'), "sentry[0].projects"),
        (lambda t: t.replace('window = "14d"', 'window = "1000d"'), "sentry[0].window: at most"),
        (
            lambda t: t.replace('poll_interval = "1h"', 'poll_interval = "soon"'),
            "bugsnag[0].poll_interval: expected a duration",
        ),
        (
            lambda t: t.replace("https://api.bugsnag.smartbear.com/", "api.bugsnag.com"),
            "bugsnag[0].base_url: expected an http(s) URL",
        ),
        (
            lambda t: t.replace('organization = "acme"', 'organisation = "acme"'),
            "sentry[0].organisation: unknown setting",
        ),
        (
            lambda t: t.replace(
                "[components.checkout.sources.mobile]", "[components.checkout.sources.bugs]"
            ),
            "components.checkout.sources.bugs: no [[sentry]] or [[bugsnag]] source named 'bugs'",
        ),
        (
            lambda t: t.replace('release = "checkout@{version}"', 'release = "checkout"'),
            "release: the template must contain {version}",
        ),
        (
            lambda t: (
                t
                + '\n[[sentry]]\norganization = "b"\ntoken_env = "SENTRY_TOKEN"\nname = "mobile"\n'
            ),
            "defined twice",
        ),
        (lambda t: t + "\n[[grafana]]\nurl = 'x'\n", "grafana: unknown table"),
    ],
)
def test_bad_sources_are_one_line_errors(tmp_path: Path, edit: Any, needle: str) -> None:
    cfg = tmp_path / "rb.toml"
    cfg.write_text(edit(SOURCES))
    env = {} if "is not set" in needle else ENV
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "table",
    [
        '[[sentry]]\norganization = "acme"\ntoken_env = "SENTRY_TOKEN"\n'
        'base_url = "https://user:pw@sentry.example.com"\n',
        '[[bugsnag]]\ntoken_env = "BUGSNAG_TOKEN"\nprojects = ["p"]\n'
        'base_url = "https://user:pw@api.bugsnag.com"\n',
    ],
)
def test_userinfo_in_a_poller_base_url_is_refused(tmp_path: Path, table: str) -> None:
    """Issue 17, item 10: requests sent `user:pw@` as Basic auth instead of the token."""
    cfg = tmp_path / "rb.toml"
    cfg.write_text(table)
    with pytest.raises(ConfigError, match=r"base_url: remove the user:password@ part"):
        load_settings(cfg, ENV)
