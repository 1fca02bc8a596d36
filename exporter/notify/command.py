"""The `releasebits notify deployment|build` commands (registered by exporter.cli)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from exporter.errors import ValidationError
from exporter.names import normalize_slug, version_of
from exporter.notify.ci import CIContext, detect
from exporter.notify.client import build_notice, idempotency_key, send

EXIT_NOT_RECORDED = 1


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--component", help="Component slug. Default: the repository's name."),
        click.option(
            "--version", "version_", help="Default: the tag, else the commit's first 12 characters."
        ),
        click.option(
            "--result",
            help="success, failed, cancelled, ... Default: the CI's job status where it has one, else success.",
        ),
        click.option("--commit", help="Commit SHA. Default: the CI's."),
        click.option("--branch", help="Default: the CI's branch."),
        click.option("--tag", help="Default: the CI's tag."),
        click.option(
            "--started-at",
            help="ISO 8601. Default: the CI job's start where the CI tells it (GitLab).",
        ),
        click.option("--finished-at", help="ISO 8601. Default: when ReleaseBits receives it."),
        click.option(
            "--meta", multiple=True, metavar="KEY=VALUE", help="Extra meta_data (repeatable)."
        ),
        click.option(
            "--idempotency-key",
            help="Default: derived from the CI run, so a retried job counts once.",
        ),
        click.option(
            "--url",
            "base_url",
            envvar="RELEASEBITS_URL",
            show_envvar=True,
            help="ReleaseBits' base URL.",
        ),
        click.option(
            "--retry-for",
            type=click.FloatRange(0, 3600),
            default=60.0,
            show_default=True,
            help="Seconds to keep retrying while ReleaseBits is down or answers 5xx.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(0.1, 300),
            default=10.0,
            show_default=True,
            help="Seconds per attempt.",
        ),
        click.option(
            "--strict",
            is_flag=True,
            help="Exit 1 when the event could not be recorded (default: warn, exit 0).",
        ),
        click.option("--dry-run", is_flag=True, help="Print the request instead of sending it."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.group(short_help="Record this pipeline's deployment or build.")
def notify() -> None:
    """Record this pipeline's deployment or build (reads RELEASEBITS_URL, RELEASEBITS_TOKEN
    and the CI's own variables: GitHub Actions, GitLab CI, Jenkins, CircleCI, Buildkite, Azure
    Pipelines, Bitbucket Pipelines)."""


@notify.command()
@_common
@click.option(
    "--stage", help="Default: the CI's environment name, else the server's default_stage."
)
@click.option("--host", help="The host deployed to (one deployment per host).")
@click.option("--release", help="Name of a release to join.")
def deployment(**opts: Any) -> None:
    """Record a deployment of this pipeline's commit."""
    _run("deployment", opts)


@notify.command()
@_common
@click.option("--run-url", help="Link to the CI run. Default: the CI's.")
def build(**opts: Any) -> None:
    """Record a build of this pipeline's commit."""
    _run("build", opts)


def _fail(message: str, strict: bool) -> NoReturn:
    click.echo(f"releasebits: warning: {message}", err=True)
    if strict:
        sys.exit(EXIT_NOT_RECORDED)
    click.echo("releasebits: not failing the pipeline (use --strict to fail it)", err=True)
    sys.exit(0)


def _meta(pairs: tuple[str, ...], ci: CIContext, strict: bool) -> dict[str, str]:
    meta = {
        k: v
        for k, v in {
            "ci": ci.provider,
            "run_id": ci.run_id,
            "run_attempt": ci.attempt,
            "job": ci.job,
            "run_url": ci.run_url,
        }.items()
        if v
    }
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            _fail(f"--meta {pair!r}: expected KEY=VALUE", strict)
        meta[key] = value
    return meta


def _component(opts: dict[str, Any], ci: CIContext) -> str:
    raw = opts["component"] or (ci.repository or "").rstrip("/").rsplit("/", 1)[-1]
    if not raw:
        _fail("no --component given and no repository name in the CI's environment", opts["strict"])
    try:
        return normalize_slug(raw)
    except ValidationError as exc:
        _fail(f"--component: {exc}", opts["strict"])


def _body(kind: str, opts: dict[str, Any], ci: CIContext) -> dict[str, Any]:
    tag = opts["tag"] or ci.tag
    commit = opts["commit"] or ci.commit
    body: dict[str, Any] = {
        "version": version_of(opts["version_"], tag, commit),
        "result": opts["result"] or ci.result,
        "commit_sha": commit,
        "branch": opts["branch"] or (None if opts["tag"] else ci.branch),
        "tag": tag,
        "started_at": opts["started_at"] or ci.started_at,
        "finished_at": opts["finished_at"],
        "meta_data": _meta(opts["meta"], ci, opts["strict"]),
    }
    if kind == "deployment":
        body.update(
            stage=opts["stage"] or ci.environment, host=opts["host"], release=opts["release"]
        )
    else:
        body["url"] = opts["run_url"] or ci.run_url
    return body


def _run(kind: str, opts: dict[str, Any]) -> None:
    ci = detect(os.environ)
    component = _component(opts, ci)
    body = _body(kind, opts, ci)
    if body["version"] is None:
        _fail("no --version given and no tag or commit in the CI's environment", opts["strict"])
    key = opts["idempotency_key"] or idempotency_key(ci, kind, component, body.get("stage"))
    token = os.environ.get("RELEASEBITS_TOKEN", "").strip()
    notice = build_notice(
        opts["base_url"] or "http://releasebits.invalid", token, kind, component, body, key
    )
    if opts["dry_run"]:
        click.echo(notice.shown())
        return
    if not opts["base_url"]:
        _fail("RELEASEBITS_URL is not set (or pass --url)", opts["strict"])
    if not token:
        _fail("RELEASEBITS_TOKEN is not set (a token with the write scope)", opts["strict"])
    sent = send(notice, retry_for=opts["retry_for"], timeout=opts["timeout"])
    if not sent.ok:
        _fail(f"the {kind} was not recorded: {sent.message}", opts["strict"])
    where = f" to {body['stage']}" if body.get("stage") else ""
    click.echo(f"releasebits: {kind} of {component} {body['version']}{where}: {sent.message}")
