"""The one background worker: heartbeat, housekeeping, the pollers and outbox delivery, each an
APScheduler 3 job of one `Worker`, which owns everything they share (no module-level state).

Exactly one worker per database does the work, however many daemons share it (a file, or one
PostgreSQL database behind several replicas): the `worker` lease (storage/leases.py), renewed
with each heartbeat. A second daemon's worker stands by, retrying the lease every heartbeat,
and takes over when the holder stops (it gives the lease up) or dies (the lease expires: 3
heartbeats + 5 s after its last renewal, so a standby takes over within 4 heartbeats + 5 s).

A worker that cannot renew (its database unreachable, the process paused) stops sending
outbox deliveries one heartbeat before its lease can expire, by its own monotonic clock: by
the time a standby takes over and makes the claimed deliveries due again, the old holder has
stopped starting new ones (one already in flight may still arrive; the webhook-id is the
same, deliveries are at least once)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from datetime import UTC, datetime
from typing import Any

import requests
from apscheduler.schedulers.blocking import BlockingScheduler

from exporter.dora.budget import after_poll
from exporter.forwarding.deliverer import Deliverer
from exporter.http import make_session
from exporter.pollers.jobs import ErrorMemory, poll_source
from exporter.pollers.sources import PollSource
from exporter.settings import Settings
from storage import feeds, heartbeat, idempotency, leases, outbox
from storage.db import Store, describe

log = logging.getLogger(__name__)

LEASE = leases.WORKER
WORK_JOBS = ("housekeeping", "outbox")  # plus one "poll:<source>" per source


class Worker:
    """The scheduler and what its jobs share: one HTTP session per source (jobs of a source
    never overlap), the poll error memory, and the outbox deliverer."""

    def __init__(self, settings: Settings, owner: str | None = None):
        self.settings = settings
        self.instance = settings.instance or f"{socket.gethostname()}:{os.getpid()}"
        self.owner = owner or leases.owner_for(self.instance)
        self.active = False  # holds the lease and runs the work jobs
        self.lease_deadline = 0.0  # time.monotonic() at which the lease may have expired
        self.standby_logged = False
        self.sessions: dict[str, requests.Session] = {}
        self.memory = ErrorMemory()
        self.deliverer = (
            Deliverer(settings, may_send=self.may_act) if settings.forward_targets else None
        )
        self.scheduler = BlockingScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )

    def store(self) -> Store:
        return self.settings.store()

    def may_act(self) -> bool:
        """Whether this worker still surely holds the lease: renewed, and more than a heartbeat
        left before it could expire (a standby may take it over from then on)."""
        margin = self.settings.worker_heartbeat_seconds
        return self.active and time.monotonic() < self.lease_deadline - margin

    # --- jobs: each is a job boundary (logs, keeps the scheduler alive) ---------------------

    def heartbeat(self) -> None:
        """Renew (or try to take) the lease; beat while holding it; start or stop the work."""
        ttl = self.settings.worker_stale_seconds
        try:
            db = self.store()
            asked = time.monotonic()  # the lease runs from before the renewal was sent
            held = leases.acquire(db, LEASE, self.owner, now=time.time(), ttl=ttl)
            if held:
                self.lease_deadline = asked + ttl
                heartbeat.beat(db, self.instance)
            holder = None if held else leases.holder(db, LEASE)
        except Exception:
            log.exception("heartbeat failed")
            return
        if held and not self.active:
            self.start_work()
        elif not held and self.active:
            log.warning("lost the worker lease to %s; standing by", holder and holder.instance)
            self.stop_work()
        elif not held and not self.standby_logged:
            self.standby_logged = True
            log.info(
                "another background worker (%s) holds the lease on %s; standing by to take "
                "over when it stops",
                holder and holder.instance,
                describe(self.settings.db),
            )

    def housekeeping(self) -> None:
        s = self.settings
        try:
            db = self.store()
            removed = idempotency.expire(db, s.idempotency_ttl_hours * 3600)
            if removed:
                log.info("expired %d idempotency keys", removed)
            forgotten = feeds.expire_deliveries(db, time.time() - feeds.KEEP_DELIVERIES_SECONDS)
            if forgotten:
                log.info("forgot %d webhook delivery ids older than a week", forgotten)
            pruned = outbox.prune_delivered(db, time.time() - s.forward_keep_days * 86400)
            if pruned:
                log.info(
                    "removed %d delivered outbox rows older than %d days",
                    pruned,
                    s.forward_keep_days,
                )
        except Exception:
            log.exception("housekeeping failed")

    def poll(self, name: str) -> None:
        """One source's scheduled poll; poll_source records any failure as source_up=0."""
        source = self.settings.source(name)
        if not isinstance(source, PollSource):
            return
        session = self.sessions.get(name)
        if session is None:
            session = self.sessions[name] = make_session()
        try:
            report = poll_source(self.store(), source, session, memory=self.memory)
            after_poll(self.store(), self.settings, report, time.time())
        except Exception:  # storage failed while recording
            log.exception("poll of source %r could not be recorded", name)

    def deliver(self) -> None:
        """Deliver what is due; rows stay in the outbox whatever goes wrong."""
        if self.deliverer is None:
            return
        try:
            self.deliverer.dispatch(self.store())
        except Exception:
            log.exception("outbox delivery run failed")

    # --- schedule ---------------------------------------------------------------------------

    def schedule(self) -> None:
        """The heartbeat only: it starts the work once this worker holds the lease."""
        self.scheduler.add_job(
            self.heartbeat,
            "interval",
            seconds=self.settings.worker_heartbeat_seconds,
            id="heartbeat",
            replace_existing=True,
            next_run_time=datetime.now(UTC),
        )

    def stop_work(self) -> None:
        self.active = False
        self.standby_logged = True
        if self.deliverer is not None:  # on a new lease, in-flight rows are released again
            self.deliverer.started = False
        for job in self.scheduler.get_jobs():
            if job.id in WORK_JOBS or job.id.startswith("poll:"):
                job.remove()

    def start_work(self) -> None:
        """Housekeeping, the pollers and the outbox, from now on (this worker holds the lease)."""
        if self.standby_logged:
            log.info("took over the worker lease on %s", describe(self.settings.db))
        self.active = True
        now = datetime.now(UTC)
        every = self.scheduler.add_job
        s = self.settings
        every(
            self.housekeeping,
            "interval",
            hours=1,
            id="housekeeping",
            replace_existing=True,
            next_run_time=now,
        )
        for source in s.sources:
            every(
                self.poll,
                "interval",
                seconds=source.interval_seconds,
                args=[source.name],
                id=f"poll:{source.name}",
                name=f"poll {source.kind} source {source.name}",
                replace_existing=True,
                next_run_time=now,
                misfire_grace_time=max(60, source.interval_seconds),
            )
            log.info(
                "polling %s source %r every %ds", source.kind, source.name, source.interval_seconds
            )
        if self.deliverer is not None:
            # Starts each idle target's loop (it runs while deliveries are due, bounded) every
            # second: a new event waits ~1 s, and a hanging target holds up only itself.
            every(
                self.deliver,
                "interval",
                seconds=1,
                id="outbox",
                name="deliver the forwarding outbox",
                replace_existing=True,
                next_run_time=now,
            )
            targets = ", ".join(f"{t.kind} target {t.name!r}" for t in s.forward_targets)
            log.info("forwarding to %s", targets)

    def run(self) -> int:
        """Run until SIGTERM or SIGINT; returns the exit status."""
        self.schedule()

        def _stop(signum: int, _frame: Any) -> None:
            log.info("worker stopping (signal %d)", signum)
            self.scheduler.shutdown(wait=False)

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        log.info(
            "background worker started (instance %s, db %s)",
            self.instance,
            describe(self.settings.db),
        )
        self.scheduler.start()
        if self.deliverer is not None:
            self.deliverer.close()
        if self.active:
            try:  # a standby takes over at its next heartbeat, not after the lease expires
                leases.release(self.store(), LEASE, self.owner)
            except Exception:
                log.exception("could not give up the worker lease (it expires by itself)")
        log.info("background worker stopped")
        return 0


def run_worker(settings: Settings) -> int:
    return Worker(settings).run()
