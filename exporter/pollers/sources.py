"""The kinds of release-health source, each parsing its own [[<kind>]] TOML tables."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from exporter.errors import ConfigError
from exporter.pollers import bugsnag, sentry
from exporter.pollers.client import Clock, PollResult, Sleep
from exporter.settings import Table, array

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class SourceKind:
    """How one kind of source is configured and polled."""

    keys: tuple[str, ...]  # the keys its TOML table accepts
    from_table: Callable[[Table, str, Mapping[str, str]], Any]
    poll: Callable[..., PollResult[Any, Any]]  # (session, config, *, sleep, monotonic)
    project_ids: Callable[[Any], tuple[str, ...]]  # the projects a failed poll marks down


KINDS: dict[str, SourceKind] = {
    "sentry": SourceKind(
        sentry.TABLE_KEYS,
        sentry.from_table,
        sentry.poll,
        lambda config: tuple(str(p) for p in config.projects),
    ),
    "bugsnag": SourceKind(
        bugsnag.TABLE_KEYS,
        bugsnag.from_table,
        bugsnag.poll,
        lambda config: tuple(config.project_ids),
    ),
}


@dataclass(frozen=True)
class PollSource:
    """A configured release-health source: its kind, schedule and the poller's own config."""

    kind: str
    name: str
    interval_seconds: int
    config: Any  # the kind's own frozen dataclass (sentry.SentrySource, bugsnag.BugsnagSource)

    @property
    def projects(self) -> tuple[str, ...]:
        return KINDS[self.kind].project_ids(self.config)

    def poll(
        self, session: requests.Session, *, sleep: Sleep, monotonic: Clock
    ) -> PollResult[Any, Any]:
        return KINDS[self.kind].poll(session, self.config, sleep=sleep, monotonic=monotonic)


def parse_sources(tables: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[PollSource, ...]:
    """Every [[sentry]] and [[bugsnag]] table, in kind then file order; names are unique."""
    seen: set[str] = set()
    out: list[PollSource] = []
    for kind, spec in KINDS.items():
        for i, data in enumerate(array(tables, kind)):
            t = Table(f"{kind}[{i}]", data, spec.keys)
            name = _source_name(t, kind if i == 0 else f"{kind}-{i}", seen)
            config = spec.from_table(t, name, environ)
            out.append(PollSource(kind, name, t.duration("poll_interval", "5m"), config))
    return tuple(out)


def _source_name(t: Table, default: str, seen: set[str]) -> str:
    name = t.text("name", default).lower()
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(f"{t.name('name')}: {name!r} is not a valid source name")
    if name in seen:
        raise ConfigError(f"{t.name('name')}: source {name!r} is defined twice")
    seen.add(name)
    return name
