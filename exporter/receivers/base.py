"""What every webhook receiver shares: the actions a payload becomes, the answers that are not
an action (ignored, unauthorized, invalid), the repository -> component and environment -> stage
mapping, and the time formats senders use.

Receivers are pure: `read(headers, body)` turns a request into an `Inbound`; the blueprint in
`routes.py` authenticates, stores and counts. Headers arrive as a dict with lower-cased names.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs

from exporter.errors import ConfigError, ReleaseBitsError, ValidationError
from exporter.ingest.validation import parse_timestamp
from exporter.names import STAGE_RE, normalize_slug
from exporter.settings import Table
from storage.commits import Commit
from storage.incidents import IncidentReport

# --- answers that are not actions ---------------------------------------------------------------


class Ignore(ReleaseBitsError):
    """202 {"ignored": reason}: a well-formed request ReleaseBits has nothing to store for.

    Never a 4xx: GitLab disables a hook for good after four 4xx answers."""


class Unauthorized(ReleaseBitsError):
    """401: a missing or wrong signature or token; nothing is read or stored."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class Invalid(ReleaseBitsError):
    """400: the body is not what the sender's protocol promises (broken JSON, no event name)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


# --- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventAction:
    """A deployment or build, in the ingest API's fields, under a natural key.

    `final` False: a start status (queued, in_progress, running); only `started_at` matters.
    """

    kind: str
    component: str
    fields: dict[str, Any]
    key: str
    final: bool = True
    rollback: bool = False


@dataclass(frozen=True)
class CommitsAction:
    component: str
    commits: tuple[Commit, ...]


@dataclass(frozen=True)
class IncidentAction:
    report: IncidentReport


@dataclass(frozen=True)
class Pong:
    """GitHub's ping: answered 200, nothing stored."""


Action = EventAction | CommitsAction | IncidentAction | Pong


@dataclass(frozen=True)
class Inbound:
    """What a request says: its event (a bounded label value), delivery id and action."""

    event: str
    delivery_id: str | None
    action: Action


# --- mapping ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedMapping:
    """Sender names -> component slugs and environments -> stages (keys lower-cased)."""

    components: Mapping[str, str] = field(default_factory=dict)
    stages: Mapping[str, str] = field(default_factory=dict)

    def component(self, name: str, default: str) -> str:
        """The mapped component of a repository/project/service, else `default` as a slug."""
        raw = self.components.get(name.lower(), default)
        try:
            return normalize_slug(raw)
        except ValidationError:
            raise Ignore(
                f"{default!r} is not a valid component slug; map {name!r} to one in the "
                "receiver's `components`"
            ) from None

    def stage(self, environment: str | None) -> str:
        if not environment or not environment.strip():
            raise Ignore("the payload names no environment")
        mapped = self.stages.get(environment.strip().lower())
        stage = mapped or re.sub(r"\s+", "-", environment.strip().lower())
        if not STAGE_RE.fullmatch(stage):
            raise Ignore(
                f"environment {environment[:64]!r} is not a valid stage name; map it in the "
                "receiver's `stages`"
            )
        return stage


def parse_mapping(t: Table) -> FeedMapping:
    """The `components` and `stages` tables of a receiver, validated at start."""
    comps = t.table("components", tuple(t.data.get("components", {}) or ()))
    components: dict[str, str] = {}
    for name in comps.data:
        slug = comps.text(name)
        try:
            components[name.lower()] = normalize_slug(slug)
        except ValidationError:
            raise ConfigError(
                f"{comps.name(name)}: {slug!r} is not a valid component slug"
            ) from None
    stages_t = t.table("stages", tuple(t.data.get("stages", {}) or ()))
    stages: dict[str, str] = {}
    for env in stages_t.data:
        stage = stages_t.text(env).lower()
        if not STAGE_RE.fullmatch(stage):
            raise ConfigError(f"{stages_t.name(env)}: {stage!r} is not a valid stage name")
        stages[env.lower()] = stage
    return FeedMapping(components, stages)


# --- the receiver interface --------------------------------------------------------------------


class Receiver(ABC):
    """One sender's webhook: how it authenticates and what its payloads mean."""

    kind: ClassVar[str]
    keys: ClassVar[tuple[str, ...]]  # the keys its [receivers.<kind>] table accepts
    events: ClassVar[tuple[str, ...]]  # the event label values it counts; others are "other"
    uses_api_token: ClassVar[bool] = False  # True: a write token instead of a shared secret

    @classmethod
    @abstractmethod
    def from_table(cls, t: Table, environ: Mapping[str, str]) -> Receiver: ...

    @abstractmethod
    def event_label(self, headers: Mapping[str, str]) -> str:
        """The event as a label value, from the headers alone (known before authentication)."""

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> None:  # noqa: B027
        """Raise Unauthorized unless the request is signed or carries the shared token."""

    @abstractmethod
    def read(self, headers: Mapping[str, str], body: bytes) -> Inbound:
        """The request's action; raises Ignore or Invalid."""

    def label(self, event: str) -> str:
        return event if event in self.events else "other"

    def handlers(self) -> Mapping[str, Callable[[dict[str, Any]], Action]]:
        """The payload reader of each event label this receiver stores something for."""
        return {}

    def parse(self, label: str, event: str, payload: dict[str, Any]) -> Action:
        handler = self.handlers().get(label)
        if handler is None:
            raise Ignore(f"ReleaseBits does not read {event[:80]!r} events")
        return handler(payload)


def owner(
    mapping: FeedMapping, payload: dict[str, Any], key: str, path_field: str
) -> tuple[str, str]:
    """(component, stable id) of a payload's repository or project: the mapped path (such as
    acme/checkout-web), else the path's last segment."""
    repo = obj(payload, key)
    path = required(repo, path_field, f"{key}.{path_field}")
    return mapping.component(path, path.rsplit("/", 1)[-1]), text(repo, "id") or path


# --- payload helpers ---------------------------------------------------------------------------


def json_object(body: bytes, content_type: str = "") -> dict[str, Any]:
    """The JSON object of a body, or of its `payload` form field (GitHub's form content type)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("invalid_encoding", "the request body is not valid UTF-8") from None
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        text = (parse_qs(text).get("payload") or [""])[0]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid("invalid_json", f"the body is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise Invalid("invalid_body", f"the JSON body must be an object, got {type(data).__name__}")
    return data


def obj(data: Any, *path: str) -> dict[str, Any]:
    """The object at `path` (each step an object), or Ignore naming what is missing."""
    for depth, key in enumerate(path):
        value = data.get(key) if isinstance(data, dict) else None
        if not isinstance(value, dict):
            raise Ignore(f"the payload has no `{'.'.join(path[: depth + 1])}` object")
        data = value
    assert isinstance(data, dict)
    return data


def text(data: Mapping[str, Any], key: str) -> str | None:
    """A string or number field as text; None when absent, empty or of another type."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    value = str(value).strip()
    return value or None


def required(data: Mapping[str, Any], key: str, what: str) -> str:
    value = text(data, key)
    if value is None:
        raise Ignore(f"the payload has no `{what}`")
    return value


_GITLAB_TIME = re.compile(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.\d+)? ?(UTC|[+-]\d{4})")


def iso_time(value: Any, what: str) -> str:
    """ISO 8601 text of an ISO timestamp or of GitLab's "2021-04-28 21:50:00 +0200" and
    "2016-08-12 15:23:28 UTC" (which ISO parsers refuse); Ignore when unreadable."""
    if not isinstance(value, str) or not value.strip():
        raise Ignore(f"the payload has no `{what}`")
    match = _GITLAB_TIME.fullmatch(value.strip())
    try:
        if match:
            offset = "+0000" if match[3] == "UTC" else match[3]
            dt = datetime.strptime(f"{match[1]} {match[2]} {offset}", "%Y-%m-%d %H:%M:%S %z")
        else:
            dt = parse_timestamp(value)
    except ValueError:
        raise Ignore(f"`{what}` is not a timestamp: {value[:64]!r}") from None
    return dt.astimezone(UTC).isoformat()


def timestamp(value: Any, what: str) -> float:
    return datetime.fromisoformat(iso_time(value, what)).timestamp()


def commit_chain(
    raw: Any, first_parent: str | None, branch: str | None, what: str
) -> tuple[Commit, ...]:
    """A push's commits (oldest first), each pointing at the one before it; the first at
    `first_parent` (the push's `before`, when the list is known to be complete)."""
    if not isinstance(raw, list) or not raw:
        raise Ignore("the push carries no commits")
    out: list[Commit] = []
    parent = first_parent
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise Ignore(f"`{what}[{i}]` is not an object")
        sha = required(item, "id", f"{what}[{i}].id")
        out.append(
            Commit(sha, parent, timestamp(item.get("timestamp"), f"{what}[{i}].timestamp"), branch)
        )
        parent = sha
    return tuple(out)


ZERO_SHA = "0" * 40


def branch_of(ref: str | None) -> str | None:
    return ref.removeprefix("refs/heads/") if ref and ref.startswith("refs/heads/") else None
