"""What the status page costs to render: 500 components x 5 stages (issue 14: < 200 ms).

Seeds one SQLite file through storage.events.record_event (the ingest path): per component and
stage an older and a current version (every third cell also a failed deployment on top), one
build per component; every component is mapped to a Sentry source whose polled release health
covers each production version, so every production cell does the crash-free join (the worst
case). Then times, interleaved round by round so machine noise hits every scenario alike:

- page:      GET / in this process (Flask test client): aggregates snapshot, crash-free join,
             feed page, health, and the Jinja render of the 2,500-cell grid;
- model:     the same reads without the template (exporter.ui.status grid + feed + health);
- unmapped:  GET / with no release-health mapping (what the join costs, by difference);
- component: GET /ui/components/c0000 (its timeline and feed);
- docs:      GET /docs (the OpenAPI document rendered);
- HTTP:      GET / from a `releasebits web` subprocess (gunicorn, as shipped) over keep-alive.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scrape import WebServer, summary

from exporter.app import create_app
from exporter.config import load_settings
from exporter.names import result_class
from exporter.settings import Settings
from exporter.ui import status as view
from storage import release_health
from storage.db import close_thread_stores, open_db, thread_store
from storage.events import Limits, record_event

STAGES = ("dev", "qa", "staging", "canary", "production")
T0 = datetime(2024, 5, 1, tzinfo=UTC)
SENTRY_TOKEN = "bench-token"


def seed(path: Path, components: int) -> None:
    db = open_db(path, synchronous="off", migrate=True)
    limits = Limits(max_components=100_000, max_stages=1000)
    minute = 0

    def record(kind: str, name: str, **event: Any) -> None:
        nonlocal minute
        minute += 1
        finished = T0 + timedelta(minutes=minute)
        event.update(
            finished_at=finished,
            started_at=finished - timedelta(seconds=90),
            result_class=result_class(event.get("result")),
            commit_sha=uuid.uuid4().hex + "01234567",
        )
        eid = str(uuid.uuid4())
        record_event(db, kind, name, event, event_id=eid, body={"id": eid}, limits=limits)

    for c in range(components):
        name = f"c{c:04d}"
        for s, stage in enumerate(STAGES):
            record("deployment", name, version="1.0.0", stage=stage, host="web-1")
            record("deployment", name, version=f"1.{s + 1}.0", stage=stage, host="web-1")
            if (c + s) % 3 == 0:
                record("deployment", name, version="2.0.0", stage=stage, result="failed")
        record("build", name, version="2.0.1", result="success")
    rows = [
        release_health.HealthRow(
            "sentry", "42", "production", f"c{c:04d}@1.5.0", 1000, 100, 0.97 + (c % 4) / 100, 1.0
        )
        for c in range(components)
    ]
    release_health.store_poll(db, "sentry", rows, projects=["42"], duration=0.2)
    db.close()


def config(path: Path, components: int) -> Path:
    cfg = path.with_suffix(".toml")
    parts = ['[[sentry]]\norganization = "acme"\ntoken_env = "SENTRY_TOKEN"\n']
    for c in range(components):
        parts.append(
            f'[components.c{c:04d}]\nrepository = "https://git.example.com/acme/c{c:04d}"\n'
            f'[components.c{c:04d}.sources.sentry]\nproject = "42"\n'
            'release = "{component}@{version}"\n'
        )
    cfg.write_text("\n".join(parts))
    return cfg


def get(client: Any, path: str) -> Callable[[], int]:
    def run() -> int:
        resp = client.get(path)
        if resp.status_code != 200:
            raise RuntimeError(f"{path} answered {resp.status_code}")
        return len(resp.data)

    return run


def model(settings: Settings) -> Callable[[], int]:
    def run() -> int:
        db = thread_store(settings.db)
        now = time.time()
        grid = view.grid(db, settings, now)
        view.feed(db, settings, view.Filters(), now, detail=False)
        view.health(db, settings, now, detail=False)
        return len(grid.rows)

    return run


class HttpGet:
    """A keep-alive connection timing GET / including reading the body."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def __call__(self) -> int:
        self.conn.request("GET", "/")
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET / answered {resp.status}")
        return len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--components", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="10 rounds")
    args = parser.parse_args()
    rounds = 10 if args.quick else args.rounds
    tmp = Path(tempfile.mkdtemp(prefix="rb-ui-bench-"))
    db = tmp / "ui.db"
    t = time.perf_counter()
    seed(db, args.components)
    print(
        f"seeded {args.components} components x {len(STAGES)} stages in "
        f"{time.perf_counter() - t:.1f}s ({db.stat().st_size / 2**20:.1f} MiB)"
    )
    env = {
        "SENTRY_TOKEN": SENTRY_TOKEN,
        "RELEASEBITS_DB": str(db),
        "RELEASEBITS_MAX_COMPONENTS": str(args.components),
    }
    mapped = load_settings(config(db, args.components), env)
    plain = load_settings(None, env)
    client = create_app(mapped, process_metrics=False).test_client()
    unmapped = create_app(plain, process_metrics=False).test_client()
    page = client.get("/").data
    assert page.count(b'class="cell') == args.components * len(STAGES), "not every cell rendered"
    joined = page.count(b">crash-free ") - page.count(b">crash-free no data")
    assert joined == args.components, f"{joined} crash-free figures, not one per component"
    timers: dict[str, Callable[[], int]] = {
        "page": get(client, "/"),
        "model": model(mapped),
        "unmapped": get(unmapped, "/"),
        "component": get(client, "/ui/components/c0000"),
        "docs": get(client, "/docs"),
    }
    os.environ.update(SENTRY_TOKEN=SENTRY_TOKEN, RELEASEBITS_CONFIG=str(db.with_suffix(".toml")))
    server = WebServer(db=db, max_components=args.components).start()
    try:
        timers["HTTP"] = HttpGet(server.port)
        times: dict[str, list[float]] = {name: [] for name in timers}
        cpu: dict[str, list[float]] = {name: [] for name in timers}
        sizes: dict[str, int] = {}
        for _ in range(3):  # warm-up: templates compiled, connections opened
            for fn in timers.values():
                fn()
        for _ in range(rounds):
            for name, fn in timers.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                sizes[name] = fn()
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    finally:
        server.stop()
        close_thread_stores()
    # On a shared machine wall time includes waiting for a core; the CPU time this process spent
    # (in-process rows only; the HTTP row's work happens in gunicorn) is what the page costs.
    print(f"\n{rounds} rounds: wall ms median / p95 / min, CPU ms median, body KiB")
    for name, values in times.items():
        med, p95 = summary(values)
        own = f"{statistics.median(cpu[name]) * 1000:7.1f}" if name != "HTTP" else "      -"
        print(
            f"  {name:10} {med:7.1f} / {p95:7.1f} / {min(values) * 1000:7.1f}   {own}"
            f"   {sizes[name] / 1024:7.0f} KiB"
        )
    print(f"  GET / gzipped: {len(gzip.compress(page, 6)) / 1024:.0f} KiB")
    page_med = statistics.median(times["page"]) * 1000
    page_cpu = statistics.median(cpu["page"]) * 1000
    verdict = "met" if page_med < 200 else ("met in CPU time" if page_cpu < 200 else "MISSED")
    print(
        f"\ntarget < 200 ms for {args.components} x {len(STAGES)}: {verdict} (in process: wall "
        f"{page_med:.0f} ms, CPU {page_cpu:.0f} ms; over HTTP {statistics.median(times['HTTP']) * 1000:.0f}"
        f" ms); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    sys.exit(main())
