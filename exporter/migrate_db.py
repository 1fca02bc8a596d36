"""`releasebits migrate-db`: copy an SQLite store into a PostgreSQL database and count both sides."""

from __future__ import annotations

import time
from pathlib import Path

import click

from exporter.console import fail
from storage.copy import Count, TargetNotEmpty, copy_store
from storage.db import (
    DB_ERRORS,
    SqliteStore,
    Store,
    check_files,
    describe,
    is_url,
    one_line,
    open_db,
)


def _open(source: str, target: str) -> tuple[SqliteStore, Store]:
    check_files(source)
    src = open_db(source, migrate=True)  # a store from an older release gets its new tables
    assert isinstance(src, SqliteStore)  # a path is SQLite
    return src, open_db(target, migrate=True)


class _Progress:
    """One line per table as it completes, and a running line for big tables."""

    def __init__(self, heading: str) -> None:
        self.heading: str | None = heading
        self.started = time.monotonic()
        self.shown = 0.0

    def __call__(self, table: str, done: int, total: int) -> None:
        if self.heading is not None:  # once the target was found empty and the copy began
            click.echo(self.heading, err=True)
            self.heading = None
        now = time.monotonic()
        if done == total or now - self.shown >= 1.0:
            self.shown = now
            click.echo(f"  {table}: {done}/{total} rows ({now - self.started:.1f} s)", err=True)


def _report(counts: list[Count]) -> bool:
    width = max(len(c.table) for c in counts)
    click.echo(f"{'TABLE':<{width}}  {'SQLITE':>10}  {'POSTGRESQL':>10}")
    for c in counts:
        mark = "" if c.source == c.target else "  MISMATCH"
        click.echo(f"{c.table:<{width}}  {c.source:>10}  {c.target:>10}{mark}")
    return all(c.source == c.target for c in counts)


@click.command("migrate-db", short_help="Copy an SQLite store into PostgreSQL and compare counts.")
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The SQLite database file to copy. Stop the daemon that writes it first.",
)
@click.option(
    "--to",
    "target",
    required=True,
    help="The PostgreSQL database to copy into: postgresql://user@host:port/dbname (the "
    "password from the URL, PGPASSWORD or ~/.pgpass). Its tables are created if missing.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Delete the rows the target's ReleaseBits tables already hold first (without it, a "
    "target that holds rows is refused).",
)
def migrate_db(source: str, target: str, replace: bool) -> None:
    """Copy a whole SQLite store (events, tokens, aggregates, outbox, release health, receiver,
    DORA and incident rows) into PostgreSQL in one transaction, then count every table on both
    sides. Exit status 1 when a count differs or nothing was copied."""
    if is_url(source):
        fail("--from: expected the path of an SQLite database file")
    if not is_url(target):
        fail("--to: expected a postgresql:// URL")
    try:
        src, dst = _open(str(Path(source)), target)
        progress = _Progress(f"copying {source} to {describe(target)} ...")
        counts = copy_store(src, dst, replace=replace, progress=progress)
    except TargetNotEmpty as exc:
        fail(f"--to: {exc}; pass --replace to delete them first")
    except DB_ERRORS as exc:
        fail(one_line(exc))
    if not _report(counts):
        fail("row counts differ between the SQLite file and PostgreSQL (see MISMATCH above)")
    rows = sum(c.target for c in counts)
    click.echo(f"copied {len(counts)} tables, {rows} rows; every count matches", err=True)
