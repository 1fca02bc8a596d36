"""Badge endpoints: /badges/components/{slug}/{kind}.svg|.json and /badges/releases/{name}/...

Badges always answer an image (or shields.io JSON), never an error page: an unknown component,
stage or release is a grey "not found" badge with status 200, as shields.io draws it, because
README image proxies show nothing at all for an error status. Only a URL naming no badge kind
answers 404 (still with a grey badge body), and a missing token 401 when badges_require_token.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from exporter.badges import model as badges
from exporter.badges.svg import etag_of, render_svg
from exporter.web.auth import check_scope
from exporter.web.errors import error_response, no_such_endpoint
from exporter.web.params import Param, declares, enum
from exporter.web.state import get_db, settings

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
        body, etag = render_svg(resolved)
        resp = Response(body, status=status, content_type=SVG_TYPE)
        resp.headers["Content-Security-Policy"] = SVG_CSP
    else:
        doc = badges.endpoint_json(
            resolved, is_error=badge.is_error, cache_seconds=s.badge_max_age_seconds
        )
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        etag = etag_of(body)
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


# The look parameters (shields.io's), and each badge family's own, declared for the OpenAPI
# document.
LOOK = (
    # Not an enum: like shields.io, any other value draws flat (a badge never errors on looks).
    Param(
        "style",
        description="shields.io style: " + ", ".join(badges.STYLES) + "; anything else draws flat.",
    ),
    Param("label", description="Replaces the left text."),
    Param("color", description="A shields.io colour name or hex (ff69b4); invalid ones ignored."),
    Param("labelColor", description="Colour of the label."),
)
COMPONENT_PARAMS = (
    Param("stage", description="Default: default_stage."),
    Param(
        "source",
        description="crash-free: the source; default: the worse of the sources (by colour "
        "against each source's target, then the lower rate).",
    ),
    Param(
        "with_component",
        enum("true", "false"),
        "true: the label starts with the component's name (checkout production).",
    ),
    Param(
        "period",
        enum(*badges.PERIODS),
        "deployments (default week), lead-time, change-failure-rate, recovery-time (default "
        "month): the period counted.",
    ),
    *LOOK,
)
RELEASE_PARAMS = (Param("source"), Param("environment"), *LOOK)


BadgeOf = Callable[[badges.Query, str, str], badges.Badge]  # (query, name, kind) -> Badge


def _register(
    path: str, family: str, kinds: tuple[str, ...], badge_of: BadgeOf, params: tuple[Param, ...]
) -> None:
    """One route per format (.svg, .json) for a family of badges (component or release)."""
    for fmt in ("svg", "json"):

        @declares(*params)
        def view(kind: str, fmt: str = fmt, **ident: str) -> Response:
            _guard()
            if kind not in kinds:
                return _answer(badges.unknown_kind(), fmt, 404)
            (name,) = ident.values()  # the slug or release name the path names
            query = badges.Query(get_db(), settings(), request.args)
            return _answer(badge_of(query, name, kind), fmt)

        # merge_slashes off: '//' answers the grey 404 badge, not a 308 redirect.
        bp.add_url_rule(
            f"{path}/<kind>.{fmt}", f"{family}_{fmt}", view, methods=["GET"], merge_slashes=False
        )


_register(
    "/badges/components/<slug>",
    "component",
    badges.COMPONENT_KINDS,
    badges.component_badge,
    COMPONENT_PARAMS,
)
_register(
    "/badges/releases/<path:name>",
    "release",
    badges.RELEASE_KINDS,
    badges.release_badge,
    RELEASE_PARAMS,
)


@bp.app_errorhandler(404)
def no_such_badge(err: HTTPException) -> Response:
    """A badge path that names no badge (a typo, a missing kind, an extra segment) is still a
    grey badge, so a README shows what is wrong instead of a broken image; any other 404 keeps
    the API's JSON error."""
    if not request.path.startswith("/badges/"):
        return error_response(no_such_endpoint())
    _guard()
    fmt = "json" if request.path.endswith(".json") else "svg"
    return _answer(badges.not_found("badge"), fmt, 404)
