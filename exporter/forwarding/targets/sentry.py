"""Sentry: create the release (idempotent, 201 or 208), then a deploy of it to an environment.

Reference: upstream-apis.md section 3. The deploy endpoint answers 404 until the release exists,
so both requests go in order on every attempt; a retried delivery re-creates the release (208)
and then creates the deploy. Sentry sends no Retry-After on 429: X-Sentry-Rate-Limit-Reset
(epoch seconds) says when to come back.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

import requests

from exporter.errors import ForwardError
from exporter.forwarding.targets.base import DeploymentTarget, Event, Outbound, Target, json_body
from exporter.http import sentry_api_root
from exporter.settings import Table

NAME_MAX = 64  # Sentry's limit on deploy names and environments
# Release versions Sentry refuses (sentry.constants BAD_RELEASE_CHARS and MAX_VERSION_LENGTH,
# Release.is_valid_version); control characters are refused here too. Sending '.' or '..'
# would also resolve as a dot segment once in the URL path, and POST with the token elsewhere.
VERSION_MAX = 200
_BAD_VERSION_CHARS = set("/\\") | {chr(c) for c in range(32)} | {"\x7f"}
_RESERVED_VERSIONS = {".", "..", "latest"}


def version_problem(version: str) -> str | None:
    """Why Sentry would refuse this release version, or None."""
    stripped = version.strip()
    if not stripped:
        return "is empty"
    if stripped in _RESERVED_VERSIONS or stripped.lower() == "latest":
        return f"{stripped!r} is reserved"
    if any(c in _BAD_VERSION_CHARS for c in version):
        return "contains '/', '\\' or a control character"
    if len(version) > VERSION_MAX:
        return f"is longer than {VERSION_MAX} characters"
    return None


@dataclass(frozen=True)
class SentryTarget(DeploymentTarget):
    kind: ClassVar[str] = "sentry"
    keys: ClassVar[tuple[str, ...]] = (
        "base_url",
        "organization",
        "token_env",
        "project",
        "release",
    )
    component_keys: ClassVar[tuple[str, ...]] = ("project", "release", "environments")

    base_url: str = "https://sentry.io"
    organization: str = ""
    token: str = field(default="", repr=False)
    project: str | None = None  # default project slug for components without their own
    release: str = "{version}"  # default release-name template

    @classmethod
    def from_table(cls, t: Table, common: dict[str, Any], environ: Mapping[str, str]) -> Target:
        return cls(
            **common,
            base_url=sentry_api_root(t.url("base_url", "https://sentry.io")),
            organization=t.text("organization"),
            token=t.secret("token_env", environ),
            project=t.optional_text("project"),
            release=t.template("release", "{version}") or "{version}",
        )

    def secrets(self) -> tuple[str, ...]:
        return (self.token,)

    def project_of(self, component: str | None) -> str | None:
        return self.mapping(component).project or self.project

    def knows(self, component: str | None) -> bool:
        # A component without a Sentry project has nowhere to go.
        return self.project_of(component) is not None

    def release_name(self, component: str, version: str) -> str:
        template = self.mapping(component).release or self.release
        return template.replace("{version}", version).replace("{component}", component)

    def build_requests(self, event: Event, delivery_id: str) -> list[Outbound]:
        data = event.data
        component = event.component or ""
        project = self.project_of(component)
        version = self.release_name(component, str(data["version"]))
        problem = version_problem(version)
        if problem is not None:
            raise ForwardError(
                f"Sentry refuses the release version {version[:80]!r}: it {problem} "
                "(change the version or the release template)",
                retryable=False,
            )
        base = f"{self.base_url}/api/0/organizations/{quote(self.organization, safe='')}"
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        release: dict[str, Any] = {"version": version, "projects": [project]}
        if data.get("commit_sha"):
            release["ref"] = data["commit_sha"]
        deploy: dict[str, Any] = {
            "environment": self.environment(component, data.get("stage") or "")[:NAME_MAX],
            "name": f"releasebits {event.id}"[:NAME_MAX],
            "dateFinished": data["finished_at"],
            "projects": [project],
        }
        if data.get("started_at"):
            deploy["dateStarted"] = data["started_at"]
        return [
            Outbound("POST", f"{base}/releases/", headers, json_body(release), "create release"),
            Outbound(
                "POST",
                f"{base}/releases/{quote(version, safe='')}/deploys/",
                headers,
                json_body(deploy),
                "create deploy",
            ),
        ]

    def http_error(
        self, request: Outbound, response: requests.Response, *, retryable: bool | None = None
    ) -> ForwardError:
        if retryable is None and response.status_code == 409:
            retryable = False  # a conflicting release will still conflict in a day
        err = super().http_error(request, response, retryable=retryable)
        if err.retry_after is None and response.status_code == 429:
            reset = response.headers.get("X-Sentry-Rate-Limit-Reset", "")
            with contextlib.suppress(ValueError):
                err.retry_after = max(float(reset) - time.time(), 1.0)
        return err
