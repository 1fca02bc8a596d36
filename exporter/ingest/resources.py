"""Components and releases: read views over what the events built."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from exporter.errors import ValidationError
from exporter.ingest.routes import slug_or_error
from exporter.ingest.validation import validate_release
from exporter.web.auth import require
from exporter.web.body import read_payload
from exporter.web.errors import ApiError
from exporter.web.pagination import cursor_arg, exactly, number, paged, pair, parse_limit
from exporter.web.params import CURSOR, declares, limit_param
from exporter.web.state import get_db, state
from storage import components, events, releases

bp = Blueprint("resources", __name__)
COMPONENT_LIST_PARAMS = (limit_param(1000, default=100), CURSOR)
RELEASE_LIST_PARAMS = (limit_param(500), CURSOR)


@bp.get("/components", strict_slashes=False)
@require("read")
@declares(*COMPONENT_LIST_PARAMS)
def list_components() -> Any:
    rows, cursor = components.list_components(
        get_db(), limit=parse_limit(COMPONENT_LIST_PARAMS[0]), after=cursor_arg(exactly(str))
    )
    return paged(rows, cursor)


@bp.get("/components/<slug>", strict_slashes=False)
@require("read")
def get_component(slug: str) -> Any:
    slug = slug_or_error(slug)
    found = components.get_component(get_db(), slug)
    if found is None:
        raise ApiError(404, "not_found", f"no component named {slug!r}")
    return jsonify(found)


@bp.post("/releases", strict_slashes=False)
@require("write")
def create_release() -> Any:
    try:
        release = validate_release(read_payload())
    except ValidationError as exc:
        raise ApiError(422, "validation_failed", str(exc), exc.fields) from None
    found, created = releases.create_release(get_db(), release, state().router)
    resp = jsonify(found)
    resp.status_code = 201 if created else 200
    resp.headers["Location"] = f"/releases/{found['id']}"
    return resp


@bp.get("/releases", strict_slashes=False)
@require("read")
@declares(*RELEASE_LIST_PARAMS)
def list_releases() -> Any:
    rows, cursor = releases.list_releases(
        get_db(),
        limit=parse_limit(RELEASE_LIST_PARAMS[0]),
        after=cursor_arg(pair(number, exactly(str))),
    )
    return paged(rows, cursor)


@bp.get("/releases/<path:id_or_name>")
@require("read")
def get_release(id_or_name: str) -> Any:
    db = get_db()
    found = releases.get_release(db, id_or_name)
    if found is None:
        raise ApiError(404, "not_found", f"no release with id or name {id_or_name[:120]!r}")
    found["deployments"], _ = events.list_events(
        db, "deployment", release_id=found["id"], limit=500
    )
    return jsonify(found)
