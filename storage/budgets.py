"""Error-budget counters: sessions and crashed sessions of the release deployed to a component
and stage, per source, each poll bucket counted once (across restarts: the state is here).

Sentry answers per-hour (or per-day) buckets: a bucket counts once it has ended, if it ended
after the last one counted and started while the release was deployed. Bugsnag answers running
totals per release: the growth since the previous poll of the same release counts. The first
poll of a series only sets the starting point, so history never arrives as one burst.
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.db import Store


def count_buckets(
    tx: Store,
    key: tuple[str, str, str],
    buckets: Sequence[tuple[float, float, int, int]],
    since_ts: float,
    now: float,
) -> tuple[int, int]:
    """Add the completed buckets (start, end, sessions, crashed) not counted yet; returns the
    (sessions, crashed) added."""
    tx.lock("component", key[0])
    found = tx.one(
        "SELECT watermark FROM budget_counters WHERE component = ? AND stage = ? AND source = ?",
        list(key),
    )
    newest = max((b[1] for b in buckets), default=None)
    if found is None or found[0] is None:
        _save(tx, key, 0, 0, now, watermark=newest if newest is not None else now)
        return 0, 0
    fresh = [b for b in buckets if b[1] > found[0] and b[0] >= since_ts]
    sessions, crashed = sum(b[2] for b in fresh), sum(b[3] for b in fresh)
    _save(tx, key, sessions, crashed, now, watermark=max(found[0], newest or found[0]))
    return sessions, crashed


def count_totals(
    tx: Store, key: tuple[str, str, str], release: str, sessions: int, crashed: int, now: float
) -> tuple[int, int]:
    """Add the growth of a release's running totals since the last poll of the same release."""
    tx.lock("component", key[0])
    found = tx.one(
        "SELECT release, seen_sessions, seen_crashed FROM budget_counters "
        "WHERE component = ? AND stage = ? AND source = ?",
        list(key),
    )
    added = (0, 0)
    if found is not None and found[0] == release and sessions >= (found[1] or 0):
        added = (sessions - (found[1] or 0), max(crashed - (found[2] or 0), 0))
    _save(tx, key, *added, now, release=release, seen=(sessions, crashed))
    return added


def _save(
    tx: Store,
    key: tuple[str, str, str],
    sessions: int,
    crashed: int,
    now: float,
    *,
    watermark: float | None = None,
    release: str | None = None,
    seen: tuple[int, int] | None = None,
) -> None:
    seen_sessions, seen_crashed = seen if seen is not None else (None, None)
    tx.execute(
        "INSERT INTO budget_counters (component, stage, source, sessions, crashed, watermark, "
        "release, seen_sessions, seen_crashed, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(component, stage, source) DO UPDATE SET "
        "sessions = budget_counters.sessions + excluded.sessions, "
        "crashed = budget_counters.crashed + excluded.crashed, "
        "watermark = coalesce(excluded.watermark, budget_counters.watermark), "
        "release = coalesce(excluded.release, budget_counters.release), "
        "seen_sessions = coalesce(excluded.seen_sessions, budget_counters.seen_sessions), "
        "seen_crashed = coalesce(excluded.seen_crashed, budget_counters.seen_crashed), "
        "updated_at = excluded.updated_at",
        [*key, sessions, crashed, watermark, release, seen_sessions, seen_crashed, now],
    )


def counters(store: Store) -> list[dict[str, object]]:
    return store.query(
        "SELECT component, stage, source, sessions, crashed FROM budget_counters "
        "ORDER BY component, stage, source"
    )
