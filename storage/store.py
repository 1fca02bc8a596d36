"""The `Store`: the one handle every storage function takes, whatever the database behind it.

Storage modules write SQL against a `Store` and nothing else: `execute`, `query`, `one`, `write`
(a committed write transaction), `transaction` (a plain write transaction), `snapshot` (one
consistent read) and `lock` (serialise a read-then-write section across processes). Queries are
written once, with `?` and `:name` placeholders, in the SQL both SQLite and PostgreSQL speak;
`storage.sqlite` and `storage.postgres` implement the seam, `storage.db` opens the right one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol, TypeVar

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]


class StorageError(Exception):
    """The database could not be opened or used."""


class Cursor(Protocol):
    """What `Store.execute` answers: the rows of the statement and how many rows it changed."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Store:
    """One handle on the database, used by one thread at a time (`thread_store` keeps one per
    thread). Subclasses: `SqliteStore` (one file, one writer) and `PostgresStore` (a shared
    server, many writers)."""

    dialect: ClassVar[str]
    # Appended to a SELECT that claims rows (the outbox): on PostgreSQL a concurrent claimer
    # skips rows another transaction is claiming instead of waiting for them.
    skip_locked: ClassVar[str] = ""
    location: str  # what open_db was given: a file path or a postgresql:// URL

    # --- statements ------------------------------------------------------------------------

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def query(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """Every row of a SELECT as a dict keyed by column name."""
        raise NotImplementedError

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Many rows at once (copying a store); PostgreSQL uses COPY."""
        marks = ", ".join("?" for _ in columns)
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def reset_identities(self) -> None:
        """After rows were inserted with their own ids: make generated ids continue after
        them (SQLite's AUTOINCREMENT does that by itself)."""

    def one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row of a SELECT as a tuple, or None."""
        row = self.execute(sql, params).fetchone()
        return tuple(row) if row is not None else None

    # --- transactions ----------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        raise NotImplementedError

    def write(self, fn: Callable[[Store], T]) -> T:
        """`fn(store)` in a committed write transaction; `fn` must use only the store it is
        given (SQLite may run it on another thread's connection, PostgreSQL may run it again
        after a serialization failure)."""
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[Store]:
        """A write transaction: committed at the end of the block, rolled back on an error."""
        raise NotImplementedError

    def snapshot(self) -> AbstractContextManager[Store]:
        """One read transaction: every query inside sees the same committed state."""
        raise NotImplementedError

    def lock(self, *key: str) -> None:
        """Inside a write transaction: hold `key` (e.g. "component", slug) until it ends, so
        the read-then-write steps that follow cannot interleave with another writer's on the
        same key. SQLite needs nothing (one writer at a time); PostgreSQL takes an advisory
        lock. Callers take keys in one order: delivery, idempotency key, natural key,
        component, then the components/stages rank."""

    def rollback(self) -> None:
        """Abandon a transaction a failed request left open (nothing of it is kept)."""
        raise NotImplementedError

    # --- schema and lifetime ---------------------------------------------------------------

    def migrate(self) -> None:
        raise NotImplementedError

    def applied_migrations(self) -> list[str]:
        raise NotImplementedError

    def table_names(self) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
