"""GitHub webhooks: deployment_status -> deployments, workflow_run -> builds, push -> commits.

Facts (reference/ci-webhooks-and-dora.md section 1): `X-Hub-Signature-256: sha256=<hex
HMAC-SHA256(secret, raw body)>`; `X-GitHub-Delivery` is the same on a redelivery; a deployment
goes through queued/pending/in_progress/waiting to success/failure/error, and `inactive` is set on
older deployments of an environment; a re-run keeps the run id and bumps `run_attempt`.
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from exporter.names import tag_of, version_of
from exporter.receivers.base import (
    ZERO_SHA,
    Action,
    CommitsAction,
    EventAction,
    FeedMapping,
    Ignore,
    Inbound,
    Invalid,
    Pong,
    Receiver,
    Unauthorized,
    branch_of,
    commit_chain,
    iso_time,
    json_object,
    obj,
    owner,
    parse_mapping,
    required,
    text,
)
from exporter.settings import Table

START_STATES = ("queued", "pending", "in_progress", "waiting")
FINAL_STATES = ("success", "failure", "error")


def signature(secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class GitHubReceiver(Receiver):
    kind: ClassVar[str] = "github"
    keys: ClassVar[tuple[str, ...]] = (
        "secret_env",
        "previous_secret_env",
        "components",
        "stages",
        "builds",
    )
    events: ClassVar[tuple[str, ...]] = ("ping", "deployment_status", "workflow_run", "push")

    secrets: tuple[str, ...] = field(repr=False)
    mapping: FeedMapping = field(default_factory=FeedMapping)
    builds: tuple[str, ...] = ()  # workflow file names or names; empty: every workflow

    @classmethod
    def from_table(cls, t: Table, environ: Mapping[str, str]) -> GitHubReceiver:
        secrets = [t.secret("secret_env", environ)]
        if "previous_secret_env" in t.data:
            secrets.append(t.secret("previous_secret_env", environ))
        return cls(tuple(secrets), parse_mapping(t), t.texts("builds"))

    def event_label(self, headers: Mapping[str, str]) -> str:
        return self.label(headers.get("x-github-event", ""))

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> None:
        sent = headers.get("x-hub-signature-256")
        if not sent:
            raise Unauthorized(
                "missing_signature",
                "X-Hub-Signature-256 is missing: set the webhook's secret in GitHub",
            )
        # compare_digest for every secret (current and previous, during a rotation).
        matches = [
            hmac.compare_digest(sent.encode(), signature(s, body).encode()) for s in self.secrets
        ]
        if not any(matches):
            raise Unauthorized("invalid_signature", "X-Hub-Signature-256 does not match the secret")

    def read(self, headers: Mapping[str, str], body: bytes) -> Inbound:
        event = headers.get("x-github-event", "").strip()
        if not event:
            raise Invalid("missing_event", "the X-GitHub-Event header is missing")
        payload = json_object(body, headers.get("content-type", ""))
        label = self.label(event)
        delivery = headers.get("x-github-delivery")
        return Inbound(label, delivery, self.parse(label, event, payload))

    def handlers(self) -> Mapping[str, Callable[[dict[str, Any]], Action]]:
        return {
            "ping": lambda _payload: Pong(),
            "deployment_status": self.deployment_status,
            "workflow_run": self.workflow_run,
            "push": self.push,
        }

    def component(self, payload: dict[str, Any]) -> tuple[str, str]:
        """(component, repository id) of a payload's repository."""
        return owner(self.mapping, payload, "repository", "full_name")

    def deployment_status(self, payload: dict[str, Any]) -> EventAction:
        status = obj(payload, "deployment_status")
        deployment = obj(payload, "deployment")
        state = required(status, "state", "deployment_status.state").lower()
        if state == "inactive":
            raise Ignore("inactive: GitHub marks older deployments of an environment inactive")
        if state not in START_STATES + FINAL_STATES:
            raise Ignore(f"deployment state {state[:32]!r} is not one ReleaseBits knows")
        component, repo = self.component(payload)
        deployment_id = required(deployment, "id", "deployment.id")
        stage = self.mapping.stage(text(deployment, "environment") or text(status, "environment"))
        sha, ref = text(deployment, "sha"), text(deployment, "ref")
        tag = tag_of(ref)
        extra = deployment.get("payload")
        own = text(extra, "version") if isinstance(extra, dict) else None
        at = iso_time(
            status.get("created_at") or status.get("updated_at"), "deployment_status.created_at"
        )
        fields: dict[str, Any] = {
            "version": version_of(own, tag, sha),
            "result": state,
            "stage": stage,
            "commit_sha": sha,
            "tag": tag,
            "branch": ref if ref and not tag and ref != sha else None,
            "meta_data": {
                "github_deployment_id": deployment_id,
                "repository": payload["repository"].get("full_name"),
                **({"log_url": status["log_url"]} if text(status, "log_url") else {}),
            },
        }
        fields["started_at" if state in START_STATES else "finished_at"] = at
        key = f"github:deployment:{repo}:{deployment_id}"
        return EventAction("deployment", component, fields, key, final=state in FINAL_STATES)

    def workflow_run(self, payload: dict[str, Any]) -> EventAction:
        action = text(payload, "action")
        if action != "completed":
            raise Ignore(f"workflow_run {str(action)[:32]}: only completed runs are builds")
        run = obj(payload, "workflow_run")
        names = {text(run, "path") or "", text(run, "name") or ""}
        names |= {posixpath.basename(n) for n in names}
        workflow = payload.get("workflow")
        if isinstance(workflow, dict):
            names.add(text(workflow, "name") or "")
        if self.builds and not names & set(self.builds):
            raise Ignore(f"workflow {text(run, 'path')!r} is not in [receivers.github] builds")
        component, repo = self.component(payload)
        run_id = required(run, "id", "workflow_run.id")
        attempt = text(run, "run_attempt") or "1"
        sha, branch = text(run, "head_sha"), text(run, "head_branch")
        tag = tag_of(branch)
        fields = {
            "version": version_of(None, tag, sha),
            "result": required(run, "conclusion", "workflow_run.conclusion"),
            "started_at": iso_time(
                run.get("run_started_at") or run.get("created_at"), "workflow_run.run_started_at"
            ),
            "finished_at": iso_time(run.get("updated_at"), "workflow_run.updated_at"),
            "commit_sha": sha,
            "branch": None if tag else branch,
            "tag": tag,
            "url": text(run, "html_url"),
            "meta_data": {"workflow": text(run, "path"), "run_id": run_id, "run_attempt": attempt},
        }
        return EventAction("build", component, fields, f"github:run:{repo}:{run_id}:{attempt}")

    def push(self, payload: dict[str, Any]) -> CommitsAction:
        if payload.get("deleted") is True:
            raise Ignore("the push deleted a ref")
        component, _ = self.component(payload)
        before = text(payload, "before")
        first_parent = None if payload.get("created") is True or before == ZERO_SHA else before
        ref = text(payload, "ref")
        commits = commit_chain(payload.get("commits"), first_parent, branch_of(ref), "commits")
        return CommitsAction(component, commits)
