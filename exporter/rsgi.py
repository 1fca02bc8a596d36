"""The web worker's front: Granian's RSGI interface on one event loop.

A POST of an event (the lean ingest path, exporter/ingest/fast.py) on SQLite is answered on the
loop: its token, body and fields are checked there and its write joins the loop's group commit
(storage.sqlite.LoopGroupCommit), whose fsync runs on a thread while the loop goes on (on
PostgreSQL it runs on a request thread). Every other request goes to the Flask app on a pool of
request threads, through a WSGI environ built here from the RSGI scope (Granian's RSGI has no
WSGI bridge of its own), so all of the app's routes, errors and logs stay as they are.

Why (benchmarks/README.md, issue 16): under Granian's WSGI interface each ingest request was a
thread that blocked on the write lock and the fsync; 16 connections meant 16 threads handing
the GIL to each other on every SQL statement, ~11 context switches per request. On the loop
one thread does the work with nobody to hand the GIL to: -16% server CPU per request, +32%
requests/s and -25% p99 in one interleaved run.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from exporter.app import create_app
from exporter.ingest.fast import Answer, IngestPost, environ_key
from exporter.settings import Settings
from exporter.web.errors import error_document, internal_error
from exporter.web.fastjson import encode
from exporter.web.state import AppState
from storage.db import is_url
from storage.sqlite import LoopGroupCommit, SqliteStore

log = logging.getLogger(__name__)

_INTERNAL = encode(error_document(internal_error()))


class RsgiFront:
    """The RSGI application of one web worker process (see the module docstring)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.flask = create_app(settings)
        self.state: AppState = self.flask.extensions["releasebits"]
        self.threads = ThreadPoolExecutor(settings.threads, thread_name_prefix="releasebits-req")
        self._sqlite = not is_url(settings.db)
        self._group_commit: LoopGroupCommit | None = None

    async def __call__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":  # websockets are off in the server; nothing else is served
            return
        headers = scope.headers
        path = _wsgi_path(scope.path)
        post = IngestPost.of(
            scope.method, path, scope.query_string, headers.get, self.settings.max_body_bytes
        )
        if post is None:
            await self._flask(scope, proto, path)
            return
        started = time.perf_counter()
        raw = await proto()
        answer = await self._ingest(post, raw)
        status, out_headers, body = post.respond(answer, _host(scope.client), started)
        proto.response_bytes(status, out_headers, body)

    async def _ingest(self, post: IngestPost, raw: bytes) -> Answer:
        """On SQLite, checked on the loop and written by the loop's group commit. PostgreSQL
        (one transaction per write, many writers, a server that may be slow to answer) gets the
        whole request on a request thread: nothing waits on the network on the loop."""
        if not self._sqlite:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.threads, post.answer, raw, self.state)
        store = None
        try:
            store = self.settings.store()
            prepared = post.prepare(raw, store, self.state)
            outcome = await self._commit(cast(SqliteStore, store)).write(prepared.work)
            return prepared.answer(self.state, outcome)
        except Exception as exc:
            return post.failure(exc)
        finally:
            if store is not None:
                store.rollback()  # a failed request leaves nothing half-written behind

    def _commit(self, store: SqliteStore) -> LoopGroupCommit:
        """The loop's group commit of the database file (one per worker process)."""
        if self._group_commit is None:
            self._group_commit = LoopGroupCommit(
                store.write_lock, store.synchronous, asyncio.get_running_loop()
            )
        return self._group_commit

    async def _flask(self, scope: Any, proto: Any, path: str) -> None:
        body = await _body(scope.headers, proto, self.settings.max_body_bytes)
        environ = _environ(scope, path, body)
        loop = asyncio.get_running_loop()
        try:
            status, headers, chunks = await loop.run_in_executor(
                self.threads, _call_wsgi, self.flask.wsgi_app, environ
            )
        except Exception:  # Flask answers its own errors; this is the bridge failing
            log.exception("unhandled error on %s %s", scope.method, path)
            status, headers, chunks = 500, [("Content-Type", "application/json")], _INTERNAL
        proto.response_bytes(status, headers, chunks)


def _wsgi_path(path: str) -> str:
    """RSGI gives the path percent-decoded as text; WSGI's PATH_INFO is those bytes as latin-1
    (what the app always saw under Granian's WSGI interface)."""
    return path if path.isascii() else path.encode("utf-8").decode("latin-1")


def _host(addr: str | None) -> str | None:
    """The IP of an RSGI "host:port" address ("[::1]:80" for IPv6)."""
    if not addr:
        return None
    host = addr.rsplit(":", 1)[0] if ":" in addr else addr
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


async def _body(headers: Any, proto: Any, limit: int) -> bytes:
    """The request body for the app, never much more than `limit` bytes in memory: with a
    Content-Length over it nothing is read (werkzeug answers 413 from the header); a chunked
    body is read until it passes the limit (the app answers 413 then)."""
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        if int(length) > limit:
            return b""
        return await proto() if int(length) else b""
    if "transfer-encoding" not in headers:
        return b""
    parts: list[bytes] = []
    total = 0
    try:
        async for chunk in proto:
            parts.append(chunk)
            total += len(chunk)
            if total > limit:
                break
    except Exception as exc:  # a malformed chunk ends the body; the app refuses what it got
        log.debug("request body ended early: %s", exc)
    return b"".join(parts)


def _environ(scope: Any, path: str, body: bytes) -> dict[str, Any]:
    """The WSGI environ of an RSGI request (PEP 3333; as Granian's WSGI interface builds it)."""
    server = scope.server or ""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": scope.query_string,
        "SERVER_NAME": _host(server) or "",
        "SERVER_PORT": server.rpartition(":")[2] if ":" in server else "",
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
        "REMOTE_ADDR": _host(scope.client) or "",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "Granian",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in scope.headers.items():
        key = environ_key(name)
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _call_wsgi(app: Any, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Run the WSGI app on this (request) thread; its whole answer."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [int(status.split(" ", 1)[0]), headers]
        return lambda _data: None  # write(): not used by Flask

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return started[0], started[1], body
