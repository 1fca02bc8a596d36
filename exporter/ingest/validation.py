"""Validation and normalisation of ingested events: fields, timestamps, result classes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from exporter.errors import ValidationError
from exporter.names import STAGE_RE, result_class
from storage import jsontext

MAX_SHORT = 255
MAX_META_BYTES = 16 * 1024
MAX_META_DEPTH = 32
DEFAULT_MAX_FUTURE_SECONDS = 300
# The accepted time range of every timestamp (event fields and list filters), in UTC. Before
# 1970 no CI/CD event happened and Unix time goes negative; years of 4 digits keep the stored
# text sortable and within the date-time format; 2999 leaves room for any real date while
# refusing the year-9999 edge where an offset overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_LOCAL_EARLIEST = datetime(1969, 12, 30)
_LOCAL_LATEST = datetime(3000, 1, 2)
RANGE_TEXT = "between 1970-01-01T00:00:00Z and 2999-12-31T23:59:59Z"


TIMESTAMP_HELP = (
    "must be an ISO 8601 timestamp or Unix epoch seconds, such as 2018-05-27T13:15:30.311Z "
    "or 1527426930.311"
)
# Epoch seconds as text (forms, query strings, `date +%s`): digits and optional fractions.
_EPOCH_RE = re.compile(r"[0-9]{1,13}(?:\.[0-9]{1,9})?")
_EPOCH_MAX = 1e11  # year 5138: anything larger is milliseconds (Date.now()), not seconds
# The OpenAPI schema of a timestamp ReleaseBits accepts (fields and list filters alike).
TIMESTAMP_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "number", "minimum": 0, "description": "Unix epoch seconds"},
        {
            "type": "string",
            "pattern": "^[0-9]+(\\.[0-9]+)?$",
            "description": "Unix epoch seconds as text (forms, query parameters)",
        },
    ]
}


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 (with Z or an offset; naive means UTC) or Unix epoch seconds (a number, or
    digits as text: CI systems hand out both) as an aware UTC datetime. ValueError says why."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(TIMESTAMP_HELP)
    text = str(value).strip()
    if isinstance(value, int | float) or _EPOCH_RE.fullmatch(text):
        seconds = float(value)
        if seconds >= _EPOCH_MAX:
            raise ValueError("must be Unix epoch seconds (this looks like milliseconds)")
        if not EARLIEST.timestamp() <= seconds <= LATEST.timestamp():
            raise ValueError(f"must be {RANGE_TEXT}")
        return datetime.fromtimestamp(seconds, UTC)
    if not text or len(text) > 64:
        raise ValueError(TIMESTAMP_HELP)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(TIMESTAMP_HELP) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    # Checked on the local time first: converting year 1 or 9999 with an offset overflows.
    if not _LOCAL_EARLIEST < dt.replace(tzinfo=None) < _LOCAL_LATEST:
        raise ValueError(f"must be {RANGE_TEXT}")
    dt = dt.astimezone(UTC)
    if not EARLIEST <= dt <= LATEST:
        raise ValueError(f"must be {RANGE_TEXT}")
    return dt


def _text(
    fields: dict[str, str],
    name: str,
    value: Any,
    *,
    required: bool = False,
    limit: int = MAX_SHORT,
    numbers: bool = True,
) -> str | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if required:
            fields[name] = "is required"
        return None
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # build numbers sent as JSON numbers are common in CI templates
    if not isinstance(value, str):
        fields[name] = f"must be a string, got {type(value).__name__}"
        return None
    value = value.strip()
    if not _clean(value):
        fields[name] = "must be valid Unicode without NUL characters"
        return None
    if len(value) > limit:
        fields[name] = f"must be at most {limit} characters"
        return None
    return value


text_field = _text  # the same rules for the fields of other resources (incidents)


def _clean(text: str) -> bool:
    """No NUL bytes and no lone surrogates (JSON can smuggle "\\ud800"; it cannot be stored
    as UTF-8 nor written into the exposition)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _depth(value: Any) -> int:
    """How deeply a JSON value nests (iterative: a hostile value cannot exhaust the stack)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_META_DEPTH:
                return depth
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _check_json_strings(value: Any) -> bool:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return all(_check_json_strings(k) and _check_json_strings(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_check_json_strings(v) for v in value)
    return True


COMMON_FIELDS = ("version", "result", "started_at", "finished_at", "commit_sha", "branch", "tag")
DEPLOYMENT_FIELDS = (
    *COMMON_FIELDS,
    "stage",
    "host",
    "code_name",
    "meta_data",
    "release",
    "commits",
)
MAX_COMMITS = 1000
BUILD_FIELDS = (*COMMON_FIELDS, "url", "code_name", "meta_data")


def validate_event(
    kind: str,
    data: Mapping[str, Any],
    *,
    default_stage: str,
    now: datetime | None = None,
    max_future_seconds: int = DEFAULT_MAX_FUTURE_SECONDS,
) -> tuple[dict[str, Any], list[str]]:
    """Validate a deployment or build payload; return (normalised event, ignored field names)."""
    allowed = DEPLOYMENT_FIELDS if kind == "deployment" else BUILD_FIELDS
    fields: dict[str, str] = {}
    out: dict[str, Any] = {}
    out["version"] = _text(fields, "version", data.get("version"), required=True)
    out["result"] = _text(fields, "result", data.get("result"), limit=64)
    out["commit_sha"] = _text(fields, "commit_sha", data.get("commit_sha"), limit=128)
    out["branch"] = _text(fields, "branch", data.get("branch"))
    out["tag"] = _text(fields, "tag", data.get("tag"))
    out["code_name"] = _text(fields, "code_name", data.get("code_name"))
    if kind == "deployment":
        out["host"] = _text(fields, "host", data.get("host"))
        out["release"] = _text(fields, "release", data.get("release"))
        out["stage"] = _stage(fields, data.get("stage")) or default_stage
        out["commits"] = _commits(fields, data.get("commits"))
    else:
        out["url"] = _text(fields, "url", data.get("url"), limit=2048)
    out["meta_data"] = _meta_data(fields, data.get("meta_data"), MAX_META_BYTES)
    out["started_at"], out["finished_at"] = _times(
        fields, data, now or datetime.now(UTC), timedelta(seconds=max_future_seconds)
    )
    if fields:
        raise ValidationError(fields)
    out["result_class"] = result_class(out["result"])
    ignored = sorted(k for k in data if k not in allowed and k != "access_token")
    return out, ignored


def _commits(fields: dict[str, str], value: Any) -> list[dict[str, Any]] | None:
    """The optional `commits` of a deployment: [{"sha", "timestamp"}], at most MAX_COMMITS
    (a longer list is refused: send the newest ones). Stored as [{"sha", "ts"}]."""
    if value is None:
        return None
    if not isinstance(value, list):
        fields["commits"] = "must be a list of {sha, timestamp} objects"
        return None
    if len(value) > MAX_COMMITS:
        fields["commits"] = f"at most {MAX_COMMITS} commits; send the newest {MAX_COMMITS}"
        return None
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        sha = _text(
            fields,
            f"commits[{i}].sha",
            item.get("sha") if isinstance(item, dict) else None,
            required=True,
            limit=128,
        )
        raw = _text(
            fields,
            f"commits[{i}].timestamp",
            item.get("timestamp") if isinstance(item, dict) else None,
            required=True,
            limit=64,
        )
        if sha is None or raw is None:
            return None
        try:
            out.append({"sha": sha, "ts": parse_timestamp(raw).timestamp()})
        except ValueError:
            fields[f"commits[{i}].timestamp"] = "must be an ISO 8601 timestamp"
            return None
    return out


def _stage(fields: dict[str, str], value: Any) -> str | None:
    stage = _text(fields, "stage", value, limit=64)
    if stage is None:
        return None
    stage = stage.lower()
    if not STAGE_RE.fullmatch(stage):
        fields["stage"] = (
            "must be 1-64 characters of a-z, 0-9, '.', '_', '-' starting with a letter or digit"
        )
    return stage


def _meta_data(fields: dict[str, str], meta: Any, max_bytes: int | None) -> dict[str, Any]:
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        fields["meta_data"] = f"must be an object, got {type(meta).__name__}"
        return {}
    if _depth(meta) > MAX_META_DEPTH:
        fields["meta_data"] = f"must nest at most {MAX_META_DEPTH} levels deep"
    elif not _check_json_strings(meta):
        fields["meta_data"] = "must be valid Unicode without NUL characters"
    elif max_bytes is not None and len(jsontext.dumps(meta).encode()) > max_bytes:
        fields["meta_data"] = f"must be at most {max_bytes} bytes as JSON"
    return meta


def timestamp_field(
    fields: dict[str, str], name: str, value: Any, *, required: bool = False
) -> datetime | None:
    """A timestamp field of any resource (ISO 8601 or epoch seconds); None when absent or
    invalid, the reason recorded in `fields`."""
    if not isinstance(value, int | float):  # numbers (and bools, refused) go to the parser
        value = _text(fields, name, value, required=required, limit=64)
    if value is None or name in fields:
        return None
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        fields[name] = str(exc)
        return None


def _times(
    fields: dict[str, str], data: Mapping[str, Any], now: datetime, max_future: timedelta
) -> tuple[datetime | None, datetime]:
    """(started_at, finished_at): finished_at defaults to now; neither in the future (a clock
    a little ahead is tolerated): a future finished_at would pin the "current" version over
    later real deploys."""
    started = timestamp_field(fields, "started_at", data.get("started_at"))
    finished = timestamp_field(fields, "finished_at", data.get("finished_at")) or now
    for name, value in (("finished_at", finished), ("started_at", started)):
        if value is not None and value > now + max_future and name not in fields:
            fields[name] = (
                f"is more than {int(max_future.total_seconds())} seconds in the future "
                "(check the sender's clock; the limit is the max_future_seconds setting)"
            )
    if started is not None and started > finished:
        fields["started_at"] = "is after finished_at"
    return started, finished


def validate_release(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a release payload: name (required), description, meta_data."""
    fields: dict[str, str] = {}
    name = _text(fields, "name", data.get("name"), required=True, numbers=False)
    description = _text(fields, "description", data.get("description"), limit=4096)
    meta = _meta_data(fields, data.get("meta_data"), MAX_META_BYTES)
    if fields:
        raise ValidationError(fields)
    return {"name": name, "description": description, "meta_data": meta}
