"""A real Prometheus scrapes `releasebits serve`; PromQL sees exactly the history that was posted."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Daemon
from tests.prometheus import Prometheus, prometheus_launcher

pytestmark = pytest.mark.e2e

JOB = "releasebits-e2e"
RESULT_CLASSES = ("success", "failure", "error", "cancelled", "other")
# The collector's bucket bounds (storage/events.py DURATION_BUCKETS), written out on purpose.
BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, math.inf)
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
UNICODE_VERSION = 'v2.0 "\u03b2" \U0001f680 \u7248\u672c'  # quotes, Greek, emoji, CJK


@dataclass(frozen=True)
class Event:
    component: str
    stage: str  # "" for builds
    version: str
    result: str  # as sent; free-form
    rclass: str  # the result class the collector must count it under
    finished_min: float  # minutes after T0
    duration: float  # seconds
    commit: str = ""

    def payload(self) -> dict[str, Any]:
        finished = T0 + timedelta(minutes=self.finished_min)
        body: dict[str, Any] = {
            "version": self.version,
            "result": self.result,
            "started_at": (finished - timedelta(seconds=self.duration)).isoformat(),
            "finished_at": finished.isoformat(),
        }
        if self.stage:
            body["stage"] = self.stage
        if self.commit:
            body["commit_sha"] = self.commit
        return body


# Posted in this order. The late v0.9.0 (finished a day before everything else) and the failed,
# errored and cancelled deployments are counted but never become the current version.
DEPLOYMENTS = [
    Event("checkout", "production", "v1.0.0", "success", "success", 0, 20, "c100"),
    Event("checkout", "production", "v1.1.0", "Succeeded", "success", 60, 45, "c110"),
    Event("checkout", "staging", "v1.2.0", "passed", "success", 90, 12, "c120"),
    Event("checkout", "production", "v1.2.0", "failed", "failure", 120, 200, "c120"),
    Event("checkout", "production", "v1.2.0", "timed_out", "error", 180, 8, "c120"),
    Event("checkout", "staging", "v1.3.0", "aborted", "cancelled", 200, 2, "c130"),
    Event("web", "production", UNICODE_VERSION, "ok", "success", 30, 100, "w200"),
    Event("web", "production", "v2.1", "half-done", "other", 240, 100, "w210"),
    Event("checkout", "production", "v0.9.0", "success", "success", -24 * 60, 3, "c090"),
]
BUILDS = [
    Event("checkout", "", "v1.1.0", "success", "success", 50, 70),
    Event("checkout", "", "v1.2.0", "broken", "failure", 110, 400),
    Event("checkout", "", "v1.2.1", "green", "success", 170, 65),
    Event("web", "", "v2.1", "canceled", "cancelled", 230, 5),
]
EXPECTED_VERSIONS = {
    ("checkout", "production"): ("v1.1.0", "c110"),
    ("checkout", "staging"): ("v1.2.0", "c120"),
    ("web", "production"): (UNICODE_VERSION, "w200"),
}


def prom_quantile(q: float, durations: list[float]) -> float:
    """histogram_quantile() as Prometheus computes it (linear interpolation inside a bucket)."""
    cumulative = [sum(1 for d in durations if d <= bound) for bound in BUCKETS]
    rank = q * cumulative[-1]
    b = next(i for i, count in enumerate(cumulative) if count >= rank)
    if b == len(BUCKETS) - 1:
        return BUCKETS[-2]
    start = 0.0 if b == 0 else BUCKETS[b - 1]
    prior = 0 if b == 0 else cumulative[b - 1]
    return start + (BUCKETS[b] - start) * (rank - prior) / (cumulative[b] - prior)


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[str], Prometheus]]:
    yield from prometheus_launcher(tmp_path, job=JOB)


def post(daemon: Daemon, token: str, kind: str, event: Event) -> None:
    resp = requests.post(
        f"{daemon.url}/components/{event.component}/{kind}",
        json=event.payload(),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text


def expected_counts(events: list[Event]) -> dict[tuple[str, ...], float]:
    seen = Counter((e.component, e.stage, e.rclass) for e in events)
    pairs = {(e.component, e.stage) for e in events}
    return {
        tuple(p for p in (c, s, r) if p): float(seen[(c, s, r)])
        for c, s in pairs
        for r in RESULT_CLASSES
    }


def test_prometheus_scrapes_the_posted_history(
    daemon: Daemon, start_prometheus: Callable[[str], Prometheus]
) -> None:
    daemon.start()
    created = daemon.cli("token", "create", "e2e")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    for event in DEPLOYMENTS:
        post(daemon, token, "deployments", event)
    for event in BUILDS:
        post(daemon, token, "builds", event)

    prom = start_prometheus(f"127.0.0.1:{daemon.port}")
    prom.wait_for(
        f'up{{job="{JOB}"}} == 1',
        lambda: [r["value"][1] for r in prom.query(f'up{{job="{JOB}"}}')] == ["1"],
    )

    # Counters: every result class of every known component/stage, zeros included.
    deployments = prom.by_labels("releasebits_deployments_total", "component", "stage", "result")
    assert deployments == expected_counts(DEPLOYMENTS)
    builds = prom.by_labels("releasebits_builds_total", "component", "result")
    assert builds == expected_counts(BUILDS)

    # Exactly one current version per component/stage: not the late v0.9.0, not a failure.
    rows = prom.query("releasebits_deployed_version_info")
    versions = [
        (
            (r["metric"]["component"], r["metric"]["stage"]),
            (r["metric"]["version"], r["metric"]["commit_sha"]),
            r["value"][1],
        )
        for r in rows
    ]
    assert sorted(versions) == sorted((k, v, "1") for k, v in EXPECTED_VERSIONS.items())

    # Durations: the median lands where Prometheus' interpolation over the known buckets puts it.
    for component in ("checkout", "web"):
        durations = [e.duration for e in DEPLOYMENTS if e.component == component]
        want = prom_quantile(0.5, durations)
        got = prom.query(
            "histogram_quantile(0.5, sum by (le) "
            f'(releasebits_deployment_duration_seconds_bucket{{component="{component}"}}))'
        )
        assert len(got) == 1, got
        assert float(got[0]["value"][1]) == pytest.approx(want), component
    assert prom_quantile(0.5, [20, 45, 200, 8, 12, 2, 3]) == 15.0  # bucket (10, 30]
    count = prom.by_labels("releasebits_deployment_duration_seconds_count", "component", "stage")
    assert count == {
        ("checkout", "production"): 5.0,
        ("checkout", "staging"): 2.0,
        ("web", "production"): 2.0,
    }
    total = prom.by_labels("releasebits_deployment_duration_seconds_sum", "component", "stage")
    assert total == {
        ("checkout", "production"): 276.0,
        ("checkout", "staging"): 14.0,
        ("web", "production"): 200.0,
    }
    build_count = prom.by_labels("releasebits_build_duration_seconds_count", "component")
    assert build_count == {("checkout",): 3.0, ("web",): 1.0}

    # A new deployment shows up in the next scrapes: counter + 1, the new version replaces the old.
    post(
        daemon,
        token,
        "deployments",
        Event("checkout", "production", "v1.3.0", "success", "success", 300, 30, "c130"),
    )
    success = (
        'releasebits_deployments_total{component="checkout",stage="production",result="success"}'
    )

    def new_state_visible() -> bool:
        value = prom.by_labels(success)
        current = prom.by_labels(
            'releasebits_deployed_version_info{component="checkout",stage="production"}',
            "version",
        )
        return value == {(): 4.0} and current == {("v1.3.0",): 1.0}

    prom.wait_for("the new deployment in Prometheus", new_state_visible)
    increase = prom.query(f"max_over_time({success}[1m]) - min_over_time({success}[1m])")
    assert [float(r["value"][1]) for r in increase] == [1.0]
    assert prom.by_labels(f'up{{job="{JOB}"}}') == {(): 1.0}
