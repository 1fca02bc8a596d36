"""Ingest throughput: POST deployments to the daemon under concurrent load, WSGI servers compared.

Runs, one after the other on the same machine, each for --duration seconds after a warm-up:

- gunicorn: `releasebits serve` as shipped (gthread workers, plus the supervisor and the one
  background worker), on a copy of the same starting database;
- waitress: the same `exporter.app:create_app(settings)`, same settings and database copy, served
  by waitress (`pip install -e '.[bench]'`); threads = workers x threads of the gunicorn run;
- pushgateway: Prometheus Pushgateway (Debian package `prometheus-pushgateway`) receiving the
  equivalent push a CI job sends today; in memory, so it does not fsync what it acknowledges.

The load is a closed loop: --connections keep-alive HTTP/1.1 connections (threads spread over
--client-procs processes so the client is not held back by one GIL), each posting as soon as the
previous answer arrived. Prints requests/s, latency percentiles, errors, the peak RSS of the
server's process tree (from /proc) and CPU use of server and client, then the ratios. After each
ReleaseBits run it checks that every acknowledged deployment is in the database.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def tree_pss_bytes(root: int) -> int:
    """Proportional set size: shared pages (gunicorn's forked workers) are counted once."""
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, IndexError, ValueError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


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


# --- servers under test -------------------------------------------------------------------------


@dataclass
class Target:
    """A server to load: how to start it, where it is ready, and what one request looks like."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    request: Callable[[int], RequestSpec]
    db: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self, log_dir: Path, timeout: float = 60) -> None:
        self.log_path = log_dir / f"{self.name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
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
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers, if any


@dataclass(frozen=True)
class DeploymentRequest:
    """POST /components/{slug}/deployments as CI sends it (picklable for the client processes)."""

    token: str
    components: int

    def __call__(self, i: int) -> RequestSpec:
        body = {
            "version": f"v1.{i // 100}.{i % 100}",
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
    port: int,
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

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    def pct(self, q: float) -> float:
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
    rss_peak = pss_peak = 0
    stop = threading.Event()
    web_root = web_tier_root(target.proc.pid)

    def sample_rss() -> None:
        nonlocal rss_peak, pss_peak
        while not stop.is_set():
            rss_peak = max(rss_peak, tree_rss_bytes(target.proc.pid))  # type: ignore[union-attr]
            pss_peak = max(pss_peak, tree_pss_bytes(web_root))
            stop.wait(0.25)

    sampler = threading.Thread(target=sample_rss)
    sampler.start()
    ctx = multiprocessing.get_context("fork")
    cpu_at_measure: list[float] = []

    def mark_cpu() -> None:
        time.sleep(max(0.0, measure_from - time.time()))
        cpu_at_measure.append(tree_cpu_seconds(target.proc.pid))  # type: ignore[union-attr]
        time.sleep(max(0.0, end_at - time.time()))
        cpu_at_measure.append(tree_cpu_seconds(target.proc.pid))  # type: ignore[union-attr]

    marker = threading.Thread(target=mark_cpu)
    marker.start()
    offset = 0
    with ctx.Pool(procs) as pool:
        pending = []
        for n in per:
            pending.append(
                pool.apply_async(
                    _client_proc,
                    (
                        target.port,
                        n,
                        offset,
                        args.connections,
                        start_at,
                        measure_from,
                        end_at,
                        target.request,
                    ),
                )
            )
            offset += n
        parts = [p.get(timeout=args.warmup + args.duration + 120) for p in pending]
    marker.join()
    stop.set()
    sampler.join()
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
        rss_peak=rss_peak,
        web_pss_peak=pss_peak,
        server_cpu=cpu_at_measure[1] - cpu_at_measure[0],
        client_cpu=sum(part["cpu"] for part in parts),
    )


# --- waitress launcher (run as a child of this script) ------------------------------------------


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


def daemon_env(db: Path, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
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


def count_deployments(db: Path) -> int:
    conn = sqlite3.connect(str(db))
    try:
        return int(conn.execute("SELECT count(*) FROM deployments").fetchone()[0])
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes")
    parser.add_argument("--components", type=int, default=50, help="distinct components posted to")
    parser.add_argument(
        "--servers",
        default="gunicorn,waitress,pushgateway",
        help="comma-separated subset of gunicorn, waitress, pushgateway (missing ones are skipped)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="RELEASEBITS_X=VALUE",
        help="extra setting for both ReleaseBits servers (repeatable), e.g. RELEASEBITS_WORKERS=1",
    )
    parser.add_argument("--quick", action="store_true", help="3 s per server, 1 s warm-up")
    parser.add_argument("--serve-waitress", type=int, metavar="THREADS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_waitress:
        serve_waitress(args.serve_waitress)
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
    for name in wanted:
        port = free_port()
        if name == "gunicorn":
            db = tmp / "gunicorn.db"
            env = daemon_env(db, port, extra)
            targets.append(
                Target(
                    name,
                    [sys.executable, "-m", "exporter", "serve"],
                    env,
                    port,
                    "/healthz",
                    build,
                    db,
                )
            )
        elif name == "waitress":
            try:
                import waitress  # noqa: F401
            except ImportError:
                skipped.append("waitress (pip install -e '.[bench]')")
                continue
            db = tmp / "waitress.db"
            threads = shipped.workers * shipped.threads
            argv = [sys.executable, str(Path(__file__).resolve()), "--serve-waitress", str(threads)]
            env = daemon_env(db, port, extra)
            env["PYTHONPATH"] = os.pathsep.join(
                [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")]
            )
            targets.append(Target(name, argv, env, port, "/healthz", build, db))
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
                Target(name, argv, dict(os.environ), port, "/-/ready", PushRequest(args.components))
            )
        else:
            parser.error(f"--servers: unknown server {name!r}")

    print(
        f"{os.cpu_count()} CPUs; {args.connections} connections from {args.client_procs} client "
        f"processes; {args.warmup:g} s warm-up + {args.duration:g} s measured per server; "
        f"ReleaseBits: {shipped.workers} workers x {shipped.threads} threads, "
        f"sqlite_synchronous={shipped.sqlite_synchronous}",
        flush=True,
    )
    results: list[Result] = []
    try:
        for target in targets:
            if target.db is not None:
                shutil.copy(template, target.db)
            target.start(tmp)
            try:
                result = run_load(target, args)
            finally:
                target.stop()
            if target.db is not None:
                result.stored = count_deployments(target.db)
            results.append(result)
            print(f"  {target.name}: {result.rate:,.0f} req/s", flush=True)
    finally:
        for target in targets:
            target.stop()

    print()
    header = (
        f"{'server':<12} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'non-2xx':>7} {'errors':>6} {'RSS MiB':>7} {'web PSS':>7} {'srv CPU':>7} "
        f"{'cli CPU':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        non2xx = sum(n for s, n in r.statuses.items() if not 200 <= s < 300)
        print(
            f"{r.name:<12} {r.rate:>8,.0f} {r.pct(0.50):>7.1f} {r.pct(0.90):>7.1f} "
            f"{r.pct(0.99):>7.1f} {max(r.latencies, default=0) * 1000:>7.1f} {non2xx:>7} "
            f"{r.errors:>6} {r.rss_peak / 2**20:>7.0f} {r.web_pss_peak / 2**20:>7.0f} "
            f"{r.server_cpu / r.seconds:>7.0%} {r.client_cpu / r.seconds:>7.0%}"
        )
    print(
        "RSS MiB: peak sum of RSS over the server's whole process tree (for `serve`: supervisor,\n"
        "  background worker, gunicorn master and workers; shared pages counted per process).\n"
        "web PSS: peak proportional set size of the HTTP tier alone (shared pages counted once).\n"
        "CPU: busy share of one core over the measured window (2 cores = 200%)."
    )
    for r in results:
        if r.stored is not None:
            # Every 201 (warm-up included) must be a stored row, and nothing else may be stored.
            verdict = "ok" if r.stored == r.acked_total else "MISMATCH"
            print(
                f"{r.name}: {r.acked_total:,} deployments acknowledged with 201, "
                f"{r.stored:,} stored: {verdict}"
            )
    by = {r.name: r for r in results}
    if "gunicorn" in by:
        g = by["gunicorn"]
        for other in ("waitress", "pushgateway"):
            if other in by:
                o = by[other]
                print(
                    f"gunicorn / {other}: req/s x{g.rate / o.rate:.2f}, "
                    f"p99 x{g.pct(0.99) / o.pct(0.99):.2f}, "
                    f"web PSS x{g.web_pss_peak / o.web_pss_peak:.2f}"
                )
        print(
            f"target p99 < 25 ms: {g.pct(0.99):.1f} ms: {'met' if g.pct(0.99) < 25 else 'MISSED'}"
        )
        if "pushgateway" in by:
            ratio = g.rate / by["pushgateway"].rate
            print(
                f"target >= 3x Pushgateway's push rate: x{ratio:.2f}: {'met' if ratio >= 3 else 'MISSED'}"
            )
    for s in skipped:
        print(f"skipped: {s}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
