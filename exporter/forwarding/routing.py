"""Routing at ingest: which forwarding targets want an event (storage writes their outbox rows)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exporter.settings import ForwardTargetSpec
from storage.outbox import Router


def router(targets: Sequence[ForwardTargetSpec]) -> Router | None:
    """The function ingest passes to storage (None: no targets, no outbox rows)."""
    if not targets:
        return None
    frozen = tuple(targets)

    def route(kind: str, component: str | None, event: dict[str, Any]) -> list[str]:
        return [t.name for t in frozen if t.wants(kind, component, event)]

    return route
