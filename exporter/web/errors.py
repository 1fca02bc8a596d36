"""API errors: one JSON shape, {"error": {"code", "message", "fields"}}, for every failure."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from exporter.errors import ReleaseBitsError
from storage.db import DB_ERRORS

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


@dataclass
class ApiError(ReleaseBitsError):
    """An error answered as {"error": {"code", "message", "fields"}} with an HTTP status."""

    status: int
    code: str
    message: str
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)


def error_document(err: ApiError) -> dict[str, Any]:
    """The JSON error shape of an ApiError: {"error": {"code", "message"[, "fields"]}}."""
    body: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.fields:
        body["fields"] = err.fields
    return {"error": body}


def storage_unavailable() -> ApiError:
    """Locked for longer than busy_timeout, disk full, read-only or corrupted file: nothing
    was committed, so the client must retry (or an operator act); 503 says exactly that."""
    return ApiError(
        503,
        "storage_unavailable",
        "the database is busy or unavailable; retry",
        headers={"Retry-After": "1"},
    )


def internal_error() -> ApiError:
    return ApiError(500, "internal_error", "internal error; see the server log")


def error_response(err: ApiError) -> Response:
    resp = jsonify(error_document(err))
    resp.status_code = err.status
    for key, value in err.headers.items():
        resp.headers[key] = value
    return resp


def no_such_endpoint() -> ApiError:
    return ApiError(404, "not_found", f"no such endpoint: {request.method} {request.path[:200]}")


def install(app: Flask, max_body_bytes: int) -> None:
    """Every failure answers the JSON error shape; nothing answers an HTML error page."""

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError) -> Response:
        return error_response(err)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        status = err.code or 500
        message = err.description or err.name
        if status == 413:
            message = f"the request body is larger than {max_body_bytes} bytes"
        elif status == 404:
            message = no_such_endpoint().message
        resp = error_response(ApiError(status, _HTTP_CODES.get(status, "http_error"), message))
        if status == 405 and err.get_response().headers.get("Allow"):
            resp.headers["Allow"] = err.get_response().headers["Allow"]
        return resp

    def _storage_error(err: Exception) -> Response:
        log.error("storage error on %s %s: %s", request.method, request.path, err)
        return error_response(storage_unavailable())

    for error in DB_ERRORS:  # SQLite, PostgreSQL and the store's own
        app.register_error_handler(error, _storage_error)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(internal_error())
