"""HTTP plumbing shared by the release-health pollers: JSON GETs, error mapping, rate-limit waits,
and the rows a poll hands to storage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3

from exporter.errors import PollError
from storage.release_health import HealthRow, Target

log = logging.getLogger(__name__)

Sleep = Callable[[float], None]
Clock = Callable[[], float]
Params = Sequence[tuple[str, str]]

# A poll runs in the one background worker: it may wait out a short rate-limit window, but a
# longer one is better left to the next scheduled poll than spent blocking the worker.
MAX_RATE_LIMIT_WAIT = 60.0
MIN_RATE_LIMIT_WAIT = 1.0  # reset headers have whole-second resolution and clocks drift
DEFAULT_RATE_LIMIT_WAIT = 5.0  # a 429 that does not say how long to wait
RATE_LIMIT_ATTEMPTS = 3
BODY_SNIPPET_CHARS = 200
R = TypeVar("R", bound="Record")
P = TypeVar("P", bound="ProjectTargets")


class Record(Protocol):
    """A parsed release-health record that knows its stored form."""

    def row(self, source: str) -> HealthRow: ...


class ProjectTargets(Protocol):
    """A parsed project stability target that knows its stored form."""

    def target(self, source: str) -> Target: ...


@dataclass(frozen=True)
class PollResult(Generic[R, P]):
    """What one poll of a source found: its records, its projects' targets (Bugsnag), the
    configured projects, and what it cost."""

    source: str
    records: tuple[R, ...]
    projects: tuple[str, ...]  # configured project ids (empty: all projects)
    requests: int
    duration_seconds: float
    targets: tuple[P, ...] = ()

    def rows(self) -> tuple[HealthRow, ...]:
        return tuple(r.row(self.source) for r in self.records)

    def target_rows(self) -> tuple[Target, ...]:
        return tuple(t.target(self.source) for t in self.targets)


@dataclass
class JsonClient:
    """GETs JSON from one upstream, turning every failure into a PollError.

    `rate_limit_wait(response)` returns how many seconds a 429 asks us to wait, or None when
    the response does not say. `secret` is scrubbed from every error message.
    """

    session: requests.Session
    service: str
    headers: Mapping[str, str]
    secret: str = field(repr=False)
    rate_limit_wait: Callable[[requests.Response], float | None]
    sleep: Sleep = time.sleep
    auth_hint: str = ""
    forbidden_hint: str | None = None  # replaces auth_hint on a 403 when set
    request_count: int = 0

    def get(self, url: str, params: Params | None = None, *, not_found: str) -> requests.Response:
        """A 2xx response for GET url (waiting out 429s), or PollError; `not_found` names a 404."""
        for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
            response = self._send(url, params)
            if response.status_code != 429:
                break
            wait = self.rate_limit_wait(response)
            wait = max(DEFAULT_RATE_LIMIT_WAIT if wait is None else wait, MIN_RATE_LIMIT_WAIT)
            detail = self._detail(response)
            if attempt == RATE_LIMIT_ATTEMPTS:
                raise self._error(
                    f"{self.service} is rate limiting us (HTTP 429) after {attempt} attempts: "
                    f"{detail}",
                    response,
                )
            if wait > MAX_RATE_LIMIT_WAIT:
                raise self._error(
                    f"{self.service} is rate limiting us (HTTP 429) for another {wait:.0f} s, "
                    f"more than the {MAX_RATE_LIMIT_WAIT:.0f} s a poll waits: {detail}",
                    response,
                )
            log.warning(
                "%s rate limit hit on %s; waiting %.1f s (attempt %d/%d)",
                self.service,
                _path(response.url),
                wait,
                attempt,
                RATE_LIMIT_ATTEMPTS,
            )
            self.sleep(wait)
        status = response.status_code
        if status in (401, 403):
            raise self._error(
                f"{self.service} rejected the auth token (HTTP {status})"
                f"{self.forbidden_hint if status == 403 and self.forbidden_hint else self.auth_hint}",
                response,
            )
        if status == 404:
            raise self._error(f"{self.service}: {not_found} (HTTP 404)", response)
        if not 200 <= status < 300:
            raise self._error(
                f"{self.service} answered HTTP {status}: {self._detail(response)}", response
            )
        return response

    def get_json(self, url: str, params: Params | None = None, *, not_found: str) -> Any:
        return self.decode(self.get(url, params, not_found=not_found))

    def decode(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:  # requests.JSONDecodeError, whichever json library is in use
            raise self._error(
                f"{self.service} answered HTTP {response.status_code} with a body that is not "
                f"JSON: {self._snippet(response.text)!r}",
                response,
            ) from None

    def shape_error(self, what: str, response: requests.Response) -> PollError:
        return self._error(f"{self.service} answered an unexpected shape: {what}", response)

    def _send(self, url: str, params: Params | None) -> requests.Response:
        self.request_count += 1
        log.debug("GET %s", url)
        try:
            return self.session.get(url, params=params, headers=dict(self.headers))
        except requests.RequestException as exc:
            cause = _root_cause(exc)
            if isinstance(exc, requests.Timeout) or _is_timeout(cause):
                raise PollError(f"{self.service} timed out ({_path(url)})", url=url) from None
            reason = self._scrub(f"{type(cause).__name__}: {cause}")[:BODY_SNIPPET_CHARS]
            raise PollError(f"{self.service} cannot be reached: {reason}", url=url) from None

    def _detail(self, response: requests.Response) -> str:
        """Sentry's DRF `detail` when there is one, else the start of the body."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("detail"), str):
            return self._snippet(body["detail"])
        return repr(self._snippet(response.text))

    def _snippet(self, text: str) -> str:
        return self._scrub(" ".join(text.split()))[:BODY_SNIPPET_CHARS]

    def _scrub(self, text: str) -> str:
        # A real token is long; scrubbing a toy one-letter token would only mangle the text.
        if len(self.secret) < 8:
            return text
        return text.replace(self.secret, "[token]")

    def _error(self, message: str, response: requests.Response) -> PollError:
        return PollError(self._scrub(message), url=response.url, status=response.status_code)


def same_origin(url: str, base_url: str) -> bool:
    """Whether url is on base_url's scheme and host, so following it keeps the token at home."""
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def epoch_seconds(value: Any) -> float | None:
    """An ISO 8601 timestamp ("...Z" accepted) as Unix seconds; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _root_cause(exc: requests.RequestException) -> BaseException:
    """What urllib3 gave up on: with retries exhausted, a read timeout arrives wrapped in a
    ConnectionError(MaxRetryError(reason=ReadTimeoutError))."""
    cause = exc.args[0] if exc.args else exc
    if isinstance(cause, urllib3.exceptions.MaxRetryError) and cause.reason is not None:
        return cause.reason
    return cause if isinstance(cause, BaseException) else exc


def _is_timeout(cause: BaseException) -> bool:
    # urllib3's NewConnectionError (e.g. connection refused) subclasses ConnectTimeoutError.
    return isinstance(cause, urllib3.exceptions.TimeoutError) and not isinstance(
        cause, urllib3.exceptions.NewConnectionError
    )


def _path(url: str) -> str:
    return urlsplit(url).path or url
