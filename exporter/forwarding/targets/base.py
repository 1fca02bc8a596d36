"""The one forwarder interface: build the HTTP request(s) for an event, send them, judge the answer.

Targets never retry or sleep: the outbox (exporter.forwarding.deliverer) owns retries, backoff,
leases and giving up. A target only says whether an answer was a success, a retryable failure
(with an optional Retry-After) or a permanent one, by raising ForwardError.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlsplit

import requests

from exporter.errors import ForwardError
from exporter.http import retry_after_seconds
from exporter.settings import Table

BODY_SNIPPET_CHARS = 200
EVENT_TYPES = ("deployment", "build", "release")


@dataclass(frozen=True)
class Event:
    """An event as the forwarders see it: the stored event (or release) with its kind."""

    kind: str  # deployment | build | release
    id: str
    component: str | None
    data: Mapping[str, Any]  # storage.events.get_event(...) or storage.releases.get_release(...)
    created_at: float  # when ReleaseBits stored it

    @property
    def type(self) -> str:
        """The webhook event type, e.g. deployment.created."""
        return f"{self.kind}.created"


@dataclass(frozen=True)
class Outbound:
    """One HTTP request to send: exact bytes, so a signature covers what goes on the wire."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    step: str = "send"  # names the request in errors when a delivery takes several


@dataclass(frozen=True)
class Filters:
    """Which events a target wants; an empty tuple means every value."""

    components: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()  # deployments only: builds and releases have no stage
    results: tuple[str, ...] = ()  # result classes (success, failure, ...) or raw results
    events: tuple[str, ...] = ()  # deployment, build, release

    def match(self, kind: str, component: str | None, event: Mapping[str, Any]) -> bool:
        if self.events and kind not in self.events:
            return False
        if kind == "release":
            return True
        if self.components and component not in self.components:
            return False
        if self.stages and kind == "deployment" and event.get("stage") not in self.stages:
            return False
        return not (
            self.results
            and event.get("result_class") not in self.results
            and event.get("result") not in self.results
        )


@dataclass(frozen=True)
class ComponentForward:
    """A component's names in one target (Sentry project, Bugsnag API key, New Relic entity)."""

    project: str | None = None  # Sentry project slug
    release: str | None = None  # Sentry release-name template ({version}, {component})
    api_key: str = field(default="", repr=False)  # Bugsnag project API key (from the env)
    entity_guid: str | None = None  # New Relic NerdGraph entity GUID
    app_id: str | None = None  # New Relic REST v2 application id
    repository: str | None = None  # source-control repository URL (Bugsnag sourceControl)
    environments: Mapping[str, str] = field(default_factory=dict)  # stage -> environment


def json_body(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def epoch_ms(iso: str | None) -> int | None:
    if not iso:
        return None
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def short_sha(sha: str | None) -> str:
    return (sha or "")[:7]


def safe_url(url: str) -> str:
    """scheme://host[:port] only: userinfo, a path (a webhook's) or a query may carry a key."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def url_secrets(url: str) -> list[str]:
    """The parts of a configured URL that may hold a key, as they can appear in an error text
    (requests' messages quote 'url: /path?query'): userinfo, path with query, query, each query
    value, and the path when it is long enough to be more than an API prefix."""
    parts = urlsplit(url)
    found: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found += [userinfo, *userinfo.split(":", 1)[1:]]
    if parts.query:
        found += [f"{parts.path}?{parts.query}", parts.query]
        found += [value for _, value in parse_qsl(parts.query) if len(value) >= 4]
        found += [value for value in parts.query.split("&") if len(value) >= 4]
    if len(parts.path.strip("/")) >= 8:
        found.append(parts.path)
    return found


@dataclass(frozen=True)
class Target:
    """Base of every target: name, filters, timeout, and the default answer handling."""

    kind: ClassVar[str] = ""
    # Events a target forwards unless `events` says otherwise, and those it can forward at all.
    default_events: ClassVar[tuple[str, ...]] = ("deployment", "build")
    supported_events: ClassVar[tuple[str, ...]] = ("deployment", "build")
    keys: ClassVar[tuple[str, ...]] = ()  # its [[forward.<kind>]] keys besides the common ones
    component_keys: ClassVar[tuple[str, ...]] = ("environments",)  # [components.X.forward.N]

    name: str
    filters: Filters
    timeout: float = 15.0
    components: Mapping[str, ComponentForward] = field(default_factory=dict)

    # --- what subclasses implement --------------------------------------------------------

    @classmethod
    def from_table(cls, t: Table, common: dict[str, Any], environ: Mapping[str, str]) -> Target:
        """The target of a [[forward.<kind>]] table; `common` holds the keys every kind has."""
        return cls(**common)

    def wants(self, kind: str, component: str | None, event: Mapping[str, Any]) -> bool:
        """Whether this target takes the event: a kind it forwards, a component it knows where
        to send, and the filters."""
        return (
            kind in self.supported_events
            and self.knows(component)
            and self.filters.match(kind, component, event)
        )

    def knows(self, component: str | None) -> bool:
        """Whether the target has somewhere to send this component's events (e.g. a project)."""
        return True

    def build_requests(self, event: Event, delivery_id: str) -> list[Outbound]:
        raise NotImplementedError

    def secrets(self) -> tuple[str, ...]:
        """Values scrubbed from every error message and log line."""
        return ()

    def check(self, request: Outbound, response: requests.Response) -> None:
        """Raise ForwardError unless the answer is a success (any 2xx by default)."""
        status = response.status_code
        if 200 <= status < 300:
            return
        raise self.http_error(request, response)

    # --- shared -----------------------------------------------------------------------------

    def deliver(self, session: requests.Session, event: Event, delivery_id: str) -> int:
        """Send the event's request(s) in order; the HTTP status of the last one, or raise."""
        status = 0
        for request in self.build_requests(event, delivery_id):
            response = self.send(session, request)
            self.check(request, response)
            status = response.status_code
        return status

    def send(self, session: requests.Session, request: Outbound) -> requests.Response:
        try:
            return session.request(
                request.method,
                request.url,
                data=request.body,
                headers=dict(request.headers),
                timeout=(min(5.0, self.timeout), self.timeout),
                allow_redirects=False,  # a 3xx is an answer, not an instruction (and leaks auth)
            )
        except requests.Timeout:
            raise ForwardError(
                f"{request.step}: timed out after {self.timeout:g} s",
                url=safe_url(request.url),
            ) from None
        except requests.RequestException as exc:
            reason = self.scrub(f"{type(exc).__name__}: {exc}")[:BODY_SNIPPET_CHARS]
            raise ForwardError(
                f"{request.step}: cannot connect: {reason}", url=safe_url(request.url)
            ) from None

    def http_error(
        self, request: Outbound, response: requests.Response, *, retryable: bool | None = None
    ) -> ForwardError:
        """The default judgement: 400 and 422 are permanent (the request itself is wrong);
        anything else (auth, 404, 408, 429, 5xx, 3xx) may heal, so it is retried until the
        give-up horizon, honouring Retry-After."""
        status = response.status_code
        if retryable is None:
            retryable = status not in (400, 422)
        return ForwardError(
            f"{request.step}: HTTP {status}: {self.snippet(response.text)}",
            url=safe_url(request.url),
            status=status,
            retryable=retryable,
            retry_after=retry_after_seconds(response),
        )

    def snippet(self, text: str) -> str:
        return self.scrub(" ".join(text.split()))[:BODY_SNIPPET_CHARS]

    def configured_urls(self) -> list[str]:
        """Every http(s) URL in this target's configuration."""
        return [
            value
            for value in (getattr(self, f.name) for f in fields(self))
            if isinstance(value, str) and value.startswith(("http://", "https://"))
        ]

    def scrub(self, text: str) -> str:
        """`text` without this target's secrets nor the key-bearing parts of its URLs."""
        pieces = [s for s in self.secrets() if len(s) >= 8]
        for url in self.configured_urls():
            pieces += [p for p in url_secrets(url) if len(p) >= 4]
        for piece in sorted(set(pieces), key=len, reverse=True):
            text = text.replace(piece, "[secret]")
            if quote(piece, safe="") != piece:
                text = text.replace(quote(piece, safe=""), "[secret]")
        return text

    def mapping(self, component: str | None) -> ComponentForward:
        return self.components.get(component or "", ComponentForward())

    def environment(self, component: str | None, stage: str) -> str:
        return self.mapping(component).environments.get(stage, stage)


@dataclass(frozen=True)
class DeploymentTarget(Target):
    """A target that records deployments only (Sentry deploys, Bugsnag builds, New Relic markers),
    successful ones unless `results` says otherwise."""

    default_events: ClassVar[tuple[str, ...]] = ("deployment",)
    supported_events: ClassVar[tuple[str, ...]] = ("deployment",)


class EndpointGone(ForwardError):
    """The endpoint says it is gone for good (webhook 410): disable the target."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None):
        super().__init__(message, url=url, status=status, retryable=False)
