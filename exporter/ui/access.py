"""Who is looking at the status page: anyone (it shows what /metrics shows), or a read token
from the sign-in cookie (or an Authorization header), which the page needs when
`ui_require_token` (or `metrics_require_token`) is on and which adds the read API's details.

The cookie holds the token itself, Secure, HttpOnly and SameSite=Strict: scripts cannot read
it and other sites cannot send it. The page never puts a token into a URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from flask import Response, request
from werkzeug.wrappers import Response as WerkzeugResponse

from exporter.web.auth import request_token
from exporter.web.state import get_db, settings
from storage import tokens

COOKIE = "releasebits_ui"
COOKIE_MAX_AGE = 7 * 86_400  # a week; a revoked token stops working at once anyway

# Strict: nothing but this server's own stylesheet, script and forms; no inline code at all.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class Viewer:
    """The reader of a page: whether a token is required, who signed in, why one was refused."""

    required: bool
    name: str | None = None  # the signed-in token's name
    refused: str | None = None  # why a presented token was not accepted

    @property
    def signed_in(self) -> bool:
        return self.name is not None

    @property
    def allowed(self) -> bool:
        return self.signed_in or not self.required


def token_required() -> bool:
    """The page never shows more than /metrics does publicly."""
    s = settings()
    return s.ui_require_token or s.metrics_require_token


def viewer() -> Viewer:
    required = token_required()
    presented = request_token() or request.cookies.get(COOKIE)
    if not presented:
        return Viewer(required)
    return check(presented, required)


def check(token: str, required: bool) -> Viewer:
    found = tokens.authenticate(get_db(), token.strip())
    if found is None:
        return Viewer(required, refused="That token is unknown or revoked.")
    if "read" not in found.scopes:
        return Viewer(required, refused=f"The token '{found.name}' lacks the 'read' scope.")
    return Viewer(required, name=found.name)


def set_cookie(resp: WerkzeugResponse, token: str) -> None:
    resp.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE,
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def clear_cookie(resp: WerkzeugResponse) -> None:
    resp.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")


def cross_site() -> bool:
    """A form posted from another site (login CSRF): browsers say so in Sec-Fetch-Site."""
    return request.headers.get("Sec-Fetch-Site", "same-origin") not in {"same-origin", "none"}


def safe_next(target: str | None) -> str:
    """A path on this server to go to after signing in; anything else (another host, a
    scheme, a protocol-relative //host) becomes the status page."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
    ):
        return "/"
    return target


def here() -> str:
    """This page's path and query, without any access_token, for the sign-in form's `next`."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "access_token"]
    return request.path + (f"?{urlencode(args)}" if args else "")


def secure_headers(resp: Response) -> Response:
    """Headers of every status page answer: the CSP, no framing, no sniffing, no referrer;
    pages are never cached (they may show what only a token may read)."""
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Referrer-Policy"] = "no-referrer"
    if resp.mimetype == "text/html":
        resp.headers["Cache-Control"] = "no-store"
    return resp
