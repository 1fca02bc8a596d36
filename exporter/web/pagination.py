"""List pages: `limit`, opaque cursors, and the Link header of the next page."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from flask import Response, jsonify, request

from exporter.web.errors import ApiError
from exporter.web.params import Param

C = TypeVar("C")


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


def parse_limit(param: Param) -> int:
    """The `limit` of a list request, within the bounds its declared parameter documents."""
    default, maximum = int(param.schema["default"]), int(param.schema["maximum"])
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
    """A Link header for the next page: same path and filters, new cursor, never the token.

    The target is relative (RFC 8288 resolves it against the request URL): building it from
    the Host header let any client make the API hand out links to a host of its choosing."""
    params = [
        (k, v) for k, v in request.args.items(multi=True) if k not in {"cursor", "access_token"}
    ]
    params.append(("cursor", cursor))
    return f'<{quote(request.script_root + request.path)}?{urlencode(params)}>; rel="next"'


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
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise ApiError(
            400, "invalid_cursor", "the cursor parameter is not one this API issued"
        ) from None


INT64 = 2**63 - 1


def exactly(kind: type[C]) -> Callable[[Any], C]:
    """A cursor converter accepting a JSON value of exactly this type (no bool for int), and
    only what SQLite can compare: a 64-bit integer, a finite float."""

    def convert(raw: Any) -> C:
        if type(raw) is not kind:
            raise TypeError(raw)
        if isinstance(raw, int) and not -INT64 <= raw <= INT64:
            raise ValueError(raw)
        if isinstance(raw, float) and not math.isfinite(raw):
            raise ValueError(raw)
        return raw

    return convert


def number(raw: Any) -> float:
    """A timestamp in a cursor: any finite JSON number."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise TypeError(raw)
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


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
