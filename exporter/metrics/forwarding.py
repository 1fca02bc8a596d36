"""The forwarding outbox as metrics, per configured target (its `name`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

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


@dataclass(frozen=True)
class TargetState:
    """One configured target's outbox as /metrics and the status page show it."""

    name: str
    kind: str
    counts: dict[str, int]  # outcome -> delivery attempts
    pending: int
    oldest_pending_age: float  # seconds; 0 when none waits
    disabled: bool
    disabled_reason: str


def target_states(db: Store, settings: Settings, now: float | None = None) -> list[TargetState]:
    """Only configured targets: rows of a removed or renamed target are not shown."""
    if not settings.forward_targets:
        return []
    now = time.time() if now is None else now
    backlog = outbox.backlog(db)
    off = outbox.disabled_targets(db)
    out = []
    for target in settings.forward_targets:
        name = target.name
        first = backlog.oldest_created_at.get(name)
        out.append(
            TargetState(
                name=name,
                kind=target.kind,
                counts={o: backlog.counts.get((name, o), 0) for o in outbox.OUTCOMES},
                pending=backlog.pending.get(name, 0),
                oldest_pending_age=max(now - first, 0.0) if first is not None else 0.0,
                disabled=name in off,
                disabled_reason=off.get(name, ""),
            )
        )
    return out


def fill(fams: Families, db: Store, settings: Settings, now: float | None = None) -> None:
    """Only configured targets: rows of a removed or renamed target leave no stale series."""
    for t in target_states(db, settings, now):
        for outcome, count in t.counts.items():
            fams.add("releasebits_forward_deliveries_total", [t.name, outcome], count)
        fams.add("releasebits_forward_pending", [t.name], t.pending)
        fams.add("releasebits_forward_oldest_pending_age_seconds", [t.name], t.oldest_pending_age)
        fams.add("releasebits_forward_target_disabled", [t.name], 1 if t.disabled else 0)
