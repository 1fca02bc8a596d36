"""Settings: one frozen dataclass built from the TOML file, RELEASEBITS_* variables and CLI flags."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from exporter.errors import ConfigError
from exporter.pollers.bugsnag import BugsnagSource
from exporter.pollers.sentry import SentrySource

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


def _ratio(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a ratio between 0 and 1, got {value!r}") from None
    if isinstance(value, bool) or not 0 <= number <= 1:
        raise ConfigError(f"{name}: expected a ratio between 0 and 1, got {value!r}")
    return number


def _number(lo: float, hi: float) -> Callable[[str, Any], float]:
    def parse(name: str, value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not lo <= number <= hi:
            raise ConfigError(f"{name}: must be between {lo:g} and {hi:g}, got {value!r}")
        return number

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
        "badges_require_token",
        False,
        _bool,
        "Require a read token (header or ?access_token=) on /badges/... (public by default).",
    ),
    Setting(
        "badge_max_age_seconds",
        300,
        _int(0, 86_400),
        "Cache-Control max-age of badges; short, so README image proxies refetch them.",
    ),
    Setting(
        "idempotency_ttl_hours",
        24,
        _int(1, 24 * 365),
        "How long an Idempotency-Key is remembered.",
    ),
    Setting(
        "release_health_max_releases",
        10,
        _int(1, 1000),
        "Newest releases per source/project/environment exported as release-health series.",
    ),
    Setting(
        "crash_free_target",
        0.99,
        _ratio,
        "Crash-free sessions ratio a deployed version should reach when its source sets no "
        "stability target (Bugsnag projects can); alerts and badges compare against it.",
    ),
    Setting(
        "worker_heartbeat_seconds",
        10,
        _int(1, 3600),
        "How often the background worker records that it is alive.",
    ),
    Setting(
        "forward_give_up_hours",
        24.0,
        _number(0.0001, 24 * 365),
        "How long the outbox retries a delivery before marking it failed.",
    ),
    Setting(
        "forward_retry_base_seconds",
        5.0,
        _number(0.01, 3600),
        "First retry delay of a failed delivery; it doubles per attempt, with jitter.",
    ),
    Setting(
        "forward_keep_days",
        30,
        _int(1, 3650),
        "How long delivered outbox rows stay listed in /deliveries before housekeeping removes "
        "them (failed ones stay until retried).",
    ),
    Setting(
        "forward_retry_max_seconds",
        3600.0,
        _number(0.01, 86400),
        "Longest delay between two attempts of a delivery (a Retry-After may ask for more).",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class SourceMapping:
    """How a component's version is named in one release-health source."""

    project: str
    release: str = "{version}"  # template; {version} and {component} are replaced
    environments: Mapping[str, str] = dataclasses.field(default_factory=dict)  # stage -> env

    def release_name(self, component: str, version: str) -> str:
        return self.release.replace("{version}", version).replace("{component}", component)


@dataclass(frozen=True)
class ComponentMapping:
    """A component's names in the sources, and its stage -> environment names."""

    sources: Mapping[str, SourceMapping] = dataclasses.field(default_factory=dict)
    environments: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def environment(self, stage: str, source: str | None = None) -> str:
        """The source's environment (Sentry) or release stage (Bugsnag) for a ReleaseBits stage."""
        mapping = self.sources.get(source) if source is not None else None
        if mapping is not None and stage in mapping.environments:
            return mapping.environments[stage]
        return self.environments.get(stage, stage)


@dataclass(frozen=True)
class PollSource:
    """A configured release-health source: its kind, schedule and the poller's own config."""

    kind: str  # "sentry" or "bugsnag"
    name: str
    interval_seconds: int
    config: SentrySource | BugsnagSource


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
    badges_require_token: bool = False
    badge_max_age_seconds: int = 300
    idempotency_ttl_hours: int = 24
    release_health_max_releases: int = 10
    crash_free_target: float = 0.99
    worker_heartbeat_seconds: int = 10
    forward_give_up_hours: float = 24.0
    forward_retry_base_seconds: float = 5.0
    forward_retry_max_seconds: float = 3600.0
    forward_keep_days: int = 30
    config_file: str | None = None
    components: Mapping[str, ComponentMapping] = dataclasses.field(default_factory=dict)
    sources: tuple[PollSource, ...] = ()
    forward_targets: tuple[
        Any, ...
    ] = ()  # parsed by exporter.forwarders (the [[forward.*]] tables)

    def source(self, name: str) -> PollSource | None:
        return next((s for s in self.sources if s.name == name), None)

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
        tables: dict[str, Any] = {}
        if config_file is not None:
            data = _read_toml(Path(config_file))
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
            if key not in _BY_NAME:
                raise ConfigError(f"{key}: unknown setting")
            parsed[key] = _BY_NAME[key].parse(key, value)
        for key in tables:
            if key not in _TABLES:
                raise ConfigError(f"{key}: unknown table (expected one of {', '.join(_TABLES)})")
        sources = _parse_sources(tables, environ)
        components = _parse_components(tables.get("components", {}), {s.name for s in sources})
        from exporter.forwarders.config import parse_forward  # imports this module

        forward_targets: tuple[Any, ...] = parse_forward(
            tables.get("forward", {}), tables.get("components", {}), components, sources, environ
        )
        return cls(
            **parsed,
            config_file=str(config_file) if config_file else None,
            components=components,
            sources=sources,
            forward_targets=forward_targets,
        )

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
    return data


_TABLES = ("sentry", "bugsnag", "components", "forward")
_DURATION_RE = re.compile(r"(\d+)\s*([smhdw]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SOURCE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


class Table:
    """A TOML table read key by key, with errors that name the full path of the setting."""

    def __init__(self, path: str, data: Any, allowed: tuple[str, ...]):
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a table, got {type(data).__name__}")
        self.path, self.data = path, data
        for key in data:
            if key not in allowed:
                raise ConfigError(f"{path}.{key}: unknown setting (expected {', '.join(allowed)})")

    def name(self, key: str) -> str:
        return f"{self.path}.{key}"

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise ConfigError(f"{self.name(key)}: required")
        return _str(self.name(key), value)

    def texts(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.data.get(key, list(default))
        if isinstance(value, str | int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not all(
            isinstance(v, str | int) and not isinstance(v, bool) and str(v).strip() for v in value
        ):
            raise ConfigError(f"{self.name(key)}: expected a list of strings, got {value!r}")
        return tuple(str(v).strip() for v in value)

    def url(self, key: str, default: str) -> str:
        value = self.text(key, default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigError(f"{self.name(key)}: expected an http(s) URL, got {value!r}")
        return value

    def duration(self, key: str, default: str) -> int:
        return parse_duration(self.name(key), self.data.get(key, default))

    def secret(self, key: str, environ: Mapping[str, str], *, required: bool = True) -> str:
        """The value of the environment variable that `key` names; secrets never sit in TOML."""
        var = self.data.get(key)
        if var is None:
            if not required:
                return ""
            raise ConfigError(f"{self.name(key)}: required (the environment variable to read)")
        var = _str(self.name(key), var)
        value = environ.get(var, "").strip()
        if not value:
            raise ConfigError(f"{self.name(key)}: environment variable {var} is not set")
        return value

    def table(self, key: str, allowed: tuple[str, ...]) -> Table:
        return Table(self.name(key), self.data.get(key, {}), allowed)


def parse_duration(name: str, value: Any) -> int:
    """Seconds from 300, "300", "30s", "5m", "1h", "1d" or "1w"."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _DURATION_RE.fullmatch(str(value).strip().lower()) if isinstance(value, str) else None
    if not match or int(match[1]) <= 0:
        raise ConfigError(f"{name}: expected a duration such as 30s, 5m, 1h or 1d, got {value!r}")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def _array(tables: Mapping[str, Any], key: str) -> list[Any]:
    value = tables.get(key, [])
    if isinstance(value, dict):  # [sentry] instead of [[sentry]]: one source
        value = [value]
    return list(value)


def _source_name(t: Table, default: str, seen: set[str]) -> str:
    name = t.text("name", default).lower()
    if not _SOURCE_NAME_RE.fullmatch(name):
        raise ConfigError(f"{t.name('name')}: {name!r} is not a valid source name")
    if name in seen:
        raise ConfigError(f"{t.name('name')}: source {name!r} is defined twice")
    seen.add(name)
    return name


_SENTRY_KEYS = (
    "name",
    "base_url",
    "organization",
    "token_env",
    "projects",
    "environments",
    "poll_interval",
    "window",
)
_BUGSNAG_KEYS = ("name", "base_url", "token_env", "projects", "release_stages", "poll_interval")
_STATS_PERIOD_RE = re.compile(r"[1-9]\d*[mhdw]")


def _parse_sources(tables: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[PollSource, ...]:
    seen: set[str] = set()
    out: list[PollSource] = []
    for i, data in enumerate(_array(tables, "sentry")):
        t = Table(f"sentry[{i}]", data, _SENTRY_KEYS)
        name = _source_name(t, "sentry" if i == 0 else f"sentry-{i}", seen)
        projects = t.texts("projects")
        bad = [p for p in projects if not p.isdigit()]
        if bad:
            raise ConfigError(
                f"{t.name('projects')}: Sentry project ids are numbers, got {bad[0]!r}"
            )
        window = t.text("window", "24h").lower()
        if not _STATS_PERIOD_RE.fullmatch(window):
            raise ConfigError(
                f"{t.name('window')}: expected a period such as 24h or 14d, got {window!r}"
            )
        # Sentry refuses more than 1000 buckets (MAX_POINTS); includeSeries=0 makes the bucket
        # size otherwise irrelevant, so long windows use daily buckets.
        window_seconds = parse_duration(t.name("window"), window)
        if window_seconds > 999 * 86400:
            raise ConfigError(f"{t.name('window')}: at most 999d, got {window!r}")
        sentry = SentrySource(
            name=name,
            organization=t.text("organization"),
            token=t.secret("token_env", environ),
            base_url=t.url("base_url", "https://sentry.io"),
            projects=tuple(int(p) for p in projects),
            environments=t.texts("environments"),
            window=window,
            interval="1h" if window_seconds <= 999 * 3600 else "1d",
        )
        out.append(PollSource("sentry", name, t.duration("poll_interval", "5m"), sentry))
    for i, data in enumerate(_array(tables, "bugsnag")):
        t = Table(f"bugsnag[{i}]", data, _BUGSNAG_KEYS)
        name = _source_name(t, "bugsnag" if i == 0 else f"bugsnag-{i}", seen)
        projects = t.texts("projects")
        if not projects:
            raise ConfigError(f"{t.name('projects')}: required (Bugsnag project ids)")
        bugsnag = BugsnagSource(
            name=name,
            token=t.secret("token_env", environ),
            project_ids=projects,
            release_stages=t.texts("release_stages", ("production",)),
            base_url=t.url("base_url", "https://api.bugsnag.com"),
        )
        out.append(PollSource("bugsnag", name, t.duration("poll_interval", "5m"), bugsnag))
    return tuple(out)


def _environments(t: Table) -> dict[str, str]:
    envs = t.table("environments", tuple(t.data.get("environments", {}) or ()))
    return {stage: envs.text(stage) for stage in envs.data}


def _parse_components(data: Any, source_names: set[str]) -> dict[str, ComponentMapping]:
    from exporter.validation import ValidationError, normalize_slug

    top = Table("components", data, tuple(data) if isinstance(data, dict) else ())
    out: dict[str, ComponentMapping] = {}
    for slug in top.data:
        try:
            normalize_slug(slug)
        except ValidationError as exc:
            raise ConfigError(f"components.{slug}: {exc}") from None
        comp = top.table(slug, ("sources", "environments", "forward"))  # forward: forwarders
        sources_table = comp.table("sources", tuple(comp.data.get("sources", {}) or ()))
        sources: dict[str, SourceMapping] = {}
        for source in sources_table.data:
            if source not in source_names:
                known = ", ".join(sorted(source_names)) or "none configured"
                raise ConfigError(
                    f"{sources_table.name(source)}: no [[sentry]] or [[bugsnag]] source named "
                    f"{source!r} ({known})"
                )
            st = sources_table.table(source, ("project", "release", "environments"))
            release = st.text("release", "{version}")
            if "{version}" not in release:
                raise ConfigError(f"{st.name('release')}: the template must contain {{version}}")
            sources[source] = SourceMapping(st.text("project"), release, _environments(st))
        out[slug] = ComponentMapping(sources, _environments(comp))
    return out
