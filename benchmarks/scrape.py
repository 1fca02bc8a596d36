"""What a /metrics scrape costs: by series count, and flat in the number of stored events.

Seeds SQLite databases directly (raw deployment and build rows plus the pre-aggregated tables the
collector reads, computed from the same rows exactly as storage.events.record_event would; a
self-check at start compares the two paths on a small history), then times, interleaved round by
round so that machine noise hits every scenario alike:

- floor:   prometheus_client.generate_latest of an in-memory registry of plain Counter, Gauge and
           Histogram objects with the same label sets (what a scrape costs with no SQLite at all);
- collect: generate_latest(build_registry(settings)) in this process (SQLite read + encoding);
- HTTP:    GET /metrics from a `releasebits web` subprocess (gunicorn) over a keep-alive
           connection, as plain text, and as Prometheus asks for it (OpenMetrics + gzip).

Targets (issue 3): 20k series in < 300 ms; 1M stored events within 10% of 10k stored events.
With --postgres, each scenario with the small history also runs on PostgreSQL (issue 15): its
seeded file copied with `releasebits migrate-db` into a throwaway cluster (tests/pg.py), timed in
the same rounds as the SQLite scenarios.
DORA is on (the default dora_stages, production): every history ends now, so the DORA windows
hold rollouts; bulk seeding builds the rollouts with storage.dora's own rebuild. The DORA gauges
are recomputed from rollout rows at most 60 s apart per process: the timed scrapes are the ones
in between (cache warm); `collect cold` times a scrape by a fresh registry (the once-a-minute
recomputation, which reads the rollouts of the last 90 days, not the stored events).
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import math
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from exporter.metrics.collector import build_registry
from exporter.names import RESULT_CLASSES, result_class
from exporter.settings import Settings
from storage import dora
from storage.aggregates import DURATION_BUCKETS
from storage.db import close_all, open_db
from storage.events import Limits, record_event

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
# Histories end now (integer timestamps and durations: float sums match record_event exactly).
T_END = int(time.time()) - 60
STEP_SECONDS = 30
DURATIONS = (3, 20, 45, 90, 200, 400, 700, 1000, 2000, 4000, 8000)  # every bucket, and +Inf
RESULTS = ("success", "failed")  # both classes seen on every component/stage: a fixed series set
STAGES = ("production", "staging", "canary", "qa", "dev", "perf", "demo", "sandbox")


@dataclass(frozen=True)
class Event:
    """One generated deployment or build, in finished_at order."""

    kind: str
    component: str
    stage: str  # '' for builds
    version: str
    result: str
    commit_sha: str
    host: str | None
    started_ts: int
    finished_ts: int


@dataclass(frozen=True)
class Shape:
    """A history: components x stages, and how many events are stored in total."""

    components: int
    stages: int
    events: int
    seed: int = 1

    @property
    def minimum_events(self) -> int:
        """Events needed so every component/stage has a success and a failure (deploy + build)."""
        return self.components * (self.stages + 1) * len(RESULTS)


DORA_SAMPLES = 4 * 4 + 1  # production: 4 windows x (rollouts, failures, ratio, rework) + age


def series_per_component(stages: int) -> int:
    """Exported samples per component: deploy total 5 + last 2 + histogram 15 + info 1 + since 1
    per stage, build total 5 + last 2 + histogram 15, and the DORA gauges of production."""
    hist = len(DURATION_BUCKETS) + 1 + 2
    n_results = len(RESULT_CLASSES)
    deploy = stages * (n_results + len(RESULTS) + hist + 2)
    return deploy + (n_results + len(RESULTS) + hist) + DORA_SAMPLES


def generate(shape: Shape) -> Iterator[Event]:
    """A deterministic history. Its first events give every component/stage each result once,
    so the set of series does not depend on shape.events; the rest land at random."""
    rng = random.Random(shape.seed)
    comps = [f"service-{c:05d}" for c in range(shape.components)]
    stages = STAGES[: shape.stages]
    seen: dict[tuple[str, str, str], int] = {}
    plan: list[tuple[str, str, str, str]] = []
    for comp in comps:
        for stage in stages:
            plan += [("deployment", comp, stage, r) for r in RESULTS]
        plan += [("build", comp, "", r) for r in RESULTS]
    for i in range(shape.events):
        if i < len(plan):
            kind, comp, stage, result = plan[i]
        else:
            kind = "build" if rng.random() < 0.2 else "deployment"
            comp = comps[rng.randrange(len(comps))]
            stage = "" if kind == "build" else stages[rng.randrange(len(stages))]
            result = RESULTS[0] if rng.random() < 0.9 else RESULTS[1]
        n = seen[(kind, comp, stage)] = seen.get((kind, comp, stage), -1) + 1
        finished = T_END - (shape.events - i) * STEP_SECONDS
        yield Event(
            kind=kind,
            component=comp,
            stage=stage,
            version=f"1.{n // 5}.0",  # a version is redeployed a few times before the next one
            result=result,
            commit_sha=f"{hash((comp, stage, n // 5)) & 0xFFFFFFFFFFFF:012x}",
            host=f"host-{n % 8}" if kind == "deployment" else None,
            started_ts=finished - DURATIONS[rng.randrange(len(DURATIONS))],
            finished_ts=finished,
        )


def _ts_text(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _bucket(duration: float) -> int:
    return next(
        (i for i, bound in enumerate(DURATION_BUCKETS) if duration <= bound), len(DURATION_BUCKETS)
    )


def seed_bulk(path: Path, shape: Shape, chunk: int = 50_000) -> None:
    """Raw rows with executemany, aggregates computed alongside (as record_event maintains them)."""
    db = open_db(path, migrate=True)
    conn = db.conn
    conn.execute("PRAGMA synchronous = OFF")  # seeding only; the daemon opens with its own pragmas
    stats: dict[tuple[str, str, str, str], list[float]] = {}
    durations: dict[tuple[str, str, str], list[Any]] = {}
    current: dict[tuple[str, str], tuple[str, str, str, int, int]] = {}
    last_builds: dict[str, tuple[str, str, str, str, int]] = {}
    components: dict[str, None] = {}
    stages: dict[str, None] = {}
    deploy_rows: list[tuple[Any, ...]] = []
    build_rows: list[tuple[Any, ...]] = []
    now = time.time()
    deploy_sql = (
        "INSERT INTO deployments (id, component, version, result, result_class, stage, host, "
        "started_at, finished_at, finished_ts, duration_seconds, commit_sha, code_name, branch, "
        "tag, meta_data, release_id, received_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 'main', NULL, '{}', NULL, ?)"
    )
    build_sql = (
        "INSERT INTO builds (id, component, version, result, result_class, started_at, "
        "finished_at, finished_ts, duration_seconds, commit_sha, code_name, branch, tag, url, "
        "meta_data, received_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 'main', NULL, NULL, '{}', ?)"
    )

    def flush() -> None:
        conn.executemany(deploy_sql, deploy_rows)
        conn.executemany(build_sql, build_rows)
        deploy_rows.clear()
        build_rows.clear()

    with conn:
        for i, ev in enumerate(generate(shape)):
            event_id = str(uuid.UUID(int=i + 1))
            rclass = result_class(ev.result)
            duration = ev.finished_ts - ev.started_ts
            if ev.component not in components:
                components[ev.component] = None
                conn.execute(
                    "INSERT INTO components (slug, created_at) VALUES (?, ?)", [ev.component, now]
                )
            if ev.kind == "deployment" and ev.stage not in stages:
                stages[ev.stage] = None
                conn.execute("INSERT INTO stages (name, created_at) VALUES (?, ?)", [ev.stage, now])
            key = (ev.kind, ev.component, ev.stage, rclass)
            stat = stats.get(key)
            if stat is None:
                stats[key] = [1, ev.finished_ts]
            else:
                stat[0] += 1
                stat[1] = max(stat[1], ev.finished_ts)
            dur = durations.get(key[:3])
            if dur is None:
                dur = durations[key[:3]] = [[0] * (len(DURATION_BUCKETS) + 1), 0.0, 0]
            dur[0][_bucket(duration)] += 1
            dur[1] += duration
            dur[2] += 1
            times = (_ts_text(ev.started_ts), _ts_text(ev.finished_ts), ev.finished_ts, duration)
            if ev.kind == "deployment":
                deploy_rows.append(
                    (
                        event_id,
                        ev.component,
                        ev.version,
                        ev.result,
                        rclass,
                        ev.stage,
                        ev.host,
                        *times,
                        ev.commit_sha,
                        now,
                    )
                )
                if rclass == "success":
                    cur = current.get((ev.component, ev.stage))
                    if cur is None or ev.finished_ts >= cur[3]:
                        since = (
                            cur[4] if cur is not None and cur[0] == ev.version else ev.finished_ts
                        )
                        current[(ev.component, ev.stage)] = (
                            ev.version,
                            ev.commit_sha,
                            event_id,
                            ev.finished_ts,
                            since,
                        )
            else:
                build_rows.append(
                    (
                        event_id,
                        ev.component,
                        ev.version,
                        ev.result,
                        rclass,
                        *times,
                        ev.commit_sha,
                        now,
                    )
                )
                last = last_builds.get(ev.component)
                if last is None or ev.finished_ts >= last[4]:
                    last_builds[ev.component] = (
                        event_id,
                        ev.version,
                        ev.result,
                        rclass,
                        ev.finished_ts,
                    )
            if len(deploy_rows) + len(build_rows) >= chunk:
                flush()
        flush()
        conn.executemany(
            "INSERT INTO event_stats (kind, component, stage, result_class, count, last_ts) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(*k, v[0], v[1]) for k, v in stats.items()],
        )
        conn.executemany(
            "INSERT INTO duration_stats (kind, component, stage, buckets, sum, count) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(*k, json.dumps(v[0]), v[1], v[2]) for k, v in durations.items()],
        )
        conn.executemany(
            "INSERT INTO current_versions (component, stage, version, commit_sha, deployment_id, "
            "finished_ts, since_ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*k, *v) for k, v in current.items()],
        )
        conn.executemany(
            "INSERT INTO last_builds (component, build_id, version, result, result_class, "
            "finished_ts) VALUES (?, ?, ?, ?, ?, ?)",
            [(k, *v) for k, v in last_builds.items()],
        )
        for component in components:  # rollouts, exactly as ingest builds them
            dora.rebuild_from(db, component, "production", -math.inf, now)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def seed_via_api_path(path: Path, shape: Shape) -> None:
    """The same history through storage.events.record_event, one transaction per event."""
    db = open_db(path, migrate=True)
    db.conn.execute("PRAGMA synchronous = OFF")
    limits = Limits(max_components=100_000, max_stages=1000)
    for i, ev in enumerate(generate(shape)):
        event: dict[str, Any] = {
            "version": ev.version,
            "result": ev.result,
            "result_class": result_class(ev.result),
            "started_at": datetime.fromtimestamp(ev.started_ts, UTC),
            "finished_at": datetime.fromtimestamp(ev.finished_ts, UTC),
            "commit_sha": ev.commit_sha,
            "branch": "main",
            "meta_data": {},
        }
        if ev.kind == "deployment":
            event.update(stage=ev.stage, host=ev.host)
        record_event(
            db,
            ev.kind,
            ev.component,
            event,
            event_id=str(uuid.UUID(int=i + 1)),
            body={},
            limits=limits,
            dora_stages=Settings().dora_stages,
        )
    db.close()


def self_check(tmp: Path) -> None:
    """Bulk seeding must export exactly what the ingest path would have exported."""
    shape = Shape(components=3, stages=2, events=400, seed=7)
    bulk, api = tmp / "check-bulk.db", tmp / "check-api.db"
    seed_bulk(bulk, shape)
    seed_via_api_path(api, shape)
    # Compared as sorted lines: the collector emits histogram rows in SQLite row order, and
    # record_event's INSERT OR REPLACE moves a row to the end on every update.
    texts = [
        sorted(
            generate_latest(build_registry(Settings(db=str(p)), process_metrics=False))
            .decode()
            .splitlines()
        )
        for p in (bulk, api)
    ]
    if texts[0] != texts[1]:
        sys.exit("self-check failed: bulk-seeded aggregates differ from record_event's")
    db = open_db(bulk)
    counts = [
        db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("deployments", "builds")
    ]
    db.close()
    if sum(counts) != shape.events:
        sys.exit(f"self-check failed: {counts} raw rows for {shape.events} events")


def floor_registry(shape: Shape) -> CollectorRegistry:
    """Plain client_python objects with the collector's label sets: the cost of encoding alone."""
    prometheus_client.disable_created_metrics()  # the collector exports no _created series
    reg = CollectorRegistry()
    dep_total = Counter(
        "releasebits_deployments", "d", ["component", "stage", "result"], registry=reg
    )
    dep_last = Gauge(
        "releasebits_deployment_last_timestamp_seconds",
        "d",
        ["component", "stage", "result"],
        registry=reg,
    )
    dep_hist = Histogram(
        "releasebits_deployment_duration_seconds",
        "d",
        ["component", "stage"],
        buckets=DURATION_BUCKETS,
        registry=reg,
    )
    info = Gauge(
        "releasebits_deployed_version_info",
        "d",
        ["component", "stage", "version", "commit_sha"],
        registry=reg,
    )
    since = Gauge(
        "releasebits_deployed_version_since_timestamp_seconds",
        "d",
        ["component", "stage"],
        registry=reg,
    )
    build_total = Counter("releasebits_builds", "b", ["component", "result"], registry=reg)
    build_last = Gauge(
        "releasebits_build_last_timestamp_seconds", "b", ["component", "result"], registry=reg
    )
    build_hist = Histogram(
        "releasebits_build_duration_seconds",
        "b",
        ["component"],
        buckets=DURATION_BUCKETS,
        registry=reg,
    )
    dora_gauges = [
        Gauge(name, "d", ["component", "stage", "window"], registry=reg)
        for name in (
            "releasebits_dora_deployments",
            "releasebits_dora_change_failures",
            "releasebits_dora_change_failure_ratio",
            "releasebits_dora_rework_ratio",
        )
    ]
    age = Gauge(
        "releasebits_dora_unrecovered_failure_age_seconds",
        "d",
        ["component", "stage"],
        registry=reg,
    )
    seen = {result_class(r) for r in RESULTS}
    for c in range(shape.components):
        for gauge in dora_gauges:
            for window in ("1d", "7d", "30d", "90d"):
                gauge.labels(f"service-{c:05d}", "production", window).set(3)
        age.labels(f"service-{c:05d}", "production").set(0)
        comp = f"service-{c:05d}"
        for stage in STAGES[: shape.stages]:
            for rclass in RESULT_CLASSES:
                dep_total.labels(comp, stage, rclass).inc(7)
                if rclass in seen:
                    dep_last.labels(comp, stage, rclass).set(T_END)
            dep_hist.labels(comp, stage).observe(45)
            info.labels(comp, stage, "1.2.0", "0123456789ab").set(1)
            since.labels(comp, stage).set(T_END)
        for rclass in RESULT_CLASSES:
            build_total.labels(comp, rclass).inc(3)
            if rclass in seen:
                build_last.labels(comp, rclass).set(T_END)
        build_hist.labels(comp).observe(200)
    return reg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class WebServer:
    """`python -m exporter web` (gunicorn) on its own port and database."""

    db: Path | str
    max_components: int
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> WebServer:
        env = dict(os.environ)
        env.update(
            RELEASEBITS_DB=str(self.db),
            RELEASEBITS_PORT=str(self.port),
            RELEASEBITS_HOST="127.0.0.1",
            RELEASEBITS_MAX_COMPONENTS=str(self.max_components),
            RELEASEBITS_LOG_LEVEL="warning",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "web"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"releasebits web exited with {self.proc.returncode}")
            try:
                # /metrics, not /healthz: that answers 503 without a background worker's
                # heartbeat, and `web` runs none.
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/metrics")
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
                conn.close()
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()  # its own session: nothing else would stop it
        raise RuntimeError("releasebits web did not answer /metrics")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Scraper:
    """A keep-alive HTTP connection that times GET /metrics including reading the body."""

    def __init__(self, port: int, headers: dict[str, str]):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = headers
        self.size = 0

    def __call__(self) -> None:
        try:
            self.conn.request("GET", "/metrics", headers=self.headers)
            resp = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # Idle past the server's keep-alive timeout: reconnect, as Prometheus would.
            self.conn.close()
            self.conn.request("GET", "/metrics", headers=self.headers)
            resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"/metrics answered {resp.status}")
        self.size = len(body)


@dataclass
class Scenario:
    """One database and everything timed against it."""

    label: str
    shape: Shape
    db: Path | str
    samples: int = 0
    floor_samples: int = 0
    timers: dict[str, Callable[[], Any]] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)
    server: WebServer | None = None
    sizes: dict[str, int] = field(default_factory=dict)


COLUMNS = ("floor", "collect", "collect_cold", "http_text", "http_prom")


def start_postgres() -> Any:
    """A throwaway cluster (tests/pg.py), fsync on as a production server runs."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests import pg

    def migrate(url: str) -> None:
        open_db(url, migrate=True).close()
        close_all()

    return pg.start_cluster(migrate, fsync=True)


def copy_to_postgres(cluster: Any, sc: Scenario) -> Scenario:
    """The scenario's seeded file in a fresh PostgreSQL database, copied by `migrate-db`."""
    url = cluster.database("scrape", template="template0")
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "exporter", "migrate-db", "--from", str(sc.db), "--to", url],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    print(f"copied {sc.label} into PostgreSQL in {time.perf_counter() - t:.1f} s", flush=True)
    return Scenario(f"{sc.label} pg", sc.shape, url)


def count_samples(text: bytes, prefix: str = "releasebits_") -> int:
    return sum(1 for line in text.decode().splitlines() if line.startswith(prefix))


def summary(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few rounds (~1 min)")
    parser.add_argument("--rounds", type=int, default=None, help="timed scrapes per scenario")
    parser.add_argument("--stages", type=int, default=4, help="stages per component (<= 8)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the databases in this dir")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also scrape copies of the small-history scenarios on PostgreSQL (needs initdb)",
    )
    parser.add_argument(
        "--series",
        type=int,
        action="append",
        default=None,
        metavar="N",
        help="only this series count (repeatable), small history only: no 1M-event seeding",
    )
    args = parser.parse_args()
    stages = max(1, min(args.stages, len(STAGES)))
    if args.quick:
        series_targets = [1_000, 5_000]
        events_small, events_large, flat_series = 10_000, 100_000, 5_000
        rounds = args.rounds or 8
    else:
        series_targets = [1_000, 10_000, 20_000, 50_000]
        events_small, events_large, flat_series = 10_000, 1_000_000, 20_000
        rounds = args.rounds or 30
    if args.series:
        series_targets = sorted(args.series)
    per_comp = series_per_component(stages)

    def shape_for(series: int, events: int) -> Shape:
        return Shape(components=max(1, round(series / per_comp)), stages=stages, events=events)

    tmp_ctx = tempfile.TemporaryDirectory(prefix="rb-scrape-")
    tmp = args.keep or Path(tmp_ctx.name)
    tmp.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    self_check(tmp)
    print(
        f"self-check ok: bulk seeding exports what record_event does ({time.perf_counter() - started:.1f} s)"
    )

    scenarios = [
        Scenario(f"{s // 1000}k", shape_for(s, events_small), tmp / f"s{s}-e{events_small}.db")
        for s in series_targets
    ]
    if not args.series:
        scenarios.append(
            Scenario(
                f"{flat_series // 1000}k",
                shape_for(flat_series, events_large),
                tmp / f"s{flat_series}-e{events_large}.db",
            )
        )
    cluster = None
    try:
        for sc in scenarios:
            assert isinstance(sc.db, Path)
            if sc.shape.events < sc.shape.minimum_events:
                sys.exit(f"{sc.label}: {sc.shape.events} events cannot cover {sc.shape}")
            t = time.perf_counter()
            if not sc.db.exists():
                seed_bulk(sc.db, sc.shape)
            size_mib = sc.db.stat().st_size / 2**20
            print(
                f"seeded {sc.db.name}: {sc.shape.components} components x {sc.shape.stages} stages, "
                f"{sc.shape.events:,} events, {size_mib:.0f} MiB in {time.perf_counter() - t:.1f} s",
                flush=True,
            )
        if args.postgres:
            cluster = start_postgres()
            scenarios += [
                copy_to_postgres(cluster, sc) for sc in scenarios if sc.shape.events == events_small
            ]
        for sc in scenarios:
            settings = Settings(db=str(sc.db), max_components=max(500, sc.shape.components))
            registry = build_registry(settings)
            floor = floor_registry(sc.shape)
            sc.samples = count_samples(generate_latest(registry))
            sc.floor_samples = count_samples(generate_latest(floor))
            sc.server = WebServer(sc.db, settings.max_components).start()
            text = Scraper(sc.server.port, {})
            prom = Scraper(sc.server.port, {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
            sc.timers = {
                "floor": functools.partial(generate_latest, floor),
                "collect": functools.partial(generate_latest, registry),
                # A fresh registry has an empty DORA cache: the once-a-minute recomputation.
                "collect_cold": lambda s=settings: generate_latest(
                    build_registry(s, process_metrics=False)
                ),
                "http_text": text,
                "http_prom": prom,
            }
            sc.sizes = {"http_text": 0, "http_prom": 0}
            sc.times = {name: [] for name in COLUMNS}
        for sc in scenarios:
            # Warm-up just before timing (gunicorn closes idle keep-alive connections after 5 s).
            for fn in sc.timers.values():
                fn()
                fn()
        print(
            f"timing {rounds} rounds; each round scrapes every scenario once, in turn", flush=True
        )
        for _ in range(rounds):
            for sc in scenarios:
                for name in COLUMNS:
                    t = time.perf_counter()
                    sc.timers[name]()
                    sc.times[name].append(time.perf_counter() - t)
        for sc in scenarios:
            for name in ("http_text", "http_prom"):
                scraper = sc.timers[name]
                assert isinstance(scraper, Scraper)
                sc.sizes[name] = scraper.size
    finally:
        for sc in scenarios:
            if sc.server is not None:
                sc.server.stop()
        close_all()
        if cluster is not None:
            cluster.stop()
            shutil.rmtree(cluster.base, ignore_errors=True)

    print()
    print(
        f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"prometheus_client {version('prometheus-client')}, SQLite {sqlite3.sqlite_version}"
    )
    print("ms per scrape, median / p95; series = releasebits_* samples (floor: same label sets)")
    header = (
        f"{'series':>7} {'samples':>7} {'stored events':>13} | {'floor':>13} | {'collect':>13} | "
        f"{'collect cold':>13} | "
        f"{'HTTP text':>13} | {'HTTP OM+gzip':>13} | {'text KiB':>8} {'gzip KiB':>8}"
    )
    print(header)
    print("-" * len(header))
    for sc in scenarios:
        cells = []
        for name in COLUMNS:
            med, p95 = summary(sc.times[name])
            cells.append(f"{med:>6.1f} /{p95:>6.1f}")
        print(
            f"{sc.label:>7} {sc.samples:>7} {sc.shape.events:>13,} | "
            + " | ".join(cells)
            + f" | {sc.sizes['http_text'] / 1024:>8.0f} {sc.sizes['http_prom'] / 1024:>8.0f}"
        )
    if any(abs(sc.samples - sc.floor_samples) > 10 for sc in scenarios):
        print("note: floor registry sample counts:", [sc.floor_samples for sc in scenarios])

    print()
    large = next((sc for sc in scenarios if sc.shape.events == events_large), None)
    label = f"{flat_series // 1000}k"
    target = next(
        (sc for sc in scenarios if sc.shape.events == events_small and sc.label == label), None
    )
    if target is None:  # --series without the target's count: the table above is all
        tmp_ctx.cleanup()
        return
    twin = next((sc for sc in scenarios if sc.label == f"{label} pg"), None)
    if twin is not None:
        for name, title in (("collect", "collect"), ("http_prom", "HTTP OM+gzip")):
            med, p95 = summary(twin.times[name])
            ratio = med / summary(target.times[name])[0]
            print(
                f"PostgreSQL {twin.label}, {title}: median {med:.1f} ms, p95 {p95:.1f} ms "
                f"(x{ratio:.2f} SQLite's median in the same rounds)"
            )
    for name, title in (
        ("collect", "collect"),
        ("http_text", "HTTP text"),
        ("http_prom", "HTTP OM+gzip"),
    ):
        med, p95 = summary(target.times[name])
        verdict = "met" if p95 < 300 else "MISSED"
        print(
            f"target {target.label} series < 300 ms (p95), {title}: "
            f"median {med:.1f} ms, p95 {p95:.1f} ms: {verdict}"
        )
    for name, title in (
        ("collect", "collect"),
        ("http_text", "HTTP text"),
        ("http_prom", "HTTP OM+gzip"),
        ("collect_cold", "collect cold (informational)"),
    ):
        if large is None:  # --series: no large history seeded
            break
        small_med = summary(target.times[name])[0]
        large_med = summary(large.times[name])[0]
        ratio = large_med / small_med
        verdict = "met" if ratio <= 1.10 else "MISSED"
        print(
            f"target {large.shape.events:,} vs {target.shape.events:,} stored events within 10%, "
            f"{title}: {large_med:.1f} / {small_med:.1f} ms = {ratio:.3f}: {verdict}"
        )
    tmp_ctx.cleanup()


if __name__ == "__main__":
    main()
