"""The [receivers.<kind>] tables: each kind parses its own; a kind without a table is off."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.receivers.base import Receiver
from exporter.receivers.cdevents import CDEventsReceiver
from exporter.receivers.github import GitHubReceiver
from exporter.receivers.gitlab import GitLabReceiver
from exporter.settings import Table

KINDS: dict[str, type[Receiver]] = {
    "github": GitHubReceiver,
    "gitlab": GitLabReceiver,
    "cdevents": CDEventsReceiver,
}


def parse_receivers(data: Any, environ: Mapping[str, str]) -> dict[str, Receiver]:
    """Configured receivers by kind (the URL path /webhooks/<kind>)."""
    top = Table("receivers", data, tuple(KINDS))
    return {
        kind: KINDS[kind].from_table(top.table(kind, KINDS[kind].keys), environ)
        for kind in top.data
    }
