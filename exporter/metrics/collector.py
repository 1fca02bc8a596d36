"""The /metrics collector: fresh metric families per scrape, read from pre-aggregated rows.

Each concern declares its families as data and fills them by name (events.py, health.py,
forwarding.py); a scrape reads the database and does no network I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.metrics import dora, events, forwarding, health, receivers
from exporter.metrics.families import Families
from exporter.settings import Settings
from storage.aggregates import snapshot

FAMILIES = (
    *events.FAMILIES,
    *health.FAMILIES,
    *forwarding.FAMILIES,
    *receivers.FAMILIES,
    *dora.FAMILIES,
)


class ReleaseBitsCollector(Collector):
    """Reads the database at scrape time; describe() never touches it."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None):
        self._settings = settings
        self._dora = dora.DoraCache()
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterable[Metric]:
        return list(Families(FAMILIES))

    def collect(self) -> Iterator[Metric]:
        s = self._settings
        db = s.store()
        fams = Families(FAMILIES)
        # One read transaction for the whole scrape: every family from the same committed
        # state, so replicas scraped at the same moment answer the same values.
        with db.snapshot():
            snap = snapshot(db, max_components=s.max_components, max_stages=s.max_stages)
            events.fill(fams, snap)
            health.fill(fams, db, s)
            forwarding.fill(fams, db, s)
            receivers.fill(fams, db, s)
            dora.fill(fams, db, s, self._dora)
        yield from fams


def build_registry(settings: Settings, *, process_metrics: bool = True) -> CollectorRegistry:
    """ReleaseBits' own registry (never the global one) with process and Python metrics."""
    registry = CollectorRegistry(auto_describe=True)
    ReleaseBitsCollector(settings, registry)
    if process_metrics:
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
    return registry


def described_metric_names() -> list[str]:
    """The names the exposition shows, for the README docs test and the dashboard checks."""
    return [family.exposed_name for family in FAMILIES]
