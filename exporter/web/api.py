"""Shared request plumbing: JSON errors, token auth, body parsing, cursors and Link headers."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode

import sqlite_utils
from flask import Response, current_app, g, jsonify, request

from exporter.config import Settings
from exporter.errors import ReleaseBitsError
from storage import tokens
from storage.db import thread_db

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")


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


def error_response(err: ApiError) -> Response:
    body: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.fields:
        body["fields"] = err.fields
    resp = jsonify({"error": body})
    resp.status_code = err.status
    for key, value in err.headers.items():
        resp.headers[key] = value
    return resp


def settings() -> Settings:
    return cast(Settings, current_app.extensions["releasebits"].settings)


def get_db() -> sqlite_utils.Database:
    """This thread's connection (sqlite3 connections are per-thread; reused across requests)."""
    if "db" not in g:
        s = settings()
        g.db = thread_db(s.db, synchronous=s.sqlite_synchronous)
    return cast(sqlite_utils.Database, g.db)


# --- auth -----------------------------------------------------------------------------------


def request_token() -> str | None:
    """The token from `Authorization: Bearer <t>`, `Authorization: <t>` or `?access_token=`."""
    header = request.headers.get("Authorization")
    if header is not None:
        value = header.strip()
        if value.lower().startswith("bearer "):
            value = value[7:].strip()
        elif value.lower().startswith("token "):
            value = value[6:].strip()
        return value
    if "access_token" in request.args:
        return request.args.get("access_token", "").strip()
    return None


def check_scope(scope: str) -> tokens.Token:
    token = request_token()
    challenge = {"WWW-Authenticate": 'Bearer realm="releasebits"'}
    if token is None:
        raise ApiError(
            401,
            "missing_token",
            "this endpoint needs an API token: send 'Authorization: Bearer <token>' or "
            "?access_token=<token> (create one with 'releasebits token create NAME')",
            headers=challenge,
        )
    if token == "":
        raise ApiError(401, "invalid_token", "the API token is empty", headers=challenge)
    found = tokens.authenticate(get_db(), token)
    if found is None:
        raise ApiError(
            401, "invalid_token", "the API token is unknown or revoked", headers=challenge
        )
    if scope not in found.scopes:
        raise ApiError(
            403,
            "insufficient_scope",
            f"the token '{found.name}' lacks the '{scope}' scope",
        )
    g.token = found
    return found


def require(scope: str) -> Callable[[F], F]:
    """Decorator: the view needs a token with `scope` ('read' or 'write')."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check_scope(scope)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator


# --- bodies ---------------------------------------------------------------------------------

_BRACKET = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[([^\[\]]*)\]$")


def pairs_to_dict(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Form/query pairs to a dict; `meta_data[key]=value` becomes {"meta_data": {"key": value}}."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key == "access_token":
            continue
        match = _BRACKET.match(key)
        if match:
            outer, inner = match.groups()
            nested = out.get(outer)
            if not isinstance(nested, dict):
                nested = out[outer] = {}
            nested[inner] = value
        else:
            out[key] = value
    return out


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_encoding", "the request body is not valid UTF-8") from None


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(_decode(raw))
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            "invalid_json",
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    if not isinstance(data, dict):
        raise ApiError(
            400, "invalid_body", f"the JSON body must be an object, got {type(data).__name__}"
        )
    return data


def read_payload() -> dict[str, Any]:
    """The event fields from a JSON body, a form body, or the query string of a bodiless POST.

    curl's `-d '{...}'` sends JSON labelled as a form; a body that starts with `{` is therefore
    read as JSON whatever the form content type says. Query parameters (other than access_token)
    fill in fields the body does not set.
    """
    raw = request.get_data(cache=True)
    base = pairs_to_dict(request.args.items(multi=True))
    if not raw.strip():
        return base
    mimetype = request.mimetype
    looks_json = raw.lstrip()[:1] == b"{"
    if (
        mimetype == "application/json"
        or mimetype.endswith("+json")
        or (looks_json and mimetype in {"", "application/x-www-form-urlencoded", "text/plain"})
    ):
        body = _parse_json(raw)
    elif mimetype == "application/x-www-form-urlencoded":
        body = pairs_to_dict(parse_qsl(_decode(raw), keep_blank_values=True))
    elif mimetype == "multipart/form-data":
        body = pairs_to_dict(request.form.items(multi=True))
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"cannot read a {mimetype or 'untyped'} body: send application/json, a form body, "
            "or query parameters",
        )
    base.update(body)
    return base


# --- pagination -----------------------------------------------------------------------------


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Any:
    try:
        padded = text + "=" * (-len(text) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ApiError(
            400, "invalid_cursor", "the cursor parameter is not one this API issued"
        ) from None


def parse_limit(default: int = 50, maximum: int = 500) -> int:
    raw = request.args.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise ApiError(
            400,
            "invalid_parameter",
            f"limit must be an integer from 1 to {maximum}",
            {"limit": raw[:40]},
        )
    return value


def link_next(cursor: str) -> str:
    """A Link header for the next page: same path and filters, new cursor, never the token."""
    params = [
        (k, v) for k, v in request.args.items(multi=True) if k not in {"cursor", "access_token"}
    ]
    params.append(("cursor", cursor))
    return f'<{request.base_url}?{urlencode(params)}>; rel="next"'


def cursor_arg(convert: Callable[[Any], C]) -> C | None:
    """The `?cursor=` of a list request as the storage cursor, or None on the first page.

    `convert` turns the decoded JSON into the storage layer's cursor and raises TypeError or
    ValueError on anything this API did not issue, which answers 400 invalid_cursor.
    """
    text = request.args.get("cursor")
    if not text:
        return None
    try:
        return convert(decode_cursor(text))
    except (TypeError, ValueError):
        raise ApiError(
            400, "invalid_cursor", "the cursor parameter is not one this API issued"
        ) from None


def exactly(kind: type[C]) -> Callable[[Any], C]:
    """A cursor converter accepting a JSON value of exactly this type (no bool for int)."""

    def convert(raw: Any) -> C:
        if type(raw) is not kind:
            raise TypeError(raw)
        return raw

    return convert


def pair(first: Callable[[Any], Any], second: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A cursor converter for a two-item JSON list, e.g. (finished_ts, seq)."""

    def convert(raw: Any) -> tuple[Any, Any]:
        if not (isinstance(raw, list) and len(raw) == 2):
            raise ValueError(raw)
        return (first(raw[0]), second(raw[1]))

    return convert


def paged(items: list[Any], next_cursor: Any | None) -> Response:
    """A page of a list; `next_cursor` (the storage cursor of its last row) becomes a Link."""
    resp = jsonify(items)
    if next_cursor is not None:
        resp.headers["Link"] = link_next(encode_cursor(next_cursor))
    return resp


def redact_url(path: str, query: Mapping[str, str] | bytes | str) -> str:
    """The request path with any access_token value replaced, for logs."""
    qs = query.decode("latin-1") if isinstance(query, bytes) else str(query)
    if not qs:
        return path
    qs = re.sub(r"(?i)(^|&)(access_token=)[^&]*", r"\1\2[redacted]", qs)
    return f"{path}?{qs}"
