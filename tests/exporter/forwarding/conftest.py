"""A real app on a temp SQLite file with forwarding targets from a TOML snippet, and a Deliverer
whose clock the test moves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exporter.app import create_app
from exporter.config import load_settings
from exporter.forwarding.deliverer import Deliverer
from exporter.settings import Settings
from storage import outbox, tokens
from storage.db import open_db


@dataclass
class Clock:
    """Real time plus an offset the test moves forward."""

    offset: float = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Forwarding:
    settings: Settings
    db: Any
    client: Any
    auth: dict[str, str]
    clock: Clock = field(default_factory=Clock)
    _deliverer: Deliverer | None = None

    @property
    def deliverer(self) -> Deliverer:
        if self._deliverer is None:
            # No jitter: rand() = 1.0 makes each delay the full exponential value.
            self._deliverer = Deliverer(self.settings, clock=self.clock, rand=lambda: 1.0)
        return self._deliverer

    def deploy(self, component: str = "checkout", **fields: Any) -> str:
        body = {"version": "v1.2.3", "stage": "production", **fields}
        resp = self.client.post(
            f"/components/{component}/deployments", json=body, headers=self.auth
        )
        assert resp.status_code == 201, resp.json
        return str(resp.json["id"])

    def build(self, component: str = "checkout", **fields: Any) -> str:
        body = {"version": "v1.2.3", **fields}
        resp = self.client.post(f"/components/{component}/builds", json=body, headers=self.auth)
        assert resp.status_code == 201, resp.json
        return str(resp.json["id"])

    def run(self) -> int:
        return self.deliverer.run(self.db, budget=5)

    def deliveries(self, **filters: Any) -> list[dict[str, Any]]:
        rows, _ = outbox.list_deliveries(self.db, limit=500, **filters)
        return rows

    def only(self) -> dict[str, Any]:
        rows = self.deliveries()
        assert len(rows) == 1, rows
        return rows[0]

    def next_attempt_ts(self, delivery_id: str) -> float:
        return float(
            self.db.execute(
                "SELECT next_attempt_at FROM deliveries WHERE id = ?", [delivery_id]
            ).fetchone()[0]
        )


@pytest.fixture
def forwarding(tmp_path: Path, new_db: Callable[..., str]) -> Iterator[Callable[..., Forwarding]]:
    made: list[Forwarding] = []

    def make(toml: str, environ: dict[str, str] | None = None, **overrides: Any) -> Forwarding:
        cfg = tmp_path / "releasebits.toml"
        cfg.write_text(toml)
        settings = load_settings(cfg, environ or {}, {"db": new_db("rb"), **overrides})
        db = open_db(settings.db, migrate=True)
        token = tokens.create_token(db, "ci", ("read", "write"))
        app = create_app(settings, process_metrics=False)
        f = Forwarding(settings, db, app.test_client(), {"Authorization": f"Bearer {token}"})
        made.append(f)
        return f

    yield make
    for f in made:
        if f._deliverer is not None:
            f._deliverer.close()
        f.db.close()
