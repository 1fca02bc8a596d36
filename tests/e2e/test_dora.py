"""DORA keys through /metrics of a running daemon: a fixed 120-day history on
three components (62 deployments), every metric and window computed by hand below, a restart, and late events.

Times are "days ago" from the moment the test starts (NOW); no rollout is within hours of a
window boundary (1, 7, 30, 90 days), so the seconds the test takes do not move anything across.

billing  (regular cadence, 2 hosts per rollout, lead time from the deployments' `commits` field)
  rollouts b1..b12 at 115, 105, ..., 15, 5 days ago, the second host 30 min after the first;
  each brings 2 commits, made 2 h and 10 h before it (lead 7200 s and 36000 s);
  3 failed deployment jobs (not rollouts) at 50, 45 and 12 days ago. No change failure.
search   (lead time from pushed commits walked back, an incident naming a deployment, late events)
  rollouts s1..s8 at 118, 100, 80, 60, 40, 20, 10, 3 days ago (2 hosts each, s8 3 hosts), each
  at the head of a push of 2 commits made 20 h and 4 h before it (lead 72000 s and 14400 s);
  an incident names s5's deployment (started 15 days ago, while s6 was current; resolved 14.5
  days ago): s5 is a change failure, recovered by s6 (20 days later: 1728000 s); s6 is rework.
  s3 and s4 (and their pushes) are posted last, as a late backfill.
checkout (multi-host, a rollback, an incident started while current, a crash-free drop, no commits)
  c1 1.0.0 @119 (3 hosts), c2 1.0.1 @88 (3 hosts), c3 1.0.2 @50, c4 1.0.1 @49.5 (a rollback:
  c3 is a change failure, recovered 0.5 day later: 43200 s; c4 is rework), c5 1.1.0 @28 (2 hosts;
  an incident started 27.5 and resolved 27.25 days ago: a change failure, recovered by the
  resolution after 64800 s, earlier than c6 8 days later), c6 1.1.1 @20 (2 hosts; rework),
  c7 1.1.5 @6 (2 hosts), c8 1.1.9 @0.5 (2 hosts): polled from the fake Sentry at 99.11%
  crash-free, below crash_free_critical 0.995 while current: a change failure, unrecovered.
  2 failed deployment jobs (1.0.3 @49.8, 1.1.6 @10) are not rollouts.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer

from exporter.receivers.github import signature
from tests.conftest import FIXTURES, Daemon
from tests.upstreams import TOKEN_ENV, FakeSentry, sources_toml

pytestmark = pytest.mark.e2e
DAY, HOUR = 86400.0, 3600.0
NOW = time.time()
WINDOWS = ("1d", "7d", "30d", "90d")
SECRET = "dora-webhook-secret"

# (component, window) -> deployments, change failures, change failure ratio, rework ratio,
# lead time (median, p90) and recovery time (median, p90); None: absent.
EXPECTED: dict[tuple[str, str], tuple[Any, ...]] = {
    # billing: 1 rollout in 7d (b12), 3 in 30d (b10-b12), 9 in 90d (b4-b12); leads per rollout
    # [7200, 36000]: 2 values -> median 21600, p90 7200 + 0.9 * 28800 = 33120; 6 values
    # (3 x each) -> median (rank 2.5) 21600, p90 (rank 4.5) 36000; 18 values -> 21600, 36000.
    ("billing", "1d"): (0, 0, None, None, None, None),
    ("billing", "7d"): (1, 0, 0.0, 0.0, (21600, 33120), None),
    ("billing", "30d"): (3, 0, 0.0, 0.0, (21600, 36000), None),
    ("billing", "90d"): (9, 0, 0.0, 0.0, (21600, 36000), None),
    # search: 7d: s8; 30d: s6, s7, s8 (s6 ended s5's failure: rework 1/3); 90d: s3-s8, s5 failed,
    # recovered in 1728000 s. Leads per rollout [14400, 72000]: median 43200, p90 14400 + 0.9 *
    # 57600 = 66240; 6 values -> 43200 (rank 2.5), 72000 (rank 4.5); 12 -> 43200, 72000.
    ("search", "1d"): (0, 0, None, None, None, None),
    ("search", "7d"): (1, 0, 0.0, 0.0, (43200, 66240), None),
    ("search", "30d"): (3, 0, 0.0, 1 / 3, (43200, 72000), None),
    ("search", "90d"): (6, 1, 1 / 6, 1 / 6, (43200, 72000), (1728000, 1728000)),
    # checkout: 1d: c8 (failed, unrecovered); 7d: c7, c8; 30d: c5-c8, failures c5 and c8, rework
    # c6, recovery [64800]; 90d: c2-c8, failures c3, c5, c8, rework c4 and c6, recoveries
    # [43200, 64800] -> median 54000, p90 43200 + 0.9 * 21600 = 62640. No commits: no lead time.
    ("checkout", "1d"): (1, 1, 1.0, 0.0, None, None),
    ("checkout", "7d"): (2, 1, 0.5, 0.0, None, None),
    ("checkout", "30d"): (4, 2, 0.5, 0.25, None, (64800, 64800)),
    ("checkout", "90d"): (7, 3, 3 / 7, 2 / 7, None, (54000, 62640)),
}
# Before the late backfill of s3 and s4 only search's 90d window differs: s5-s8, 1 failure.
BEFORE_LATE = {("search", "90d"): (4, 1, 0.25, 0.25, (43200, 72000), (1728000, 1728000))}
# Histograms counted at ingest: count, sum, and cumulative counts at le=14400 and le=86400.
HISTOGRAMS = {
    ("releasebits_change_lead_time_seconds", "billing"): (24, 12 * 43200.0, 12, 24),
    ("releasebits_change_lead_time_seconds", "search"): (16, 8 * 86400.0, 8, 16),
    ("releasebits_failed_deployment_recovery_time_seconds", "checkout"): (2, 108000.0, 0, 2),
    ("releasebits_failed_deployment_recovery_time_seconds", "search"): (1, 1728000.0, 0, 0),
}


def iso(days_ago: float, plus_hours: float = 0.0) -> str:
    ts = NOW - days_ago * DAY + plus_hours * HOUR
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Client:
    def __init__(self, daemon: Daemon, token: str):
        self.daemon, self.auth = daemon, {"Authorization": f"Bearer {token}"}

    def deploy(self, component: str, version: str, days_ago: float, **fields: Any) -> str:
        body = {"version": version, "stage": "production", "finished_at": iso(days_ago), **fields}
        resp = requests.post(
            f"{self.daemon.url}/components/{component}/deployments",
            json=body,
            headers=self.auth,
            timeout=10,
        )
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    def hosts(self, component: str, version: str, days_ago: float, n: int, **fields: Any) -> str:
        """A rollout to n hosts, 10 minutes apart; returns the first deployment's id."""
        first = self.deploy(component, version, days_ago, host="h1", **fields)
        for i in range(1, n):
            extra = {k: v for k, v in fields.items() if k != "commits"}
            self.deploy(
                component, version, days_ago - i * 10 / (24 * 60), host=f"h{i + 1}", **extra
            )
        return first

    def incident(self, component: str, **fields: Any) -> None:
        resp = requests.post(
            f"{self.daemon.url}/components/{component}/incidents",
            json=fields,
            headers=self.auth,
            timeout=10,
        )
        assert resp.status_code == 201, resp.text

    def push(self, n: int, days_ago: float) -> None:
        """The push of search's rollout n: commits sN-1 (20 h before) and sN-2 (4 h before)."""
        payload = copy.deepcopy(
            json.loads((FIXTURES / "github/push_with-new-branch.json").read_text())
        )
        payload["repository"].update(full_name="acme/search", name="search")
        payload["created"] = n == 1
        payload["before"] = "0" * 40 if n == 1 else sha(n - 1, 2)
        template = payload["commits"][0]
        payload["commits"] = [
            {**template, "id": sha(n, 1), "timestamp": iso(days_ago, -20)},
            {**template, "id": sha(n, 2), "timestamp": iso(days_ago, -4)},
        ]
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-Hub-Signature-256": signature(SECRET, body),
        }
        resp = requests.post(
            f"{self.daemon.url}/webhooks/github", data=body, headers=headers, timeout=10
        )
        assert resp.status_code == 200 and resp.json()["new"] == 2, resp.text


def sha(n: int, i: int) -> str:
    return f"{n:02d}{i:02d}".ljust(40, "a")


SEARCH = {1: 118, 2: 100, 3: 80, 4: 60, 5: 40, 6: 20, 7: 10, 8: 3}


def post_history(c: Client) -> None:
    for i, days in enumerate(range(115, 0, -10), start=1):  # billing b1..b12
        commits = [
            {"sha": f"b{i}-x".ljust(40, "0"), "timestamp": iso(days, -2)},
            {"sha": f"b{i}-y".ljust(40, "0"), "timestamp": iso(days, -10)},
        ]
        c.deploy("billing", f"b{i}", days, host="h1", commits=commits)
        c.deploy("billing", f"b{i}", days - 0.5 / 24, host="h2")
    for days in (50, 45, 12):
        c.deploy("billing", "b-bad", days, result="failed")
    for n, days in SEARCH.items():
        if n in (3, 4):
            continue  # posted late
        c.push(n, days)
        c.hosts("search", f"s{n}", days, 3 if n == 8 else 2, commit_sha=sha(n, 2))
    c.hosts("checkout", "1.0.0", 119, 3)
    c.hosts("checkout", "1.0.1", 88, 3)
    c.deploy("checkout", "1.0.3", 49.8, result="failed")
    c.deploy("checkout", "1.0.2", 50)
    c.deploy("checkout", "1.0.1", 49.5)  # the rollback
    c.hosts("checkout", "1.1.0", 28, 2)
    c.hosts("checkout", "1.1.1", 20, 2)
    c.deploy("checkout", "1.1.6", 10, result="failed")
    c.hosts("checkout", "1.1.5", 6, 2)
    c.hosts("checkout", "1.1.9", 0.5, 2)
    c.incident("checkout", started_at=iso(27.5), resolved_at=iso(27.25), title="checkout errors")


def samples(daemon: Daemon) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = requests.get(f"{daemon.url}/metrics", timeout=30).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def check(got: dict[Any, float], expected: dict[tuple[str, str], tuple[Any, ...]]) -> None:
    for (component, window), values in expected.items():
        deployments, failures, ratio, rework, lead, recovery = values
        labels = {"component": component, "stage": "production", "window": window}

        def value(name: str, labels: dict[str, str] = labels, **extra: str) -> float | None:
            return got.get((name, frozenset({**labels, **extra}.items())))

        where = f"{component} {window}"
        assert value("releasebits_dora_deployments") == deployments, where
        assert value("releasebits_dora_change_failures") == failures, where
        assert value("releasebits_dora_change_failure_ratio") == pytest.approx(ratio), where
        assert value("releasebits_dora_rework_ratio") == pytest.approx(rework), where
        for name, pair in (("lead_time", lead), ("recovery_time", recovery)):
            for q, expect in zip(("0.5", "0.9"), pair or (None, None), strict=True):
                found = value(f"releasebits_dora_{name}_seconds", quantile=q)
                assert found == pytest.approx(expect), f"{where} {name} {q}"


def check_histograms(got: dict[Any, float]) -> None:
    for (name, component), (count, total, le_4h, le_1d) in HISTOGRAMS.items():
        labels = {"component": component, "stage": "production"}
        assert got[(name + "_count", frozenset(labels.items()))] == count, (name, component)
        assert got[(name + "_sum", frozenset(labels.items()))] == pytest.approx(total)
        assert got[(name + "_bucket", frozenset({**labels, "le": "14400"}.items()))] == le_4h
        assert got[(name + "_bucket", frozenset({**labels, "le": "86400"}.items()))] == le_1d


def unrecovered(got: dict[Any, float], component: str) -> float:
    return got[
        (
            "releasebits_dora_unrecovered_failure_age_seconds",
            frozenset({"component": component, "stage": "production"}.items()),
        )
    ]


def test_dora_keys_of_a_fixed_history(
    daemon: Daemon, httpserver: HTTPServer, tmp_path: Path
) -> None:
    sentry = FakeSentry(httpserver).install()
    config = tmp_path / "releasebits.toml"
    config.write_text(
        "crash_free_critical = 0.995\n"
        + sources_toml(sentry, None, interval="1d")
        + '\n[receivers.github]\nsecret_env = "DORA_SECRET"\ncomponents = { "acme/search" = "search" }\n'
    )
    daemon.extra_env.update(RELEASEBITS_CONFIG=str(config), DORA_SECRET=SECRET, **TOKEN_ENV)
    daemon.start()
    token = daemon.cli("token", "create", "ci").stdout.strip().splitlines()[-1]
    c = Client(daemon, token)
    post_history(c)
    s5 = requests.get(
        f"{daemon.url}/components/search/deployments?version=s5&host=h1", headers=c.auth, timeout=10
    ).json()[0]["id"]
    c.incident(
        "search", started_at=iso(15), resolved_at=iso(14.5), deployment_id=s5, external_id="INC-7"
    )
    # The worker polls daily; this is the poll while c8 runs, stored as the worker would.
    polled = daemon.cli("poll", "--once", "--store")
    assert polled.returncode == 0, polled.stdout + polled.stderr

    before = samples(daemon)
    check(before, {**EXPECTED, **BEFORE_LATE})
    assert unrecovered(before, "checkout") == pytest.approx(
        time.time() - (NOW - 0.5 * DAY), abs=120
    )
    assert unrecovered(before, "search") == 0 and unrecovered(before, "billing") == 0

    for n in (3, 4):  # the late backfill: search's s3 and s4, with their pushes
        c.push(n, SEARCH[n])
        c.hosts("search", f"s{n}", SEARCH[n], 2, commit_sha=sha(n, 2))
    after = samples(daemon)
    check(after, EXPECTED)
    check_histograms(after)
    dora_changed = {
        key
        for key in set(before) | set(after)
        if key[0].startswith("releasebits_dora_")
        and key[0] != "releasebits_dora_unrecovered_failure_age_seconds"
        and before.get(key) != after.get(key)
    }
    assert dora_changed == {
        (name, frozenset({"component": "search", "stage": "production", "window": "90d"}.items()))
        for name in (
            "releasebits_dora_deployments",
            "releasebits_dora_change_failure_ratio",
            "releasebits_dora_rework_ratio",
        )
    }

    assert daemon.stop() == 0
    daemon.start()
    again = samples(daemon)
    check(again, EXPECTED)
    check_histograms(again)
    assert unrecovered(again, "checkout") == pytest.approx(time.time() - (NOW - 0.5 * DAY), abs=120)
    total = sum(v for (name, labels), v in again.items() if name == "releasebits_deployments_total")
    assert total == 62
