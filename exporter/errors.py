"""Exception hierarchy shared by the daemon, its pollers and forwarders."""

from __future__ import annotations

from collections.abc import Mapping


class ReleaseBitsError(Exception):
    """Base class of every error ReleaseBits raises on purpose."""


class ConfigError(ReleaseBitsError):
    """A setting is missing or invalid; the message names the setting."""


class PollError(ReleaseBitsError):
    """A release-health source could not be polled."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status


class ForwardError(ReleaseBitsError):
    """A delivery to a downstream target failed."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.url = url
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class ValidationError(ReleaseBitsError):
    """One or more fields are invalid; `fields` maps each field to a message."""

    def __init__(self, fields: Mapping[str, str], message: str | None = None):
        self.fields = dict(fields)
        super().__init__(message or "invalid fields: " + ", ".join(sorted(self.fields)))
