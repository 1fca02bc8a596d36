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


@dataclass(frozen=True)
class Reader:
    """Where one CI keeps each field: variable names, the first non-empty one wins; `adjust`
    derives what no single variable holds. A tag, when there is one, means no branch."""

    provider: str
    applies: Callable[[Env], bool]
    names: Mapping[str, tuple[str, ...]]
    adjust: Callable[[Env, dict[str, str | None]], None] = lambda env, values: None

    def read(self, env: Env) -> CIContext:
        values = {name: _get(env, *variables) for name, variables in self.names.items()}
        self.adjust(env, values)
        if values.get("tag"):
            values["branch"] = None
        return CIContext(provider=self.provider, **values)


def _github(env: Env, values: dict[str, str | None]) -> None:
    values["tag"] = env.get("GITHUB_REF_NAME") if env.get("GITHUB_REF_TYPE") == "tag" else None
    if all(env.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")):
        values["run_url"] = (
            f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}/actions/runs/"
            f"{env['GITHUB_RUN_ID']}"
        )


def _jenkins(env: Env, values: dict[str, str | None]) -> None:
    branch = values.get("branch")
    values["branch"] = branch.removeprefix("origin/") if branch else None


def _buildkite(env: Env, values: dict[str, str | None]) -> None:
    retries = _get(env, "BUILDKITE_RETRY_COUNT")
    values["attempt"] = str(int(retries) + 1) if retries and retries.isdigit() else None


def _azure(env: Env, values: dict[str, str | None]) -> None:
    values["branch"], values["tag"] = _ref(_get(env, "BUILD_SOURCEBRANCH"))


def _bitbucket(env: Env, values: dict[str, str | None]) -> None:
    values["result"] = _exit_result(_get(env, "BITBUCKET_EXIT_CODE"))  # set for after-script


def _exit_result(code: str | None) -> str | None:
    if code is None or not code.lstrip("-").isdigit():
        return None
    return "success" if int(code) == 0 else "failed"


# In the order they are tried.
PROVIDERS: tuple[Reader, ...] = (
    Reader(
        "github-actions",
        lambda e: e.get("GITHUB_ACTIONS") == "true",
        {
            "repository": ("GITHUB_REPOSITORY",),
            "commit": ("GITHUB_SHA",),
            "branch": ("GITHUB_HEAD_REF", "GITHUB_REF_NAME"),
            "run_id": ("GITHUB_RUN_ID",),
            "attempt": ("GITHUB_RUN_ATTEMPT",),
            "job": ("GITHUB_JOB",),
        },
        _github,
    ),
    Reader(
        "gitlab-ci",
        lambda e: e.get("GITLAB_CI") == "true",
        {
            "repository": ("CI_PROJECT_PATH",),
            "commit": ("CI_COMMIT_SHA",),
            "branch": ("CI_COMMIT_BRANCH", "CI_COMMIT_REF_NAME"),
            "tag": ("CI_COMMIT_TAG",),
            "run_url": ("CI_JOB_URL", "CI_PIPELINE_URL"),
            "run_id": ("CI_PIPELINE_ID",),  # a retried job gets a new CI_JOB_ID, same pipeline
            "job": ("CI_JOB_NAME",),
            "environment": ("CI_ENVIRONMENT_NAME",),
            "started_at": ("CI_JOB_STARTED_AT",),
            "result": ("CI_JOB_STATUS",),  # set for after_script: success, failed, canceled
        },
    ),
    Reader(
        "buildkite",
        lambda e: e.get("BUILDKITE") == "true",
        {
            "repository": ("BUILDKITE_PIPELINE_SLUG",),
            "commit": ("BUILDKITE_COMMIT",),
            "branch": ("BUILDKITE_BRANCH",),
            "tag": ("BUILDKITE_TAG",),
            "run_url": ("BUILDKITE_BUILD_URL",),
            "run_id": ("BUILDKITE_BUILD_ID",),
            "job": ("BUILDKITE_STEP_KEY", "BUILDKITE_LABEL"),
        },
        _buildkite,
    ),
    Reader(
        "circleci",
        lambda e: e.get("CIRCLECI") == "true",
        {
            "repository": ("CIRCLE_PROJECT_REPONAME",),
            "commit": ("CIRCLE_SHA1",),
            "branch": ("CIRCLE_BRANCH",),
            "tag": ("CIRCLE_TAG",),
            "run_url": ("CIRCLE_BUILD_URL",),
            "run_id": ("CIRCLE_WORKFLOW_ID",),
            "job": ("CIRCLE_JOB",),
        },
    ),
    Reader(
        "azure-pipelines",
        lambda e: e.get("TF_BUILD", "").lower() == "true",
        {
            "repository": ("BUILD_REPOSITORY_NAME",),
            "commit": ("BUILD_SOURCEVERSION",),
            "run_id": ("BUILD_BUILDID",),
            "attempt": ("SYSTEM_JOBATTEMPT",),
            "environment": ("ENVIRONMENT_NAME",),
        },
        _azure,
    ),
    Reader(
        "bitbucket-pipelines",
        lambda e: bool(e.get("BITBUCKET_BUILD_NUMBER")),
        {
            "repository": ("BITBUCKET_REPO_SLUG",),
            "commit": ("BITBUCKET_COMMIT",),
            "branch": ("BITBUCKET_BRANCH",),
            "tag": ("BITBUCKET_TAG",),
            "run_id": ("BITBUCKET_BUILD_NUMBER",),
            "environment": ("BITBUCKET_DEPLOYMENT_ENVIRONMENT",),
        },
        _bitbucket,
    ),
    Reader(
        "jenkins",
        lambda e: bool(e.get("JENKINS_URL") or e.get("BUILD_TAG")),
        {
            "repository": ("JOB_NAME",),
            "commit": ("GIT_COMMIT",),
            "branch": ("BRANCH_NAME", "GIT_LOCAL_BRANCH", "GIT_BRANCH"),
            "tag": ("TAG_NAME",),
            "run_url": ("BUILD_URL",),
            "run_id": ("BUILD_TAG",),  # jenkins-${JOB_NAME}-${BUILD_NUMBER}
        },
        _jenkins,
    ),
)


def detect(env: Env) -> CIContext:
    """The CI this runs in, read from its environment; an empty context outside any CI."""
    for reader in PROVIDERS:
        if reader.applies(env):
            return reader.read(env)
    return CIContext()
