"""The [[forward.<kind>]] tables and the per-component [components.X.forward.NAME] mappings.

Each target kind parses its own table (`Target.from_table`); this module reads what every kind
shares (name, filters, timeout, component mappings) and checks names across them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from exporter.errors import ConfigError
from exporter.forwarding.targets.base import (
    EVENT_TYPES,
    ComponentForward,
    DeploymentTarget,
    Filters,
    Target,
)
from exporter.forwarding.targets.bugsnag import BugsnagTarget
from exporter.forwarding.targets.grafana import GrafanaTarget
from exporter.forwarding.targets.newrelic import NewRelicTarget
from exporter.forwarding.targets.sentry import SentryTarget
from exporter.forwarding.targets.webhook import WebhookTarget
from exporter.settings import ComponentMapping, PollSourceSpec, Table, array

KINDS: dict[str, type[Target]] = {
    "grafana": GrafanaTarget,
    "sentry": SentryTarget,
    "bugsnag": BugsnagTarget,
    "newrelic": NewRelicTarget,
    "webhook": WebhookTarget,
}
_COMMON = ("name", "components", "stages", "results", "events", "timeout")
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_MAX_TIMEOUT = 300


def _filters(t: Table, kind: type[Target]) -> Filters:
    events = t.texts("events", kind.default_events)
    for event in events:
        if event.removesuffix(".created") not in EVENT_TYPES:
            raise ConfigError(
                f"{t.name('events')}: unknown event type {event!r} "
                f"(expected {', '.join(EVENT_TYPES)})"
            )
        if event.removesuffix(".created") not in kind.supported_events:
            raise ConfigError(
                f"{t.name('events')}: a {kind.kind} target cannot forward {event!r} events "
                f"(it forwards {', '.join(kind.supported_events)})"
            )
    return Filters(
        components=tuple(c.lower() for c in t.texts("components")),
        stages=tuple(s.lower() for s in t.texts("stages")),
        results=t.texts("results", ("success",) if issubclass(kind, DeploymentTarget) else ()),
        events=tuple(e.removesuffix(".created") for e in events),
    )


def _component_tables(components_data: Any, name: str, kind: str) -> dict[str, Table]:
    """[components.<slug>.forward.<name>] tables for one target, validated for its kind."""
    out: dict[str, Table] = {}
    if not isinstance(components_data, dict):
        return out
    for slug, comp in components_data.items():
        if not isinstance(comp, dict) or "forward" not in comp:
            continue
        fwd = Table(f"components.{slug}.forward", comp["forward"], tuple(comp["forward"]))
        if name in fwd.data:
            out[slug] = fwd.table(name, KINDS[kind].component_keys)
    return out


def _check_component_targets(components_data: Any, names: set[str]) -> None:
    if not isinstance(components_data, dict):
        return
    for slug, comp in components_data.items():
        if not isinstance(comp, dict) or not isinstance(comp.get("forward"), dict):
            continue
        for name in comp["forward"]:
            if name not in names:
                known = ", ".join(sorted(names)) or "none configured"
                raise ConfigError(
                    f"components.{slug}.forward.{name}: no [[forward.*]] target named "
                    f"{name!r} ({known})"
                )


def parse_targets(
    data: Any,
    components_data: Any,
    components: Mapping[str, ComponentMapping],
    sources: Sequence[PollSourceSpec],
    environ: Mapping[str, str],
) -> tuple[Target, ...]:
    """Every configured forwarding target, in file order; names are unique."""
    top = Table("forward", data if data is not None else {}, tuple(KINDS))
    targets: list[Target] = []
    seen: set[str] = set()
    for kind, cls in KINDS.items():
        value = top.data.get(kind, [])
        if not isinstance(value, dict | list):
            raise ConfigError(f"forward.{kind}: expected [[forward.{kind}]] tables")
        for i, raw in enumerate(array(top.data, kind)):
            t = Table(f"forward.{kind}[{i}]", raw, _COMMON + cls.keys)
            name = t.text("name", kind if i == 0 else f"{kind}-{i}").lower()
            if not _NAME_RE.fullmatch(name):
                raise ConfigError(f"{t.name('name')}: {name!r} is not a valid target name")
            if name in seen:
                raise ConfigError(f"{t.name('name')}: target {name!r} is defined twice")
            seen.add(name)
            timeout = t.duration("timeout", "15s")
            if timeout > _MAX_TIMEOUT:
                raise ConfigError(f"{t.name('timeout')}: at most {_MAX_TIMEOUT}s, got {timeout}s")
            common: dict[str, Any] = {
                "name": name,
                "filters": _filters(t, cls),
                "timeout": float(timeout),
                "components": _components(
                    kind, name, components_data, components, sources, environ
                ),
            }
            targets.append(cls.from_table(t, common, environ))
    _check_component_targets(components_data, seen)
    return tuple(targets)


def _components(
    kind: str,
    name: str,
    components_data: Any,
    components: Mapping[str, ComponentMapping],
    sources: Sequence[PollSourceSpec],
    environ: Mapping[str, str],
) -> dict[str, ComponentForward]:
    tables = _component_tables(components_data, name, kind)
    sentry_sources = {s.name for s in sources if s.kind == "sentry"}
    out: dict[str, ComponentForward] = {}
    for slug in sorted(set(components) | set(tables)):
        mapping = components.get(slug, ComponentMapping())
        t = tables.get(slug)
        envs = dict(mapping.environments)
        if t is not None and "environments" in t.data:
            env_table = t.table("environments", tuple(t.data["environments"] or ()))
            envs.update({stage: env_table.text(stage) for stage in env_table.data})
        # A Sentry release name defaults to the one the health poller joins on.
        polled = next(
            (m.release for src, m in mapping.sources.items() if src in sentry_sources), None
        )
        if t is None:
            out[slug] = ComponentForward(
                release=polled if kind == "sentry" else None, environments=envs
            )
            continue
        out[slug] = ComponentForward(
            project=t.optional_text("project"),
            release=t.template("release", polled if kind == "sentry" else None),
            api_key=t.secret("api_key_env", environ) if "api_key_env" in t.data else "",
            entity_guid=t.optional_text("entity_guid"),
            app_id=str(t.data["app_id"]).strip() if "app_id" in t.data else None,
            repository=t.url("repository", "") if "repository" in t.data else None,
            environments=envs,
        )
    return out
