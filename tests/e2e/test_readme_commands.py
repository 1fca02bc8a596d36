"""The README's two commands, exactly as written, from a fresh clone on a machine whose system
Python refuses `pip install` (PEP 668, Debian 12): they create and use their own virtual
environment. The commands are read from README.md, never copied here.

The clone is of the committed HEAD (what CI checks out): uncommitted edits are not in it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port, need_binary
from tests.readme import sh_blocks

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.sqlite_only("the README's commands on a fresh machine: the default SQLite file"),
]
ROOT = Path(__file__).resolve().parents[2]
# A fresh Debian login's PATH: `python3` is Debian's, which refuses `pip install` (PEP 668).
DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INSTALL_TIMEOUT = 600  # a venv, pip, and every dependency from the index


def user_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTEST_ADDOPTS"}
        and not k.startswith(("RELEASEBITS_", "PYTEST_"))
    }
    return {**env, "PATH": DEBIAN_PATH, **extra}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    git = need_binary("git")
    target = tmp_path_factory.mktemp("fresh") / "releasebits"
    subprocess.run([git, "clone", "-q", str(ROOT), str(target)], check=True, timeout=120)
    return target


def test_readme_says_where_the_source_comes_from() -> None:
    get, _serve, _test = sh_blocks("On a fresh machine")
    assert get.startswith("git clone https://") and get.strip().endswith("cd releasebits")


def test_the_daemon_command_installs_and_serves(clone: Path) -> None:
    _get, serve, _test = sh_blocks("On a fresh machine")
    port = free_port()
    log_path = clone.parent / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["bash", "-c", serve],
            cwd=clone,
            env=user_env(RELEASEBITS_PORT=str(port)),  # the README's 8080 may be taken here
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + INSTALL_TIMEOUT
        healthy = False
        while not healthy and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            with contextlib.suppress(requests.ConnectionError):
                healthy = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
            time.sleep(0.5)
        assert healthy, log_path.read_text()[-3000:]
        assert (clone / "releasebits.db").exists()  # the embedded SQLite default
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        assert proc.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert "externally-managed-environment" not in log_path.read_text()


def test_the_test_command_installs_and_runs_pytest(clone: Path) -> None:
    """Run after the daemon command, in the same clone, as a user reading on would: the
    command re-creates .venv (a no-op on the existing one) and adds the test extra."""
    _get, _serve, tests = sh_blocks("On a fresh machine")
    result = subprocess.run(
        ["bash", "-c", tests],
        cwd=clone,
        # The command as written runs the whole suite, this test included: here it runs one
        # quick module, chosen through pytest's own environment variable.
        env=user_env(PYTEST_ADDOPTS="-p no:cacheprovider tests/test_cli.py"),
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
    for tool in ("ruff", "mypy"):  # what .ci/run lints with, installed by the same command
        assert (clone / ".venv" / "bin" / tool).exists()
