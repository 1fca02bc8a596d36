"""The access log: one line per request, tokens redacted."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping

from flask import Flask, Response, g, request

log = logging.getLogger(__name__)


def install(app: Flask) -> None:
    """Time each request and log it once answered."""

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _access(resp: Response) -> Response:
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        log.info(
            '%s "%s %s" %d %.1fms',
            request.remote_addr,
            request.method,
            redact_url(request.path, request.query_string),
            resp.status_code,
            elapsed_ms,
        )
        return resp


def redact_url(path: str, query: Mapping[str, str] | bytes | str) -> str:
    """The request path with any access_token value replaced, for logs."""
    qs = query.decode("latin-1") if isinstance(query, bytes) else str(query)
    if not qs:
        return path
    qs = re.sub(r"(?i)(^|&)(access_token=)[^&]*", r"\1\2[redacted]", qs)
    return f"{path}?{qs}"
