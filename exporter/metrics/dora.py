"""The DORA keys as metrics: gauges per window recomputed from stored rollouts (cached for at
most CACHE_SECONDS, and recomputed at once for a series whose rows changed), and the lead-time
and recovery-time histograms counted at ingest."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from exporter.dora.compute import LONGEST, QUANTILES, SeriesValues, compute
from exporter.metrics.families import Families, Family, histogram_buckets
from exporter.settings import Settings
from storage import dora
from storage.db import Store

CACHE_SECONDS = 60.0
_SERIES = ("component", "stage")
_WINDOW = (*_SERIES, "window")
_BY_TIME = " Windows 1d, 7d, 30d, 90d ending now, by rollout time; recomputed at most 60 s apart."
FAMILIES = (
    Family(
        "releasebits_dora_deployments",
        "gauge",
        "Deployment frequency: rollouts (a version reaching the stage, however many hosts) in "
        "the window." + _BY_TIME,
        _WINDOW,
    ),
    Family(
        "releasebits_dora_change_failures",
        "gauge",
        "Rollouts in the window that are change failures (rolled back, an incident linked, or "
        "crash-free sessions polled below critical while current)." + _BY_TIME,
        _WINDOW,
    ),
    Family(
        "releasebits_dora_change_failure_ratio",
        "gauge",
        "Change fail rate: change failures / rollouts in the window (absent without rollouts)."
        + _BY_TIME,
        _WINDOW,
    ),
    Family(
        "releasebits_dora_rework_ratio",
        "gauge",
        "Deployment rework rate: rollouts that ended a change failure / rollouts in the window "
        "(absent without rollouts)." + _BY_TIME,
        _WINDOW,
    ),
    Family(
        "releasebits_dora_lead_time_seconds",
        "gauge",
        "Change lead time: rollout time - commit time per commit a rollout in the window brought "
        "to the stage first; median and p90 (absent without data)." + _BY_TIME,
        (*_WINDOW, "quantile"),
    ),
    Family(
        "releasebits_dora_recovery_time_seconds",
        "gauge",
        "Failed deployment recovery time of the window's recovered change failures; median and "
        "p90 (absent without data)." + _BY_TIME,
        (*_WINDOW, "quantile"),
    ),
    Family(
        "releasebits_dora_unrecovered_failure_age_seconds",
        "gauge",
        "Age of the oldest change failure not recovered yet; 0 when none.",
        _SERIES,
    ),
    Family(
        "releasebits_change_lead_time_seconds",
        "histogram",
        "Change lead time per commit, counted when its rollout is stored (DORA bands as buckets).",
        _SERIES,
    ),
    Family(
        "releasebits_failed_deployment_recovery_time_seconds",
        "histogram",
        "Recovery time per change failure, counted when it recovers (DORA bands as buckets).",
        _SERIES,
    ),
)
_HISTOGRAMS = {
    dora.LEAD_TIME: "releasebits_change_lead_time_seconds",
    dora.RECOVERY_TIME: "releasebits_failed_deployment_recovery_time_seconds",
}


@dataclass(frozen=True)
class _Entry:
    gen: int
    computed_at: float
    values: SeriesValues


class DoraCache:
    """Per-process values of each series, keyed by its change generation (stored in SQLite, so
    every web worker recomputes a series as soon as any process changed it)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    def values(
        self, db: Store, settings: Settings, now: float
    ) -> dict[tuple[str, str], SeriesValues]:
        gens = dora.generations(
            db, max_components=settings.max_components, max_stages=settings.max_stages
        )
        out: dict[tuple[str, str], SeriesValues] = {}
        with self._lock:
            for key in list(self._entries):
                if key not in gens:
                    del self._entries[key]
            for key, gen in gens.items():
                entry = self._entries.get(key)
                if entry is None or entry.gen != gen or now - entry.computed_at >= CACHE_SECONDS:
                    entry = _Entry(gen, now, _compute(db, key, now))
                    self._entries[key] = entry
                out[key] = _aged(entry.values, now - entry.computed_at)
        return out


def _compute(db: Store, key: tuple[str, str], now: float) -> SeriesValues:
    component, stage = key
    with db.snapshot():
        rollouts = dora.series(db, component, stage, now - LONGEST)
        leads = dora.lead_times(db, component, stage, now - LONGEST)
    return compute(rollouts, leads, now)


def _aged(values: SeriesValues, elapsed: float) -> SeriesValues:
    """A cached value's open failure has aged since it was computed."""
    if values.unrecovered_failure_age <= 0 or elapsed <= 0:
        return values
    return SeriesValues(values.windows, values.unrecovered_failure_age + elapsed)


def fill(
    fams: Families, db: Store, settings: Settings, cache: DoraCache, now: float | None = None
) -> None:
    now = time.time() if now is None else now
    for (component, stage), values in sorted(cache.values(db, settings, now).items()):
        if stage not in settings.dora_stages:  # rollouts of a stage no longer configured
            continue
        for window, w in values.windows.items():
            labels = [component, stage, window]
            fams.add("releasebits_dora_deployments", labels, w.deployments)
            fams.add("releasebits_dora_change_failures", labels, w.change_failures)
            if w.change_failure_ratio is not None:
                fams.add("releasebits_dora_change_failure_ratio", labels, w.change_failure_ratio)
            if w.rework_ratio is not None:
                fams.add("releasebits_dora_rework_ratio", labels, w.rework_ratio)
            for q in QUANTILES:
                if q in w.lead_time:
                    fams.add(
                        "releasebits_dora_lead_time_seconds", [*labels, str(q)], w.lead_time[q]
                    )
                if q in w.recovery_time:
                    fams.add(
                        "releasebits_dora_recovery_time_seconds",
                        [*labels, str(q)],
                        w.recovery_time[q],
                    )
        fams.add(
            "releasebits_dora_unrecovered_failure_age_seconds",
            [component, stage],
            values.unrecovered_failure_age,
        )
    for row in dora.histograms(
        db, max_components=settings.max_components, max_stages=settings.max_stages
    ):
        buckets = histogram_buckets(dora.DORA_BUCKETS, row["buckets"])
        fams.add(_HISTOGRAMS[row["kind"]], [row["component"], row["stage"]], buckets, row["sum"])
