"""Every Grafana dashboard is well formed, and every query in it and in the alert rules returns
data from a real Prometheus scraping a daemon fed with deployments, builds and release health.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import product
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from exporter.metrics.collector import described_metric_names
from tests.conftest import Daemon
from tests.prometheus import Prometheus, prometheus_launcher
from tests.upstreams import TOKEN_ENV, FakeBugsnag, FakeSentry, sources_toml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_FILES = sorted((ROOT / "grafana-dashboards").glob("*.json"))
RULE_FILES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
BUILTIN_DS = {"type": "grafana", "uid": "-- Grafana --"}
# Grafana's own variables, expanded for an instant query evaluated "now".
GLOBALS = {"__interval": "5m", "__rate_interval": "1m", "__range": "1h", "__range_s": "3600"}
# Dashboard variables -> the values the queries are evaluated with (every combination).
VALUES = {
    "component": ["checkout"],
    "stage": ["production"],
    "source": ["sentry", "bugsnag"],
    "environment": ["production"],
}
VAR_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
METRIC_RE = re.compile(r"\b(releasebits_\w+)")
SELECTOR_RE = re.compile(r"\b(releasebits_\w+)(\{[^}]*\})?")
LEGEND_LABEL_RE = re.compile(r"\{\{\s*(\w+)\s*\}\}")
LABEL_VALUES_RE = re.compile(r"^label_values\((.+),\s*(\w+)\)$")


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))  # collapsed rows nest their panels


def walk(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) of every key anywhere in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


@dataclass(frozen=True)
class Query:
    where: str  # dashboard file / panel title / refId, or rule name
    expr: str
    labels: frozenset[str] = frozenset()  # labels its legend / annotation text shows


def variable_queries(board: dict[str, Any]) -> dict[str, str]:
    out = {}
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            out[var["name"]] = query["query"] if isinstance(query, dict) else query
    return out


def dashboard_queries(path: Path) -> list[Query]:
    board = load(path)
    queries = [
        Query(
            f"{path.name} / {panel['title']} / {target['refId']}",
            target["expr"],
            frozenset(LEGEND_LABEL_RE.findall(target.get("legendFormat", ""))),
        )
        for panel in all_panels(board["panels"])
        for target in panel.get("targets", [])
    ]
    queries += [
        Query(
            f"{path.name} / annotation {a['name']}",
            a["expr"],
            frozenset(
                LEGEND_LABEL_RE.findall(a.get("titleFormat", "") + a.get("textFormat", ""))
                + [k.strip() for k in a.get("tagKeys", "").split(",") if k.strip()]
            ),
        )
        for a in board["annotations"]["list"]
        if "expr" in a
    ]
    for name, query in variable_queries(board).items():
        match = LABEL_VALUES_RE.match(query)
        assert match, f"{path.name}: variable {name}: expected label_values(selector, label)"
        selector, label = match.groups()
        queries.append(Query(f"{path.name} / variable {name}", f"group by ({label}) ({selector})"))
    return queries


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def variables_in(text: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in VAR_RE.finditer(text)}


def expand(expr: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        return {**GLOBALS, **values}[name]

    return VAR_RE.sub(one, expr)


def exported_metric_names() -> set[str]:
    names = set()
    for name in described_metric_names():
        names.add(name)
        names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


# ---------------------------------------------------------------- structure (no processes)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    board = load(path)
    assert board["title"].startswith("ReleaseBits / ")
    assert board["schemaVersion"] >= 39
    assert board["id"] is None  # importable: Grafana assigns its own
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert board["__inputs"][0]["pluginId"] == "prometheus"

    panels = list(all_panels(board["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["description"], f"{panel['title']}: say what the panel shows"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]

    # Every datasource is the input / variable DS_PROMETHEUS (Grafana's built-in annotation
    # aside), so the JSON imports anywhere and resolves when provisioned.
    for where, key, value in walk(board):
        if key == "datasource":
            assert value in (DS, BUILTIN_DS), f"{path.name}{where}: datasource {value!r}"
    builtin = [a for a in board["annotations"]["list"] if a.get("datasource") == BUILTIN_DS]
    assert all(a.get("builtIn") == 1 for a in builtin)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert {"component", "stage"} <= set(variables)

    # Every $variable used anywhere is defined by the dashboard or by Grafana.
    used = set()
    for _where, key, value in walk(board):
        if isinstance(value, str) and key != "description":
            used |= variables_in(value)
    undefined = used - set(variables) - set(GLOBALS)
    assert not undefined, f"{path.name} uses undefined variables {sorted(undefined)}"
    unused = set(variables) - used
    assert not unused, f"{path.name} defines variables no query uses: {sorted(unused)}"
    assert set(variables) - {"DS_PROMETHEUS"} <= set(VALUES), "a variable the e2e test can't fill"


def test_dashboard_uids_are_unique_and_stable() -> None:
    uids = [load(p)["uid"] for p in DASHBOARD_FILES]
    assert {p.name for p in DASHBOARD_FILES} >= {
        "releasebits-deployments.json",
        "releasebits-release-health.json",
    }
    assert len(uids) == len(set(uids))
    assert all(re.fullmatch(r"[a-z0-9-]{1,40}", uid) for uid in uids)


def test_queries_name_only_metrics_the_collector_exports() -> None:
    exported = exported_metric_names()
    queries = [q for p in DASHBOARD_FILES for q in dashboard_queries(p)]
    queries += [Query(f"rule {r.get('alert') or r['record']}", r["expr"]) for r in rules()]
    unknown = {
        (q.where, name)
        for q in queries
        for name in METRIC_RE.findall(q.expr)
        if name not in exported
    }
    assert not unknown, "queries name metrics the collector does not export:\n" + "\n".join(
        f"  {where}: {name}" for where, name in sorted(unknown)
    )


# ---------------------------------------------------------------- against real processes

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


def deployment(version: str, stage: str, result: str, finished: datetime, seconds: float) -> Any:
    return {
        "version": version,
        "stage": stage,
        "result": result,
        "commit_sha": f"sha-{version}",
        "started_at": (finished - timedelta(seconds=seconds)).isoformat(),
        "finished_at": finished.isoformat(),
    }


def build(version: str, result: str, finished: datetime, seconds: float) -> Any:
    body = deployment(version, "", result, finished, seconds)
    del body["stage"]
    return body


# Before Prometheus scrapes: checkout 1.1.9 runs in production (1.2.0 failed there once).
HISTORY = [
    (
        "checkout",
        "deployments",
        {
            **deployment("1.1.9", "production", "success", T0, 40),
            # For the DORA dashboard's lead-time panels.
            "commits": [{"sha": "c119", "timestamp": (T0 - timedelta(hours=5)).isoformat()}],
        },
    ),
    (
        "checkout",
        "deployments",
        deployment("1.2.0", "staging", "success", T0 + timedelta(hours=2), 25),
    ),
    (
        "checkout",
        "deployments",
        deployment("1.2.0", "production", "failed", T0 + timedelta(hours=3), 300),
    ),
    (
        "web",
        "deployments",
        deployment("v2.0", "production", "success", T0 + timedelta(hours=4), 90),
    ),
    ("checkout", "builds", build("1.1.9", "success", T0 - timedelta(hours=1), 120)),
    ("checkout", "builds", build("1.2.0", "broken", T0 + timedelta(hours=1), 200)),
]


def while_scraped() -> list[tuple[str, str, Any]]:
    """After Prometheus has seen HISTORY: 1.2.0 reaches production, one more failure, builds."""
    now = datetime.now(UTC)
    return [
        ("checkout", "builds", build("1.2.1", "success", now - timedelta(minutes=30), 95)),
        ("checkout", "builds", build("1.2.2", "failed", now - timedelta(minutes=20), 45)),
        ("checkout", "deployments", deployment("1.2.0", "production", "success", now, 70)),
        ("checkout", "deployments", deployment("1.2.1", "production", "timed_out", now, 600)),
        ("web", "deployments", deployment("v2.1", "production", "success", now, 15)),
    ]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], Prometheus]]:
    """Start a Prometheus scraping `target` every second, with the shipped alert rules."""
    yield from prometheus_launcher(tmp_path, rule_files=tuple(RULE_FILES))


def failing_sentry(httpserver: HTTPServer) -> str:
    """A second Sentry organization whose token is refused: its source_up is 0."""

    def refuse(_request: Request) -> Response:
        return Response('{"detail": "Invalid token"}', 401, content_type="application/json")

    httpserver.expect_request(
        "/api/0/organizations/acme-eu/sessions/", method="GET"
    ).respond_with_handler(refuse)
    base_url = httpserver.url_for("/").rstrip("/")
    return (
        f'[[sentry]]\nname = "sentry-eu"\nbase_url = "{base_url}"\norganization = "acme-eu"\n'
        'token_env = "SENTRY_TOKEN"\nprojects = [7]\npoll_interval = "1s"\n'
    )


def has_data(prom: Prometheus, promql: str, labels: frozenset[str] = frozenset()) -> bool:
    """A finite value in the result, on a series carrying every label the legend shows."""
    return any(
        math.isfinite(float(r["value"][1])) and labels <= set(r["metric"])
        for r in prom.query(promql)
    )


# What the history above must trigger right away (the rest must stay quiet on a healthy daemon).
EXPECTED_ACTIVE = {
    "ReleaseBitsSourceDown",  # sentry-eu refuses the token
    "ReleaseBitsDeployedCrashFreeBelowTarget",  # sentry says 99.73% for 1.2.0; target 99.8%
    "ReleaseBitsDeploymentFailed",  # 1.2.1 timed out
    "ReleaseBitsChangeFailureRateHigh",  # the incident on 1.1.9: 1 of checkout's 2 rollouts
}
# Once the forwarders export their metrics: a webhook target that is down, so deliveries stay
# pending (the pending and oldest-age series exist) and the backlog grows while scraped.
FORWARDING = "releasebits_forward_pending" in described_metric_names()
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # Standard Webhooks' documented example


def down_webhook(httpserver: HTTPServer) -> str:
    httpserver.expect_request("/hooks/releasebits", method="POST").respond_with_data(
        "unavailable", status=503
    )
    return (
        f'[[forward.webhook]]\nname = "hooks"\nurl = "{httpserver.url_for("/hooks/releasebits")}"\n'
        'secret_env = "WEBHOOK_SECRET"\n'
    )


@pytest.mark.e2e
def test_every_query_returns_data_from_a_real_prometheus(
    tmp_path: Path,
    httpserver: HTTPServer,
    prometheus: Callable[[str], Prometheus],
    new_db: Callable[..., str],
) -> None:
    sentry = FakeSentry(httpserver).install()
    bugsnag = FakeBugsnag(httpserver).install()
    config = tmp_path / "releasebits.toml"
    # crash_free_target applies to Sentry, which sets no target of its own; Bugsnag's project
    # target (99.5%) applies to Bugsnag.
    config.write_text(
        "crash_free_target = 0.998\n\n"
        + sources_toml(sentry, bugsnag, interval="1s")
        + "\n"
        + failing_sentry(httpserver)
        + ("\n" + down_webhook(httpserver) if FORWARDING else "")
    )
    expected_active = EXPECTED_ACTIVE | (
        {"ReleaseBitsForwardingBacklogGrowing"} if FORWARDING else set()
    )
    daemon = Daemon(
        db=new_db("rb"),
        workdir=tmp_path,
        extra_env={
            **TOKEN_ENV,
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "RELEASEBITS_CONFIG": str(config),
        },
    )
    # Before the worker starts polling: storage/tokens.create_token reads then writes in a
    # deferred transaction, which a concurrent poll can make fail with "database is locked".
    created = daemon.cli("token", "create", "ci")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    daemon.start()
    try:
        for component, kind, body in HISTORY:
            daemon.record(token, component, kind, body)
        # An incident while 1.1.9 ran, resolved an hour later: a recovered change failure.
        incident = {
            "started_at": (T0 + timedelta(minutes=30)).isoformat(),
            "resolved_at": (T0 + timedelta(minutes=90)).isoformat(),
        }
        daemon.record(token, "checkout", "incidents", incident)

        prom = prometheus(f"127.0.0.1:{daemon.port}")
        prom.wait_for(
            "the history and both healthy sources in Prometheus",
            lambda: (
                has_data(
                    prom,
                    'releasebits_deployed_version_info{component="checkout",stage="production",'
                    'version="1.1.9"}',
                )
                # sentry projects 42 and 43, and bugsnag's project
                and len(prom.query("releasebits_source_up == 1")) == 3
            ),
        )
        for component, kind, body in while_scraped():
            daemon.record(token, component, kind, body)
        prom.wait_for(
            "the new deployments in Prometheus, as changes",
            lambda: (
                has_data(
                    prom,
                    'changes(releasebits_deployed_version_since_timestamp_seconds{component="checkout",'
                    'stage="production"}[5m]) > 0',
                )
                and has_data(prom, 'increase(releasebits_builds_total{result="failure"}[1m]) > 0')
                and has_data(prom, "releasebits_previous_crash_free_sessions_ratio")
                and has_data(
                    prom, 'increase(releasebits_deployments_total{result="error"}[1m]) > 0'
                )
            ),
        )

        # Every dashboard query, with every combination of variable values: it parses, and at
        # least one combination returns a finite value.
        no_data = []
        for path in DASHBOARD_FILES:
            for query in dashboard_queries(path):
                names = sorted(variables_in(query.expr) & set(VALUES))
                combos = [
                    dict(zip(names, values, strict=True))
                    for values in product(*(VALUES[n] for n in names))
                ]
                if not any(
                    has_data(prom, expand(query.expr, combo), query.labels) for combo in combos
                ):
                    no_data.append(query)

        # The alert rules load and evaluate cleanly in Prometheus itself.
        groups = prom.get("rules")["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"]}
        assert set(loaded) == {r.get("alert") or r["record"] for r in rules()}

        def evaluated() -> list[dict[str, Any]]:
            return [r for g in prom.get("rules")["groups"] for r in g["rules"]]

        prom.wait_for(
            "every rule to be evaluated",
            lambda: not any(r["lastEvaluation"].startswith("0001-") for r in evaluated()),
        )
        for rule in evaluated():
            assert rule["health"] == "ok", rule

        def active_alerts() -> dict[str, Any]:
            return {a["labels"]["alertname"]: a for a in prom.get("alerts")["alerts"]}

        # Pending or firing; Bugsnag's alert for the previous version (98.5%) has resolved.
        prom.wait_for(
            f"exactly the alerts {sorted(expected_active)}",
            lambda: (
                set(active_alerts()) == expected_active
                and len(prom.get("alerts")["alerts"]) == len(expected_active)
            ),
        )
        active = active_alerts()
        assert active["ReleaseBitsSourceDown"]["labels"]["source"] == "sentry-eu"
        below = active["ReleaseBitsDeployedCrashFreeBelowTarget"]["labels"]
        assert (below["source"], below["release"]) == ("sentry", "checkout@1.2.0")
        # The quiet rules are quiet for the right reason: each metric they read is there.
        for rule in rules():
            name = rule.get("alert") or rule["record"]
            if name in expected_active:
                continue
            for selector in sorted({n + m for n, m in SELECTOR_RE.findall(rule["expr"])}):
                if not prom.query(selector):
                    no_data.append(Query(f"rule {name}", selector))
        assert not no_data, "queries that return no data (or lack a label shown):\n" + "\n".join(
            f"  {q.where}: {q.expr}" for q in no_data
        )
    finally:
        assert daemon.stop() == 0
