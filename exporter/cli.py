"""The `releasebits` command line: serve, web, worker, token management and `notify`."""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from exporter import __version__, logsafe
from exporter.config import load_settings as _load
from exporter.config import read_toml
from exporter.console import fail
from exporter.dora.budget import after_poll
from exporter.errors import ConfigError
from exporter.http import make_session
from exporter.metrics.health import deployed_health
from exporter.migrate_db import migrate_db
from exporter.notify.command import notify
from exporter.pollers.jobs import ErrorMemory, PollReport, check_source, record
from exporter.pollers.sources import PollSource
from exporter.server import address_problem, run_web, serve_all
from exporter.settings import BY_NAME, ENV_PREFIX, SETTINGS, Settings
from exporter.worker import run_worker
from storage import components as components_store
from storage import heartbeat, outbox, tokens
from storage.db import (
    DB_ERRORS,
    StorageError,
    Store,
    check_files,
    close_all,
    describe,
    integrity_problem,
    is_url,
    one_line,
    open_db,
)

log = logging.getLogger(__name__)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logsafe.install(logging.getLogger().handlers)
    logsafe.lean_records()
    # APScheduler logs every job run at INFO; keep its warnings and errors only.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))
    # urllib3 warns on every retry of a refused connection; the poll job logs one line itself.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def load_settings(config: str | None, **overrides: Any) -> Settings:
    """The settings of a command, with the database path made absolute: every command says
    which file it uses, and `serve`'s children keep it whatever their working directory."""
    try:
        settings = _load(config, os.environ, overrides)
    except ConfigError as exc:
        fail(str(exc))
    if is_url(settings.db):  # a PostgreSQL database: the same whatever the directory
        return settings
    return settings.replace(db=str(Path(settings.db).expanduser().absolute()))


def _db_chosen(config: str | None, db: str | None) -> bool:
    """Whether the database was named (--db, RELEASEBITS_DB, `db` in the config file) rather
    than the default ./releasebits.db, which depends on the current directory."""
    if db is not None or os.environ.get(BY_NAME["db"].env):
        return True
    config = config or os.environ.get(ENV_PREFIX + "CONFIG")
    return config is not None and config != "" and "db" in read_toml(Path(config))


def _settings_help(name: str) -> str:
    setting = next(s for s in SETTINGS if s.name == name)
    return f"{setting.help} [env {setting.env}; default {setting.default}]"


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        type=click.Path(dir_okay=False),
        default=None,
        help="TOML config file. [env RELEASEBITS_CONFIG]",
    )(f)


def db_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--db", default=None, help=_settings_help("db"))(f)


def store_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--config and --db: the options of every command that opens the database."""
    return db_option(config_option(f))


def server_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for name, kind in reversed(
        [("host", str), ("port", int), ("workers", int), ("threads", int), ("log-level", str)]
    ):
        f = click.option(
            f"--{name}", type=kind, default=None, help=_settings_help(name.replace("-", "_"))
        )(f)
    return db_option(config_option(f))


_WRITE_ERRORS: tuple[type[BaseException], ...] = (*DB_ERRORS, OSError)


def open_store(settings: Settings, *, check: bool = False, writable: bool = True) -> Store:
    """The migrated store. With `check` (a daemon starting), refuse a database whose -wal was
    deleted after a crash or that fails SQLite's quick_check; with `writable`, one that cannot
    be written (file, directory, lock file): one line each, instead of failing on every write.
    A PostgreSQL server that cannot be reached, refuses the login or the CREATE of the tables
    is one line too."""
    try:
        if check:
            check_files(settings.db)
        store = open_db(
            settings.db,
            synchronous=settings.sqlite_synchronous,
            migrate=True,
            pool_size=settings.db_pool_size,
        )
    except sqlite3.DatabaseError as exc:
        fail(f"db: {settings.db} cannot be opened: {exc} (restore a backup)")
    except (StorageError, OSError) as exc:
        fail(f"db: {exc}")
    if writable:  # before the integrity check, which may read a large file for seconds
        try:
            heartbeat.probe_write(store, os.getpid())
        except _WRITE_ERRORS as exc:
            store.close()
            needs = "writing needs the file, its directory and .lock"
            if is_url(settings.db):
                needs = "the role needs INSERT and UPDATE on the tables"
            fail(f"db: {describe(settings.db)}: {one_line(exc)} ({needs})")
    problem = None
    if check:
        started = time.monotonic()
        problem = integrity_problem(store)
        log.info("database integrity check took %.1f s", time.monotonic() - started)
    if problem is not None:
        store.close()
        fail(
            f"db: {settings.db} failed SQLite's integrity check (PRAGMA quick_check): "
            f"{problem[:300]} (restore a backup, or try `sqlite3 {settings.db} .recover`)"
        )
    return store


def existing_store(settings: Settings, chosen: bool, *, writable: bool = True) -> Store:
    """The store of a command that is not a daemon: it says which database it uses, and never
    creates the default one silently (a second, empty ./releasebits.db in another directory
    would make the daemon answer `invalid_token` to the token created in it)."""
    path = settings.db
    if is_url(path):
        click.echo(f"releasebits: database {describe(path)}", err=True)
        return open_store(settings, writable=writable)
    if not Path(path).exists():
        if not chosen:
            fail(
                f"db: no database at {path} (the default, releasebits.db in the current "
                "directory); run this where `releasebits serve` runs, or name the database "
                "with --db PATH or RELEASEBITS_DB"
            )
        store = open_store(settings, writable=writable)
        click.echo(
            f"releasebits: created a new, empty database at {path} (no daemon has used it yet)",
            err=True,
        )
        return store
    click.echo(f"releasebits: database {path}", err=True)
    return open_store(settings, writable=writable)


def store_of(config: str | None, db: str | None, *, writable: bool = True) -> Store:
    """The store of a command's --config and --db (see existing_store)."""
    return existing_store(load_settings(config, db=db), _db_chosen(config, db), writable=writable)


def check_address(settings: Settings) -> None:
    """One line and exit 1 when the HTTP port cannot be bound."""
    problem = address_problem(settings)
    if problem is not None:
        fail(problem)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="releasebits")
def main() -> None:
    """ReleaseBits: CI/CD deployments, builds and release health as Prometheus metrics,
    badges and forwarded events."""


@main.command(short_help="Run the HTTP server and the background worker.")
@server_options
def serve(config: str | None, db: str | None, **opts: Any) -> None:
    """Run the whole daemon: the HTTP server and the one background worker.

    Several daemons may share one database: exactly one background worker works at a time,
    the others stand by and take over when it stops.
    """
    settings = load_settings(config, db=db, **opts)
    setup_logging(settings.log_level)
    check_address(settings)  # first: cheap, and the integrity check may take seconds
    open_store(settings, check=True).close()
    close_all()
    sys.exit(serve_all(settings))


# `serve` checks the file and the port once before starting its children, which skip that.
_started_by_serve = click.option("--started-by-serve", is_flag=True, hidden=True)


@main.command(short_help="Run only the HTTP server.")
@server_options
@_started_by_serve
def web(config: str | None, db: str | None, started_by_serve: bool, **opts: Any) -> None:
    """Run only the HTTP server (for split deployments; run `releasebits worker` beside it)."""
    settings = load_settings(config, db=db, **opts)
    setup_logging(settings.log_level)
    if not started_by_serve:
        check_address(settings)
    store = open_store(settings, check=not started_by_serve)
    if tokens.count_live(store) == 0:
        log.warning(
            "no API tokens exist yet: writes will be refused until you create one with "
            "`releasebits token create NAME --db %s`",
            describe(settings.db),
        )
    store.close()
    close_all()  # Granian forks its workers: none may inherit a pooled PostgreSQL connection
    run_web(settings)


@main.command(short_help="Run only the background worker.")
@store_options
@click.option("--log-level", default=None, help=_settings_help("log_level"))
@_started_by_serve
def worker(
    config: str | None, db: str | None, log_level: str | None, started_by_serve: bool
) -> None:
    """Run only the background worker (pollers and outbox delivery)."""
    settings = load_settings(config, db=db, log_level=log_level)
    setup_logging(settings.log_level)
    open_store(settings, check=not started_by_serve).close()
    sys.exit(run_worker(settings))


@main.command(short_help="Poll the release-health sources now (dry check).")
@click.option(
    "--once",
    is_flag=True,
    expose_value=False,
    help="Poll each source once and exit: what `poll` always does (the worker polls on "
    "schedule); accepted so scripts can say so.",
)
@click.option("--source", "names", multiple=True, help="Poll only this source (repeatable).")
@click.option(
    "--store",
    is_flag=True,
    help="Store what the sources answered, as the worker's poll would (release health, "
    "source_up, error-budget counts). Without it nothing is written.",
)
@store_options
@click.option("--log-level", default=None, help=_settings_help("log_level"))
def poll(
    names: tuple[str, ...], store: bool, config: str | None, db: str | None, log_level: str | None
) -> None:
    """Poll the release-health sources now, in the foreground, and print what they answered.

    The setup debugging tool: it shows every release found, whether each component's deployed
    version matches a release name, and the error of a failing source. A dry check unless
    --store: nothing is written, so /metrics keeps saying what the worker's own polls found.
    Exit status 1 when a source failed.
    """
    settings = load_settings(config, db=db, log_level=log_level)
    setup_logging(settings.log_level)
    if not settings.sources:
        fail("no release-health sources configured; add [[sentry]] or [[bugsnag]] to --config")
    unknown = [n for n in names if settings.source(n) is None]
    if unknown:
        known = ", ".join(s.name for s in settings.sources)
        fail(f"--source: no source named {unknown[0]!r} (configured: {known})")
    polled = _check_sources(settings, names)
    reports = [report for _source, report in polled]
    if store:
        live = existing_store(settings, _db_chosen(config, db))
        for source, report in polled:
            record(live, source, report)  # what the worker's poll job does with a poll
            after_poll(live, settings, report, time.time())
        click.echo(f"stored in {describe(settings.db)}")
    if is_url(settings.db) or Path(settings.db).exists():
        click.echo(f"database {describe(settings.db)}:")
        _print_deployed(open_store(settings, writable=False), settings, reports)
    else:
        click.echo(f"no database at {settings.db}: deployed versions not checked")
    sys.exit(1 if any(not r.ok for r in reports) else 0)


def _check_sources(
    settings: Settings, names: tuple[str, ...]
) -> list[tuple[PollSource, PollReport]]:
    """Poll each configured (or named) source once, printing what it answered."""
    out = []
    memory = ErrorMemory()
    for source in settings.sources:
        if (names and source.name not in names) or not isinstance(source, PollSource):
            continue
        click.echo(f"{source.kind} source {source.name!r}: polling ...")
        with make_session() as session:
            report = check_source(source, session, memory=memory)
        out.append((source, report))
        _print_report(report)
    return out


def _print_report(report: PollReport) -> None:
    if not report.ok:
        click.echo(f"  FAILED after {report.duration_seconds:.2f}s: {report.error}")
        return
    click.echo(
        f"  ok: {len(report.rows)} releases, {report.requests} requests, "
        f"{report.duration_seconds:.2f}s"
    )
    _print_rows(report.rows)
    for t in report.targets:
        click.echo(
            f"  project {t.project}: target stability {_pct(t.target_stability)}, "
            f"critical {_pct(t.critical_stability)} ({t.target_type or 'no target type'})"
        )


def _print_deployed(store: Store, settings: Settings, reports: list[PollReport]) -> None:
    """Each deployed version's release name in each polled source, and whether it answered it."""
    answered = {
        (r.source, r.project, r.environment, r.release): {
            "crash_free_sessions": r.crash_free_sessions,
            "crash_free_users": r.crash_free_users,
        }
        for report in reports
        for r in report.rows
    }
    targets = {(t.source, t.project): t.target_stability for rep in reports for t in rep.targets}
    ok_sources = {r.source for r in reports if r.ok}
    for row in components_store.current_versions_of(store, sorted(settings.components)):
        for h in deployed_health(
            store,
            settings,
            row["component"],
            row["stage"],
            targets=targets,
            polled=answered,  # this run's answers, not the stored rows
        ):
            if h.source not in ok_sources:
                continue
            health = "crash-free sessions " + _pct(h.crash_free_sessions)
            if h.crash_free_sessions is None:
                health = "no data for this release name (check the release template)"
            click.echo(
                f"deployed {h.component}/{h.stage} {h.version} -> {h.source} project {h.project} "
                f"environment {h.environment!r} release {h.release!r}: {health}"
            )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _print_rows(rows: Any) -> None:
    if not rows:
        click.echo("  (no releases with sessions in the window)")
        return
    header = ("PROJECT", "ENVIRONMENT", "RELEASE", "SESSIONS", "USERS", "CF SESSIONS", "CF USERS")
    table = [header] + [
        (
            r.project,
            r.environment or "-",
            r.release,
            "-" if r.total_sessions is None else str(r.total_sessions),
            "-" if r.users is None else str(r.users),
            _pct(r.crash_free_sessions),
            _pct(r.crash_free_users),
        )
        for r in rows
    ]
    widths = [min(max(len(row[i]) for row in table), 40) for i in range(len(header))]
    for row in table:
        click.echo(
            "  " + "  ".join(cell[:40].ljust(w) for cell, w in zip(row, widths, strict=True))
        )


@main.group()
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(tokens.SCOPES),
    help="Scope to grant; repeat for several. Default: read and write.",
)
@store_options
def token_create(name: str, scopes: tuple[str, ...], config: str | None, db: str | None) -> None:
    """Create a token NAME and print it (alone on the last line). It is shown only once.

    Run it where `releasebits serve` runs, or name the same database with --db: a token lives
    in one database file.
    """
    if not name.strip() or len(name) > 100:
        fail("token name must be 1-100 characters")
    store = store_of(config, db)
    try:
        secret = tokens.create_token(store, name.strip(), scopes or tokens.SCOPES)
    except tokens.TokenExists:
        fail(f"a token named {name!r} already exists (revoke it or pick another name)")
    click.echo(
        f"Created token {name!r} with scopes {', '.join(sorted(scopes or tokens.SCOPES))}. "
        "Store it now; it cannot be shown again:",
        err=True,
    )
    click.echo(secret)


@token.command("list")
@store_options
def token_list(config: str | None, db: str | None) -> None:
    """List tokens (names, scopes, dates; never the secrets)."""
    rows = tokens.list_tokens(store_of(config, db, writable=False))
    if not rows:
        click.echo("no tokens; create one with `releasebits token create NAME`")
        return
    click.echo(f"{'NAME':<24} {'SCOPES':<12} {'CREATED':<20} STATUS")
    for t in rows:
        created = datetime.fromtimestamp(t.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        status = "active"
        if t.revoked_at is not None:
            status = "revoked " + datetime.fromtimestamp(t.revoked_at, UTC).strftime(
                "%Y-%m-%d %H:%M"
            )
        click.echo(f"{t.name:<24} {','.join(t.scopes):<12} {created:<20} {status}")


@token.command("revoke")
@click.argument("name")
@store_options
def token_revoke(name: str, config: str | None, db: str | None) -> None:
    """Revoke the token NAME; requests using it get 401 from now on."""
    if not tokens.revoke_token(store_of(config, db), name):
        fail(f"no active token named {name!r}")
    click.echo(f"revoked {name!r}")


@main.group(short_help="Inspect and retry the forwarding outbox.")
def deliveries() -> None:
    """Inspect and retry the forwarding outbox (one delivery per event and target)."""


@deliveries.command("list")
@click.option(
    "--status",
    type=click.Choice(outbox.STATUSES),
    default=None,
    help="Only deliveries in this status.",
)
@click.option("--target", default=None, help="Only deliveries to this target (its name).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@store_options
def deliveries_list(
    status: str | None, target: str | None, limit: int, config: str | None, db: str | None
) -> None:
    """List deliveries, newest first, with their last error."""
    rows, _ = outbox.list_deliveries(
        store_of(config, db, writable=False), status=status, target=target, limit=limit
    )
    if not rows:
        click.echo("no deliveries")
        return
    click.echo(
        f"{'ID':<36}  {'TARGET':<16} {'STATUS':<10} {'ATTEMPTS':>8}  {'EVENT':<28} LAST ERROR"
    )
    for r in rows:
        event = f"{r['event']['kind']} {r['event']['component'] or ''}".strip()
        error = (r["last_error"] or "")[:80]
        click.echo(
            f"{r['id']:<36}  {r['target']:<16} {r['status']:<10} {r['attempts']:>8}  "
            f"{event[:28]:<28} {error}"
        )


@deliveries.command("retry", short_help="Make a delivery due now.")
@click.argument("delivery_id")
@store_options
def deliveries_retry(delivery_id: str, config: str | None, db: str | None) -> None:
    """Make delivery DELIVERY_ID due now with a fresh give-up horizon (the worker sends it)."""
    previous = outbox.retry(store_of(config, db), delivery_id)
    if previous is None:
        fail(f"no delivery {delivery_id!r}")
    if previous == "delivering":
        fail(f"delivery {delivery_id} is being attempted right now; try again later")
    click.echo(f"delivery {delivery_id} ({previous}) is due again")


main.add_command(notify)
main.add_command(migrate_db)


if __name__ == "__main__":  # pragma: no cover
    main()
