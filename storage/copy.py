"""Copying a whole SQLite store into another store (`releasebits migrate-db`): every table, parents
before the tables whose foreign keys name them, in one transaction on the target (a failed copy
leaves nothing behind), then every table counted on both sides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from storage.sqlite import SqliteStore
from storage.store import StorageError, Store

BATCH = 5000
# Bookkeeping of the migration runners, not data: each store keeps its own.
_INTERNAL = {"_sqlite_migrations", "sqlite_sequence", "_releasebits_migrations"}

Progress = Callable[[str, int, int], None]  # (table, rows copied so far, rows in the table)


class TargetNotEmpty(StorageError):
    """The target already holds rows (copy only into a new database, or pass replace=True)."""


@dataclass(frozen=True)
class Count:
    """Rows of one table in the source and, after the copy, in the target."""

    table: str
    source: int
    target: int


def tables_in_order(source: SqliteStore) -> list[str]:
    """The source's data tables, each after the tables its foreign keys reference."""
    names = sorted(set(source.table_names()) - _INTERNAL)
    parents = {
        t: {str(r[2]) for r in source.execute(f"PRAGMA foreign_key_list({t})")} - {t} for t in names
    }
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [t for t in names if t not in ordered and parents[t] <= set(ordered)]
        if not ready:
            raise StorageError(
                f"foreign keys form a cycle among {sorted(set(names) - set(ordered))}"
            )
        ordered.extend(ready)
    return ordered


def _columns(source: SqliteStore, table: str) -> list[str]:
    return [str(r[1]) for r in source.execute(f"PRAGMA table_info({table})")]


def count(store: Store, table: str) -> int:
    row = store.one(f"SELECT count(*) FROM {table}")
    return int(row[0]) if row else 0


def copy_store(
    source: SqliteStore,
    target: Store,
    *,
    replace: bool = False,
    progress: Progress | None = None,
) -> list[Count]:
    """Copy every row of `source` into `target` (both migrated to the same schema) and count
    both sides afterwards. Refuses a target that holds rows unless `replace`, which deletes
    them first (in the same transaction)."""
    order = tables_in_order(source)
    missing = sorted(set(order) - set(target.table_names()))
    if missing:
        raise StorageError(f"the target has no table {missing[0]} (not migrated?)")
    occupied = [t for t in order if target.one(f"SELECT 1 FROM {t} LIMIT 1") is not None]
    if occupied and not replace:
        raise TargetNotEmpty(f"the target already holds rows (in {', '.join(occupied[:5])})")
    with source.snapshot(), target.transaction():
        for table in reversed(order) if replace else ():
            target.execute(f"DELETE FROM {table}")
        for table in order:
            _copy_table(source, target, table, progress)
        target.reset_identities()
    return [Count(t, count(source, t), count(target, t)) for t in order]


def _copy_table(source: SqliteStore, target: Store, table: str, progress: Progress | None) -> None:
    columns = _columns(source, table)
    total, done, after = count(source, table), 0, -(2**63)
    select = (
        f"SELECT rowid, {', '.join(columns)} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?"
    )
    while True:
        rows = source.execute(select, [after, BATCH]).fetchall()
        if not rows:
            break
        target.insert_rows(table, columns, [row[1:] for row in rows])
        done, after = done + len(rows), rows[-1][0]
        if progress is not None:
            progress(table, done, total)
    if progress is not None and total == 0:
        progress(table, 0, 0)
