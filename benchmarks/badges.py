"""Badge requests/s against a running daemon: SVG and JSON badges, 304 revalidation, cold renders.

Starts `releasebits serve` exactly as shipped (gunicorn, plus the background worker) on a fresh
database, records deployments, builds and releases through the HTTP API, then loads it with
keep-alive GETs in a closed loop (the load generator of benchmarks/ingest.py), one scenario after
the other for --duration seconds each after a warm-up:

- svg:      every component x kind x style, round-robin (what README pages ask for; the rendered
            SVG is cached per process, so this is SQLite lookups + Flask + HTTP);
- json:     the shields.io endpoint JSON of every component x kind;
- svg-304:  the same URLs with If-None-Match (what GitHub's image proxy sends when it revalidates);
- svg-cold: a unique ?label= on every request, so no render is ever cached (badgepy's cost).

Target (issue 5): >= 1,000 badge requests/s on 2 cores for the svg scenario. Prints req/s, p50,
p90, p99 and the CPU used by server and client; on 2 cores the client shares the CPU it measures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ingest import RequestSpec, Result, Target, create_token, daemon_env, free_port, run_load

KINDS = ("version", "build", "crash-free", "deployments", "last-deploy")
STYLES = ("flat", "flat-square", "plastic", "for-the-badge")
OK = (200, 304)


@dataclass(frozen=True)
class BadgeRequest:
    """GET one badge URL of a fixed list, round-robin (picklable for the client processes)."""

    paths: tuple[str, ...]
    etags: tuple[str, ...] = ()  # If-None-Match per path, for the 304 scenario
    unique_label: bool = False  # defeat the render cache

    def __call__(self, i: int) -> RequestSpec:
        n = i % len(self.paths)
        path = self.paths[n]
        headers = {"If-None-Match": self.etags[n]} if self.etags else {}
        if self.unique_label:
            path += ("&" if "?" in path else "?") + f"label=badge-{i}"
        return "GET", path, b"", headers


def seed(port: int, token: str, components: int) -> None:
    """A few weeks of history per component through the API, as CI would have sent it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    now = time.time()

    def post(path: str, body: dict[str, object]) -> None:
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 201:
            raise RuntimeError(f"seeding: POST {path} answered {resp.status}")

    def at(hours_ago: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - hours_ago * 3600))

    for c in range(components):
        slug = f"svc-{c:03d}"
        for v in range(8):
            for host in ("web-1", "web-2"):
                post(
                    f"/components/{slug}/deployments",
                    {
                        "version": f"v1.{v}.0",
                        "stage": "production",
                        "host": host,
                        "release": f"2024.{v:02d}",
                        "finished_at": at(24 * (8 - v) + c),
                    },
                )
            post(f"/components/{slug}/builds", {"version": f"v1.{v}.0", "result": "success"})
        post(f"/components/{slug}/deployments", {"version": "v1.8.0-rc.1", "stage": "staging"})
        post(f"/components/{slug}/builds", {"version": "v1.8.0", "result": "failed"})
    conn.close()


def fetch_etags(port: int, paths: tuple[str, ...]) -> tuple[str, ...]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for path in paths:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path} answered {resp.status}")
        out.append(resp.headers["ETag"])
    conn.close()
    return tuple(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds each")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes")
    parser.add_argument("--components", type=int, default=20, help="components seeded")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="RELEASEBITS_X=VALUE",
        help="extra setting for the daemon (repeatable), e.g. RELEASEBITS_WORKERS=1",
    )
    parser.add_argument("--quick", action="store_true", help="3 s per scenario, 1 s warm-up")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    extra = dict(item.split("=", 1) for item in args.env)
    if any(not k.startswith("RELEASEBITS_") for k in extra):
        parser.error("--env: only RELEASEBITS_* settings")
    from exporter.config import load_settings

    shipped = load_settings(None, extra)
    tmp = Path(tempfile.mkdtemp(prefix="rb-badges-"))
    db = tmp / "badges.db"
    token = create_token(db)
    port = free_port()
    slugs = [f"svc-{c:03d}" for c in range(args.components)]
    svg = tuple(
        f"/badges/components/{s}/{k}.svg?style={st}" for s in slugs for k in KINDS for st in STYLES
    )
    svg += tuple(f"/badges/releases/2024.0{v}/last-deploy.svg" for v in range(8))
    json_paths = tuple(f"/badges/components/{s}/{k}.json" for s in slugs for k in KINDS)
    target = Target(
        "releasebits serve",
        [sys.executable, "-m", "exporter", "serve"],
        daemon_env(db, port, {"RELEASEBITS_LOG_LEVEL": "warning", **extra}),
        port,
        "/healthz",
        BadgeRequest(svg),
        db,
    )
    print(
        f"{os.cpu_count()} CPUs; {args.connections} connections from {args.client_procs} client "
        f"processes; {args.warmup:g} s warm-up + {args.duration:g} s measured per scenario; "
        f"ReleaseBits: {shipped.web_workers} workers x {shipped.threads} threads; "
        f"{args.components} components, {len(svg)} distinct SVG URLs",
        flush=True,
    )
    rows: list[tuple[str, Result]] = []
    try:
        target.start(tmp)
        t = time.perf_counter()
        seed(port, token, args.components)
        print(f"seeded through the API in {time.perf_counter() - t:.1f} s", flush=True)
        scenarios = {
            "svg": BadgeRequest(svg),
            "json": BadgeRequest(json_paths),
            "svg-304": BadgeRequest(svg, etags=fetch_etags(port, svg)),
            "svg-cold": BadgeRequest(svg, unique_label=True),
        }
        for name, request in scenarios.items():
            target.request = request
            rows.append((name, run_load(target, args)))
            print(f"  {name} done", flush=True)
    finally:
        target.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    header = (
        f"{'scenario':<10} {'req/s':>7} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'unexpected':>10} {'errors':>6} {'srv CPU':>7} {'cli CPU':>7}"
    )
    print(header)
    print("-" * len(header))
    rates: dict[str, float] = {}
    for name, r in rows:
        good = sum(n for status, n in r.statuses.items() if status in OK)
        unexpected = sum(n for status, n in r.statuses.items() if status not in OK)
        rates[name] = good / r.seconds
        print(
            f"{name:<10} {rates[name]:>7,.0f} {r.pct(0.50):>7.1f} {r.pct(0.90):>7.1f} "
            f"{r.pct(0.99):>7.1f} {r.pct(1.0):>7.1f} {unexpected:>10} {r.errors:>6} "
            f"{r.server_cpu / r.seconds:>6.0%} {r.client_cpu / r.seconds:>6.0%}"
        )
    verdict = "met" if rates["svg"] >= 1000 else "MISSED"
    print(f"\ntarget >= 1,000 SVG badge requests/s: {rates['svg']:,.0f}/s: {verdict}")


if __name__ == "__main__":
    main()
