"""POST /webhooks/<kind>: authenticate, read, store through the ingest write path, count.

A 2xx means stored (or nothing to store: 202 with the reason). Every request is counted in
releasebits_webhook_requests_total, inside the transaction that stored its data when there is
one. A receiver without a [receivers.<kind>] table answers 404.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from exporter.errors import ValidationError
from exporter.ingest.routes import record
from exporter.ingest.validation import parse_timestamp, validate_event
from exporter.receivers.base import (
    Action,
    CommitsAction,
    EventAction,
    Ignore,
    IncidentAction,
    Invalid,
    Pong,
    Receiver,
    Unauthorized,
)
from exporter.receivers.registry import KINDS
from exporter.web.auth import check_scope
from exporter.web.errors import ApiError
from exporter.web.state import get_db, settings
from storage import commits, events, feeds, incidents
from storage.feeds import Delivery
from storage.ids import new_id

log = logging.getLogger(__name__)
bp = Blueprint("receivers", __name__)
RECEIVER_KINDS = tuple(KINDS)
_logged: set[tuple[str, str]] = set()  # ignore reasons this process has logged at WARNING
_LOG_MEMORY = 1000


@bp.post("/webhooks/<kind>")
def receive(kind: str) -> Any:
    receiver = settings().receivers.get(kind)
    if not isinstance(receiver, Receiver):
        raise ApiError(
            404,
            "not_found",
            f"the {kind[:32]!r} receiver is not configured: add a [receivers.{kind[:32]}] table",
        )
    headers = {k.lower(): v for k, v in request.headers.items()}
    delivery = Delivery(kind, receiver.event_label(headers))
    try:
        body = request.get_data(cache=True)
        if receiver.uses_api_token:
            check_scope("write")
        else:
            receiver.authenticate(headers, body)
        inbound = receiver.read(headers, body)
        delivery = Delivery(kind, inbound.event, inbound.delivery_id)
        return _apply(inbound.action, delivery)
    except Ignore as exc:
        _count(delivery, "ignored")
        _log_ignored(delivery, str(exc))
        return _answer(202, {"ignored": str(exc)})
    except Unauthorized as exc:
        _count(delivery, "unauthorized")
        raise ApiError(401, exc.code, str(exc)) from None
    except Invalid as exc:
        _count(delivery, "invalid")
        raise ApiError(400, exc.code, str(exc)) from None
    except RequestEntityTooLarge:
        _count(delivery, "invalid")
        raise
    except ApiError as exc:  # the write-token check of CDEvents
        if exc.status in (401, 403):
            _count(delivery, "unauthorized")
        raise


def _count(delivery: Delivery, outcome: str) -> None:
    feeds.count_request(get_db(), delivery, outcome)


def _log_ignored(delivery: Delivery, reason: str) -> None:
    """One warning per receiver and reason per process; the rest at debug level."""
    key = (delivery.receiver, reason[:120])
    if key in _logged:
        log.debug("%s webhook ignored: %s", delivery.receiver, reason)
        return
    if len(_logged) < _LOG_MEMORY:
        _logged.add(key)
    log.warning("%s webhook (%s) ignored: %s", delivery.receiver, delivery.event, reason)


def _answer(status: int, body: dict[str, Any], location: str | None = None) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    if location:
        resp.headers["Location"] = location
    return resp


def _apply(action: Action, delivery: Delivery) -> Response:
    if isinstance(action, Pong):
        _count(delivery, "accepted")
        return _answer(200, {"pong": True})
    if isinstance(action, EventAction):
        return _event(action, delivery)
    now = time.time()
    if isinstance(action, CommitsAction):
        comps = action.commits
        duplicate, new = feeds.write(
            get_db(),
            delivery,
            lambda tx: commits.store_commits(tx, action.component, comps, now),
            now,
        )
        if duplicate:
            return _answer(200, {"duplicate": True})
        return _answer(200, {"component": action.component, "commits": len(comps), "new": new})
    assert isinstance(action, IncidentAction)
    report = action.report
    duplicate, stored = feeds.write(
        get_db(), delivery, lambda tx: incidents.report(tx, report, now), now
    )
    if duplicate or stored is None:
        return _answer(200, {"duplicate": True})
    incident_id, created = stored
    return _answer(201 if created else 200, {"id": incident_id, "component": report.component})


def _event(action: EventAction, delivery: Delivery) -> Response:
    """A deployment or build: validated as the ingest API validates, stored by its write path."""
    if not action.final:
        try:
            started = parse_timestamp(str(action.fields.get("started_at") or ""))
        except ValueError:
            raise Ignore("the status has no readable start time") from None
        outcome = events.record_start(get_db(), action.kind, action.key, started, delivery)
        return _answer(outcome.status, outcome.body)
    try:
        event, _ = validate_event(
            action.kind, action.fields, default_stage=settings().default_stage
        )
    except ValidationError as exc:
        problems = "; ".join(f"{k}: {v}" for k, v in sorted(exc.fields.items()))
        raise Ignore(f"the payload does not make a valid {action.kind} ({problems})") from None
    event["rollback"] = action.rollback
    body = {"id": new_id(), "component": action.component}
    outcome = record(
        action.kind, action.component, event, body, None, natural_key=action.key, delivery=delivery
    )
    location = None
    if "id" in outcome.body:
        location = f"/components/{action.component}/{action.kind}s/{outcome.body['id']}"
    return _answer(outcome.status, outcome.body, location)
