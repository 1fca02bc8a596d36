"""Health and the OpenAPI document (the status page at / is exporter.ui)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from flask import Blueprint, Response, jsonify

from exporter import __version__
from exporter.openapi import openapi_document
from exporter.settings import Settings
from exporter.web.state import get_db, settings
from storage import heartbeat
from storage.db import DB_ERRORS

log = logging.getLogger(__name__)
bp = Blueprint("meta", __name__)


def worker_alive(beat: float | None, settings: Settings, now: float) -> bool:
    """Whether the background worker's last heartbeat is recent (as long as its lease lasts:
    three beats and 5 s of slack)."""
    return beat is not None and now - beat < settings.worker_stale_seconds


@bp.get("/healthz")
def healthz() -> Any:
    s = settings()
    body: dict[str, Any] = {"status": "ok", "version": __version__}
    try:
        db = get_db()
        heartbeat.database_readable(db)
        beat = heartbeat.last_beat(db)
        leader = heartbeat.last_leader(db)
    except DB_ERRORS as exc:
        log.error("health check: database unreadable: %s", exc)
        return _unhealthy({"database": "unavailable"})
    try:
        heartbeat.probe_write(db, os.getpid())
    except DB_ERRORS as exc:
        db.rollback()
        log.error("health check: nothing can be written: %s", exc)
        return _unhealthy({"database": "read-only"})  # disk full, read-only file, locked
    body["database"] = "ok"
    alive = worker_alive(beat, s, time.time())
    # Every replica reports the one worker (the lease holder's heartbeat), and names it.
    body["worker"] = {"last_heartbeat": beat, "alive": alive, "leader": leader}
    if not alive:  # no heartbeat: nothing polls and nothing is forwarded
        return _unhealthy({"database": "ok", "worker": body["worker"]})
    return jsonify(body)


def _unhealthy(details: dict[str, Any]) -> Response:
    resp = jsonify({"status": "error", "version": __version__, **details})
    resp.status_code = 503
    return resp


@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(openapi_document(__version__))
