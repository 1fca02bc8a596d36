"""The Flask application factory: blueprints, JSON errors, redacted access log."""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry
from werkzeug.exceptions import HTTPException

from exporter.collector import build_registry
from exporter.config import Settings
from exporter.web.api import ApiError, error_response, redact_url
from storage.db import StorageError

log = logging.getLogger(__name__)
access_log = logging.getLogger("releasebits.access")

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


@dataclass
class AppState:
    """Shared objects of one app, kept in app.extensions["releasebits"]."""

    settings: Settings
    registry: CollectorRegistry


def create_app(settings: Settings, *, process_metrics: bool = True) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["releasebits"] = AppState(
        settings=settings, registry=build_registry(settings, process_metrics=process_metrics)
    )

    from exporter.web import badges, deliveries, events, meta, resources

    app.register_blueprint(meta.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(resources.bp)
    app.register_blueprint(deliveries.bp)
    app.register_blueprint(badges.bp)

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError) -> Response:
        return error_response(err)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        status = err.code or 500
        message = err.description or err.name
        if status == 413:
            message = f"the request body is larger than {settings.max_body_bytes} bytes"
        elif status == 404:
            message = f"no such endpoint: {request.method} {request.path[:200]}"
        resp = error_response(ApiError(status, _HTTP_CODES.get(status, "http_error"), message))
        if status == 405 and err.get_response().headers.get("Allow"):
            resp.headers["Allow"] = err.get_response().headers["Allow"]
        return resp

    @app.errorhandler(sqlite3.OperationalError)
    @app.errorhandler(StorageError)
    def _storage_error(err: Exception) -> Response:
        # Locked for longer than busy_timeout, disk full, unreadable file: nothing was committed,
        # so the client must retry; 503 says exactly that.
        log.error("storage error on %s %s: %s", request.method, request.path, err)
        resp = error_response(
            ApiError(503, "storage_unavailable", "the database is busy or unavailable; retry")
        )
        resp.headers["Retry-After"] = "1"
        return resp

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(ApiError(500, "internal_error", "internal error; see the server log"))

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.teardown_request
    def _rollback(exc: BaseException | None) -> None:
        db = g.get("db")
        if db is not None and db.conn.in_transaction:
            db.conn.rollback()

    @app.after_request
    def _access(resp: Response) -> Response:
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        access_log.info(
            '%s "%s %s" %d %.1fms',
            request.remote_addr,
            request.method,
            redact_url(request.path, request.query_string),
            resp.status_code,
            elapsed_ms,
        )
        return resp

    return app
