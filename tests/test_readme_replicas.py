"""README "Running more than one replica": the Kubernetes example says what the text promises
(2 replicas, one Service in front, readiness on /healthz riding out a takeover, the database URL
and the instance name from the pod), and every setting it names exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from exporter.settings import SETTINGS, Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("### Running more than one replica")
    return text[start : text.index("\n## ", start)]


def manifests() -> dict[str, Any]:
    block = re.search(r"```yaml\n(.*?)```", section(), re.S)
    assert block is not None
    return {doc["kind"]: doc for doc in yaml.safe_load_all(block.group(1))}


def test_the_kubernetes_example_runs_two_replicas_behind_one_service() -> None:
    docs = manifests()
    deployment, service = docs["Deployment"], docs["Service"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"] == pod_labels == service["spec"]["selector"]
    (container,) = spec["template"]["spec"]["containers"]
    assert container["args"] == ["serve"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": Settings().port}
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    env = {e["name"]: e for e in container["env"]}
    assert env["RELEASEBITS_DB"]["value"].startswith("postgresql://")
    assert env["RELEASEBITS_HOST"]["value"] == "0.0.0.0"
    assert "secretKeyRef" in env["PGPASSWORD"]["valueFrom"]
    assert env["RELEASEBITS_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    known = {s.env for s in SETTINGS}
    assert {n for n in env if n.startswith("RELEASEBITS_")} <= known

    probe = container["readinessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "http"}
    # /healthz is 503 on every replica while no worker beats (3 heartbeats + 5 s); a takeover
    # ends within 4 heartbeats + 5 s: the probe must tolerate that long a failure.
    heartbeat = Settings().worker_heartbeat_seconds
    assert probe["periodSeconds"] * probe["failureThreshold"] > 4 * heartbeat + 5


def test_the_takeover_bound_the_readme_states_is_the_lease_the_code_takes() -> None:
    """A standby retries every heartbeat and the lease lasts `worker_stale_seconds` after its
    last renewal: the README's bound (tests/e2e/test_replicas.py measures it) is their sum."""
    settings = Settings()
    heartbeat = settings.worker_heartbeat_seconds
    assert settings.worker_stale_seconds == 3 * heartbeat + 5
    bound = settings.worker_stale_seconds + heartbeat
    assert "within 4 \N{MULTIPLICATION SIGN} `worker_heartbeat_seconds` + 5 s" in section()
    assert f"({bound} s by default" in section()
