"""/metrics: Prometheus text or OpenMetrics by content negotiation, gzip when asked for."""

from __future__ import annotations

import gzip
import logging

from flask import Blueprint, Response, request
from prometheus_client.exposition import choose_encoder

from exporter.web.auth import check_scope
from exporter.web.errors import ApiError
from exporter.web.state import settings, state
from storage.db import DB_ERRORS

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    if settings().metrics_require_token:
        check_scope("read")
    registry = state().registry
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    try:
        output = encoder(registry)
    except DB_ERRORS as exc:
        log.error("scrape failed: database unavailable: %s", exc)
        raise ApiError(503, "storage_unavailable", "the database is unavailable") from None
    resp = Response(output, content_type=content_type)
    # Quality-aware (RFC 9110): "gzip;q=0" refuses gzip, "*" accepts it.
    if request.accept_encodings["gzip"] > 0:
        resp.set_data(gzip.compress(output, compresslevel=6))
        resp.headers["Content-Encoding"] = "gzip"
    resp.headers["Vary"] = "Accept, Accept-Encoding"
    return resp
