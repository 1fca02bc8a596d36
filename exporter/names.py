"""The names users give things: component slugs, stages and result classes.

Declared once here and used by ingest, the settings, badges, metrics and the OpenAPI document.
"""

from __future__ import annotations

import functools
import re

from exporter.errors import ValidationError

SLUG_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
# What a slug may look like as sent (in a path): the stored form plus capitals, spaces and
# underscores, which normalize_slug turns into it. The OpenAPI document publishes this pattern.
SLUG_INPUT_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9._ -]{0,62}[A-Za-z0-9])?$"
SLUG_INPUT_RE = re.compile(SLUG_INPUT_PATTERN)
SLUG_RULE = (
    "component slug must be 1-64 characters of a-z, 0-9, '.', '-' starting and ending with a "
    "letter or digit (capitals, spaces and '_' are accepted and normalised)"
)
STAGE_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
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


_SEPARATORS = re.compile(r"[\s_]+")


@functools.lru_cache(maxsize=4096)  # every ingest request normalises its slug (twice)
def normalize_slug(raw: str) -> str:
    """Lower-case a component slug and turn spaces/underscores into dashes, or raise."""
    slug = _SEPARATORS.sub("-", raw.strip().lower())
    if not SLUG_RE.fullmatch(slug):
        raise ValidationError({"slug": SLUG_RULE}, f"invalid component slug {raw[:80]!r}")
    return slug


# A ref names a tag when it says so (refs/tags/...), or when it reads like a version (v1.2.3,
# 2024.05.1): GitHub's deployment `ref` and a workflow run's `head_branch` do not say which.
_TAG_REF = re.compile(r"refs/tags/(.+)")
_VERSION_LIKE = re.compile(r"v?\d+(?:\.\d+)+(?:[-+][0-9A-Za-z.+-]+)?")
SHORT_SHA = 12


def tag_of(ref: str | None) -> str | None:
    """The tag a ref names, or None for a branch or a commit."""
    if not ref:
        return None
    match = _TAG_REF.fullmatch(ref)
    if match:
        return match[1]
    return ref if _VERSION_LIKE.fullmatch(ref) else None


def version_of(version: str | None, tag: str | None, sha: str | None) -> str | None:
    """The version an event reports: the sender's own version, else the tag, else the first 12
    characters of the commit SHA; None when there is none of these."""
    for candidate in (version, tag):
        if candidate and candidate.strip():
            return candidate.strip()
    return sha.strip()[:SHORT_SHA] if sha and sha.strip() else None
