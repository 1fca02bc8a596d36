"""Bugsnag Build API: `POST https://build.bugsnag.com/` with the project's apiKey in the body.

Reference: upstream-apis.md section 5. metadata values must be strings; sourceControl needs
provider, repository and revision together; a 400 is never retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests

from exporter.errors import ConfigError, ForwardError
from exporter.forwarding.targets.base import DeploymentTarget, Event, Outbound, Target, json_body
from exporter.settings import Table

PROVIDERS = (
    "github",
    "github-enterprise",
    "gitlab",
    "gitlab-onpremise",
    "bitbucket",
    "bitbucket-server",
)
_HOST_PROVIDERS = {"github.com": "github", "gitlab.com": "gitlab", "bitbucket.org": "bitbucket"}


def provider_of(repository: str) -> str | None:
    return _HOST_PROVIDERS.get(urlsplit(repository).netloc.lower())


BUILD_URL = "https://build.bugsnag.com/"
HUB_BUILD_URL = "https://build.bugsnag.smartbear.com/"  # Insight Hub (SmartBear-hosted) accounts
HUB_KEY_PREFIX = "00000"


@dataclass(frozen=True)
class BugsnagTarget(DeploymentTarget):
    kind: ClassVar[str] = "bugsnag"
    keys: ClassVar[tuple[str, ...]] = ("url", "api_key_env", "builder_name", "provider")
    component_keys: ClassVar[tuple[str, ...]] = ("api_key_env", "repository", "environments")

    url: str | None = None  # None: BUILD_URL, or HUB_BUILD_URL for Insight Hub API keys
    api_key: str = field(default="", repr=False)  # default for components without their own
    builder_name: str = "releasebits"
    provider: str | None = None  # when the repository host does not tell

    @classmethod
    def from_table(cls, t: Table, common: dict[str, Any], environ: Mapping[str, str]) -> Target:
        provider = t.text("provider").lower() if "provider" in t.data else None
        if provider is not None and provider not in PROVIDERS:
            raise ConfigError(
                f"{t.name('provider')}: expected one of {', '.join(PROVIDERS)}, got {provider!r}"
            )
        return cls(
            **common,
            # Unset: chosen per API key (Insight Hub keys start with 00000).
            url=t.url("url", BUILD_URL) + "/" if "url" in t.data else None,
            api_key=t.secret("api_key_env", environ, required=False),
            builder_name=t.text("builder_name", "releasebits"),
            provider=provider,
        )

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key, *(m.api_key for m in self.components.values()))

    def key_of(self, component: str | None) -> str:
        return self.mapping(component).api_key or self.api_key

    def knows(self, component: str | None) -> bool:
        return bool(self.key_of(component))

    def build_requests(self, event: Event, delivery_id: str) -> list[Outbound]:
        data = event.data
        body: dict[str, Any] = {
            "apiKey": self.key_of(event.component),
            "appVersion": str(data["version"]),
        }
        if event.kind == "deployment" and data.get("stage"):
            body["releaseStage"] = self.environment(event.component, data["stage"])
        body["builderName"] = self.builder_name
        repository = self.mapping(event.component).repository
        provider = self.provider or (provider_of(repository) if repository else None)
        if repository and provider and data.get("commit_sha"):
            body["sourceControl"] = {
                "provider": provider,
                "repository": repository,
                "revision": data["commit_sha"],
            }
        metadata = {str(k): _text(v) for k, v in (data.get("meta_data") or {}).items()}
        metadata["releasebits_id"] = event.id
        for key in ("host", "branch", "tag", "code_name", "url"):
            if data.get(key):
                metadata[key] = str(data[key])
        body["metadata"] = metadata
        headers = {"Content-Type": "application/json"}
        url = self.url or (
            HUB_BUILD_URL if body["apiKey"].startswith(HUB_KEY_PREFIX) else BUILD_URL
        )
        return [Outbound("POST", url, headers, json_body(body), "build")]

    def http_error(
        self, request: Outbound, response: requests.Response, *, retryable: bool | None = None
    ) -> ForwardError:
        # As Bugsnag's own reporter (upstream-apis.md section 5): retry 5xx, 408 and 429 only.
        # A 400 (body with an `errors` array), 401, 403 or 404 will answer the same tomorrow;
        # retrying them for a day only hid the misconfiguration.
        status = response.status_code
        if retryable is None:
            retryable = status >= 500 or status in (408, 429)
        return super().http_error(request, response, retryable=retryable)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
