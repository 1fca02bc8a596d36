"""The forwarding outbox, visible: list deliveries, and retry one."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from exporter.web.auth import require
from exporter.web.errors import ApiError
from exporter.web.pagination import cursor_arg, exactly, paged, parse_limit
from exporter.web.params import CURSOR, Param, declares, enum, limit_param
from exporter.web.state import get_db
from storage import outbox

bp = Blueprint("deliveries", __name__)
LIMIT = limit_param(500)
LIST_PARAMS = (
    Param("status", enum(*outbox.STATUSES)),
    Param("target", description="A configured target name."),
    LIMIT,
    CURSOR,
)


@bp.get("/deliveries", strict_slashes=False)
@require("read")
@declares(*LIST_PARAMS)
def list_deliveries() -> Any:
    status = request.args.get("status") or None
    if status is not None and status not in outbox.STATUSES:
        raise ApiError(
            400,
            "invalid_parameter",
            f"status must be one of {', '.join(outbox.STATUSES)}",
            {"status": status[:40]},
        )
    rows, cursor = outbox.list_deliveries(
        get_db(),
        status=status,
        target=request.args.get("target") or None,
        limit=parse_limit(LIMIT),
        after=cursor_arg(exactly(int)),
    )
    return paged(rows, cursor)


@bp.post("/deliveries/<delivery_id>/retry")
@require("write")
def retry_delivery(delivery_id: str) -> Any:
    db = get_db()
    previous = outbox.retry(db, delivery_id)
    if previous is None:
        raise ApiError(404, "not_found", f"no delivery {delivery_id[:64]!r}")
    if previous == "delivering":
        raise ApiError(
            409, "delivery_in_flight", "the delivery is being attempted right now; try again later"
        )
    return jsonify(outbox.get_delivery(db, delivery_id))
