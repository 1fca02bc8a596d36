"""Opening the store: a file path means SQLite (storage.sqlite), a postgresql:// URL means
PostgreSQL (storage.postgres). Both answer the same `Store` (storage.store)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import psycopg

from storage.postgres import (
    DEFAULT_POOL_SIZE,
    PostgresStore,
    close_pools,
    is_url,
    open_postgres,
)
from storage.postgres import first_line as one_line
from storage.postgres import redact as redact_url
from storage.sqlite import BUSY_TIMEOUT_MS, SqliteStore, close_writers, open_sqlite
from storage.sqlite import check_files as check_sqlite_files
from storage.sqlite import integrity_problem as sqlite_integrity_problem
from storage.store import Cursor, Params, StorageError, Store

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DB_ERRORS",
    "Cursor",
    "Params",
    "PostgresStore",
    "SqliteStore",
    "StorageError",
    "Store",
    "check_files",
    "close_thread_stores",
    "describe",
    "integrity_problem",
    "is_url",
    "one_line",
    "open_db",
    "thread_store",
]

# What a request or a job catches as "the database is unavailable" (503, job failed), whatever
# the backend.
DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error, StorageError)

_local = threading.local()


def describe(location: str | Path) -> str:
    """The database for a log line or a message: a path, or a URL without its password."""
    return redact_url(str(location)) if is_url(location) else str(location)


def open_db(
    location: str | Path,
    *,
    synchronous: str = "full",
    migrate: bool = False,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> Store:
    """Open the store at `location` (path: SQLite with ReleaseBits' pragmas; postgresql:// URL:
    a pooled PostgreSQL store); optionally apply pending migrations."""
    if is_url(location):
        return open_postgres(str(location), migrate=migrate, pool_size=pool_size)
    return open_sqlite(location, synchronous=synchronous, migrate=migrate)


def check_files(location: str | Path) -> None:
    """SQLite: refuse a database whose write-ahead log was deleted (storage.sqlite). A server
    keeps its own files."""
    if not is_url(location):
        check_sqlite_files(location)


def integrity_problem(store: Store) -> str | None:
    """SQLite's PRAGMA quick_check of the file; None for PostgreSQL (the server checks pages)."""
    return sqlite_integrity_problem(store) if isinstance(store, SqliteStore) else None


def thread_store(
    location: str | Path, *, synchronous: str = "full", pool_size: int = DEFAULT_POOL_SIZE
) -> Store:
    """One long-lived store per thread and location (sqlite3 connections are per thread; a
    PostgreSQL store borrows from its process's pool)."""
    cache: dict[tuple[str, str], Store] | None = getattr(_local, "stores", None)
    if cache is None:
        cache = _local.stores = {}
    key = (str(location), synchronous)
    store = cache.get(key)
    if store is None:
        store = cache[key] = open_db(location, synchronous=synchronous, pool_size=pool_size)
    return store


def close_thread_stores() -> None:
    """Close this thread's cached stores (tests, and workers that switch databases)."""
    cache = getattr(_local, "stores", None) or {}
    for store in cache.values():
        store.close()
    cache.clear()


def close_all() -> None:
    """This thread's stores, this process's SQLite write connections and PostgreSQL pools
    (before a fork, at exit)."""
    close_thread_stores()
    close_writers()
    close_pools()
