"""The forwarding outbox as metrics, per configured target (its `name`)."""

from __future__ import annotations

import time

from exporter.metrics.families import Families, Family
from exporter.settings import Settings
from storage import outbox
from storage.db import Store

FAMILIES = (
    Family(
        "releasebits_forward_deliveries_total",
        "counter",
        "Delivery attempts of the forwarding outbox by target and outcome: delivered, retried "
        "(failed, will be tried again), failed (permanent error or gave up), disabled (the "
        "endpoint answered 410 Gone).",
        ("target", "outcome"),
    ),
    Family(
        "releasebits_forward_pending",
        "gauge",
        "Deliveries waiting in the outbox (or in flight) per target.",
        ("target",),
    ),
    Family(
        "releasebits_forward_oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest delivery still waiting per target; 0 when none waits.",
        ("target",),
    ),
    Family(
        "releasebits_forward_target_disabled",
        "gauge",
        "1 when a target was disabled (a webhook answered 410 Gone) until a delivery of it is "
        "retried, else 0.",
        ("target",),
    ),
)


def fill(fams: Families, db: Store, settings: Settings, now: float | None = None) -> None:
    """Only configured targets: rows of a removed or renamed target leave no stale series."""
    if not settings.forward_targets:
        return
    now = time.time() if now is None else now
    backlog = outbox.backlog(db)
    off = outbox.disabled_targets(db)
    for target in settings.forward_targets:
        name = target.name
        for outcome in outbox.OUTCOMES:
            count = backlog.counts.get((name, outcome), 0)
            fams.add("releasebits_forward_deliveries_total", [name, outcome], count)
        fams.add("releasebits_forward_pending", [name], backlog.pending.get(name, 0))
        first = backlog.oldest_created_at.get(name)
        age = max(now - first, 0.0) if first is not None else 0.0
        fams.add("releasebits_forward_oldest_pending_age_seconds", [name], age)
        fams.add("releasebits_forward_target_disabled", [name], 1 if name in off else 0)
