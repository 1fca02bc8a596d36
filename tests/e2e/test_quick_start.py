"""The README's quick start, run as written against a running daemon: the first example is a
production deployment happening now, so the first badges the README shows say so."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import Daemon, need_binary
from tests.readme import section, sh_blocks

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.sqlite_only("the README's quick start: the default ./releasebits.db"),
]
README_ADDRESS = "http://127.0.0.1:8080"
QUICK_START = "From any pipeline, with curl"  # under "Quick start"
SHOWS_RE = re.compile(r"<(http://127\.0\.0\.1:8080/badges/[^>]+)\.svg> shows `([^|`]+) \| ([^`]+)`")


def test_quick_start_posts_a_production_deployment_its_badges_show(
    tmp_path: Path, daemon: Daemon
) -> None:
    need_binary("curl")
    # The quick start runs in the clone, where `.venv/bin/releasebits` is; here that is the
    # releasebits this test runs with.
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "releasebits").symlink_to(Path(sys.executable).parent / "releasebits")
    daemon.db = tmp_path / "releasebits.db"
    daemon.start()

    script = "set -e\n" + "\n".join(sh_blocks(QUICK_START))
    assert script.count(README_ADDRESS) >= 3
    env = {k: v for k, v in daemon.env().items() if k != "RELEASEBITS_DB"}  # ./releasebits.db
    result = subprocess.run(
        ["bash", "-c", script.replace(README_ADDRESS, daemon.url)],
        cwd=tmp_path,
        env={**env, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"releasebits: database {tmp_path / 'releasebits.db'}" in result.stderr

    shows = SHOWS_RE.findall(section(QUICK_START))
    assert len(shows) == 2, shows
    for url, label, message in shows:
        badge = requests.get(url.replace(README_ADDRESS, daemon.url) + ".json", timeout=5).json()
        assert (badge["label"], badge["message"]) == (label, message), url
    metrics = requests.get(f"{daemon.url}/metrics", timeout=5).text
    promised = re.search(r"`(releasebits_deployed_version_info\{[^`]+)`", section(QUICK_START))
    assert promised is not None
    assert promised.group(1) in metrics.splitlines()
