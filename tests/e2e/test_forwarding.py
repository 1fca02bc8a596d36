"""A webhook receiver that is down for a while: every event still arrives exactly once (deduplicated
by webhook-id), ingest stays fast, and a daemon killed mid-delivery loses nothing."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from werkzeug import Request, Response

from tests.conftest import Daemon, wait_for

pytestmark = pytest.mark.e2e
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Receiver:
    """Verifies each signature, deduplicates by webhook-id, and can be down or hang on demand."""

    mode: str = "up"  # up | down (503) | hang (hold the request until released)
    received: dict[str, str] = field(default_factory=dict)  # webhook-id -> event id
    attempts: int = 0
    duplicates: int = 0
    refused: int = 0
    hanging: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request) -> Response:
        payload = Webhook(SECRET).verify(request.data, dict(request.headers))
        with self.lock:
            self.attempts += 1
            mode = self.mode
        if mode == "hang":
            self.hanging.set()
            self.release.wait(20)
            return Response("", 503)
        if mode == "down":
            with self.lock:
                self.refused += 1
            return Response("unavailable", 503, headers={"Retry-After": "0"})
        with self.lock:
            msg_id = request.headers["webhook-id"]
            if msg_id in self.received:
                self.duplicates += 1
            else:
                self.received[msg_id] = payload["data"]["id"]
        return Response("", 204)


def post(daemon: Daemon, token: str, i: int) -> tuple[str, float]:
    started = time.perf_counter()
    resp = requests.post(
        f"{daemon.url}/components/checkout/deployments",
        json={"version": f"1.0.{i}", "stage": "production"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    elapsed = time.perf_counter() - started
    assert resp.status_code == 201, resp.text
    return resp.json()["id"], elapsed


def test_outage_delays_but_never_loses_or_duplicates(
    tmp_path: Path, httpserver: HTTPServer, new_db: Callable[..., str]
) -> None:
    receiver = Receiver()
    httpserver.expect_request("/hooks", method="POST").respond_with_handler(receiver.handle)
    config = tmp_path / "releasebits.toml"
    config.write_text(
        f'[[forward.webhook]]\nname = "hooks"\nurl = "{httpserver.url_for("/hooks")}"\n'
        'secret_env = "WEBHOOK_SECRET"\ntimeout = "30s"\n'
    )
    env = {
        "WEBHOOK_SECRET": SECRET,
        "RELEASEBITS_CONFIG": str(config),
        "RELEASEBITS_FORWARD_RETRY_BASE_SECONDS": "0.2",
        "RELEASEBITS_FORWARD_RETRY_MAX_SECONDS": "1",
    }
    daemon = Daemon(db=new_db("rb"), workdir=tmp_path, extra_env=env)
    created = daemon.cli("token", "create", "ci")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    daemon.start()
    sent: list[str] = []

    def state() -> str:
        return (
            f"receiver attempts={receiver.attempts} refused={receiver.refused} "
            f"received={len(receiver.received)} sent={len(sent)}\n{daemon.log()[-3000:]}"
        )

    try:
        # Healthy: a baseline of ingest latency, and everything arrives.
        baseline = []
        for i in range(10):
            event_id, elapsed = post(daemon, token, i)
            sent.append(event_id)
            baseline.append(elapsed)
        wait_for(lambda: len(receiver.received) == 10, "the first 10 events", detail=state)

        # Outage: the receiver answers 503. Ingest answers as fast as before.
        receiver.mode = "down"
        during = []
        for i in range(10, 30):
            event_id, elapsed = post(daemon, token, i)
            sent.append(event_id)
            during.append(elapsed)
        wait_for(lambda: receiver.refused >= 2, "retries against the down receiver", detail=state)

        # A delivery in flight when the daemon is killed: the receiver holds the request.
        receiver.mode = "hang"
        wait_for(receiver.hanging.is_set, "a delivery to be in flight", detail=state)
        daemon.kill9()
        receiver.mode = "down"
        receiver.release.set()
        refused = receiver.refused
        daemon.start()
        for i in range(30, 35):
            event_id, elapsed = post(daemon, token, i)
            sent.append(event_id)
            during.append(elapsed)
        wait_for(lambda: receiver.refused > refused, "retries after the restart", detail=state)

        # Recovery: everything arrives, each event exactly once after deduplication.
        receiver.mode = "up"
        wait_for(
            lambda: len(receiver.received) == len(sent), "every event to arrive", 40, detail=state
        )
        assert sorted(receiver.received.values()) == sorted(sent)
        metrics = requests.get(daemon.url + "/metrics", timeout=10).text
        assert 'releasebits_forward_pending{target="hooks"} 0.0' in metrics
        listed = requests.get(
            daemon.url + "/deliveries?limit=500",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()
        assert len(listed) == len(sent)  # one delivery per event: at most the in-flight one repeats
        assert {d["status"] for d in listed} == {"delivered"}
    finally:
        receiver.release.set()
        assert daemon.stop() == 0

    # Ingest latency did not grow during the outage (the worker is another process and the
    # outbox insert is part of the event's own transaction).
    assert max(during) < 1.0, during
    assert statistics.median(during) < statistics.median(baseline) * 3 + 0.05, (baseline, during)
    assert SECRET not in daemon.log()
    print(
        f"ingest median {statistics.median(baseline) * 1000:.1f} ms healthy, "
        f"{statistics.median(during) * 1000:.1f} ms during the outage; "
        f"{receiver.attempts} attempts, {receiver.duplicates} duplicates dropped"
    )
