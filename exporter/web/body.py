"""Request bodies: JSON, form bodies, or the query string of a bodiless POST."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from flask import request

from exporter.web.errors import ApiError
from exporter.web.state import settings

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


def parse_json(raw: bytes) -> dict[str, Any]:
    """orjson: about 3x json.loads here, and stricter where strictness helps (no NaN or
    Infinity, no lone surrogate escapes, at most 1024 levels deep: all 400 invalid_json)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        _decode(raw)  # not UTF-8 at all: say so (invalid_encoding)
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


_READ_SIZE = 64 * 1024


def _read_body() -> bytes:
    """The request body, whole, never more than max_body_bytes.

    With a Content-Length, werkzeug refuses an oversized body before reading it. A chunked body
    has none: it is read here piece by piece and refused with 413 as soon as it passes the
    limit (never truncated and accepted). Granian answers a malformed chunk by ending the body
    early; a chunked POST whose body comes out empty is refused as malformed, since an empty
    chunked body is something no client means to send.
    """
    environ = request.environ
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if request.content_length is not None or not chunked:
        return request.get_data(cache=True)
    limit = settings().max_body_bytes
    stream = environ["wsgi.input"]
    parts: list[bytes] = []
    total = 0
    try:
        while piece := stream.read(_READ_SIZE):
            total += len(piece)
            if total > limit:
                raise ApiError(
                    413, "body_too_large", f"the request body is larger than {limit} bytes"
                )
            parts.append(piece)
    except (OSError, ValueError) as exc:
        raise ApiError(400, "invalid_body", f"the chunked body is malformed: {exc}") from None
    if not total:
        raise ApiError(400, "invalid_body", "the chunked body is empty or malformed")
    return b"".join(parts)


def read_payload() -> dict[str, Any]:
    """The event fields from a JSON body, a form body, or the query string of a bodiless POST.

    curl's `-d '{...}'` sends JSON labelled as a form; a body that starts with `{` is therefore
    read as JSON whatever the form content type says. Query parameters (other than access_token)
    fill in fields the body does not set.
    """
    raw = _read_body()
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
        body = parse_json(raw)
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
