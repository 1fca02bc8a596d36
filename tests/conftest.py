"""Shared fixtures: settings on a fresh database, migrated db, app, client, tokens, a daemon.

The database is a temp SQLite file, or with RELEASEBITS_TEST_BACKEND=postgres a fresh database
on a throwaway PostgreSQL cluster (tests/pg.py): the same tests run against both backends.
Tests about SQLite files by nature (WAL, modes, quick_check, the write lock) carry the
`sqlite_only` marker and are skipped on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.app import create_app
from exporter.settings import Settings
from storage import tokens
from storage.db import close_all, close_thread_stores, open_db
from tests import pg
from tests.pg import free_port

FIXTURES = Path(__file__).parent / "fixtures"
REQUIRE_E2E = os.environ.get("RELEASEBITS_REQUIRE_E2E") == "1"
BACKEND = os.environ.get("RELEASEBITS_TEST_BACKEND", "sqlite")
if BACKEND not in ("sqlite", "postgres"):
    raise RuntimeError(f"RELEASEBITS_TEST_BACKEND: expected sqlite or postgres, got {BACKEND!r}")
ON_POSTGRES = BACKEND == "postgres"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On the PostgreSQL pass, skip the tests that are about SQLite files (their marker says
    why), and those that use PostgreSQL whatever the backend (they ran in the default pass)."""
    if not ON_POSTGRES:
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            why = marker.args[0] if marker.args else "about the SQLite file"
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {why}"))
        elif item.get_closest_marker("needs_postgres"):
            item.add_marker(
                pytest.mark.skip(
                    reason="needs PostgreSQL whatever the backend: runs in the default pass"
                )
            )


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


def _migrate(url: str) -> None:
    open_db(url, migrate=True).close()
    close_all()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pg.Cluster]:
    """A throwaway PostgreSQL server for the session (skipped where PostgreSQL is not
    installed, unless RELEASEBITS_REQUIRE_E2E=1 or the PostgreSQL pass asks for it)."""
    if pg.bindir() is None:
        message = "PostgreSQL server binaries (initdb) not found (.ci/run installs postgresql)"
        if REQUIRE_E2E or ON_POSTGRES:
            pytest.fail(message)
        pytest.skip(message)
    cluster = pg.start_cluster(_migrate)
    try:
        yield cluster
    finally:
        close_all()
        pg.close(cluster)


def fresh_location(request: pytest.FixtureRequest, directory: Path, name: str) -> str:
    """A new database: `directory/name.db`, or on the PostgreSQL pass a new database cloned
    from the migrated template (left for the cluster's end unless the caller drops it)."""
    if not ON_POSTGRES:
        return str(directory / f"{name}.db")
    cluster: pg.Cluster = request.getfixturevalue("pg_cluster")
    return cluster.database()


@pytest.fixture
def pg_url(pg_cluster: pg.Cluster) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database whichever backend the pass is about (tests of
    PostgreSQL itself: replicas, concurrency), emptied for the next test afterwards."""
    url = pg_cluster.database("pgt")
    yield url
    close_all()
    pg_cluster.recycle(url)


def in_threads(work: Callable[[int], None], count: int, who: str) -> None:
    """work(0), ..., work(count - 1) at once in threads; the first failure ends the process
    with a message naming `who` (a forked writer reports it through its exit code)."""
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{who}: {errors[0]!r}")


@pytest.fixture
def new_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Makes fresh, migrated database locations for this test: `new_db("name")` is a file in
    tmp_path, or on the PostgreSQL pass a new database (emptied for the next test afterwards)."""
    made: list[str] = []

    def make(name: str = "releasebits") -> str:
        made.append(fresh_location(request, tmp_path, name))
        return made[-1]

    yield make
    if ON_POSTGRES and made:
        close_all()
        cluster: pg.Cluster = request.getfixturevalue("pg_cluster")
        for url in made:
            cluster.recycle(url)


@pytest.fixture(autouse=True)
def _no_stray_sqlite_files(request: pytest.FixtureRequest) -> Iterator[None]:
    """On the PostgreSQL pass, a test that still made an SQLite file (a hard-coded path) would
    pass without testing PostgreSQL: fail it instead."""
    checked = ON_POSTGRES and not request.node.get_closest_marker("sqlite_only")
    tmp = (
        request.getfixturevalue("tmp_path")
        if checked and "tmp_path" in request.fixturenames
        else None
    )
    yield
    if tmp is not None:
        stray = sorted(p.name for p in Path(tmp).rglob("*.db"))
        assert stray == [], f"SQLite files made on the PostgreSQL pass: {stray}"


@pytest.fixture
def settings(new_db: Callable[..., str]) -> Settings:
    return Settings(db=new_db())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A migrated SQLite file's bytes, made once (closing it folds the WAL into the file)."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    open_db(path, migrate=True).close()
    close_thread_stores()
    return path.read_bytes()


@pytest.fixture
def db(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Any]:
    """The settings' database, migrated. On SQLite a new file starts as a copy of a migrated
    one (0600, as open_db creates it): ~1 ms instead of ~30-100 ms of migrations each test."""
    if not ON_POSTGRES and not os.path.exists(settings.db):
        template: bytes = request.getfixturevalue("sqlite_template")
        fd = os.open(settings.db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(template)
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


@dataclass
class Daemon:
    """A `releasebits serve` subprocess on a free port with its own database (a file path or a
    postgresql:// URL); its log goes beside the file, or into `workdir`."""

    db: Path | str
    port: int = field(default_factory=free_port)
    workdir: Path | None = None
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
        workdir = self.workdir or Path(self.db).parent
        self.log_path = workdir / f"daemon-{self.port}.{int(time.time() * 1000)}.log"
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


def descendants(pid: int, *, depth: int | None = None) -> list[int]:
    """Live (not zombie) processes under `pid`, children first (from /proc, Linux); with
    `depth`, only that many generations (1: the children)."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    parent_of[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    generations = 0
    while frontier and (depth is None or generations < depth):
        children = [p for p, parent in parent_of.items() if parent in frontier]
        found += children
        frontier = children
        generations += 1
    return found


def wait_for(
    check: Callable[[], bool], what: str, timeout: float = 60, detail: Callable[[], str] = str
) -> None:
    """Poll `check` until it holds; fail naming `what` (and `detail()`, the state) at timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    extra = detail()
    raise AssertionError(f"timed out waiting for {what}" + (f": {extra}" if extra else ""))


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
def daemon(tmp_path: Path, new_db: Callable[..., str]) -> Iterator[Daemon]:
    d = Daemon(db=new_db("daemon"), workdir=tmp_path)
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()
