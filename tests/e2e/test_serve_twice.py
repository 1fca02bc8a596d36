"""`releasebits serve` started twice, stopped with Ctrl-C, or pointed at a read-only database:
one clear line and the right exit status, exactly one background worker per database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from pytest_httpserver import HTTPServer

from storage.db import open_db
from tests.conftest import Daemon, descendants, need_binary, wait_for
from tests.upstreams import TOKEN_ENV, FakeSentry, sources_toml

pytestmark = pytest.mark.e2e


def worker_alive(daemon: Daemon) -> bool:
    return bool(requests.get(f"{daemon.url}/healthz", timeout=5).json()["worker"]["alive"])


def serve(daemon: Daemon, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`releasebits serve` in the foreground, expected to give up on its own."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", "serve"],
        env=daemon.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_same_port_twice_is_one_line_and_exit_1(
    tmp_path: Path, new_db: Callable[..., str]
) -> None:
    first = Daemon(db=new_db("a"), workdir=tmp_path).start()
    try:
        second = Daemon(db=new_db("b"), workdir=tmp_path, port=first.port)
        started = time.monotonic()
        result = serve(second)
        elapsed = time.monotonic() - started
    finally:
        assert first.stop() == 0
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"releasebits: error: port: 127.0.0.1:{first.port} is already in use (another "
        "releasebits serve? pick another --port or RELEASEBITS_PORT)"
    )
    assert elapsed < 5  # no retries: gunicorn alone tries for ~5 s, logging each time


def test_a_second_daemon_on_the_same_database_stands_by_and_takes_over(
    tmp_path: Path, httpserver: HTTPServer, new_db: Callable[..., str]
) -> None:
    """Sentry polled hourly: each active worker polls once at start (two requests: totals and
    per-status), so the fake's request count tells how many workers have worked."""
    sentry = FakeSentry(httpserver).install()
    config = tmp_path / "rb.toml"
    config.write_text(sources_toml(sentry, None, interval="1h"))
    env = {**TOKEN_ENV, "RELEASEBITS_CONFIG": str(config)}
    shared = new_db("rb")
    first = Daemon(db=shared, workdir=tmp_path, extra_env=env).start()
    second = Daemon(db=shared, workdir=tmp_path, extra_env=env)
    try:
        wait_for(lambda: len(sentry.seen) == 2, "the first worker's poll")
        second.start()
        wait_for(lambda: "standing by" in second.log(), "the second worker to stand by")
        time.sleep(2)  # two heartbeats of the second daemon: it must not poll
        assert len(sentry.seen) == 2
        assert "background worker (" in second.log() and "holds the lease" in second.log()
        assert worker_alive(second)  # /healthz of either daemon sees the active worker

        assert first.stop() == 0  # gives the lease up: the standby takes over at once
        wait_for(lambda: len(sentry.seen) == 4, "the second worker to take over", timeout=10)
        assert "took over the worker lease" in second.log()
        assert worker_alive(second)
    finally:
        for d in (first, second):
            if d.proc is not None and d.proc.poll() is None:
                d.stop()
    assert "Traceback" not in first.log() + second.log()


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """The file readable but not writable, even for root (CI runs as root): immutable."""
    if os.geteuid() == 0:
        chattr = need_binary("chattr")
        subprocess.run([chattr, "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run([chattr, "-i", str(path)], check=True)
    else:
        path.chmod(0o444)
        path.parent.chmod(0o555)
        try:
            yield
        finally:
            path.parent.chmod(0o755)
            path.chmod(0o644)


@pytest.mark.sqlite_only("a database file made read-only (chattr +i)")
def test_a_read_only_database_stops_serve_at_start_with_one_line(tmp_path: Path) -> None:
    db_path = tmp_path / "rb.db"
    open_db(db_path, migrate=True).close()
    daemon = Daemon(db=db_path)
    with read_only(db_path):
        result = serve(daemon)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"releasebits: error: db: {db_path}: ")
    assert "readonly" in lines[0] or "read-only" in lines[0] or "ermission" in lines[0]
    assert "listening" not in result.stderr


def started(daemon: Daemon) -> bool:
    log = daemon.log()
    return "background worker started" in log and "ReleaseBits listening" in log


def test_ctrl_c_stops_quietly_with_exit_0(daemon: Daemon) -> None:
    """Ctrl-C (SIGINT to the terminal's process group): a clean stop, no error, exit 0."""
    daemon.start()
    wait_for(lambda: started(daemon), "web and worker to start")
    assert daemon.proc is not None
    os.killpg(daemon.proc.pid, signal.SIGINT)
    assert daemon.proc.wait(timeout=30) == 0, daemon.log()
    log = daemon.log()
    assert " ERROR " not in log and "restarting" not in log, log
    assert "Traceback" not in log
    assert "ReleaseBits stopped" in log


def test_children_stopping_before_serve_notices_is_no_crash(daemon: Daemon) -> None:
    """A service manager may signal the daemon's processes at once (systemd's
    KillMode=control-group): children that exit before `serve` has run its own handler must
    not read as a crash ("worker exited; restarting"). Made certain by pausing `serve`.
    serve's own children are signalled (the web server's main process stops its workers):
    Granian's worker processes signalled before their main log Granian's own "Unexpected exit
    from worker" race, which is Granian's and not what this test is about."""
    daemon.start()
    wait_for(lambda: started(daemon), "web and worker to start")
    assert daemon.proc is not None
    pid = daemon.proc.pid
    children = descendants(pid, depth=1)
    assert children
    os.kill(pid, signal.SIGSTOP)
    try:
        for child in [pid, *children]:
            with contextlib.suppress(ProcessLookupError):  # a server worker gone with its parent
                os.kill(child, signal.SIGTERM)
        wait_for(lambda: not descendants(pid), "web and worker to exit")
    finally:
        os.kill(pid, signal.SIGCONT)  # never leave it stopped, whatever failed
    assert daemon.proc.wait(timeout=30) == 0, daemon.log()
    log = daemon.log()
    assert " ERROR " not in log and "restarting" not in log, log
    assert "Traceback" not in log


def test_scrapes_and_health_checks_are_not_logged_at_info(daemon: Daemon) -> None:
    daemon.start()
    # start() polls /healthz, which answers 503 until the worker's first heartbeat on a slow
    # machine, and errors are logged at INFO by design: only what follows start() counts.
    started_log = len(daemon.log())
    for _ in range(3):
        assert requests.get(f"{daemon.url}/metrics", timeout=5).status_code == 200
        assert requests.get(f"{daemon.url}/healthz", timeout=5).status_code == 200
    assert requests.get(f"{daemon.url}/components", timeout=5).status_code == 401
    assert daemon.stop() == 0
    log = daemon.log()[started_log:]
    assert '"GET /components" 401' in log  # other requests are still logged
    assert '"GET /metrics"' not in log and '"GET /healthz"' not in log
