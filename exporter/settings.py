"""Plain settings: one declaration (SETTINGS) from which the defaults, the environment variables,
the CLI help and the README table derive, plus the Table reader every feature parses its own
TOML tables with. Imports no feature: `exporter.config` assembles the whole configuration."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from exporter.errors import ConfigError, ValidationError
from exporter.names import STAGE_RE, normalize_slug
from storage.db import Store, is_url, thread_store

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


def _db(name: str, value: Any) -> str:
    """A file path (SQLite) or a postgresql:// URL; any other URL is a mistake, not a file."""
    text = _str(name, value)
    if "://" in text and not is_url(text):
        raise ConfigError(
            f"{name}: expected a file path or a postgresql:// URL, got {text.split('://')[0]}://..."
        )
    return text


def _optional_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    return value.strip()


def _stage(name: str, value: Any) -> str:
    text = _str(name, value).lower()
    if not STAGE_RE.fullmatch(text):
        raise ConfigError(f"{name}: {value!r} is not a valid stage name")
    return text


def _stages(name: str, value: Any) -> tuple[str, ...]:
    """A list of stage names: a TOML array, or comma-separated in the environment."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ConfigError(f"{name}: expected a list of stage names, got {value!r}")
    return tuple(_stage(name, item) for item in items)


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", _str, "Address the HTTP server binds to (0.0.0.0 for all)."),
    Setting("port", 8080, _int(1, 65535), "TCP port of the HTTP server."),
    Setting(
        "db",
        "releasebits.db",
        _db,
        "Path of the SQLite database file, or a postgresql://user@host/dbname URL (libpq: the "
        "password from the URL, PGPASSWORD or ~/.pgpass; sslmode and the other parameters "
        "pass through) for a PostgreSQL database shared by several replicas.",
    ),
    Setting(
        "db_pool_size",
        10,
        _int(1, 200),
        "PostgreSQL only: most connections each process (web worker, background worker) "
        "opens to the server.",
    ),
    Setting(
        "workers",
        0,
        _int(0, 64),
        "Number of web worker processes (Granian). 0, the default: 1 on SQLite (its one writer "
        "makes a second process cost more CPU per request and a longer tail), 2 on PostgreSQL.",
    ),
    Setting(
        "threads",
        32,
        _int(1, 256),
        "Request threads per web worker process, for everything but JSON event POSTs (those are "
        "answered on the worker's event loop): reads, badges, /metrics, forms, webhooks.",
    ),
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
        "max_future_seconds",
        300,
        _int(0, 7 * 86_400),
        "How far in the future an event's finished_at or started_at may be (sender clocks "
        "run a little ahead); later ones are refused with 422.",
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
        "ui_require_token",
        False,
        _bool,
        "Require a read token (a sign-in form keeps it in a cookie) on the status page; it is "
        "required anyway while metrics_require_token is on.",
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
        "crash_free_critical",
        0.98,
        _ratio,
        "Crash-free sessions ratio below which a deployed version counts as a change failure "
        "when its source sets no critical stability (Bugsnag projects can).",
    ),
    Setting(
        "dora_stages",
        ("production",),
        _stages,
        "Stages whose rollouts the DORA metrics count (comma-separated in the environment).",
    ),
    Setting(
        "worker_heartbeat_seconds",
        10,
        _int(1, 3600),
        "How often the background worker records that it is alive and renews its lease. The "
        "lease lasts 3 heartbeats + 5 s: a standby replica takes over within 4 heartbeats + 5 s "
        "of the active worker's death (45 s by default).",
    ),
    Setting(
        "instance",
        "",
        _optional_str,
        "This replica's name in releasebits_worker_leader and /healthz (e.g. the pod name); "
        "empty: hostname:pid of the background worker.",
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

BY_NAME = {s.name: s for s in SETTINGS}


def _default(name: str) -> Any:
    return BY_NAME[name].default


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
    repository: str | None = None  # web address of the source repository: commits link there

    def commit_url(self, commit_sha: str) -> str | None:
        """The commit's page (GitHub, GitLab, Gitea and Forgejo all answer /commit/<sha>)."""
        if not self.repository:
            return None
        plain = commit_sha.isascii() and commit_sha.isalnum()  # a SHA: skip quote(), ~10x slower
        return f"{self.repository}/commit/{commit_sha if plain else quote(commit_sha, safe='')}"

    def environment(self, stage: str, source: str | None = None) -> str:
        """The source's environment (Sentry) or release stage (Bugsnag) for a ReleaseBits stage."""
        mapping = self.sources.get(source) if source is not None else None
        if mapping is not None and stage in mapping.environments:
            return mapping.environments[stage]
        return self.environments.get(stage, stage)


class PollSourceSpec(Protocol):
    """What the worker needs of a configured release-health source (see exporter.pollers)."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def interval_seconds(self) -> int: ...


class ForwardTargetSpec(Protocol):
    """What ingest needs of a configured forwarding target (see exporter.forwarding)."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    def wants(self, kind: str, component: str | None, event: Mapping[str, Any]) -> bool: ...


@dataclass(frozen=True)
class Settings:
    """Validated configuration, passed down explicitly; nothing reads os.environ elsewhere.

    The fields above `config_file` are SETTINGS, in its order, defaults taken from it (a test
    checks the two agree); the rest are the TOML tables each feature parses.
    """

    host: str = _default("host")
    port: int = _default("port")
    db: str = _default("db")
    db_pool_size: int = _default("db_pool_size")
    workers: int = _default("workers")
    threads: int = _default("threads")
    log_level: str = _default("log_level")
    sqlite_synchronous: str = _default("sqlite_synchronous")
    max_body_bytes: int = _default("max_body_bytes")
    default_stage: str = _default("default_stage")
    max_components: int = _default("max_components")
    max_stages: int = _default("max_stages")
    max_future_seconds: int = _default("max_future_seconds")
    metrics_require_token: bool = _default("metrics_require_token")
    badges_require_token: bool = _default("badges_require_token")
    ui_require_token: bool = _default("ui_require_token")
    badge_max_age_seconds: int = _default("badge_max_age_seconds")
    idempotency_ttl_hours: int = _default("idempotency_ttl_hours")
    release_health_max_releases: int = _default("release_health_max_releases")
    crash_free_target: float = _default("crash_free_target")
    crash_free_critical: float = _default("crash_free_critical")
    dora_stages: tuple[str, ...] = _default("dora_stages")
    worker_heartbeat_seconds: int = _default("worker_heartbeat_seconds")
    instance: str = _default("instance")
    forward_give_up_hours: float = _default("forward_give_up_hours")
    forward_retry_base_seconds: float = _default("forward_retry_base_seconds")
    forward_keep_days: int = _default("forward_keep_days")
    forward_retry_max_seconds: float = _default("forward_retry_max_seconds")
    config_file: str | None = None
    components: Mapping[str, ComponentMapping] = dataclasses.field(default_factory=dict)
    sources: tuple[PollSourceSpec, ...] = ()  # [[sentry]], [[bugsnag]]: exporter.pollers
    forward_targets: tuple[ForwardTargetSpec, ...] = ()  # [[forward.*]]: exporter.forwarding
    receivers: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # exporter.receivers

    def source(self, name: str) -> PollSourceSpec | None:
        return next((s for s in self.sources if s.name == name), None)

    @property
    def web_workers(self) -> int:
        """How many web worker processes run: `workers`, or its default for the database."""
        return self.workers or (2 if is_url(self.db) else 1)

    @property
    def worker_stale_seconds(self) -> int:
        """How long a silent worker still counts as alive (/healthz) and keeps its lease."""
        return 3 * self.worker_heartbeat_seconds + 5

    def store(self) -> Store:
        """This thread's store of the configured database (kept open for the thread)."""
        return thread_store(
            self.db, synchronous=self.sqlite_synchronous, pool_size=self.db_pool_size
        )

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_DURATION_RE = re.compile(r"(\d+)\s*([smhdw]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


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

    def url(self, key: str, default: str, *, userinfo: bool = False) -> str:
        """An http(s) URL without a trailing slash. `user:password@` is refused unless the
        caller sends it (a webhook): requests would send it as Basic auth in place of the
        token header the poller or target sets."""
        value = self.text(key, default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigError(f"{self.name(key)}: expected an http(s) URL, got {value!r}")
        if not userinfo and "@" in parts.netloc:
            raise ConfigError(
                f"{self.name(key)}: remove the user:password@ part; the credentials come from "
                "the *_env setting"
            )
        return value

    def exact_url(self, key: str) -> str:
        """A required http(s) URL, exactly as written (a webhook path may end in a slash)."""
        text = self.text(key)
        self.url(key, text, userinfo=True)  # validates scheme and host
        return text

    def optional_int(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.name(key)}: expected an integer, got {value!r}")
        return value

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if key in self.data else None

    def template(self, key: str, default: str | None) -> str | None:
        """A release-name template: must contain {version}; {component} is optional."""
        if key not in self.data:
            return default
        value = self.text(key)
        if "{version}" not in value:
            raise ConfigError(f"{self.name(key)}: the template must contain {{version}}")
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


def array(tables: Mapping[str, Any], key: str) -> list[Any]:
    value = tables.get(key, [])
    if isinstance(value, dict):  # [sentry] instead of [[sentry]]: one source
        value = [value]
    return list(value)


def _environments(t: Table) -> dict[str, str]:
    envs = t.table("environments", tuple(t.data.get("environments", {}) or ()))
    return {stage: envs.text(stage) for stage in envs.data}


def parse_components(data: Any, source_names: set[str]) -> dict[str, ComponentMapping]:
    top = Table("components", data, tuple(data) if isinstance(data, dict) else ())
    out: dict[str, ComponentMapping] = {}
    for slug in top.data:
        try:
            normalize_slug(slug)
        except ValidationError as exc:
            raise ConfigError(f"components.{slug}: {exc}") from None
        # forward: forwarders
        comp = top.table(slug, ("sources", "environments", "forward", "repository"))
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
            release = st.template("release", "{version}") or "{version}"
            sources[source] = SourceMapping(st.text("project"), release, _environments(st))
        repository = comp.url("repository", "") if "repository" in comp.data else None
        out[slug] = ComponentMapping(sources, _environments(comp), repository)
    return out
