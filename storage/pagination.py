"""Keyset pagination, once for every list: `limit + 1` rows tell whether a next page exists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.db import Store


@dataclass(frozen=True)
class Keyset:
    """The order of a list: SQL expressions, the row keys holding their values, and direction.

    The cursor of a page is the key values of its last row: the next page starts strictly
    after it, so rows sharing a timestamp are neither skipped nor repeated (the last column
    must be unique).
    """

    columns: tuple[str, ...]
    keys: tuple[str, ...]
    descending: bool = True

    def order_by(self) -> str:
        direction = " DESC" if self.descending else ""
        return ", ".join(column + direction for column in self.columns)

    def after(self, cursor: Sequence[Any]) -> tuple[str, list[Any]]:
        """The WHERE term (a row-value comparison) and its parameters for rows after `cursor`."""
        op = "<" if self.descending else ">"
        marks = ", ".join("?" for _ in self.columns)
        return f"({', '.join(self.columns)}) {op} ({marks})", list(cursor)


def page(
    store: Store,
    select: str,
    keyset: Keyset,
    *,
    where: Sequence[str] = (),
    params: Sequence[Any] = (),
    after: Sequence[Any] | None = None,
    limit: int,
) -> tuple[list[dict[str, Any]], tuple[Any, ...] | None]:
    """Up to `limit` rows of `select` in keyset order after the cursor `after`.

    Returns the rows and the cursor of the last one when more rows follow, else None.
    """
    terms, values = list(where), list(params)
    if after is not None:
        term, cursor_values = keyset.after(after)
        terms.append(term)
        values.extend(cursor_values)
    sql = select
    if terms:
        sql += " WHERE " + " AND ".join(terms)  # pragma: no mutate
    sql += f" ORDER BY {keyset.order_by()} LIMIT ?"
    rows = store.query(sql, [*values, limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = tuple(rows[-1][key] for key in keyset.keys) if more and rows else None
    return rows, cursor
