"""What a pipeline step can learn from its CI's own environment variables.

Variables per CI are from each vendor's documentation (see /work/prep/fixtures/ci-env.md for the
sources): GitHub Actions, GitLab CI, Jenkins (Git and branch-source plugins), CircleCI,
Buildkite, Azure Pipelines and Bitbucket Pipelines. Nothing here is guessed from a value's
shape except a ref's tag-ness (`refs/tags/...`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

Env = Mapping[str, str]


@dataclass(frozen=True)
class CIContext:
    """One CI run as a pipeline step sees it; every field may be unknown (None)."""

    provider: str | None = None
    repository: str | None = None  # owner/name or project path, for the default component
    commit: str | None = None
    branch: str | None = None
    tag: str | None = None
    run_url: str | None = None
    run_id: str | None = None  # the run, the same on a retried job
    attempt: str | None = None
    job: str | None = None
    environment: str | None = None
    started_at: str | None = None
    result: str | None = None  # only where the CI says (GitLab's after_script, Bitbucket's)


def _get(env: Env, *names: str) -> str | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def _ref(ref: str | None) -> tuple[str | None, str | None]:
    """(branch, tag) of a full ref such as refs/heads/main or refs/tags/v1.2.3."""
    if not ref:
        return None, None
    if ref.startswith("refs/tags/"):
        return None, ref.removeprefix("refs/tags/")
    return ref.removeprefix("refs/heads/"), None


def _github(env: Env) -> CIContext:
    tag = env.get("GITHUB_REF_NAME") if env.get("GITHUB_REF_TYPE") == "tag" else None
    run_url = None
    if all(env.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")):
        run_url = f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return CIContext(
        provider="github-actions",
        repository=_get(env, "GITHUB_REPOSITORY"),
        commit=_get(env, "GITHUB_SHA"),
        branch=None if tag else _get(env, "GITHUB_HEAD_REF", "GITHUB_REF_NAME"),
        tag=tag,
        run_url=run_url,
        run_id=_get(env, "GITHUB_RUN_ID"),
        attempt=_get(env, "GITHUB_RUN_ATTEMPT"),
        job=_get(env, "GITHUB_JOB"),
    )


def _gitlab(env: Env) -> CIContext:
    tag = _get(env, "CI_COMMIT_TAG")
    return CIContext(
        provider="gitlab-ci",
        repository=_get(env, "CI_PROJECT_PATH"),
        commit=_get(env, "CI_COMMIT_SHA"),
        branch=None if tag else _get(env, "CI_COMMIT_BRANCH", "CI_COMMIT_REF_NAME"),
        tag=tag,
        run_url=_get(env, "CI_JOB_URL", "CI_PIPELINE_URL"),
        run_id=_get(env, "CI_PIPELINE_ID"),  # a retried job gets a new CI_JOB_ID, same pipeline
        job=_get(env, "CI_JOB_NAME"),
        environment=_get(env, "CI_ENVIRONMENT_NAME"),
        started_at=_get(env, "CI_JOB_STARTED_AT"),
        result=_get(env, "CI_JOB_STATUS"),  # set for after_script: success, failed, canceled
    )


def _jenkins(env: Env) -> CIContext:
    branch = _get(env, "BRANCH_NAME", "GIT_LOCAL_BRANCH", "GIT_BRANCH")
    tag = _get(env, "TAG_NAME")
    return CIContext(
        provider="jenkins",
        repository=_get(env, "JOB_NAME"),
        commit=_get(env, "GIT_COMMIT"),
        branch=None if tag or not branch else branch.removeprefix("origin/"),
        tag=tag,
        run_url=_get(env, "BUILD_URL"),
        run_id=_get(env, "BUILD_TAG"),  # jenkins-${JOB_NAME}-${BUILD_NUMBER}
    )


def _circleci(env: Env) -> CIContext:
    tag = _get(env, "CIRCLE_TAG")
    return CIContext(
        provider="circleci",
        repository=_get(env, "CIRCLE_PROJECT_REPONAME"),
        commit=_get(env, "CIRCLE_SHA1"),
        branch=None if tag else _get(env, "CIRCLE_BRANCH"),
        tag=tag,
        run_url=_get(env, "CIRCLE_BUILD_URL"),
        run_id=_get(env, "CIRCLE_WORKFLOW_ID"),
        job=_get(env, "CIRCLE_JOB"),
    )


def _buildkite(env: Env) -> CIContext:
    tag = _get(env, "BUILDKITE_TAG")
    retries = _get(env, "BUILDKITE_RETRY_COUNT")
    return CIContext(
        provider="buildkite",
        repository=_get(env, "BUILDKITE_PIPELINE_SLUG"),
        commit=_get(env, "BUILDKITE_COMMIT"),
        branch=None if tag else _get(env, "BUILDKITE_BRANCH"),
        tag=tag,
        run_url=_get(env, "BUILDKITE_BUILD_URL"),
        run_id=_get(env, "BUILDKITE_BUILD_ID"),
        attempt=str(int(retries) + 1) if retries and retries.isdigit() else None,
        job=_get(env, "BUILDKITE_STEP_KEY", "BUILDKITE_LABEL"),
    )


def _azure(env: Env) -> CIContext:
    branch, tag = _ref(_get(env, "BUILD_SOURCEBRANCH"))
    return CIContext(
        provider="azure-pipelines",
        repository=_get(env, "BUILD_REPOSITORY_NAME"),
        commit=_get(env, "BUILD_SOURCEVERSION"),
        branch=branch,
        tag=tag,
        run_id=_get(env, "BUILD_BUILDID"),
        attempt=_get(env, "SYSTEM_JOBATTEMPT"),
        environment=_get(env, "ENVIRONMENT_NAME"),
    )


def _bitbucket(env: Env) -> CIContext:
    tag = _get(env, "BITBUCKET_TAG")
    return CIContext(
        provider="bitbucket-pipelines",
        repository=_get(env, "BITBUCKET_REPO_SLUG"),
        commit=_get(env, "BITBUCKET_COMMIT"),
        branch=None if tag else _get(env, "BITBUCKET_BRANCH"),
        tag=tag,
        run_id=_get(env, "BITBUCKET_BUILD_NUMBER"),
        environment=_get(env, "BITBUCKET_DEPLOYMENT_ENVIRONMENT"),
        result=_exit_result(_get(env, "BITBUCKET_EXIT_CODE")),  # set for after-script
    )


def _exit_result(code: str | None) -> str | None:
    if code is None or not code.lstrip("-").isdigit():
        return None
    return "success" if int(code) == 0 else "failed"


# (name, is this the CI?, reader), in the order they are tried.
PROVIDERS: tuple[tuple[str, Callable[[Env], bool], Callable[[Env], CIContext]], ...] = (
    ("github-actions", lambda e: e.get("GITHUB_ACTIONS") == "true", _github),
    ("gitlab-ci", lambda e: e.get("GITLAB_CI") == "true", _gitlab),
    ("buildkite", lambda e: e.get("BUILDKITE") == "true", _buildkite),
    ("circleci", lambda e: e.get("CIRCLECI") == "true", _circleci),
    ("azure-pipelines", lambda e: e.get("TF_BUILD", "").lower() == "true", _azure),
    ("bitbucket-pipelines", lambda e: bool(e.get("BITBUCKET_BUILD_NUMBER")), _bitbucket),
    ("jenkins", lambda e: bool(e.get("JENKINS_URL") or e.get("BUILD_TAG")), _jenkins),
)


def detect(env: Env) -> CIContext:
    """The CI this runs in, read from its environment; an empty context outside any CI."""
    for _name, applies, read in PROVIDERS:
        if applies(env):
            return read(env)
    return CIContext()
