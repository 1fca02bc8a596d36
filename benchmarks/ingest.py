"""Ingest throughput: POST deployments to the daemon under concurrent load, beside the Pushgateway.

Servers, each started fresh on a copy of the same starting database, run one after the other
(and interleaved over --rounds) on the same machine:

- releasebits: `releasebits serve` as shipped (Granian, plus the supervisor and the one
  background worker);
- gunicorn: the same `exporter.app:create_app(settings)` under gunicorn gthread workers (what
  ReleaseBits shipped before Granian; `pip install -e '.[bench]'`), same workers x threads;
- waitress: the same app under waitress (bench extra), threads = workers x threads;
- pushgateway: Prometheus Pushgateway (Debian package `prometheus-pushgateway`) receiving the
  equivalent push a CI job sends today; in memory, so it does not fsync what it acknowledges;
- releasebits-pg: `releasebits serve` on PostgreSQL (a throwaway cluster from tests/pg.py, with
  fsync on as a production server runs; Debian package `postgresql`);
- releasebits-pg2: two `releasebits serve` replicas on one PostgreSQL database, the connections
  split between them (Python driver only: one wrk process cannot target two ports).

The PostgreSQL database of each run is a copy of the SQLite starting database (made once with
`releasebits migrate-db`); the server CPU of a PostgreSQL run includes the PostgreSQL server's.

Two load generators (--drivers), each a closed loop of --connections keep-alive connections:
- wrk (Debian package `wrk`) with benchmarks/ingest.lua, as the issue measured it;
- python: this script's own client (threads over --client-procs processes).

--revs REV,REV adds `releasebits serve` from other git revisions of this repository (each
`git archive`d to a temp dir) to every round, and prints each one's medians (requests/s, p99,
CPU and bytes written per request) against the first: a change's before and after in one run.

Prints, per server and driver: requests/s, p50/p90/p99 latency, errors, server CPU per request
(the whole process tree, from /proc), peak RSS, then ReleaseBits / Pushgateway ratios side by
side. After each ReleaseBits run it checks the 2xx count against the rows stored: equal for the
Python client (it counts every answer); for wrk, stored - counted may be up to the number of
connections (requests wrk abandons in flight at its deadline may still commit).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.pg: throwaway PostgreSQL
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
RequestSpec = tuple[str, str, bytes, dict[str, str]]  # method, path, body, headers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- process tree accounting from /proc ---------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(root: int) -> list[int]:
    children = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_rss_bytes(root: int) -> int:
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, IndexError, ValueError):  # a process just exited
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    return total


def web_tier_root(root: int) -> int:
    """The gunicorn master of `releasebits serve` (its `exporter web` child), else root itself."""
    for pid in process_tree(root):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"exporter" in argv and b"web" in argv:
            return pid
    return root


def _tree_proc_field(root: int, name: str, key: str) -> int:
    """The sum over the live tree of the number after `key` in /proc/<pid>/<name>."""
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, IndexError, ValueError):  # a process just exited
            for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
                if line.startswith(key):
                    total += int(line.split()[1])
                    break
    return total


def tree_pss_bytes(root: int) -> int:
    """Proportional set size: shared pages (gunicorn's forked workers) are counted once."""
    return _tree_proc_field(root, "smaps_rollup", "Pss:") * 1024


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) of the live tree, plus what the root's reaped children used."""
    total = 0.0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is stat field 3 (state): utime, stime, cutime, cstime are fields 14-17.
        used = fields[11:15] if pid == root else fields[11:13]
        total += sum(int(v) for v in used) / CLK_TCK
    return total


def tree_written_bytes(root: int) -> int:
    """Bytes the live tree passed to write(2) and pwrite(2) (/proc/<pid>/io wchar): the WAL,
    checkpoints and logs; page-cache writes, whether or not they reach the disk yet."""
    return _tree_proc_field(root, "io", "wchar:")


class MemorySampler(threading.Thread):
    """Peak RSS of a server's process trees (all replicas) and peak PSS of their web tiers,
    every 0.25 s."""

    def __init__(self, roots: list[int]):
        super().__init__(daemon=True)
        self.roots = roots
        self.web_roots = [web_tier_root(root) for root in roots]
        self.rss_peak = self.pss_peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.rss_peak = max(self.rss_peak, sum(tree_rss_bytes(r) for r in self.roots))
            self.pss_peak = max(self.pss_peak, sum(tree_pss_bytes(r) for r in self.web_roots))
            self._stop_event.wait(0.25)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


# --- servers under test -------------------------------------------------------------------------


@dataclass
class Target:
    """A server to load: how to start it (`replicas` copies on consecutive free ports, one
    database), where it is ready, and what one request looks like."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    request: Callable[[int], RequestSpec]
    db: Path | str | None = None
    wrk_args: list[str] = field(default_factory=list)  # after "--" for benchmarks/ingest.lua
    replicas: int = 1
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_path: Path | None = None
    extra_cpu_root: int | None = None  # the PostgreSQL server: its CPU counts as the server's
    cwd: Path | None = None  # `python -m` puts the working directory first on sys.path

    def __post_init__(self) -> None:
        self.ports = [self.port] + [free_port() for _ in range(self.replicas - 1)]

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.procs[0] if self.procs else None

    def roots(self) -> list[int]:
        return [p.pid for p in self.procs]

    def cpu_seconds(self) -> float:
        roots = self.roots() + ([self.extra_cpu_root] if self.extra_cpu_root else [])
        return sum(tree_cpu_seconds(r) for r in roots)

    def written_bytes(self) -> int:
        return sum(tree_written_bytes(r) for r in self.roots())

    def start(self, log_dir: Path, timeout: float = 60) -> None:
        self.log_path = log_dir / f"{self.name}.log"
        self.procs = []
        with self.log_path.open("wb") as log:
            for n, port in enumerate(self.ports):
                env = {**self.env, "RELEASEBITS_PORT": str(port), "RELEASEBITS_INSTANCE": f"r{n}"}
                self.procs.append(
                    subprocess.Popen(
                        self.argv,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        cwd=self.cwd,
                    )
                )
        for port in self.ports:
            self._wait_ready(port, time.time() + timeout)

    def _wait_ready(self, port: int, deadline: float) -> None:
        while time.time() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", self.ready_path)
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready; see {self.log_path}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers, if any


_RUNS = itertools.count(1)


def new_run(request: Callable[[int], RequestSpec]) -> Callable[[int], RequestSpec]:
    """The same requests with versions no earlier run of this process sent."""
    if isinstance(request, DeploymentRequest):
        return replace(request, run=next(_RUNS))
    return request


@dataclass(frozen=True)
class DeploymentRequest:
    """POST /components/{slug}/deployments as CI sends it (picklable for the client processes)."""

    token: str
    components: int
    # The versions' major number: each run against one database takes the next (new_run), so
    # no run deploys an earlier run's versions again; each such deployment would be a rollback,
    # a different workload from CI posting new versions (issue 16).
    run: int = 1

    def __call__(self, i: int) -> RequestSpec:
        body = {
            "version": f"v{self.run}.{i // 100}.{i % 100}",
            "stage": "production" if i % 4 else "staging",
            "host": f"web-{i % 8}",
            "result": "success" if i % 10 else "failed",
            "commit_sha": f"{i * 2654435761 % 2**40:010x}",
            "started_at": "2024-05-01T12:00:00Z",
            "meta_data": {"pipeline": str(i)},
        }
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        path = f"/components/svc-{i % self.components}/deployments"
        return "POST", path, json.dumps(body).encode(), headers


@dataclass(frozen=True)
class PushRequest:
    """What a CI job pushes to the Pushgateway today for one deployment."""

    components: int

    def __call__(self, i: int) -> RequestSpec:
        comp = f"svc-{i % self.components}"
        stage = "production" if i % 4 else "staging"
        result = "success" if i % 10 else "failure"
        body = (
            "# TYPE deployment_last_timestamp_seconds gauge\n"
            f'deployment_last_timestamp_seconds{{result="{result}"}} {time.time():.3f}\n'
            "# TYPE deployment_duration_seconds gauge\n"
            f"deployment_duration_seconds {(i % 600) + 1}\n"
            "# TYPE deployed_version_info gauge\n"
            f'deployed_version_info{{version="v1.{i // 100}.{i % 100}",commit_sha="{i:010x}"}} 1\n'
        ).encode()
        headers = {"Content-Type": "text/plain; version=0.0.4"}
        return "POST", f"/metrics/job/deploy/component/{comp}/stage/{stage}", body, headers


# --- load generator -----------------------------------------------------------------------------


def _client_proc(
    ports: list[int],
    threads: int,
    offset: int,
    stride: int,
    start_at: float,
    measure_from: float,
    end_at: float,
    make_request: Callable[[int], RequestSpec],
) -> dict[str, Any]:
    """One client process: `threads` keep-alive connections in a closed loop."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    statuses: list[dict[int, int]] = [{} for _ in range(threads)]
    errors = [0] * threads
    acked = [0] * threads  # every 2xx, warm-up included: must equal the rows stored

    def loop(t: int) -> None:
        port = ports[(offset + t) % len(ports)]  # connections spread over the replicas
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = offset + t
        while time.time() < start_at:
            time.sleep(0.001)
        while True:
            began = time.perf_counter()
            now = time.time()
            if now >= end_at:
                break
            method, path, body, headers = make_request(i)
            i += stride
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                errors[t] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            if 200 <= status < 300:
                acked[t] += 1
            if now >= measure_from:
                latencies[t].append(time.perf_counter() - began)
                statuses[t][status] = statuses[t].get(status, 0) + 1
        conn.close()

    cpu0 = os.times()
    workers = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    cpu1 = os.times()
    merged: dict[int, int] = {}
    for s in statuses:
        for k, v in s.items():
            merged[k] = merged.get(k, 0) + v
    return {
        "latencies": [x for lat in latencies for x in lat],
        "statuses": merged,
        "errors": sum(errors),
        "acked": sum(acked),
        "cpu": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
    }


@dataclass
class Result:
    """What one run measured."""

    name: str
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    errors: int
    rss_peak: int
    web_pss_peak: int
    server_cpu: float
    client_cpu: float
    acked_total: int
    stored: int | None = None
    notes: list[str] = field(default_factory=list)
    driver: str = "python"
    quantiles: dict[float, float] = field(default_factory=dict)  # wrk: its own percentiles
    written: int = 0  # bytes the server tree wrote (wrk runs)

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu / max(self.ok, 1) * 1000

    @property
    def written_kib_per_request(self) -> float:
        return self.written / max(self.ok, 1) / 1024

    def pct(self, q: float) -> float:
        if self.quantiles:
            return self.quantiles.get(q, float("nan"))
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def run_load(target: Target, args: argparse.Namespace) -> Result:
    assert target.proc is not None
    procs = max(1, min(args.client_procs, args.connections))
    per = [
        args.connections // procs + (1 if p < args.connections % procs else 0) for p in range(procs)
    ]
    start_at = time.time() + 1.0
    measure_from = start_at + args.warmup
    end_at = measure_from + args.duration
    sampler = MemorySampler(target.roots())
    sampler.start()
    ctx = multiprocessing.get_context("fork")
    cpu_at_measure: list[float] = []

    def mark_cpu() -> None:
        time.sleep(max(0.0, measure_from - time.time()))
        cpu_at_measure.append(target.cpu_seconds())
        time.sleep(max(0.0, end_at - time.time()))
        cpu_at_measure.append(target.cpu_seconds())

    marker = threading.Thread(target=mark_cpu)
    marker.start()
    offset = 0
    request = new_run(target.request)
    with ctx.Pool(procs) as pool:
        pending = []
        for n in per:
            pending.append(
                pool.apply_async(
                    _client_proc,
                    (
                        target.ports,
                        n,
                        offset,
                        args.connections,
                        start_at,
                        measure_from,
                        end_at,
                        request,
                    ),
                )
            )
            offset += n
        parts = [p.get(timeout=args.warmup + args.duration + 120) for p in pending]
    marker.join()
    sampler.stop()
    statuses: dict[int, int] = {}
    for part in parts:
        for k, v in part["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    return Result(
        name=target.name,
        seconds=args.duration,
        latencies=[x for part in parts for x in part["latencies"]],
        statuses=statuses,
        errors=sum(part["errors"] for part in parts),
        acked_total=sum(part["acked"] for part in parts),
        rss_peak=sampler.rss_peak,
        web_pss_peak=sampler.pss_peak,
        server_cpu=cpu_at_measure[1] - cpu_at_measure[0],
        client_cpu=sum(part["cpu"] for part in parts),
    )


def run_wrk(target: Target, args: argparse.Namespace) -> Result:
    """wrk with benchmarks/ingest.lua: a warm-up run, then the measured run."""
    assert target.proc is not None
    script = str(Path(__file__).resolve().parent / "ingest.lua")
    url = f"http://127.0.0.1:{target.port}"

    def wrk(seconds: float) -> dict[str, Any]:
        run_args = (
            [*target.wrk_args, str(next(_RUNS))]
            if target.wrk_args[:1] == ["releasebits"]
            else target.wrk_args
        )
        argv = [
            "wrk",
            f"-t{max(1, min(args.client_procs, args.connections))}",
            f"-c{args.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            script,
            url,
            "--",
            *run_args,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
        line = next(ln for ln in done.stdout.splitlines() if ln.startswith("WRK_RESULT "))
        return dict(json.loads(line[len("WRK_RESULT ") :]))

    warm = wrk(args.warmup)
    sampler = MemorySampler(target.roots())
    sampler.start()
    cpu0, client0, written0 = target.cpu_seconds(), os.times(), target.written_bytes()
    main_run = wrk(args.duration)
    cpu1, client1, written1 = target.cpu_seconds(), os.times(), target.written_bytes()
    sampler.stop()
    seconds = main_run["duration_us"] / 1e6
    # wrk reports percentiles, not samples: keep them as the latency list's quantile points.
    result = Result(
        name=target.name,
        seconds=seconds,
        latencies=[],
        statuses={200: main_run["ok"], 500: main_run["non2xx"]},
        errors=main_run["socket_errors"],
        acked_total=warm["ok"] + main_run["ok"],
        rss_peak=sampler.rss_peak,
        web_pss_peak=sampler.pss_peak,
        server_cpu=cpu1 - cpu0,
        client_cpu=(client1.children_user - client0.children_user)
        + (client1.children_system - client0.children_system),
        driver="wrk",
        written=written1 - written0,
        quantiles={
            0.5: main_run["p50_us"] / 1000,
            0.9: main_run["p90_us"] / 1000,
            0.99: main_run["p99_us"] / 1000,
            1.0: main_run["max_us"] / 1000,
        },
    )
    return result


# --- waitress and gunicorn launchers (run as children of this script) --------------------------


def serve_waitress(threads: int) -> None:
    """The same app as `releasebits web`, served by waitress; settings from RELEASEBITS_*."""
    import waitress

    from exporter.app import create_app
    from exporter.cli import setup_logging
    from exporter.config import load_settings

    settings = load_settings(None, os.environ)
    setup_logging(settings.log_level)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" at load
    waitress.serve(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        threads=threads,
        connection_limit=1000,
        ident="releasebits",
    )


# --- main ---------------------------------------------------------------------------------------


def daemon_env(db: Path | str, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    env.update(
        RELEASEBITS_DB=str(db),
        RELEASEBITS_PORT=str(port),
        RELEASEBITS_HOST="127.0.0.1",
    )
    return env


def create_token(db: Path, *scopes: str, env: dict[str, str] | None = None) -> str:
    """A token made with the CLI, as a user would (default scopes when none are given)."""
    options = [arg for scope in scopes for arg in ("--scope", scope)]
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "token", "create", "bench", *options],
        env=env or daemon_env(db, 1),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip().splitlines()[-1]


def count_deployments(db: Path | str) -> int:
    from storage.db import open_db

    store = open_db(db)
    try:
        row = store.one("SELECT count(*) FROM deployments")
        return int(row[0]) if row else 0
    finally:
        store.close()


def serve_gunicorn(workers: int, threads: int) -> None:
    """The same app as `releasebits web`, served by gunicorn gthread workers (the server
    ReleaseBits shipped before Granian); settings from RELEASEBITS_*."""
    from gunicorn.app.base import BaseApplication

    from exporter.app import create_app
    from exporter.cli import setup_logging
    from exporter.config import load_settings

    settings = load_settings(None, os.environ)
    setup_logging(settings.log_level)

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {
                "bind": [f"{settings.host}:{settings.port}"],
                "workers": workers,
                "threads": threads,
                "worker_class": "gthread",
                "keepalive": 5,
                "accesslog": None,
                "control_socket_disable": True,
            }.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(settings)

    _App().run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes")
    parser.add_argument("--components", type=int, default=300, help="distinct components posted to")
    parser.add_argument(
        "--servers",
        default="releasebits,pushgateway",
        help="comma-separated subset of releasebits, releasebits-pg, releasebits-pg2, gunicorn, "
        "waitress, pushgateway (missing ones are skipped)",
    )
    parser.add_argument(
        "--drivers", default="wrk,python", help="comma-separated subset of wrk, python"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds; servers interleave within each"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="RELEASEBITS_X=VALUE",
        help="extra setting for both ReleaseBits servers (repeatable), e.g. RELEASEBITS_WORKERS=1",
    )
    parser.add_argument(
        "--revs",
        default="",
        metavar="REV,REV",
        help="also run `releasebits serve` from these git revisions of this repository (each "
        "`git archive`d to a temp dir), interleaved with the servers in every round: a change's "
        "before and after in one run, e.g. --servers pushgateway --revs main~3,main",
    )
    parser.add_argument("--quick", action="store_true", help="3 s per server, 1 s warm-up")
    parser.add_argument("--serve-waitress", type=int, metavar="THREADS", help=argparse.SUPPRESS)
    parser.add_argument("--serve-gunicorn", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_waitress:
        serve_waitress(args.serve_waitress)
        return
    if args.serve_gunicorn:
        serve_gunicorn(*args.serve_gunicorn)
        return
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    from exporter.config import load_settings

    extra = dict(item.split("=", 1) for item in args.env)
    if any(not k.startswith("RELEASEBITS_") for k in extra):
        parser.error("--env: only RELEASEBITS_* settings")
    shipped = load_settings(None, extra)
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="rb-ingest-"))
    template = tmp / "template.db"
    token = create_token(template, "write")  # migrates the database and stores the token's hash
    build = DeploymentRequest(token, args.components)

    targets: list[Target] = []
    skipped: list[str] = []
    here = str(Path(__file__).resolve())
    postgres = (
        Postgres(template, tmp) if any(n.startswith("releasebits-pg") for n in wanted) else None
    )
    repo = Path(here).parent.parent
    serve = [sys.executable, "-m", "exporter", "serve"]
    rb_wrk = ["releasebits", token, str(args.components)]
    for name in wanted:
        port = free_port()
        db = tmp / f"{name}.db"
        env = daemon_env(db, port, extra)
        env["PYTHONPATH"] = os.pathsep.join([str(repo), env.get("PYTHONPATH", "")])
        if name == "releasebits":
            targets.append(Target(name, serve, env, port, "/healthz", build, db, rb_wrk))
        elif name in ("releasebits-pg", "releasebits-pg2") and postgres is not None:
            replicas = 2 if name.endswith("pg2") else 1
            target = Target(name, serve, env, port, "/healthz", build, "", rb_wrk, replicas)
            target.extra_cpu_root = postgres.server_pid()
            targets.append(target)
        elif name in ("gunicorn", "waitress"):
            try:
                __import__(name)
            except ImportError:
                skipped.append(f"{name} (pip install -e '.[bench]')")
                continue
            if name == "gunicorn":
                argv = [sys.executable, here, "--serve-gunicorn"]
                argv += [str(shipped.web_workers), str(shipped.threads)]
            else:
                argv = [sys.executable, here, "--serve-waitress"]
                argv += [str(shipped.web_workers * shipped.threads)]
            targets.append(Target(name, argv, env, port, "/openapi.json", build, db, rb_wrk))
        elif name == "pushgateway":
            binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
            if binary is None:
                skipped.append("pushgateway (apt-get install prometheus-pushgateway)")
                continue
            argv = [
                binary,
                f"--web.listen-address=127.0.0.1:{port}",
                f"--persistence.file={tmp / 'pushgateway.data'}",
            ]
            targets.append(
                Target(
                    name,
                    argv,
                    dict(os.environ),
                    port,
                    "/-/ready",
                    PushRequest(args.components),
                    None,
                    ["pushgateway", str(args.components)],
                )
            )
        else:
            parser.error(f"--servers: unknown server {name!r}")
    for rev in [r.strip() for r in args.revs.split(",") if r.strip()]:
        short = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=9", rev],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        tree = tmp / f"tree-{short}"
        tree.mkdir(exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", short], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        port = free_port()
        db = tmp / f"rev-{short}.db"
        env = daemon_env(db, port, extra)
        env["PYTHONPATH"] = str(tree)  # the revision's exporter and storage, not this one's
        targets.append(
            Target(f"rb@{short}", serve, env, port, "/healthz", build, db, rb_wrk, cwd=tree)
        )
    drivers = [d.strip() for d in args.drivers.split(",") if d.strip()]
    if "wrk" in drivers and shutil.which("wrk") is None:
        drivers.remove("wrk")
        skipped.append("the wrk driver (apt-get install wrk)")

    print(
        f"{os.cpu_count()} CPUs; {args.connections} connections; {args.warmup:g} s warm-up + "
        f"{args.duration:g} s measured per server and driver; {args.rounds} round(s); "
        f"{args.components} components; ReleaseBits: {shipped.web_workers} workers x "
        f"{shipped.threads} threads, sqlite_synchronous={shipped.sqlite_synchronous}"
        + (f"; {postgres.version()}, fsync on" if postgres else ""),
        flush=True,
    )
    results: list[Result] = []
    try:
        for _ in range(args.rounds):
            for driver in drivers:
                for target in targets:
                    if driver == "wrk" and target.replicas > 1:
                        continue  # one wrk process loads one port
                    results.append(_one_run(target, driver, template, tmp, args, postgres))
    finally:
        for target in targets:
            target.stop()
        if postgres is not None:
            postgres.close()
    report(results, drivers)
    for s in skipped:
        print(f"skipped: {s}")
    shutil.rmtree(tmp, ignore_errors=True)


def _one_run(
    target: Target,
    driver: str,
    template: Path,
    tmp: Path,
    args: argparse.Namespace,
    postgres: Postgres | None,
) -> Result:
    if postgres is not None and target.name.startswith("releasebits-pg"):
        target.db = postgres.fresh()
        target.env["RELEASEBITS_DB"] = target.db
    elif isinstance(target.db, Path):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target.db}{suffix}").unlink(missing_ok=True)
        shutil.copy(template, target.db)
    target.start(tmp)
    try:
        result = run_wrk(target, args) if driver == "wrk" else run_load(target, args)
    finally:
        target.stop()
    result.driver = driver
    if target.db is not None:
        result.stored = count_deployments(target.db)
    if postgres is not None and isinstance(target.db, str):
        postgres.drop(target.db)
    print(f"  {target.name} ({driver}): {result.rate:,.0f} req/s", flush=True)
    return result


class Postgres:
    """A throwaway PostgreSQL cluster (tests/pg.py, fsync on) holding a copy of the SQLite
    starting database, made with `releasebits migrate-db`; each run gets a fresh clone."""

    def __init__(self, template: Path, tmp: Path):
        from storage.db import close_all, open_db
        from tests import pg

        def migrate(url: str) -> None:
            open_db(url, migrate=True).close()
            close_all()

        self.cluster = pg.start_cluster(migrate, fsync=True)
        self.template = self.cluster.database("bench_template", template="template0")
        copied = subprocess.run(
            [sys.executable, "-m", "exporter", "migrate-db", "--from", str(template), "--to",
             self.template],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        if copied.returncode:
            raise RuntimeError(f"migrate-db failed: {copied.stderr}")
        self._names = itertools.count(1)

    def server_pid(self) -> int:
        return int(Path(self.cluster.data, "postmaster.pid").read_text().split()[0])

    def version(self) -> str:
        with self.cluster.admin() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return f"PostgreSQL {row[0] if row else '?'}"

    def fresh(self) -> str:
        return self.cluster.database("bench", template=self.template.rsplit("/", 1)[1])

    def drop(self, url: str) -> None:
        from storage.db import close_all

        close_all()
        self.cluster.drop(url)

    def close(self) -> None:
        from tests import pg

        pg.close(self.cluster)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


def report(results: list[Result], drivers: list[str]) -> None:
    print()
    header = (
        f"{'server':<12} {'driver':<6} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'non-2xx':>7} {'errors':>6} {'CPU ms/req':>10} {'RSS MiB':>7} "
        f"{'web PSS':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        non2xx = sum(n for s, n in r.statuses.items() if not 200 <= s < 300)
        print(
            f"{r.name:<12} {r.driver:<6} {r.rate:>8,.0f} {r.pct(0.50):>7.1f} {r.pct(0.90):>7.1f} "
            f"{r.pct(0.99):>7.1f} {r.pct(1.0) if r.quantiles else max(r.latencies, default=0) * 1000:>7.1f} "
            f"{non2xx:>7} {r.errors:>6} {r.cpu_ms_per_request:>10.2f} "
            f"{r.rss_peak / 2**20:>7.0f} {r.web_pss_peak / 2**20:>7.0f}"
        )
    print(
        "CPU ms/req: CPU seconds of the server's whole process tree over the measured window\n"
        "  (web workers, supervisor, background worker) / 2xx answers.\n"
        "RSS MiB: peak sum of RSS over that tree (shared pages counted per process); web PSS:\n"
        "  peak proportional set size of the HTTP tier alone (shared pages counted once)."
    )
    for r in results:
        if r.stored is None:
            continue
        extra = r.stored - r.acked_total
        if r.driver == "python":
            verdict = "ok" if extra == 0 else "MISMATCH"
        else:
            verdict = "ok" if 0 <= extra <= 2 * 64 else "MISMATCH"
        print(
            f"{r.name} ({r.driver}): {r.acked_total:,} answered 2xx, {r.stored:,} stored: "
            f"{verdict}" + (f" ({extra} committed while wrk stopped)" if extra else "")
        )
    for driver in drivers:
        by: dict[str, list[Result]] = {}
        for r in results:
            if r.driver == driver:
                by.setdefault(r.name, []).append(r)
        _compare_revs(driver, by)
        _host_speed(driver, by)
        rb = by.get("releasebits")
        if not rb:
            continue
        rate = _median([r.rate for r in rb])
        p99 = _median([r.pct(0.99) for r in rb])
        cpu = _median([r.cpu_ms_per_request for r in rb])
        line = f"{driver}: releasebits {rate:,.0f} req/s, p99 {p99:.1f} ms, {cpu:.2f} ms CPU/req"
        for other in ("gunicorn", "waitress", "pushgateway"):
            if other in by:
                o_rate = _median([r.rate for r in by[other]])
                line += f"; / {other} {o_rate:,.0f} req/s = x{rate / o_rate:.2f}"
        print(line)
        print(
            "  targets: >= 3x Pushgateway: "
            + (
                f"x{rate / _median([r.rate for r in by['pushgateway']]):.2f}"
                if "pushgateway" in by
                else "n/a"
            )
            + f"; p99 < 25 ms: {p99:.1f} ms; <= 0.5 ms CPU/req: {cpu:.2f} ms"
        )


def _host_speed(driver: str, by: dict[str, list[Result]]) -> None:
    """The Pushgateway's CPU per push as a gauge of the host's speed during the run, and each
    ReleaseBits server's CPU per request as a fraction of it. This VM's speed drifts by a
    quarter between runs minutes apart (the same code measured 0.43 and 0.57 ms), and the
    Pushgateway's CPU per push drifts with it; the fraction stays within about a tenth."""
    gauge = by.get("pushgateway")
    if not gauge:
        return
    push = _median([r.cpu_ms_per_request for r in gauge])
    parts = [
        f"{name} {_median([r.cpu_ms_per_request for r in rows]) / push:.3f}"
        for name, rows in by.items()
        if name != "pushgateway"
    ]
    print(
        f"{driver}: host speed: the Pushgateway used {push:.2f} ms CPU per push; CPU per "
        f"request as a fraction of that: {', '.join(parts)} [medians of {len(gauge)}]"
    )


def _compare_revs(driver: str, by: dict[str, list[Result]]) -> None:
    """--revs: medians of each revision, and each one against the first."""
    revs = [name for name in by if name.startswith("rb@")]
    if not revs:
        return
    first = revs[0]

    def med(name: str) -> tuple[float, float, float, float]:
        rows = by[name]
        return (
            _median([r.rate for r in rows]),
            _median([r.pct(0.99) for r in rows]),
            _median([r.cpu_ms_per_request for r in rows]),
            _median([r.written_kib_per_request for r in rows]),
        )

    base = med(first)
    for name in revs:
        rate, p99, cpu, kib = med(name)
        written = f", {kib:.1f} KiB written/req (x{kib / base[3]:.2f})" if base[3] else ""
        print(
            f"{driver}: {name} {rate:,.0f} req/s (x{rate / base[0]:.2f}), p99 {p99:.1f} ms "
            f"(x{p99 / base[1]:.2f}), {cpu:.2f} ms CPU/req (x{cpu / base[2]:.2f}){written} "
            f"[medians of {len(by[name])}; ratios against {first}]"
        )


if __name__ == "__main__":
    main()
