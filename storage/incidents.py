"""Incidents per component and stage (CDEvents incident.detected / incident.resolved)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from storage.db import Store
from storage.timestamps import iso_ts


@dataclass(frozen=True)
class IncidentReport:
    """What a sender says about an incident: either end may be unknown."""

    component: str
    stage: str
    external_id: str
    started_ts: float | None = None
    resolved_ts: float | None = None
    title: str | None = None
    url: str | None = None
    deployment_id: str | None = None
    source: str = "api"


def report(tx: Store, r: IncidentReport, now: float) -> tuple[str, bool]:
    """Create or update the incident (component, external_id); returns (id, created).

    Reports may arrive in any order: the start is the earliest start reported, and an incident
    first heard of as resolved starts at its resolution until its start arrives.
    """
    found = tx.one(
        "SELECT id, started_ts, resolved_ts FROM incidents WHERE component = ? AND external_id = ?",
        [r.component, r.external_id],
    )
    if found is None:
        incident_id = str(uuid.uuid4())
        started = r.started_ts if r.started_ts is not None else r.resolved_ts
        assert started is not None  # a report names at least one end
        tx.execute(
            "INSERT INTO incidents (id, component, stage, external_id, title, url, "
            "deployment_id, started_ts, resolved_ts, source, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                incident_id, r.component, r.stage, r.external_id, r.title, r.url,
                r.deployment_id, started, r.resolved_ts, r.source, now, now,
            ],
        )  # fmt: skip
        return incident_id, True
    started = found[1] if r.started_ts is None else min(found[1], r.started_ts)
    resolved = r.resolved_ts if r.resolved_ts is not None else found[2]
    tx.execute(
        "UPDATE incidents SET started_ts = ?, resolved_ts = ?, title = coalesce(title, ?), "
        "url = coalesce(url, ?), deployment_id = coalesce(deployment_id, ?), updated_at = ? "
        "WHERE id = ?",
        [started, resolved, r.title, r.url, r.deployment_id, now, found[0]],
    )
    return str(found[0]), False


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "component": row["component"],
        "stage": row["stage"],
        "external_id": row["external_id"],
        "title": row["title"],
        "url": row["url"],
        "deployment_id": row["deployment_id"],
        "started_at": iso_ts(row["started_ts"]),
        "resolved_at": iso_ts(row["resolved_ts"]),
        "source": row["source"],
    }


def list_for(store: Store, component: str) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT * FROM incidents WHERE component = ? ORDER BY started_ts DESC", [component]
    )
    return [_shape(r) for r in rows]
