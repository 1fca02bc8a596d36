"""Forwarding: outbox delivery rate to a local receiver, and ingest latency with 5 targets.

1. deliveries/s: --events deployments are stored through storage.events.record_event with five
   targets configured (Grafana, Sentry, Bugsnag, New Relic NerdGraph and a signed webhook, all
   pointing at one local threaded HTTP receiver that answers as each API documents), then the
   worker's own Deliverer drains the outbox; prints deliveries/s overall and HTTP requests/s
   (Sentry takes two requests per delivery).
2. ingest p50/p99: `releasebits serve` as shipped, --connections keep-alive clients in a closed
   loop posting deployments for --duration seconds: with no targets; with the five targets (the
   background worker delivers to the receiver during the run, competing for CPU); and with the
   five targets all down (503, Retry-After 1 h: the worker backs off, so this is the cost of
   writing five outbox rows per event alone).

Not a test; prints figures. Usage: python benchmarks/forward.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from ingest import create_token, free_port  # benchmarks/ingest.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = {
    "BENCH_TOKEN": "bench-token-0123456789",
    "BENCH_BUGSNAG_KEY": "1234abcd1234abcd1234abcd1234abcd",
    "WEBHOOK_SECRET": SECRET,
}


class Receiver(BaseHTTPRequestHandler):
    """Answers each upstream's success shape; counts requests."""

    count = 0
    lock = threading.Lock()
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body in two writes cost a delayed ACK

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with Receiver.lock:
            Receiver.count += 1
        if self.path.startswith("/down"):  # a target that is down: the worker backs off
            status, body = 503, {"message": "down"}
        elif self.path.startswith("/grafana"):
            status, body = 200, {"message": "Annotation added", "id": 1}
        elif self.path.startswith("/sentry"):
            status, body = 201, {"version": "x"}
        elif self.path.startswith("/newrelic"):
            status, body = 200, {"data": {"changeTrackingCreateDeployment": {"deploymentId": "d"}}}
        elif self.path.startswith("/bugsnag"):
            status, body = 200, {}
        else:
            status, body = 204, None
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "3600")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def start_receiver() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def targets_toml(base: str) -> str:
    return f"""
[[forward.grafana]]
url = "{base}/grafana"
token_env = "BENCH_TOKEN"

[[forward.sentry]]
base_url = "{base}/sentry"
organization = "acme"
token_env = "BENCH_TOKEN"
project = "backend"

[[forward.bugsnag]]
url = "{base}/bugsnag/"
api_key_env = "BENCH_BUGSNAG_KEY"

[[forward.newrelic]]
url = "{base}/newrelic"
api_key_env = "BENCH_TOKEN"
entity_guid = "MXxBUE18QVBQTElDQVRJT058MTIz"

[[forward.webhook]]
name = "hooks"
url = "{base}/hooks"
secret_env = "WEBHOOK_SECRET"
"""


def delivery_rate(tmp: Path, base: str, events: int) -> None:
    from exporter.config import load_settings
    from exporter.forwarding.deliverer import Deliverer
    from exporter.forwarding.routing import router
    from storage import events as events_store
    from storage import outbox
    from storage.db import open_db

    cfg = tmp / "rate.toml"
    cfg.write_text(targets_toml(base))
    settings = load_settings(cfg, ENV, {"db": str(tmp / "rate.db")})
    db = open_db(settings.db, migrate=True, synchronous=settings.sqlite_synchronous)
    route = router(settings.forward_targets)
    for i in range(events):
        event = {
            "version": f"1.0.{i}",
            "stage": "production",
            "result_class": "success",
            "commit_sha": "6ba09a7c",
            "finished_at": datetime.now(UTC),
        }
        eid = f"00000000-0000-4000-8000-{i:012d}"
        events_store.record_event(
            db, "deployment", "checkout", event, event_id=eid, body={"id": eid},
            limits=events_store.Limits(500, 20), forward=route,
        )  # fmt: skip
    total = db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    deliverer = Deliverer(settings)
    Receiver.count = 0
    started = time.perf_counter()
    delivered = 0
    while delivered < total:
        delivered += deliverer.run(db, budget=60)
    elapsed = time.perf_counter() - started
    done = db.execute("SELECT count(*) FROM deliveries WHERE status = 'delivered'").fetchone()[0]
    deliverer.close()
    backlog = outbox.backlog(db)
    db.close()
    print(
        f"delivery: {events} events x 5 targets = {total} deliveries in {elapsed:.2f} s: "
        f"{done / elapsed:.0f} deliveries/s, {Receiver.count / elapsed:.0f} HTTP requests/s "
        f"({Receiver.count} requests; delivered {done}/{total}; pending {sum(backlog.pending.values())})"
    )


def ingest_latency(tmp: Path, label: str, toml: str, duration: float, connections: int) -> None:
    cfg = tmp / f"{label}.toml"
    cfg.write_text(toml)
    db = tmp / f"{label}.db"
    port = free_port()
    env = {
        **os.environ,
        **ENV,
        "RELEASEBITS_DB": str(db),
        "RELEASEBITS_PORT": str(port),
        "RELEASEBITS_CONFIG": str(cfg),
        "RELEASEBITS_LOG_LEVEL": "warning",
    }
    cmd = [sys.executable, "-m", "exporter"]
    token = create_token(db, env=env)
    proc = subprocess.Popen(
        [*cmd, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        latencies: list[float] = []
        lock = threading.Lock()
        stop = time.perf_counter() + duration

        def client(n: int) -> None:
            session = requests.Session()
            mine = []
            i = 0
            while time.perf_counter() < stop:
                i += 1
                t0 = time.perf_counter()
                resp = session.post(
                    f"{url}/components/c{n % 10}/deployments",
                    json={"version": f"1.{n}.{i}", "stage": "production", "commit_sha": "6ba09a7c"},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
                mine.append(time.perf_counter() - t0)
                if resp.status_code != 201:
                    raise RuntimeError(resp.text)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(2)  # let the worker catch up before counting what it delivered
        metrics = requests.get(url + "/metrics", timeout=10).text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    pending = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("releasebits_forward_pending{")
    )
    delivered = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("releasebits_forward_deliveries_total{")
        and 'outcome="delivered"' in line
    )
    print(
        f"ingest {label:<12} {len(latencies) / duration:7.0f} req/s  p50 {p50:6.1f} ms  "
        f"p99 {p99:6.1f} ms  ({len(latencies)} requests; delivered {delivered:.0f}, "
        f"pending {pending:.0f} two seconds after the load)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000, help="events for the delivery rate")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of ingest load")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="200 events, 4 s of load")
    args = parser.parse_args()
    if args.quick:
        args.events, args.duration = 200, 4.0
    server, base = start_receiver()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        delivery_rate(tmp, base, args.events)
        ingest_latency(tmp, "no targets", "", args.duration, args.connections)
        ingest_latency(tmp, "5 targets", targets_toml(base), args.duration, args.connections)
        # The cost of the outbox rows alone: every target down, the worker backing off.
        down = targets_toml(base + "/down")
        ingest_latency(tmp, "5 down", down, args.duration, args.connections)
    server.shutdown()


if __name__ == "__main__":
    main()
