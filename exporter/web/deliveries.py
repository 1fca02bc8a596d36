"""The forwarding outbox, visible: list deliveries, and retry one."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from exporter.web.api import (
    ApiError,
    decode_cursor,
    encode_cursor,
    get_db,
    paged,
    parse_limit,
    require,
)
from storage import outbox

bp = Blueprint("deliveries", __name__)


@bp.get("/deliveries", strict_slashes=False)
@require("read")
def list_deliveries() -> Any:
    status = request.args.get("status") or None
    if status is not None and status not in outbox.STATUSES:
        raise ApiError(
            400,
            "invalid_parameter",
            f"status must be one of {', '.join(outbox.STATUSES)}",
            {"status": status[:40]},
        )
    after = None
    if request.args.get("cursor"):
        after = decode_cursor(request.args["cursor"])
        if not isinstance(after, int) or isinstance(after, bool):
            raise ApiError(400, "invalid_cursor", "the cursor parameter is not one this API issued")
    rows, cursor = outbox.list_deliveries(
        get_db(),
        status=status,
        target=request.args.get("target") or None,
        limit=parse_limit(),
        after=after,
    )
    return paged(rows, encode_cursor(cursor) if cursor is not None else None)


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
