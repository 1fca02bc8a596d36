"""The webhook receivers as metrics: requests by receiver, event and outcome."""

from __future__ import annotations

from exporter.metrics.families import Families, Family
from exporter.settings import Settings
from storage import feeds
from storage.db import Store

FAMILIES = (
    Family(
        "releasebits_webhook_requests_total",
        "counter",
        "Requests to the webhook receivers (/webhooks/<receiver>) by event and outcome: accepted "
        "(stored), duplicate (a delivery seen before), ignored (202: nothing to store), "
        "unauthorized (bad or missing signature or token), invalid (unreadable body).",
        ("receiver", "event", "outcome"),
    ),
)


def fill(fams: Families, db: Store, settings: Settings) -> None:
    """Configured receivers only; each of their outcomes from 0 for the events seen."""
    if not settings.receivers:
        return
    counts = {(r["receiver"], r["event"], r["outcome"]): r["count"] for r in feeds.stats(db)}
    events = sorted({(rec, ev) for rec, ev, _ in counts if rec in settings.receivers})
    for receiver, event in events:
        for outcome in feeds.OUTCOMES:
            count = counts.get((receiver, event, outcome), 0)
            fams.add("releasebits_webhook_requests_total", [receiver, event, outcome], count)
