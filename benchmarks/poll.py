"""What one poll costs: 200 releases across 20 projects from a local fake Sentry and Bugsnag.

Prints requests, wall time and peak Python memory of fetch + parse + store per source, and the
/metrics collect time afterwards. The fakes answer from memory, so the figures are ReleaseBits'
own cost; a real upstream adds its latency per request (Sentry: 2 requests per poll whatever the
number of projects; Bugsnag: 1 + pages per project and release stage).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import generate_latest

from exporter.config import load_settings
from exporter.http import make_session
from exporter.metrics.collector import build_registry
from exporter.pollers.jobs import poll_source
from storage.db import open_db

STATUSES = ("healthy", "errored", "crashed", "abnormal")


def sentry_groups(projects: int, releases: int, by_status: bool) -> list[dict[str, Any]]:
    groups = []
    for p in range(1, projects + 1):
        for r in range(releases):
            by = {"project": p, "release": f"app{p}@1.{r}.0", "environment": "production"}
            if by_status:
                for i, status in enumerate(STATUSES):
                    groups.append(
                        {"by": {**by, "session.status": status}, "totals": {"sum(session)": 10 * i}}
                    )
            else:
                groups.append(
                    {
                        "by": by,
                        "totals": {
                            "sum(session)": 1000 + r,
                            "count_unique(user)": 100 + r,
                            "crash_free_rate(session)": 0.995,
                            "crash_free_rate(user)": 0.998,
                        },
                    }
                )
    return groups


def bugsnag_groups(project: str, releases: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{project}-{r}",
            "project_id": project,
            "release_stage_name": "production",
            "app_version": f"1.{r}.0",
            "first_released_at": f"2024-05-{r + 1:02d}T12:00:00.000Z",
            "total_sessions_count": 5000,
            "unhandled_sessions_count": 10 + r,
            "accumulative_daily_users_seen": 900,
            "accumulative_daily_users_with_unhandled": 3,
        }
        for r in range(releases)
    ]


def serve(projects: int, releases: int) -> tuple[ThreadingHTTPServer, list[int]]:
    totals = json.dumps({"groups": sentry_groups(projects, releases, False)}).encode()
    statuses = json.dumps({"groups": sentry_groups(projects, releases, True)}).encode()
    counter = [0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            counter[0] += 1
            url = urlsplit(self.path)
            if url.path.endswith("/sessions/"):
                by_status = "session.status" in parse_qs(url.query).get("groupBy", [])
                body = statuses if by_status else totals
            elif url.path.endswith("/release_groups"):
                body = json.dumps(bugsnag_groups(url.path.split("/")[2], releases)).encode()
            else:
                pid = url.path.split("/")[2]
                body = json.dumps(
                    {
                        "id": pid,
                        "stability_target_type": "session",
                        "target_stability": {"value": 0.995},
                        "critical_stability": {"value": 0.98},
                    }
                ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--releases-per-project", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5, help="polls per source (median shown)")
    args = parser.parse_args()

    server, counter = serve(args.projects, args.releases_per_project)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "rb.toml"
        bug_projects = ", ".join(f'"p{i:02d}"' for i in range(args.projects))
        cfg.write_text(
            f'db = "{tmp}/rb.db"\nrelease_health_max_releases = {args.releases_per_project}\n'
            f'[[sentry]]\nbase_url = "{base}"\norganization = "acme"\ntoken_env = "T"\n'
            f'[[bugsnag]]\nbase_url = "{base}"\ntoken_env = "T"\nprojects = [{bug_projects}]\n'
        )
        settings = load_settings(cfg, {"T": "token"})
        db = open_db(settings.db, migrate=True)
        total = args.projects * args.releases_per_project
        print(
            f"{total} releases across {args.projects} projects per source, {args.rounds} polls each"
        )
        print(f"{'source':<8} {'requests':>8} {'median s':>9} {'max s':>7} {'peak MiB':>9}")
        with make_session() as session:
            for source in settings.sources:
                times, peaks = [], []
                for _ in range(args.rounds):
                    before = counter[0]
                    tracemalloc.start()
                    started = time.perf_counter()
                    report = poll_source(db, source, session)
                    times.append(time.perf_counter() - started)
                    peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
                    tracemalloc.stop()
                    assert report.ok, report.error
                    requests_made = counter[0] - before
                times.sort()
                print(
                    f"{source.name:<8} {requests_made:>8} {times[len(times) // 2]:>9.3f} "
                    f"{times[-1]:>7.3f} {max(peaks):>9.1f}"
                )
        registry = build_registry(settings, process_metrics=False)
        scrapes = []
        for _ in range(20):
            started = time.perf_counter()
            text = generate_latest(registry)
            scrapes.append(time.perf_counter() - started)
        scrapes.sort()
        series = sum(1 for line in text.decode().splitlines() if line and not line.startswith("#"))
        print(
            f"/metrics after the polls: {series} series, median collect {scrapes[10] * 1000:.1f} ms"
        )
        print(
            f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
        )
    server.shutdown()


if __name__ == "__main__":
    main()
