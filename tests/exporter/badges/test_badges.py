"""README badges: every badge parsed as SVG (XML), its text and colour after real API events."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from exporter.app import create_app
from exporter.badges import model as badges
from exporter.badges.svg import render_svg
from exporter.config import load_settings
from exporter.settings import ComponentMapping, Settings, SourceMapping
from storage import release_health, tokens

SVG = "{http://www.w3.org/2000/svg}"
GREY = "#9f9f9f"
GREEN = "#97ca00"
YELLOWGREEN = "#a4a61d"
BLUE = "#007ec6"
BRIGHTGREEN = "#4c1"
RED = "#e05d44"
YELLOW = "#dfb317"
ORANGE = "#fe7d37"
SCRIPT_VERSION = '"><script>alert(1)</script>'
# What shields.io accepts in an endpoint answer (https://shields.io/badges/endpoint-badge).
ENDPOINT_KEYS = {
    "schemaVersion",
    "label",
    "message",
    "color",
    "labelColor",
    "isError",
    "namedLogo",
    "logoSvg",
    "logoColor",
    "logoWidth",
    "style",
    "cacheSeconds",
}


@pytest.fixture
def settings(new_db: Callable[..., str]) -> Settings:
    """checkout's versions are released in Sentry project 1 as checkout@<version>."""
    return Settings(
        db=new_db(),
        components={
            "checkout": ComponentMapping(
                sources={"sentry": SourceMapping(project="1", release="checkout@{version}")}
            )
        },
    )


@dataclass
class Drawn:
    """What a person sees on a badge: its two texts, two colours and its height."""

    label: str
    message: str
    label_color: str
    color: str
    height: str
    width: float


def drawn(body: bytes) -> Drawn:
    root = ET.fromstring(body)  # raises on anything that is not well-formed XML
    assert root.tag == f"{SVG}svg"
    texts: list[str] = []
    for el in root.iter(f"{SVG}text"):
        if el.get("fill") == "#010101":  # the shadow copy under each text
            continue
        texts.append(el.text or "")
    clip_rects = {id(r) for c in root.iter(f"{SVG}clipPath") for r in c}
    fills = [
        r.get("fill", "")
        for r in root.iter(f"{SVG}rect")
        if id(r) not in clip_rects and not r.get("fill", "").startswith(("url(", "rgba("))
    ]
    assert len(texts) == 2, texts
    assert len(fills) == 2, fills
    return Drawn(
        texts[0], texts[1], fills[0], fills[1], root.get("height", ""), float(root.get("width", 0))
    )


@pytest.fixture(autouse=True)
def _fresh_render_cache() -> None:
    """render_svg caches per process: a badge drawn by an earlier test must not stand in for
    drawing this test's badge."""
    render_svg.cache_clear()


def get_badge(client: Any, path: str, **kwargs: Any) -> Drawn:
    resp = client.get(path, **kwargs)
    assert resp.status_code == 200, resp.data
    assert resp.headers["Content-Type"] == "image/svg+xml; charset=utf-8"
    return drawn(resp.data)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def ago(**delta: float) -> str:
    return iso(datetime.now(UTC) - timedelta(**delta))


def deploy(client: Any, auth: dict[str, str], slug: str = "checkout", **fields: Any) -> None:
    resp = client.post(f"/components/{slug}/deployments", json=fields, headers=auth)
    assert resp.status_code == 201, resp.get_json()


def build(client: Any, auth: dict[str, str], slug: str = "checkout", **fields: Any) -> None:
    resp = client.post(f"/components/{slug}/builds", json=fields, headers=auth)
    assert resp.status_code == 201, resp.get_json()


def store_health(db: Any, release: str, ratio: float | None, **kw: Any) -> None:
    row = release_health.HealthRow(
        source=kw.get("source", "sentry"),
        project=kw.get("project", "1"),
        environment=kw.get("environment", "production"),
        release=release,
        total_sessions=kw.get("sessions", 1000),
        users=100,
        crash_free_sessions=ratio,
        crash_free_users=ratio,
    )
    release_health.store_poll(db, row.source, [row], kw.get("targets", ()), duration=0.1)


# --- kinds ------------------------------------------------------------------------------------


def test_version_badge_shows_the_version_deployed_to_each_stage(client: Any, auth: Any) -> None:
    deploy(client, auth, version="v1.2.3", stage="production", host="web-1")
    deploy(client, auth, version="v1.3.0-rc.1", stage="staging")
    deploy(client, auth, version="v1.3.0-rc.2", stage="staging", result="failed")

    prod = get_badge(client, "/badges/components/checkout/version.svg")
    assert (prod.label, prod.message, prod.color) == ("production", "v1.2.3", BLUE)
    assert prod.label_color == "#555"
    staging = get_badge(client, "/badges/components/checkout/version.svg?stage=staging")
    assert (staging.label, staging.message) == ("staging", "v1.3.0-rc.1")  # the failed one isn't


@pytest.mark.parametrize(
    ("result", "message", "color"),
    [
        ("success", "passing", BRIGHTGREEN),
        ("failed", "failing", RED),
        ("timeout", "error", ORANGE),
        ("aborted", "cancelled", GREY),
        ("Flaky", "flaky", GREY),
    ],
)
def test_build_badge_shows_the_last_build_result(
    client: Any, auth: Any, result: str, message: str, color: str
) -> None:
    build(client, auth, version="41", result="success", finished_at=ago(hours=2))
    build(client, auth, version="42", result=result, finished_at=ago(hours=1))
    badge = get_badge(client, "/badges/components/checkout/build.svg")
    assert (badge.label, badge.message, badge.color) == ("build", message, color)


def test_crash_free_badge_is_coloured_against_the_target(
    client: Any, auth: Any, db: Any, app: Any
) -> None:
    deploy(client, auth, version="1.2.3")
    path = "/badges/components/checkout/crash-free.svg"
    assert get_badge(client, path).message == "no data"  # polled nothing yet

    for ratio, message, color in (
        (0.99523, "99.52%", BRIGHTGREEN),  # target 0.99 (crash_free_target)
        (0.985, "98.5%", YELLOW),  # within one more error budget
        (0.95, "95%", RED),
        (0.99999, "99.99%", BRIGHTGREEN),  # rounded down: never a perfect 100% that isn't
        (1.0, "100%", BRIGHTGREEN),
    ):
        store_health(db, "checkout@1.2.3", ratio)
        badge = get_badge(client, path)
        assert (badge.label, badge.message, badge.color) == ("crash-free", message, color)

    # A project's own stability target (Bugsnag has them) wins over crash_free_target.
    target = release_health.Target("sentry", "1", "stability", 0.999, 0.99)
    store_health(db, "checkout@1.2.3", 0.995, targets=[target])
    assert get_badge(client, path).color == RED

    assert get_badge(client, path + "?source=sentry").message == "99.5%"
    assert get_badge(client, path + "?source=bugsnag").message == "not found"
    # Another version deployed: the badge follows it, and it has no data yet.
    deploy(client, auth, version="1.2.4")
    assert get_badge(client, path).message == "no data"


def test_crash_free_without_a_mapping_is_no_data(client: Any, auth: Any) -> None:
    deploy(client, auth, "billing", version="7")
    badge = get_badge(client, "/badges/components/billing/crash-free.svg")
    assert (badge.message, badge.color) == ("no data", GREY)


@pytest.mark.parametrize(
    ("ratio", "message", "color"),
    [
        (0.99, "99%", BRIGHTGREEN),  # exactly at crash_free_target: on target
        (0.9899, "98.99%", YELLOW),
        (0.98, "98%", YELLOW),  # exactly one more error budget below: still yellow
        (0.9799, "97.99%", RED),
    ],
)
def test_crash_free_colour_boundaries(
    client: Any, auth: Any, db: Any, ratio: float, message: str, color: str
) -> None:
    deploy(client, auth, version="1.2.3")
    store_health(db, "checkout@1.2.3", ratio)
    badge = get_badge(client, "/badges/components/checkout/crash-free.svg")
    assert (badge.message, badge.color) == (message, color)


def test_deployments_badge_counts_versions_per_period(client: Any, auth: Any) -> None:
    for host in ("web-1", "web-2", "web-3"):  # one rollout recorded per host counts once
        deploy(client, auth, version="v3", host=host, finished_at=ago(hours=2))
    deploy(client, auth, version="v2", finished_at=ago(days=3))
    deploy(client, auth, version="v1", finished_at=ago(days=20))
    deploy(client, auth, version="v0", finished_at=ago(days=40))
    deploy(client, auth, version="v4", result="failed", finished_at=ago(hours=1))
    deploy(client, auth, version="s1", stage="staging", finished_at=ago(hours=1))

    base = "/badges/components/checkout/deployments.svg"
    week = get_badge(client, base)
    assert (week.label, week.message, week.color) == ("deployments", "2/week", BLUE)
    assert get_badge(client, base + "?period=day").message == "1/day"
    assert get_badge(client, base + "?period=month").message == "3/month"
    assert get_badge(client, base + "?stage=staging&period=day").message == "1/day"
    bad = get_badge(client, base + "?period=fortnight")
    assert (bad.message, bad.color) == ("invalid period", GREY)


def test_invalid_period_stays_a_grey_error_whatever_the_colour_override(
    client: Any, auth: Any
) -> None:
    deploy(client, auth, version="v1")
    path = "/badges/components/checkout/deployments"
    badge = get_badge(client, f"{path}.svg?period=fortnight&color=green")
    assert (badge.message, badge.color) == ("invalid period", GREY)
    doc = client.get(f"{path}.json?period=fortnight&color=green").get_json()
    assert (doc["message"], doc["color"], doc["isError"]) == ("invalid period", "lightgrey", True)


def test_deployments_badge_with_none_in_the_period_is_grey(client: Any, auth: Any) -> None:
    deploy(client, auth, version="v1", finished_at=ago(days=3))
    badge = get_badge(client, "/badges/components/checkout/deployments.svg?period=day")
    assert (badge.message, badge.color) == ("0/day", GREY)


@pytest.mark.parametrize(
    ("age", "message", "color"),
    [
        ({"seconds": 20}, "just now", BRIGHTGREEN),
        ({"hours": 3, "minutes": 5}, "3 hours ago", BRIGHTGREEN),
        ({"days": 1, "hours": 1}, "1 day ago", BRIGHTGREEN),
        ({"days": 15}, "2 weeks ago", GREEN),
        ({"days": 40}, "1 month ago", YELLOWGREEN),
        ({"days": 800}, "2 years ago", ORANGE),
    ],
)
def test_last_deploy_badge_says_how_long_ago(
    client: Any, auth: Any, age: dict[str, float], message: str, color: str
) -> None:
    deploy(client, auth, version="v1", finished_at=ago(**age))
    badge = get_badge(client, "/badges/components/checkout/last-deploy.svg")
    assert (badge.label, badge.message, badge.color) == ("last deploy", message, color)


@pytest.mark.parametrize(
    ("days", "message", "color"),
    [
        (7 - 1 / 86_400, "6 days ago", BRIGHTGREEN),
        (7, "1 week ago", GREEN),
        (30 - 1 / 86_400, "4 weeks ago", GREEN),
        (30, "1 month ago", YELLOWGREEN),
        (180 - 1 / 86_400, "5 months ago", YELLOWGREEN),
        (180, "6 months ago", YELLOW),
        (365 - 1 / 86_400, "12 months ago", YELLOW),
        (365, "1 year ago", ORANGE),
    ],
)
def test_last_deploy_colour_changes_exactly_at_7_30_180_and_365_days(
    client: Any, auth: Any, db: Any, settings: Settings, days: float, message: str, color: str
) -> None:
    finished = datetime(2024, 1, 1, tzinfo=UTC)
    deploy(client, auth, version="v1", finished_at=iso(finished))
    asked_at = finished.timestamp() + days * 86_400  # the clock a badge request reads
    badge = badges.component_badge(
        badges.Query(db, settings, {}, now=asked_at), "checkout", "last-deploy"
    )
    assert (badge.label, badge.message, badges.to_hex(badge.color)) == (
        "last deploy",
        message,
        color,
    )


def test_format_age_singular_and_future() -> None:
    assert badges.format_age(60) == "1 minute ago"
    assert badges.format_age(119) == "1 minute ago"
    assert badges.format_age(7200) == "2 hours ago"
    assert badges.format_age(-30) == "just now"  # finished_at slightly ahead of our clock


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30, "1 minute"),
        (90, "2 minutes"),
        (45 * 60, "45 minutes"),
        (3599, "60 minutes"),
        (3600, "1 hour"),
        (3600 * 1.04, "1 hour"),
        (5.5 * 3600, "5.5 hours"),
        (86_399, "24 hours"),
        (86_400, "1 day"),
        (3 * 86_400, "3 days"),
        (7 * 86_400, "1 week"),
        (15 * 86_400, "2.1 weeks"),
    ],
)
def test_dora_durations_read_in_one_unit(seconds: float, text: str) -> None:
    assert badges.format_duration(seconds) == text


DAY = 86_400
T0 = datetime(2024, 3, 1, tzinfo=UTC).timestamp()


def at(seconds: float) -> str:
    return iso(datetime.fromtimestamp(T0 + seconds, UTC))


def dora_badge(db: Any, settings: Settings, kind: str, asked_at: float) -> tuple[str, str, str]:
    badge = badges.component_badge(badges.Query(db, settings, {}, now=asked_at), "checkout", kind)
    return badge.label, badge.message, badge.color


@pytest.mark.parametrize(
    ("lead", "message", "color"),
    [
        (DAY, "1 day", "brightgreen"),
        (DAY + 1, "1 day", "green"),
        (7 * DAY, "1 week", "green"),
        (7 * DAY + 1, "1 week", "yellow"),
        (30 * DAY, "4.3 weeks", "yellow"),
        (30 * DAY + 1, "4.3 weeks", "red"),
    ],
)
def test_lead_time_colour_bands(
    client: Any, auth: Any, db: Any, settings: Settings, lead: float, message: str, color: str
) -> None:
    deploy(
        client,
        auth,
        version="v1",
        finished_at=at(0),
        commits=[{"sha": "a", "timestamp": at(-lead)}],
    )
    assert dora_badge(db, settings, "lead-time", T0 + 3600) == ("lead time", message, color)


@pytest.mark.parametrize(
    ("recovery", "message", "color"),
    [
        (3600, "1 hour", "brightgreen"),
        (3601, "1 hour", "green"),
        (DAY, "1 day", "green"),
        (DAY + 60, "1 day", "yellow"),
        (7 * DAY, "1 week", "yellow"),
        (7 * DAY + 60, "1 week", "red"),
    ],
)
def test_recovery_time_colour_bands(
    client: Any, auth: Any, db: Any, settings: Settings, recovery: float, message: str, color: str
) -> None:
    deploy(client, auth, version="v1", finished_at=at(-20 * DAY))
    deploy(client, auth, version="v2", finished_at=at(-10 * DAY))  # fails: v1 is rolled back to
    deploy(client, auth, version="v1", finished_at=at(-10 * DAY + recovery))
    assert dora_badge(db, settings, "recovery-time", T0) == ("recovery time", message, color)


def versions(*numbers: int) -> list[str]:
    return [f"v{n}" for n in numbers]


@pytest.mark.parametrize(
    ("rollouts", "message", "color"),
    [
        # Going back to an earlier version makes the one it replaces a change failure.
        (versions(*range(19), 17), "5%", "brightgreen"),  # 1 of 20
        (versions(*range(18), 16), "5%", "green"),  # 1 of 19: 5.3%
        (versions(0, 1, 2, 3, 2), "20%", "green"),
        (versions(0, 1, 2, 1), "25%", "yellow"),
        (versions(0, 1, 2, 1, 2), "40%", "yellow"),
        (versions(0, 1, 0, 1), "50%", "red"),
    ],
)
def test_change_failure_rate_colour_bands(
    client: Any,
    auth: Any,
    db: Any,
    settings: Settings,
    rollouts: list[str],
    message: str,
    color: str,
) -> None:
    for n, version in enumerate(rollouts):
        deploy(client, auth, version=version, finished_at=at(-DAY + n * 60))
    badge = dora_badge(db, settings, "change-failure-rate", T0)
    assert badge == ("change failure rate", message, color)


# --- not found, no data -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", badges.COMPONENT_KINDS)
def test_unknown_component_stage_and_missing_data_are_grey_badges(
    client: Any, auth: Any, kind: str
) -> None:
    deploy(client, auth, version="v1", stage="staging", result="failed")
    for path in (
        f"/badges/components/nope/{kind}.svg",
        f"/badges/components/Not%20A%20Slug!!/{kind}.svg",
        f"/badges/components/checkout/{kind}.svg?stage=qa",
        f"/badges/components/checkout/{kind}.svg?stage=..bad..",
        f"/badges/components/nope/{kind}.svg?color=green",  # no override turns "not found" green
    ):
        badge = get_badge(client, path)
        if kind == "build" and "checkout" in path:
            assert badge.message == "no data"  # builds have no stage; none recorded
        else:
            assert badge.message == "not found", path
        assert badge.color == GREY
    # Deployed to staging, never successfully: the stage exists, nothing runs there.
    if kind in ("version", "last-deploy", "crash-free"):
        badge = get_badge(client, f"/badges/components/checkout/{kind}.svg?stage=staging")
        assert (badge.message, badge.color) == ("no data", GREY)


def test_build_badge_without_builds_says_no_data(client: Any, auth: Any) -> None:
    deploy(client, auth, version="v1")  # the component exists; it has no build yet
    badge = get_badge(client, "/badges/components/checkout/build.svg")
    assert (badge.label, badge.message, badge.color) == ("build", "no data", GREY)


def test_long_stage_and_build_result_texts_are_cut(client: Any, auth: Any) -> None:
    build(client, auth, version="1", result="Flaky: retried 3 times, then gave up waiting")
    badge = get_badge(client, "/badges/components/checkout/build.svg")
    assert badge.message == "flaky: retried 3 times, then ga\u2026"  # 32 characters
    stage = "s" * 70
    badge = get_badge(client, f"/badges/components/checkout/version.svg?stage={stage}")
    assert (badge.label, badge.message) == ("s" * 63 + "\u2026", "not found")


def test_unknown_kind_is_a_404_that_is_still_a_badge(client: Any) -> None:
    resp = client.get("/badges/components/checkout/coverage.svg")
    assert resp.status_code == 404
    assert resp.headers["Content-Type"] == "image/svg+xml; charset=utf-8"
    badge = drawn(resp.data)
    assert (badge.label, badge.message, badge.color) == ("badge", "unknown kind", GREY)
    resp = client.get("/badges/components/checkout/coverage.json")
    assert resp.status_code == 404
    assert resp.get_json()["isError"] is True


# --- JSON endpoint ----------------------------------------------------------------------------


def test_json_answers_the_shields_endpoint_schema(client: Any, auth: Any, db: Any) -> None:
    deploy(client, auth, version="v9")
    build(client, auth, version="v9", result="failed")
    store_health(db, "checkout@v9", 0.9)
    for kind in badges.COMPONENT_KINDS:
        svg = drawn(client.get(f"/badges/components/checkout/{kind}.svg").data)
        resp = client.get(f"/badges/components/checkout/{kind}.json")
        assert resp.status_code == 200
        assert resp.mimetype == "application/json"
        doc = resp.get_json()
        assert set(doc) <= ENDPOINT_KEYS
        assert doc["schemaVersion"] == 1
        assert isinstance(doc["label"], str) and isinstance(doc["message"], str)
        assert (doc["label"], doc["message"]) == (svg.label, svg.message)  # same as the SVG
        assert badges.to_hex(doc["color"]) == svg.color
        assert doc["isError"] is False
        assert doc["cacheSeconds"] == 300
    assert client.get("/badges/components/checkout/build.json").get_json()["color"] == "red"
    assert client.get("/badges/components/checkout/version.json").get_json()["message"] == "v9"

    missing = client.get("/badges/components/nope/version.json").get_json()
    assert (missing["message"], missing["color"], missing["isError"]) == (
        "not found",
        "lightgrey",
        True,
    )
    styled = client.get(
        "/badges/components/checkout/version.json?style=for-the-badge&label=live&color=ff69b4"
    ).get_json()
    assert (styled["style"], styled["label"], styled["color"]) == (
        "for-the-badge",
        "live",
        "#ff69b4",
    )


# --- caching ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["svg", "json"])
def test_etag_and_304(client: Any, auth: Any, ext: str) -> None:
    deploy(client, auth, version="v1")
    path = f"/badges/components/checkout/version.{ext}"
    first = client.get(path)
    etag = first.headers["ETag"]
    assert etag == '"' + hashlib.blake2b(first.data, digest_size=16).hexdigest() + '"'  # strong
    assert first.headers["Cache-Control"] == "public, max-age=300, s-maxage=300"

    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == "public, max-age=300, s-maxage=300"
    assert client.get(path, headers={"If-None-Match": '"other", ' + etag}).status_code == 304
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200

    deploy(client, auth, version="v2")
    changed = client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert b"v2" in changed.data


def test_max_age_is_configurable(settings: Settings, db: Any) -> None:
    client = create_app(
        settings.replace(badge_max_age_seconds=60), process_metrics=False
    ).test_client()
    resp = client.get("/badges/components/checkout/version.svg")
    assert resp.headers["Cache-Control"] == "public, max-age=60, s-maxage=60"
    # The JSON's own cache hint is clamped to shields.io's floor, which ignores anything lower
    # (issue 17, item 15); the HTTP Cache-Control keeps the configured 60 s.
    assert client.get("/badges/components/checkout/version.json").get_json()["cacheSeconds"] == 300


def test_svg_cannot_run_scripts_when_opened_directly(client: Any) -> None:
    resp = client.get("/badges/components/checkout/version.svg")
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


# --- auth -------------------------------------------------------------------------------------


def test_badges_are_public_by_default(client: Any, auth: Any) -> None:
    deploy(client, auth, version="v1")
    assert client.get("/badges/components/checkout/version.svg").status_code == 200


def test_badges_require_a_read_token_when_configured(settings: Settings, db: Any) -> None:
    app = create_app(settings.replace(badges_require_token=True), process_metrics=False)
    client = app.test_client()
    read = tokens.create_token(db, "readme", ("read",))
    write = tokens.create_token(db, "ci-only", ("write",))
    path = "/badges/components/checkout/version.svg"

    resp = client.get(path)
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "missing_token"
    assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get(path, headers={"Authorization": f"Bearer {write}"}).status_code == 403
    assert client.get(f"{path}?access_token={write}").status_code == 403

    ok = client.get(path, headers={"Authorization": f"Bearer {read}"})
    assert ok.status_code == 200
    assert ok.headers["Cache-Control"] == "private, max-age=300"  # never in a shared cache
    assert client.get(f"{path}?access_token={read}").status_code == 200
    assert (
        client.get(f"/badges/components/checkout/build.json?access_token={read}").status_code == 200
    )


# --- look -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "height"),
    [("flat", "20"), ("flat-square", "20"), ("plastic", "18"), ("for-the-badge", "28")],
)
def test_styles(client: Any, auth: Any, style: str, height: str) -> None:
    deploy(client, auth, version="v1.2.3")
    badge = get_badge(client, f"/badges/components/checkout/version.svg?style={style}")
    assert badge.height == height
    expected = ("PRODUCTION", "V1.2.3") if style == "for-the-badge" else ("production", "v1.2.3")
    assert (badge.label, badge.message) == expected
    assert badge.color == BLUE


def test_label_and_colour_overrides(client: Any, auth: Any) -> None:
    deploy(client, auth, version="v1")
    base = "/badges/components/checkout/version.svg"
    badge = get_badge(client, base + "?label=live&color=ff69b4&labelColor=blue")
    assert (badge.label, badge.color, badge.label_color) == ("live", "#ff69b4", BLUE)
    assert get_badge(client, base + "?color=%23ABC").color == "#aabbcc"
    assert get_badge(client, base + "?color=orange").color == ORANGE
    hexes = get_badge(client, base + "?color=1f2e3d&label_color=%23c0ffee")  # either spelling
    assert (hexes.color, hexes.label_color) == ("#1f2e3d", "#c0ffee")
    # Invalid overrides are ignored: the badge still renders as it would without them.
    for bad in ("color=notacolour", "color=%22/%3E%3Cscript%3E", "style=3d", "label=%20"):
        badge = get_badge(client, f"{base}?{bad}")
        assert (badge.label, badge.message, badge.color) == ("production", "v1", BLUE), bad
    assert get_badge(client, base + "?style=3d").height == "20"


def test_text_widths_are_measured() -> None:
    narrow = drawn(render_svg(badges.Resolved("build", "iiiiii", "blue", "grey", "flat"))[0])
    wide = drawn(render_svg(badges.Resolved("build", "WWWWWW", "blue", "grey", "flat"))[0])
    assert wide.width > narrow.width + 30  # proportional font widths, not characters x constant


# --- escaping ---------------------------------------------------------------------------------


@pytest.mark.parametrize("style", badges.STYLES)
def test_user_strings_are_escaped(client: Any, auth: Any, style: str) -> None:
    deploy(client, auth, version=SCRIPT_VERSION)
    resp = client.get(
        f"/badges/components/checkout/version.svg?style={style}&label=%3Cb%3Ea%26b%22"
    )
    root = ET.fromstring(resp.data)
    assert not [el for el in root.iter() if el.tag.endswith(("script", "b"))]
    badge = drawn(resp.data)
    upper = style == "for-the-badge"
    assert badge.message == (SCRIPT_VERSION.upper() if upper else SCRIPT_VERSION)
    assert badge.label == ('<B>A&B"' if upper else '<b>a&b"')
    assert b"<script" not in resp.data
    doc = client.get("/badges/components/checkout/version.json").get_json()
    assert doc["message"] == SCRIPT_VERSION  # JSON carries the text; shields escapes it


def test_characters_xml_forbids_are_replaced(client: Any, auth: Any) -> None:
    deploy(client, auth, version="v1\x01\x1b[31m")
    badge = get_badge(client, "/badges/components/checkout/version.svg")
    assert badge.message == "v1\ufffd\ufffd[31m"


def test_whitespace_in_a_version_is_one_space(client: Any, auth: Any) -> None:
    deploy(client, auth, version="1.0  beta\t2")
    badge = get_badge(client, "/badges/components/checkout/version.svg")
    assert badge.message == "1.0 beta 2"


def test_long_versions_are_cut(client: Any, auth: Any) -> None:
    deploy(client, auth, version="v" + "9" * 250)
    badge = get_badge(client, "/badges/components/checkout/version.svg")
    assert len(badge.message) == badges.MAX_TEXT
    assert badge.message.endswith("\u2026")
    exactly = "v" + "9" * (badges.MAX_TEXT - 1)
    deploy(client, auth, version=exactly)
    assert get_badge(client, "/badges/components/checkout/version.svg").message == exactly


# --- releases ---------------------------------------------------------------------------------


def test_release_badges(client: Any, auth: Any, db: Any) -> None:
    deploy(client, auth, version="1.4.0", release="2024.05", host="a", finished_at=ago(hours=5))
    deploy(client, auth, "billing", version="7.1", release="2024.05", finished_at=ago(hours=2))
    base = "/badges/releases/2024.05"
    count = get_badge(client, f"{base}/deployments.svg")
    assert (count.label, count.message, count.color) == ("deployments", "2", BLUE)
    assert get_badge(client, f"{base}/last-deploy.svg").message == "2 hours ago"
    assert get_badge(client, "/badges/releases/nope/deployments.svg").message == "not found"
    assert client.get(f"{base}/version.svg").status_code == 404

    # crash-free takes the release name a source reports, slashes and @ included.
    store_health(db, "web/checkout@1.4.0", 0.97, environment="staging", sessions=50)
    staging_only = get_badge(client, "/badges/releases/web/checkout@1.4.0/crash-free.svg")
    assert (staging_only.message, staging_only.color) == ("97%", RED)
    rows = [
        release_health.HealthRow("sentry", "1", env, "web/checkout@1.4.0", n, 1, r, r)
        for env, n, r in (("production", 900, 0.999), ("staging", 50, 0.97))
    ]
    release_health.store_poll(db, "sentry", rows, duration=0.1)
    path = "/badges/releases/web/checkout@1.4.0/crash-free"
    prod = get_badge(client, f"{path}.svg")  # default_stage's environment first
    assert (prod.label, prod.message, prod.color) == ("crash-free", "99.9%", BRIGHTGREEN)
    assert get_badge(client, f"{path}.svg?environment=staging").message == "97%"
    assert get_badge(client, f"{path}.svg?source=bugsnag").message == "not found"
    assert client.get(f"{path}.json").get_json()["message"] == "99.9%"
    assert (
        get_badge(client, "/badges/releases/checkout@0.0.1/crash-free.svg").message == "not found"
    )


def test_release_last_deploy_is_that_releases_newest_deployment(client: Any, auth: Any) -> None:
    deploy(client, auth, version="1.4.0", release="2024.05", finished_at=ago(days=9))
    deploy(client, auth, version="1.5.0", release="2024.06", finished_at=ago(hours=1))
    badge = get_badge(client, "/badges/releases/2024.05/last-deploy.svg")
    assert (badge.label, badge.message, badge.color) == ("last deploy", "1 week ago", GREEN)
    newer = get_badge(client, "/badges/releases/2024.06/last-deploy.svg")
    assert (newer.message, newer.color) == ("1 hour ago", BRIGHTGREEN)


def test_release_without_deployments(client: Any, auth: Any) -> None:
    resp = client.post("/releases", json={"name": "2024.07"}, headers=auth)
    assert resp.status_code == 201
    count = get_badge(client, "/badges/releases/2024.07/deployments.svg")
    assert (count.label, count.message, count.color) == ("deployments", "0", GREY)
    last = get_badge(client, "/badges/releases/2024.07/last-deploy.svg")
    assert (last.label, last.message, last.color) == ("last deploy", "no data", GREY)


def test_release_crash_free_shows_the_busiest_project_against_its_own_target(
    client: Any, db: Any
) -> None:
    rows = [  # two projects ship the same release name; project 2 has nearly all the sessions
        release_health.HealthRow("sentry", "1", "production", "app@2.0", 40, 4, 0.9, 0.9),
        release_health.HealthRow("sentry", "2", "production", "app@2.0", 5000, 900, 0.995, 0.99),
    ]
    release_health.store_poll(db, "sentry", rows, duration=0.1)
    path = "/badges/releases/app@2.0/crash-free.svg"
    badge = get_badge(client, path)
    assert (badge.label, badge.message, badge.color) == ("crash-free", "99.5%", BRIGHTGREEN)
    assert get_badge(client, path + "?source=sentry").message == "99.5%"

    # Project 2's own stability target (0.999) makes 99.5% red, where crash_free_target
    # (0.99) would call it green.
    target = release_health.Target("sentry", "2", "stability", 0.999, 0.99)
    release_health.store_poll(db, "sentry", rows, [target], duration=0.1)
    badge = get_badge(client, path)
    assert (badge.message, badge.color) == ("99.5%", RED)


def test_release_crash_free_without_a_rate_is_no_data(client: Any, db: Any) -> None:
    row = release_health.HealthRow("sentry", "1", "production", "app@3.0", 0, 0, None, None)
    release_health.store_poll(db, "sentry", [row], duration=0.1)
    badge = get_badge(client, "/badges/releases/app@3.0/crash-free.svg")
    assert (badge.label, badge.message, badge.color) == ("crash-free", "no data", GREY)


# --- settings ---------------------------------------------------------------------------------


def test_badge_settings_from_the_environment() -> None:
    s = load_settings(
        environ={
            "RELEASEBITS_BADGE_MAX_AGE_SECONDS": "60",
            "RELEASEBITS_BADGES_REQUIRE_TOKEN": "true",
        }
    )
    assert (s.badge_max_age_seconds, s.badges_require_token) == (60, True)
    assert (Settings().badge_max_age_seconds, Settings().badges_require_token) == (300, False)


def test_openapi_documents_the_badges(client: Any) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    for path in (
        "/badges/components/{slug}/{kind}.svg",
        "/badges/components/{slug}/{kind}.json",
        "/badges/releases/{name}/{kind}.svg",
        "/badges/releases/{name}/{kind}.json",
    ):
        media = "image/svg+xml" if path.endswith(".svg") else "application/json"
        assert media in paths[path]["get"]["responses"]["200"]["content"], path


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("/badges/components/checkout/version", "svg"),
        ("/badges/components/checkout/extra/version.svg", "svg"),
        ("/badges/components/checkout/version.svg/", "svg"),
        ("/badges/components/checkout/extra/version.json", "json"),
        ("/badges/nothing", "svg"),
        ("/badges/", "svg"),
        ("/badges/components//version.svg", "svg"),
    ],
)
def test_badge_paths_naming_no_badge_answer_a_grey_badge(client: Any, path: str, fmt: str) -> None:
    """Issue 17, item 10: these answered a JSON 404 or a 308 redirect."""
    resp = client.get(path)
    assert resp.status_code == 404
    if fmt == "svg":
        assert resp.content_type.startswith("image/svg+xml")
        assert b"not found" in resp.data
    else:
        assert resp.json["message"] == "not found" and resp.json["isError"] is True


def test_other_404s_keep_the_json_error(client: Any) -> None:
    resp = client.get("/no/such/thing")
    assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"


def test_crash_free_with_two_sources_shows_the_worse_one(
    settings: Settings, db: Any, auth: Any
) -> None:
    """Sentry says 98.5% (yellow against 99%), Bugsnag 99.7% (green against its 99.5%
    target): the badge says 98.5% yellow, whatever the sources' names; ?source= picks one."""
    mapping = ComponentMapping(
        sources={
            "sentry": SourceMapping(project="1", release="checkout@{version}"),
            "bugsnag": SourceMapping(project="b1"),
        }
    )
    app = create_app(settings.replace(components={"checkout": mapping}), process_metrics=False)
    client = app.test_client()
    deploy(client, auth, version="1.2.3")
    store_health(db, "checkout@1.2.3", 0.985)
    target = release_health.Target("bugsnag", "b1", "stability", 0.995, 0.985)
    store_health(db, "1.2.3", 0.997, source="bugsnag", project="b1", targets=[target])
    path = "/badges/components/checkout/crash-free.svg"
    badge = get_badge(client, path)
    assert (badge.message, badge.color) == ("98.5%", YELLOW)
    assert get_badge(client, path + "?source=bugsnag").message == "99.7%"
    assert get_badge(client, path + "?source=sentry").message == "98.5%"

    # Both green: the lower rate. Bugsnag below its own target: its yellow beats a green.
    store_health(db, "checkout@1.2.3", 0.9995)
    assert (get_badge(client, path).message, get_badge(client, path).color) == (
        "99.7%",
        BRIGHTGREEN,
    )
    store_health(db, "1.2.3", 0.993, source="bugsnag", project="b1", targets=[target])
    assert (get_badge(client, path).message, get_badge(client, path).color) == ("99.3%", YELLOW)


def test_with_component_names_the_component_in_the_label(client: Any, auth: Any) -> None:
    deploy(client, auth, version="v1.2.3")
    deploy(client, auth, "billing", version="v7", stage="staging")
    build(client, auth, version="42", result="success")
    q = "?with_component=true"
    assert get_badge(client, "/badges/components/checkout/version.svg" + q).label == (
        "checkout production"
    )
    billing = get_badge(client, "/badges/components/billing/version.svg" + q + "&stage=staging")
    assert (billing.label, billing.message) == ("billing staging", "v7")
    assert get_badge(client, "/badges/components/checkout/build.svg" + q).label == "checkout build"
    assert get_badge(client, "/badges/components/checkout/version.svg").label == "production"
    # An explicit label still wins.
    labelled = get_badge(client, "/badges/components/checkout/version.svg" + q + "&label=shop")
    assert labelled.label == "shop"
