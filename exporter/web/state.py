"""What a request handler reaches through the app: settings, the forwarding router, the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from flask import current_app, g
from prometheus_client import CollectorRegistry

from exporter.logsafe import Throttle
from exporter.settings import Settings
from storage.db import Store, thread_store
from storage.outbox import Router
from storage.tokens import VerifiedTokens


@dataclass
class AppState:
    """Shared objects of one app, kept in app.extensions["releasebits"]."""

    settings: Settings
    registry: CollectorRegistry
    router: Router | None  # which forwarding targets want an event; None: no targets
    # One "past max_components" warning a minute, not one per new component.
    overflow_warning: Throttle = field(default_factory=lambda: Throttle(60.0))
    # The "stored deployment ..." INFO line: at most one a minute per web worker, with how many
    # events were stored since (each one is logged at DEBUG). One line per event was ~12% of
    # the Python time of an ingest request under load (benchmarks/README.md, issue 16).
    stored_log: Throttle = field(default_factory=lambda: Throttle(60.0))
    # Write tokens verified lately; each write re-checks its token in its own transaction.
    verified_tokens: VerifiedTokens = field(default_factory=VerifiedTokens)


def state() -> AppState:
    return cast(AppState, current_app.extensions["releasebits"])


def settings() -> Settings:
    return state().settings


def get_db() -> Store:
    """This thread's store (kept for the thread: sqlite3 connections are per-thread)."""
    if "db" not in g:
        s = settings()
        g.db = thread_store(s.db, synchronous=s.sqlite_synchronous, pool_size=s.db_pool_size)
    return cast(Store, g.db)


def rollback_request_db(exc: BaseException | None) -> None:
    """Teardown: a request that failed mid-transaction leaves nothing half-written behind."""
    db = g.get("db")
    if db is not None:
        db.rollback()
