"""Badge endpoints: /badges/components/{slug}/{kind}.svg|.json and /badges/releases/{name}/...

Badges always answer an image (or shields.io JSON), never an error page: an unknown component,
stage or release is a grey "not found" badge with status 200, as shields.io draws it, because
README image proxies show nothing at all for an error status. Only a URL naming no badge kind
answers 404 (still with a grey badge body), and a missing token 401 when badges_require_token.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, request

from exporter import badges
from exporter.web.api import check_scope, get_db, settings

bp = Blueprint("badges", __name__)

SVG_TYPE = "image/svg+xml; charset=utf-8"
JSON_TYPE = "application/json"
# An SVG opened directly is a document: forbid scripts and external loads, whatever it holds.
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _guard() -> None:
    if settings().badges_require_token:
        check_scope("read")


def _answer(badge: badges.Badge, fmt: str, status: int = 200) -> Response:
    s = settings()
    resolved = badges.resolve(badge, badges.Look.from_args(request.args))
    if fmt == "svg":
        body, etag = badges.render_svg(resolved)
        resp = Response(body, status=status, content_type=SVG_TYPE)
        resp.headers["Content-Security-Policy"] = SVG_CSP
    else:
        doc = badges.endpoint_json(
            resolved, is_error=badge.is_error, cache_seconds=s.badge_max_age_seconds
        )
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        etag = badges.etag_of(body)
        resp = Response(body, status=status, content_type=JSON_TYPE)
    age = s.badge_max_age_seconds
    if s.badges_require_token:
        # Private badges: browsers may cache them, shared caches and proxies must not.
        resp.headers["Cache-Control"] = f"private, max-age={age}"
        resp.headers["Vary"] = "Authorization"
    else:
        # Short and explicit so GitHub's image proxy (camo) and CDNs refetch after `age` seconds.
        resp.headers["Cache-Control"] = f"public, max-age={age}, s-maxage={age}"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.set_etag(etag)
    if status == 200:
        resp.make_conditional(request)  # 304 when If-None-Match names this body
    return resp


def _component(slug: str, kind: str, fmt: str) -> Response:
    _guard()
    if kind not in badges.COMPONENT_KINDS:
        return _answer(badges.unknown_kind(), fmt, 404)
    badge = badges.component_badge(get_db(), settings(), slug, kind, request.args)
    return _answer(badge, fmt)


def _release(name: str, kind: str, fmt: str) -> Response:
    _guard()
    if kind not in badges.RELEASE_KINDS:
        return _answer(badges.unknown_kind(), fmt, 404)
    badge = badges.release_badge(get_db(), settings(), name, kind, request.args)
    return _answer(badge, fmt)


@bp.get("/badges/components/<slug>/<kind>.svg")
def component_svg(slug: str, kind: str) -> Response:
    return _component(slug, kind, "svg")


@bp.get("/badges/components/<slug>/<kind>.json")
def component_json(slug: str, kind: str) -> Response:
    return _component(slug, kind, "json")


@bp.get("/badges/releases/<path:name>/<kind>.svg")
def release_svg(name: str, kind: str) -> Response:
    return _release(name, kind, "svg")


@bp.get("/badges/releases/<path:name>/<kind>.json")
def release_json(name: str, kind: str) -> Response:
    return _release(name, kind, "json")
