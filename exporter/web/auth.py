"""Token auth: `Authorization: Bearer <t>`, `Authorization: <t>` or `?access_token=<t>`."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request

from exporter.web.errors import ApiError
from exporter.web.state import get_db
from storage import tokens
from storage.db import Store
from storage.tokens import Token, VerifiedTokens

F = TypeVar("F", bound=Callable[..., Any])


def request_token() -> str | None:
    """The token from `Authorization: Bearer <t>`, `Authorization: <t>` or `?access_token=`."""
    header = request.headers.get("Authorization")
    if header is not None:
        return header_token(header)
    if "access_token" in request.args:
        return request.args.get("access_token", "").strip()
    return None


def header_token(header: str) -> str:
    """The token of an Authorization header: `Bearer <t>`, `Token <t>` or the bare token."""
    value = header.strip()
    if value.lower().startswith("bearer "):
        value = value[7:].strip()
    elif value.lower().startswith("token "):
        value = value[6:].strip()
    return value


CHALLENGE = {"WWW-Authenticate": 'Bearer realm="releasebits"'}


def invalid_token() -> ApiError:
    """401 for a token that is unknown or revoked."""
    return ApiError(
        401, "invalid_token", "the API token is unknown or revoked", headers=dict(CHALLENGE)
    )


def verify(
    token: str | None, scope: str, db: Store, verified: VerifiedTokens | None = None
) -> Token:
    """The live token with `scope`, or ApiError 401 (missing, empty, unknown) / 403 (scope).

    With `verified`, a token verified lately is taken from memory: only for writes that pass
    the token's id to events.record_event, which checks it is still live when it commits."""
    challenge = dict(CHALLENGE)
    if token is None:
        raise ApiError(
            401,
            "missing_token",
            "this endpoint needs an API token: send 'Authorization: Bearer <token>' or "
            "?access_token=<token> (create one with 'releasebits token create NAME')",
            headers=challenge,
        )
    if token == "":
        raise ApiError(401, "invalid_token", "the API token is empty", headers=challenge)
    found = (verified.authenticate if verified else tokens.authenticate)(db, token)
    if found is None:
        raise invalid_token()
    if scope not in found.scopes:
        raise ApiError(
            403,
            "insufficient_scope",
            f"the token '{found.name}' lacks the '{scope}' scope",
        )
    return found


def check_scope(scope: str) -> Token:
    found = verify(request_token(), scope, get_db())
    g.token = found
    return found


def require(scope: str) -> Callable[[F], F]:
    """Decorator: the view needs a token with `scope` ('read' or 'write')."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check_scope(scope)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator
