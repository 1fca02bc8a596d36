"""CI runs what the README tells a developer to run: its test command, word for word."""

from __future__ import annotations

from pathlib import Path

from tests.readme import sh_blocks

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_the_readme_test_command_exactly() -> None:
    _get, _serve, test_command = sh_blocks("On a fresh machine")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command.strip() in ci
    # ... and lints with the tools that command installed, in the same virtual environment.
    for lint in ("ruff check .", "ruff format --check .", "mypy"):
        assert f".venv/bin/python -m {lint}" in ci
    assert "export RELEASEBITS_REQUIRE_E2E=1" in " ".join(ci)
