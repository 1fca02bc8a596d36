"""Rollouts and incidents through the HTTP API: multi-host rollouts, failed jobs, rollbacks,
commits (field and pushes), late events, links that never move, and the incidents endpoints."""

from __future__ import annotations

import time
from typing import Any

import pytest

from exporter.metrics.collector import build_registry
from storage import dora
from tests.exporter.receivers.conftest import metric

DAY = 86400.0
NOW = time.time()


def iso(days_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - days_ago * DAY))


def deploy(client: Any, auth: dict[str, str], version: str, days_ago: float, **fields: Any) -> Any:
    body = {"version": version, "finished_at": iso(days_ago), **fields}
    resp = client.post("/components/shop/deployments", json=body, headers=auth)
    assert resp.status_code == 201, resp.json
    return resp.json["id"]


def rollouts(db: Any) -> list[tuple[str, bool]]:
    return [(r.version, r.is_rollback) for r in dora.series(db, "shop", "production", 0)]


def dora_value(client: Any, name: str, window: str = "90d", **labels: str) -> float | None:
    return metric(client, name, component="shop", stage="production", window=window, **labels)


def test_hosts_join_a_rollout_failed_jobs_are_none_and_rollbacks_are_marked(
    client: Any, auth: dict[str, str], db: Any
) -> None:
    deploy(client, auth, "v1", 10, host="a")
    deploy(client, auth, "v1", 9.9, host="b")
    deploy(client, auth, "v2", 8, result="failed")
    deploy(client, auth, "v2", 7)
    deploy(client, auth, "v2", 6.9, host="c")
    deploy(client, auth, "v1", 5)
    deploy(client, auth, "v1", 4, stage="staging")  # not a DORA stage by default
    assert rollouts(db) == [("v1", False), ("v2", False), ("v1", True)]
    assert dora.series(db, "shop", "staging", 0) == []
    assert dora_value(client, "releasebits_dora_deployments") == 3
    assert dora_value(client, "releasebits_dora_change_failures") == 1  # v2, rolled back


def test_a_late_deployment_rebuilds_the_rollouts_after_it(
    client: Any, auth: dict[str, str], db: Any
) -> None:
    deploy(client, auth, "v1", 10, host="a")
    deploy(client, auth, "v1", 6, host="b")  # another host, much later
    deploy(client, auth, "v3", 2)
    assert rollouts(db) == [("v1", False), ("v3", False)]
    deploy(client, auth, "v2", 8)  # late: between v1's two hosts
    # v1 @10, v2 @8, v1 @6 (a rollback of v2), v3 @2
    assert rollouts(db) == [("v1", False), ("v2", False), ("v1", True), ("v3", False)]
    assert dora_value(client, "releasebits_dora_change_failures") == 1


def test_a_late_deployment_keeps_the_commits_of_the_rollouts_it_rebuilds(
    client: Any, auth: dict[str, str], db: Any
) -> None:
    deploy(client, auth, "v1", 10)
    deploy(client, auth, "v3", 2, commits=[{"sha": "c", "timestamp": iso(3)}])
    deploy(client, auth, "v2", 5)  # late: v3's rollout is rebuilt from what was stored
    assert rollouts(db) == [("v1", False), ("v2", False), ("v3", False)]
    assert [round(s / DAY, 6) for _, s in dora.lead_times(db, "shop", "production", 0)] == [1.0]


def test_commits_field_and_its_cap(client: Any, auth: dict[str, str]) -> None:
    commits = [{"sha": "a", "timestamp": iso(3)}, {"sha": "b", "timestamp": iso(1.5)}]
    deploy(client, auth, "v1", 1, commits=commits)
    # 2 days and 0.5 day: median 1.25 days, p90 0.5 + 0.9 * 1.5 = 1.85 days.
    assert dora_value(client, "releasebits_dora_lead_time_seconds", quantile="0.5") == 1.25 * DAY
    assert dora_value(
        client, "releasebits_dora_lead_time_seconds", quantile="0.9"
    ) == pytest.approx(1.85 * DAY)
    too_many = [{"sha": f"c{i}", "timestamp": iso(2)} for i in range(1001)]
    resp = client.post(
        "/components/shop/deployments", json={"version": "v2", "commits": too_many}, headers=auth
    )
    assert resp.status_code == 422 and "at most 1000" in resp.json["error"]["fields"]["commits"]


def test_a_commit_counts_the_first_time_it_reaches_the_stage(
    client: Any, auth: dict[str, str]
) -> None:
    deploy(client, auth, "v1", 5, commits=[{"sha": "a", "timestamp": iso(6)}])
    # The rollback to v1 brings nothing new; v2 brought "b" first.
    deploy(
        client,
        auth,
        "v2",
        4,
        commits=[{"sha": "a", "timestamp": iso(6)}, {"sha": "b", "timestamp": iso(4.5)}],
    )
    deploy(client, auth, "v1", 3, commits=[{"sha": "a", "timestamp": iso(6)}])
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        'releasebits_change_lead_time_seconds_count{component="shop",stage="production"} 2.0'
        in text
    )


def test_incidents_link_when_they_arrive_and_never_move(client: Any, auth: dict[str, str]) -> None:
    first = deploy(client, auth, "v1", 10)
    deploy(client, auth, "v2", 5)
    named = client.post(
        "/components/shop/incidents",
        json={
            "started_at": iso(4),
            "deployment_id": first,
            "external_id": "INC-1",
            "title": "slow",
        },
        headers=auth,
    )
    assert named.status_code == 201 and named.json["linked_deployment_id"] == first
    current = client.post("/components/shop/incidents", json={"started_at": iso(4.5)}, headers=auth)
    v2 = current.json["linked_deployment_id"]
    assert v2 not in (None, first)
    deploy(client, auth, "v9", 4.8)  # late: was current when the second incident started
    again = client.get(f"/components/shop/incidents/{current.json['id']}", headers=auth)
    assert again.json["linked_deployment_id"] == v2
    assert dora_value(client, "releasebits_dora_change_failures") == 2  # v1 and v2


def test_incidents_api(client: Any, auth: dict[str, str]) -> None:
    body = {
        "stage": "Production",
        "started_at": iso(2),
        "external_id": "PD-42",
        "url": "https://pd/42",
    }
    created = client.post("/components/shop/incidents", json=body, headers=auth)
    assert created.status_code == 201
    assert created.headers["Location"] == f"/components/shop/incidents/{created.json['id']}"
    assert created.json["stage"] == "production" and created.json["resolved_at"] is None
    again = client.post(
        "/components/shop/incidents", json={**body, "title": "DB down"}, headers=auth
    )
    assert again.status_code == 200 and again.json["id"] == created.json["id"]
    assert again.json["title"] == "DB down"
    resolved = client.patch(
        f"/components/shop/incidents/{created.json['id']}",
        json={"resolved_at": iso(1)},
        headers=auth,
    )
    assert resolved.status_code == 200 and resolved.json["resolved_at"] == iso(1).replace(
        "Z", ".000Z"
    )
    for i in range(3):
        client.post("/components/shop/incidents", json={"started_at": iso(10 + i)}, headers=auth)
    page = client.get("/components/shop/incidents?limit=2", headers=auth)
    assert [p["started_at"] for p in page.json] == [
        iso(2).replace("Z", ".000Z"),
        iso(10).replace("Z", ".000Z"),
    ]
    nxt = page.headers["Link"].split(";")[0].strip("<>")
    rest = client.get(nxt.replace("http://localhost", ""), headers=auth)
    assert len(rest.json) == 2
    bad = client.post("/components/shop/incidents", json={"started_at": "yesterday"}, headers=auth)
    assert bad.status_code == 422 and "started_at" in bad.json["error"]["fields"]
    missing = client.patch("/components/shop/incidents/nope", json={}, headers=auth)
    assert missing.status_code == 404
    assert client.post("/components/shop/incidents", json=body).status_code == 401


def test_restarted_process_serves_the_same_values(
    client: Any, auth: dict[str, str], settings: Any
) -> None:
    deploy(client, auth, "v1", 3)
    deploy(client, auth, "v2", 2)
    deploy(client, auth, "v1", 1)
    fresh = build_registry(settings, process_metrics=False)  # a new process: an empty cache
    ratio = fresh.get_sample_value(
        "releasebits_dora_change_failure_ratio",
        {"component": "shop", "stage": "production", "window": "7d"},
    )
    assert ratio == pytest.approx(1 / 3)


def test_dora_badges(client: Any, auth: dict[str, str]) -> None:
    deploy(client, auth, "v1", 20, host="a", commits=[{"sha": "a", "timestamp": iso(22)}])
    deploy(client, auth, "v1", 19.9, host="b")
    deploy(client, auth, "v2", 10)
    deploy(client, auth, "v1", 9.5)  # rollback: v2 failed, recovered in 12 hours
    deploy(client, auth, "v3", 3)

    def badge(kind: str, query: str = "") -> Any:
        resp = client.get(f"/badges/components/shop/{kind}.json{query}")
        assert resp.status_code == 200
        return (resp.json["label"], resp.json["message"], resp.json["color"])

    assert badge("lead-time") == ("lead time", "2 days", "green")
    assert badge("change-failure-rate") == ("change failure rate", "25%", "yellow")
    assert badge("recovery-time") == ("recovery time", "12 hours", "green")
    assert badge("deployments", "?period=month") == ("deployments", "4/month", "blue")
    assert badge("change-failure-rate", "?period=week")[1] == "0%"
    assert badge("recovery-time", "?period=week")[1] == "no data"
    assert badge("lead-time", "?stage=staging")[1] == "not found"
