"""The poll job of one source: fetch + parse (the poller modules), then store through storage.

This is the one place that catches Exception for a source: whatever goes wrong is recorded so
`releasebits_source_up` drops to 0, the last good values stay, and the worker keeps running.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
import sqlite_utils

from exporter.config import PollSource
from exporter.errors import PollError
from exporter.pollers import bugsnag, sentry
from storage import release_health
from storage.release_health import HealthRow, Target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollReport:
    """What one poll of one source found, for the log and `releasebits poll --once`."""

    source: str
    kind: str
    ok: bool
    rows: tuple[HealthRow, ...] = ()
    targets: tuple[Target, ...] = ()
    requests: int = 0
    duration_seconds: float = 0.0
    error: str | None = None
    status: int | None = None


@dataclass
class _ErrorMemory:
    """Last error per source, so a bad token logs one warning, not one per poll."""

    last: dict[str, str] = field(default_factory=dict)


_memory = _ErrorMemory()


def sentry_rows(result: sentry.SentryPollResult) -> tuple[list[HealthRow], list[Target]]:
    rows = [
        HealthRow(
            source=result.source,
            project=str(r.project_id),
            environment=r.environment,
            release=r.release,
            total_sessions=r.total_sessions,
            users=r.users,
            crash_free_sessions=r.crash_free_sessions,
            crash_free_users=r.crash_free_users,
            sessions_by_status=dict(r.sessions_by_status),
        )
        for r in result.records
    ]
    return rows, []


def bugsnag_rows(result: bugsnag.BugsnagPollResult) -> tuple[list[HealthRow], list[Target]]:
    rows = [
        HealthRow(
            source=result.source,
            project=r.project_id,
            environment=r.release_stage,
            release=r.app_version,
            total_sessions=r.total_sessions,
            users=r.users_seen,
            crash_free_sessions=r.crash_free_sessions,
            crash_free_users=r.crash_free_users,
            sessions_by_status=r.sessions_by_status,
            released_at=r.released_at,
        )
        for r in result.records
    ]
    targets = [
        Target(
            source=result.source,
            project=t.project_id,
            target_type=t.target_type,
            target_stability=t.target_stability,
            critical_stability=t.critical_stability,
        )
        for t in result.targets
    ]
    return rows, targets


def poll_source(
    db: sqlite_utils.Database,
    source: PollSource,
    session: requests.Session,
    *,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> PollReport:
    """Poll one source and store what it found; never raises for a poll that went wrong."""
    started = monotonic()
    projects: tuple[str, ...] = ()
    try:
        if isinstance(source.config, sentry.SentrySource):
            projects = tuple(str(p) for p in source.config.projects)
            s_result = sentry.poll(session, source.config, sleep=sleep, monotonic=monotonic)
            rows, targets = sentry_rows(s_result)
            requests_made = s_result.requests
        else:
            projects = source.config.project_ids
            b_result = bugsnag.poll(session, source.config, sleep=sleep, monotonic=monotonic)
            rows, targets = bugsnag_rows(b_result)
            requests_made = b_result.requests
    except Exception as exc:  # job boundary: record, keep the last good values, keep running
        duration = monotonic() - started
        status = exc.status if isinstance(exc, PollError) else None
        message = str(exc) if isinstance(exc, PollError) else f"{type(exc).__name__}: {exc}"
        _log_failure(source, exc, message)
        release_health.record_failure(
            db, source.name, message, duration=duration, projects=projects
        )
        return PollReport(
            source.name,
            source.kind,
            ok=False,
            duration_seconds=duration,
            error=message,
            status=status,
        )
    duration = monotonic() - started
    release_health.store_poll(db, source.name, rows, targets, projects=projects, duration=duration)
    if _memory.last.pop(source.name, None) is not None:
        log.info("%s source %r recovered", source.kind, source.name)
    log.info(
        "polled %s source %r: %d releases in %d requests, %.2fs",
        source.kind,
        source.name,
        len(rows),
        requests_made,
        duration,
    )
    return PollReport(
        source.name,
        source.kind,
        ok=True,
        rows=tuple(rows),
        targets=tuple(targets),
        requests=requests_made,
        duration_seconds=duration,
    )


def _log_failure(source: PollSource, exc: Exception, message: str) -> None:
    hint = ""
    if isinstance(exc, PollError) and exc.status in {401, 403}:
        hint = " (check the token in the variable that token_env names, and its scopes)"
    elif isinstance(exc, PollError) and exc.status == 404:
        hint = " (check the organization / project ids)"
    repeated = _memory.last.get(source.name) == message
    _memory.last[source.name] = message
    if repeated:  # the same failure as last time: once at WARNING is enough
        log.debug("%s source %r still failing: %s", source.kind, source.name, message)
    elif isinstance(exc, PollError):
        log.warning("%s source %r poll failed: %s%s", source.kind, source.name, message, hint)
    else:  # a bug or an unforeseen answer: the stack trace helps, once
        log.exception("%s source %r poll failed unexpectedly", source.kind, source.name)
