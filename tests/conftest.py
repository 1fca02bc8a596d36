"""Shared fixtures: settings on a temp SQLite file, migrated db, app, client, tokens, a daemon."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.app import create_app
from exporter.settings import Settings
from storage import tokens
from storage.db import close_thread_stores, open_db

FIXTURES = Path(__file__).parent / "fixtures"
REQUIRE_E2E = os.environ.get("RELEASEBITS_REQUIRE_E2E") == "1"


def need_binary(name: str) -> str:
    """Path of an external binary; skip (or fail under RELEASEBITS_REQUIRE_E2E=1) if absent."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package; .ci/run installs it)"
        if REQUIRE_E2E:
            pytest.fail(message + " and RELEASEBITS_REQUIRE_E2E=1 forbids skipping")
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True)
def _close_cached_connections() -> Iterator[None]:
    yield
    close_thread_stores()


@pytest.fixture(params=["UTC0", "<+1030>-10:30"], ids=["tz-utc", "tz-utc+10:30"])
def local_timezone(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process's local time zone (TZ, tzset) set for one test: UTC, then 10:30 east of
    it (POSIX spelling, so it needs no zoneinfo files). Yields the offset in seconds."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        offset = time.localtime().tm_gmtoff
        assert offset == (0 if request.param == "UTC0" else 37_800), "TZ did not take effect"
        yield offset
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(db=str(tmp_path / "releasebits.db"))


@pytest.fixture
def db(settings: Settings) -> Iterator[Any]:
    database = open_db(settings.db, migrate=True)
    yield database
    database.close()


@pytest.fixture
def app(settings: Settings, db: Any) -> Any:
    return create_app(settings, process_metrics=False)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def token(db: Any) -> str:
    return tokens.create_token(db, "ci", ("read", "write"))


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def load_fixture() -> Any:
    def load(relpath: str) -> Any:
        return json.loads((FIXTURES / relpath).read_text())

    return load


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Daemon:
    """A `releasebits serve` subprocess on a free port with its own database."""

    db: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "RELEASEBITS_DB": str(self.db),
                "RELEASEBITS_PORT": str(self.port),
                "RELEASEBITS_HOST": "127.0.0.1",
                "RELEASEBITS_WORKER_HEARTBEAT_SECONDS": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "exporter", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def record(self, token: str, component: str, kind: str, body: dict[str, Any]) -> None:
        """POST one event (kind: deployments or builds) through the API; it must be stored."""
        resp = requests.post(
            f"{self.url}/components/{component}/{kind}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert resp.status_code == 201, resp.text

    def start(self, timeout: float = 30) -> Daemon:
        self.log_path = self.db.with_suffix(f".{int(time.time() * 1000)}.log")
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "exporter", "serve"],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so kill -9 can take all of it
            )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited early:\n{self.log()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"daemon did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill9(self) -> None:
        """Crash everything at once: SIGKILL to `serve` and every process under it."""
        assert self.proc is not None
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        _wait_port_free(self.port)

    def stop(self) -> int:
        assert self.proc is not None
        stragglers = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        for pid in stragglers:  # if any (serve waits for its children)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return code


def terminate(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, and SIGKILL if it has not exited within `timeout` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def descendants(pid: int) -> list[int]:
    """Live (not zombie) processes under `pid`, children first (from /proc, Linux)."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    parent_of[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        children = [p for p, parent in parent_of.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _wait_port_free(port: int, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                return
            except OSError:
                time.sleep(0.1)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(db=tmp_path / "daemon.db")
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()
