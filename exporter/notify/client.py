"""`releasebits notify`: the request a pipeline step sends, and sending it with bounded retries.

A retried job must not count twice, so the Idempotency-Key is derived from the run (provider,
repository, run id, job, kind, component, stage) and not from the attempt: the server answers a
repeat with the first answer (200), or 409 when the retry's body differs (another attempt
number, start time): both mean "already recorded for this run".
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from exporter.http import USER_AGENT, retry_after_seconds
from exporter.notify.ci import CIContext

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Notice:
    """One POST to the ingest API."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(repr=False)

    def shown(self) -> str:
        """The request as --dry-run prints it (the token masked)."""
        lines = [f"POST {self.url}"]
        for name, value in self.headers.items():
            lines.append(f"{name}: {'Bearer ***' if name == 'Authorization' else value}")
        return "\n".join([*lines, "", json.dumps(self.body, indent=2, ensure_ascii=False)])


def idempotency_key(ci: CIContext, kind: str, component: str, stage: str | None) -> str | None:
    """Stable across retries of the same job; None outside a CI run (nothing to derive it from)."""
    if ci.provider is None or ci.run_id is None:
        return None
    parts = [
        ci.provider,
        ci.repository or "",
        ci.run_id,
        ci.job or "",
        kind,
        component,
        stage or "",
    ]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"releasebits-notify-{digest}"


def build_notice(
    base_url: str,
    token: str,
    kind: str,
    component: str,
    body: dict[str, Any],
    key: str | None,
) -> Notice:
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    if key:
        headers["Idempotency-Key"] = key
    url = f"{base_url.rstrip('/')}/components/{quote(component, safe='')}/{kind}s"
    return Notice(url, {k: v for k, v in body.items() if v not in (None, "", {})}, headers)


@dataclass(frozen=True)
class Sent:
    """How a notice ended: `ok` (stored now or before), and what to tell the user."""

    ok: bool
    message: str
    status: int | None = None
    body: Mapping[str, Any] | None = None


def _answer(resp: requests.Response) -> Sent:
    try:
        data = resp.json()
    except ValueError:
        data = {}
    data = data if isinstance(data, dict) else {}
    if resp.status_code in (200, 201):
        again = resp.headers.get("Idempotent-Replayed") == "true"
        what = "already recorded for this run" if again else "recorded"
        return Sent(True, f"{what}: id {data.get('id')}", resp.status_code, data)
    found = data.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    if resp.status_code == 409 and error.get("code") == "idempotency_conflict":
        return Sent(
            True, "already recorded for this run (a retried job is not counted twice)", 409, data
        )
    detail = error.get("message") or resp.text[:200]
    return Sent(False, f"HTTP {resp.status_code}: {detail}", resp.status_code, data)


def send(
    notice: Notice,
    *,
    retry_for: float,
    timeout: float = 10.0,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> Sent:
    """POST the notice; retry connection errors, 429 and 5xx with exponential backoff and
    jitter (or the Retry-After asked for) until `retry_for` seconds have passed."""
    http = session or requests.Session()
    deadline = monotonic() + retry_for
    delay = 0.5
    while True:
        left = deadline - monotonic()
        try:
            resp = http.post(
                notice.url,
                data=json.dumps(notice.body).encode(),
                headers=notice.headers,
                timeout=(min(timeout, max(left, 0.5)), timeout),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            outcome, wait = Sent(False, f"cannot reach ReleaseBits: {type(exc).__name__}"), None
        else:
            outcome = _answer(resp)
            if outcome.ok or resp.status_code not in RETRY_STATUSES:
                return outcome
            wait = retry_after_seconds(resp)
        pause = wait if wait is not None and wait > 0 else delay * (0.5 + random.random() / 2)  # noqa: S311
        if monotonic() + pause > deadline:
            return Sent(False, f"{outcome.message} (gave up after {retry_for:g}s)", outcome.status)
        sleep(pause)
        delay = min(delay * 2, 10.0)
