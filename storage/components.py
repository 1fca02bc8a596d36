"""Components: list and detail, with the current version per stage and the last build."""

from __future__ import annotations

from typing import Any

from storage.db import Store
from storage.pagination import Keyset, page
from storage.timestamps import iso_ts

BY_SLUG = Keyset(columns=("slug",), keys=("slug",), descending=False)


def _summaries(db: Store, slugs: list[str]) -> list[dict[str, Any]]:
    if not slugs:
        return []
    marks = ",".join("?" for _ in slugs)
    by_slug: dict[str, dict[str, Any]] = {
        s: {
            "slug": s,
            "stages": {},
            "deployments_count": 0,
            "builds_count": 0,
            "last_build": None,
        }
        for s in slugs
    }
    for row in db.query(
        f"SELECT * FROM current_versions WHERE component IN ({marks}) ORDER BY stage",
        slugs,
    ):
        by_slug[row["component"]]["stages"][row["stage"]] = {
            "version": row["version"],
            "commit_sha": row["commit_sha"],
            "deployment_id": row["deployment_id"],
            "deployed_at": iso_ts(row["finished_ts"]),
            "since": iso_ts(row["since_ts"]),
        }
    for row in db.query(
        f"SELECT component, kind, sum(count) AS n FROM event_stats "
        f"WHERE component IN ({marks}) GROUP BY component, kind",
        slugs,
    ):
        by_slug[row["component"]][f"{row['kind']}s_count"] = row["n"]
    for row in db.query(f"SELECT * FROM last_builds WHERE component IN ({marks})", slugs):
        by_slug[row["component"]]["last_build"] = {
            "id": row["build_id"],
            "version": row["version"],
            "result": row["result"],
            "result_class": row["result_class"],
            "finished_at": iso_ts(row["finished_ts"]),
        }
    return [by_slug[s] for s in slugs]


def list_components(
    store: Store, *, limit: int = 100, after: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Components ordered by slug; returns the page and the next cursor (a slug) if any."""
    rows, cursor = page(
        store,
        "SELECT slug FROM components",
        BY_SLUG,
        after=(after,) if after is not None else None,
        limit=limit,
    )
    return _summaries(store, [r["slug"] for r in rows]), (cursor[0] if cursor else None)


def get_component(db: Store, slug: str) -> dict[str, Any] | None:
    row = db.execute("SELECT slug, created_at FROM components WHERE slug = ?", [slug]).fetchone()
    if row is None:
        return None
    summary = _summaries(db, [slug])[0]
    summary["created_at"] = iso_ts(row[1])
    return summary


def current_version(db: Store, slug: str, stage: str) -> dict[str, Any] | None:
    rows = db.query(
        "SELECT * FROM current_versions WHERE component = ? AND stage = ?", [slug, stage]
    )
    return rows[0] if rows else None


def current_versions_of(db: Store, slugs: list[str]) -> list[dict[str, Any]]:
    """Current version rows of the given components, every stage."""
    if not slugs:
        return []
    marks = ", ".join("?" for _ in slugs)
    return db.query(
        f"SELECT * FROM current_versions WHERE component IN ({marks}) ORDER BY component, stage",
        slugs,
    )


def previous_version(
    db: Store, slug: str, stage: str, current: str, before_ts: float
) -> str | None:
    """The version successfully deployed to component/stage before `current` became current."""
    row = db.execute(
        "SELECT version FROM deployments WHERE component = ? AND stage = ? "
        "AND result_class = 'success' AND version != ? AND finished_ts <= ? "
        "ORDER BY finished_ts DESC LIMIT 1",
        [slug, stage, current, before_ts],
    ).fetchone()
    return str(row[0]) if row else None


def last_build(db: Store, slug: str) -> dict[str, Any] | None:
    rows = db.query("SELECT * FROM last_builds WHERE component = ?", [slug])
    return rows[0] if rows else None


def exists(db: Store, slug: str) -> bool:
    return db.execute("SELECT 1 FROM components WHERE slug = ?", [slug]).fetchone() is not None


def has_stage(db: Store, slug: str, stage: str) -> bool:
    """Whether any deployment of the component, whatever its result, went to `stage`."""
    row = db.execute(
        "SELECT 1 FROM deployments WHERE component = ? AND stage = ? LIMIT 1", [slug, stage]
    ).fetchone()
    return row is not None


def versions_deployed_since(db: Store, slug: str, stage: str, since_ts: float) -> int:
    """Distinct versions successfully deployed to component/stage since `since_ts`.

    Deployments are recorded per host, so counting rows would make one rollout to ten hosts
    look like ten deployments; a version counts once however many hosts it reached.
    """
    row = db.execute(
        "SELECT count(DISTINCT version) FROM deployments WHERE component = ? AND stage = ? "
        "AND finished_ts >= ? AND result_class = 'success'",
        [slug, stage, since_ts],
    ).fetchone()
    return int(row[0])


def stage_order(db: Store) -> list[str]:
    """Stage names in the order they were first seen (usually the order of the pipeline)."""
    return [str(r[0]) for r in db.execute("SELECT name FROM stages ORDER BY id").fetchall()]


def version_changes(db: Store, slug: str, *, per_stage: int = 20) -> list[dict[str, Any]]:
    """When the current version of each stage changed, newest first, at most `per_stage` each.

    A change is a successful deployment of a version other than the one deployed before it by
    finished time: the order `current_versions` follows, so the newest change of a stage is its
    current version and `since_ts`.
    """
    return db.query(
        "SELECT stage, version, commit_sha, finished_ts FROM ("
        " SELECT *, row_number() OVER (PARTITION BY stage ORDER BY finished_ts DESC, seq DESC)"
        " AS n FROM ("
        "  SELECT stage, version, commit_sha, finished_ts, seq, lag(version) OVER"
        "  (PARTITION BY stage ORDER BY finished_ts, seq) AS before FROM deployments"
        "  WHERE component = ? AND result_class = 'success') AS ordered"
        " WHERE before IS NULL OR before != version) AS changes"
        " WHERE n <= ? ORDER BY stage, finished_ts DESC, seq DESC",
        [slug, per_stage],
    )


def slugs(db: Store, *, limit: int) -> list[str]:
    """Component slugs in name order, at most `limit`."""
    rows = db.execute("SELECT slug FROM components ORDER BY slug LIMIT ?", [limit]).fetchall()
    return [str(r[0]) for r in rows]
