"""Flask's JSON provider on orjson: every JSON answer (events, lists, errors) is encoded by it.

orjson encodes the API's dicts and lists in a fraction of the stdlib's time (benchmarks/
README.md, issue 16). Key order is kept and non-ASCII is written as UTF-8, as the app asked
of the stdlib provider before. Values orjson does not know (a Decimal, a set) fall back to str.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import JSONProvider

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def encode(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default, option=_OPTIONS)


class OrjsonProvider(JSONProvider):
    """dumps/loads/response of flask.json, on orjson."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return encode(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return Response(encode(obj), mimetype="application/json")
