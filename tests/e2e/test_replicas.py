"""Two `releasebits serve` replicas on one PostgreSQL database, a fake Sentry and a webhook
receiver; the replica whose worker leads is killed with kill -9 in the middle of ingest and of a
delivery (issue 15's must-show):

- every acknowledged event is stored once (clients retry at the other replica with the same
  Idempotency-Key, as a load balancer's client would);
- polling resumes on the other replica within the takeover bound (4 heartbeats + 5 s);
- every outbox delivery arrives, the one in flight at the kill again with the same webhook-id;
- both replicas' scrapes agree and name the same leader.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from werkzeug import Request, Response

from storage.db import close_all, open_db
from tests.conftest import Daemon, wait_for
from tests.upstreams import TOKEN_ENV, FakeSentry, sources_toml

pytestmark = [pytest.mark.e2e, pytest.mark.needs_postgres]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HEARTBEAT = 1  # the Daemon fixture's RELEASEBITS_WORKER_HEARTBEAT_SECONDS
BOUND = 4 * HEARTBEAT + 5  # a standby holds the lease at most this long after the leader died


@dataclass
class Hooks:
    """A webhook endpoint that counts attempts per webhook-id; while `hold` is set it keeps
    each request open until `release`, then accepts it (the sender may be dead by then)."""

    attempts: dict[str, int] = field(default_factory=dict)
    hold: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request) -> Response:
        Webhook(SECRET).verify(request.data, dict(request.headers))
        if self.hold.is_set():
            self.holding.set()
            self.release.wait(30)
        with self.lock:
            msg = request.headers["webhook-id"]
            self.attempts[msg] = self.attempts.get(msg, 0) + 1
        return Response("", 204)


@dataclass
class TimedSentry(FakeSentry):
    """The fake Sentry, remembering when it was asked (an active worker polls every second)."""

    at: list[float] = field(default_factory=list)

    def _handle(self, request: Request) -> Response:
        self.at.append(time.time())
        return super()._handle(request)

    def after(self, moment: float) -> list[float]:
        return [t for t in self.at if t > moment]


def scrape(daemon: Daemon) -> list[str]:
    """The daemon's series, without the per-process ones and the ever-moving heartbeat."""
    text = requests.get(f"{daemon.url}/metrics", timeout=10).text
    return [
        line
        for line in text.splitlines()
        if not line.startswith(("process_", "python_", "# "))
        and "heartbeat" not in line
        and "scrape" not in line
    ]


def leader(daemon: Daemon) -> str | None:
    found = [line for line in scrape(daemon) if line.startswith("releasebits_worker_leader{")]
    return found[0].split('"')[1] if found else None


@pytest.fixture
def servers() -> Iterator[HTTPServer]:
    """Sentry and the webhook endpoint on one threaded server (a held delivery must not block
    the polls)."""
    server = HTTPServer(threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


def replica(name: str, database: str, tmp_path: Path, env: dict[str, str]) -> Daemon:
    workdir = tmp_path / name
    workdir.mkdir(exist_ok=True)
    return Daemon(db=database, workdir=workdir, extra_env={**env, "RELEASEBITS_INSTANCE": name})


class Client:
    """CI clients posting deployments with an Idempotency-Key each, to one replica or the
    other; a connection refused is retried at the other replica with the same key."""

    def __init__(self, replicas: list[Daemon], token: str):
        self.replicas = replicas
        self.token = token
        self.acked: dict[str, str] = {}  # Idempotency-Key -> event id
        self.retried = 0
        self.lock = threading.Lock()

    def post(self, n: int) -> None:
        key = f"deploy-{n}"
        for attempt in range(4):
            daemon = self.replicas[(n + attempt) % len(self.replicas)]
            try:
                resp = requests.post(
                    f"{daemon.url}/components/checkout/deployments",
                    json={"version": f"1.0.{n}", "stage": "production"},
                    headers={"Authorization": f"Bearer {self.token}", "Idempotency-Key": key},
                    timeout=30,
                )
            except requests.ConnectionError:
                with self.lock:
                    self.retried += 1
                continue
            assert resp.status_code == 201, resp.text
            with self.lock:
                self.acked[key] = resp.json()["id"]
            return
        raise AssertionError(f"{key} was never acknowledged")

    def run(self, numbers: range) -> None:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(self.post, numbers))

    def run_until(self, stop: threading.Event, first: int) -> None:
        """Post from 4 threads until `stop` is set (numbers `first`, `first` + 1, ...)."""
        numbers = itertools.count(first)
        taken = threading.Lock()

        def loop() -> None:
            while not stop.is_set():
                with taken:
                    n = next(numbers)
                self.post(n)

        with ThreadPoolExecutor(max_workers=4) as pool:
            for f in [pool.submit(loop) for _ in range(4)]:
                f.result()


def test_the_leader_killed_mid_ingest_and_mid_delivery_loses_nothing(
    tmp_path: Path, servers: HTTPServer, pg_url: str
) -> None:
    hooks = Hooks()
    sentry = polls = TimedSentry(servers).install()
    servers.expect_request("/hooks", method="POST").respond_with_handler(hooks.handle)
    config = tmp_path / "releasebits.toml"
    config.write_text(
        sources_toml(sentry, None, interval="1s")
        + f'\n[[forward.webhook]]\nname = "hooks"\nurl = "{servers.url_for("/hooks")}"\n'
        'secret_env = "WEBHOOK_SECRET"\ntimeout = "30s"\n'
    )
    env = {**TOKEN_ENV, "WEBHOOK_SECRET": SECRET, "RELEASEBITS_CONFIG": str(config)}
    database = pg_url
    a, b = (replica(n, database, tmp_path, env) for n in ("a", "b"))
    token = a.cli("token", "create", "ci").stdout.strip().splitlines()[-1]
    later: list[Daemon] = []
    try:
        a.start()
        wait_for(lambda: leader(a) == "a", "replica a's worker to lead")
        b.start()
        wait_for(lambda: "standing by" in b.log(), "replica b's worker to stand by")
        assert leader(b) == "a"
        assert requests.get(f"{b.url}/healthz", timeout=5).json()["worker"]["leader"] == "a"

        client = Client([a, b], token)
        client.run(range(40))  # through both replicas
        wait_for(lambda: len(hooks.attempts) >= 10, "the leader's first deliveries")

        hooks.hold.set()  # the next delivery stays in flight ...
        stop = threading.Event()
        ingest = threading.Thread(target=client.run_until, args=(stop, 40))
        ingest.start()
        wait_for(hooks.holding.is_set, "a delivery in flight")
        wait_for(lambda: len(client.acked) >= 60, "ingest under way at both replicas")
        a.kill9()
        killed = time.time()
        hooks.hold.clear()
        hooks.release.set()  # the held request is accepted; its sender is gone
        wait_for(lambda: client.retried > 0, "clients to meet the dead replica")
        stop.set()
        ingest.join(120)
        assert not ingest.is_alive()
        sent = len(client.acked)

        # Polling resumes at b within the bound (plus one poll interval and some slack).
        wait_for(lambda: polls.after(killed + 0.5) != [], "polls after the kill", timeout=30)
        resumed = polls.after(killed + 0.5)[0] - killed
        assert resumed <= BOUND + 2, resumed
        assert "took over the worker lease" in b.log()

        # Every acknowledged event stored once; every delivery sent, the held one again.
        store = open_db(database)
        stored = {r[0] for r in store.execute("SELECT id FROM deployments")}
        assert len(set(client.acked.values())) == sent
        assert stored == set(client.acked.values())
        assert store.one("SELECT count(*) FROM deployments") == (sent,)

        def delivered() -> bool:
            row = store.one("SELECT count(*) FROM deliveries WHERE status <> 'delivered'")
            return row == (0,)

        wait_for(delivered, "the outbox to drain at b", timeout=90)
        ids = {r[0] for r in store.execute("SELECT id FROM deliveries")}
        assert len(ids) == sent and set(hooks.attempts) == ids  # each arrived, by webhook-id
        # The batch in flight at the kill (sent, its outcome not recorded yet) arrives a second
        # time from b, with the same webhook-ids; nothing arrives more often.
        assert sorted(set(hooks.attempts.values())) == [1, 2]
        close_all()

        # The killed replica back: it stands by; both answer the same scrape and leader.
        a2 = replica("a", database, tmp_path, env)
        later.append(a2)
        a2.start()
        wait_for(lambda: "standing by" in a2.log(), "the restarted replica to stand by")
        for attempt in itertools.count():
            first, second = scrape(a2), scrape(b)
            if first == second or attempt == 20:
                break
            time.sleep(0.2)  # a delivery or poll landed between the two scrapes
        assert first == second
        assert leader(a2) == leader(b) == "b"
        assert "releasebits_deployments_total" in "\n".join(first)
        assert "Traceback" not in b.log() + a2.log()
    finally:
        for d in (a, b, *later):
            if d.proc is not None and d.proc.poll() is None:
                d.stop()
