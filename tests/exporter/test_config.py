"""Settings: defaults, TOML, environment precedence and one-line errors naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import SETTINGS, Settings
from exporter.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_work_without_config() -> None:
    s = Settings.load(None, {})
    assert (s.host, s.port, s.db) == ("127.0.0.1", 8080, "releasebits.db")


def test_precedence_file_env_override(tmp_path: Path) -> None:
    cfg = tmp_path / "rb.toml"
    cfg.write_text('port = 9000\ndb = "/tmp/x.db"\nworkers = 3\n')
    s = Settings.load(cfg, {"RELEASEBITS_PORT": "9100"}, {"workers": 5})
    assert (s.port, s.db, s.workers) == (9100, "/tmp/x.db", 5)
    assert Settings.load(None, {"RELEASEBITS_CONFIG": str(cfg)}).port == 9000


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"RELEASEBITS_PORT": "http"}, "port: expected an integer"),
        ({"RELEASEBITS_PORT": "70000"}, "port: must be between 1 and 65535"),
        (
            {"RELEASEBITS_METRICS_REQUIRE_TOKEN": "maybe"},
            "metrics_require_token: expected true or false",
        ),
        ({"RELEASEBITS_LOG_LEVEL": "loud"}, "log_level: expected one of"),
        ({"RELEASEBITS_DEFAULT_STAGE": "Prod Env!"}, "default_stage:"),
        (
            {"RELEASEBITS_CONFIG": "/nonexistent.toml"},
            "config: file /nonexistent.toml does not exist",
        ),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(None, env)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "rb.toml"
    cfg.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(cfg, {})
    cfg.write_text("prot = 80\n")
    with pytest.raises(ConfigError, match="prot: unknown setting"):
        Settings.load(cfg, {})


def test_every_setting_is_documented_in_readme() -> None:
    readme = README.read_text()
    missing = [s.env for s in SETTINGS if s.env not in readme or f"`{s.name}`" not in readme]
    assert not missing, f"README.md does not document: {missing}"
