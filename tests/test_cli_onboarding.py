"""What a new user meets on the command line: help that reads whole, one database that every
command names, settings validated wherever they come from, and `poll` as a dry check."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer

from exporter.cli import main
from storage import release_health, tokens
from storage.db import open_db
from tests.upstreams import TOKEN_ENV, FakeSentry, sources_toml


@pytest.fixture
def cwd(tmp_path: Path) -> Iterator[Path]:
    """Run in an empty directory, as a user in a second terminal would."""
    before = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before)


def groups() -> Iterator[tuple[list[str], click.Group]]:
    yield [], main
    for name, command in main.commands.items():
        if isinstance(command, click.Group):
            yield [name], command


@pytest.mark.parametrize(
    ("args", "group"),
    list(groups()),
    ids=lambda a: " ".join(a) or "main" if isinstance(a, list) else "",
)
def test_help_summaries_are_whole_sentences(args: list[str], group: click.Group) -> None:
    """Click cuts a long first sentence to fit the listing ("... the one..."): none may be."""
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=80)
    assert result.exit_code == 0
    listing = result.output.split("Commands:", 1)[1].strip().splitlines()
    assert len(listing) == len(group.commands)
    for line in listing:
        _name, summary = line.split(maxsplit=1)
        assert not summary.endswith("..."), line
        assert summary.endswith("."), line


@pytest.mark.sqlite_only("the default database file in the working directory")
def test_a_new_default_database_is_not_created_silently(cwd: Path) -> None:
    """`token create` in another directory used to create a second, empty ./releasebits.db and
    the daemon then answered its token with invalid_token."""
    result = CliRunner().invoke(main, ["token", "create", "ci"], env={"RELEASEBITS_DB": None})
    assert result.exit_code == 1
    expected = f"releasebits: error: db: no database at {cwd / 'releasebits.db'} "
    assert result.output.startswith(expected)
    assert "--db" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (cwd / "releasebits.db").exists()


@pytest.mark.sqlite_only("database files named relative to the working directory")
def test_every_command_names_its_database(cwd: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(main, ["token", "create", "ci", "--db", "rb.db"])
    assert created.exit_code == 0, created.output
    path = cwd / "rb.db"
    assert f"created a new, empty database at {path}" in created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    db = open_db(path)
    assert tokens.authenticate(db, secret) is not None
    db.close()
    for args in (["token", "list"], ["deliveries", "list"], ["token", "revoke", "ci"]):
        result = runner.invoke(main, [*args, "--db", "rb.db"])
        assert result.exit_code == 0, result.output
        assert result.stderr.splitlines()[0] == f"releasebits: database {path}", args
    # The same database named by the environment, as the daemon's children get it.
    listed = runner.invoke(main, ["token", "list"], env={"RELEASEBITS_DB": str(path)})
    assert f"releasebits: database {path}" in listed.stderr


def test_a_bad_toml_value_is_an_error_even_when_the_environment_overrides_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "rb.toml"
    config.write_text('port = "eighty"\n')
    result = CliRunner().invoke(
        main,
        ["token", "list", "--config", str(config), "--db", str(tmp_path / "x.db")],
        env={"RELEASEBITS_PORT": "8080"},
    )
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"releasebits: error: port: expected an integer, got 'eighty' (in {config})"
    )


def test_poll_is_a_dry_check_that_leaves_source_up_alone(
    tmp_path: Path, httpserver: HTTPServer, new_db: Callable[..., str]
) -> None:
    """The worker's poll said the source is up; `releasebits poll` with a wrong token reports
    the failure and exits 1, but /metrics keeps what the worker found."""
    sentry = FakeSentry(httpserver).install()
    config = tmp_path / "rb.toml"
    location = new_db("rb")
    config.write_text(f'db = "{location}"\n' + sources_toml(sentry, None))
    db = open_db(location, migrate=True)
    release_health.store_poll(db, "sentry", [], projects=["42", "43"], duration=0.1)
    before = release_health.statuses(db)
    assert [s["up"] for s in before] == [1, 1]

    result = CliRunner().invoke(
        main, ["poll", "--config", str(config)], env={**TOKEN_ENV, "SENTRY_TOKEN": "wrong"}
    )
    assert result.exit_code == 1
    assert re.search(r"FAILED after .*401", result.output)
    assert release_health.statuses(db) == before
    good = CliRunner().invoke(main, ["poll", "--config", str(config)], env=TOKEN_ENV)
    assert good.exit_code == 0, good.output
    assert "checkout@1.2.0" in good.output
    assert release_health.statuses(db) == before  # a good poll is not stored either
    assert release_health.newest_releases(db, 10) == []

    # --store: stored as the worker's poll would be, a failure included.
    stored = CliRunner().invoke(main, ["poll", "--store", "--config", str(config)], env=TOKEN_ENV)
    assert stored.exit_code == 0, stored.output
    assert "checkout@1.2.0" in {r["release"] for r in release_health.newest_releases(db, 10)}
    failed = CliRunner().invoke(
        main, ["poll", "--store", "--config", str(config)], env={**TOKEN_ENV, "SENTRY_TOKEN": "x"}
    )
    assert failed.exit_code == 1
    assert [s["up"] for s in release_health.statuses(db)] == [0, 0]
    db.close()
