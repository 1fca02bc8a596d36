"""Incidents: POST (idempotent per component by external_id), PATCH to resolve, GET list/one.

An incident is linked when it arrives to the deployment it names, else to the rollout current
on its component and stage when it started; the link makes that rollout a change failure and
never moves (storage.incidents)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, jsonify, request

from exporter.errors import ValidationError
from exporter.ingest.routes import slug_or_error
from exporter.ingest.validation import text_field, timestamp_field
from exporter.names import STAGE_RE
from exporter.web.auth import require
from exporter.web.body import read_payload
from exporter.web.errors import ApiError
from exporter.web.pagination import cursor_arg, paged, pair, parse_limit
from exporter.web.params import CURSOR, Param, declares, limit_param
from exporter.web.state import get_db, settings
from storage import incidents
from storage.incidents import IncidentReport

bp = Blueprint("incidents", __name__)
LIMIT = limit_param(500)
LIST_PARAMS = (LIMIT, CURSOR, Param("stage", description="Only incidents of this stage."))


def validate_incident(
    component: str, data: Mapping[str, Any], default_stage: str
) -> IncidentReport:
    fields: dict[str, str] = {}
    stage = (text_field(fields, "stage", data.get("stage"), limit=64) or default_stage).lower()
    if not STAGE_RE.fullmatch(stage):
        fields["stage"] = "must be 1-64 characters of a-z, 0-9, '.', '_', '-'"
    started = timestamp_field(fields, "started_at", data.get("started_at"), required=True)
    resolved = timestamp_field(fields, "resolved_at", data.get("resolved_at"), required=False)
    report = IncidentReport(
        component=component,
        stage=stage,
        external_id=text_field(fields, "external_id", data.get("external_id")),
        started_ts=started.timestamp() if started else None,
        resolved_ts=resolved.timestamp() if resolved else None,
        title=text_field(fields, "title", data.get("title"), limit=1024),
        url=text_field(fields, "url", data.get("url"), limit=2048),
        deployment_id=text_field(fields, "deployment_id", data.get("deployment_id")),
    )
    if started and resolved and resolved < started:
        fields["resolved_at"] = "is before started_at"
    if fields:
        raise ValidationError(fields)
    return report


def _answer(body: dict[str, Any] | None, status: int) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    if body is not None:
        resp.headers["Location"] = f"/components/{body['component']}/incidents/{body['id']}"
    return resp


@bp.post("/components/<slug>/incidents", strict_slashes=False)
@require("write")
def create_incident(slug: str) -> Any:
    component = slug_or_error(slug)
    try:
        report = validate_incident(component, read_payload(), settings().default_stage)
    except ValidationError as exc:
        raise ApiError(422, "validation_failed", str(exc), exc.fields) from None
    db = get_db()
    incident_id, created = db.write(lambda tx: incidents.report(tx, report, time.time()))
    return _answer(incidents.get_incident(db, component, incident_id), 201 if created else 200)


@bp.patch("/components/<slug>/incidents/<incident_id>")
@require("write")
def resolve_incident(slug: str, incident_id: str) -> Any:
    component = slug_or_error(slug)
    data = read_payload()
    fields: dict[str, str] = {}
    resolved = timestamp_field(fields, "resolved_at", data.get("resolved_at"), required=False)
    if fields:
        raise ApiError(422, "validation_failed", "invalid fields: resolved_at", fields)
    ts = resolved.timestamp() if resolved else time.time()
    db = get_db()
    if not db.write(lambda tx: incidents.resolve(tx, component, incident_id, ts, time.time())):
        raise ApiError(
            404, "not_found", f"no incident {incident_id[:64]!r} for component {component!r}"
        )
    return _answer(incidents.get_incident(db, component, incident_id), 200)


@bp.get("/components/<slug>/incidents", strict_slashes=False)
@require("read")
@declares(*LIST_PARAMS)
def list_incidents(slug: str) -> Any:
    component = slug_or_error(slug)
    db = get_db()
    stage = request.args.get("stage") or None
    rows, cursor = incidents.list_incidents(
        db,
        component,
        stage=stage.lower() if stage else None,
        limit=parse_limit(LIMIT),
        after=cursor_arg(pair(float, str)),
    )
    return paged(rows, cursor)


@bp.get("/components/<slug>/incidents/<incident_id>")
@require("read")
def get_incident(slug: str, incident_id: str) -> Any:
    component = slug_or_error(slug)
    found = incidents.get_incident(get_db(), component, incident_id)
    if found is None:
        raise ApiError(
            404, "not_found", f"no incident {incident_id[:64]!r} for component {component!r}"
        )
    return jsonify(found)
