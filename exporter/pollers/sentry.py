"""Sentry release health: fetch the organization sessions API, parse it into per-release records."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests

from exporter.errors import ConfigError, PollError
from exporter.http import sentry_api_root
from exporter.pollers.client import Clock, JsonClient, Params, PollResult, Sleep
from exporter.settings import Table, parse_duration
from storage.release_health import HealthRow

log = logging.getLogger(__name__)

SESSIONS_PATH = "/api/0/organizations/{organization}/sessions/"
GROUP_BY: tuple[str, ...] = ("project", "release", "environment")
# Rates cannot be grouped by session.status (400 "Cannot group field X by session.status"),
# hence two queries: rates and user counts per release, then session counts per status.
TOTALS_FIELDS: tuple[str, ...] = (
    "sum(session)",
    "count_unique(user)",
    "crash_free_rate(session)",
    "crash_free_rate(user)",
)
STATUS_FIELDS: tuple[str, ...] = ("sum(session)",)
MAX_PAGES = 50  # a guard against a cursor that never ends
# Sentry answers at most this many data points (groups x time buckets): without per_page it
# silently returns floor(10000 / buckets) groups with a next link saying results="false"
# (getsentry/sentry#48692), and a per_page whose points exceed it is a 400 ("too granular").
MAX_POINTS = 10_000
DAILY_FROM_SECONDS = 2 * 86400  # windows of 2 days or more use daily buckets
ORG_TOKEN_PREFIX = "sntrys_"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True, kw_only=True)
class SentrySource:
    """One configured Sentry organization to poll (host only in base_url, e.g. de.sentry.io)."""

    name: str
    organization: str
    token: str = field(repr=False)
    base_url: str = "https://sentry.io"
    projects: tuple[int, ...] = ()  # numeric ids; empty means all the token can see (-1)
    environments: tuple[str, ...] = ()  # empty means every environment
    window: str = "24h"  # statsPeriod
    interval: str = "1h"  # must divide one day; the API floors the window start to it

    @property
    def per_page(self) -> int:
        """Groups per page: as many as Sentry's data-point limit allows for this window, with
        one bucket to spare for the window's start being floored to the interval."""
        buckets = math.ceil(
            parse_duration("window", self.window) / parse_duration("interval", self.interval)
        )
        return max(1, MAX_POINTS // (buckets + 1) - 1)

    @property
    def sessions_url(self) -> str:
        return sentry_api_root(self.base_url) + SESSIONS_PATH.format(
            organization=quote(self.organization, safe="")
        )


@dataclass(frozen=True)
class SentryReleaseHealth:
    """Session health of one release of one project in one environment over the window."""

    project_id: int
    release: str
    environment: str  # "" when Sentry reports none
    total_sessions: int
    users: int
    crash_free_sessions: float | None  # 0..1; None when undefined (no sessions), never 0
    crash_free_users: float | None
    sessions_by_status: dict[str, int] = field(default_factory=dict)
    buckets: tuple[tuple[float, float, int, int], ...] = ()  # completed: start, end, all, crashed

    def row(self, source: str) -> HealthRow:
        return HealthRow(
            source=source,
            project=str(self.project_id),
            environment=self.environment,
            release=self.release,
            total_sessions=self.total_sessions,
            users=self.users,
            crash_free_sessions=self.crash_free_sessions,
            crash_free_users=self.crash_free_users,
            sessions_by_status=dict(self.sessions_by_status),
            buckets=self.buckets,
        )


@dataclass(frozen=True)
class SentrySessionsPayloads:
    """The two raw answers, each with every page's groups concatenated."""

    totals: dict[str, Any]
    by_status: dict[str, Any]
    requests: int


def query_params(source: SentrySource, *, by_status: bool) -> list[tuple[str, str]]:
    """The documented query of one of the two requests (without the pagination cursor)."""
    fields = STATUS_FIELDS if by_status else TOTALS_FIELDS
    group_by = (*GROUP_BY, "session.status") if by_status else GROUP_BY
    return [
        *(("field", f) for f in fields),
        *(("groupBy", g) for g in group_by),
        *(("project", str(p)) for p in source.projects or (-1,)),
        *(("environment", e) for e in source.environments),
        ("statsPeriod", source.window),
        ("interval", source.interval),
        # The per-status counts come per bucket too: the error-budget counters add each
        # completed bucket once.
        ("includeSeries", "1" if by_status else "0"),
        ("per_page", str(source.per_page)),
    ]


def fetch_sessions(
    session: requests.Session,
    source: SentrySource,
    *,
    sleep: Sleep = time.sleep,
    now: Clock = time.time,
) -> SentrySessionsPayloads:
    """Run the totals query and the per-status query, following every page of each."""
    client = JsonClient(
        session=session,
        service="Sentry",
        headers={"Authorization": f"Bearer {source.token}", "Accept": "application/json"},
        secret=source.token,
        rate_limit_wait=_reset_wait(now),
        sleep=sleep,
        auth_hint="; check that it is valid and has the org:read scope",
        forbidden_hint=(
            ": organization auth tokens (sntrys_...) cannot read session data; use a personal "
            "or internal-integration token with the org:read scope"
            if source.token.startswith(ORG_TOKEN_PREFIX)
            else None
        ),
    )
    url = source.sessions_url
    not_found = f"unknown organization {source.organization!r} at {source.base_url}"
    totals = _fetch_all(client, url, query_params(source, by_status=False), not_found)
    by_status = _fetch_all(client, url, query_params(source, by_status=True), not_found)
    return SentrySessionsPayloads(totals=totals, by_status=by_status, requests=client.request_count)


def parse_buckets(
    status_payload: Any, interval_seconds: float, now: float
) -> dict[tuple[int, str, str], tuple[tuple[float, float, int, int], ...]]:
    """Completed buckets per (project, release, environment) of the per-status answer: (start,
    end, sessions, crashed). The last bucket is still filling (the API extends `end` over it),
    so a bucket counts only once it ended before `now`."""
    if not isinstance(status_payload, dict) or not isinstance(
        status_payload.get("intervals"), list
    ):
        return {}
    starts = [_interval_start(v) for v in status_payload["intervals"]]
    sums: dict[tuple[int, str, str], list[list[int]]] = {}
    for group in status_payload.get("groups") or []:
        by = group.get("by") if isinstance(group, dict) else None
        series = group.get("series") if isinstance(group, dict) else None
        key = _key(by) if isinstance(by, dict) else None
        counts = series.get("sum(session)") if isinstance(series, dict) else None
        if key is None or not isinstance(counts, list) or len(counts) != len(starts):
            continue
        crashed = isinstance(by, dict) and by.get("session.status") == "crashed"
        acc = sums.setdefault(key, [[0, 0] for _ in starts])
        for i, n in enumerate(counts):
            value = int(n) if isinstance(n, int | float) and not isinstance(n, bool) else 0
            acc[i][0] += value
            acc[i][1] += value if crashed else 0
    return {
        key: tuple(
            (start, start + interval_seconds, total, crash)
            for start, (total, crash) in zip(starts, acc, strict=True)
            if start is not None and start + interval_seconds <= now
        )
        for key, acc in sums.items()
    }


def _interval_start(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_sessions(
    totals_payload: Any,
    status_payload: Any | None = None,
    buckets: Mapping[tuple[int, str, str], tuple[tuple[float, float, int, int], ...]] | None = None,
) -> list[SentryReleaseHealth]:
    """Records per (project, release, environment) from the two answers; pure.

    Groups without a project or release (the no-data `{"by": {}}` group, an ungrouped answer)
    describe no release and are skipped. Raises PollError on a shape the API does not document.
    """
    by_status: dict[tuple[int, str, str], dict[str, int]] = {}
    for by, totals in _groups(status_payload) if status_payload is not None else ():
        key = _key(by)
        status = by.get("session.status")
        if key is None or not isinstance(status, str):
            continue
        counts = by_status.setdefault(key, {})
        counts[status] = counts.get(status, 0) + _count(totals, "sum(session)")

    records: dict[tuple[int, str, str], SentryReleaseHealth] = {}
    for by, totals in _groups(totals_payload):
        key = _key(by)
        if key is None:
            continue
        if key in records:  # offset pages can overlap when groups shift between requests
            log.debug("duplicate Sentry group %s ignored", key)
            continue
        project_id, release, environment = key
        records[key] = SentryReleaseHealth(
            project_id=project_id,
            release=release,
            environment=environment,
            total_sessions=_count(totals, "sum(session)"),
            users=_count(totals, "count_unique(user)"),
            crash_free_sessions=_rate(totals, "crash_free_rate(session)"),
            crash_free_users=_rate(totals, "crash_free_rate(user)"),
            sessions_by_status=by_status.get(key, {}),
            buckets=(buckets or {}).get(key, ()),
        )
    return [records[k] for k in sorted(records)]


def poll(
    session: requests.Session,
    source: SentrySource,
    *,
    sleep: Sleep = time.sleep,
    now: Clock = time.time,
    monotonic: Clock = time.monotonic,
) -> PollResult[SentryReleaseHealth, Any]:
    """Fetch and parse one source; raises PollError, which the job records as source_up=0."""
    started = monotonic()
    payloads = fetch_sessions(session, source, sleep=sleep, now=now)
    interval = parse_duration("interval", source.interval)
    buckets = parse_buckets(payloads.by_status, interval, now())
    records = parse_sessions(payloads.totals, payloads.by_status, buckets)
    return PollResult(
        source=source.name,
        records=tuple(records),
        projects=tuple(str(p) for p in source.projects),
        requests=payloads.requests,
        duration_seconds=monotonic() - started,
    )


def _reset_wait(now: Clock) -> Callable[[requests.Response], float | None]:
    # Sentry sets no Retry-After on 429; X-Sentry-Rate-Limit-Reset is the window's end, in epoch
    # seconds (UTC).
    def wait(response: requests.Response) -> float | None:
        try:
            reset = float(response.headers.get("X-Sentry-Rate-Limit-Reset", ""))
        except ValueError:
            return None
        return reset - now() if math.isfinite(reset) else None

    return wait


def _fetch_all(client: JsonClient, url: str, params: Params, not_found: str) -> dict[str, Any]:
    first: dict[str, Any] | None = None
    groups: list[Any] = []
    cursors: set[str] = set()
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        response = client.get(
            url, [*params, ("cursor", cursor)] if cursor else params, not_found=not_found
        )
        payload = client.decode(response)
        if not isinstance(payload, dict) or not isinstance(payload.get("groups"), list):
            raise client.shape_error("expected an object with a `groups` list", response)
        first = first if first is not None else payload
        groups.extend(payload["groups"])
        # Both links are always present; the next one says results="false" on the last page.
        next_link = response.links.get("next", {})
        if next_link.get("results") != "true":
            break
        cursor = next_link.get("cursor")
        if not cursor or cursor in cursors:
            raise client.shape_error(f"next page cursor {cursor!r} missing or repeated", response)
        cursors.add(cursor)
    else:
        log.warning("Sentry sessions answer truncated after %d pages", MAX_PAGES)
    return {**(first or {}), "groups": groups}


def _groups(payload: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    if not isinstance(payload, dict) or not isinstance(payload.get("groups"), list):
        raise PollError("Sentry sessions answer is not an object with a `groups` list")
    out = []
    for group in payload["groups"]:
        by = group.get("by") if isinstance(group, dict) else None
        totals = group.get("totals") if isinstance(group, dict) else None
        if not isinstance(by, dict) or not isinstance(totals, dict):
            raise PollError(f"Sentry sessions group without `by`/`totals` objects: {group!r:.200}")
        out.append((by, totals))
    return out


def _key(by: dict[str, Any]) -> tuple[int, str, str] | None:
    project, release, environment = by.get("project"), by.get("release"), by.get("environment")
    if isinstance(project, str) and project.isdigit():
        project = int(project)
    if not isinstance(project, int) or isinstance(project, bool):
        return None
    if not isinstance(release, str) or not release:
        return None
    return project, release, environment if isinstance(environment, str) else ""


def _count(totals: dict[str, Any], name: str) -> int:
    value = totals.get(name)
    if value is None:  # counts default to 0
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PollError(f"Sentry {name} is not a number: {value!r}")
    return int(value)


def _rate(totals: dict[str, Any], name: str) -> float | None:
    value = totals.get(name)
    if value is None:  # undefined, e.g. no sessions: no data, not 0
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PollError(f"Sentry {name} is not a number: {value!r}")
    if not math.isfinite(value):
        return None
    if not 0.0 <= value <= 1.0:  # a ratio; a percentage here would mean the API changed
        raise PollError(f"Sentry {name} = {value!r} is outside 0..1")
    return float(value)


TABLE_KEYS = (
    "name",
    "base_url",
    "organization",
    "token_env",
    "projects",
    "environments",
    "poll_interval",
    "window",
)
_STATS_PERIOD_RE = re.compile(r"[1-9]\d*[mhdw]")


def from_table(t: Table, name: str, environ: Mapping[str, str]) -> SentrySource:
    """A [[sentry]] table; every error names the setting."""
    projects = t.texts("projects")
    bad = [p for p in projects if not p.isdigit()]
    if bad:
        raise ConfigError(f"{t.name('projects')}: Sentry project ids are numbers, got {bad[0]!r}")
    window = t.text("window", "24h").lower()
    if not _STATS_PERIOD_RE.fullmatch(window):
        raise ConfigError(
            f"{t.name('window')}: expected a period such as 24h or 14d, got {window!r}"
        )
    # Fewer buckets leave room for more groups per page (MAX_POINTS / buckets) and Sentry
    # refuses more than 1000 buckets; includeSeries=0 makes the bucket size otherwise
    # irrelevant, so windows of 2 days or more use daily buckets.
    window_seconds = parse_duration(t.name("window"), window)
    if window_seconds > 999 * 86400:
        raise ConfigError(f"{t.name('window')}: at most 999d, got {window!r}")
    return SentrySource(
        name=name,
        organization=t.text("organization"),
        token=t.secret("token_env", environ),
        base_url=t.url("base_url", "https://sentry.io"),
        projects=tuple(int(p) for p in projects),
        environments=t.texts("environments"),
        window=window,
        interval="1h" if window_seconds < DAILY_FROM_SECONDS else "1d",
    )
