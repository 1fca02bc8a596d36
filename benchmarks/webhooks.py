"""Signed GitHub deployment_status deliveries end to end, next to plain JSON ingest, same run.

Starts `releasebits serve` (as shipped) with [receivers.github] configured, then loads it twice
for --duration seconds each after a warm-up, on fresh copies of the same starting database:

- ingest: POST /components/{slug}/deployments with a JSON body and a write token (ingest.py's
  request);
- github: POST /webhooks/github with octokit's deployment_status example (about 10 KB), each
  request a new deployment id and delivery id, signed with X-Hub-Signature-256 over its bytes,
  as GitHub sends it (the server verifies the HMAC, parses the payload, maps it and stores the
  deployment with its dedupe mark and request count in one transaction).

Prints requests/s and latency percentiles of each at --connections (16) and their ratio, and
checks that every 2xx is a stored deployment.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest import (
    DeploymentRequest,
    RequestSpec,
    Result,
    Target,
    count_deployments,
    create_token,
    daemon_env,
    free_port,
    run_load,
)

ROOT = Path(__file__).resolve().parents[1]
SECRET = "benchmark-webhook-secret"
FIXTURE = ROOT / "tests/fixtures/github/deployment_status.json"

sys.path.insert(0, str(ROOT))
from exporter.receivers.github import signature  # noqa: E402


@dataclass(frozen=True)
class GitHubDelivery:
    """One deployment_status delivery per call, a new deployment each time (picklable)."""

    payload: dict[str, Any]
    components: int

    def __call__(self, i: int) -> RequestSpec:
        payload = copy.deepcopy(self.payload)
        payload["deployment"]["id"] = 10_000_000 + i
        payload["deployment"]["sha"] = f"{i * 2654435761 % 2**160:040x}"
        repo = f"acme/svc-{i % self.components}"
        payload["repository"].update(
            full_name=repo, name=repo.split("/")[1], id=1000 + i % self.components
        )
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature(SECRET, body),
            "User-Agent": "GitHub-Hookshot/benchmark",
        }
        return "POST", "/webhooks/github", body, headers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per load")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="3 s per load, 1 s warm-up")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    tmp = Path(tempfile.mkdtemp(prefix="rb-webhooks-"))
    config = tmp / "releasebits.toml"
    config.write_text('[receivers.github]\nsecret_env = "BENCH_GITHUB_SECRET"\n')
    extra = {"RELEASEBITS_CONFIG": str(config), "BENCH_GITHUB_SECRET": SECRET}
    template = tmp / "template.db"
    token = create_token(template, "write", env=daemon_env(template, 1, extra))
    loads = {
        "ingest": DeploymentRequest(token, args.components),
        "github": GitHubDelivery(json.loads(FIXTURE.read_text()), args.components),
    }
    print(
        f"{args.connections} connections from {args.client_procs} client processes; "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured per load; `releasebits serve`",
        flush=True,
    )
    results: list[Result] = []
    try:
        for name, request in loads.items():
            db = tmp / f"{name}.db"
            shutil.copy(template, db)
            port = free_port()
            argv = [sys.executable, "-m", "exporter", "serve"]
            target = Target(name, argv, daemon_env(db, port, extra), port, "/healthz", request, db)
            target.start(tmp)
            try:
                result = run_load(target, args)
            finally:
                target.stop()
            result.stored = count_deployments(db)
            results.append(result)
            print(f"  {name}: {result.rate:,.0f} req/s", flush=True)
    finally:
        print()
    header = f"{'load':<8} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'non-2xx':>7} {'errors':>6}"
    print(header)
    print("-" * len(header))
    for r in results:
        non2xx = sum(n for s, n in r.statuses.items() if not 200 <= s < 300)
        print(
            f"{r.name:<8} {r.rate:>8,.0f} {r.pct(0.50):>7.1f} {r.pct(0.90):>7.1f} "
            f"{r.pct(0.99):>7.1f} {non2xx:>7} {r.errors:>6}"
        )
    for r in results:
        verdict = "ok" if r.stored == r.acked_total else "MISMATCH"
        print(f"{r.name}: {r.acked_total:,} acknowledged, {r.stored:,} stored: {verdict}")
    by = {r.name: r for r in results}
    if len(by) == 2:
        g, i = by["github"], by["ingest"]
        print(
            f"github / ingest: req/s x{g.rate / i.rate:.2f}, p99 x{g.pct(0.99) / i.pct(0.99):.2f}"
        )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
