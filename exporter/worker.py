"""The one background worker: an APScheduler 3 scheduler for heartbeat, housekeeping and
(later) the pollers and outbox delivery."""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import UTC, datetime
from typing import Any

import requests
from apscheduler.schedulers.blocking import BlockingScheduler

from exporter.config import Settings
from exporter.forwarders.outbox import deliver_job
from exporter.http import make_session
from exporter.pollers.jobs import poll_source
from storage import outbox
from storage import worker as worker_state
from storage.db import thread_db

log = logging.getLogger(__name__)


def heartbeat_job(settings: Settings) -> None:
    try:
        worker_state.heartbeat(
            thread_db(settings.db, synchronous=settings.sqlite_synchronous), os.getpid()
        )
    except Exception:  # job boundary: log, keep the scheduler alive
        log.exception("heartbeat failed")


def housekeeping_job(settings: Settings) -> None:
    try:
        db = thread_db(settings.db, synchronous=settings.sqlite_synchronous)
        removed = worker_state.expire_idempotency_keys(db, settings.idempotency_ttl_hours * 3600)
        if removed:
            log.info("expired %d idempotency keys", removed)
        pruned = outbox.prune_delivered(db, time.time() - settings.forward_keep_days * 86400)
        if pruned:
            log.info("removed %d delivered outbox rows older than %d days", pruned,
                     settings.forward_keep_days)  # fmt: skip
    except Exception:  # job boundary
        log.exception("housekeeping failed")


def poll_job(settings: Settings, name: str) -> None:
    """One source's scheduled poll; poll_source records any failure as source_up=0."""
    source = settings.source(name)
    if source is None:
        return
    session = _sessions.get(name)
    if session is None:
        session = _sessions[name] = make_session()
    try:
        poll_source(
            thread_db(settings.db, synchronous=settings.sqlite_synchronous), source, session
        )
    except Exception:  # storage failed while recording: log, keep the scheduler alive
        log.exception("poll of source %r could not be recorded", name)


_sessions: dict[str, requests.Session] = {}  # one per source: jobs of a source never overlap


def build_scheduler(settings: Settings) -> BlockingScheduler:
    scheduler = BlockingScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
    )
    now = datetime.now(UTC)
    scheduler.add_job(
        heartbeat_job,
        "interval",
        seconds=settings.worker_heartbeat_seconds,
        args=[settings],
        id="heartbeat",
        replace_existing=True,
        next_run_time=now,
    )
    scheduler.add_job(
        housekeeping_job,
        "interval",
        hours=1,
        args=[settings],
        id="housekeeping",
        replace_existing=True,
        next_run_time=now,
    )
    for source in settings.sources:
        scheduler.add_job(
            poll_job,
            "interval",
            seconds=source.interval_seconds,
            args=[settings, source.name],
            id=f"poll:{source.name}",
            name=f"poll {source.kind} source {source.name}",
            replace_existing=True,
            next_run_time=now,
            misfire_grace_time=max(60, source.interval_seconds),
        )
        log.info(
            "polling %s source %r every %ds", source.kind, source.name, source.interval_seconds
        )
    if settings.forward_targets:
        # Runs while deliveries are due (bounded), then every second: a new event waits ~1 s.
        scheduler.add_job(
            deliver_job,
            "interval",
            seconds=1,
            args=[settings],
            id="outbox",
            name="deliver the forwarding outbox",
            replace_existing=True,
            next_run_time=now,
            max_instances=1,
            coalesce=True,
        )
        log.info(
            "forwarding to %s",
            ", ".join(f"{t.kind} target {t.name!r}" for t in settings.forward_targets),
        )
    return scheduler


def run_worker(settings: Settings) -> int:
    scheduler = build_scheduler(settings)

    def _stop(signum: int, _frame: Any) -> None:
        log.info("worker stopping (signal %d)", signum)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("background worker started (pid %d)", os.getpid())
    scheduler.start()
    log.info("background worker stopped")
    return 0
