"""Rollouts, maintained in each deployment's transaction, and the rows /metrics reads for the
DORA keys.

A rollout is a version reaching a component and stage: successful deployments in `finished_at`
order; one whose version differs from the version current just before it starts a rollout,
more hosts with the same version join it. Its time is its first deployment's `finished_at`.
In-order deployments extend the newest rollout or append one (O(1)); a late one rebuilds the
series from the rollout that was current at its time. Incidents link to a deployment when they
arrive (the one they name, else the first of the rollout current when they started) and never
move. Change failures, recoveries and windows are computed at read time from these rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage import aggregates
from storage.db import Store
from storage.ids import new_id

# DORA's answer bands (1 h, 1 d, 1 w, 30 d, 180 d) and a few between, in seconds.
DORA_BUCKETS: tuple[float, ...] = (
    600.0, 3600.0, 14400.0, 86400.0, 259200.0, 604800.0, 1209600.0, 2592000.0, 7776000.0,
    15552000.0,
)  # fmt: skip
LEAD_TIME, RECOVERY_TIME = "lead_time", "recovery_time"
MAX_COMMITS = 1000  # per deployment's `commits` field, and per walk back through pushed commits
_SUCCESS_COLUMNS = "id, version, commit_sha, finished_ts, rollback, commits"


@dataclass(frozen=True)
class Rollout:
    """A rollout with what its change-failure status depends on."""

    id: str
    version: str
    ts: float
    is_rollback: bool
    crash_failure_ts: float | None
    incidents: int  # linked incidents
    unresolved: int  # ... of which not resolved
    last_resolved_ts: float | None
    recovery_observed: bool = False


# --- maintenance at ingest -----------------------------------------------------------------------


# The newest rollout of a series, with what an in-order deployment needs to know besides, in one
# statement (issue 16: DORA upkeep was 8 statements per production deployment): whether an
# incident is linked to it, whether the deployment's version was rolled out before its time
# (a rollback), and whether its commit was pushed (else there are no commits to walk back).
_NEWEST = (
    "SELECT l.id, l.version, l.last_ts, l.commit_sha, l.crash_failure_ts, "
    "EXISTS (SELECT 1 FROM rollout_members m JOIN incidents i "
    "ON i.link_deployment_id = m.deployment_id WHERE m.rollout_id = l.id), "
    "EXISTS (SELECT 1 FROM rollouts WHERE component = ? AND stage = ? AND version = ? "
    "AND ts < ?), "
    "EXISTS (SELECT 1 FROM commits WHERE component = ? AND sha = ?) "
    "FROM rollouts l WHERE l.component = ? AND l.stage = ? ORDER BY l.ts DESC LIMIT 1"
)


def on_deployment(
    tx: Store, row: dict[str, Any], commits: list[dict[str, Any]] | None, now: float
) -> None:
    """A stored successful deployment of a DORA stage: extend, append or rebuild rollouts."""
    component, stage, ts = row["component"], row["stage"], row["finished_ts"]
    last = tx.one(
        _NEWEST,
        [component, stage, row["version"], ts, component, row.get("commit_sha"), component, stage],
    )
    if last is not None and ts < last[2]:
        rebuild_from(tx, component, stage, ts, now)
        return
    if last is not None and last[1] == row["version"]:
        _join(tx, last[0], component, stage, row["id"], ts, commits)
        if not commits:
            return  # another host of the same rollout: no DORA value changes
    else:
        if commits is None and last is not None and not last[7]:
            commits = []  # its commit was never pushed: nothing to walk back (no lead time)
        # No rollout yet: no earlier one of its version (not a rollback), nothing before it.
        seen = bool(last[6]) if last is not None else False
        rollout, rolled_back = _start(
            tx, component, stage, row, last[3] if last else None, commits, {}, seen=seen
        )
        # Only a failure just before it can have ended here: skip the look back otherwise.
        if last is not None and (last[4] is not None or rolled_back or last[5]):
            observe_recoveries(tx, component, stage, rollout, now)
    bump(tx, component, stage)


def _start(
    tx: Store,
    component: str,
    stage: str,
    d: dict[str, Any],
    previous_sha: str | None,
    commits: list[dict[str, Any]] | None,
    inherit: dict[str, dict[str, Any]],
    *,
    seen: bool | None = None,
) -> tuple[str, bool]:
    """A new rollout from deployment `d` (inheriting the id and marks of a rebuilt one): its id
    and whether it is a rollback. `seen`: whether its version was rolled out before `d`'s time,
    when the caller already knows."""
    if seen is None:
        seen = (
            tx.one(
                "SELECT 1 FROM rollouts WHERE component = ? AND stage = ? AND version = ? "
                "AND ts < ? LIMIT 1",
                [component, stage, d["version"], d["finished_ts"]],
            )
            is not None
        )
    old = inherit.pop(d["id"], None) or {}
    rollout_id = old.get("id") or new_id()
    rollback = bool(seen or d.get("rollback"))
    tx.execute(
        "INSERT INTO rollouts (id, component, stage, version, commit_sha, ts, last_ts, "
        "first_deployment_id, is_rollback, crash_failure_ts, recovery_observed) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            rollout_id, component, stage, d["version"], d.get("commit_sha"), d["finished_ts"],
            d["finished_ts"], d["id"], 1 if rollback else 0,
            old.get("crash_failure_ts"), old.get("recovery_observed", 0),
        ],
    )  # fmt: skip
    tx.execute(
        "INSERT INTO rollout_members (deployment_id, rollout_id) VALUES (?, ?)",
        [d["id"], rollout_id],
    )
    if commits is None:
        commits = _walk_back(tx, component, d.get("commit_sha"), previous_sha)
    _bring(tx, component, stage, rollout_id, d["finished_ts"], commits)
    return rollout_id, rollback


def _join(
    tx: Store,
    rollout_id: str,
    component: str,
    stage: str,
    deployment_id: str,
    ts: float,
    commits: list[dict[str, Any]] | None,
) -> None:
    """Another host deploying the rollout's version."""
    tx.execute(
        "INSERT INTO rollout_members (deployment_id, rollout_id) VALUES (?, ?) "
        "ON CONFLICT(deployment_id) DO NOTHING",
        [deployment_id, rollout_id],
    )
    tx.execute("UPDATE rollouts SET last_ts = ? WHERE id = ? AND last_ts < ?", [ts, rollout_id, ts])
    if commits:
        found = tx.one("SELECT ts FROM rollouts WHERE id = ?", [rollout_id])
        assert found is not None
        _bring(tx, component, stage, rollout_id, found[0], commits)


def _walk_back(
    tx: Store, component: str, sha: str | None, stop: str | None
) -> list[dict[str, Any]]:
    """Pushed commits from `sha` back to (not including) `stop`, following each commit's
    parent in its push; nothing when `sha` was never pushed (no lead time, never a guess)."""
    out: list[dict[str, Any]] = []
    while sha and sha != stop and len(out) < MAX_COMMITS:
        row = tx.one(
            "SELECT parent_sha, committed_ts FROM commits WHERE component = ? AND sha = ?",
            [component, sha],
        )
        if row is None:
            break
        out.append({"sha": sha, "ts": row[1]})
        sha = row[0]
    return out


def _bring(
    tx: Store, component: str, stage: str, rollout_id: str, ts: float, commits: Sequence[Any]
) -> None:
    """Record the commits this rollout brings to the stage for the first time; each positive
    lead time is observed once in the lead-time histogram."""
    for c in commits:
        lead = ts - float(c["ts"])
        cursor = tx.execute(
            "INSERT INTO rollout_commits (component, stage, sha, rollout_id, lead_seconds) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(component, stage, sha) DO NOTHING",
            [component, stage, c["sha"], rollout_id, lead],
        )
        if cursor.rowcount != 1 or lead <= 0:
            continue
        first = tx.execute(
            "INSERT INTO lead_time_observed (component, stage, sha) VALUES (?, ?, ?) "
            "ON CONFLICT(component, stage, sha) DO NOTHING",
            [component, stage, c["sha"]],
        )
        if first.rowcount == 1:
            aggregates.add_duration(tx, LEAD_TIME, component, stage, lead, DORA_BUCKETS)


def rebuild_from(tx: Store, component: str, stage: str, ts: float, now: float) -> None:
    """Rebuild a series' rollouts from the one current at `ts` (a late deployment)."""
    r0 = tx.one(
        "SELECT ts FROM rollouts WHERE component = ? AND stage = ? AND ts <= ? "
        "ORDER BY ts DESC LIMIT 1",
        [component, stage, ts],
    )
    start = r0[0] if r0 else -math.inf
    before = tx.one(
        "SELECT id, version, commit_sha FROM rollouts WHERE component = ? AND stage = ? "
        "AND ts < ? ORDER BY ts DESC LIMIT 1",
        [component, stage, start],
    )
    old = tx.query(
        "SELECT r.*, m.deployment_id AS member FROM rollouts r "
        "JOIN rollout_members m ON m.rollout_id = r.id "
        "WHERE r.component = ? AND r.stage = ? AND r.ts >= ?",
        [component, stage, start],
    )
    inherit = {row["member"]: row for row in old}  # any member carries its old rollout's marks
    for rollout_id in {row["id"] for row in old}:
        tx.execute("DELETE FROM rollout_commits WHERE rollout_id = ?", [rollout_id])
        tx.execute("DELETE FROM rollout_members WHERE rollout_id = ?", [rollout_id])
        tx.execute("DELETE FROM rollouts WHERE id = ?", [rollout_id])
    # (rollout id, version, commit sha) of the rollout current before the next deployment
    current: tuple[str, str, str | None] | None = (
        (before[0], before[1], before[2]) if before else None
    )
    created: list[str] = []
    for d in tx.query(
        f"SELECT {_SUCCESS_COLUMNS} FROM deployments WHERE component = ? AND stage = ? "
        "AND result_class = 'success' AND finished_ts >= ? ORDER BY finished_ts, seq",
        [component, stage, start],
    ):
        commits = json.loads(d["commits"]) if d["commits"] else None
        if current is not None and current[1] == d["version"]:
            _join(tx, current[0], component, stage, d["id"], d["finished_ts"], commits)
            continue
        previous = current[2] if current else None
        rollout_id, _ = _start(tx, component, stage, d, previous, commits, _claim(inherit, d["id"]))
        current = (rollout_id, d["version"], d["commit_sha"])
        created.append(rollout_id)
    for rollout_id in created:
        observe_recoveries(tx, component, stage, rollout_id, now)
    bump(tx, component, stage)


def _claim(inherit: dict[str, dict[str, Any]], deployment_id: str) -> dict[str, dict[str, Any]]:
    """The old rollout `deployment_id` belonged to, once: later members start fresh."""
    row = inherit.get(deployment_id)
    if row is None:
        return {}
    for member in [m for m, r in inherit.items() if r["id"] == row["id"]]:
        del inherit[member]
    return {deployment_id: row}


def bump(tx: Store, component: str, stage: str) -> None:
    """The series' DORA rows changed: scrapes recompute it."""
    tx.execute(
        "INSERT INTO dora_generations (component, stage, gen) VALUES (?, ?, 1) "
        "ON CONFLICT(component, stage) DO UPDATE SET gen = dora_generations.gen + 1",
        [component, stage],
    )


# --- change failures and recoveries ---------------------------------------------------------------

_ROLLOUT = (
    "SELECT r.id, r.version, r.ts, r.is_rollback, r.crash_failure_ts, r.recovery_observed, "
    "count(i.id) AS incidents, "
    "coalesce(sum(CASE WHEN i.id IS NOT NULL AND i.resolved_ts IS NULL THEN 1 ELSE 0 END), 0) "
    "AS unresolved, max(i.resolved_ts) AS last_resolved_ts "
    "FROM {rollouts}LEFT JOIN rollout_members m ON m.rollout_id = r.id "
    "LEFT JOIN incidents i ON i.link_deployment_id = m.deployment_id "
)
# Every column of r: a subquery has no primary key to group by (PostgreSQL insists).
_ROLLOUT_GROUP = (
    "GROUP BY r.id, r.version, r.ts, r.is_rollback, r.crash_failure_ts, r.recovery_observed"
)


def _rollouts(
    tx: Store, where: str, params: Sequence[Any], *, newest: int | None = None, oldest: int = -1
) -> list[Rollout]:
    """Rollouts matching `where`, oldest first: the `oldest` N (-1: all), or the `newest` N."""
    order = " ORDER BY r.ts, r.id"
    limit = f" LIMIT {int(oldest)}" if oldest >= 0 else ""
    if newest is not None:
        order, limit = " ORDER BY r.ts DESC, r.id DESC", f" LIMIT {int(newest)}"
    # The N rollouts first, then their incidents: joining and grouping the whole series before
    # the LIMIT cost ~2 ms per deployment after a failure once a series had a few hundred
    # rollouts, and grew with it (benchmarks/README.md, issue 16).
    chosen = f"(SELECT * FROM rollouts r WHERE {where}{order}{limit}) r "
    rows = tx.query(_ROLLOUT.format(rollouts=chosen) + _ROLLOUT_GROUP + order, params)
    if newest is not None:
        rows.reverse()
    return [
        Rollout(
            id=r["id"],
            version=r["version"],
            ts=r["ts"],
            is_rollback=bool(r["is_rollback"]),
            crash_failure_ts=r["crash_failure_ts"],
            incidents=r["incidents"],
            unresolved=r["unresolved"],
            last_resolved_ts=r["last_resolved_ts"],
            recovery_observed=bool(r["recovery_observed"]),
        )
        for r in rows
    ]


def series(tx: Store, component: str, stage: str, since: float) -> list[Rollout]:
    """Rollouts of a series from `since` on, plus the one just before (whose failure a rollout
    in the window may have ended), oldest first."""
    before = tx.one(
        "SELECT ts FROM rollouts WHERE component = ? AND stage = ? AND ts < ? "
        "ORDER BY ts DESC LIMIT 1",
        [component, stage, since],
    )
    start = before[0] if before else since
    return _rollouts(tx, "r.component = ? AND r.stage = ? AND r.ts >= ?", [component, stage, start])


def failures(rollouts: Sequence[Rollout]) -> list[bool]:
    """Change failure of each rollout of a consecutive run (the last one's successor unknown:
    none yet): rolled back by the next one, or an incident linked, or crash-free below critical."""
    out = []
    for i, r in enumerate(rollouts):
        rolled_back = i + 1 < len(rollouts) and rollouts[i + 1].is_rollback
        out.append(rolled_back or r.incidents > 0 or r.crash_failure_ts is not None)
    return out


def recovered_at(rollouts: Sequence[Rollout], failed: Sequence[bool], i: int) -> float | None:
    """When change failure i recovered: the earlier of (a) the next rollout that is not itself a
    change failure and (b) the resolution of its linked incidents (the last, once all are)."""
    ends = [r.ts for r, f in zip(rollouts[i + 1 :], failed[i + 1 :], strict=True) if not f][:1]
    r = rollouts[i]
    if r.incidents and not r.unresolved and r.last_resolved_ts is not None:
        ends.append(r.last_resolved_ts)
    return min(ends) if ends else None


def observe_recoveries(tx: Store, component: str, stage: str, rollout_id: str, now: float) -> None:
    """Count in the recovery histogram, once each, the change failures that a change at
    `rollout_id` (a new rollout, a rollback, a resolved incident) may have ended: it and the
    failures before it (the newest 50 rollouts up to it, with 50 after it to look ahead)."""
    anchor = tx.one("SELECT ts FROM rollouts WHERE id = ?", [rollout_id])
    if anchor is None:
        return
    where = "r.component = ? AND r.stage = ? AND r.ts "
    upto = _rollouts(tx, where + "<= ?", [component, stage, anchor[0]], newest=50)
    later = _rollouts(tx, where + "> ?", [component, stage, anchor[0]], oldest=50)
    rows = [*upto, *later]
    failed = failures(rows)
    for i, r in enumerate(upto):
        if r.recovery_observed or not failed[i]:
            continue
        end = recovered_at(rows, failed, i)
        if end is None or end > now:
            continue
        tx.execute("UPDATE rollouts SET recovery_observed = 1 WHERE id = ?", [r.id])
        aggregates.add_duration(
            tx, RECOVERY_TIME, component, stage, max(end - r.ts, 0.0), DORA_BUCKETS
        )


# --- incidents and crash-free marks ------------------------------------------------------------------


def link_incident(
    tx: Store, component: str, stage: str, started_ts: float, deployment_id: str | None
) -> str | None:
    """The deployment an arriving incident is linked to, for good: the one it names when that
    deployment is part of a rollout, else the first deployment of the rollout current on the
    component and stage when it started; None when no rollout was current."""
    if deployment_id:
        named = tx.one(
            "SELECT m.deployment_id FROM rollout_members m JOIN rollouts r ON r.id = m.rollout_id "
            "WHERE m.deployment_id = ? AND r.component = ?",
            [deployment_id, component],
        )
        if named is not None:
            return str(named[0])
    current = tx.one(
        "SELECT first_deployment_id FROM rollouts WHERE component = ? AND stage = ? AND ts <= ? "
        "ORDER BY ts DESC LIMIT 1",
        [component, stage, started_ts],
    )
    return str(current[0]) if current else None


def incident_changed(tx: Store, link_deployment_id: str | None, now: float) -> None:
    """An incident linked to `link_deployment_id` arrived or was resolved."""
    if link_deployment_id is None:
        return
    row = tx.one(
        "SELECT r.id, r.component, r.stage FROM rollout_members m "
        "JOIN rollouts r ON r.id = m.rollout_id WHERE m.deployment_id = ?",
        [link_deployment_id],
    )
    if row is None:
        return
    observe_recoveries(tx, row[1], row[2], row[0], now)
    # A failure ended by a later rollout is observed from that rollout's anchor.
    nxt = tx.one(
        "SELECT id FROM rollouts WHERE component = ? AND stage = ? AND ts > "
        "(SELECT ts FROM rollouts WHERE id = ?) ORDER BY ts LIMIT 1",
        [row[1], row[2], row[0]],
    )
    if nxt is not None:
        observe_recoveries(tx, row[1], row[2], nxt[0], now)
    bump(tx, row[1], row[2])


def mark_crash_failure(tx: Store, component: str, stage: str, version: str, now: float) -> bool:
    """The current rollout of `version` was polled below its critical stability: a change
    failure (marked once). False when that version is no longer the newest rollout."""
    tx.lock("component", component)
    row = tx.one(
        "SELECT id, version, crash_failure_ts FROM rollouts WHERE component = ? AND stage = ? "
        "ORDER BY ts DESC LIMIT 1",
        [component, stage],
    )
    if row is None or row[1] != version or row[2] is not None:
        return False
    tx.execute("UPDATE rollouts SET crash_failure_ts = ? WHERE id = ?", [now, row[0]])
    bump(tx, component, stage)
    return True


# --- reads for /metrics -----------------------------------------------------------------------------


def generations(
    store: Store, *, max_components: int, max_stages: int
) -> dict[tuple[str, str], int]:
    """Every series with rollouts (within the label limits) and its change generation."""
    rows = store.query(
        "SELECT g.component, g.stage, g.gen FROM dora_generations g "
        "JOIN components c ON c.slug = g.component AND c.id <= ? "
        "JOIN stages s ON s.name = g.stage AND s.id <= ? ORDER BY g.component, g.stage",
        [max_components, max_stages],
    )
    return {(r["component"], r["stage"]): r["gen"] for r in rows}


def lead_times(store: Store, component: str, stage: str, since: float) -> list[tuple[float, float]]:
    """(rollout time, lead seconds) of the commits rollouts since `since` brought (> 0 only)."""
    rows = store.query(
        "SELECT r.ts, c.lead_seconds FROM rollouts r JOIN rollout_commits c ON c.rollout_id = r.id "
        "WHERE r.component = ? AND r.stage = ? AND r.ts >= ? AND c.lead_seconds > 0",
        [component, stage, since],
    )
    return [(r["ts"], r["lead_seconds"]) for r in rows]


def histograms(store: Store, *, max_components: int, max_stages: int) -> list[dict[str, Any]]:
    """The lead-time and recovery-time histogram rows (per-bucket counts) within the limits."""
    rows = store.query(
        "SELECT t.* FROM duration_stats t JOIN components c ON c.slug = t.component AND c.id <= ? "
        "JOIN stages s ON s.name = t.stage AND s.id <= ? WHERE t.kind IN (?, ?) "
        "ORDER BY t.kind, t.component, t.stage",
        [max_components, max_stages, LEAD_TIME, RECOVERY_TIME],
    )
    for row in rows:
        row["buckets"] = json.loads(row["buckets"])
    return rows


def rollouts_since(store: Store, component: str, stage: str, since: float) -> int:
    """Rollouts of a series with their time at or after `since` (the deployments badge)."""
    row = store.one(
        "SELECT count(*) FROM rollouts WHERE component = ? AND stage = ? AND ts >= ?",
        [component, stage, since],
    )
    return int(row[0]) if row else 0
