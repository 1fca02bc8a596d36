"""JSON text as ReleaseBits stores it (meta_data, commits, histogram buckets, replayed answers):
compact, UTF-8, key order kept.

orjson writes it: the stdlib encoder was ~6% of the Python time of an ingest request under load
(py-spy, benchmarks/README.md, issue 16). Values orjson refuses (an int past 64 bits, a non-string
key) fall back to the stdlib with the same compact separators, so nothing valid is refused.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)
