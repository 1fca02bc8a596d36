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
    tables: dict[str, Any] = {}
    layers: list[dict[str, Any]] = []  # each validated on its own: a bad value in the file is
    if config_file is not None:  # an error even while the environment overrides it
        data = read_toml(Path(config_file))
        tables = {k: v for k, v in data.items() if isinstance(v, dict | list)}
        layers.append({k: v for k, v in data.items() if k not in tables})
    layers.append({s.name: environ[s.env] for s in SETTINGS if environ.get(s.env, "") != ""})
    layers.append({k: v for k, v in (overrides or {}).items() if v is not None})
    parsed: dict[str, Any] = {}
    for i, layer in enumerate(layers):
        where = f" (in {config_file})" if config_file is not None and i == 0 else ""
        for key, value in layer.items():
            if key not in BY_NAME:
                raise ConfigError(f"{key}: unknown setting{where}")
            try:
                parsed[key] = BY_NAME[key].parse(key, value)
            except ConfigError as exc:
                raise ConfigError(f"{exc}{where}") from None
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
