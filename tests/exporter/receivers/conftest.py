"""A daemon app with receivers configured, and helpers that post as GitHub and GitLab do."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from exporter.app import create_app
from exporter.receivers.github import signature
from exporter.receivers.registry import parse_receivers
from exporter.settings import Settings
from tests.conftest import FIXTURES

GITHUB_SECRET = "It's a Secret to Everybody"  # the secret of GitHub's documented test vector
GITLAB_TOKEN = "gl-token-0123456789"
ENVIRON = {"GH_SECRET": GITHUB_SECRET, "GH_OLD": "old-secret", "GL_TOKEN": GITLAB_TOKEN}
RECEIVERS = {
    "github": {"secret_env": "GH_SECRET", "previous_secret_env": "GH_OLD"},
    "gitlab": {"token_env": "GL_TOKEN"},
    "cdevents": {},
}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def configure(settings: Settings, db: Any) -> Callable[..., Any]:
    """A test client of an app whose [receivers] tables are `tables` (default: all three)."""

    def make(
        tables: dict[str, Any] | None = None, environ: dict[str, str] | None = None, **changes: Any
    ) -> Any:
        env = {**ENVIRON, **(environ or {})}
        receivers = parse_receivers(RECEIVERS if tables is None else tables, env)
        app = create_app(settings.replace(receivers=receivers, **changes), process_metrics=False)
        return app.test_client()

    return make


@pytest.fixture
def hooks(configure: Callable[..., Any]) -> Any:
    return configure()


def github_post(
    client: Any,
    event: str,
    payload: Any,
    *,
    delivery: str | None = None,
    secret: str = GITHUB_SECRET,
    raw: bytes | None = None,
) -> Any:
    """POST /webhooks/github as GitHub does: JSON body, X-Hub-Signature-256 over its bytes."""
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": signature(secret, body),
        "User-Agent": "GitHub-Hookshot/abc123",
    }
    return client.post("/webhooks/github", data=body, headers=headers)


def gitlab_post(
    client: Any,
    event: str,
    payload: Any,
    *,
    token: str | None = GITLAB_TOKEN,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST /webhooks/gitlab as GitLab 17.4+ does: X-Gitlab-Token and an Idempotency-Key."""
    sent = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": event,
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        "Idempotency-Key": str(uuid.uuid4()),
        "User-Agent": "GitLab/17.4.0",
    }
    if token is not None:
        sent["X-Gitlab-Token"] = token
    sent.update(headers or {})
    return client.post("/webhooks/gitlab", data=json.dumps(payload).encode(), headers=sent)


def metric(client: Any, name: str, **labels: str) -> float | None:
    """The value of one sample of /metrics, or None when absent."""
    text = client.get("/metrics").get_data(as_text=True)
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None
