"""Fixtures for the poller tests: a fast requests session and a sleep that only records."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.http import make_session

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.fixture
def load_fixture() -> Callable[[str], Any]:
    """Read tests/fixtures/<source>/<name>.json; `name` is "sentry/x" (".json" optional)."""

    def load(name: str) -> Any:
        path = FIXTURES / (name if name.endswith(".json") else f"{name}.json")
        return json.loads(path.read_text())

    return load


@pytest.fixture
def http_session() -> Iterator[requests.Session]:
    """make_session() as the daemon builds it, but retrying 502/503/504 without backoff."""
    session = make_session(backoff_factor=0, timeout=(1, 2))
    yield session
    session.close()


@pytest.fixture
def sleeps() -> list[float]:
    """Pass `sleep=sleeps.append`: records the waits a poller asks for instead of sleeping."""
    return []
