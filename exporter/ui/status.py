"""What the status page shows, read from the rows /metrics reads: the components x stages grid,
the newest deployments and builds, and the health of sources, forwarding and the worker.

Plain data for the templates; nothing here knows Flask. `detail` (a signed-in reader) adds what
only the read API shows (hosts, raw results, branches, meta data, error texts); without it the
page shows what /metrics shows.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.badges.model import Badge, deployed_crash_free, format_age
from exporter.meta import worker_alive
from exporter.metrics.forwarding import TargetState, target_states
from exporter.metrics.health import deployed_health, source_statuses, stability_targets
from exporter.settings import Settings
from exporter.ui.keys import COLUMNS, Figure, KeyColumn, KeyInput, format_duration
from exporter.ui.keys import production_stages as key_stages
from storage import components, events, heartbeat, release_health
from storage.aggregates import Snapshot, snapshot
from storage.db import Store
from storage.release_health import HealthKey

RECENT_SECONDS = 86_400  # a version that became current this recently is marked as new
UNLIMITED = 2**62  # cardinality limits for one component's page: show it even past the limit


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~2x, and the grid makes thousands
class Moment:
    """A point in time as the page shows it: relative, with the exact UTC time on hover."""

    iso: str
    exact: str
    ago: str
    age: float


def moment(ts: float, now: float) -> Moment:
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))  # ~4x cheaper than datetime
    return Moment(iso, f"{iso[:10]} {iso[11:19]} UTC", format_age(now - ts), now - ts)


@dataclass(slots=True)
class Cell:
    """One component in one stage: what runs there, since when, how the last deployment went."""

    version: str | None  # None: never successfully deployed here
    commit_sha: str | None
    commit_url: str | None
    since: Moment | None
    last_result: str | None  # result class of the newest deployment, whatever its result
    last_at: Moment | None  # only when the newest deployment did not succeed
    crash_free: Badge | None  # None: no release-health source mapped for the component
    recent: bool = False


@dataclass(frozen=True)
class Row:
    component: str
    cells: dict[str, Cell]
    build: tuple[str, Moment] | None  # result class and time of the newest build
    keys: dict[str, list[Figure | None]]  # production stage -> one figure per key column


@dataclass(frozen=True)
class Grid:
    stages: list[str]
    key_stages: list[str]
    key_columns: tuple[KeyColumn, ...]
    rows: list[Row]
    hidden_components: int  # past max_components: not in /metrics, not in the grid
    hidden_stages: int


def _newest_results(snap: Snapshot) -> dict[tuple[str, str, str], tuple[str, float]]:
    """(kind, component, stage) -> the result class and time of its newest event."""
    newest: dict[tuple[str, str, str], tuple[str, float]] = {}
    for row in snap.event_stats:
        key = (row["kind"], row["component"], row["stage"])
        if key not in newest or row["last_ts"] > newest[key][1]:
            newest[key] = (row["result_class"], row["last_ts"])
    return newest


def grid(
    db: Store,
    settings: Settings,
    now: float,
    *,
    component: str | None = None,
    stage: str | None = None,
    limited: bool = True,
) -> Grid:
    """The grid from one aggregates snapshot; within max_components/max_stages like /metrics
    unless `limited` is off (one component's own page)."""
    max_c, max_s = (settings.max_components, settings.max_stages) if limited else (UNLIMITED,) * 2
    snap = snapshot(db, max_components=max_c, max_stages=max_s, component=component, buckets=False)
    newest = _newest_results(snap)
    current = {(r["component"], r["stage"]): r for r in snap.current_versions}
    names = sorted({c for _, c, _ in newest} | {c for c, _ in current})
    seen_stages = {s for (kind, _, s) in newest if kind == "deployment"}
    every_stage = components.stage_order(db)
    stages = [s for s in every_stage if s in seen_stages]
    if component is not None:
        names = [c for c in names if c == component]
    if stage is not None:
        stages = [s for s in stages if s == stage]
    keyed = [s for s in key_stages(settings) if s in stages]
    figures = {
        s: [col.read(KeyInput(db, settings, snap, s, now)) for col in COLUMNS] for s in keyed
    }
    targets = stability_targets(db)
    polled = release_health.by_key(db)
    rows = []
    for name in names:
        cells = {}
        for s in stages:
            last = newest.get(("deployment", name, s))
            cur = current.get((name, s))
            if last is None and cur is None:
                continue
            cells[s] = _cell(db, settings, name, s, cur, last, (targets, polled), now)
        built = newest.get(("build", name, ""))
        rows.append(
            Row(
                component=name,
                cells=cells,
                build=(built[0], moment(built[1], now)) if built else None,
                keys={s: [f.get(name) for f in figures[s]] for s in keyed},
            )
        )
    return Grid(
        stages=stages,
        key_stages=keyed,
        key_columns=COLUMNS,
        rows=rows,
        hidden_components=max(snap.components - max_c, 0),
        hidden_stages=max(len(every_stage) - max_s, 0) if limited else 0,
    )


def _cell(
    db: Store,
    settings: Settings,
    name: str,
    stage: str,
    cur: dict[str, Any] | None,
    last: tuple[str, float] | None,
    joins: tuple[dict[tuple[str, str], float | None], dict[HealthKey, dict[str, Any]]],
    now: float,
) -> Cell:
    if cur is None:
        return Cell(None, None, None, None, last[0] if last else None, _at(last, now), None)
    mapping = settings.components.get(name)
    crash_free = None
    if mapping is not None and mapping.sources:
        version = str(cur["version"])
        targets, polled = joins
        health = deployed_health(db, settings, name, stage, version, targets=targets, polled=polled)
        crash_free = deployed_crash_free(health)
    sha = cur["commit_sha"]
    return Cell(
        version=str(cur["version"]),
        commit_sha=sha,
        commit_url=mapping.commit_url(sha) if mapping is not None and sha else None,
        since=moment(cur["since_ts"], now),
        last_result=last[0] if last else None,
        last_at=_at(last, now),
        crash_free=crash_free,
        recent=now - cur["since_ts"] < RECENT_SECONDS,
    )


def _at(last: tuple[str, float] | None, now: float) -> Moment | None:
    """When the newest deployment finished, if it did not succeed (the grid shows only those)."""
    return moment(last[1], now) if last is not None and last[0] != "success" else None


# --- the feed -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """The feed's filters, already validated (None: not filtered)."""

    component: str | None = None
    stage: str | None = None
    result: str | None = None
    kind: str | None = None

    def kinds(self) -> tuple[str, ...]:
        if self.kind is not None:
            return (self.kind,) if self.kind == "deployment" or self.stage is None else ()
        return ("deployment",) if self.stage is not None else ("deployment", "build")

    def query(self, **changes: str | None) -> dict[str, str]:
        """The filters as query parameters (for links), with `changes` applied."""
        values = {**dataclasses.asdict(self), **changes}
        return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class Event:
    """One deployment or build in the feed."""

    kind: str
    component: str
    stage: str | None
    version: str
    commit_sha: str | None
    commit_url: str | None
    result_class: str
    at: Moment
    duration: str | None
    details: list[tuple[str, str]] = field(default_factory=list)  # signed in only
    link: str | None = None  # a build's CI link (http/https only), signed in only


@dataclass(frozen=True)
class Feed:
    events: list[Event]
    next_cursor: tuple[Any, ...] | None


def feed(
    db: Store,
    settings: Settings,
    filters: Filters,
    now: float,
    *,
    detail: bool,
    limit: int = 50,
    after: Sequence[Any] | None = None,
) -> Feed:
    query = {"stage": filters.stage, "result_class": filters.result}
    rows, cursor = events.list_recent(
        db,
        filters.kinds(),
        component=filters.component,
        filters={k: v for k, v in query.items() if v is not None},
        limit=limit,
        after=after,
    )
    return Feed([_event(row, settings, now, detail) for row in rows], cursor)


_DETAIL_FIELDS = ("host", "result", "branch", "tag", "code_name", "release")


def _event(row: dict[str, Any], settings: Settings, now: float, detail: bool) -> Event:
    mapping = settings.components.get(row["component"])
    sha = row["commit_sha"]
    details: list[tuple[str, str]] = []
    link = None
    if detail:
        details = [(k, str(row[k])) for k in _DETAIL_FIELDS if row.get(k) not in (None, "")]
        if row["meta_data"]:
            details.append(("meta_data", json.dumps(row["meta_data"], ensure_ascii=False)))
        url = row.get("url")
        if isinstance(url, str) and url.lower().startswith(("https://", "http://")):
            link = url
    duration = row["duration_seconds"]
    return Event(
        kind=row["kind"],
        component=row["component"],
        stage=row.get("stage"),
        version=row["version"],
        commit_sha=sha,
        commit_url=mapping.commit_url(sha) if mapping is not None and sha else None,
        result_class=row["result_class"],
        at=moment(row["finished_ts"], now),
        duration=format_duration(duration) if duration is not None else None,
        details=details,
        link=link,
    )


# --- health of sources, forwarding, the worker --------------------------------------------


@dataclass(frozen=True)
class Source:
    source: str
    project: str
    up: bool | None  # None: not polled yet
    last_success: Moment | None
    last_attempt: Moment | None
    duration: str | None
    error: str | None  # signed in only


@dataclass(frozen=True)
class Target:
    state: TargetState
    oldest: str | None  # age of the oldest waiting delivery


@dataclass(frozen=True)
class Health:
    worker_alive: bool
    worker_beat: Moment | None
    sources: list[Source]
    targets: list[Target]

    @property
    def sources_down(self) -> int:
        return sum(1 for s in self.sources if s.up is False)

    @property
    def backlog(self) -> int:
        return sum(t.state.pending for t in self.targets)


def health(db: Store, settings: Settings, now: float, *, detail: bool) -> Health:
    from_db = source_statuses(db, settings)
    sources = [
        Source(
            source=r["source"],
            project=r["project"],
            up=bool(r["up"]),
            last_success=moment(r["last_success_ts"], now) if r["last_success_ts"] else None,
            last_attempt=moment(r["last_attempt_ts"], now),
            duration=_seconds(r["last_duration_seconds"]),
            error=r["last_error"] if detail else None,
        )
        for r in from_db
    ]
    polled = {r["source"] for r in from_db}
    sources += [
        Source(s.name, "", None, None, None, None, None)
        for s in settings.sources
        if s.name not in polled
    ]
    targets = [
        Target(t, format_duration(t.oldest_pending_age) if t.pending else None)
        for t in target_states(db, settings, now)
    ]
    beat = heartbeat.last_beat(db)
    return Health(
        worker_alive=worker_alive(beat, settings, now),
        worker_beat=moment(beat, now) if beat is not None else None,
        sources=sources,
        targets=targets,
    )


def _seconds(value: float | None) -> str | None:
    return f"{value:.2f}s" if value is not None else None


# --- one component's timeline -------------------------------------------------------------

TIMELINE_SECONDS = 30 * 86_400


@dataclass(frozen=True)
class Change:
    version: str
    commit_sha: str | None
    commit_url: str | None
    at: Moment
    lasted: str  # how long it was (or has been) current


@dataclass(frozen=True)
class Segment:
    """A version's stretch on the timeline, in percent of its width."""

    version: str
    x: float
    width: float
    title: str
    current: bool


@dataclass(frozen=True)
class Lane:
    stage: str
    changes: list[Change]
    segments: list[Segment]
    start: Moment


def timeline(db: Store, settings: Settings, slug: str, now: float) -> list[Lane]:
    """Per stage (pipeline order): the version changes, newest first, and their stretches over
    the last 30 days (or since the oldest change listed, when that is later)."""
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for row in components.version_changes(db, slug):
        by_stage.setdefault(row["stage"], []).append(row)
    mapping = settings.components.get(slug)
    lanes = []
    for stage in [s for s in components.stage_order(db) if s in by_stage]:
        rows = by_stage[stage]
        start = max(now - TIMELINE_SECONDS, rows[-1]["finished_ts"])
        span = max(now - start, 1.0)
        changes, segments, until = [], [], now
        for i, row in enumerate(rows):
            sha, ts = row["commit_sha"], row["finished_ts"]
            url = mapping.commit_url(sha) if mapping is not None and sha else None
            lasted = format_duration(until - ts)
            changes.append(Change(row["version"], sha, url, moment(ts, now), lasted))
            if until > start:
                x = (max(ts, start) - start) / span * 100
                width = (until - max(ts, start)) / span * 100
                title = f"{row['version']} from {moment(ts, now).exact}, {lasted}"
                segments.append(
                    Segment(row["version"], round(x, 3), round(width, 3), title, i == 0)
                )
            until = ts
        lanes.append(Lane(stage, changes, segments, moment(start, now)))
    return lanes
