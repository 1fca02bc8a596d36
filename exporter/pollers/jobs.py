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

from exporter.errors import PollError
from exporter.pollers.sources import PollSource
from storage import release_health
from storage.db import Store
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
class ErrorMemory:
    """Last error per source, so a bad token logs one warning, not one per poll."""

    last: dict[str, str] = field(default_factory=dict)


def poll_source(
    store: Store,
    source: PollSource,
    session: requests.Session,
    *,
    memory: ErrorMemory | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> PollReport:
    """Poll one source and store what it found (the worker's job); never raises for a poll that
    went wrong, only when storage fails."""
    report = check_source(source, session, memory=memory, sleep=sleep, monotonic=monotonic)
    record(store, source, report)
    return report


def check_source(
    source: PollSource,
    session: requests.Session,
    *,
    memory: ErrorMemory | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> PollReport:
    """Poll one source and report what it found, writing nothing (`releasebits poll` is a dry
    check: it must not change what /metrics says)."""
    memory = memory if memory is not None else ErrorMemory()
    started = monotonic()
    try:
        polled = source.poll(session, sleep=sleep, monotonic=monotonic)
    except Exception as exc:  # job boundary: report, keep the last good values, keep running
        duration = monotonic() - started
        status = exc.status if isinstance(exc, PollError) else None
        message = str(exc) if isinstance(exc, PollError) else f"{type(exc).__name__}: {exc}"
        _log_failure(memory, source, exc, message)
        return PollReport(
            source.name,
            source.kind,
            ok=False,
            duration_seconds=duration,
            error=message,
            status=status,
        )
    duration = monotonic() - started
    rows, targets = polled.rows(), polled.target_rows()
    if memory.last.pop(source.name, None) is not None:
        log.info("%s source %r recovered", source.kind, source.name)
    log.info(
        "polled %s source %r: %d releases in %d requests, %.2fs",
        source.kind,
        source.name,
        len(rows),
        polled.requests,
        duration,
    )
    return PollReport(
        source.name,
        source.kind,
        ok=True,
        rows=rows,
        targets=targets,
        requests=polled.requests,
        duration_seconds=duration,
    )


def record(store: Store, source: PollSource, report: PollReport) -> None:
    """Store a poll: its rows replace the source's, or, when it failed, the last good values
    stay and `source_up` drops to 0."""
    if report.ok:
        release_health.store_poll(
            store,
            source.name,
            report.rows,
            report.targets,
            projects=source.projects,
            duration=report.duration_seconds,
        )
    else:
        release_health.record_failure(
            store,
            source.name,
            report.error or "poll failed",
            duration=report.duration_seconds,
            projects=source.projects,
        )


def _log_failure(memory: ErrorMemory, source: PollSource, exc: Exception, message: str) -> None:
    hint = ""
    if isinstance(exc, PollError) and exc.status in {401, 403}:
        hint = " (check the token in the variable that token_env names, and its scopes)"
    elif isinstance(exc, PollError) and exc.status == 404:
        hint = " (check the organization / project ids)"
    repeated = memory.last.get(source.name) == message
    memory.last[source.name] = message
    if repeated:  # the same failure as last time: once at WARNING is enough
        log.debug("%s source %r still failing: %s", source.kind, source.name, message)
    elif isinstance(exc, PollError):
        log.warning("%s source %r poll failed: %s%s", source.kind, source.name, message, hint)
    else:  # a bug or an unforeseen answer: the stack trace helps, once
        log.exception("%s source %r poll failed unexpectedly", source.kind, source.name)
