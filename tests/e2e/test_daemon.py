"""`releasebits serve` as users run it: CLI token, HTTP posts, kill -9 mid-burst, restart."""

from __future__ import annotations

import re
import threading
import time
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from tests.conftest import ON_POSTGRES, Daemon

pytestmark = pytest.mark.e2e


def _all_ids(daemon: Daemon, token: str, slug: str) -> set[str]:
    url: str | None = f"{daemon.url}/components/{slug}/deployments?limit=500"
    ids: set[str] = set()
    while url:
        resp = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert resp.status_code == 200
        ids.update(row["id"] for row in resp.json())
        match = re.match(r'<([^>]+)>; rel="next"', resp.headers.get("Link", ""))
        url = urljoin(url, match.group(1)) if match else None
    return ids


def test_serve_post_list_kill9_restart(daemon: Daemon) -> None:
    daemon.start()
    created = daemon.cli("token", "create", "e2e")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]

    # The reference's query-parameter form, over real HTTP.
    resp = requests.post(
        f"{daemon.url}/components/component-slug/deployments?access_token={token}&version=v1.2.3"
        "&stage=staging&meta_data[user_id]=metauser",
        timeout=10,
    )
    assert resp.status_code == 201
    first = resp.json()["id"]
    listed = requests.get(
        f"{daemon.url}/components/component-slug/deployments",
        headers={"Authorization": token},
        timeout=10,
    ).json()
    assert [d["id"] for d in listed] == [first]
    assert listed[0]["meta_data"] == {"user_id": "metauser"}

    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def burst(worker: int) -> None:
        session = requests.Session()
        n = 0
        while not stop.is_set():
            n += 1
            try:
                r = session.post(
                    f"{daemon.url}/components/burst/deployments",
                    json={"version": f"{worker}.{n}"},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=5,
                )
            except requests.RequestException:
                continue  # the daemon is gone; an unacknowledged post may or may not exist
            if r.status_code == 201:
                with lock:
                    acked.append(r.json()["id"])

    threads = [threading.Thread(target=burst, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.time() + 20
    while len(acked) < 200 and time.time() < deadline:
        time.sleep(0.05)
    daemon.kill9()  # mid-burst: posts are in flight
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert len(acked) >= 200

    daemon.start()
    stored = _all_ids(daemon, token, "burst")
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged deployments lost after kill -9"
    assert first in _all_ids(daemon, token, "component-slug")

    metrics = requests.get(f"{daemon.url}/metrics", timeout=10).text
    total = re.search(
        r'releasebits_deployments_total\{component="burst",result="success",stage="production"\} (\S+)',
        metrics,
    )
    assert total is not None
    assert float(total.group(1)) == len(stored)
    assert token not in daemon.log()


def test_sigterm_stops_gracefully_with_exit_0(daemon: Daemon) -> None:
    daemon.start()
    health: dict[str, Any] = {}
    deadline = time.time() + 10
    while time.time() < deadline:  # the worker's first heartbeat
        health = requests.get(f"{daemon.url}/healthz", timeout=5).json()
        if health["worker"]["alive"]:
            break
        time.sleep(0.2)
    assert health["worker"]["alive"] is True
    assert daemon.stop() == 0
    log = daemon.log()
    assert "ReleaseBits listening on http://127.0.0.1:" in log
    # the defaults, said once
    assert ("2 web workers x 32" if ON_POSTGRES else "1 web worker x 32") in log
    assert "request threads)" in log
    assert log.count("no API tokens exist yet") == 1  # one hint, not one per process
    assert "ReleaseBits stopped" in log
    assert "Traceback" not in log
