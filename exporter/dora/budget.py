"""After each successful poll: the error-budget counters of every deployed release the source
reports, and the crash-free change failures (a current rollout polled below critical)."""

from __future__ import annotations

import logging

from exporter.metrics.health import DeployedHealth, deployed_health
from exporter.pollers.jobs import PollReport
from exporter.settings import Settings
from storage import budgets, dora
from storage import components as components_store
from storage.db import Store
from storage.release_health import HealthRow

log = logging.getLogger(__name__)


def after_poll(store: Store, settings: Settings, report: PollReport, now: float) -> None:
    """Count the new poll buckets of each deployed release; mark crash-free failures."""
    if not report.ok:
        return
    rows = {(r.project, r.environment, r.release): r for r in report.rows}
    for current in components_store.current_versions_of(store, sorted(settings.components)):
        component, stage = current["component"], current["stage"]
        for h in deployed_health(store, settings, component, stage):
            row = rows.get((h.project, h.environment, h.release))
            if h.source == report.source and row is not None:
                _account(store, settings, report.kind, h, row, float(current["since_ts"]), now)


def _account(
    store: Store,
    settings: Settings,
    kind: str,
    h: DeployedHealth,
    row: HealthRow,
    since: float,
    now: float,
) -> None:
    key = (h.component, h.stage, h.source)

    def count(tx: Store) -> tuple[int, int]:
        return _count(tx, kind, key, row, since, now)

    def mark(tx: Store) -> bool:
        return dora.mark_crash_failure(tx, h.component, h.stage, h.version, now)

    store.write(count)
    below = h.crash_free_sessions is not None and h.crash_free_sessions < h.critical
    if below and h.stage in settings.dora_stages and store.write(mark):
        log.warning(
            "%s %s in %s: crash-free sessions %.4f below critical %.4f (%s): a change failure",
            h.component, h.version, h.stage, h.crash_free_sessions, h.critical, h.source,
        )  # fmt: skip


def _count(
    tx: Store, kind: str, key: tuple[str, str, str], row: HealthRow, since: float, now: float
) -> tuple[int, int]:
    if kind == "sentry":
        return budgets.count_buckets(tx, key, row.buckets, since, now)
    crashed = row.sessions_by_status.get("unhandled")
    if row.total_sessions is None or crashed is None:
        return 0, 0
    return budgets.count_totals(tx, key, row.release, row.total_sessions, crashed, now)
