"""Settings: one frozen dataclass built from the TOML file, RELEASEBITS_* variables and CLI flags."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.errors import ConfigError

ENV_PREFIX = "RELEASEBITS_"


@dataclass(frozen=True)
class Setting:
    """One documented setting: its TOML key, default, parser and help text."""

    name: str
    default: Any
    parse: Callable[[str, Any], Any]
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _int(lo: int, hi: int) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
        if not lo <= number <= hi:
            raise ConfigError(f"{name}: must be between {lo} and {hi}, got {number}")
        return number

    return parse


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}: expected a non-empty string, got {value!r}")
    return value.strip()


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def parse(name: str, value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


def _stage(name: str, value: Any) -> str:
    from exporter.validation import STAGE_RE  # local: validation imports nothing of config

    text = _str(name, value).lower()
    if not STAGE_RE.fullmatch(text):
        raise ConfigError(f"{name}: {value!r} is not a valid stage name")
    return text


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", _str, "Address the HTTP server binds to (0.0.0.0 for all)."),
    Setting("port", 8080, _int(1, 65535), "TCP port of the HTTP server."),
    Setting("db", "releasebits.db", _str, "Path of the SQLite database file."),
    Setting("workers", 2, _int(1, 64), "Number of web worker processes (gunicorn)."),
    Setting("threads", 4, _int(1, 64), "Threads per web worker process."),
    Setting("log_level", "info", _choice("debug", "info", "warning", "error"), "Log level."),
    Setting(
        "sqlite_synchronous",
        "full",
        _choice("full", "normal"),
        "SQLite synchronous mode: full survives power loss; normal survives process crashes.",
    ),
    Setting("max_body_bytes", 65536, _int(1024, 16 * 1024 * 1024), "Largest request body."),
    Setting(
        "default_stage",
        "production",
        _stage,
        "Stage recorded for a deployment that names none; also the stage badges show.",
    ),
    Setting(
        "max_components",
        500,
        _int(1, 100_000),
        "Components exported as metric label values; later ones are stored, not exported.",
    ),
    Setting(
        "max_stages",
        20,
        _int(1, 1000),
        "Stages exported as metric label values; later ones are stored, not exported.",
    ),
    Setting(
        "metrics_require_token",
        False,
        _bool,
        "Require a read token on /metrics (public by default).",
    ),
    Setting(
        "idempotency_ttl_hours",
        24,
        _int(1, 24 * 365),
        "How long an Idempotency-Key is remembered.",
    ),
    Setting(
        "worker_heartbeat_seconds",
        10,
        _int(1, 3600),
        "How often the background worker records that it is alive.",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class SourceMapping:
    """How a component's version is named in one release-health source."""

    project: str
    release: str = "{version}"  # template; {version} and {component} are replaced

    def release_name(self, component: str, version: str) -> str:
        return self.release.replace("{version}", version).replace("{component}", component)


@dataclass(frozen=True)
class ComponentMapping:
    """A component's names in the sources, and its stage -> environment names."""

    sources: Mapping[str, SourceMapping] = dataclasses.field(default_factory=dict)
    environments: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def environment(self, stage: str) -> str:
        return self.environments.get(stage, stage)


@dataclass(frozen=True)
class Settings:
    """Validated configuration, passed down explicitly; nothing reads os.environ elsewhere."""

    host: str = "127.0.0.1"
    port: int = 8080
    db: str = "releasebits.db"
    workers: int = 2
    threads: int = 4
    log_level: str = "info"
    sqlite_synchronous: str = "full"
    max_body_bytes: int = 65536
    default_stage: str = "production"
    max_components: int = 500
    max_stages: int = 20
    metrics_require_token: bool = False
    idempotency_ttl_hours: int = 24
    worker_heartbeat_seconds: int = 10
    config_file: str | None = None
    components: Mapping[str, ComponentMapping] = dataclasses.field(default_factory=dict)

    @property
    def db_path(self) -> Path:
        return Path(self.db)

    @classmethod
    def load(
        cls,
        config_file: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Build settings: defaults < TOML file < RELEASEBITS_* environment < explicit overrides."""
        environ = environ if environ is not None else {}
        if config_file is None and environ.get(ENV_PREFIX + "CONFIG"):
            config_file = environ[ENV_PREFIX + "CONFIG"]
        values: dict[str, Any] = {}
        if config_file is not None:
            values.update(_read_toml(Path(config_file)))
        for setting in SETTINGS:
            if setting.env in environ and environ[setting.env] != "":
                values[setting.name] = environ[setting.env]
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = value
        parsed: dict[str, Any] = {}
        for key, value in values.items():
            if key not in _BY_NAME:
                raise ConfigError(f"{key}: unknown setting")
            parsed[key] = _BY_NAME[key].parse(key, value)
        return cls(**parsed, config_file=str(config_file) if config_file else None)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config: file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from None
    # Tables ([[sentry]], [components.x], ...) belong to the pollers and forwarders; the scalar
    # keys are the settings above, and an unknown one is an error rather than silently ignored.
    return {k: v for k, v in data.items() if not isinstance(v, dict | list)}
