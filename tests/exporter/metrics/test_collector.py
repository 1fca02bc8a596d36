"""The collector's values after events posted through the API, across restarts and limits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from exporter.app import create_app
from exporter.metrics.collector import described_metric_names
from exporter.settings import Settings
from storage import heartbeat

README = Path(__file__).resolve().parents[3] / "README.md"


def post(
    client: Any, auth: dict[str, str], slug: str, kind: str = "deployments", **fields: Any
) -> None:
    resp = client.post(f"/components/{slug}/{kind}", json=fields, headers=auth)
    assert resp.status_code == 201, resp.json


def sample(app: Any, name: str, labels: dict[str, str] | None = None) -> float | None:
    return app.extensions["releasebits"].registry.get_sample_value(name, labels or {})


def test_counters_versions_and_histograms(app: Any, client: Any, auth: dict[str, str]) -> None:
    post(
        client,
        auth,
        "checkout",
        version="v1",
        stage="production",
        finished_at="2024-01-01T00:00:00Z",
        started_at="2023-12-31T23:59:00Z",
        commit_sha="aaa",
    )
    post(
        client,
        auth,
        "checkout",
        version="v2",
        stage="production",
        result="FAILED",
        finished_at="2024-01-02T00:00:00Z",
    )
    post(
        client,
        auth,
        "checkout",
        version="v2",
        stage="production",
        result="Succeeded",
        finished_at="2024-01-03T00:00:00Z",
        started_at="2024-01-02T23:55:00Z",
        commit_sha="bbb",
    )
    post(
        client,
        auth,
        "checkout",
        version="v0",
        stage="production",
        finished_at="2023-06-01T00:00:00Z",
    )  # late
    post(
        client,
        auth,
        "checkout",
        version="v9",
        stage="production",
        result="aborted",
        finished_at="2024-01-04T00:00:00Z",
    )
    post(
        client,
        auth,
        "checkout",
        kind="builds",
        version="v3",
        result="weird-status",
        started_at="2024-01-05T00:00:00Z",
        finished_at="2024-01-05T00:10:00Z",
    )

    prod = {"component": "checkout", "stage": "production"}
    assert sample(app, "releasebits_deployments_total", {**prod, "result": "success"}) == 3
    assert sample(app, "releasebits_deployments_total", {**prod, "result": "failure"}) == 1
    assert sample(app, "releasebits_deployments_total", {**prod, "result": "cancelled"}) == 1
    assert sample(app, "releasebits_deployments_total", {**prod, "result": "error"}) == 0
    assert (
        sample(app, "releasebits_deployment_last_timestamp_seconds", {**prod, "result": "success"})
        == 1704240000
    )
    # The late v0 and the aborted v9 do not change what runs.
    assert (
        sample(
            app, "releasebits_deployed_version_info", {**prod, "version": "v2", "commit_sha": "bbb"}
        )
        == 1
    )
    assert (
        sample(
            app, "releasebits_deployed_version_info", {**prod, "version": "v0", "commit_sha": ""}
        )
        is None
    )
    assert sample(app, "releasebits_deployed_version_since_timestamp_seconds", prod) == 1704240000
    assert sample(app, "releasebits_deployment_duration_seconds_count", prod) == 2
    assert sample(app, "releasebits_deployment_duration_seconds_sum", prod) == 360
    assert sample(app, "releasebits_deployment_duration_seconds_bucket", {**prod, "le": "60"}) == 1
    assert sample(app, "releasebits_deployment_duration_seconds_bucket", {**prod, "le": "300"}) == 2
    assert (
        sample(app, "releasebits_builds_total", {"component": "checkout", "result": "other"}) == 1
    )
    assert sample(app, "releasebits_build_duration_seconds_sum", {"component": "checkout"}) == 600
    assert sample(app, "releasebits_components") == 1
    assert (
        sample(
            app,
            "releasebits_info",
            {
                "version": __import__("exporter").__version__,
                "python_version": __import__("platform").python_version(),
            },
        )
        == 1
    )


def test_counters_survive_a_restart(
    settings: Settings, app: Any, client: Any, auth: dict[str, str]
) -> None:
    for i in range(3):
        post(client, auth, "svc", version=str(i))
    restarted = create_app(settings, process_metrics=False)
    labels = {"component": "svc", "stage": "production", "result": "success"}
    assert sample(restarted, "releasebits_deployments_total", labels) == 3
    post(restarted.test_client(), auth, "svc", version="4")
    assert sample(restarted, "releasebits_deployments_total", labels) == 4


def test_cardinality_limit_is_visible(
    settings: Settings, db: Any, auth: dict[str, str], caplog: Any
) -> None:
    limited = create_app(settings.replace(max_components=2), process_metrics=False)
    client = limited.test_client()
    for slug in ("a", "b", "c", "d"):
        post(client, auth, slug, version="1")
    post(client, auth, "c", version="2")
    text = generate_latest(limited.extensions["releasebits"].registry).decode()
    assert 'component="a"' in text and 'component="b"' in text  # the first two seen
    assert 'component="c"' not in text
    assert (
        sample(
            limited, "releasebits_series_limit_exceeded_events_total", {"dimension": "component"}
        )
        == 3
    )
    assert sample(limited, "releasebits_components") == 4
    # One warning when a component first appears past the limit, at most one a minute: 'd'
    # (within the minute) is held back, and 'c' version 2 is no new component.
    warned = [r.getMessage() for r in caplog.records if "past max_components" in r.getMessage()]
    assert [m.split()[1] for m in warned] == ["'c'"]
    assert "past max_components=2" in warned[0]
    # The events themselves are stored and listed.
    assert len(client.get("/components/c/deployments", headers=auth).json) == 2


def test_worker_heartbeat_is_exported(app: Any, db: Any) -> None:
    assert sample(app, "releasebits_worker_last_heartbeat_timestamp_seconds") is None
    heartbeat.beat(db, 4242)
    beat = heartbeat.last_beat(db)
    assert beat is not None
    assert sample(app, "releasebits_worker_last_heartbeat_timestamp_seconds") == beat


def test_metrics_endpoint_is_public_by_default(client: Any) -> None:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/plain; version=0.0.4")


def test_every_described_metric_is_documented_in_readme() -> None:
    readme = README.read_text()
    documented = set(re.findall(r"`(releasebits_[a-z_]+)`", readme))
    missing = [name for name in described_metric_names() if name not in documented]
    assert not missing, f"README.md does not document: {missing}"


def test_series_are_listed_in_label_order_whatever_the_arrival_order(
    app: Any, client: Any, auth: dict[str, str]
) -> None:
    # Diffing two scrapes (or a golden file) only works when the order does not follow arrival.
    for slug in ("zeta", "alpha", "mid"):
        post(client, auth, slug, version="v1", stage="production", started_at="2024-01-01T00:00:00Z",
             finished_at="2024-01-01T00:01:00Z")  # fmt: skip
    text = generate_latest(app.extensions["releasebits"].registry).decode()
    for family in (
        "releasebits_deployment_duration_seconds_count",
        "releasebits_deployed_version_info",
    ):
        order = re.findall(rf'^{family}{{[^}}]*\bcomponent="(\w+)"', text, re.M)
        assert order == ["alpha", "mid", "zeta"], family
