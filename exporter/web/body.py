"""Request bodies: JSON, form bodies, or the query string of a bodiless POST."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from flask import request

from exporter.web.errors import ApiError

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
