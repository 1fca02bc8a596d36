"""Processes: gunicorn for the web tier, and the `serve` supervisor that runs web + one worker."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from typing import Any

from gunicorn.app.base import BaseApplication

from exporter.app import create_app
from exporter.settings import SETTINGS, Settings

log = logging.getLogger(__name__)


def _bind(settings: Settings) -> str:
    host = settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{settings.port}"


def run_web(settings: Settings) -> None:
    """Serve the Flask app with gunicorn (gthread workers); returns when gunicorn stops."""

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            cfg: dict[str, Any] = {
                "bind": [_bind(settings)],
                "workers": settings.workers,
                "threads": settings.threads,
                "worker_class": "gthread",
                "timeout": 60,
                "graceful_timeout": 30,
                "keepalive": 5,
                "loglevel": settings.log_level,
                "errorlog": "-",
                # Gunicorn's access log would print raw URLs, access_token included; the app
                # logs each request itself with the token redacted.
                "accesslog": None,
                "proc_name": "releasebits-web",
                # gunicorn >= 24 opens a control socket under $HOME by default; a daemon
                # running as a locked-down user should not write there.
                "control_socket_disable": True,
                "when_ready": lambda _server: log.info(
                    "ReleaseBits listening on http://%s (db %s)", _bind(settings), settings.db
                ),
            }
            for key, value in cfg.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(settings)

    _Gunicorn().run()


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
    return subprocess.Popen(
        [sys.executable, "-m", "exporter", role],
        env=_child_env(settings),
        preexec_fn=_die_with_parent,
    )


def serve_all(settings: Settings) -> int:
    """Run `web` and exactly one `worker` as children; restart the worker if it dies.

    SIGTERM/SIGINT: forward to both, wait for gunicorn to finish in-flight requests, exit 0.
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
