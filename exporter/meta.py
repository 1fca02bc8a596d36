"""Landing page, health and the OpenAPI document."""

from __future__ import annotations

import html
import logging
import sqlite3
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from exporter import __version__
from exporter.openapi import openapi_document
from exporter.web.state import get_db, settings
from storage import heartbeat
from storage.db import StorageError

log = logging.getLogger(__name__)
bp = Blueprint("meta", __name__)

_LANDING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ReleaseBits</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;
line-height:1.5}}code{{background:#f3f3f3;padding:0 .2em}}</style></head>
<body><h1>ReleaseBits {version}</h1>
<p>CI/CD deployments, builds and release health as Prometheus metrics, badges and forwarded
events.</p>
<ul>
<li><a href="/metrics">/metrics</a>: Prometheus metrics{metrics_note}</li>
<li><a href="/healthz">/healthz</a>: health of the database and the background worker</li>
<li><a href="/openapi.json">/openapi.json</a>: the API description (OpenAPI 3.1)</li>
<li><a href="/components">/components</a>: components (needs a read token)</li>
<li><a href="/releases">/releases</a>: releases (needs a read token)</li>
<li><a href="/deliveries">/deliveries</a>: events forwarded to Grafana, Sentry, Bugsnag, New Relic
and webhooks, and their state (needs a read token)</li>
<li><code>/badges/components/SLUG/KIND.svg</code> (or <code>.json</code> for shields.io), KIND one
of <code>version</code>, <code>build</code>, <code>crash-free</code>, <code>deployments</code>,
<code>last-deploy</code>: README badges{badges_note}</li>
</ul>
<p>Post a deployment:</p>
<pre><code>curl -XPOST "{base}components/my-service/deployments?access_token=TOKEN&amp;version=v1.2.3&amp;stage=production"</code></pre>
<p>Create a token with <code>releasebits token create NAME</code>.</p>
</body></html>
"""


@bp.get("/")
def landing() -> Response:
    s = settings()
    needs_read = " (needs a read token)"
    page = _LANDING.format(
        version=html.escape(__version__),
        metrics_note=needs_read if s.metrics_require_token else "",
        badges_note=needs_read if s.badges_require_token else "",
        base=html.escape(request.host_url),
    )
    return Response(page, mimetype="text/html")


@bp.get("/healthz")
def healthz() -> Any:
    s = settings()
    body: dict[str, Any] = {"status": "ok", "version": __version__}
    try:
        db = get_db()
        heartbeat.database_readable(db)
        beat = heartbeat.last_beat(db)
    except (sqlite3.Error, StorageError) as exc:
        log.error("health check: database unreadable: %s", exc)
        resp = jsonify({"status": "error", "version": __version__, "database": "unavailable"})
        resp.status_code = 503
        return resp
    body["database"] = "ok"
    stale_after = 3 * s.worker_heartbeat_seconds + 5
    body["worker"] = {
        "last_heartbeat": beat,
        "alive": beat is not None and time.time() - beat < stale_after,
    }
    return jsonify(body)


@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(openapi_document(__version__))
