"""New Relic deployment markers: NerdGraph change tracking events, or the REST v2 marker.

Reference: upstream-apis.md section 6 and New Relic's "Track changes using NerdGraph"
(docs-website src/content/docs/change-tracking/config/nerdgraph.mdx): the legacy
`changeTrackingCreateDeployment` gave way to `changeTrackingCreateEvent` with category
deployment. NerdGraph answers mutation failures as HTTP 200 with a top-level `errors` array, so
a 200 is only a success without one; its timestamp must lie within 24 h of receipt. REST v2
wants an ISO timestamp that is not in the future.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests

from exporter.errors import ConfigError, ForwardError
from exporter.forwarding.targets.base import (
    DeploymentTarget,
    Event,
    Outbound,
    Target,
    epoch_ms,
    json_body,
    safe_url,
)
from exporter.settings import Table

MUTATION = (
    "mutation($e: ChangeTrackingEventInput!) {\n"
    "  changeTrackingCreateEvent(changeTrackingEvent: $e) {\n"
    "    changeTrackingEvent { changeTrackingId category type timestamp groupId }\n"
    "    messages\n"
    "  }\n"
    "}"
)
# The standard types of the Deployment category (OTHER is none of them: it is sent as BASIC).
EVENT_TYPES = {"BASIC", "BLUE_GREEN", "CANARY", "ROLLING", "SHADOW"}
USER_KEY_PREFIX = "NRAK-"  # User keys; legacy REST API keys have no prefix and use X-Api-Key
HOSTS = {"us": "https://api.newrelic.com", "eu": "https://api.eu.newrelic.com"}
DEPLOYMENT_TYPES = ("BASIC", "BLUE_GREEN", "CANARY", "ROLLING", "SHADOW", "OTHER")
NERDGRAPH_WINDOW_MS = 23 * 3600 * 1000  # the API allows +-24 h; keep a margin for slow retries
_TRANSIENT = {"TIMEOUT", "SERVER_ERROR", "INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"}


REST_FRESH_SECONDS = 300


def _bmp(text: str) -> str:
    """REST v2 rejects 4-byte UTF-8 characters (emoji and other astral-plane ones)."""
    return "".join(c if ord(c) <= 0xFFFF else "\ufffd" for c in text)


@dataclass(frozen=True)
class NewRelicTarget(DeploymentTarget):
    kind: ClassVar[str] = "newrelic"
    keys: ClassVar[tuple[str, ...]] = (
        "api", "region", "url", "api_key_env", "user", "deployment_type", "entity_guid", "app_id",
    )  # fmt: skip
    component_keys: ClassVar[tuple[str, ...]] = ("entity_guid", "app_id", "environments")

    api: str = "nerdgraph"  # nerdgraph | rest
    url: str = HOSTS["us"]  # the API base: the region's host, or a proxy's; paths are appended
    api_key: str = field(default="", repr=False)
    user: str = "releasebits"
    deployment_type: str | None = None
    entity_guid: str | None = None  # defaults for components without their own
    app_id: str | None = None

    @classmethod
    def from_table(cls, t: Table, common: dict[str, Any], environ: Mapping[str, str]) -> Target:
        api = t.text("api", "nerdgraph").lower()
        if api not in ("nerdgraph", "rest"):
            raise ConfigError(f"{t.name('api')}: expected nerdgraph or rest, got {api!r}")
        region = t.text("region", "us").lower()
        if region not in HOSTS:
            raise ConfigError(f"{t.name('region')}: expected us or eu, got {region!r}")
        deployment_type = None
        if "deployment_type" in t.data:
            deployment_type = t.text("deployment_type").upper()
            if deployment_type not in DEPLOYMENT_TYPES:
                raise ConfigError(
                    f"{t.name('deployment_type')}: expected one of {', '.join(DEPLOYMENT_TYPES)}"
                )
        user = t.text("user", "releasebits")
        if api == "rest" and len(user) > 31:
            raise ConfigError(f"{t.name('user')}: at most 31 characters for the REST API")
        url = t.url("url", HOSTS[region])
        # The API base; NerdGraph's own endpoint is accepted as given (graphql_url), but a REST
        # path cannot be built on an endpoint: say so instead of posting to a doubled path.
        if url.endswith(".json") or (api == "rest" and url.endswith("/graphql")):
            raise ConfigError(
                f"{t.name('url')}: give the API base (ReleaseBits POSTs to {{url}}/graphql, or "
                f"{{url}}/v2/applications/{{app_id}}/deployments.json), not an endpoint: {url!r}"
            )
        return cls(
            **common,
            api=api,
            url=url,
            api_key=t.secret("api_key_env", environ),
            user=user,
            deployment_type=deployment_type,
            entity_guid=t.optional_text("entity_guid"),
            app_id=str(t.data["app_id"]).strip() if "app_id" in t.data else None,
        )

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,)

    def entity_of(self, component: str | None) -> str | None:
        mapping = self.mapping(component)
        if self.api == "rest":
            return mapping.app_id or self.app_id
        return mapping.entity_guid or self.entity_guid

    def knows(self, component: str | None) -> bool:
        return self.entity_of(component) is not None

    def build_requests(self, event: Event, delivery_id: str) -> list[Outbound]:
        data = event.data
        version = str(data["version"])
        stage = data.get("stage") or ""
        description = f"{event.component} {version} deployed to {stage}"
        if self.api == "rest":
            return [self._rest(event, version, description)]
        deployment: dict[str, Any] = {"version": version}
        if data.get("commit_sha"):
            deployment["commit"] = data["commit_sha"]
        meta = data.get("meta_data") or {}
        if isinstance(meta.get("url"), str):
            deployment["deepLink"] = meta["url"]
        kind = self.deployment_type if self.deployment_type in EVENT_TYPES else "BASIC"
        e: dict[str, Any] = {
            "categoryAndTypeData": {
                "kind": {"category": "DEPLOYMENT", "type": kind},
                "categoryFields": {"deployment": deployment},
            },
            "entitySearch": {"query": f"id = '{self.entity_of(event.component)}'"},
            "user": self.user,
            "description": description,
        }
        finished = epoch_ms(data["finished_at"])
        if finished is not None and abs(time.time() * 1000 - finished) < NERDGRAPH_WINDOW_MS:
            e["timestamp"] = finished  # else New Relic stamps it on receipt
        if data.get("release"):
            e["groupId"] = data["release"]
        body = {"query": MUTATION, "variables": {"e": e}}
        headers = {"API-Key": self.api_key, "Content-Type": "application/json"}
        return [Outbound("POST", self.graphql_url, headers, json_body(body), "nerdgraph")]

    @property
    def graphql_url(self) -> str:
        """The NerdGraph endpoint: a configured URL that already names it is used as given
        (it was sent to .../graphql/graphql); a host gets /graphql."""
        return self.url if self.url.endswith("/graphql") else f"{self.url}/graphql"

    def _rest(self, event: Event, version: str, description: str) -> Outbound:
        data = event.data
        deployment: dict[str, Any] = {
            "revision": _bmp(data.get("commit_sha") or version)[:127],
            "description": _bmp(description),
            "user": _bmp(self.user)[:31],
        }
        finished = datetime.fromisoformat(str(data["finished_at"]).replace("Z", "+00:00"))
        # The timestamp must not be in the future and must be later than the app's latest
        # marker, which a late retry or a backfilled event would break (a 422, permanent): only
        # a fresh event carries its own time; anything else is stamped on receipt.
        if 0 <= time.time() - finished.timestamp() <= REST_FRESH_SECONDS:
            deployment["timestamp"] = finished.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if data.get("release"):
            deployment["changelog"] = _bmp(f"release {data['release']}")
        url = f"{self.url}/v2/applications/{self.entity_of(event.component)}/deployments.json"
        # A User key (NRAK-...) goes in Api-Key; a legacy REST API key only works as X-Api-Key.
        key_header = "Api-Key" if self.api_key.startswith(USER_KEY_PREFIX) else "X-Api-Key"
        headers = {key_header: self.api_key, "Content-Type": "application/json"}
        return Outbound("POST", url, headers, json_body({"deployment": deployment}), "marker")

    def check(self, request: Outbound, response: requests.Response) -> None:
        super().check(request, response)
        if self.api != "nerdgraph":
            return
        try:
            payload = response.json()
        except ValueError:
            raise ForwardError(
                f"nerdgraph: HTTP {response.status_code} with a body that is not JSON: "
                f"{self.snippet(response.text)}",
                url=safe_url(request.url),
                status=response.status_code,
            ) from None
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors:
            classes = {
                str((e.get("extensions") or {}).get("errorClass", ""))
                for e in errors
                if isinstance(e, dict)
            }
            messages = "; ".join(
                str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors
            )
            # A rejected mutation (bad GUID, timestamp out of range) fails the same way again.
            raise ForwardError(
                f"nerdgraph: errors: {self.snippet(messages)}",
                url=safe_url(request.url),
                status=response.status_code,
                retryable=bool(classes & _TRANSIENT),
            )
        result = ((payload.get("data") or {}).get("changeTrackingCreateEvent") or {}).get(
            "changeTrackingEvent"
        )
        if not result:
            raise ForwardError(
                f"nerdgraph: no deployment in the answer: {self.snippet(json.dumps(payload))}",
                url=safe_url(request.url),
                status=response.status_code,
            )
