"""POST /webhooks/gitlab with the examples of GitLab's webhook docs, sent with GitLab's headers."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from storage import commits
from tests.exporter.receivers.conftest import fixture, gitlab_post, metric

SIGNING = "whsec_" + base64.b64encode(b"k" * 32).decode()


def test_deployment_hook_success_is_a_deployment(hooks: Any, auth: dict[str, str]) -> None:
    resp = gitlab_post(hooks, "Deployment Hook", fixture("gitlab/deployment_hook.json"))
    assert resp.status_code == 201, resp.json
    [stored] = hooks.get("/components/test-deployment-webhooks/deployments", headers=auth).json
    # The full SHA is the tail of commit_url; the version its first 12 characters.
    assert stored["commit_sha"] == "279484c09fbe69ededfced8c1bb6e6d24616b468"
    assert stored["version"] == "279484c09fbe"
    assert stored["stage"] == "staging"
    # "2021-04-28 21:50:00 +0200" is not ISO 8601; it is 19:50 UTC.
    assert stored["finished_at"] == "2021-04-28T19:50:00.000Z"
    labels = {"component": "test-deployment-webhooks", "stage": "staging", "result": "success"}
    assert metric(hooks, "releasebits_deployments_total", **labels) == 1


def test_running_then_finished_and_a_retried_delivery(hooks: Any, auth: dict[str, str]) -> None:
    running = copy.deepcopy(fixture("gitlab/deployment_hook.json"))
    running.update(status="running", status_changed_at="2021-04-28 21:45:00 +0200")
    assert gitlab_post(hooks, "Deployment Hook", running).status_code == 200
    key = {"Idempotency-Key": "retry-1"}
    done = gitlab_post(
        hooks, "Deployment Hook", fixture("gitlab/deployment_hook.json"), headers=key
    )
    assert done.status_code == 201
    again = gitlab_post(
        hooks, "Deployment Hook", fixture("gitlab/deployment_hook.json"), headers=key
    )
    assert (again.status_code, again.json) == (200, {"duplicate": True})
    [stored] = hooks.get("/components/test-deployment-webhooks/deployments", headers=auth).json
    assert stored["started_at"] == "2021-04-28T19:45:00.000Z"
    assert stored["duration_seconds"] == 300


def test_event_uuid_dedupes_without_an_idempotency_key(hooks: Any, auth: dict[str, str]) -> None:
    headers = {"Idempotency-Key": "", "X-Gitlab-Event-UUID": "e3d1a5c2"}
    push = fixture("gitlab/push_hook.json")
    assert gitlab_post(hooks, "Push Hook", push, headers=headers).status_code == 200
    assert gitlab_post(hooks, "Push Hook", push, headers=headers).json == {"duplicate": True}


def test_token_is_required_and_compared(hooks: Any, auth: dict[str, str]) -> None:
    missing = gitlab_post(
        hooks, "Deployment Hook", fixture("gitlab/deployment_hook.json"), token=None
    )
    wrong = gitlab_post(hooks, "Deployment Hook", fixture("gitlab/deployment_hook.json"), token="x")
    assert (missing.status_code, missing.json["error"]["code"]) == (401, "missing_token")
    assert (wrong.status_code, wrong.json["error"]["code"]) == (401, "invalid_token")
    assert hooks.get("/components/test-deployment-webhooks", headers=auth).status_code == 404


def _signed(payload: Any, secret: str = SIGNING) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    msg_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    sig = Webhook(secret).sign(msg_id, now, body.decode())
    headers = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": "Deployment Hook",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sig,
        "Idempotency-Key": msg_id,
    }
    return body, headers


def test_signing_token_verifies_standard_webhooks_signatures(
    configure: Any, auth: dict[str, str]
) -> None:
    hooks = configure({"gitlab": {"signing_token_env": "GL_SIGNING"}}, {"GL_SIGNING": SIGNING})
    body, headers = _signed(fixture("gitlab/deployment_hook.json"))
    assert hooks.post("/webhooks/gitlab", data=body, headers=headers).status_code == 201
    other = "whsec_" + base64.b64encode(b"z" * 32).decode()
    body, headers = _signed(fixture("gitlab/deployment_hook.json"), other)
    resp = hooks.post("/webhooks/gitlab", data=body, headers=headers)
    assert (resp.status_code, resp.json["error"]["code"]) == (401, "invalid_signature")


def test_pipeline_hook_is_a_build(hooks: Any, auth: dict[str, str]) -> None:
    resp = gitlab_post(hooks, "Pipeline Hook", fixture("gitlab/pipeline_hook.json"))
    assert resp.status_code == 201, resp.json
    [build] = hooks.get("/components/gitlab-test/builds", headers=auth).json
    assert build["version"] == "bcbb5ec396a2"
    assert (build["started_at"], build["finished_at"]) == (
        "2016-08-12T15:23:28.000Z",
        "2016-08-12T15:26:29.000Z",
    )
    assert (build["branch"], build["url"]) == (
        "master",
        "http://example.com/gitlab-org/gitlab-test/-/pipelines/31",
    )
    running = copy.deepcopy(fixture("gitlab/pipeline_hook.json"))
    running["object_attributes"]["status"] = "running"
    assert gitlab_post(hooks, "Pipeline Hook", running).status_code == 202
    # A retried pipeline keeps its id and finishes again: a second build attempt.
    retried = copy.deepcopy(fixture("gitlab/pipeline_hook.json"))
    retried["object_attributes"]["finished_at"] = "2016-08-12 16:00:00 UTC"
    assert gitlab_post(hooks, "Pipeline Hook", retried).status_code == 201
    assert gitlab_post(hooks, "Pipeline Hook", retried).status_code == 200
    assert len(hooks.get("/components/gitlab-test/builds", headers=auth).json) == 2


def test_push_hook_stores_commits_linked_in_order(hooks: Any, db: Any) -> None:
    resp = gitlab_post(hooks, "Push Hook", fixture("gitlab/push_hook.json"))
    assert resp.json == {"component": "diaspora", "commits": 2, "new": 2}
    first = commits.get_commit(db, "diaspora", "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327")
    second = commits.get_commit(db, "diaspora", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7")
    assert first is not None and second is not None
    # 2 of total_commits_count 4 listed: the first one's parent is unknown, not `before`.
    assert first.parent_sha is None
    assert second.parent_sha == first.sha
    assert second.branch == "master"


def test_unsupported_events_are_202_never_4xx(hooks: Any) -> None:
    resp = gitlab_post(hooks, "Tag Push Hook", fixture("gitlab/tag_push_hook.json"))
    assert resp.status_code == 202
    approval = copy.deepcopy(fixture("gitlab/deployment_hook.json"))
    approval["status"] = "approved"
    assert gitlab_post(hooks, "Deployment Hook", approval).status_code == 202
    ignored = {"receiver": "gitlab", "event": "other", "outcome": "ignored"}
    assert metric(hooks, "releasebits_webhook_requests_total", **ignored) == 1
