"""What a badge says: its label, message and colour, read from storage; and the overrides."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from exporter.dora.compute import LONGEST, compute
from exporter.errors import ValidationError
from exporter.metrics.health import (
    DeployedHealth,
    crash_free_target,
    deployed_health,
    stability_targets,
)
from exporter.names import STAGE_RE, normalize_slug
from exporter.settings import Settings
from storage import components, dora, events, release_health, releases
from storage.db import Store

COMPONENT_KINDS = (
    "version",
    "build",
    "crash-free",
    "deployments",
    "last-deploy",
    "lead-time",
    "change-failure-rate",
    "recovery-time",
)
DORA_KINDS = ("lead-time", "change-failure-rate", "recovery-time")
RELEASE_KINDS = ("crash-free", "deployments", "last-deploy")
STYLES = ("flat", "flat-square", "plastic", "for-the-badge")
PERIODS = {"day": 86_400, "week": 7 * 86_400, "month": 30 * 86_400}

# shields.io's named colours (badge-maker/lib/color.js), so `color=` means the same here as there.
NAMED_COLORS = {
    "brightgreen": "#4c1",
    "green": "#97ca00",
    "yellow": "#dfb317",
    "yellowgreen": "#a4a61d",
    "orange": "#fe7d37",
    "red": "#e05d44",
    "blue": "#007ec6",
    "grey": "#555",
    "gray": "#555",
    "lightgrey": "#9f9f9f",
    "lightgray": "#9f9f9f",
    "success": "#4c1",
    "important": "#fe7d37",
    "critical": "#e05d44",
    "informational": "#007ec6",
    "inactive": "#9f9f9f",
}
_HEX_RE = re.compile(r"#?([0-9a-f]{3}|[0-9a-f]{6})")
DEFAULT_LABEL_COLOR = "grey"
MAX_TEXT = 100  # characters of a label or message; versions may be 255 long


@dataclass(frozen=True)
class Badge:
    """What a badge says. `is_error` badges (not found, invalid) keep their grey on overrides."""

    label: str
    message: str
    color: str  # a NAMED_COLORS key or #rrggbb
    is_error: bool = False


@dataclass(frozen=True)
class Look:
    """How a badge is drawn: the shields.io query parameters style, label, color, labelColor."""

    style: str = "flat"
    label: str | None = None
    color: str | None = None
    label_color: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> Look:
        """Read the overrides; an invalid style or colour is ignored, never an error."""
        style = (args.get("style") or "").strip().lower()
        label = args.get("label")
        label = clean_text(label) if label is not None and label.strip() else None
        return cls(
            style=style if style in STYLES else "flat",
            label=label,
            color=parse_color(args.get("color")),
            label_color=parse_color(args.get("labelColor") or args.get("label_color")),
        )


def parse_color(value: str | None) -> str | None:
    """A shields.io colour name (lower case) or #rrggbb hex; None for anything else."""
    if not value:
        return None
    text = value.strip().lower()
    if text in NAMED_COLORS:
        return text
    match = _HEX_RE.fullmatch(text)
    if match is None:
        return None
    digits = match[1]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits


def to_hex(color: str) -> str:
    return NAMED_COLORS.get(color, color)


# Characters XML 1.0 forbids (control characters, lone surrogates, U+FFFE/FFFF): a version
# may contain them (only NUL is rejected at ingest) and they would make the SVG ill-formed.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean_text(text: str, limit: int = MAX_TEXT) -> str:
    """One line of XML-safe text, at most `limit` characters."""
    text = _NOT_XML.sub("\ufffd", text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text


def not_found(label: str) -> Badge:
    return Badge(label, "not found", "lightgrey", is_error=True)


def no_data(label: str) -> Badge:
    return Badge(label, "no data", "lightgrey")


def unknown_kind() -> Badge:
    return Badge("badge", "unknown kind", "lightgrey", is_error=True)


# --- what a badge says ------------------------------------------------------------------------


def format_percent(ratio: float) -> str:
    """99.5%, 99.52%, 100%: rounded down, so 99.996% never shows as a perfect 100%."""
    hundredths = math.floor(round(ratio * 10_000, 6))
    text = f"{hundredths / 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def crash_free_color(ratio: float, target: float) -> str:
    """Green at or above the target; yellow within one more error budget below it; red under."""
    if ratio >= target:
        return "brightgreen"
    if ratio >= target - (1 - target):
        return "yellow"
    return "red"


_AGE_UNITS = (
    (365 * 86_400, "year"),
    (30 * 86_400, "month"),
    (7 * 86_400, "week"),
    (86_400, "day"),
    (3_600, "hour"),
    (60, "minute"),
)


def format_age(seconds: float) -> str:
    """'just now', '1 minute ago', '3 hours ago', '2 weeks ago': the largest whole unit."""
    for size, name in _AGE_UNITS:
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {name}{'' if n == 1 else 's'} ago"
    return "just now"  # under a minute, or slightly in the future (clock skew)


def age_color(seconds: float) -> str:
    """shields.io's scale for "last commit": fresh is bright green, a year old is orange."""
    days = seconds / 86_400
    if days < 7:
        return "brightgreen"
    if days < 30:
        return "green"
    if days < 180:
        return "yellowgreen"
    if days < 365:
        return "yellow"
    return "orange"


# The colour of a result class wherever one is shown (build badges, the status page).
RESULT_COLORS = {
    "success": "brightgreen",
    "failure": "red",
    "error": "orange",
    "cancelled": "lightgrey",
    "other": "lightgrey",
}
_BUILD = {
    "success": "passing",
    "failure": "failing",
    "error": "error",
    "cancelled": "cancelled",
}

_LABELS = {
    "build": "build",
    "crash-free": "crash-free",
    "deployments": "deployments",
    "last-deploy": "last deploy",
    "lead-time": "lead time",
    "change-failure-rate": "change failure rate",
    "recovery-time": "recovery time",
}
_WINDOW_OF_PERIOD = {"day": "1d", "week": "7d", "month": "30d"}


@dataclass(frozen=True)
class Query:
    """What a badge is read with: the store, the settings, the query string (stage, source,
    period, environment) and the time it is asked at."""

    db: Store
    settings: Settings
    args: Mapping[str, str]
    now: float = field(default_factory=time.time)


_YES = {"1", "true", "yes", "on"}


def component_badge(q: Query, raw_slug: str, kind: str) -> Badge:
    """The badge of one component; `?with_component=true` puts its name in the label, so the
    badges of several components in one README tell themselves apart."""
    badge = _component_badge(q, raw_slug, kind)
    if (q.args.get("with_component") or "").strip().lower() in _YES:
        label = clean_text(f"{raw_slug.strip().lower()} {badge.label}")
        badge = Badge(label, badge.message, badge.color, badge.is_error)
    return badge


def _component_badge(q: Query, raw_slug: str, kind: str) -> Badge:
    db, settings, args, now = q.db, q.settings, q.args, q.now
    raw_stage = (args.get("stage") or settings.default_stage).strip().lower()
    label = clean_text(raw_stage, 64) if kind == "version" else _LABELS[kind]
    try:
        slug = normalize_slug(raw_slug)
    except ValidationError:
        return not_found(label)
    if kind == "build":  # builds have no stage
        return _build_badge(db, slug) if components.exists(db, slug) else not_found(label)
    if not STAGE_RE.fullmatch(raw_stage):
        return not_found(label)
    stage = raw_stage
    if kind == "deployments" or kind in DORA_KINDS:
        period = (args.get("period") or ("week" if kind == "deployments" else "month")).strip()
        if period.lower() not in PERIODS:
            return Badge(label, "invalid period", "lightgrey", is_error=True)
        if not components.has_stage(db, slug, stage):
            return not_found(label)
        if kind in DORA_KINDS:
            return _dora_badge(q, slug, stage, kind, period.lower())
        return _deployments_badge(q, slug, stage, period.lower())
    # A stage with deployments implies the component: one query answers both.
    if not components.has_stage(db, slug, stage):
        return not_found(label)
    current = components.current_version(db, slug, stage)
    if current is None:
        return no_data(label)
    if kind == "version":
        return Badge(label, clean_text(str(current["version"])), "blue")
    if kind == "last-deploy":
        age = now - float(current["finished_ts"])
        return Badge(label, format_age(age), age_color(age))
    return _crash_free_badge(db, settings, slug, stage, args.get("source"))


def _deployments_badge(q: Query, slug: str, stage: str, period: str) -> Badge:
    """Rollouts in the period (a version reaching the stage, however many hosts) for a DORA
    stage; distinct versions deployed successfully for other stages."""
    since = q.now - PERIODS[period]
    if stage in q.settings.dora_stages:
        count = dora.rollouts_since(q.db, slug, stage, since)
    else:
        count = components.versions_deployed_since(q.db, slug, stage, since)
    return Badge("deployments", f"{count}/{period}", "blue" if count else "lightgrey")


def format_duration(seconds: float) -> str:
    """'45 minutes', '5.5 hours', '3 days', '2.1 weeks': one unit, at most one decimal."""
    for size, name in ((7 * 86_400, "weeks"), (86_400, "days"), (3_600, "hours")):
        if seconds >= size:
            value = f"{seconds / size:.1f}".removesuffix(".0")
            return f"{value} {name[:-1] if value == '1' else name}"
    minutes = max(round(seconds / 60), 1)
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


# DORA's bands: (upper bound, colour); past the last bound: red.
_LEAD_BANDS = ((86_400, "brightgreen"), (7 * 86_400, "green"), (30 * 86_400, "yellow"))
_RECOVERY_BANDS = ((3_600, "brightgreen"), (86_400, "green"), (7 * 86_400, "yellow"))
_FAILURE_BANDS = ((0.05, "brightgreen"), (0.2, "green"), (0.4, "yellow"))


def _band(value: float, bands: tuple[tuple[float, str], ...]) -> str:
    return next((color for bound, color in bands if value <= bound), "red")


def _dora_badge(q: Query, slug: str, stage: str, kind: str, period: str) -> Badge:
    """Median lead time, change failure rate or median recovery time of the period's window."""
    label = _LABELS[kind]
    if stage not in q.settings.dora_stages:
        return not_found(label)
    since = q.now - LONGEST
    values = compute(
        dora.series(q.db, slug, stage, since), dora.lead_times(q.db, slug, stage, since), q.now
    )
    w = values.windows[_WINDOW_OF_PERIOD[period]]
    if kind == "change-failure-rate":
        if w.change_failure_ratio is None:
            return no_data(label)
        ratio = w.change_failure_ratio
        return Badge(label, f"{round(ratio * 100)}%", _band(ratio, _FAILURE_BANDS))
    quantiles = w.lead_time if kind == "lead-time" else w.recovery_time
    if 0.5 not in quantiles:
        return no_data(label)
    bands = _LEAD_BANDS if kind == "lead-time" else _RECOVERY_BANDS
    return Badge(label, format_duration(quantiles[0.5]), _band(quantiles[0.5], bands))


def _build_badge(db: Store, slug: str) -> Badge:
    last = components.last_build(db, slug)
    if last is None:
        return no_data("build")
    known = _BUILD.get(last["result_class"])
    if known is not None:
        return Badge("build", known, RESULT_COLORS[last["result_class"]])
    return Badge("build", clean_text(str(last["result"] or "unknown").lower(), 32), "lightgrey")


def _crash_free_badge(
    db: Store, settings: Settings, slug: str, stage: str, source: str | None
) -> Badge:
    health = deployed_health(db, settings, slug, stage)
    if source:
        health = [h for h in health if h.source == source.strip().lower()]
        if not health:
            return not_found("crash-free")
    return deployed_crash_free(health)


def deployed_crash_free(health: Sequence[DeployedHealth]) -> Badge:
    """Crash-free sessions of a deployed version. Several sources: the worse one speaks (its
    colour against its own target, then the lower rate), so a green Bugsnag cannot hide a
    yellow Sentry; `?source=` picks one instead."""
    verdicts = [
        (_SEVERITY[color], ratio, color)
        for h in health
        if (ratio := h.crash_free_sessions) is not None
        for color in [crash_free_color(ratio, h.target)]
    ]
    if not verdicts:
        return no_data("crash-free")
    _, ratio, color = max(verdicts, key=lambda v: (v[0], -v[1]))
    return Badge("crash-free", format_percent(ratio), color)


_SEVERITY = {"brightgreen": 0, "yellow": 1, "red": 2}


def release_badge(q: Query, name: str, kind: str) -> Badge:
    """A release's badge. crash-free looks the name up among polled release-health releases
    (e.g. checkout@1.4.0); deployments and last-deploy among ReleaseBits releases."""
    db, settings, args, now = q.db, q.settings, q.args, q.now
    label = _LABELS[kind]
    if kind == "crash-free":
        return _release_crash_free(db, settings, name, args)
    found = releases.get_release(db, name)
    if found is None:
        return not_found(label)
    if kind == "deployments":
        count = int(found["deployments_count"])
        return Badge(label, str(count), "blue" if count else "lightgrey")
    newest, _ = events.list_events(db, "deployment", release_id=found["id"], limit=1)
    if not newest:
        return no_data(label)
    finished = datetime.fromisoformat(str(newest[0]["finished_at"]).replace("Z", "+00:00"))
    age = now - finished.timestamp()
    return Badge(label, format_age(age), age_color(age))


def _release_crash_free(db: Store, settings: Settings, name: str, args: Mapping[str, str]) -> Badge:
    label = "crash-free"
    rows = release_health.rows_for_release(db, name)
    if not rows:
        return not_found(label)
    source = (args.get("source") or "").strip().lower()
    environment = (args.get("environment") or "").strip()
    if source:
        rows = [r for r in rows if r["source"] == source]
    if environment:
        rows = [r for r in rows if r["environment"] == environment]
    elif any(r["environment"] == settings.default_stage for r in rows):
        rows = [r for r in rows if r["environment"] == settings.default_stage]
    if not rows:
        return not_found(label)
    rows = [r for r in rows if r["crash_free_sessions"] is not None]
    if not rows:
        return no_data(label)
    # Several projects or environments report the release: show the busiest one.
    row = max(rows, key=lambda r: (r["total_sessions"] or 0, r["source"], r["environment"]))
    target = stability_targets(db).get((row["source"], row["project"]))
    ratio = float(row["crash_free_sessions"])
    return Badge(
        label, format_percent(ratio), crash_free_color(ratio, crash_free_target(target, settings))
    )


# --- with the overrides applied ----------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """A badge with the overrides applied: everything the renderers need, all hashable."""

    label: str
    message: str
    color: str
    label_color: str
    style: str


def resolve(badge: Badge, look: Look) -> Resolved:
    color = badge.color if badge.is_error or look.color is None else look.color
    return Resolved(
        label=look.label if look.label is not None else badge.label,
        message=badge.message,
        color=color,
        label_color=look.label_color or DEFAULT_LABEL_COLOR,
        style=look.style,
    )


SHIELDS_MIN_CACHE_SECONDS = 300


def endpoint_json(r: Resolved, *, is_error: bool, cache_seconds: int) -> dict[str, Any]:
    """The shields.io endpoint schema (https://shields.io/badges/endpoint-badge)."""
    out: dict[str, Any] = {
        "schemaVersion": 1,
        "label": r.label,
        "message": r.message,
        "color": r.color,
        "labelColor": r.label_color,
        "isError": is_error,
        "style": r.style,
        # shields.io ignores cacheSeconds below its 300 s floor; say what will really happen.
        "cacheSeconds": max(cache_seconds, SHIELDS_MIN_CACHE_SECONDS),
    }
    return out
