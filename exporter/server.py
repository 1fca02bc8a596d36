"""Processes: Granian for the web tier, and the `serve` supervisor that runs web + one worker."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from typing import Any

from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import Server as GranianServer

from exporter.rsgi import RsgiFront
from exporter.settings import SETTINGS, Settings
from storage.db import describe

log = logging.getLogger(__name__)


def _bind(settings: Settings) -> str:
    host = settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{settings.port}"


# Granian's own logging setup (run in each of its workers) replaced by ReleaseBits' format, so
# the server's lines and the app's lines read alike; its access log stays off (see run_web).
def _log_config(level: str) -> dict[str, Any]:
    fmt = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"generic": {"format": fmt}},
        "filters": {"escape_control": {"()": "exporter.logsafe.EscapeControl"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "generic",
                "stream": "ext://sys.stderr",
                "filters": ["escape_control"],
            }
        },
        "loggers": {
            "_granian": {"handlers": ["console"], "level": level.upper(), "propagate": False},
            "apscheduler": {"level": "WARNING"},
        },
        "root": {"handlers": ["console"], "level": level.upper()},
    }


# Slow-header clients: Granian reads each request (headers and body) in Rust before a Python
# thread takes it, so a slow or idle socket holds no thread; a client still sending headers
# after this long is cut off.
HEADER_READ_TIMEOUT_MS = 10_000


def run_web(settings: Settings) -> None:
    """Serve the app with Granian; returns when it stops (SIGTERM, SIGINT).

    Chosen over gunicorn's gthread workers by measurement (benchmarks/README.md): gthread gives
    each connection a Python thread while it reads the request, so 8 slow sockets starved
    everyone; Granian parses HTTP in Rust and hands Python a request once its headers and body
    are in, and it served about 1.5x gunicorn's requests per second for the same Flask app
    (x1.48 measured). Its RSGI interface (exporter/rsgi.py) answers ingest POSTs on an
    event loop and runs the Flask app for everything else on `threads` request threads.
    """
    server = GranianServer(
        "exporter.rsgi:RsgiFront",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.RSGI,
        loop=Loops.auto,  # uvloop (a dependency): half the per-request cost of asyncio's loop
        workers=settings.web_workers,
        blocking_threads=1,  # the one event loop thread; the app's request threads are its own
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS),
        log_enabled=True,
        log_level=LogLevels(settings.log_level),
        log_dictconfig=_log_config(settings.log_level),
        # Granian's access log would print raw URLs, access_token included; the app logs each
        # request itself with the token redacted.
        log_access=False,
        workers_kill_timeout=30,
    )
    log.info(
        "ReleaseBits listening on http://%s (db %s, %d web worker%s x %d request threads)",
        _bind(settings),
        describe(settings.db),
        settings.web_workers,
        "" if settings.web_workers == 1 else "s",
        settings.threads,
    )
    # Workers are forked, so the loader may close over the already validated settings.
    server.serve(target_loader=lambda _target: _worker_app(settings))


# How long a Python thread may hold the GIL while others wait for it (CPython's default is
# 5 ms). A web worker's threads mostly wait on SQLite and the write lock; a finished request
# waiting up to 5 ms for the GIL was part of the ingest tail. At 2 ms, under wrk with 16
# connections: +7% requests/s and -8% server CPU per request, interleaved with the default in
# one run (benchmarks/README.md, issue 16).
WORKER_SWITCH_INTERVAL_S = 0.002


def _worker_app(settings: Settings) -> Any:
    """The app of one Granian worker process."""
    sys.setswitchinterval(WORKER_SWITCH_INTERVAL_S)
    return RsgiFront(settings)


def _die_with_parent() -> None:
    """In a child: get SIGTERM when the supervisor dies, even by kill -9 (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    values = asdict(settings)
    for setting in SETTINGS:
        value = values[setting.name]
        if isinstance(value, bool):
            env[setting.env] = str(value).lower()
        elif isinstance(value, tuple | list):  # lists travel comma-separated
            env[setting.env] = ",".join(str(v) for v in value)
        else:
            env[setting.env] = str(value)
    if settings.config_file:
        env["RELEASEBITS_CONFIG"] = settings.config_file
    return env


def _spawn(role: str, settings: Settings) -> subprocess.Popen[bytes]:
    # Its own process group: a terminal's Ctrl-C reaches only this supervisor, which stops the
    # children in order (SIGTERM: the web server finishes in-flight requests) instead of racing
    # them.
    return subprocess.Popen(
        [sys.executable, "-m", "exporter", role, "--started-by-serve"],
        env=_child_env(settings),
        preexec_fn=_die_with_parent,
        process_group=0,
    )


def serve_all(settings: Settings) -> int:
    """Run `web` and exactly one `worker` as children; restart the worker if it dies.

    SIGTERM/SIGINT: forward to both, wait for the web server to finish in-flight requests, exit 0.
    """
    # The `web` child logs the "no API tokens yet" hint; saying it here too printed it twice.
    stopping = False

    def _stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    web = _spawn("web", settings)
    worker = _spawn("worker", settings)
    worker_restarts: list[float] = []
    exit_code = 0
    while not stopping:
        time.sleep(0.2)
        if stopping:  # Ctrl-C reaches the children too: their exit is no failure then
            break
        if web.poll() is not None:
            log.error("web server exited with status %s; stopping", web.returncode)
            exit_code = 1
            break
        if worker.poll() is not None:
            now = time.time()
            worker_restarts = [t for t in worker_restarts if now - t < 60] + [now]
            log.error("background worker exited with status %s; restarting", worker.returncode)
            if len(worker_restarts) > 5:
                log.error("background worker keeps dying; stopping")
                exit_code = 1
                break
            worker = _spawn("worker", settings)
    for child in (web, worker):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in (web, worker):
        try:
            child.wait(timeout=40)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    log.info("ReleaseBits stopped")
    return exit_code


def address_problem(settings: Settings) -> str | None:
    """Why the HTTP address cannot be bound (one line), or None: checked before the web server
    starts, so a port in use is one line and exit 1, not the server's own retries and errors."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
            sock.bind((settings.host.strip("[]"), settings.port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (
                f"port: {_bind(settings)} is already in use (another releasebits serve? "
                "pick another --port or RELEASEBITS_PORT)"
            )
        return f"host: cannot listen on {_bind(settings)}: {exc.strerror or exc}"
    return None
