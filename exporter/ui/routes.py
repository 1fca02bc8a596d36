"""The status page (/), a component's page, /docs, and signing in and out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, redirect, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response as WerkzeugResponse

from exporter import __version__
from exporter.badges.model import RESULT_COLORS
from exporter.errors import ValidationError
from exporter.names import RESULT_CLASSES, STAGE_RE, normalize_slug
from exporter.openapi import openapi_document
from exporter.ui import access, cells, params
from exporter.ui import docs as api_docs
from exporter.ui import status as view
from exporter.ui.access import Viewer
from exporter.web.errors import ApiError
from exporter.web.pagination import decode_cursor, encode_cursor
from exporter.web.params import declares
from exporter.web.state import get_db, settings
from storage import components

bp = Blueprint(
    "ui",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/ui/static",
)
bp.after_request(access.secure_headers)
bp.add_app_template_global(cells.grid_rows, "grid_rows")
bp.add_app_template_global(cells.when_html, "when_html")


@bp.record_once
def _compact_templates(state: BlueprintSetupState) -> None:
    """Block tags leave no blank lines: the grid of 500 x 5 cells stays small on the wire."""
    state.app.jinja_env.trim_blocks = True
    state.app.jinja_env.lstrip_blocks = True


REFRESH_SECONDS = 30


def _page(template: str, viewer: Viewer, status: int = 200, **context: Any) -> Response:
    html = render_template(
        template,
        viewer=viewer,
        version=__version__,
        refresh_seconds=REFRESH_SECONDS,
        RESULT_COLORS=RESULT_COLORS,
        **context,
    )
    return Response(html, status=status, mimetype="text/html")


def _sign_in() -> WerkzeugResponse:
    """A page that needs a token sends the browser to the sign-in form, and back afterwards
    (a redirect, not a 401 page: browsers log every 401 document as an error)."""
    return redirect(url_for("ui.sign_in_form", next=access.here()), code=303)


def _form(viewer: Viewer, target: str, error: str | None, status: int = 200) -> Response:
    return _page(
        "ui/sign_in.html", viewer, status, next=target, error=error, secure=request.is_secure
    )


def _filters(*, component: str | None = None) -> tuple[view.Filters, list[str]]:
    """The feed filters from the query string; an invalid value is dropped with a notice."""
    notices = []
    args = request.args
    raw_component = component or (args.get("component") or "").strip()
    if raw_component:
        try:
            component = normalize_slug(raw_component)
        except ValidationError:
            notices.append(f"'{raw_component[:80]}' is not a component name; showing all.")
    stage = (args.get("stage") or "").strip().lower() or None
    if stage is not None and not STAGE_RE.fullmatch(stage):
        notices.append(f"'{stage[:80]}' is not a stage name; showing all stages.")
        stage = None
    result = args.get("result") or None
    if result is not None and result not in RESULT_CLASSES:
        notices.append(f"'{result[:80]}' is not a result class; showing all results.")
        result = None
    kind = args.get("kind") or None
    if kind is not None and kind not in params.KINDS:
        notices.append(f"'{kind[:80]}' is not deployment or build; showing both.")
        kind = None
    return view.Filters(component, stage, result, kind), notices


def _cursor(notices: list[str]) -> tuple[Any, ...] | None:
    """The feed position from ?cursor=, or None (first page) with a notice if it is not ours."""
    text = request.args.get("cursor")
    if not text:
        return None
    try:
        raw = decode_cursor(text)
    except ApiError:
        raw = None
    valid = (
        isinstance(raw, list)
        and len(raw) == 3
        and isinstance(raw[0], int | float)
        and all(type(v) is int for v in raw[1:])
    )
    if not valid:
        notices.append("That page link is not valid any more; showing the newest events.")
        return None
    return tuple(raw)


@dataclass(frozen=True)
class Pager:
    """Links to the newest page of the feed and to the page after this one (None: no link)."""

    newest: str | None
    older: str | None


def _feed(
    filters: view.Filters, notices: list[str], viewer: Viewer, now: float, base: str
) -> tuple[view.Feed, Pager]:
    """A page of the feed and its links: the filters, never a token, relative to this server."""
    after = _cursor(notices)
    feed = view.feed(get_db(), settings(), filters, now, detail=viewer.signed_in, after=after)
    in_path = {"component": None} if base != "/" else {}
    first = filters.query(**in_path)
    newest = (base + ("?" + urlencode(first) if first else "")) if after is not None else None
    older = None
    if feed.next_cursor is not None:
        older = (
            base + "?" + urlencode(filters.query(**in_path, cursor=encode_cursor(feed.next_cursor)))
        )
    return feed, Pager(newest, older)


@bp.get("/")
@declares(*params.STATUS_PARAMS)
def status_page() -> WerkzeugResponse:
    viewer = access.viewer()
    if not viewer.allowed:
        return _sign_in()
    db, s, now = get_db(), settings(), time.time()
    filters, notices = _filters()
    feed, pager = _feed(filters, notices, viewer, now, "/")
    return _page(
        "ui/status.html",
        viewer,
        feed=feed,
        pager=pager,
        filters=filters,
        notices=notices,
        grid=view.grid(db, s, now, component=filters.component, stage=filters.stage),
        health=view.health(db, s, now, detail=viewer.signed_in),
        now=view.moment(now, now),
        component_names=components.slugs(db, limit=s.max_components),
        stages=components.stage_order(db),
        results=RESULT_CLASSES,
        kinds=params.KINDS,
        empty=not components.slugs(db, limit=1),
        refresh=True,
    )


@bp.get("/ui/components/<slug>")
@declares(*params.COMPONENT_PARAMS)
def component_page(slug: str) -> WerkzeugResponse:
    viewer = access.viewer()
    if not viewer.allowed:
        return _sign_in()
    db, s, now = get_db(), settings(), time.time()
    try:
        name = normalize_slug(slug)
    except ValidationError:
        name = ""
    if not name or not components.exists(db, name):
        return _page("ui/not_found.html", viewer, 404, what=slug[:100])
    filters, notices = _filters(component=name)
    feed, pager = _feed(filters, notices, viewer, now, f"/ui/components/{name}")
    return _page(
        "ui/component.html",
        viewer,
        feed=feed,
        pager=pager,
        component=name,
        filters=filters,
        notices=notices,
        grid=view.grid(db, s, now, component=name, limited=False),
        lanes=view.timeline(db, s, name, now),
        stages=components.stage_order(db),
        results=RESULT_CLASSES,
        kinds=params.KINDS,
        refresh=True,
    )


@bp.get("/docs")
def docs_page() -> Response:
    viewer = access.viewer()
    document = api_docs.docs(openapi_document(__version__))
    return _page("ui/docs.html", viewer, api=document, code_spans=api_docs.code_spans)


@bp.get("/ui/sign-in")
@declares(params.NEXT)
def sign_in_form() -> Response:
    """The form; a token that stopped working (revoked) is named and its cookie dropped."""
    viewer = access.viewer()
    resp = _form(viewer, access.safe_next(request.args.get("next")), viewer.refused)
    if viewer.refused is not None and access.COOKIE in request.cookies:
        access.clear_cookie(resp)
    return resp


@bp.post("/ui/sign-in")
def sign_in() -> WerkzeugResponse:
    """A good read token goes into the cookie; a bad one gets the form again, saying why."""
    anonymous = Viewer(access.token_required())
    if access.cross_site():
        return _form(anonymous, "/", "Sign in from this server's own page.", 403)
    target = access.safe_next(request.form.get("next"))
    token = (request.form.get("token") or "").strip()
    if not token:
        return _form(anonymous, target, "Paste a token to sign in.")
    viewer = access.check(token, anonymous.required)
    if not viewer.signed_in:
        return _form(anonymous, target, viewer.refused)
    resp = redirect(target, code=303)
    access.set_cookie(resp, token)
    return resp


@bp.post("/ui/sign-out")
def sign_out() -> WerkzeugResponse:
    resp = redirect(url_for("ui.status_page"), code=303)
    if not access.cross_site():
        access.clear_cookie(resp)
    return resp
