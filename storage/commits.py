"""Commits pushed to a component's repository (GitHub and GitLab push webhooks), kept for the
change lead time of the deployments that bring them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.db import Store


@dataclass(frozen=True)
class Commit:
    """A pushed commit: its sha, the commit before it in the push, its time and branch."""

    sha: str
    parent_sha: str | None
    committed_ts: float
    branch: str | None


def store_commits(tx: Store, component: str, commits: Sequence[Commit], now: float) -> int:
    """Insert the commits not known yet (a commit pushed again, to another branch or by a
    redelivery, keeps its first record); returns how many were new."""
    new = 0
    for c in commits:
        cursor = tx.execute(
            "INSERT INTO commits (component, sha, parent_sha, committed_ts, branch, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(component, sha) DO NOTHING",
            [component, c.sha, c.parent_sha, c.committed_ts, c.branch, now],
        )
        new += cursor.rowcount
    return new


def get_commit(store: Store, component: str, sha: str) -> Commit | None:
    row = store.one(
        "SELECT sha, parent_sha, committed_ts, branch FROM commits WHERE component = ? AND sha = ?",
        [component, sha],
    )
    return Commit(row[0], row[1], row[2], row[3]) if row else None
