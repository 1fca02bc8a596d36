"""A real Prometheus server (Debian's binary) on loopback, for the end-to-end tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import free_port, need_binary, terminate


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def get(self, api: str, **params: str) -> Any:
        resp = requests.get(f"{self.url}/api/v1/{api}", params=params, timeout=5)
        body = resp.json()
        assert resp.status_code == 200 and body["status"] == "success", f"{api} {params}: {body}"
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return list(self.get("query", query=promql)["result"])

    def by_labels(self, promql: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {
            tuple(row["metric"].get(label, "") for label in labels): float(row["value"][1])
            for row in self.query(promql)
        }

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log()}"
            if check():
                return
            time.sleep(0.25)
        pytest.fail(f"timed out after {timeout}s waiting for {what}\nprometheus log:\n{self.log()}")


def start_prometheus(
    tmp_path: Path, config: dict[str, Any], *flags: str, tsdb: Path | None = None
) -> Prometheus:
    """Run Debian's prometheus on a free loopback port with `config` (and extra `flags`) and
    wait until it is ready. `tsdb`: its storage directory (default: a new one in tmp_path)."""
    binary = need_binary("prometheus")
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tsdb or tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
                *flags,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prom = Prometheus(f"http://127.0.0.1:{port}", proc, log_path)

    def ready() -> bool:
        try:
            return requests.get(prom.url + "/-/ready", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        prom.wait_for("prometheus /-/ready", ready, timeout=20)
    except BaseException:
        stop_prometheus(prom)
        raise
    return prom


def stop_prometheus(prom: Prometheus) -> None:
    terminate(prom.proc)


def prometheus_launcher(
    tmp_path: Path, job: str = "releasebits", rule_files: tuple[Path, ...] = ()
) -> Iterator[Callable[[str], Prometheus]]:
    """Body of a fixture: yields start(target), which runs a Prometheus scraping `target` every
    second (with `rule_files` evaluated every second) and waits until it is ready; stops them all
    afterwards."""
    need_binary("prometheus")
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}],
        }
        if rule_files:
            config["rule_files"] = [str(p) for p in rule_files]
        started.append(start_prometheus(tmp_path, config))
        return started[-1]

    yield start
    for prom in started:
        stop_prometheus(prom)
