"""The CLI: --help everywhere, token create/list/revoke, config errors exit 1 with one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from exporter.cli import main
from storage import tokens
from storage.db import open_db

COMMANDS = [
    [],
    ["serve"],
    ["web"],
    ["worker"],
    ["token"],
    ["token", "create"],
    ["token", "list"],
    ["token", "revoke"],
    ["poll"],
    ["migrate-db"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "main")
def test_help(args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_token_lifecycle(new_db: Callable[..., str]) -> None:
    db_path = new_db("rb")
    runner = CliRunner()
    created = runner.invoke(main, ["token", "create", "ci", "--db", db_path])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("rb_")
    db = open_db(db_path)
    assert tokens.authenticate(db, secret).scopes == ("read", "write")
    # Stored as a hash only.
    assert secret not in str(db.execute("SELECT * FROM tokens").fetchall())

    reader = runner.invoke(main, ["token", "create", "dash", "--scope", "read", "--db", db_path])
    assert tokens.authenticate(db, reader.stdout.strip().splitlines()[-1]).scopes == ("read",)
    dup = runner.invoke(main, ["token", "create", "ci", "--db", db_path])
    assert dup.exit_code == 1
    assert "already exists" in dup.output

    listed = runner.invoke(main, ["token", "list", "--db", db_path])
    assert "ci" in listed.output
    assert "dash" in listed.output
    assert secret not in listed.output

    assert runner.invoke(main, ["token", "revoke", "ci", "--db", db_path]).exit_code == 0
    assert tokens.authenticate(db, secret) is None
    assert "revoked" in runner.invoke(main, ["token", "list", "--db", db_path]).output
    again = runner.invoke(main, ["token", "revoke", "ci", "--db", db_path])
    assert again.exit_code == 1
    db.close()


def test_bad_config_exits_1_with_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["token", "list", "--db", str(tmp_path / "x.db")], env={"RELEASEBITS_PORT": "x"}
    )
    assert result.exit_code == 1
    assert result.output.strip() == "releasebits: error: port: expected an integer, got 'x'"


def test_unusable_db_path_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["token", "list", "--db", str(tmp_path / "missing" / "x.db")])
    assert result.exit_code == 1
    assert result.output.startswith("releasebits: error: db:")
    assert len(result.output.strip().splitlines()) == 1
