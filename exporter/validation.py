"""Validation and normalisation of ingested events: slugs, stages, timestamps, result classes."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from exporter.errors import ReleaseBitsError

SLUG_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
STAGE_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62})?")
RESULT_CLASSES = ("success", "failure", "error", "cancelled", "other")

# Common spellings CI systems use, mapped onto the fixed label set so a free-form result string
# never becomes a Prometheus label value.
_RESULT_ALIASES = {
    "success": "success",
    "succeeded": "success",
    "successful": "success",
    "succeed": "success",
    "passed": "success",
    "pass": "success",
    "ok": "success",
    "done": "success",
    "complete": "success",
    "completed": "success",
    "deployed": "success",
    "green": "success",
    "failure": "failure",
    "failed": "failure",
    "fail": "failure",
    "failing": "failure",
    "broken": "failure",
    "red": "failure",
    "rolled_back": "failure",
    "rollback": "failure",
    "rolledback": "failure",
    "error": "error",
    "errored": "error",
    "erred": "error",
    "timeout": "error",
    "timed_out": "error",
    "timedout": "error",
    "infrastructure_fail": "error",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "cancel": "cancelled",
    "aborted": "cancelled",
    "abort": "cancelled",
    "skipped": "cancelled",
    "stopped": "cancelled",
    "killed": "cancelled",
}

MAX_SHORT = 255
MAX_META_BYTES = 16 * 1024
FUTURE_TOLERANCE = timedelta(hours=24)


class ValidationError(ReleaseBitsError):
    """One or more fields are invalid; `fields` maps each field to a message."""

    def __init__(self, fields: Mapping[str, str], message: str | None = None):
        self.fields = dict(fields)
        super().__init__(message or "invalid fields: " + ", ".join(sorted(self.fields)))


def result_class(result: str | None) -> str:
    """Map a free-form result string onto success/failure/error/cancelled/other."""
    if result is None:
        return "success"
    key = re.sub(r"[\s-]+", "_", result.strip().lower())
    return _RESULT_ALIASES.get(key, "other")


def normalize_slug(raw: str) -> str:
    """Lower-case a component slug and turn spaces/underscores into dashes, or raise."""
    slug = re.sub(r"[\s_]+", "-", raw.strip().lower())
    if not SLUG_RE.fullmatch(slug):
        raise ValidationError(
            {
                "slug": "component slug must be 1-64 characters of a-z, 0-9, '.', '-' "
                "starting and ending with a letter or digit"
            },
            f"invalid component slug {raw[:80]!r}",
        )
    return slug


def parse_timestamp(value: str) -> datetime:
    """Parse ISO 8601 (with Z or an offset; naive means UTC) into an aware UTC datetime."""
    text = value.strip()
    if not text or len(text) > 64:
        raise ValueError("not an ISO 8601 timestamp")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _text(
    fields: dict[str, str], name: str, value: Any, *, required: bool = False, limit: int = MAX_SHORT
) -> str | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if required:
            fields[name] = "is required"
        return None
    if isinstance(value, int) and not isinstance(value, bool):
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


def _check_json_strings(value: Any) -> bool:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return all(_check_json_strings(k) and _check_json_strings(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_check_json_strings(v) for v in value)
    return True


COMMON_FIELDS = ("version", "result", "started_at", "finished_at", "commit_sha", "branch", "tag")
DEPLOYMENT_FIELDS = (*COMMON_FIELDS, "stage", "host", "code_name", "meta_data", "release")
BUILD_FIELDS = (*COMMON_FIELDS, "url", "code_name", "meta_data")


def validate_event(
    kind: str, data: Mapping[str, Any], *, default_stage: str, now: datetime | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Validate a deployment or build payload; return (normalised event, ignored field names)."""
    allowed = DEPLOYMENT_FIELDS if kind == "deployment" else BUILD_FIELDS
    now = now or datetime.now(UTC)
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
        stage = _text(fields, "stage", data.get("stage"), limit=64)
        if stage is not None:
            stage = stage.lower()
            if not STAGE_RE.fullmatch(stage):
                fields["stage"] = (
                    "must be 1-64 characters of a-z, 0-9, '.', '_', '-' starting with a letter "
                    "or digit"
                )
        out["stage"] = stage or default_stage
    else:
        out["url"] = _text(fields, "url", data.get("url"), limit=2048)

    meta = data.get("meta_data")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        fields["meta_data"] = f"must be an object, got {type(meta).__name__}"
    elif not _check_json_strings(meta):
        fields["meta_data"] = "must be valid Unicode without NUL characters"
    elif len(json.dumps(meta, ensure_ascii=False).encode()) > MAX_META_BYTES:
        fields["meta_data"] = f"must be at most {MAX_META_BYTES} bytes as JSON"
    out["meta_data"] = meta if isinstance(meta, dict) else {}

    times: dict[str, datetime | None] = {}
    for name in ("started_at", "finished_at"):
        raw = _text(fields, name, data.get(name), limit=64)
        times[name] = None
        if raw is not None:
            try:
                times[name] = parse_timestamp(raw)
            except ValueError:
                fields[name] = "must be an ISO 8601 timestamp such as 2018-05-27T13:15:30.311Z"
    finished = times["finished_at"] or now
    started = times["started_at"]
    if finished > now + FUTURE_TOLERANCE:
        fields["finished_at"] = "is more than 24 hours in the future"
    if started is not None and started > finished:
        fields["started_at"] = "is after finished_at"
    if fields:
        raise ValidationError(fields)
    out["finished_at"] = finished
    out["started_at"] = started
    out["result_class"] = result_class(out["result"])
    ignored = sorted(k for k in data if k not in allowed and k != "access_token")
    return out, ignored


def validate_release(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a release payload: name (required), description, meta_data."""
    fields: dict[str, str] = {}
    name = _text(fields, "name", data.get("name"), required=True)
    description = _text(fields, "description", data.get("description"), limit=4096)
    meta = data.get("meta_data") or {}
    if not isinstance(meta, dict):
        fields["meta_data"] = f"must be an object, got {type(meta).__name__}"
    elif not _check_json_strings(meta):
        fields["meta_data"] = "must be valid Unicode without NUL characters"
    if fields:
        raise ValidationError(fields)
    return {"name": name, "description": description, "meta_data": meta}
