"""POST /webhooks/github with octokit's example payloads, signed as GitHub signs them; the results
read back through the list endpoints and /metrics."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import urlencode

from exporter.receivers.github import signature
from storage import commits
from tests.exporter.receivers.conftest import (
    GITHUB_SECRET,
    fixture,
    github_post,
    metric,
)

SUCCESS = "github/deployment_status.json"  # deployment 145988746, production, success


def _deployments(client: Any, auth: dict[str, str], slug: str = "hello-world") -> list[Any]:
    resp = client.get(f"/components/{slug}/deployments", headers=auth)
    return resp.json if resp.status_code == 200 else []


def _status(state: str, at: str, deployment_id: int = 145988746) -> dict[str, Any]:
    payload = copy.deepcopy(fixture(SUCCESS))
    payload["deployment_status"].update(state=state, created_at=at, updated_at=at)
    payload["deployment"]["id"] = deployment_id
    return payload


def test_githubs_documented_signature_test_vector() -> None:
    # docs.github.com "Validating webhook deliveries", "Testing the webhook payload validation".
    assert signature(GITHUB_SECRET, b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_the_test_vector_passes_authentication_and_a_wrong_one_does_not(hooks: Any) -> None:
    body = b"Hello, World!"
    good = {
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    }
    # Authenticated, then refused as a body: not JSON (400), not a bad signature (401).
    resp = hooks.post("/webhooks/github", data=body, headers=good)
    assert (resp.status_code, resp.json["error"]["code"]) == (400, "invalid_json")
    bad = {**good, "X-Hub-Signature-256": "sha256=" + "0" * 64}
    resp = hooks.post("/webhooks/github", data=body, headers=bad)
    assert (resp.status_code, resp.json["error"]["code"]) == (401, "invalid_signature")


def test_ping_answers_200(hooks: Any) -> None:
    resp = github_post(hooks, "ping", fixture("github/ping.json"))
    assert resp.status_code == 200 and resp.json == {"pong": True}


def test_deployment_status_success_is_a_deployment(hooks: Any, auth: dict[str, str]) -> None:
    resp = github_post(hooks, "deployment_status", fixture(SUCCESS))
    assert resp.status_code == 201, resp.json
    [stored] = _deployments(hooks, auth)
    assert resp.headers["Location"] == f"/components/hello-world/deployments/{stored['id']}"
    assert stored["version"] == "f95f852bd8fc"  # no payload version, ref "master" is no tag
    assert stored["commit_sha"] == "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
    assert (stored["stage"], stored["branch"], stored["result_class"]) == (
        "production",
        "master",
        "success",
    )
    assert stored["finished_at"] == "2019-05-15T15:20:55.000Z"
    assert stored["meta_data"]["github_deployment_id"] == "145988746"
    labels = {"component": "hello-world", "stage": "production", "result": "success"}
    assert metric(hooks, "releasebits_deployments_total", **labels) == 1
    accepted = {"receiver": "github", "event": "deployment_status", "outcome": "accepted"}
    assert metric(hooks, "releasebits_webhook_requests_total", **accepted) == 1


def test_redelivery_and_a_new_delivery_of_the_same_deployment_store_one(
    hooks: Any, auth: dict[str, str]
) -> None:
    first = github_post(hooks, "deployment_status", fixture(SUCCESS), delivery="d-1")
    again = github_post(hooks, "deployment_status", fixture(SUCCESS), delivery="d-1")
    assert (again.status_code, again.json) == (200, {"duplicate": True})
    other = github_post(hooks, "deployment_status", fixture(SUCCESS), delivery="d-2")
    assert other.status_code == 200
    assert other.json == {"id": first.json["id"], "updated": False}
    assert len(_deployments(hooks, auth)) == 1
    labels = {"component": "hello-world", "stage": "production", "result": "success"}
    assert metric(hooks, "releasebits_deployments_total", **labels) == 1
    dup = {"receiver": "github", "event": "deployment_status", "outcome": "duplicate"}
    assert metric(hooks, "releasebits_webhook_requests_total", **dup) == 1


def test_a_later_final_status_does_not_change_the_first(hooks: Any, auth: dict[str, str]) -> None:
    github_post(hooks, "deployment_status", _status("success", "2019-05-15T15:20:55Z"))
    resp = github_post(hooks, "deployment_status", _status("failure", "2019-05-15T15:30:00Z"))
    assert resp.status_code == 200 and resp.json["updated"] is False
    [stored] = _deployments(hooks, auth)
    assert stored["result"] == "success"


def _ordered(hooks: Any, auth: dict[str, str], order: list[str], deployment_id: int) -> Any:
    statuses = {
        "queued": _status("queued", "2019-05-15T15:20:30Z", deployment_id),
        "in_progress": _status("in_progress", "2019-05-15T15:20:40Z", deployment_id),
        "success": _status("success", "2019-05-15T15:20:55Z", deployment_id),
    }
    for state in order:
        assert github_post(hooks, "deployment_status", statuses[state]).status_code in (200, 201)
    return [
        d
        for d in _deployments(hooks, auth)
        if d["meta_data"]["github_deployment_id"] == str(deployment_id)
    ]


def test_start_statuses_only_remember_the_start_in_any_order(
    hooks: Any, auth: dict[str, str]
) -> None:
    in_order = _ordered(hooks, auth, ["queued", "in_progress", "success"], 1)
    reversed_ = _ordered(hooks, auth, ["success", "in_progress", "queued"], 2)
    replayed = _ordered(hooks, auth, ["in_progress", "success", "success", "queued"], 3)
    for stored in (in_order, reversed_, replayed):
        assert len(stored) == 1
        assert stored[0]["result"] == "success"
        assert stored[0]["finished_at"] == "2019-05-15T15:20:55.000Z"
    assert in_order[0]["started_at"] == "2019-05-15T15:20:30.000Z"
    # A start arriving after the final status fills the start the deployment lacked.
    assert reversed_[0]["started_at"] == "2019-05-15T15:20:40.000Z"
    assert replayed[0]["started_at"] == "2019-05-15T15:20:40.000Z"
    text = hooks.get("/metrics").get_data(as_text=True)
    assert (
        'releasebits_deployment_duration_seconds_count{component="hello-world",stage="production"} 3.0'
        in text
    )
    assert (
        'releasebits_deployment_duration_seconds_sum{component="hello-world",stage="production"} 55.0'
        in text
    )


def test_a_start_status_alone_counts_nothing(hooks: Any, auth: dict[str, str]) -> None:
    resp = github_post(
        hooks, "deployment_status", fixture("github/deployment_status_gh-pages.json")
    )
    assert resp.status_code == 200
    assert resp.json == {"started_at": "2022-01-03T01:28:40.000Z"}
    assert _deployments(hooks, auth) == []


def test_inactive_never_changes_anything(hooks: Any, auth: dict[str, str]) -> None:
    resp = github_post(hooks, "deployment_status", _status("inactive", "2019-05-15T16:00:00Z"))
    assert resp.status_code == 202 and resp.json["ignored"].startswith("inactive")
    assert _deployments(hooks, auth) == []
    github_post(hooks, "deployment_status", fixture(SUCCESS))
    github_post(hooks, "deployment_status", _status("inactive", "2019-05-15T16:00:00Z"))
    assert [d["result"] for d in _deployments(hooks, auth)] == ["success"]


def test_rotation_accepts_the_previous_secret_and_refuses_others(
    hooks: Any, auth: dict[str, str]
) -> None:
    assert (
        github_post(hooks, "deployment_status", fixture(SUCCESS), secret="old-secret").status_code
        == 201
    )
    wrong = github_post(
        hooks, "deployment_status", _status("success", "2019-05-16T00:00:00Z", 7), secret="nope"
    )
    assert (wrong.status_code, wrong.json["error"]["code"]) == (401, "invalid_signature")
    body = json.dumps(_status("success", "2019-05-16T00:00:00Z", 8)).encode()
    unsigned = hooks.post(
        "/webhooks/github", data=body, headers={"X-GitHub-Event": "deployment_status"}
    )
    assert (unsigned.status_code, unsigned.json["error"]["code"]) == (401, "missing_signature")
    assert len(_deployments(hooks, auth)) == 1
    unauthorized = {"receiver": "github", "event": "deployment_status", "outcome": "unauthorized"}
    assert metric(hooks, "releasebits_webhook_requests_total", **unauthorized) == 2


def test_workflow_run_completed_is_a_build_and_a_rerun_another(
    hooks: Any, auth: dict[str, str]
) -> None:
    run = fixture("github/workflow_run_completed.json")
    assert github_post(hooks, "workflow_run", run).status_code == 201
    assert github_post(hooks, "workflow_run", run).status_code == 200  # new delivery, same run
    rerun = copy.deepcopy(run)
    rerun["workflow_run"].update(
        run_attempt=2, conclusion="failure", updated_at="2020-10-05T16:40:00Z"
    )
    assert github_post(hooks, "workflow_run", rerun).status_code == 201
    builds = hooks.get("/components/octo-repo/builds", headers=auth).json
    assert [(b["result_class"], b["meta_data"]["run_attempt"]) for b in builds] == [
        ("failure", "2"),
        ("success", "1"),
    ]
    first = builds[1]
    assert first["version"] == "3484a3fb816e"
    assert first["url"] == "https://github.com/octo-org/octo-repo/actions/runs/289782451"
    assert (first["started_at"], first["finished_at"]) == (
        "2020-10-05T16:33:49.000Z",
        "2020-10-05T16:33:49.000Z",
    )
    assert metric(hooks, "releasebits_builds_total", component="octo-repo", result="success") == 1


def test_a_requested_run_and_workflows_not_listed_are_ignored(
    configure: Any, auth: dict[str, str]
) -> None:
    hooks = configure({"github": {"secret_env": "GH_SECRET", "builds": ["ci.yml"]}})
    requested = github_post(hooks, "workflow_run", fixture("github/workflow_run_requested.json"))
    assert requested.status_code == 202 and "only completed runs" in requested.json["ignored"]
    other = github_post(hooks, "workflow_run", fixture("github/workflow_run_completed.json"))
    assert other.status_code == 202 and "builds" in other.json["ignored"]
    assert hooks.get("/components/octo-repo/builds", headers=auth).status_code == 404
    listed = configure({"github": {"secret_env": "GH_SECRET", "builds": ["test.yml"]}})
    assert (
        github_post(
            listed, "workflow_run", fixture("github/workflow_run_completed.json")
        ).status_code
        == 201
    )


def test_push_stores_its_commits(hooks: Any, db: Any) -> None:
    resp = github_post(hooks, "push", fixture("github/push_with-new-branch.json"))
    assert resp.status_code == 200
    assert resp.json == {"component": "hello-world", "commits": 1, "new": 1}
    found = commits.get_commit(db, "hello-world", "6113728f27ae82c7b1a177c8d03f9e96e0adf246")
    assert found is not None
    assert (found.branch, found.parent_sha) == ("master", None)  # a new branch: no `before`
    assert found.committed_ts == 1557933565.0  # 2019-05-15T15:19:25Z
    again = github_post(hooks, "push", fixture("github/push_with-new-branch.json"))
    assert again.json["new"] == 0


def test_a_tag_deletion_and_other_events_are_202(hooks: Any) -> None:
    deleted = github_post(hooks, "push", fixture("github/push.json"))
    assert deleted.status_code == 202 and "deleted" in deleted.json["ignored"]
    issues = github_post(hooks, "issues", {"action": "opened"})
    assert issues.status_code == 202
    other = {"receiver": "github", "event": "other", "outcome": "ignored"}
    assert metric(hooks, "releasebits_webhook_requests_total", **other) == 1


def test_mapping_and_the_default_for_unmapped_repositories(
    configure: Any, auth: dict[str, str]
) -> None:
    hooks = configure(
        {
            "github": {
                "secret_env": "GH_SECRET",
                "components": {"Codertocat/Hello-World": "checkout"},
                "stages": {"production": "prod"},
            }
        }
    )
    assert github_post(hooks, "deployment_status", fixture(SUCCESS)).status_code == 201
    [stored] = _deployments(hooks, auth, "checkout")
    assert stored["stage"] == "prod"
    unmapped = fixture("github/workflow_run_completed.json")
    assert github_post(hooks, "workflow_run", unmapped).status_code == 201
    assert len(hooks.get("/components/octo-repo/builds", headers=auth).json) == 1


def test_bad_input(configure: Any, auth: dict[str, str]) -> None:
    hooks = configure(max_body_bytes=16384)
    broken = github_post(hooks, "deployment_status", None, raw=b'{"action": ')
    assert (broken.status_code, broken.json["error"]["code"]) == (400, "invalid_json")
    big = github_post(hooks, "deployment_status", None, raw=b"{" + b" " * 20000 + b"}")
    assert big.status_code == 413
    missing = copy.deepcopy(fixture(SUCCESS))
    del missing["deployment"]
    resp = github_post(hooks, "deployment_status", missing)
    assert resp.status_code == 202 and "deployment" in resp.json["ignored"]
    no_env = copy.deepcopy(fixture(SUCCESS))
    del no_env["deployment"]["environment"], no_env["deployment_status"]["environment"]
    assert github_post(hooks, "deployment_status", no_env).status_code == 202
    no_event = hooks.post(
        "/webhooks/github",
        data=b"{}",
        headers={"X-Hub-Signature-256": signature(GITHUB_SECRET, b"{}")},
    )
    assert no_event.status_code == 400
    assert _deployments(hooks, auth) == []
    invalid = {"receiver": "github", "event": "deployment_status", "outcome": "invalid"}
    assert metric(hooks, "releasebits_webhook_requests_total", **invalid) == 2


def test_a_form_encoded_delivery_is_read_too(hooks: Any, auth: dict[str, str]) -> None:
    body = urlencode({"payload": json.dumps(fixture(SUCCESS))}).encode()
    resp = hooks.post(
        "/webhooks/github",
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-GitHub-Event": "deployment_status",
            "X-Hub-Signature-256": signature(GITHUB_SECRET, body),
        },
    )
    assert resp.status_code == 201
    assert len(_deployments(hooks, auth)) == 1


def test_receivers_are_off_until_configured(configure: Any) -> None:
    hooks = configure({})
    resp = github_post(hooks, "ping", fixture("github/ping.json"))
    assert resp.status_code == 404 and "[receivers.github]" in resp.json["error"]["message"]
    assert hooks.post("/webhooks/cdevents", json={}).status_code == 404
    assert "releasebits_webhook_requests_total{" not in hooks.get("/metrics").get_data(as_text=True)
