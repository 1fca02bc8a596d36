"""Fake Sentry and Bugsnag on a pytest-httpserver, answering as upstream-apis.md documents.

They serve the JSON fixture files for every poll (not ordered expectations), so a daemon's worker
can poll them repeatedly; `fail_with(status, body)` makes every later request fail that way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

FIXTURES = Path(__file__).parent / "fixtures"
SENTRY_TOKEN = "sntrys_fake-sentry-token-0123456789"
BUGSNAG_TOKEN = "fake-bugsnag-personal-token-abcdef"
BUGSNAG_PROJECT = "515fb9337c1074f6fd000003"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@dataclass
class Fake:
    """Common part: a failure switch and a log of the requests seen."""

    httpserver: HTTPServer
    failure: tuple[int, str] | None = None
    seen: list[str] = field(default_factory=list)
    rename: dict[str, str] = field(default_factory=dict)  # release names to serve instead

    def body(self, name: str) -> str:
        text = json.dumps(fixture(name))
        for old, new in self.rename.items():
            text = text.replace(json.dumps(old), json.dumps(new))
        return text

    @property
    def base_url(self) -> str:
        return self.httpserver.url_for("/").rstrip("/")

    def fail_with(self, status: int, body: str = '{"detail": "failure"}') -> None:
        self.failure = (status, body)

    def recover(self) -> None:
        self.failure = None

    def _failed(self, request: Request) -> Response | None:
        self.seen.append(request.full_path)
        if self.failure is None:
            return None
        status, body = self.failure
        return Response(body, status=status, content_type="application/json")


@dataclass
class FakeSentry(Fake):
    """GET /api/0/organizations/acme/sessions/: totals, or per-status counts, one page each."""

    totals: str = "sentry/sessions_totals"
    by_status: str = "sentry/sessions_by_status"

    def install(self) -> FakeSentry:
        self.httpserver.expect_request(
            "/api/0/organizations/acme/sessions/", method="GET"
        ).respond_with_handler(self._handle)
        return self

    def _handle(self, request: Request) -> Response:
        failed = self._failed(request)
        if failed is not None:
            return failed
        if request.headers.get("Authorization") != f"Bearer {SENTRY_TOKEN}":
            return Response('{"detail": "Invalid token"}', 401, content_type="application/json")
        name = (
            self.by_status if "session.status" in request.args.getlist("groupBy") else self.totals
        )
        url = self.httpserver.url_for("/api/0/organizations/acme/sessions/")
        link = (
            f'<{url}?cursor=0:0:1>; rel="previous"; results="false"; cursor="0:0:1", '
            f'<{url}?cursor=0:100:0>; rel="next"; results="false"; cursor="0:100:0"'
        )
        return Response(
            self.body(name), 200, headers={"Link": link}, content_type="application/json"
        )


@dataclass
class FakeBugsnag(Fake):
    """GET /projects/{id} and /projects/{id}/release_groups, with `X-Version: 2` required."""

    project: str = "bugsnag/project_with_targets"
    groups: str = "bugsnag/release_groups_stability"

    def install(self) -> FakeBugsnag:
        self.httpserver.expect_request(
            f"/projects/{BUGSNAG_PROJECT}", method="GET"
        ).respond_with_handler(lambda r: self._handle(r, self.project))
        self.httpserver.expect_request(
            f"/projects/{BUGSNAG_PROJECT}/release_groups", method="GET"
        ).respond_with_handler(lambda r: self._handle(r, self.groups))
        return self

    def _handle(self, request: Request, name: str) -> Response:
        failed = self._failed(request)
        if failed is not None:
            return failed
        if (
            request.headers.get("Authorization") != f"token {BUGSNAG_TOKEN}"
            or request.headers.get("X-Version") != "2"
        ):
            return Response('{"errors": ["Unauthorized"]}', 401, content_type="application/json")
        return Response(self.body(name), 200, content_type="application/json")


def sources_toml(
    sentry: FakeSentry | None, bugsnag: FakeBugsnag | None, *, interval: str = "5m"
) -> str:
    """A config file's source and component tables pointing at the fakes (tokens from env)."""
    parts = []
    if sentry is not None:
        parts.append(
            f'[[sentry]]\nname = "sentry"\nbase_url = "{sentry.base_url}"\n'
            f'organization = "acme"\ntoken_env = "SENTRY_TOKEN"\nprojects = [42, 43]\n'
            f'poll_interval = "{interval}"\n'
        )
    if bugsnag is not None:
        parts.append(
            f'[[bugsnag]]\nname = "bugsnag"\nbase_url = "{bugsnag.base_url}"\n'
            f'token_env = "BUGSNAG_TOKEN"\nprojects = ["{BUGSNAG_PROJECT}"]\n'
            f'poll_interval = "{interval}"\n'
        )
    if sentry is not None:
        parts.append(
            '[components.checkout.sources.sentry]\nproject = "42"\nrelease = "checkout@{version}"\n'
        )
    if bugsnag is not None:
        parts.append(f'[components.checkout.sources.bugsnag]\nproject = "{BUGSNAG_PROJECT}"\n')
    return "\n".join(parts)


TOKEN_ENV = {"SENTRY_TOKEN": SENTRY_TOKEN, "BUGSNAG_TOKEN": BUGSNAG_TOKEN}
