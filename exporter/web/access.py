"""The access log: one line per request, tokens redacted."""

from __future__ import annotations

import logging
import time
from urllib.parse import unquote_plus

from flask import Flask, Response, g, request

log = logging.getLogger(__name__)

# Asked every few seconds by Prometheus and health checks: one INFO line each would drown the
# log. Their successful answers are logged at DEBUG; errors stay at INFO.
ROUTINE_PATHS = frozenset({"/metrics", "/healthz"})


def install(app: Flask) -> None:
    """Time each request and log it once answered."""

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _access(resp: Response) -> Response:
        started = g.get("started", time.perf_counter())
        log_request(
            request.remote_addr,
            request.method,
            request.path,
            request.query_string,
            resp.status_code,
            started,
            stored=g.get("stored_event", False),
        )
        return resp


def log_request(
    remote: str | None,
    method: str,
    path: str,
    query: bytes | str,
    status: int,
    started: float,
    *,
    stored: bool = False,
) -> None:
    """The one access-log line of a request (tokens redacted; control characters are escaped
    by the handlers' filter, exporter/logsafe.py). `stored`: the request stored an event, which
    has its own line ("stored deployment <id> ...": at DEBUG, and at INFO at most once a minute
    with a count, exporter/ingest/routes.py), so its access line is DEBUG: steady CI traffic
    does not log a line per post (issue 16)."""
    routine = path in ROUTINE_PATHS and status < 400
    level = logging.DEBUG if routine or stored else logging.INFO
    if not log.isEnabledFor(level):
        return
    elapsed_ms = (time.perf_counter() - started) * 1000
    line = '%s "%s %s" %d %.1fms'
    log.log(level, line, remote, method, redact_url(path, query), status, elapsed_ms)


def redact_url(path: str, query: bytes | str) -> str:
    """The request path with the value of every parameter that decodes to `access_token`
    replaced, for logs (`access%5Ftoken=` is the same parameter to the server, so it is the
    same secret in a log)."""
    qs = query.decode("latin-1") if isinstance(query, bytes) else str(query)
    if not qs:
        return path
    parts = []
    for part in qs.split("&"):
        key = part.split("=", 1)[0]
        if unquote_plus(key).strip().lower() == "access_token":
            part = f"{key}=[redacted]"
        parts.append(part)
    return f"{path}?{'&'.join(parts)}"
