"""The names users give things: component slugs, stages and result classes.

Declared once here and used by ingest, the settings, badges, metrics and the OpenAPI document.
"""

from __future__ import annotations

import re

from exporter.errors import ValidationError

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
