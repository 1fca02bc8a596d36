"""`releasebits notify` as a pipeline step runs it: a subprocess with a CI's environment, against
a running daemon (or none), plus the CI readers and the retry loop on their own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Response

from exporter.notify.ci import detect
from exporter.notify.client import build_notice, send
from tests.conftest import Daemon, free_port

SHA = "b927e3797fc56fb8bc093d59ee7a624dafddadd2"
GITHUB_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SHA": SHA,
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_REF_NAME": "main",
    "GITHUB_REF_TYPE": "branch",
    "GITHUB_REPOSITORY": "acme/checkout-web",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_RUN_ID": "1658821493",
    "GITHUB_RUN_ATTEMPT": "1",
    "GITHUB_JOB": "deploy",
}
GITLAB_ENV = {
    "GITLAB_CI": "true",
    "CI_COMMIT_SHA": SHA,
    "CI_COMMIT_TAG": "v1.4.0",
    "CI_COMMIT_REF_NAME": "v1.4.0",
    "CI_PROJECT_PATH": "acme/billing-api",
    "CI_PIPELINE_ID": "1000",
    "CI_PIPELINE_URL": "https://gitlab.example.com/acme/billing-api/-/pipelines/1000",
    "CI_JOB_ID": "5001",
    "CI_JOB_NAME": "deploy-prod",
    "CI_JOB_URL": "https://gitlab.example.com/acme/billing-api/-/jobs/5001",
    "CI_JOB_STARTED_AT": "2024-05-01T12:00:00Z",
    "CI_ENVIRONMENT_NAME": "production",
}


def notify(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_", "GITLAB"))}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "exporter", "notify", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _list(daemon: Daemon, token: str, path: str) -> list[Any]:
    resp = requests.get(daemon.url + path, headers={"Authorization": token}, timeout=10)
    assert resp.status_code == 200, resp.text
    return list(resp.json())


@pytest.mark.e2e
def test_notify_from_github_actions_and_gitlab_ci_against_a_daemon(daemon: Daemon) -> None:
    daemon.start()
    token = daemon.cli("token", "create", "ci").stdout.strip().splitlines()[-1]
    base = {"RELEASEBITS_URL": daemon.url, "RELEASEBITS_TOKEN": token}

    done = notify("deployment", "--stage", "production", env={**base, **GITHUB_ENV})
    assert done.returncode == 0, done.stderr
    assert "recorded" in done.stdout
    # The job is re-run: attempt 2 of the same run counts once.
    rerun = notify(
        "deployment", "--stage", "production", env={**base, **GITHUB_ENV, "GITHUB_RUN_ATTEMPT": "2"}
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "already recorded" in rerun.stdout
    [stored] = _list(daemon, token, "/components/checkout-web/deployments")
    assert (stored["version"], stored["commit_sha"], stored["branch"]) == (
        "b927e3797fc5",
        SHA,
        "main",
    )
    assert (
        stored["meta_data"]["run_url"]
        == "https://github.com/acme/checkout-web/actions/runs/1658821493"
    )

    gitlab = {**base, **GITLAB_ENV}
    assert notify("deployment", env=gitlab).returncode == 0
    retried = {**gitlab, "CI_JOB_ID": "5002", "CI_JOB_STARTED_AT": "2024-05-01T12:05:00Z"}
    again = notify("deployment", env=retried)
    assert again.returncode == 0 and "already recorded" in again.stdout
    [deployed] = _list(daemon, token, "/components/billing-api/deployments")
    assert (deployed["version"], deployed["tag"], deployed["stage"]) == (
        "v1.4.0",
        "v1.4.0",
        "production",
    )
    assert deployed["started_at"] == "2024-05-01T12:00:00.000Z"
    built = notify("build", "--result", "passed", env=gitlab)
    assert built.returncode == 0, built.stderr
    [b] = _list(daemon, token, "/components/billing-api/builds")
    assert (b["result_class"], b["url"]) == ("success", GITLAB_ENV["CI_JOB_URL"])


def test_daemon_down_warns_and_exits_0_unless_strict() -> None:
    env = {
        **GITHUB_ENV,
        "RELEASEBITS_URL": f"http://127.0.0.1:{free_port()}",
        "RELEASEBITS_TOKEN": "rb_x",
    }
    began = time.monotonic()
    soft = notify("deployment", "--retry-for", "1", env=env)
    assert soft.returncode == 0
    assert "warning: the deployment was not recorded: cannot reach ReleaseBits" in soft.stderr
    assert "not failing the pipeline" in soft.stderr
    strict = notify("deployment", "--retry-for", "1", "--strict", env=env)
    assert strict.returncode == 1
    assert time.monotonic() - began < 30  # bounded: two runs of ~1 s plus interpreter starts


def test_dry_run_prints_the_request_and_sends_nothing() -> None:
    env = {**GITHUB_ENV, "RELEASEBITS_URL": "http://127.0.0.1:9", "RELEASEBITS_TOKEN": "rb_secret"}
    done = notify("build", "--dry-run", env=env)
    assert done.returncode == 0
    assert done.stdout.startswith("POST http://127.0.0.1:9/components/checkout-web/builds\n")
    assert "Idempotency-Key: releasebits-notify-" in done.stdout
    assert "rb_secret" not in done.stdout and "Bearer ***" in done.stdout
    assert '"url": "https://github.com/acme/checkout-web/actions/runs/1658821493"' in done.stdout


def test_help_on_every_command() -> None:
    for args in (["--help"], ["deployment", "--help"], ["build", "--help"]):
        done = notify(*args, env={})
        assert done.returncode == 0 and "Usage:" in done.stdout


def test_retries_5xx_with_backoff_then_succeeds(httpserver: HTTPServer) -> None:
    answers = [
        Response("busy", status=503),
        Response("busy", status=502, headers={"Retry-After": "3"}),
        Response('{"id": "d1"}', status=201, content_type="application/json"),
    ]
    httpserver.expect_request(
        "/components/checkout/deployments", method="POST"
    ).respond_with_handler(lambda _r: answers.pop(0))
    clock = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    notice = build_notice(
        httpserver.url_for("/"), "t", "deployment", "checkout", {"version": "v1"}, "k"
    )
    sent = send(notice, retry_for=60, sleep=sleep, monotonic=lambda: clock[0])
    assert sent.ok and sent.status == 201
    assert (
        len(sleeps) == 2 and 0.25 <= sleeps[0] <= 0.5 and sleeps[1] == 3.0
    )  # Retry-After honoured
    assert [r.headers["Idempotency-Key"] for r, _ in httpserver.log] == ["k", "k", "k"]


def test_gives_up_after_the_bounded_time_and_never_retries_4xx(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/components/checkout/deployments").respond_with_data(
        "down", status=503
    )
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    notice = build_notice(
        httpserver.url_for("/"), "t", "deployment", "checkout", {"version": "v1"}, None
    )
    sent = send(notice, retry_for=20, sleep=sleep, monotonic=lambda: clock[0])
    assert not sent.ok and "gave up after 20s" in sent.message
    assert clock[0] <= 20
    httpserver.clear()
    httpserver.expect_request("/components/checkout/deployments").respond_with_json(
        {"error": {"code": "invalid_token", "message": "unknown"}}, status=401
    )
    refused = send(notice, retry_for=20, sleep=sleep, monotonic=lambda: clock[0])
    assert (refused.ok, refused.status, len(httpserver.log)) == (False, 401, 1)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            GITHUB_ENV,
            {
                "provider": "github-actions",
                "commit": SHA,
                "branch": "main",
                "run_id": "1658821493",
                "attempt": "1",
            },
        ),
        (
            {**GITHUB_ENV, "GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": "v2.0.0"},
            {"tag": "v2.0.0", "branch": None},
        ),
        (
            GITLAB_ENV,
            {
                "provider": "gitlab-ci",
                "tag": "v1.4.0",
                "environment": "production",
                "started_at": "2024-05-01T12:00:00Z",
            },
        ),
        (
            {
                "JENKINS_URL": "https://ci/",
                "GIT_COMMIT": SHA,
                "GIT_BRANCH": "origin/main",
                "BUILD_URL": "https://ci/job/x/7/",
                "BUILD_TAG": "jenkins-x-7",
            },
            {"provider": "jenkins", "branch": "main", "run_id": "jenkins-x-7"},
        ),
        (
            {
                "CIRCLECI": "true",
                "CIRCLE_SHA1": SHA,
                "CIRCLE_BRANCH": "main",
                "CIRCLE_WORKFLOW_ID": "w1",
                "CIRCLE_BUILD_URL": "https://circleci.com/x/1",
            },
            {"provider": "circleci", "run_id": "w1"},
        ),
        (
            {
                "BUILDKITE": "true",
                "BUILDKITE_COMMIT": SHA,
                "BUILDKITE_TAG": "v3",
                "BUILDKITE_BUILD_ID": "b1",
                "BUILDKITE_RETRY_COUNT": "1",
            },
            {"provider": "buildkite", "tag": "v3", "attempt": "2"},
        ),
        (
            {
                "TF_BUILD": "True",
                "BUILD_SOURCEVERSION": SHA,
                "BUILD_SOURCEBRANCH": "refs/tags/v4",
                "BUILD_BUILDID": "9",
                "SYSTEM_JOBATTEMPT": "2",
            },
            {"provider": "azure-pipelines", "tag": "v4", "attempt": "2"},
        ),
        (
            {
                "BITBUCKET_BUILD_NUMBER": "12",
                "BITBUCKET_COMMIT": SHA,
                "BITBUCKET_BRANCH": "main",
                "BITBUCKET_EXIT_CODE": "1",
            },
            {"provider": "bitbucket-pipelines", "run_id": "12", "result": "failed"},
        ),
        ({}, {"provider": None, "commit": None}),
    ],
)
def test_ci_environments_are_read(env: dict[str, str], expected: dict[str, Any]) -> None:
    ctx = detect(env)
    assert {k: getattr(ctx, k) for k in expected} == expected
