"""The receivers in `releasebits serve`: a config file, a signed GitHub delivery over real HTTP,
a GitLab delivery, redelivery, and the results in the list endpoints and /metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.receivers.github import signature
from tests.conftest import FIXTURES, Daemon

pytestmark = pytest.mark.e2e


def _key(labels: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, _key(s.labels)): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


CONFIG = """
[receivers.github]
secret_env = "GITHUB_WEBHOOK_SECRET"
components = { "Codertocat/Hello-World" = "checkout" }

[receivers.gitlab]
token_env = "GITLAB_WEBHOOK_TOKEN"
stages = { "staging" = "stage" }
"""


def test_signed_deliveries_end_to_end(daemon: Daemon, tmp_path: Path) -> None:
    config = tmp_path / "releasebits.toml"
    config.write_text(CONFIG)
    daemon.extra_env.update(
        RELEASEBITS_CONFIG=str(config),
        GITHUB_WEBHOOK_SECRET="s3cret",
        GITLAB_WEBHOOK_TOKEN="t0ken",
    )
    daemon.start()
    token = (
        daemon.cli("token", "create", "reader", "--scope", "read").stdout.strip().splitlines()[-1]
    )
    body = (FIXTURES / "github/deployment_status.json").read_bytes()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": signature("s3cret", body),
    }
    first = requests.post(f"{daemon.url}/webhooks/github", data=body, headers=headers, timeout=10)
    assert first.status_code == 201, first.text
    redelivered = requests.post(
        f"{daemon.url}/webhooks/github", data=body, headers=headers, timeout=10
    )
    assert redelivered.json() == {"duplicate": True}

    gitlab = json.dumps(json.loads((FIXTURES / "gitlab/deployment_hook.json").read_text()))
    resp = requests.post(
        f"{daemon.url}/webhooks/gitlab",
        data=gitlab,
        headers={
            "X-Gitlab-Event": "Deployment Hook",
            "X-Gitlab-Token": "t0ken",
            "Content-Type": "application/json",
        },
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    off = requests.post(f"{daemon.url}/webhooks/cdevents", json={}, timeout=10)
    assert off.status_code == 404

    auth = {"Authorization": f"Bearer {token}"}
    [deployed] = requests.get(
        f"{daemon.url}/components/checkout/deployments", headers=auth, timeout=10
    ).json()
    assert (deployed["version"], deployed["stage"]) == ("f95f852bd8fc", "production")
    [staged] = requests.get(
        f"{daemon.url}/components/test-deployment-webhooks/deployments", headers=auth, timeout=10
    ).json()
    assert staged["stage"] == "stage"
    samples = _samples(requests.get(f"{daemon.url}/metrics", timeout=10).text)
    deployed_labels = {"component": "checkout", "stage": "production", "result": "success"}
    assert samples[("releasebits_deployments_total", _key(deployed_labels))] == 1
    dup = {"receiver": "github", "event": "deployment_status", "outcome": "duplicate"}
    assert samples[("releasebits_webhook_requests_total", _key(dup))] == 1
    assert daemon.stop() == 0
    assert "s3cret" not in daemon.log() and "t0ken" not in daemon.log()
