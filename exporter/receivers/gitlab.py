"""GitLab webhooks: Deployment Hook -> deployments, Pipeline Hook -> builds, Push Hook -> commits.

Facts (reference/ci-webhooks-and-dora.md section 2): `X-Gitlab-Token` is the plain secret; a
signing token adds Standard Webhooks `webhook-id`/`webhook-timestamp`/`webhook-signature`;
`Idempotency-Key` is the same across retries; a Deployment Hook fires on running, success,
failed and canceled, carries no full SHA (the tail of `commit_url` is one) and a non-ISO
`status_changed_at`; a Push Hook lists the newest 20 commits. Any 4xx answer makes GitLab
disable the hook for good, so whatever cannot be used is answered 202.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from exporter.errors import ConfigError
from exporter.forwarding.targets.webhook import check_secret
from exporter.names import version_of
from exporter.receivers.base import (
    ZERO_SHA,
    Action,
    CommitsAction,
    EventAction,
    FeedMapping,
    Ignore,
    Inbound,
    Invalid,
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

DEPLOYMENT_RESULTS = {"success": "success", "failed": "failed", "canceled": "canceled"}
PIPELINE_FINAL = ("success", "failed", "canceled", "skipped")
_COMMIT_URL = re.compile(r"/commit/([0-9a-fA-F]{7,64})/?$")
_EVENTS = {"Deployment Hook": "deployment", "Pipeline Hook": "pipeline", "Push Hook": "push"}


@dataclass(frozen=True)
class GitLabReceiver(Receiver):
    kind: ClassVar[str] = "gitlab"
    keys: ClassVar[tuple[str, ...]] = ("token_env", "signing_token_env", "components", "stages")
    events: ClassVar[tuple[str, ...]] = ("deployment", "pipeline", "push")

    token: str = field(default="", repr=False)
    signing_token: str = field(default="", repr=False)
    mapping: FeedMapping = field(default_factory=FeedMapping)

    @classmethod
    def from_table(cls, t: Table, environ: Mapping[str, str]) -> GitLabReceiver:
        if "token_env" not in t.data and "signing_token_env" not in t.data:
            raise ConfigError(f"{t.name('token_env')}: required (or signing_token_env)")
        token = t.secret("token_env", environ, required=False)
        signing = t.secret("signing_token_env", environ, required=False)
        problem = check_secret(signing) if signing else None
        if problem:
            raise ConfigError(
                f"{t.name('signing_token_env')}: the value of {t.data['signing_token_env']} "
                f"{problem}"
            )
        return cls(token, signing, parse_mapping(t))

    def event_label(self, headers: Mapping[str, str]) -> str:
        return self.label(_EVENTS.get(headers.get("x-gitlab-event", "").strip(), ""))

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> None:
        if self.token:
            sent = headers.get("x-gitlab-token")
            if not sent:
                raise Unauthorized("missing_token", "X-Gitlab-Token is missing")
            if not hmac.compare_digest(sent.encode(), self.token.encode()):
                raise Unauthorized("invalid_token", "X-Gitlab-Token does not match")
        if self.signing_token:
            try:
                Webhook(self.signing_token).verify(body, dict(headers), json_parse=False)
            except (WebhookVerificationError, ValueError) as exc:
                raise Unauthorized("invalid_signature", f"webhook-signature: {exc}") from None

    def read(self, headers: Mapping[str, str], body: bytes) -> Inbound:
        event = headers.get("x-gitlab-event", "").strip()
        if not event:
            raise Invalid("missing_event", "the X-Gitlab-Event header is missing")
        payload = json_object(body)
        label = self.label(_EVENTS.get(event, ""))
        delivery = headers.get("idempotency-key")
        if not delivery and headers.get("x-gitlab-event-uuid"):
            delivery = f"{headers['x-gitlab-event-uuid']}:{event}"
        return Inbound(label, delivery, self.parse(label, event, payload))

    def handlers(self) -> Mapping[str, Callable[[dict[str, Any]], Action]]:
        return {"deployment": self.deployment, "pipeline": self.pipeline, "push": self.push}

    def component(self, payload: dict[str, Any]) -> tuple[str, str]:
        """(component, project id) of a payload's project."""
        return owner(self.mapping, payload, "project", "path_with_namespace")

    def deployment(self, payload: dict[str, Any]) -> EventAction:
        status = required(payload, "status", "status").lower()
        if status != "running" and status not in DEPLOYMENT_RESULTS:
            raise Ignore(f"deployment status {status[:32]!r} is neither running nor finished")
        component, project = self.component(payload)
        ident = text(payload, "deployment_id")
        if ident is None and text(payload, "deployable_id") is not None:
            ident = f"job-{payload['deployable_id']}"
        if ident is None:
            raise Ignore("the payload has no `deployment_id` or `deployable_id`")
        match = _COMMIT_URL.search(text(payload, "commit_url") or "")
        sha = match[1] if match else text(payload, "short_sha")
        at = iso_time(payload.get("status_changed_at"), "status_changed_at")
        fields: dict[str, Any] = {
            "version": version_of(None, None, sha),
            "stage": self.mapping.stage(text(payload, "environment")),
            "result": DEPLOYMENT_RESULTS.get(status),
            "commit_sha": sha,
            "meta_data": {
                "gitlab_project": payload["project"].get("path_with_namespace"),
                "gitlab_deployment": ident,
                **(
                    {"job_url": payload["deployable_url"]}
                    if text(payload, "deployable_url")
                    else {}
                ),
            },
        }
        fields["started_at" if status == "running" else "finished_at"] = at
        key = f"gitlab:deployment:{project}:{ident}"
        return EventAction("deployment", component, fields, key, final=status != "running")

    def pipeline(self, payload: dict[str, Any]) -> EventAction:
        attrs = obj(payload, "object_attributes")
        status = required(attrs, "status", "object_attributes.status").lower()
        if status not in PIPELINE_FINAL:
            raise Ignore(f"pipeline {status[:32]}: only finished pipelines are builds")
        component, project = self.component(payload)
        ident = required(attrs, "id", "object_attributes.id")
        finished = iso_time(attrs.get("finished_at"), "object_attributes.finished_at")
        ref, sha = text(attrs, "ref"), text(attrs, "sha")
        tag = ref if attrs.get("tag") is True else None
        created = attrs.get("created_at")
        fields = {
            "version": version_of(None, tag, sha),
            "result": status,
            "started_at": iso_time(created, "object_attributes.created_at") if created else None,
            "finished_at": finished,
            "commit_sha": sha,
            "branch": None if tag else ref,
            "tag": tag,
            "url": text(attrs, "url"),
            "meta_data": {
                "gitlab_project": payload["project"].get("path_with_namespace"),
                "pipeline_id": ident,
            },
        }
        # A retried pipeline keeps its id and finishes again: each finish is one build attempt.
        return EventAction(
            "build", component, fields, f"gitlab:pipeline:{project}:{ident}:{finished}"
        )

    def push(self, payload: dict[str, Any]) -> CommitsAction:
        component, _ = self.component(payload)
        commits = payload.get("commits")
        before = text(payload, "before")
        complete = isinstance(commits, list) and payload.get("total_commits_count") == len(commits)
        first_parent = before if complete and before != ZERO_SHA else None
        chain = commit_chain(commits, first_parent, branch_of(text(payload, "ref")), "commits")
        return CommitsAction(component, chain)
