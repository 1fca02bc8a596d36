"""The shipped Prometheus alert rules pass `promtool check rules` and their unit tests."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import need_binary

pytestmark = pytest.mark.e2e

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))


def alert_names() -> list[str]:
    names = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.extend(rule["alert"] for rule in group["rules"] if "alert" in rule)
    return names


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need_binary("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=PROMETHEUS_DIR,
    )


def rule_count(path: Path) -> int:
    """Alerting and recording rules of one file."""
    return sum(len(group["rules"]) for group in yaml.safe_load(path.read_text())["groups"])


def test_rules_files_are_valid() -> None:
    assert RULE_FILES, "no rule files in prometheus/rules"
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    for path in RULE_FILES:
        assert f"SUCCESS: {rule_count(path)} rules found" in result.stdout, path.name


def test_rule_unit_tests_pass() -> None:
    assert TEST_FILES, "no promtool unit tests in prometheus/tests"
    result = promtool("test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = alert_names()
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) - firing == set(), "alerts without a test where they fire"
    assert set(names) - quiet == set(), "alerts without a test where they must not fire"
    assert (firing | quiet) - set(names) == set(), "unit tests of alerts that do not exist"
