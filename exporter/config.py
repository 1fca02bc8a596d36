"""The whole configuration: the TOML file, RELEASEBITS_* variables and CLI flags, validated once.

Plain settings come from `exporter.settings`; each feature parses its own tables
(`[[sentry]]`/`[[bugsnag]]`: exporter.pollers, `[[forward.*]]`: exporter.forwarding,
`[receivers.*]`: exporter.receivers) and the
`[components.*]` mappings are shared vocabulary. Only the entry points import this module.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exporter.errors import ConfigError
from exporter.forwarding.targets.registry import parse_targets
from exporter.pollers.sources import KINDS as SOURCE_KINDS
from exporter.pollers.sources import parse_sources
from exporter.receivers.registry import parse_receivers
from exporter.settings import BY_NAME, ENV_PREFIX, SETTINGS, Settings, parse_components

TABLES = (*SOURCE_KINDS, "components", "forward", "receivers")


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings: defaults < TOML file < RELEASEBITS_* environment < explicit overrides."""
    environ = environ if environ is not None else {}
    if config_file is None and environ.get(ENV_PREFIX + "CONFIG"):
        config_file = environ[ENV_PREFIX + "CONFIG"]
    values: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    if config_file is not None:
        data = read_toml(Path(config_file))
        tables = {k: v for k, v in data.items() if isinstance(v, dict | list)}
        values.update({k: v for k, v in data.items() if k not in tables})
    for setting in SETTINGS:
        if setting.env in environ and environ[setting.env] != "":
            values[setting.name] = environ[setting.env]
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        if key not in BY_NAME:
            raise ConfigError(f"{key}: unknown setting")
        parsed[key] = BY_NAME[key].parse(key, value)
    for key in tables:
        if key not in TABLES:
            raise ConfigError(f"{key}: unknown table (expected one of {', '.join(TABLES)})")
    sources = parse_sources(tables, environ)
    components_data = tables.get("components", {})
    components = parse_components(components_data, {s.name for s in sources})
    targets = parse_targets(
        tables.get("forward", {}), components_data, components, sources, environ
    )
    return Settings(
        **parsed,
        config_file=str(config_file) if config_file else None,
        components=components,
        sources=sources,
        forward_targets=targets,
        receivers=parse_receivers(tables.get("receivers", {}), environ),
    )


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config: file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from None
    return data
