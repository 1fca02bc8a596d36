"""Bugsnag release health: fetch release groups and project targets, parse stability records."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin

import requests

from exporter.errors import ConfigError, PollError
from exporter.http import retry_after_seconds
from exporter.pollers.client import (
    Clock,
    JsonClient,
    Params,
    PollResult,
    Sleep,
    epoch_seconds,
    same_origin,
)
from exporter.settings import Table
from storage.release_health import HealthRow, Target

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class BugsnagSource:
    """One configured set of Bugsnag projects to poll through the Data Access API v2."""

    name: str
    token: str = field(repr=False)  # personal auth token
    project_ids: tuple[str, ...]
    release_stages: tuple[str, ...] = ("production",)
    base_url: str = "https://api.bugsnag.com"  # Insight Hub: https://api.bugsnag.smartbear.com
    per_page: int = 10  # release groups per page
    max_pages: int = 20  # per project and stage; further pages are left for another day

    def project_url(self, project_id: str) -> str:
        return f"{self.base_url.rstrip('/')}/projects/{quote(project_id, safe='')}"


@dataclass(frozen=True)
class BugsnagReleaseHealth:
    """Stability of one release group (an app version) in one release stage of a project.

    The session and user fields come only with stability monitoring; None means no data.
    """

    project_id: str
    release_stage: str
    app_version: str
    release_group_id: str | None
    first_released_at: str | None  # ISO 8601, as Bugsnag sent it
    released_at: float | None  # the same as Unix seconds, None when absent or unreadable
    total_sessions: int | None
    unhandled_sessions: int | None
    users_seen: int | None
    users_with_unhandled: int | None
    crash_free_sessions: float | None  # 1 - unhandled/total, 0..1; None without data
    crash_free_users: float | None

    @property
    def sessions_by_status(self) -> dict[str, int]:
        """Unhandled sessions in the `status` shape the Sentry records use, when known."""
        return {} if self.unhandled_sessions is None else {"unhandled": self.unhandled_sessions}

    def row(self, source: str) -> HealthRow:
        return HealthRow(
            source=source,
            project=self.project_id,
            environment=self.release_stage,
            release=self.app_version,
            total_sessions=self.total_sessions,
            users=self.users_seen,
            crash_free_sessions=self.crash_free_sessions,
            crash_free_users=self.crash_free_users,
            sessions_by_status=self.sessions_by_status,
            released_at=self.released_at,
        )


@dataclass(frozen=True)
class BugsnagProjectTargets:
    """A project's stability target and critical threshold, proportions 0..1."""

    project_id: str
    target_type: str | None  # "user" or "session"
    target_stability: float | None
    critical_stability: float | None

    def target(self, source: str) -> Target:
        return Target(
            source,
            self.project_id,
            self.target_type,
            self.target_stability,
            self.critical_stability,
        )


@dataclass(frozen=True)
class BugsnagPayloads:
    """Raw answers: project objects by id, and release groups by (project id, release stage)."""

    projects: dict[str, Any]
    release_groups: dict[tuple[str, str], list[Any]]
    requests: int


def fetch_releases(
    session: requests.Session,
    source: BugsnagSource,
    *,
    sleep: Sleep = time.sleep,
    now: Clock = time.time,
) -> BugsnagPayloads:
    """Each project, then its release groups in each release stage, every page."""
    client = JsonClient(
        session=session,
        service="Bugsnag",
        headers={
            "Authorization": f"token {source.token}",
            "X-Version": "2",
            "Accept": "application/json",
        },
        secret=source.token,
        rate_limit_wait=lambda response: retry_after_seconds(response, now),
        sleep=sleep,
        auth_hint=(
            "; check the personal auth token"
            + (
                ' (an Insight Hub account? set base_url = "https://api.bugsnag.smartbear.com")'
                if source.base_url == "https://api.bugsnag.com"
                else ""
            )
        ),
    )
    projects: dict[str, Any] = {}
    release_groups: dict[tuple[str, str], list[Any]] = {}
    for project_id in source.project_ids:
        url = source.project_url(project_id)
        not_found = f"unknown project {project_id!r}"
        projects[project_id] = client.get_json(url, not_found=not_found)
        for stage in source.release_stages:
            params = [("release_stage_name", stage), ("per_page", str(source.per_page))]
            release_groups[project_id, stage] = _fetch_all(
                client, source, url + "/release_groups", params, not_found
            )
    return BugsnagPayloads(
        projects=projects, release_groups=release_groups, requests=client.request_count
    )


def parse_release_groups(
    project_id: str, payload_list: Any, *, release_stage: str | None = None
) -> list[BugsnagReleaseHealth]:
    """Records from a list of release groups; pure. `release_stage` fills in a missing stage."""
    if not isinstance(payload_list, list):
        raise PollError(f"Bugsnag release groups are not a list: {payload_list!r:.200}")
    records: dict[tuple[str, str], BugsnagReleaseHealth] = {}
    for group in payload_list:
        if not isinstance(group, dict):
            raise PollError(f"Bugsnag release group is not an object: {group!r:.200}")
        app_version = group.get("app_version")
        stage = group.get("release_stage_name") or release_stage
        if not isinstance(app_version, str) or not app_version or not isinstance(stage, str):
            log.debug("Bugsnag release group without version or stage skipped: %.200r", group)
            continue
        if (stage, app_version) in records:  # pages can overlap when groups shift in between
            continue
        total = _count(group, "total_sessions_count")
        unhandled = _count(group, "unhandled_sessions_count")
        users = _count(group, "accumulative_daily_users_seen")
        users_unhandled = _count(group, "accumulative_daily_users_with_unhandled")
        first_released_at = group.get("first_released_at")
        first_released_at = first_released_at if isinstance(first_released_at, str) else None
        group_id = group.get("id")
        records[stage, app_version] = BugsnagReleaseHealth(
            project_id=project_id,
            release_stage=stage,
            app_version=app_version,
            release_group_id=group_id if isinstance(group_id, str) else None,
            first_released_at=first_released_at,
            released_at=epoch_seconds(first_released_at),
            total_sessions=total,
            unhandled_sessions=unhandled,
            users_seen=users,
            users_with_unhandled=users_unhandled,
            crash_free_sessions=_stability(unhandled, total),
            crash_free_users=_stability(users_unhandled, users),
        )
    return list(records.values())


def parse_project(payload: Any, *, project_id: str | None = None) -> BugsnagProjectTargets:
    """The stability targets of a project object; pure. `project_id` overrides the payload's id."""
    if not isinstance(payload, dict):
        raise PollError(f"Bugsnag project is not an object: {payload!r:.200}")
    pid = project_id or payload.get("id")
    if not isinstance(pid, str) or not pid:
        raise PollError("Bugsnag project has no id")
    target_type = payload.get("stability_target_type")
    return BugsnagProjectTargets(
        project_id=pid,
        target_type=target_type if isinstance(target_type, str) else None,
        target_stability=_proportion(payload, "target_stability"),
        critical_stability=_proportion(payload, "critical_stability"),
    )


def poll(
    session: requests.Session,
    source: BugsnagSource,
    *,
    sleep: Sleep = time.sleep,
    now: Clock = time.time,
    monotonic: Clock = time.monotonic,
) -> PollResult[BugsnagReleaseHealth, BugsnagProjectTargets]:
    """Fetch and parse one source; raises PollError, which the job records as source_up=0."""
    started = monotonic()
    payloads = fetch_releases(session, source, sleep=sleep, now=now)
    records = [
        record
        for (project_id, stage), groups in payloads.release_groups.items()
        for record in parse_release_groups(project_id, groups, release_stage=stage)
    ]
    targets = [parse_project(p, project_id=pid) for pid, p in payloads.projects.items()]
    return PollResult(
        source=source.name,
        records=tuple(records),
        targets=tuple(targets),
        projects=source.project_ids,
        requests=payloads.requests,
        duration_seconds=monotonic() - started,
    )


def _fetch_all(
    client: JsonClient, source: BugsnagSource, url: str, params: Params, not_found: str
) -> list[Any]:
    groups: list[Any] = []
    seen: set[str] = set()
    page_url: str = url
    page_params: Params | None = params
    for _ in range(source.max_pages):
        response = client.get(page_url, page_params, not_found=not_found)
        page = client.decode(response)
        if not isinstance(page, list):
            raise client.shape_error("expected a list of release groups", response)
        groups.extend(page)
        next_url = response.links.get("next", {}).get("url")
        if not next_url:
            break
        # Follow the next link as given (it carries page_token), but never send the token to
        # another host.
        next_url = urljoin(response.url, next_url)
        if not same_origin(next_url, source.base_url):
            raise client.shape_error(f"next page link leaves {source.base_url}", response)
        if next_url in seen:
            raise client.shape_error("next page link repeats", response)
        seen.add(next_url)
        page_url, page_params = next_url, None
    else:
        log.warning("Bugsnag release groups of %s truncated after %d pages", url, source.max_pages)
    return groups


def _count(group: dict[str, Any], name: str) -> int | None:
    value = group.get(name)
    if value is None:  # plans without stability monitoring leave the session fields out
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PollError(f"Bugsnag {name} is not a number: {value!r}")
    return int(value)


def _stability(bad: int | None, total: int | None) -> float | None:
    if bad is None or total is None or total <= 0:  # no data is not 0 % (nor 100 %)
        return None
    return min(1.0, max(0.0, 1.0 - bad / total))


def _proportion(payload: dict[str, Any], name: str) -> float | None:
    target = payload.get(name)
    if target is None:
        return None
    if not isinstance(target, dict):
        raise PollError(f"Bugsnag {name} is not an object: {target!r:.200}")
    value = target.get("value")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise PollError(f"Bugsnag {name}.value is not a proportion 0..1: {value!r}")
    return float(value)


TABLE_KEYS = ("name", "base_url", "token_env", "projects", "release_stages", "poll_interval")


def from_table(t: Table, name: str, environ: Mapping[str, str]) -> BugsnagSource:
    """A [[bugsnag]] table; every error names the setting."""
    projects = t.texts("projects")
    if not projects:
        raise ConfigError(f"{t.name('projects')}: required (Bugsnag project ids)")
    return BugsnagSource(
        name=name,
        token=t.secret("token_env", environ),
        project_ids=projects,
        release_stages=t.texts("release_stages", ("production",)),
        base_url=t.url("base_url", "https://api.bugsnag.com"),
    )
