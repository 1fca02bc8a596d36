"""Who leads, and a leader that may have lost its lease: the leader gauge and /healthz name the
lease holder, an expired lease names nobody, and a worker past its lease sends nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer

from exporter.worker import Worker
from storage import leases
from tests.exporter.forwarding.conftest import Forwarding

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def leader_samples(client: Any) -> dict[str, float]:
    text = client.get("/metrics").text
    return {
        s.labels["instance"]: s.value
        for f in text_string_to_metric_families(text)
        if f.name == "releasebits_worker_leader"
        for s in f.samples
    }


def test_the_lease_holder_is_named_by_metrics_and_healthz(
    httpserver: HTTPServer, forwarding: Callable[..., Forwarding]
) -> None:
    f = forwarding("", instance="pod-0")
    assert leader_samples(f.client) == {}  # nobody leads yet
    worker = Worker(f.settings)
    worker.schedule()
    worker.heartbeat()
    assert leader_samples(f.client) == {"pod-0": 1.0}
    assert f.client.get("/healthz").json["worker"]["leader"] == "pod-0"
    holder = leases.holder(f.db, leases.WORKER)
    assert holder is not None and holder.owner.startswith("pod-0/")  # unique per process
    # A lease that expired (its worker died, nobody took over yet) names nobody.
    with f.db.transaction():
        f.db.execute("UPDATE leases SET expires_at = ?", [time.time() - 1])
    assert leader_samples(f.client) == {}


def test_a_worker_past_its_lease_sends_nothing(
    httpserver: HTTPServer, forwarding: Callable[..., Forwarding]
) -> None:
    httpserver.expect_request("/hooks", method="POST").respond_with_data("", 204)
    f = forwarding(
        f'[[forward.webhook]]\nname = "hooks"\nurl = "{httpserver.url_for("/hooks")}"\n'
        'secret_env = "WEBHOOK_SECRET"\n',
        {"WEBHOOK_SECRET": SECRET},
    )
    worker = Worker(f.settings)
    worker.schedule()
    worker.heartbeat()
    assert worker.may_act()
    f.deploy()
    worker.lease_deadline = time.monotonic()  # no renewal for a whole lease: it may be gone
    assert not worker.may_act()
    assert worker.deliverer is not None
    assert worker.deliverer.run(f.db, budget=1) == 0
    assert len(httpserver.log) == 0
    assert [d["status"] for d in f.deliveries()] == ["pending"]  # left for the next leader
    worker.heartbeat()  # renewed: it sends again
    assert worker.deliverer.run(f.db, budget=1) == 1
    assert len(httpserver.log) == 1
