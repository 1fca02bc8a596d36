"""CDEvents over the CloudEvents HTTP binding, binary or structured mode.

`service.deployed|upgraded|rolledback` -> deployments (rolledback marks a rollback),
`pipelinerun.finished` -> builds, `incident.detected|resolved` -> incidents; types are matched
by subject and predicate, whatever their version (reference section 3). Parsing is the
`cloudevents` SDK's (2.x core API). The SDK makes up a random id when a binary request has no
`ce-id`, which would defeat dedupe on source + id, so a missing id is refused here first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import unquote

from cloudevents.core.bindings.http import (
    HTTPMessage,
    from_binary_event,
    from_structured_event,
)
from cloudevents.core.exceptions import BaseCloudEventException

from exporter.names import version_of
from exporter.receivers.base import (
    Action,
    EventAction,
    FeedMapping,
    Ignore,
    Inbound,
    IncidentAction,
    Invalid,
    Receiver,
    json_object,
    obj,
    parse_mapping,
    required,
    text,
    timestamp,
)
from exporter.settings import Table
from storage.incidents import IncidentReport

_TYPE = re.compile(r"dev\.cdevents\.([a-z]+)\.([a-z]+)\.\S+")
DEPLOYED = ("service.deployed", "service.upgraded", "service.rolledback")
INCIDENTS = ("incident.detected", "incident.resolved")


def cdevent_label(ce_type: str) -> str:
    """`subject.predicate` of a CDEvents type (any version), else ''."""
    match = _TYPE.fullmatch(ce_type.strip())
    return f"{match[1]}.{match[2]}" if match else ""


def purl_version(purl: str | None) -> str | None:
    """The version of a package URL (pkg:oci/myapp@sha256%3A0b31... -> sha256:0b31...)."""
    if not purl or "@" not in purl:
        return None
    version = purl.rsplit("@", 1)[1].split("?", 1)[0].split("#", 1)[0]
    return unquote(version) or None


def _last_segment(ident: str) -> str:
    return ident.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class CDEventsReceiver(Receiver):
    kind: ClassVar[str] = "cdevents"
    keys: ClassVar[tuple[str, ...]] = ("components", "stages")
    events: ClassVar[tuple[str, ...]] = (*DEPLOYED, "pipelinerun.finished", *INCIDENTS)
    uses_api_token: ClassVar[bool] = True

    mapping: FeedMapping = field(default_factory=FeedMapping)

    @classmethod
    def from_table(cls, t: Table, environ: Mapping[str, str]) -> CDEventsReceiver:
        return cls(parse_mapping(t))

    def event_label(self, headers: Mapping[str, str]) -> str:
        return self.label(cdevent_label(headers.get("ce-type", "")))

    def read(self, headers: Mapping[str, str], body: bytes) -> Inbound:
        content_type = headers.get("content-type", "").lower()
        message = HTTPMessage(headers=dict(headers), body=body)
        try:
            if content_type.startswith("application/cloudevents-batch"):
                raise Invalid("unsupported_mode", "batched CloudEvents are not supported")
            if content_type.startswith("application/cloudevents"):
                if "id" not in json_object(body):
                    raise Invalid("invalid_cloudevent", "the structured event has no `id`")
                event = from_structured_event(message)
            else:
                missing = [h for h in ("ce-id", "ce-specversion") if not headers.get(h)]
                if missing:
                    raise Invalid("invalid_cloudevent", f"binary mode needs {', '.join(missing)}")
                event = from_binary_event(message)
        except (BaseCloudEventException, ValueError) as exc:
            raise Invalid("invalid_cloudevent", f"not a CloudEvent: {str(exc)[:200]}") from None
        ce_type, source, ce_id = event.get_type(), event.get_source(), event.get_id()
        label = self.label(cdevent_label(ce_type))
        ident = f"{len(source)}:{source}{ce_id}"  # unambiguous source + id
        data = event.get_data()
        if not isinstance(data, dict) or not isinstance(data.get("subject"), dict):
            raise Ignore("the event's data is not a CDEvent (no `subject` object)")
        when = event.get_time()
        ts = (
            when.timestamp()
            if when
            else timestamp(obj(data, "context").get("timestamp"), "context.timestamp")
        )
        handlers: dict[str, Callable[[], Action]] = {
            **{d: lambda: self.deployed(label, ident, data, ts) for d in DEPLOYED},
            "pipelinerun.finished": lambda: self.pipelinerun(ident, data, ts),
            **{i: lambda: self.incident(label, data, ts) for i in INCIDENTS},
        }
        if label not in handlers:
            raise Ignore(f"ReleaseBits does not read {ce_type[:80]!r} events")
        return Inbound(label, ident, handlers[label]())

    def deployed(self, label: str, ident: str, data: dict[str, Any], ts: float) -> EventAction:
        subject = obj(data, "subject")
        content = obj(data, "subject", "content")
        service = required(subject, "id", "subject.id")
        artifact = text(content, "artifactId")
        fields = {
            "version": version_of(purl_version(artifact), None, None),
            "stage": self.mapping.stage(text(obj(content, "environment"), "id")),
            "result": "success",
            "finished_at": _iso(ts),
            "meta_data": {"cdevents_type": label, "artifact_id": artifact},
        }
        component = self.mapping.component(service, _last_segment(service))
        rollback = label == "service.rolledback"
        return EventAction("deployment", component, fields, f"cdevents:{ident}", rollback=rollback)

    def pipelinerun(self, ident: str, data: dict[str, Any], ts: float) -> EventAction:
        subject = obj(data, "subject")
        content = obj(data, "subject", "content")
        run = required(subject, "id", "subject.id")
        pipeline = text(content, "pipelineName") or run
        fields = {
            # A pipeline run names no version, tag or commit: its run id stands for one.
            "version": run,
            "result": text(content, "outcome"),
            "finished_at": _iso(ts),
            "url": text(content, "uri") or text(content, "url"),
            "meta_data": {"pipeline": pipeline, "run": run},
        }
        component = self.mapping.component(pipeline, _last_segment(pipeline))
        return EventAction("build", component, fields, f"cdevents:{ident}")

    def incident(self, label: str, data: dict[str, Any], ts: float) -> IncidentAction:
        subject = obj(data, "subject")
        content = obj(data, "subject", "content")
        service = content.get("service")
        service_id = text(service, "id") if isinstance(service, dict) else None
        if service_id is None:
            raise Ignore("the incident names no service, so no component")
        report = IncidentReport(
            component=self.mapping.component(service_id, _last_segment(service_id)),
            stage=self.mapping.stage(text(obj(content, "environment"), "id")),
            external_id=required(subject, "id", "subject.id"),
            started_ts=ts if label == "incident.detected" else None,
            resolved_ts=ts if label == "incident.resolved" else None,
            title=text(content, "description"),
            source="cdevents",
        )
        return IncidentAction(report)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
