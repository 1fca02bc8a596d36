"""Generic webhooks signed per Standard Webhooks v1 (the `standardwebhooks` reference library).

Reference: upstream-apis.md section 8. `webhook-id` is the delivery id, the same on every retry,
so receivers deduplicate by it; the signature covers `{id}.{timestamp}.{body}` of the exact
bytes sent; a 410 disables the endpoint; 3xx redirects are not followed.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests
from standardwebhooks import Webhook

from exporter.errors import ConfigError, ForwardError
from exporter.forwarding.targets.base import (
    EndpointGone,
    Event,
    Outbound,
    Target,
    json_body,
    safe_url,
)
from exporter.settings import Table
from storage.timestamps import iso_ts

SECRET_PREFIX = "whsec_"  # noqa: S105  (a format prefix, not a secret)


def check_secret(secret: str) -> str | None:
    """Why a webhook secret is unusable, or None: whsec_ + base64 of 24-64 key bytes.

    Strict on purpose: a password pasted in its place would otherwise be decoded leniently into
    some other key, and every receiver would reject the signatures.
    """
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return "is not whsec_ followed by base64 (Standard Webhooks secret format)"
    if not 24 <= len(key) <= 64:
        return f"decodes to {len(key)} key bytes; use whsec_ + base64 of 24-64 random bytes"
    return None


@dataclass(frozen=True)
class WebhookTarget(Target):
    kind: ClassVar[str] = "webhook"
    default_events: ClassVar[tuple[str, ...]] = ("deployment", "build", "release")
    supported_events: ClassVar[tuple[str, ...]] = ("deployment", "build", "release")
    keys: ClassVar[tuple[str, ...]] = ("url", "secret_env")

    url: str = ""
    secret: str = field(default="", repr=False)

    @classmethod
    def from_table(cls, t: Table, common: dict[str, Any], environ: Mapping[str, str]) -> Target:
        secret = t.secret("secret_env", environ)
        problem = check_secret(secret)
        if problem:
            raise ConfigError(
                f"{t.name('secret_env')}: the value of {t.data['secret_env']} {problem}"
            )
        return cls(**common, url=t.exact_url("url"), secret=secret)

    def secrets(self) -> tuple[str, ...]:
        return (self.secret,)

    def payload(self, event: Event) -> bytes:
        """The body: the same bytes on every attempt of a delivery."""
        data: dict[str, Any] = dict(event.data)
        if event.component is not None:
            data = {"component": event.component, **data}
        return json_body({"type": event.type, "timestamp": iso_ts(event.created_at), "data": data})

    def build_requests(self, event: Event, delivery_id: str) -> list[Outbound]:
        body = self.payload(event)
        ts = int(time.time())  # of this attempt, so receivers' 5-minute tolerance holds
        signature = Webhook(self.secret).sign(
            delivery_id, datetime.fromtimestamp(ts, UTC), body.decode("utf-8")
        )
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": signature,
        }
        return [Outbound("POST", self.url, headers, body, "webhook")]

    def http_error(
        self, request: Outbound, response: requests.Response, *, retryable: bool | None = None
    ) -> ForwardError:
        if response.status_code == 410:
            return EndpointGone(
                f"webhook: HTTP 410 Gone: endpoint disabled: {self.snippet(response.text)}",
                url=safe_url(request.url),
                status=410,
            )
        # Standard Webhooks: any non-2xx is retried (throttling ones with Retry-After).
        return super().http_error(request, response, retryable=True)
