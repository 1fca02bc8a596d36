"""The lean ingest path: POST of a JSON deployment or build, answered without Flask's
request machinery, with the same validation, storage, errors and access log.

Most of the ingest CPU went to Flask and werkzeug around a request (context, routing, hooks,
response objects), not to ReleaseBits' own work (benchmarks/README.md, issue 16). This path
takes only the plain, common case: `POST /components/<slug>/deployments|builds` with a JSON
body of known length, a token in the Authorization header and no query string (`IngestPost`).
Everything else (forms, query parameters, chunked bodies, oversized bodies, GETs) goes to the
Flask app unchanged. Both paths call `routes.prepare`, `auth.verify` and the same error shapes,
so an answer does not depend on the path that produced it.

The server answers it on its event loop (exporter/rsgi.py); `FastIngest`, the same path as
WSGI middleware, serves the Flask app under a WSGI server and the test client (the API tests
run through it).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from exporter.ingest import routes
from exporter.web import access
from exporter.web.auth import header_token, verify
from exporter.web.body import parse_json
from exporter.web.errors import ApiError, error_document, internal_error, storage_unavailable
from exporter.web.fastjson import encode
from exporter.web.state import AppState
from storage.db import DB_ERRORS, Store

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Answer = tuple[int, dict[str, Any], dict[str, str]]  # status, JSON document, extra headers
Response = tuple[int, list[tuple[str, str]], bytes]  # status, headers, body
_PATH = re.compile(r"/components/([^/]+)/(deployment|build)s/?")
_REASONS = {s.value: s.phrase for s in HTTPStatus}


@dataclass(frozen=True)
class IngestPost:
    """A request the lean path takes (see the module docstring), from its method, path and
    headers; the body is read by the server's own means."""

    kind: str
    raw_slug: str
    path: str
    authorization: str
    idempotency_key: str | None
    length: int

    @classmethod
    def of(
        cls,
        method: str,
        path: str,
        query: str,
        header: Callable[[str], str | None],
        max_body_bytes: int,
    ) -> IngestPost | None:
        """The request, or None when it is not one for this path (`header`: a header's value
        by lower-case name, or None)."""
        if method != "POST" or query:
            return None
        authorization = header("authorization")
        if authorization is None or header("transfer-encoding") is not None:
            return None
        ctype = header("content-type") or ""
        if ctype != "application/json" and not ctype.startswith("application/json;"):
            return None
        length = header("content-length") or ""
        if not length.isdigit() or not 0 < int(length) <= max_body_bytes:
            return None
        match = _PATH.fullmatch(path)
        if match is None:
            return None
        key = header("idempotency-key")
        return cls(match.group(2), match.group(1), path, authorization, key, int(length))

    def prepare(self, raw: bytes, store: Store, app: AppState) -> routes.Prepared:
        """Token, slug and body checked, the event validated: ready for its write (raises)."""
        token = verify(
            header_token(self.authorization),
            "write",
            store,
            app.verified_tokens,  # re-checked in the write (events.record_event)
        )
        routes.slug_or_error(self.raw_slug)
        return routes.prepare(
            self.kind,
            self.raw_slug,
            parse_json(raw),
            token_id=token.id,
            idempotency_key=self.idempotency_key,
            app=app,
        )

    def answer(self, raw: bytes, app: AppState) -> Answer:
        """Check, store and answer it on this thread (the write blocks until its COMMIT)."""
        store = None
        try:
            store = app.settings.store()
            prepared = self.prepare(raw, store, app)
            return prepared.answer(app, store.write(prepared.work))
        except Exception as exc:
            return self.failure(exc)
        finally:
            if store is not None:
                store.rollback()  # a failed request leaves nothing half-written behind

    def failure(self, exc: Exception) -> Answer:
        """The answer of a request that raised: its ApiError, 503 for storage, else 500."""
        if isinstance(exc, ApiError):
            failure = exc
        elif isinstance(exc, DB_ERRORS):
            log.error("storage error on POST %s: %s", self.path, exc)
            failure = storage_unavailable()
        else:
            log.error("unhandled error on POST %s", self.path, exc_info=exc)
            failure = internal_error()
        return failure.status, error_document(failure), failure.headers

    def respond(self, answer: Answer, remote: str | None, started: float) -> Response:
        """(status, headers, body) of an answer, logged as the access line."""
        status, document, headers = answer
        body = encode(document)
        access.log_request(
            remote,
            "POST",
            self.path,
            "",
            status,
            started,
            stored=status == 201,  # Prepared.answer answers 201 only for an event it stored
        )
        return (
            status,
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                *headers.items(),
            ],
            body,
        )


class FastIngest:
    """WSGI middleware in front of the Flask app (see the module docstring)."""

    def __init__(self, app: WSGIApp, state: AppState):
        self.app = app
        self.state = state

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        post = None
        if not environ.get("SCRIPT_NAME"):
            post = IngestPost.of(
                environ.get("REQUEST_METHOD", ""),
                environ.get("PATH_INFO", ""),
                environ.get("QUERY_STRING", ""),
                lambda name: environ.get(environ_key(name)),
                self.state.settings.max_body_bytes,
            )
        if post is None:
            return self.app(environ, start_response)
        started = time.perf_counter()
        raw = environ["wsgi.input"].read(post.length)
        status, headers, body = post.respond(
            post.answer(raw, self.state), environ.get("REMOTE_ADDR"), started
        )
        start_response(f"{status} {_REASONS.get(status, '')}", headers)
        return [body]


_ENVIRON_KEYS = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}


def environ_key(name: str) -> str:
    """The WSGI environ key of a header (lower-case name), PEP 3333."""
    return _ENVIRON_KEYS.get(name) or "HTTP_" + name.upper().replace("-", "_")
