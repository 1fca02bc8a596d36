"""The [[forward.<kind>]] tables and the per-component [components.X.forward.NAME] mappings."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from exporter.config import ComponentMapping, PollSource, Table
from exporter.errors import ConfigError
from exporter.forwarders.base import EVENT_TYPES, ComponentForward, Filters, Target
from exporter.forwarders.bugsnag import PROVIDERS, BugsnagTarget
from exporter.forwarders.grafana import GrafanaTarget
from exporter.forwarders.newrelic import DEPLOYMENT_TYPES, HOSTS, NewRelicTarget
from exporter.forwarders.sentry import SentryTarget
from exporter.forwarders.webhook import WebhookTarget, check_secret
from exporter.pollers.sentry import api_root

KINDS: dict[str, type[Target]] = {
    "grafana": GrafanaTarget,
    "sentry": SentryTarget,
    "bugsnag": BugsnagTarget,
    "newrelic": NewRelicTarget,
    "webhook": WebhookTarget,
}
_COMMON = ("name", "components", "stages", "results", "events", "timeout")
_KEYS = {
    "grafana": ("url", "token_env", "dashboard_uid", "panel_id", "org_id", "tags"),
    "sentry": ("base_url", "organization", "token_env", "project", "release"),
    "bugsnag": ("url", "api_key_env", "builder_name", "provider"),
    "newrelic": (
        "api",
        "region",
        "url",
        "api_key_env",
        "user",
        "deployment_type",
        "entity_guid",
        "app_id",
    ),
    "webhook": ("url", "secret_env"),
}
# What a component may say about itself for each kind of target.
_COMPONENT_KEYS = {
    "grafana": ("environments",),
    "sentry": ("project", "release", "environments"),
    "bugsnag": ("api_key_env", "repository", "environments"),
    "newrelic": ("entity_guid", "app_id", "environments"),
    "webhook": ("environments",),
}
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
# Result filters take the metric classes or any raw result string; both are accepted as sent.
_MAX_TIMEOUT = 300


def _url(t: Table, key: str) -> str:
    """A required http(s) URL, exactly as written (a webhook path may end in a slash)."""
    text = t.text(key)
    t.url(key, text)  # validates scheme and host
    return text


def _int(t: Table, key: str) -> int | None:
    value = t.data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{t.name(key)}: expected an integer, got {value!r}")
    return value


def _release_template(t: Table, key: str, default: str | None) -> str | None:
    if key not in t.data:
        return default
    value = t.text(key)
    if "{version}" not in value:
        raise ConfigError(f"{t.name(key)}: the template must contain {{version}}")
    return value


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
        results=t.texts(
            "results", ("success",) if kind.kind in ("sentry", "bugsnag", "newrelic") else ()
        ),
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
            out[slug] = fwd.table(name, _COMPONENT_KEYS[kind])
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


def parse_forward(
    data: Any,
    components_data: Any,
    components: Mapping[str, ComponentMapping],
    sources: Sequence[PollSource],
    environ: Mapping[str, str],
) -> tuple[Target, ...]:
    """Every configured forwarding target, in file order; names are unique."""
    top = Table("forward", data if data is not None else {}, tuple(KINDS))
    targets: list[Target] = []
    seen: set[str] = set()
    for kind, cls in KINDS.items():
        value = top.data.get(kind, [])
        if isinstance(value, dict):  # [forward.webhook] instead of [[forward.webhook]]
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"forward.{kind}: expected [[forward.{kind}]] tables")
        for i, raw in enumerate(value):
            t = Table(f"forward.{kind}[{i}]", raw, _COMMON + _KEYS[kind])
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
            targets.append(_build(kind, t, common, environ))
    _check_component_targets(components_data, seen)
    return tuple(targets)


def _components(
    kind: str,
    name: str,
    components_data: Any,
    components: Mapping[str, ComponentMapping],
    sources: Sequence[PollSource],
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
            project=t.text("project") if "project" in t.data else None,
            release=_release_template(t, "release", polled if kind == "sentry" else None),
            api_key=t.secret("api_key_env", environ) if "api_key_env" in t.data else "",
            entity_guid=t.text("entity_guid") if "entity_guid" in t.data else None,
            app_id=str(t.data["app_id"]).strip() if "app_id" in t.data else None,
            repository=t.url("repository", "") if "repository" in t.data else None,
            environments=envs,
        )
    return out


def _build(kind: str, t: Table, common: dict[str, Any], environ: Mapping[str, str]) -> Target:
    if kind == "grafana":
        return GrafanaTarget(
            **common,
            url=_url(t, "url").rstrip("/"),
            token=t.secret("token_env", environ),
            dashboard_uid=t.text("dashboard_uid") if "dashboard_uid" in t.data else None,
            panel_id=_int(t, "panel_id"),
            org_id=_int(t, "org_id"),
            tags=t.texts("tags"),
        )
    if kind == "sentry":
        return SentryTarget(
            **common,
            base_url=api_root(t.url("base_url", "https://sentry.io")),
            organization=t.text("organization"),
            token=t.secret("token_env", environ),
            project=t.text("project") if "project" in t.data else None,
            release=_release_template(t, "release", "{version}") or "{version}",
        )
    if kind == "bugsnag":
        provider = t.text("provider").lower() if "provider" in t.data else None
        if provider is not None and provider not in PROVIDERS:
            raise ConfigError(
                f"{t.name('provider')}: expected one of {', '.join(PROVIDERS)}, got {provider!r}"
            )
        return BugsnagTarget(
            **common,
            # Unset: chosen per API key (Insight Hub keys start with 00000).
            url=t.url("url", "https://build.bugsnag.com") + "/" if "url" in t.data else None,
            api_key=t.secret("api_key_env", environ, required=False),
            builder_name=t.text("builder_name", "releasebits"),
            provider=provider,
        )
    if kind == "newrelic":
        api = t.text("api", "nerdgraph").lower()
        if api not in ("nerdgraph", "rest"):
            raise ConfigError(f"{t.name('api')}: expected nerdgraph or rest, got {api!r}")
        region = t.text("region", "us").lower()
        if region not in HOSTS:
            raise ConfigError(f"{t.name('region')}: expected us or eu, got {region!r}")
        deployment_type = None
        if "deployment_type" in t.data:
            deployment_type = t.text("deployment_type").upper()
            if deployment_type not in DEPLOYMENT_TYPES:
                raise ConfigError(
                    f"{t.name('deployment_type')}: expected one of {', '.join(DEPLOYMENT_TYPES)}"
                )
        user = t.text("user", "releasebits")
        if api == "rest" and len(user) > 31:
            raise ConfigError(f"{t.name('user')}: at most 31 characters for the REST API")
        return NewRelicTarget(
            **common,
            api=api,
            url=t.url("url", HOSTS[region]),
            api_key=t.secret("api_key_env", environ),
            user=user,
            deployment_type=deployment_type,
            entity_guid=t.text("entity_guid") if "entity_guid" in t.data else None,
            app_id=str(t.data["app_id"]).strip() if "app_id" in t.data else None,
        )
    secret = t.secret("secret_env", environ)
    problem = check_secret(secret)
    if problem:
        raise ConfigError(f"{t.name('secret_env')}: the value of {t.data['secret_env']} {problem}")
    return WebhookTarget(**common, url=_url(t, "url"), secret=secret)
