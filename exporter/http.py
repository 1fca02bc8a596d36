"""One requests session factory for pollers and forwarders: User-Agent, timeouts, safe retries."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from exporter import __version__

USER_AGENT = f"releasebits/{__version__} (+https://github.com/releasebits/releasebits)"
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)


class _TimeoutAdapter(HTTPAdapter):
    """An adapter that applies a default (connect, read) timeout to every request."""

    def __init__(self, *args: Any, timeout: tuple[float, float] = DEFAULT_TIMEOUT, **kwargs: Any):
        self._timeout = timeout
        super().__init__(*args, **kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


def make_session(
    *,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    retries: int = 2,
    backoff_factor: float = 0.5,
) -> requests.Session:
    """Return a session that retries idempotent GETs on connection errors and 502/503/504.

    429 is deliberately not retried here: pollers read the upstream's own rate-limit headers
    (Sentry's X-Sentry-Rate-Limit-Reset, Bugsnag's Retry-After) and wait as told. POSTs are
    never retried by the session: the forwarders' outbox owns retries and backoff.
    """
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff_factor,
        status_forcelist=(502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=False,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = _TimeoutAdapter(max_retries=retry, timeout=timeout)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def retry_after_seconds(
    response: requests.Response, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds a `Retry-After` header (delta-seconds or HTTP-date) asks for; None if absent.

    May be negative (a date in the past); callers apply their own floor."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now()
    return seconds if math.isfinite(seconds) else None


def sentry_api_root(base_url: str) -> str:
    """The host part of a Sentry base URL, for the poller and the forwarder alike: users also
    paste the self-hosted form .../api/0/."""
    return base_url.rstrip("/").removesuffix("/api/0")
