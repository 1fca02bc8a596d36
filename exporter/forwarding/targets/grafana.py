"""Grafana annotations: `POST {url}/api/annotations` with a service-account token.

Reference: upstream-apis.md section 7. `time`/`timeEnd` are epoch milliseconds (a region from
started_at to finished_at); tags select the annotation on dashboards; 400 is permanent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from exporter.forwarding.targets.base import Event, Outbound, Target, epoch_ms, json_body, short_sha
from exporter.settings import Table


@dataclass(frozen=True)
class GrafanaTarget(Target):
    kind: ClassVar[str] = "grafana"
    keys: ClassVar[tuple[str, ...]] = (
        "url",
        "token_env",
        "dashboard_uid",
        "panel_id",
        "org_id",
        "tags",
    )

    url: str = ""
    token: str = field(default="", repr=False)
    dashboard_uid: str | None = None
    panel_id: int | None = None
    org_id: int | None = None
    tags: tuple[str, ...] = ()

    @classmethod
    def from_table(cls, t: Table, common: dict[str, Any], environ: Mapping[str, str]) -> Target:
        return cls(
            **common,
            url=t.exact_url("url").rstrip("/"),
            token=t.secret("token_env", environ),
            dashboard_uid=t.optional_text("dashboard_uid"),
            panel_id=t.optional_int("panel_id"),
            org_id=t.optional_int("org_id"),
            tags=t.texts("tags"),
        )

    def secrets(self) -> tuple[str, ...]:
        return (self.token,)

    def build_requests(self, event: Event, delivery_id: str) -> list[Outbound]:
        data = event.data
        version = str(data["version"])
        stage = data.get("stage") or ""
        finished = epoch_ms(data["finished_at"])
        started = epoch_ms(data.get("started_at")) or finished
        sha = short_sha(data.get("commit_sha"))
        result = data.get("result_class") or "success"
        if event.kind == "deployment":
            verb = "Deployed" if result == "success" else f"Deployment {result}:"
            text = f"{verb} {event.component} {version} to {stage}"
            tags = ["deploy", f"component:{event.component}", f"stage:{stage}"]
        else:
            verb = "Built" if result == "success" else f"Build {result}:"
            text = f"{verb} {event.component} {version}"
            tags = ["build", f"component:{event.component}"]
        if sha:
            text += f" ({sha})"
        tags += [f"version:{version}", f"result:{result}", *self.tags]
        body: dict[str, object] = {"time": started, "timeEnd": finished, "tags": tags, "text": text}
        if self.dashboard_uid:
            body["dashboardUID"] = self.dashboard_uid
            if self.panel_id is not None:
                body["panelId"] = self.panel_id
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        if self.org_id is not None:
            headers["X-Grafana-Org-Id"] = str(self.org_id)
        return [
            Outbound("POST", f"{self.url}/api/annotations", headers, json_body(body), "annotation")
        ]
