"""Deployments and builds: the durable insert (with aggregates and idempotency) and the reads."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storage import aggregates, dora, feeds, jsontext, outbox, releases, tokens
from storage import idempotency as idempotency_keys
from storage.db import Store
from storage.feeds import Delivery
from storage.idempotency import Idempotency
from storage.pagination import Keyset, page
from storage.timestamps import iso_datetime

TABLE = {"deployment": "deployments", "build": "builds"}


@dataclass(frozen=True)
class Limits:
    """How many components and stages become metric label values."""

    max_components: int
    max_stages: int


@dataclass
class Outcome:
    """What record_event did: created a row, replayed an earlier answer, or found a conflict."""

    status: int
    body: dict[str, Any]
    created: bool = False
    conflict: bool = False
    overflow: list[str] = field(default_factory=list)
    component_created: bool = False
    duplicate: bool = False  # a webhook delivery seen before: nothing stored
    revoked: bool = False  # its token was revoked before the write: nothing stored


def record_event(
    store: Store, kind: str, component: str, event: dict[str, Any], **how: Any
) -> Outcome:
    """Insert one validated event and update every aggregate in a single committed transaction
    (`event_write` says how)."""
    return store.write(event_write(kind, component, event, **how))


def event_write(
    kind: str,
    component: str,
    event: dict[str, Any],
    *,
    event_id: str,
    body: dict[str, Any],
    limits: Limits,
    idempotency: Idempotency | None = None,
    forward: outbox.Router | None = None,
    natural_key: str | None = None,
    delivery: Delivery | None = None,
    dora_stages: tuple[str, ...] = (),
    token_id: str | None = None,
) -> Callable[[Store], Outcome]:
    """The write of one validated event and every aggregate, for a single committed transaction
    (`Store.write`, or the asynchronous writer of the lean ingest path).

    `body` is the 201 answer; it is stored with the Idempotency-Key so a retry gets it back.
    `forward` names the forwarding targets of the event: their outbox rows are written in the
    same transaction, so an event is forwarded if and only if it was stored.
    `natural_key` (a webhook's deployment or run id) makes a second final status of the same
    deployment answer 200 with the first one's id (the first final status stands; only a
    start it lacked is filled in). `delivery` dedupes and counts a webhook delivery.
    A successful deployment to one of `dora_stages` updates the rollouts (storage.dora).
    `token_id` (the API token that sent it) must be live here, else nothing is stored.
    """
    now = time.time()

    # Runs inside the write transaction, possibly on another request's thread and connection
    # (group commit): it must use only the store it is given.
    def work(tx: Store) -> Outcome:
        stage = (event.get("stage") or "") if kind == "deployment" else None
        known = _lookup(tx, token_id, component, stage)
        settled = _settled(tx, known.revoked, delivery, idempotency, now)
        if settled is not None:
            return settled
        outcome = _existing(tx, kind, natural_key, event) if natural_key else None
        if outcome is None:
            # Aggregates, current versions and rollouts are per component: concurrent writers
            # of one component (replicas on PostgreSQL) take turns from here to the commit.
            tx.lock("component", component)
            outcome = Outcome(201, body, created=True)
            outcome.component_created = _track_labels(
                tx, component, stage, known, limits, outcome, now
            )
            row = _insert(tx, kind, component, event, event_id, forward, now)
            aggregates.add_event(tx, kind, row)
            if kind == "deployment" and row["stage"] in dora_stages:
                _rollouts(tx, row, event, now)
            if forward is not None:
                outbox.enqueue(tx, kind, event_id, component, forward(kind, component, event), now)
            if natural_key is not None:
                feeds.bind(tx, natural_key, kind, event_id, now)
        if idempotency is not None:
            idempotency_keys.remember(tx, idempotency, outcome.status, outcome.body, now)
        feeds.accept(tx, delivery, now)
        return outcome

    return work


@dataclass(frozen=True)
class _Known:
    """What a write looks up before anything else, in one statement (each statement of the
    ingest transaction cost ~15 us of server CPU under load: benchmarks/README.md, issue 16)."""

    revoked: bool  # it came with a token that is revoked (or gone) as of this transaction
    component_rank: int | None  # None: a component never seen
    stage_rank: int | None  # None: a stage never seen, or a build (no stage)


_LOOKUP = (
    f"SELECT ({tokens.LIVE}), (SELECT id FROM components WHERE slug = ?), "  # pragma: no mutate
    "(SELECT id FROM stages WHERE name = ?)"  # pragma: no mutate
)


def _lookup(tx: Store, token_id: str | None, component: str, stage: str | None) -> _Known:
    found = tx.one(_LOOKUP, [token_id, component, stage])
    live, component_rank, stage_rank = found if found else (None, None, None)
    return _Known(token_id is not None and live is None, component_rank, stage_rank)


def _settled(
    tx: Store,
    revoked: bool,
    delivery: Delivery | None,
    idempotency: Idempotency | None,
    now: float,
) -> Outcome | None:
    """The answer of a write that stores nothing: its token was revoked, its webhook delivery
    was seen before, or its Idempotency-Key was used before (that answer, or a conflict)."""
    if revoked:
        return Outcome(401, {}, revoked=True)
    if feeds.begin(tx, delivery):
        return Outcome(200, {"duplicate": True}, duplicate=True)
    if idempotency is not None:
        earlier = idempotency_keys.replay(tx, idempotency, now)
        if earlier is not None:
            return Outcome(earlier.status, earlier.body, conflict=earlier.conflict)
    return None


def _rollouts(tx: Store, row: dict[str, Any], event: dict[str, Any], now: float) -> None:
    if row["result_class"] == "success":
        dora.on_deployment(tx, row, event.get("commits"), now)


def _existing(tx: Store, kind: str, key: str, event: dict[str, Any]) -> Outcome | None:
    """The answer for a natural key already stored as an event (None: store it now, with the
    earliest start remembered from earlier non-final statuses)."""
    found = feeds.key_row(tx, key)
    if found is None:
        return None
    event_id, started_ts = found
    if event_id is None:
        if started_ts is not None:
            remembered = datetime.fromtimestamp(started_ts, UTC)
            own = event.get("started_at")
            start = remembered if own is None else min(own, remembered)
            if start <= event["finished_at"]:
                event["started_at"] = start
        return None
    own_start = event.get("started_at")
    filled = own_start is not None and fill_start(tx, kind, event_id, own_start.timestamp())
    return Outcome(200, {"id": event_id, "updated": filled})


def fill_start(tx: Store, kind: str, event_id: str, started_ts: float) -> bool:
    """Give a stored event that has no start time this one (a start status that arrived after
    the final one); its duration joins the histogram. False when nothing changed."""
    stage = "stage" if kind == "deployment" else "''"  # builds have no stage
    row = tx.one(
        f"SELECT component, {stage}, finished_ts, started_at FROM {TABLE[kind]} WHERE id = ?",
        [event_id],
    )
    if row is None or row[3] is not None or started_ts > row[2]:
        return False
    tx.lock("component", row[0])
    duration = row[2] - started_ts
    tx.execute(
        f"UPDATE {TABLE[kind]} SET started_at = ?, duration_seconds = ? WHERE id = ?",
        [iso_datetime(datetime.fromtimestamp(started_ts, UTC)), duration, event_id],
    )
    aggregates.add_duration(tx, kind, row[0], row[1], duration)
    return True


def record_start(
    store: Store, kind: str, key: str, started: datetime, delivery: Delivery | None = None
) -> Outcome:
    """A non-final status (queued, in_progress, running): remember when the deployment or run
    started; it is counted only when its final status arrives. A start arriving after the final
    status fills in a start time the stored event lacks."""
    now = time.time()

    def work(tx: Store) -> Outcome:
        if feeds.begin(tx, delivery):
            return Outcome(200, {"duplicate": True}, duplicate=True)
        found = feeds.key_row(tx, key)
        if found is not None and found[0] is not None:
            filled = fill_start(tx, kind, found[0], started.timestamp())
            outcome = Outcome(200, {"id": found[0], "updated": filled})
        else:
            first = feeds.remember_start(tx, key, kind, started.timestamp(), now)
            outcome = Outcome(200, {"started_at": iso_datetime(datetime.fromtimestamp(first, UTC))})
        feeds.accept(tx, delivery, now)
        return outcome

    return store.write(work)


def _ranks(
    tx: Store, component: str, stage: str | None, known: _Known, now: float
) -> tuple[int, bool, int]:
    """The order of first sight (cardinality rank) of the event's component and stage (new ones
    get the next); whether the component is new. 0 for the stage of a build."""
    component_rank, stage_rank = known.component_rank, known.stage_rank
    created = component_rank is None
    if component_rank is None:
        component_rank = _next_rank(tx, "components", "slug", component, now)
    if stage is not None and stage_rank is None:
        stage_rank = _next_rank(tx, "stages", "name", stage, now)
    return int(component_rank), created, int(stage_rank or 0)


def _next_rank(tx: Store, table: str, column: str, value: str, now: float) -> int:
    """Insert a new component or stage with the next rank (id) and return it.

    The rank is max + 1 under a lock on the table's ranks, not a sequence: a PostgreSQL
    sequence skips a value for every rolled-back or conflicting insert, and a gap would make
    `id <= max_components` export fewer components than the limit allows.
    """
    tx.lock("rank", table)
    row = tx.one(f"SELECT id FROM {table} WHERE {column} = ?", [value])  # pragma: no mutate
    if row is not None:  # another writer added it while this one waited for the lock
        return int(row[0])
    inserted = tx.one(
        f"INSERT INTO {table} (id, {column}, created_at) "  # pragma: no mutate
        f"SELECT coalesce(max(id), 0) + 1, ?, ? FROM {table} RETURNING id",  # pragma: no mutate
        [value, now],
    )
    assert inserted is not None  # INSERT ... RETURNING answers its row
    return int(inserted[0])


def _track_labels(
    tx: Store,
    component: str,
    stage: str | None,
    known: _Known,
    limits: Limits,
    outcome: Outcome,
    now: float,
) -> bool:
    """Rank the event's component (and stage: None for a build); count it when past the
    export limits."""
    rank, created, stage_rank = _ranks(tx, component, stage, known, now)
    if rank > limits.max_components:
        outcome.overflow.append("component")
    if stage is not None and stage_rank > limits.max_stages:
        outcome.overflow.append("stage")
    for dimension in outcome.overflow:
        tx.execute(
            "INSERT INTO overflow (dimension, count) VALUES (?, 1) "  # pragma: no mutate
            "ON CONFLICT(dimension) DO UPDATE SET count = overflow.count + 1",  # pragma: no mutate
            [dimension],
        )
    return created


def _insert(
    tx: Store,
    kind: str,
    component: str,
    event: dict[str, Any],
    event_id: str,
    forward: outbox.Router | None,
    now: float,
) -> dict[str, Any]:
    """Insert the event row; returns it (the aggregates are computed from the same values)."""
    finished: datetime = event["finished_at"]
    started: datetime | None = event.get("started_at")
    row: dict[str, Any] = {
        "id": event_id,
        "component": component,
        "version": event["version"],
        "result": event.get("result"),
        "result_class": event["result_class"],
        "started_at": iso_datetime(started) if started is not None else None,
        "finished_at": iso_datetime(finished),
        "finished_ts": finished.timestamp(),
        "duration_seconds": (finished - started).total_seconds() if started is not None else None,
        "commit_sha": event.get("commit_sha"),
        "code_name": event.get("code_name"),
        "branch": event.get("branch"),
        "tag": event.get("tag"),
        "meta_data": jsontext.dumps(event.get("meta_data") or {}),
        "received_at": now,
    }
    if kind == "deployment":
        row["stage"] = event.get("stage") or ""
        row["host"] = event.get("host")
        row["rollback"] = 1 if event.get("rollback") else 0  # a CDEvents service.rolledback
        commits = event.get("commits")
        row["commits"] = jsontext.dumps(commits) if commits is not None else None
        release = event.get("release")
        row["release_id"] = releases.ensure_release(tx, release, forward)[0] if release else None
    else:
        row["url"] = event.get("url")
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    tx.execute(f"INSERT INTO {TABLE[kind]} ({columns}) VALUES ({marks})", list(row.values()))
    return row


def _row_to_event(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "component": row["component"],
        "version": row["version"],
        "result": row["result"],
        "result_class": row["result_class"],
    }
    if kind == "deployment":
        out["stage"] = row["stage"]
        out["host"] = row["host"]
    out.update(
        {
            "code_name": row["code_name"],
            "started_at": row["started_at"],
            "finished_at": row["finished_at"],
            "duration_seconds": row["duration_seconds"],
            "meta_data": json.loads(row["meta_data"]),
            "commit_sha": row["commit_sha"],
            "tag": row["tag"],
            "branch": row["branch"],
        }
    )
    if kind == "deployment":
        out["release"] = row.get("release_name")
    else:
        out["url"] = row["url"]
    return out


def _select(kind: str) -> str:
    if kind == "deployment":
        return (
            "SELECT d.*, r.name AS release_name FROM deployments d "  # pragma: no mutate
            "LEFT JOIN releases r ON r.id = d.release_id"  # pragma: no mutate
        )
    return "SELECT d.* FROM builds d"  # pragma: no mutate


def get_event(store: Store, kind: str, component: str, event_id: str) -> dict[str, Any] | None:
    rows = store.query(
        _select(kind) + " WHERE d.component = ? AND d.id = ?",  # pragma: no mutate
        [component, event_id],
    )
    return _row_to_event(kind, rows[0]) if rows else None


# The list endpoints' filters and the condition each adds.
FILTERS = {
    "since": "d.finished_ts >= ?",
    "until": "d.finished_ts < ?",
    **{name: f"d.{name} = ?" for name in ("stage", "host", "version", "result", "result_class")},
}
NEWEST_FIRST = Keyset(columns=("d.finished_ts", "d.seq"), keys=("finished_ts", "seq"))


def list_events(
    store: Store,
    kind: str,
    *,
    component: str | None = None,
    filters: dict[str, Any] | None = None,
    release_id: str | None = None,
    limit: int = 50,
    after: Sequence[Any] | None = None,
) -> tuple[list[dict[str, Any]], tuple[Any, ...] | None]:
    """Newest first by finished_at; `after` is the (finished_ts, seq) cursor of the last row seen.

    Returns the page and the cursor of its last row when more rows follow.
    """
    rows, cursor = _rows(store, kind, component, filters, release_id, limit, after)
    return [_row_to_event(kind, r) for r in rows], cursor


def _rows(
    store: Store,
    kind: str,
    component: str | None,
    filters: dict[str, Any] | None,
    release_id: str | None,
    limit: int,
    after: Sequence[Any] | None,
) -> tuple[list[dict[str, Any]], tuple[Any, ...] | None]:
    """Stored rows of one list page (list_events without the API shape)."""
    where: list[str] = []
    params: list[Any] = []
    if component is not None:
        where.append("d.component = ?")
        params.append(component)
    if release_id is not None:
        where.append("d.release_id = ?")
        params.append(release_id)
    for column, value in (filters or {}).items():
        if column not in FILTERS:
            raise ValueError(f"unknown filter {column}")
        where.append(FILTERS[column])
        params.append(value)
    return page(
        store, _select(kind), NEWEST_FIRST, where=where, params=params, after=after, limit=limit
    )


# The status page's feed: deployments and builds in one list, newest first. At equal finished
# times deployments come before builds (their rank is higher), then newer rows (higher seq).
KIND_RANK = {"deployment": 1, "build": 0}
_AFTER_ANY_SEQ = 2**62  # larger than any seq: "every row of this time"


def list_recent(
    store: Store,
    kinds: Sequence[str] = ("deployment", "build"),
    *,
    component: str | None = None,
    filters: dict[str, Any] | None = None,
    limit: int = 50,
    after: Sequence[Any] | None = None,
) -> tuple[list[dict[str, Any]], tuple[Any, ...] | None]:
    """Deployments and builds merged newest first; `after` is the (finished_ts, kind rank, seq)
    cursor of the last row seen. Each table is read by the same keyset as list_events, from
    the position the merged cursor implies for it, so a page costs two index walks.

    Rows are list_events' shape plus `kind` and `finished_ts`; returns the cursor of the last
    row when more rows follow.
    """
    found: list[tuple[float, int, int, dict[str, Any]]] = []
    more = False
    for kind in kinds:
        rank = KIND_RANK[kind]
        table_after = None
        if after is not None:
            ts, after_rank, seq = after
            if rank < after_rank:
                seq = _AFTER_ANY_SEQ
            elif rank > after_rank:
                seq = -1
            table_after = (ts, seq)
        rows, cursor = _rows(store, kind, component, filters, None, limit, table_after)
        more = more or cursor is not None
        found.extend(
            (r["finished_ts"], rank, r["seq"], {**_row_to_event(kind, r), "kind": kind})
            for r in rows
        )
    found.sort(key=lambda item: item[:3], reverse=True)
    more = more or len(found) > limit
    shown = found[:limit]
    for ts, _, _, row in shown:
        row["finished_ts"] = ts
    return [row for *_, row in shown], (tuple(shown[-1][:3]) if more and shown else None)
