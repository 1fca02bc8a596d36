"""The Docker image, built from this repository and run for real.

A throwaway Docker engine (Debian's docker.io, its own data-root, exec-root and socket; no
bridge, no iptables, so nothing system-wide is touched) builds the image with BuildKit, runs it
with a volume, waits for the image's HEALTHCHECK to say healthy, creates a token with
`docker exec`, posts a deployment, stops the container (exit 0 within the grace period), starts
a new one on the same volume and finds the deployment, and checks the server runs as a non-root
user. No registry is reachable in CI, so the base image python:3.11-slim-bookworm is made
locally (tests/e2e/docker_base.sh: debootstrap plus Debian's Python 3.11) and cached outside
the clone ($RELEASEBITS_E2E_CACHE, default /var/cache/releasebits-e2e) for the next run.

Needs root, dockerd, Debian's docker client (/usr/bin/docker, 20.10: the built-in BuildKit
frontend; a newer client without buildx refuses DOCKER_BUILDKIT=1) and debootstrap; `.ci/run`
installs them. It takes a minute or two and some disk, so outside CI it runs only when asked:
RELEASEBITS_DOCKER_E2E=1 (RELEASEBITS_REQUIRE_E2E=1, as in CI, also forbids skipping).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import REQUIRE_E2E, free_port, terminate

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.sqlite_only("the image's default store: an SQLite file on its volume"),
]

ROOT = Path(__file__).resolve().parents[2]
BASE_SCRIPT = Path(__file__).with_name("docker_base.sh")
BASE_IMAGE = "python:3.11-slim-bookworm"  # what the Dockerfile's FROM lines name
IMAGE = "releasebits:e2e"
CLIENT = "/usr/bin/docker"  # Debian docker.io's client; see the module docstring
DAEMON = "/usr/sbin/dockerd"
STOP_GRACE = 10  # docker stop's default: SIGTERM, then SIGKILL after this many seconds
# Docker runs the first health probe one interval after start; the image's 30 s would make every
# run wait 30 s. The run flags override only the timing, for these containers; the probe itself
# is the image's HEALTHCHECK command.
HEALTH_FLAGS = ("--health-interval=1s", "--health-timeout=5s", "--health-start-period=60s")


def _unavailable(reason: str) -> None:
    if REQUIRE_E2E:
        pytest.fail(f"{reason}, and RELEASEBITS_REQUIRE_E2E=1 forbids skipping")
    pytest.skip(reason)


def _log(message: str) -> None:
    print(f"docker e2e: {message}", file=sys.stderr, flush=True)


@dataclass
class Engine:
    """A running throwaway dockerd and the client talking to it."""

    env: dict[str, str]
    data_root: Path
    exec_root: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        result = subprocess.run(
            [CLIENT, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}:\n{result.stdout}\n{result.stderr}")
        return result.stdout.strip()

    def answers(self) -> bool:
        """Whether the daemon answers (`docker info` prints the client's part even when not)."""
        info = subprocess.run(
            [CLIENT, "info"], env=self.env, capture_output=True, timeout=10, check=False
        )
        return info.returncode == 0

    def logs(self, container: str) -> str:
        """What the container wrote to stdout and stderr (ReleaseBits logs to stderr)."""
        result = subprocess.run(
            [CLIENT, "logs", container], env=self.env, capture_output=True, text=True, check=False
        )
        return result.stdout + result.stderr

    def inspect(self, container: str) -> dict[str, Any]:
        return dict(json.loads(self.run("inspect", container))[0])


def _storage_driver(scratch: Path) -> str:
    """overlay2 when an overlay mount works here (3x faster, a tenth of the disk), else vfs."""
    lower, upper, work, merged = (scratch / n for n in ("l", "u", "w", "m"))
    for d in (lower, upper, work, merged):
        d.mkdir(parents=True)
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    mounted = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode == 0:
        subprocess.run(["umount", str(merged)], check=True)
    shutil.rmtree(scratch)
    return "overlay2" if mounted.returncode == 0 else "vfs"


def _mounts_under(path: Path) -> list[str]:
    return [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(str(path))
    ]


def _stop_engine(engine: Engine) -> None:
    """Containers and volumes, then dockerd, then its directories."""
    with contextlib.suppress(Exception):
        ids = engine.run("ps", "-aq", check=False).split()
        if ids:
            engine.run("rm", "-f", *ids, check=False)
        engine.run("volume", "prune", "-f", check=False)
    terminate(engine.proc, timeout=30)  # dockerd stops its containerd
    for mount in sorted(_mounts_under(engine.exec_root), reverse=True):  # its netns stays
        subprocess.run(["umount", mount], check=False)
    if not _mounts_under(engine.exec_root):
        shutil.rmtree(engine.exec_root, ignore_errors=True)
    # Never delete under a live mount (a container's rootfs or shm); a clean stop leaves none.
    if _mounts_under(engine.data_root):
        _log(f"mounts left under {engine.data_root}; not deleting it")
    else:
        shutil.rmtree(engine.data_root, ignore_errors=True)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if not (REQUIRE_E2E or os.environ.get("RELEASEBITS_DOCKER_E2E") == "1"):
        pytest.skip("builds and runs the Docker image: set RELEASEBITS_DOCKER_E2E=1 (as root)")
    if os.geteuid() != 0:
        _unavailable("the Docker end-to-end test needs root (dockerd, debootstrap)")
    for binary in (DAEMON, CLIENT):
        if not os.access(binary, os.X_OK):
            _unavailable(f"{binary} is missing (Debian package docker.io; .ci/run installs it)")
    if shutil.which("debootstrap") is None:
        _unavailable("debootstrap is missing (Debian package; .ci/run installs it)")
    work = tmp_path_factory.mktemp("docker")
    # containerd's sockets live under the exec-root: keep its path short (sun_path limit).
    exec_root = Path(tempfile.mkdtemp(prefix="rbd-", dir="/run"))
    sock = exec_root / "docker.sock"
    # containerd namespaces are letters and digits joined by single . _ - (mkdtemp's random part
    # may hold "_", and "rbd-_x" was refused once).
    namespace = "rbd" + "".join(c for c in exec_root.name[len("rbd-") :] if c.isalnum())
    driver = _storage_driver(work / "overlay-test")
    log_path = work / "dockerd.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                DAEMON,
                f"--storage-driver={driver}",
                "--iptables=false",
                "--bridge=none",
                f"--data-root={work / 'data'}",
                f"--exec-root={exec_root}",
                f"--host=unix://{sock}",
                f"--pidfile={exec_root / 'docker.pid'}",
                # Should it find a system containerd (and use it), stay out of its namespaces.
                f"--containerd-namespace={namespace}",
                f"--containerd-plugins-namespace={namespace}-plugins",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "1"}
    engine = Engine(env, work / "data", exec_root, proc, log_path)
    try:
        deadline = time.monotonic() + 60
        while not engine.answers():
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.25)
        _log(f"dockerd up ({driver})")
        yield engine
    finally:
        _stop_engine(engine)


def _base_tarball() -> Path:
    """The cached root filesystem of the base image, made once per machine."""
    cache = Path(os.environ.get("RELEASEBITS_E2E_CACHE", "/var/cache/releasebits-e2e"))
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / "python-3.11-slim-bookworm.rootfs.tar"
    if not tarball.exists():
        started = time.monotonic()
        subprocess.run(["bash", str(BASE_SCRIPT), str(tarball)], check=True, timeout=900)
        _log(f"base image root filesystem made in {time.monotonic() - started:.0f}s")
    return tarball


@pytest.fixture(scope="module")
def image(engine: Engine) -> str:
    started = time.monotonic()
    # ENV and CMD as the official image sets them (docker import keeps no config of its own).
    engine.run(
        "import",
        "--change",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change",
        "ENV LANG=C.UTF-8",
        "--change",
        'CMD ["python3"]',
        str(_base_tarball()),
        BASE_IMAGE,
        timeout=300,
    )
    # --network=host: with --bridge=none a RUN step has no network otherwise. The context is
    # the repository itself; .dockerignore keeps it to what the Dockerfile copies.
    engine.run("build", "--network=host", "-t", IMAGE, str(ROOT), timeout=900)
    _log(f"base imported and image built in {time.monotonic() - started:.0f}s")
    return IMAGE


def _start(engine: Engine, name: str, port: int) -> str:
    engine.run(
        "run",
        "-d",
        "--name",
        name,
        "--network=host",  # no bridge: the server binds the host's port
        "-v",
        "rbdata:/data",
        "-e",
        f"RELEASEBITS_PORT={port}",
        *HEALTH_FLAGS,
        IMAGE,
    )
    deadline = time.monotonic() + 90
    while True:
        state = engine.inspect(name)["State"]
        if state["Health"]["Status"] == "healthy":
            return name
        assert state["Running"], engine.logs(name)
        assert time.monotonic() < deadline, engine.logs(name)
        time.sleep(0.25)


def _stop(engine: Engine, name: str) -> float:
    started = time.monotonic()
    engine.run("stop", "--time", str(STOP_GRACE), name, timeout=STOP_GRACE + 30)
    elapsed = time.monotonic() - started
    state = engine.inspect(name)["State"]
    assert state["ExitCode"] == 0, engine.logs(name)
    assert not state["OOMKilled"]
    assert elapsed < STOP_GRACE, f"docker stop took {elapsed:.1f}s: SIGTERM was not enough"
    return elapsed


def _server_uid(engine: Engine, name: str) -> int:
    """The real uid of the container's PID 1 (`releasebits serve`), read from the host."""
    pid = engine.inspect(name)["State"]["Pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    return int(uid_line.split()[1])


def test_image_builds_runs_keeps_data_and_stops_cleanly(engine: Engine, image: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    _start(engine, "rb1", port)
    assert _server_uid(engine, "rb1") != 0
    assert engine.run("exec", "rb1", "id", "-u") != "0"

    token = engine.run("exec", "rb1", "releasebits", "token", "create", "ci").splitlines()[-1]
    assert token.startswith("rb_")
    resp = requests.post(
        f"{url}/components/checkout/deployments",
        json={"version": "v1.2.3", "result": "success"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    deployment = resp.json()["id"]
    _log(f"docker stop rb1: {_stop(engine, 'rb1'):.1f}s")
    logs = engine.logs("rb1")
    assert "ReleaseBits stopped" in logs and "Traceback" not in logs
    assert token not in logs

    _start(engine, "rb2", port)  # a new container on the same volume
    listed = requests.get(
        f"{url}/components/checkout/deployments",
        headers={"Authorization": f"Bearer {token}"},  # the token is in the volume's database
        timeout=10,
    )
    assert listed.status_code == 200, listed.text
    assert [d["id"] for d in listed.json()] == [deployment]
    badge = requests.get(f"{url}/badges/components/checkout/version.json", timeout=10).json()
    assert badge["message"] == "v1.2.3"
    assert _server_uid(engine, "rb2") != 0
    _stop(engine, "rb2")
