"""Deployments and builds: POST (durable, idempotent), list with filters and cursors, get by id."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from exporter.forwarders.outbox import router
from exporter.validation import RESULT_CLASSES, ValidationError, normalize_slug, parse_timestamp
from exporter.validation import validate_event as _validate
from exporter.web.api import (
    ApiError,
    cursor_arg,
    get_db,
    paged,
    pair,
    parse_limit,
    read_payload,
    require,
    settings,
)
from storage import components, events

log = logging.getLogger(__name__)
bp = Blueprint("events", __name__)

_IDEMPOTENCY_KEY_MAX = 255


def slug_or_error(raw: str) -> str:
    try:
        return normalize_slug(raw)
    except ValidationError as exc:
        raise ApiError(400, "invalid_slug", str(exc), exc.fields) from None


def _create(kind: str, raw_slug: str) -> tuple[Response, int] | Response:
    slug = slug_or_error(raw_slug)
    payload = read_payload()
    s = settings()
    try:
        event, ignored = _validate(kind, payload, default_stage=s.default_stage)
    except ValidationError as exc:
        raise ApiError(422, "validation_failed", str(exc), exc.fields) from None

    idem = None
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        key = key.strip()
        if not key or len(key) > _IDEMPOTENCY_KEY_MAX:
            raise ApiError(
                400,
                "invalid_idempotency_key",
                f"Idempotency-Key must be 1-{_IDEMPOTENCY_KEY_MAX} characters",
            )
        digest = hashlib.sha256(
            json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode()
        ).hexdigest()
        idem = events.Idempotency(
            scope=f"{g.token.id}:{kind}:{slug}",
            key=key,
            request_hash=digest,
            ttl_seconds=s.idempotency_ttl_hours * 3600,
        )
    event_id = str(uuid.uuid4())
    body: dict[str, Any] = {"id": event_id}
    if ignored:
        body["ignored_fields"] = ignored
    outcome = events.record_event(
        get_db(),
        kind,
        slug,
        event,
        event_id=event_id,
        body=body,
        limits=events.Limits(s.max_components, s.max_stages),
        idempotency=idem,
        forward=router(s.forward_targets),
    )
    if outcome.conflict:
        raise ApiError(
            409,
            "idempotency_conflict",
            "this Idempotency-Key was already used with a different request body",
        )
    if outcome.created:
        if outcome.component_created and "component" in outcome.overflow:
            log.warning(
                "component %r is past max_components=%d: its events are stored but not "
                "exported as metrics (see releasebits_series_limit_exceeded_events_total)",
                slug,
                s.max_components,
            )
        log.info("stored %s %s for %s version=%s", kind, event_id, slug, event["version"])
    resp = jsonify(outcome.body)
    resp.status_code = outcome.status
    if not outcome.created:
        resp.headers["Idempotent-Replayed"] = "true"
    resp.headers["Location"] = f"/components/{slug}/{kind}s/{outcome.body['id']}"
    return resp


def _filters(kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = ("stage", "host", "version") if kind == "deployment" else ("version",)
    for name in names:
        value = request.args.get(name)
        if value:
            out[name] = value.lower() if name == "stage" else value
    result = request.args.get("result")
    if result:
        out["result_class" if result in RESULT_CLASSES else "result"] = result
    for name in ("since", "until"):
        value = request.args.get(name)
        if value:
            try:
                out[name] = parse_timestamp(value).timestamp()
            except ValueError:
                raise ApiError(
                    400,
                    "invalid_parameter",
                    f"{name} must be an ISO 8601 timestamp",
                    {name: value[:64]},
                ) from None
    return out


def _list(kind: str, raw_slug: str) -> Response:
    slug = slug_or_error(raw_slug)
    db = get_db()
    if not components.exists(db, slug):
        raise ApiError(404, "not_found", f"no component named {slug!r}")
    limit = parse_limit()
    after = cursor_arg(pair(float, int))
    rows, cursor = events.list_events(
        db, kind, component=slug, filters=_filters(kind), limit=limit, after=after
    )
    return paged(rows, cursor)


def _get(kind: str, raw_slug: str, event_id: str) -> Response:
    slug = slug_or_error(raw_slug)
    found = events.get_event(get_db(), kind, slug, event_id)
    if found is None:
        raise ApiError(404, "not_found", f"no {kind} {event_id[:64]!r} for component {slug!r}")
    return jsonify(found)


@bp.post("/components/<slug>/deployments", strict_slashes=False)
@require("write")
def create_deployment(slug: str) -> Any:
    return _create("deployment", slug)


@bp.get("/components/<slug>/deployments", strict_slashes=False)
@require("read")
def list_deployments(slug: str) -> Any:
    return _list("deployment", slug)


@bp.get("/components/<slug>/deployments/<event_id>")
@require("read")
def get_deployment(slug: str, event_id: str) -> Any:
    return _get("deployment", slug, event_id)


@bp.post("/components/<slug>/builds", strict_slashes=False)
@require("write")
def create_build(slug: str) -> Any:
    return _create("build", slug)


@bp.get("/components/<slug>/builds", strict_slashes=False)
@require("read")
def list_builds(slug: str) -> Any:
    return _list("build", slug)


@bp.get("/components/<slug>/builds/<event_id>")
@require("read")
def get_build(slug: str, event_id: str) -> Any:
    return _get("build", slug, event_id)
