"""The dashboards zoomed in and out: every query evaluated at the steps Grafana uses for a few
hours (15 s), a day (1 m) and weeks (1 h), over a history with known events, and each event
must show up at each zoom level (not only "the query returns data").

The history is eight hours of what ReleaseBits' own /metrics said, scraped every 15 s as the
compose Prometheus does: a daemon (the Flask app on a real SQLite file) is fed deployments,
builds and forwarding outcomes at known times, /metrics is read after each change, and every
scrape is written with its timestamp as OpenMetrics for `promtool tsdb create-blocks-from`.
A real Prometheus then answers the dashboards' queries over that history. This extends
tests/e2e/test_dashboards.py (its query extraction and variable expansion are reused).
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import create_app
from exporter.config import load_settings
from exporter.dora.budget import after_poll
from exporter.pollers.jobs import PollReport
from exporter.settings import Settings
from storage import heartbeat, outbox, release_health, tokens
from storage.db import Store, open_db
from tests.conftest import fresh_location, need_binary
from tests.e2e.test_dashboards import (
    DASHBOARD_FILES,
    LABEL_VALUES_RE,
    VALUES,
    VAR_RE,
    all_panels,
    load,
    variable_queries,
    variables_in,
)
from tests.prometheus import Prometheus, start_prometheus, stop_prometheus

pytestmark = pytest.mark.e2e

SCRAPE = 15  # seconds: the compose Prometheus' scrape_interval and Grafana's timeInterval
HISTORY = 8 * 3600
ZOOMS = (15, 60, 3600)  # Grafana's step for a few hours, a day, a few weeks on screen
SELECTOR_RE = re.compile(r"\b(releasebits_\w+)\{([^}]*)\}")
MATCHER_RE = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
CONFIG = """
[[sentry]]
base_url = "http://127.0.0.1:9"
organization = "acme"
token_env = "TOKEN"
projects = [42]

[[bugsnag]]
base_url = "http://127.0.0.1:9"
token_env = "TOKEN"
projects = ["b1"]

[components.checkout.sources.sentry]
project = "42"
release = "checkout@{version}"

[components.checkout.sources.bugsnag]
project = "b1"

[[forward.webhook]]
name = "hooks"
url = "http://127.0.0.1:9/hooks"
secret_env = "SECRET"
"""
ENV = {"TOKEN": "t", "SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}


def rate_interval(step: int) -> int:
    """Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval)."""
    return max(step + SCRAPE, 4 * SCRAPE)


@dataclass(frozen=True)
class Event:
    """Something that happened at `at` and changed `metric` for the series with `labels`."""

    at: float
    metric: str
    labels: dict[str, str]


@dataclass
class Feed:
    """The daemon under the history: its app, store and token, and what happened when."""

    db: Store
    settings: Settings
    client: Any
    auth: dict[str, str]
    events: list[Event] = field(default_factory=list)
    seen: set[tuple[str, ...]] = field(default_factory=set)

    def happened(
        self, at: float, metric: str, labels: dict[str, str], series: tuple[str, ...]
    ) -> None:
        """Expect the event to show, unless it created its component (or stage): a counter
        series that starts with it has no earlier sample to differ from, in any Prometheus."""
        if series in self.seen:
            self.events.append(Event(at, metric, labels))
        self.seen.add(series)

    def post(self, at: float, component: str, kind: str, **body: Any) -> None:
        finished = datetime.fromtimestamp(at, UTC)
        resp = self.client.post(
            f"/components/{component}/{kind}",
            json={
                "finished_at": finished.isoformat(),
                "started_at": (finished - timedelta(seconds=60)).isoformat(),
                **body,
            },
            headers=self.auth,
        )
        assert resp.status_code == 201, resp.get_json()
        result = resp.get_json()
        got = self.client.get(f"/components/{component}/{kind}/{result['id']}", headers=self.auth)
        cls = got.get_json()["result_class"]
        if kind == "deployments":
            stage = body.get("stage", "production")
            labels = {"component": component, "stage": stage, "result": cls}
            self.happened(at, "releasebits_deployments_total", labels, (kind, component, stage))
        else:
            labels = {"component": component, "result": cls}
            self.happened(at, "releasebits_builds_total", labels, (kind, component))

    def version_change(self, at: float, component: str, version: str) -> None:
        # The commit was made two hours earlier: the DORA lead-time panels read it.
        committed = datetime.fromtimestamp(at - 7200, UTC).isoformat()
        commits = [{"sha": f"sha-{version}", "timestamp": committed}]
        self.post(
            at, component, "deployments", version=version, commit_sha=f"sha-{version}",
            commits=commits,
        )  # fmt: skip
        self.events.append(
            Event(
                at,
                "releasebits_deployed_version_since_timestamp_seconds",
                {"component": component, "stage": "production", "version": version},
            )
        )

    def incident(self, started: float, resolved: float) -> None:
        """A change failure of checkout in production, recovered (DORA recovery time)."""
        body = {
            "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
            "resolved_at": datetime.fromtimestamp(resolved, UTC).isoformat(),
        }
        resp = self.client.post("/components/checkout/incidents", json=body, headers=self.auth)
        assert resp.status_code == 201, resp.get_json()

    def poll(self, at: float, start: float) -> None:
        """The worker's Bugsnag poll and its error-budget accounting, through the job's own
        functions: every release's sessions grow with time, 1% of them crashed."""
        sessions = int(at - start)
        rows = tuple(
            release_health.HealthRow(
                "bugsnag", "b1", "production", f"1.{n}", sessions, 50, 0.99, 0.99,
                {"unhandled": sessions // 100},
            )
            for n in range(6)
        )  # fmt: skip
        report = PollReport("bugsnag", "bugsnag", ok=True, rows=rows)
        after_poll(self.db, self.settings, report, at)

    def deliver(self, at: float, outcome: str) -> None:
        """The worker's outbox step, through storage: claim what is due, record an outcome."""
        now = time.time()
        claimed = outbox.claim(self.db, ["hooks"], now=now, lease_seconds=60, limit=1)
        assert claimed, "no delivery to finish"
        result = outbox.Result(claimed[0].id, "hooks", outcome, 200, next_attempt_at=now)
        outbox.finish(self.db, [result], now)
        self.events.append(
            Event(
                at, "releasebits_forward_deliveries_total", {"target": "hooks", "outcome": outcome}
            )
        )


def timeline(start: float) -> list[tuple[float, Callable[[Feed], None]]]:
    """What happens when (seconds after `start`): five version changes and five failed
    deployments of checkout in production, builds, deliveries, and noise around them."""
    h = 3600

    def at(offset: float, action: Callable[[Feed, float], None]) -> tuple[float, Any]:
        return start + offset, lambda feed: action(feed, start + offset)

    actions = [
        at(300, lambda f, t: f.post(t, "checkout", "deployments", version="1.0")),
        at(320, lambda f, t: f.post(t, "web", "deployments", version="v2.0")),
        at(340, lambda f, t: f.post(t, "checkout", "deployments", version="1.0", stage="staging")),
        at(600, lambda f, t: f.post(t, "checkout", "builds", version="1.0", result="success")),
    ]
    for n, offset in enumerate((h + 433, 2 * h + 701, 3 * h + 303, 4 * h + 1169, 5 * h + 157)):
        version = f"1.{n + 1}"
        actions.append(at(offset, lambda f, t, v=version: f.version_change(t, "checkout", v)))
        actions.append(
            at(offset - 1200, lambda f, t, v=version: f.post(t, "checkout", "builds", version=v))
        )
    for offset, result in (
        (h + 2260, "failed"),
        (2 * h + 2465, "failed"),
        (3 * h + 3140, "timed_out"),
        (4 * h + 2013, "failed"),
        (5 * h + 1310, "rolled_back"),
    ):
        actions.append(
            at(
                offset,
                lambda f, t, r=result: f.post(
                    t, "checkout", "deployments", version="bad", result=r
                ),
            )
        )
        actions.append(
            at(
                offset + 95,
                lambda f, t: f.post(t, "checkout", "builds", version="x", result="failed"),
            )
        )
    for offset, outcome in (
        (h + 900, "delivered"),
        (2 * h + 1000, "retried"),
        (3 * h + 1500, "failed"),
        (4 * h + 600, "delivered"),
        (5 * h + 2000, "delivered"),
    ):
        actions.append(at(offset, lambda f, t, o=outcome: f.deliver(t, o)))
    actions.append(at(2 * h + 1800, lambda f, t: f.incident(t, t + 1800)))
    for offset in range(900, HISTORY - 600, 900):  # Bugsnag polled every 15 minutes
        actions.append(at(offset, lambda f, t: f.poll(t, start)))
    return sorted(actions, key=lambda a: a[0])


def store_release_health(db: Store) -> None:
    """What the pollers would have stored: every checkout release, and Bugsnag's target."""
    by_status = {"healthy": 990, "crashed": 10}
    sentry = [
        release_health.HealthRow(
            "sentry", "42", "production", f"checkout@1.{n}", 1000, 100, 0.99 + n / 1000, 0.995,
            by_status,
        )
        for n in range(6)
    ]  # fmt: skip
    bugsnag = [
        release_health.HealthRow("bugsnag", "b1", "production", f"1.{n}", 500, 50, 0.98, 0.99)
        for n in range(6)
    ]
    target = release_health.Target("bugsnag", "b1", "stability", 0.995, 0.985)
    release_health.store_poll(db, "sentry", sentry, projects=["42"], duration=0.4)
    release_health.store_poll(db, "bugsnag", bugsnag, [target], projects=["b1"], duration=0.2)


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series_of(exposition: str) -> dict[str, float]:
    """One scrape as {'name{labels}': value}, in OpenMetrics sample syntax."""
    out = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = ",".join(f'{k}="{escape(v)}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def write_history(path: Path, feed: Feed, start: float, end: float) -> None:
    """Apply the timeline, reading /metrics after each change, and write every 15 s scrape."""
    actions = timeline(start)
    scrapes = [start + 7 + SCRAPE * k for k in range(int((end - start - 7) // SCRAPE) + 1)]
    snapshots: list[tuple[int, dict[str, float]]] = []  # (first scrape index, samples)
    for i, t in enumerate(scrapes):
        changed = not snapshots
        while actions and actions[0][0] <= t:
            actions.pop(0)[1](feed)
            changed = True
        if changed:
            text = feed.client.get("/metrics").get_data(as_text=True)
            snapshots.append((i, series_of(text)))
    assert not actions
    bounds = [i for i, _ in snapshots[1:]] + [len(scrapes)]
    with path.open("w") as out:
        for key in sorted({k for _, samples in snapshots for k in samples}):
            for (first, samples), stop in zip(snapshots, bounds, strict=True):
                if key in samples:
                    value = repr(samples[key]).replace("inf", "Inf")
                    for t in scrapes[first:stop]:
                        out.write(f"{key} {value} {t:.3f}\n")
        out.write("# EOF\n")


@pytest.fixture(scope="module")
def history(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Prometheus, Feed, float, float]]:
    promtool = need_binary("promtool")
    tmp = tmp_path_factory.mktemp("zoom")
    end = float(int(time.time()) // 3600 * 3600 - 60)
    start = end - HISTORY
    config = tmp / "releasebits.toml"
    config.write_text(CONFIG)
    settings = load_settings(config, ENV, {"db": fresh_location(request, tmp, "rb")})
    db = open_db(settings.db, migrate=True)
    token = tokens.create_token(db, "ci", ("read", "write"))
    store_release_health(db)
    heartbeat.beat(db, 1)
    app = create_app(settings, process_metrics=False)
    feed = Feed(db, settings, app.test_client(), {"Authorization": f"Bearer {token}"})
    openmetrics = tmp / "history.om"
    write_history(openmetrics, feed, start, end)
    subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(openmetrics),
            str(tmp / "tsdb"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # No scrapes: only the history. Backfilled samples carry no staleness markers, so a series
    # that ended (an old version's _info) would linger for the default 5 m look-back; 1 m
    # (four scrapes) stands in for the markers a live Prometheus writes.
    prom = start_prometheus(tmp, {"global": {}}, "--query.lookback-delta=1m", tsdb=tmp / "tsdb")
    try:
        yield prom, feed, start, end
    finally:
        stop_prometheus(prom)
        db.close()


@dataclass(frozen=True)
class Query:
    where: str
    expr: str
    range: bool  # a graph or annotation (evaluated at a step) or an instant value


def queries() -> list[Query]:
    out = []
    for path in DASHBOARD_FILES:
        board = load(path)
        for panel in all_panels(board["panels"]):
            for target in panel.get("targets", []):
                where = f"{path.name} / {panel['title']} / {target['refId']}"
                out.append(Query(where, target["expr"], not target.get("instant", False)))
        for a in board["annotations"]["list"]:
            if "expr" in a:
                out.append(Query(f"{path.name} / annotation {a['name']}", a["expr"], True))
        for name, query in variable_queries(board).items():
            match = LABEL_VALUES_RE.match(query)
            assert match is not None
            selector, label = match.groups()
            out.append(
                Query(f"{path.name} / variable {name}", f"group by ({label}) ({selector})", False)
            )
    return out


def expand(expr: str, values: dict[str, str]) -> str:
    return VAR_RE.sub(lambda m: values[next(g for g in m.groups() if g)], expr)


def combos(expr: str) -> list[dict[str, str]]:
    names = sorted(variables_in(expr) & set(VALUES))
    return [dict(zip(names, v, strict=True)) for v in product(*(VALUES[n] for n in names))]


def matches(event: Event, expr: str) -> bool:
    """Whether the (expanded) query selects the series the event changed."""
    for metric, matchers in SELECTOR_RE.findall(expr):
        if metric != event.metric:
            continue
        ok = True
        for label, op, value in MATCHER_RE.findall(matchers):
            if label not in event.labels:
                continue
            hit = (
                re.fullmatch(value, event.labels[label]) is not None
                if "~" in op
                else event.labels[label] == value
            )
            ok = ok and (hit if op in ("=", "=~") else not hit)
        if ok:
            return True
    return False


def shows_up(result: list[dict[str, Any]], event: Event, window: float) -> bool:
    """A point > 0 within `window` after the event, on a series that agrees with its labels."""
    for series in result:
        if any(series["metric"].get(k, v) != v for k, v in event.labels.items()):
            continue
        for ts, value in series["values"]:
            if event.at <= float(ts) <= event.at + window and float(value) > 0:
                return True
    return False


def test_every_query_shows_the_known_events_at_every_zoom_level(
    history: tuple[Prometheus, Feed, float, float],
) -> None:
    prom, feed, start, end = history
    version_changes = [e for e in feed.events if e.metric.endswith("since_timestamp_seconds")]
    failures = [e for e in feed.events if e.labels.get("result") in ("failure", "error")]
    assert len(version_changes) == 5 and len([e for e in failures if "stage" in e.labels]) == 5
    problems: list[str] = []
    checked_events = 0
    for query in queries():
        zooms = ZOOMS if query.range else (ZOOMS[0],)
        for step in zooms:
            grafana = {
                "__interval": f"{step}s",
                "__rate_interval": f"{rate_interval(step)}s",
                "__range": f"{int(end - start)}s",
                "__range_s": str(int(end - start)),
            }
            results = []
            for combo in combos(query.expr):
                expr = expand(query.expr, {**grafana, **combo})
                if query.range:
                    aligned = start // step * step  # Grafana aligns the range to the step
                    data = prom.get(
                        "query_range", query=expr, start=str(aligned), end=str(end), step=str(step)
                    )
                else:
                    data = prom.get("query", query=expr, time=str(end))
                results.append((expr, data["result"]))
            if not any(
                math.isfinite(float(v))
                for _, result in results
                for series in result
                for _, v in (series["values"] if query.range else [series["value"]])
            ):
                problems.append(f"{query.where} at step {step}s: no data")
                continue
            if "$__rate_interval" not in query.expr:
                continue
            window = rate_interval(step) + step
            for expr, result in results:
                for event in feed.events:
                    if not matches(event, expr):
                        continue
                    checked_events += 1
                    if not shows_up(result, event, window):
                        when = datetime.fromtimestamp(event.at, UTC).strftime("%H:%M:%S")
                        problems.append(
                            f"{query.where} at step {step}s: {event.metric} {event.labels} "
                            f"at {when} does not show"
                        )
    assert not problems, "\n".join(problems)
    # Every zoom of: both dashboards' two annotations, deployments and builds by result,
    # deliveries by outcome.
    assert checked_events >= 3 * (2 * 10 + 5 + 5 + 5)


def test_no_query_uses_a_window_of_one_scrape() -> None:
    """[$__interval] is a single scrape when zoomed in: increase() and changes() then see
    nothing. Graph windows are $__rate_interval (Grafana keeps it >= 4 scrape intervals)."""
    for query in queries():
        assert "[$__interval]" not in query.expr, query.where


def panel(board: str, title: str) -> dict[str, Any]:
    found = [
        p
        for path in DASHBOARD_FILES
        if path.name == board
        for p in all_panels(load(path)["panels"])
        if p["title"] == title
    ]
    assert len(found) == 1, f"{board}: one panel {title!r}"
    return found[0]


def test_deployments_dashboard_has_recent_deployments_and_crash_free_where_it_runs() -> None:
    """What a team lead missed: which deployments happened (what, commit, result, when) and
    whether what runs is healthy, next to where it runs."""
    recent = panel("releasebits-deployments.json", "Recent deployments")
    assert recent["type"] == "table"
    (target,) = recent["targets"]
    assert target["instant"] and target["format"] == "table"
    for label in ("version", "commit_sha", "result", "component", "stage"):
        assert label in target["expr"] or label == "result"
    renamed = recent["transformations"][0]["options"]["renameByName"]
    assert renamed == {"Value": "finished", "commit_sha": "commit"}
    where = panel("releasebits-deployments.json", "What runs where")
    crash_free = [t for t in where["targets"] if "crash_free_sessions_ratio" in t["expr"]]
    assert len(crash_free) == 1
    names = where["transformations"][1]["options"]["renameByName"]
    assert names[f"Value #{crash_free[0]['refId']}"] == "crash-free sessions"
