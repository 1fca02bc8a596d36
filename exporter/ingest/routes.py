"""Deployments and builds: POST (durable, idempotent), list with filters and cursors, get by id."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, g, has_request_context, jsonify, request

from exporter.errors import ValidationError
from exporter.ingest.validation import TIMESTAMP_SCHEMA, parse_timestamp, validate_event
from exporter.names import RESULT_CLASSES, SLUG_INPUT_RE, SLUG_RULE, normalize_slug
from exporter.web.auth import invalid_token, require
from exporter.web.body import read_payload
from exporter.web.errors import ApiError
from exporter.web.pagination import cursor_arg, exactly, number, paged, pair, parse_limit
from exporter.web.params import CURSOR, Param, declares, limit_param
from exporter.web.state import AppState, get_db, settings, state
from storage import components, events
from storage.db import Store
from storage.feeds import Delivery
from storage.idempotency import Idempotency
from storage.ids import new_id

log = logging.getLogger(__name__)
bp = Blueprint("ingest", __name__)

KINDS = ("deployment", "build")
IDEMPOTENCY_KEY_MAX = 255

# The list filters of each kind, declared once for the routes and the OpenAPI document.
COMMON_FILTERS = (
    Param("version", description="Exact version."),
    Param("result", description="Raw result or result class (" + ", ".join(RESULT_CLASSES) + ")."),
    Param("since", TIMESTAMP_SCHEMA, "Finished at or after (ISO 8601 or Unix epoch seconds)."),
    Param("until", TIMESTAMP_SCHEMA, "Finished before (ISO 8601 or Unix epoch seconds)."),
)
LIST_PARAMS = {
    "deployment": (
        limit_param(500),
        CURSOR,
        *COMMON_FILTERS,
        Param("stage", description="Stage (case-insensitive)."),
        Param("host", description="Exact host."),
    ),
    "build": (limit_param(500), CURSOR, *COMMON_FILTERS),
}


def slug_or_error(raw: str) -> str:
    """The stored slug of a path's slug, or 400: the path must match the documented pattern."""
    try:
        if not SLUG_INPUT_RE.fullmatch(raw):
            raise ValidationError({"slug": SLUG_RULE}, f"invalid component slug {raw[:80]!r}")
        return normalize_slug(raw)
    except ValidationError as exc:
        raise ApiError(400, "invalid_slug", str(exc), exc.fields) from None


def idempotency_of(kind: str, slug: str, payload: dict[str, Any]) -> Idempotency | None:
    """The request's Idempotency-Key, scoped to its token, kind and component; None if absent."""
    return idempotency_for(
        request.headers.get("Idempotency-Key"),
        g.token.id,
        kind,
        slug,
        payload,
        settings().idempotency_ttl_hours,
    )


def idempotency_for(
    key: str | None,
    token_id: str,
    kind: str,
    slug: str,
    payload: dict[str, Any],
    ttl_hours: int,
) -> Idempotency | None:
    """An Idempotency-Key header's value, scoped to its token, kind and component."""
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or "\x00" in key:
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} characters, none of them NUL",
        )
    digest = hashlib.sha256(
        json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode()
    ).hexdigest()
    return Idempotency(
        scope=f"{token_id}:{kind}:{slug}",
        key=key,
        request_hash=digest,
        ttl_seconds=ttl_hours * 3600,
    )


def record(
    kind: str,
    slug: str,
    event: dict[str, Any],
    body: dict[str, Any],
    idem: Idempotency | None,
    *,
    store: Store | None = None,
    app: AppState | None = None,
    **how: Any,
) -> events.Outcome:
    """Store a validated event (aggregates and outbox rows in its transaction); log it once.

    The webhook receivers come through here, with a natural key and their delivery (`how`: the
    keywords of `event_write`); `store` and `app` default to the current request's."""
    app = app or state()
    store = store or get_db()
    work = event_write(app, kind, slug, event, body, idem, **how)
    return settled(app, store.write(work), kind, slug, event, body, how.get("token_id"))


def event_write(
    app: AppState,
    kind: str,
    slug: str,
    event: dict[str, Any],
    body: dict[str, Any],
    idem: Idempotency | None,
    *,
    natural_key: str | None = None,
    delivery: Delivery | None = None,
    token_id: str | None = None,
) -> Callable[[Store], events.Outcome]:
    """The write transaction's work of one event, with this app's limits and targets.
    `token_id`: the API token that sent it, checked again in the event's transaction."""
    s = app.settings
    return events.event_write(
        kind,
        slug,
        event,
        event_id=body["id"],
        body=body,
        limits=events.Limits(s.max_components, s.max_stages),
        idempotency=idem,
        forward=app.router,
        natural_key=natural_key,
        delivery=delivery,
        dora_stages=s.dora_stages,
        token_id=token_id,
    )


def settled(
    app: AppState,
    outcome: events.Outcome,
    kind: str,
    slug: str,
    event: dict[str, Any],
    body: dict[str, Any],
    token_id: str | None,
) -> events.Outcome:
    """After the commit: refuse what the write refused (revoked token, conflicting
    Idempotency-Key); log a stored event."""
    s = app.settings
    if outcome.revoked and token_id is not None:  # only a write with a token finds it revoked
        app.verified_tokens.forget(s.store(), token_id)
        raise invalid_token()
    if outcome.conflict:
        raise ApiError(
            409,
            "idempotency_conflict",
            "this Idempotency-Key was already used with a different request body",
        )
    if outcome.created:
        if outcome.component_created and "component" in outcome.overflow:
            held = app.overflow_warning.allow()
            if held is not None:
                log.warning(
                    "component %r is past max_components=%d: its events are stored but not "
                    "exported as metrics (see releasebits_series_limit_exceeded_events_total)%s",
                    slug,
                    s.max_components,
                    f"; {held} more such components since the last warning" if held else "",
                )
        _log_stored(app, kind, body["id"], slug, event["version"])
        if has_request_context():
            g.stored_event = True  # its 201's access line is DEBUG (exporter/web/access.py)
    return outcome


def _log_stored(app: AppState, kind: str, event_id: str, slug: str, version: str) -> None:
    """Each stored event at DEBUG; at INFO the first, then one line a minute with a count."""
    held = app.stored_log.allow()
    log.log(
        logging.DEBUG if held is None else logging.INFO,
        "stored %s %s for %s version=%s%s",
        kind,
        event_id,
        slug,
        version,
        f" ({held} more events stored since the last such line)" if held else "",
    )


@dataclass(frozen=True)
class Prepared:
    """A validated POST of one event, ready for its write transaction."""

    kind: str
    slug: str
    event: dict[str, Any]
    body: dict[str, Any]
    token_id: str
    work: Callable[[Store], events.Outcome]

    def answer(
        self, app: AppState, outcome: events.Outcome
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON body, headers) once the write committed; raises ApiError."""
        outcome = settled(app, outcome, self.kind, self.slug, self.event, self.body, self.token_id)
        headers = {"Location": f"/components/{self.slug}/{self.kind}s/{outcome.body['id']}"}
        if not outcome.created:
            headers["Idempotent-Replayed"] = "true"
        return outcome.status, outcome.body, headers


def prepare(
    kind: str,
    raw_slug: str,
    payload: dict[str, Any],
    *,
    token_id: str,
    idempotency_key: str | None,
    app: AppState,
) -> Prepared:
    """Validate one POSTed event (raises ApiError) and build its write."""
    slug = slug_or_error(raw_slug)
    s = app.settings
    try:
        event, ignored = validate_event(
            kind,
            payload,
            default_stage=s.default_stage,
            max_future_seconds=s.max_future_seconds,
        )
    except ValidationError as exc:
        raise ApiError(422, "validation_failed", str(exc), exc.fields) from None
    idem = idempotency_for(idempotency_key, token_id, kind, slug, payload, s.idempotency_ttl_hours)
    body: dict[str, Any] = {"id": new_id()}
    if ignored:
        body["ignored_fields"] = ignored
    work = event_write(app, kind, slug, event, body, idem, token_id=token_id)
    return Prepared(kind, slug, event, body, token_id, work)


def create(
    kind: str,
    raw_slug: str,
    payload: dict[str, Any],
    *,
    token_id: str,
    idempotency_key: str | None,
    store: Store,
    app: AppState,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Validate and durably record one POSTed event: (status, JSON body, headers). Shared by the
    Flask route and the lean ingest path (exporter/ingest/fast.py); raises ApiError."""
    prepared = prepare(
        kind, raw_slug, payload, token_id=token_id, idempotency_key=idempotency_key, app=app
    )
    return prepared.answer(app, store.write(prepared.work))


def _create(kind: str, raw_slug: str) -> Response:
    slug_or_error(raw_slug)  # a bad slug answers 400 before the body is read
    status, body, headers = create(
        kind,
        raw_slug,
        read_payload(),
        token_id=g.token.id,
        idempotency_key=request.headers.get("Idempotency-Key"),
        store=get_db(),
        app=state(),
    )
    resp = jsonify(body)
    resp.status_code = status
    resp.headers.update(headers)
    return resp


def _filters(kind: str) -> dict[str, Any]:
    """The storage filters of a list request, from the parameters LIST_PARAMS declares."""
    out: dict[str, Any] = {}
    for param in LIST_PARAMS[kind]:
        value = request.args.get(param.name)
        if not value or param.name in ("limit", "cursor"):
            continue
        if param.name == "stage":
            out["stage"] = value.lower()
        elif param.name == "result":
            out["result_class" if value in RESULT_CLASSES else "result"] = value
        elif param.name in ("since", "until"):
            out[param.name] = _timestamp_arg(param.name, value)
        else:
            out[param.name] = value
    return out


def _timestamp_arg(name: str, value: str) -> float:
    try:
        return parse_timestamp(value).timestamp()
    except ValueError as exc:
        raise ApiError(400, "invalid_parameter", f"{name} {exc}", {name: value[:64]}) from None


def _list(kind: str, raw_slug: str) -> Response:
    slug = slug_or_error(raw_slug)
    db = get_db()
    if not components.exists(db, slug):
        raise ApiError(404, "not_found", f"no component named {slug!r}")
    limit = parse_limit(LIST_PARAMS[kind][0])
    after = cursor_arg(pair(number, exactly(int)))
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


def _register(kind: str) -> None:
    """The three routes of one kind: POST and GET the collection, GET one."""

    @require("write")
    def create(slug: str) -> Any:
        return _create(kind, slug)

    @require("read")
    @declares(*LIST_PARAMS[kind])
    def list_(slug: str) -> Any:
        return _list(kind, slug)

    @require("read")
    def get(slug: str, event_id: str) -> Any:
        return _get(kind, slug, event_id)

    collection = f"/components/<slug>/{kind}s"
    bp.add_url_rule(collection, f"create_{kind}", create, methods=["POST"], strict_slashes=False)
    bp.add_url_rule(collection, f"list_{kind}s", list_, methods=["GET"], strict_slashes=False)
    bp.add_url_rule(collection + "/<event_id>", f"get_{kind}", get, methods=["GET"])


for _kind in KINDS:
    _register(_kind)
