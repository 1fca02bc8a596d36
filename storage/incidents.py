"""Incidents per component and stage: the incidents API and CDEvents incident.detected/resolved.

An incident is linked, when it arrives, to the deployment it names or else to the rollout
current when it started (storage.dora.link_incident); the link never moves afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage import dora
from storage.db import Store
from storage.ids import new_id
from storage.pagination import Keyset, page
from storage.timestamps import iso_ts


@dataclass(frozen=True)
class IncidentReport:
    """What a sender says about an incident: either end may be unknown (not both)."""

    component: str
    stage: str
    external_id: str | None
    started_ts: float | None = None
    resolved_ts: float | None = None
    title: str | None = None
    url: str | None = None
    deployment_id: str | None = None
    source: str = "api"


def report(tx: Store, r: IncidentReport, now: float) -> tuple[str, bool]:
    """Create the incident, or update the one with the same (component, external_id); returns
    (id, created).

    Reports may arrive in any order: the start is the earliest start reported, and an incident
    first heard of as resolved starts at its resolution until its start arrives.
    """
    tx.lock("component", r.component)
    found = None
    if r.external_id is not None:
        found = tx.one(
            "SELECT id, started_ts, resolved_ts, link_deployment_id FROM incidents "
            "WHERE component = ? AND external_id = ?",
            [r.component, r.external_id],
        )
    if found is None:
        incident_id = new_id()
        started = r.started_ts if r.started_ts is not None else r.resolved_ts
        assert started is not None  # a report names at least one end
        link = dora.link_incident(tx, r.component, r.stage, started, r.deployment_id)
        tx.execute(
            "INSERT INTO incidents (id, component, stage, external_id, title, url, "
            "deployment_id, started_ts, resolved_ts, source, created_at, updated_at, "
            "link_deployment_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                incident_id, r.component, r.stage, r.external_id, r.title, r.url,
                r.deployment_id, started, r.resolved_ts, r.source, now, now, link,
            ],
        )  # fmt: skip
        dora.incident_changed(tx, link, now)
        return incident_id, True
    started = found[1] if r.started_ts is None else min(found[1], r.started_ts)
    resolved = r.resolved_ts if r.resolved_ts is not None else found[2]
    tx.execute(
        "UPDATE incidents SET started_ts = ?, resolved_ts = ?, title = coalesce(title, ?), "
        "url = coalesce(url, ?), deployment_id = coalesce(deployment_id, ?), updated_at = ? "
        "WHERE id = ?",
        [started, resolved, r.title, r.url, r.deployment_id, now, found[0]],
    )
    dora.incident_changed(tx, found[3], now)
    return str(found[0]), False


def resolve(tx: Store, component: str, incident_id: str, resolved_ts: float, now: float) -> bool:
    """Set (or move) the resolution time of an incident; False when there is no such incident."""
    tx.lock("component", component)
    found = tx.one(
        "SELECT link_deployment_id FROM incidents WHERE component = ? AND id = ?",
        [component, incident_id],
    )
    if found is None:
        return False
    tx.execute(
        "UPDATE incidents SET resolved_ts = ?, updated_at = ? WHERE id = ?",
        [resolved_ts, now, incident_id],
    )
    dora.incident_changed(tx, found[0], now)
    return True


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "component": row["component"],
        "stage": row["stage"],
        "external_id": row["external_id"],
        "title": row["title"],
        "url": row["url"],
        "deployment_id": row["deployment_id"],
        "linked_deployment_id": row["link_deployment_id"],
        "started_at": iso_ts(row["started_ts"]),
        "resolved_at": iso_ts(row["resolved_ts"]),
        "source": row["source"],
    }


def get_incident(store: Store, component: str, incident_id: str) -> dict[str, Any] | None:
    rows = store.query(
        "SELECT * FROM incidents WHERE component = ? AND id = ?", [component, incident_id]
    )
    return _shape(rows[0]) if rows else None


NEWEST_FIRST = Keyset(columns=("started_ts", "id"), keys=("started_ts", "id"))


def list_incidents(
    store: Store,
    component: str,
    *,
    stage: str | None = None,
    limit: int = 50,
    after: Sequence[Any] | None = None,
) -> tuple[list[dict[str, Any]], tuple[Any, ...] | None]:
    """Newest first by start; `after` is the (started_ts, id) cursor of the last row seen."""
    where, params = ["component = ?"], [component]
    if stage is not None:
        where.append("stage = ?")
        params.append(stage)
    rows, cursor = page(
        store, "SELECT * FROM incidents", NEWEST_FIRST, where=where, params=params, after=after,
        limit=limit,
    )  # fmt: skip
    return [_shape(r) for r in rows], cursor


def list_for(store: Store, component: str) -> list[dict[str, Any]]:
    return list_incidents(store, component, limit=1000)[0]
