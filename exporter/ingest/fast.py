"""The lean ingest path: POST of a JSON deployment or build, answered without Flask's
request machinery, with the same validation, storage, errors and access log.

Most of the ingest CPU went to Flask and werkzeug around a request (context, routing, hooks,
response objects), not to ReleaseBits' own work (benchmarks/README.md, issue 16). This WSGI
middleware takes only the plain, common case: `POST /components/<slug>/deployments|builds`
with a JSON body of known length, a token in the Authorization header and no query string.
Everything else (forms, query parameters, chunked bodies, oversized bodies, GETs) goes to the
Flask app unchanged. Both paths call `routes.create`, `auth.verify` and the same error shapes,
so an answer does not depend on the path that produced it (the API tests run through here).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from exporter.ingest import routes
from exporter.web import access
from exporter.web.auth import header_token, verify
from exporter.web.body import parse_json
from exporter.web.errors import ApiError, error_document, internal_error, storage_unavailable
from exporter.web.fastjson import encode
from exporter.web.state import AppState
from storage.db import DB_ERRORS

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_PATH = re.compile(r"/components/([^/]+)/(deployment|build)s/?")
_REASONS = {s.value: s.phrase for s in HTTPStatus}


class FastIngest:
    """WSGI middleware in front of the Flask app (see the module docstring)."""

    def __init__(self, app: WSGIApp, state: AppState):
        self.app = app
        self.state = state

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        match = self._eligible(environ)
        if match is None:
            return self.app(environ, start_response)
        started = time.perf_counter()
        status, document, headers = self._answer(environ, match[0], match[1])
        body = encode(document)
        start_response(
            f"{status} {_REASONS.get(status, '')}",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                *headers.items(),
            ],
        )
        access.log_request(
            environ.get("REMOTE_ADDR"),
            "POST",
            environ["PATH_INFO"],
            "",
            status,
            started,
            stored=status == 201,  # routes.create answers 201 only for an event it stored
        )
        return [body]

    def _eligible(self, environ: dict[str, Any]) -> tuple[str, str] | None:
        """(kind, raw slug) when this path can answer the request, else None."""
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("QUERY_STRING"):
            return None
        if environ.get("SCRIPT_NAME") or environ.get("HTTP_TRANSFER_ENCODING"):
            return None
        if "HTTP_AUTHORIZATION" not in environ:
            return None
        ctype = environ.get("CONTENT_TYPE", "")
        if ctype != "application/json" and not ctype.startswith("application/json;"):
            return None
        length = environ.get("CONTENT_LENGTH", "")
        if not length.isdigit() or not 0 < int(length) <= self.state.settings.max_body_bytes:
            return None
        match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
        return (match.group(2), match.group(1)) if match else None

    def _answer(
        self, environ: dict[str, Any], kind: str, raw_slug: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        s = self.state.settings
        store = None
        try:
            store = s.store()
            token = verify(
                header_token(environ["HTTP_AUTHORIZATION"]),
                "write",
                store,
                self.state.verified_tokens,  # re-checked in the write (events.record_event)
            )
            routes.slug_or_error(raw_slug)
            raw = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
            return routes.create(
                kind,
                raw_slug,
                parse_json(raw),
                token_id=token.id,
                idempotency_key=environ.get("HTTP_IDEMPOTENCY_KEY"),
                store=store,
                app=self.state,
            )
        except ApiError as exc:
            failure = exc
        except DB_ERRORS as exc:
            log.error("storage error on POST %s: %s", environ["PATH_INFO"], exc)
            failure = storage_unavailable()
        except Exception:
            log.exception("unhandled error on POST %s", environ["PATH_INFO"])
            failure = internal_error()
        finally:
            if store is not None:
                store.rollback()  # a failed request leaves nothing half-written behind
        return failure.status, error_document(failure), failure.headers
