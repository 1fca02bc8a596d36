"""The daemon polls fake Sentry and Bugsnag on schedule and serves the health of what it deployed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer

from tests.conftest import Daemon, wait_for
from tests.upstreams import BUGSNAG_PROJECT, TOKEN_ENV, FakeBugsnag, FakeSentry, sources_toml

pytestmark = pytest.mark.e2e


def samples(daemon: Daemon) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = requests.get(daemon.url + "/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_deployed_version_health_from_both_sources_survives_an_outage(
    tmp_path: Path, httpserver: HTTPServer, new_db: Callable[..., str]
) -> None:
    # The fixtures' release 1.2.0 is served as the version this test deploys, v1.2.3.
    sentry = FakeSentry(httpserver, rename={"checkout@1.2.0": "checkout@v1.2.3"}).install()
    bugsnag = FakeBugsnag(httpserver, rename={"1.2.0": "v1.2.3"}).install()
    cfg = tmp_path / "releasebits.toml"
    cfg.write_text(sources_toml(sentry, bugsnag, interval="1s"))
    daemon = Daemon(
        db=new_db("rb"), workdir=tmp_path, extra_env={**TOKEN_ENV, "RELEASEBITS_CONFIG": str(cfg)}
    ).start()
    try:
        token = daemon.cli("token", "create", "ci").stdout.strip().splitlines()[-1]
        resp = requests.post(
            f"{daemon.url}/components/checkout/deployments",
            json={"version": "v1.2.3", "stage": "production"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert resp.status_code == 201

        deployed = "releasebits_deployed_crash_free_sessions_ratio"
        from_sentry = key(
            deployed,
            component="checkout",
            stage="production",
            source="sentry",
            release="checkout@v1.2.3",
        )
        from_bugsnag = key(
            deployed, component="checkout", stage="production", source="bugsnag", release="v1.2.3"
        )
        wait_for(
            lambda: from_sentry in (s := samples(daemon)) and from_bugsnag in s,
            "the deployed version's crash-free ratio from both sources",
        )
        good = samples(daemon)
        assert good[from_sentry] == pytest.approx(0.9972826, abs=1e-6)
        assert good[from_bugsnag] == pytest.approx(1 - 96 / 48000)
        up = key("releasebits_source_up", source="sentry", project="42")
        bug_up = key("releasebits_source_up", source="bugsnag", project=BUGSNAG_PROJECT)
        assert good[up] == 1 and good[bug_up] == 1

        sentry.fail_with(503, "upstream down")
        bugsnag.fail_with(401, '{"errors": ["Unauthorized"]}')
        wait_for(
            lambda: (s := samples(daemon))[up] == 0 and s[bug_up] == 0, "source_up to drop to 0"
        )
        down = samples(daemon)
        assert down[from_sentry] == good[from_sentry]  # the last good values stay
        assert down[from_bugsnag] == good[from_bugsnag]
        assert requests.get(daemon.url + "/healthz", timeout=5).status_code == 200

        sentry.recover()
        wait_for(lambda: samples(daemon)[up] == 1, "sentry to recover")
    finally:
        assert daemon.stop() == 0
    log = daemon.log()
    assert TOKEN_ENV["SENTRY_TOKEN"] not in log and TOKEN_ENV["BUGSNAG_TOKEN"] not in log
    # A source failing every second logs its failure once, not once per poll.
    assert log.count("source 'bugsnag' poll failed") == 1, log
