"""Exactly one background worker per database: a second one stands by and takes over."""

from __future__ import annotations

import logging

import pytest

from exporter.settings import Settings
from exporter.worker import LEASE, Worker
from storage import heartbeat, leases
from storage.db import Store


def work_jobs(worker: Worker) -> set[str]:
    return {job.id for job in worker.scheduler.get_jobs()} - {"heartbeat"}


def test_second_worker_stands_by_until_the_first_gives_up_the_lease(
    settings: Settings, db: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter.worker")
    first, second = Worker(settings, owner="first"), Worker(settings, owner="second")
    for w in (first, second):
        w.schedule()
    assert work_jobs(first) == work_jobs(second) == set()  # nothing before the lease

    first.heartbeat()
    second.heartbeat()
    assert work_jobs(first) == {"housekeeping"}
    assert work_jobs(second) == set()
    assert "another background worker (first) holds the lease" in caplog.text
    held = leases.holder(db, LEASE)
    assert held is not None and held.owner == "first"
    assert heartbeat.last_beat(db) is not None

    second.heartbeat()  # still held: no second "standing by" line
    assert caplog.text.count("standing by") == 1

    assert leases.release(db, LEASE, "first")  # what a clean stop does
    second.heartbeat()
    assert work_jobs(second) == {"housekeeping"}
    assert "took over the worker lease" in caplog.text

    first.heartbeat()  # the first one finds the lease taken: it stops working
    assert work_jobs(first) == set()
    assert "lost the worker lease to second" in caplog.text


def test_an_expired_lease_is_taken_over(settings: Settings, db: Store) -> None:
    assert leases.acquire(db, LEASE, "crashed", now=0.0, ttl=settings.worker_stale_seconds)
    worker = Worker(settings, owner="new")
    worker.schedule()
    worker.heartbeat()
    assert worker.active and work_jobs(worker) == {"housekeeping"}
