"""The status page, a component's page, /docs and signing in, through the Flask test client on a
real SQLite file: what a reader sees, what stays hidden, and the headers that keep it safe."""

from __future__ import annotations

import base64
import fnmatch
import re
import tomllib
from collections.abc import Callable
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from exporter.app import create_app
from exporter.badges.model import NAMED_COLORS, RESULT_COLORS
from exporter.config import load_settings
from exporter.errors import ConfigError
from exporter.settings import Settings
from exporter.ui import keys
from exporter.ui.access import COOKIE, CSP, safe_next
from storage import release_health, tokens
from storage.db import open_db

ROOT = Path(__file__).resolve().parents[3]
SHA = "b927e3797fc56fb8bc093d59ee7a624dafddadd2"
CONFIG = """
[[sentry]]
organization = "acme"
token_env = "SENTRY_TOKEN"

[components.checkout]
repository = "https://git.example.com/acme/checkout/"

[components.checkout.sources.sentry]
project = "42"
release = "checkout@{version}"
"""


SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def make_app(tmp_path: Path, db: str, config: str = "", **overrides: Any) -> Any:
    cfg = tmp_path / "releasebits.toml"
    cfg.write_text(config)
    env = {"SENTRY_TOKEN": "t", "HOOK_SECRET": SECRET, "RELEASEBITS_DB": db}
    s = load_settings(cfg, env, overrides)
    open_db(s.db, migrate=True).close()
    return create_app(s, process_metrics=False)


def token(app: Any, name: str = "ci", scopes: tuple[str, ...] = ("read", "write")) -> str:
    db = open_db(app.extensions["releasebits"].settings.db)
    try:
        return tokens.create_token(db, name, scopes)
    finally:
        db.close()


def deploy(client: Any, tok: str, component: str, **fields: Any) -> None:
    resp = client.post(
        f"/components/{component}/deployments", json=fields, headers={"Authorization": tok}
    )
    assert resp.status_code == 201, resp.json


def text(resp: Any) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", resp.data.decode()))


def cell(page: str, stage: str) -> str:
    """The grid cell of a stage in a one-component page."""
    found = re.search(rf'<td data-label="{stage}" class="cell[^"]*">(.*?)</td>', page, re.S)
    assert found, stage
    return found[1]


@pytest.fixture
def ui(tmp_path: Path, new_db: Callable[..., str]) -> tuple[Any, Any, str]:
    app = make_app(tmp_path, new_db(), CONFIG)
    return app, app.test_client(), token(app)


def test_grid_shows_version_commit_link_since_result_and_crash_free(
    ui: tuple[Any, Any, str],
) -> None:
    app, client, tok = ui
    deploy(client, tok, "checkout", version="1.2.0", stage="production", commit_sha=SHA)
    deploy(client, tok, "checkout", version="1.3.0", stage="production", result="failed")
    db = open_db(app.extensions["releasebits"].settings.db)
    row = release_health.HealthRow(
        "sentry", "42", "production", "checkout@1.2.0", 100, 10, 0.985, 1.0
    )
    release_health.store_poll(db, "sentry", [row], duration=0.1)
    db.close()
    page = client.get("/").data.decode()
    prod = cell(page, "production")
    assert '<span class="version">1.2.0</span>' in prod  # the failed 1.3.0 never ran
    assert f'href="https://git.example.com/acme/checkout/commit/{SHA}"' in prod
    assert re.search(r'<time datetime="[^"]+Z" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">', prod)
    assert 'last <span class="pill c-red">failure</span>' in prod
    # 98.5% against the default 99% target: the badge's yellow, its text rounded down as there.
    assert '<span class="pill c-yellow">crash-free 98.5%</span>' in prod


def test_grid_cells_escape_every_value_a_user_sent(ui: tuple[Any, Any, str]) -> None:
    _, client, tok = ui
    version = "<img src=x onerror=alert(1)>&amp;"
    sha = "\"'><svg onload=alert(2)>"
    deploy(client, tok, "checkout", version=version, commit_sha=sha)
    deploy(client, tok, "other", version=version, commit_sha=sha)  # no repository: no link
    page = client.get("/").data.decode()
    assert "<img" not in page and "<svg" not in page
    assert '<span class="version">&lt;img src=x onerror=alert(1)&gt;&amp;amp;</span>' in page
    assert '<code class="sha">&quot;&#x27;&gt;&lt;svg on</code>' in page
    link = re.search(r'<a class="sha" href="([^"]+)">', page)
    assert link and link[1] == (
        "https://git.example.com/acme/checkout/commit/%22%27%3E%3Csvg%20onload%3Dalert%282%29%3E"
    )


def test_the_stylesheet_draws_every_badge_colour_the_page_uses() -> None:
    css = (ROOT / "exporter/ui/static/ui.css").read_text()
    used = {*RESULT_COLORS.values(), "brightgreen", "yellow", "red", "lightgrey"}
    for name in used:
        hex6 = NAMED_COLORS[name].lstrip("#")
        if len(hex6) == 3:
            hex6 = "".join(c * 2 for c in hex6)
        assert f".c-{name} {{ background: #{hex6}; }}" in css, name


def test_public_page_shows_what_metrics_shows_and_a_token_adds_details(
    ui: tuple[Any, Any, str],
) -> None:
    _, client, tok = ui
    deploy(
        client,
        tok,
        "checkout",
        version="1.0",
        host="web-7.internal",
        branch="release/secret-project",
        meta_data={"ticket": "OPS-1234"},
    )
    public = text(client.get("/"))
    assert "1.0" in public
    for private in ("web-7.internal", "secret-project", "OPS-1234"):
        assert private not in public
    signed = text(client.get("/", headers={"Authorization": f"Bearer {tok}"}))
    for private in ("web-7.internal", "release/secret-project", '{"ticket": "OPS-1234"}'):
        assert private in signed


def test_every_answer_carries_the_strict_policy(ui: tuple[Any, Any, str]) -> None:
    _, client, _ = ui
    for path in ("/", "/docs", "/ui/sign-in", "/ui/static/ui.css", "/ui/components/nope"):
        resp = client.get(path)
        resp.close()  # the stylesheet is a file
        assert resp.headers["Content-Security-Policy"] == CSP, path
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
    assert "'unsafe-inline'" not in CSP and "default-src 'none'" in CSP
    page = client.get("/").data.decode()
    assert (
        "<style" not in page
        and " style=" not in page
        and " on" not in page.lower().replace(" one", "")
    )
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/ui/static/ui.js" defer>']
    assert client.get("/").headers["Cache-Control"] == "no-store"


def test_ui_require_token_sends_readers_to_sign_in_and_back(
    tmp_path: Path, new_db: Callable[..., str]
) -> None:
    app = make_app(tmp_path, new_db(), ui_require_token=True)
    client = app.test_client()
    reader = token(app, "reader", ("read",))
    writer = token(app, "writer", ("write",))
    deploy(client, writer, "checkout", version="4.5.6")
    resp = client.get(f"/?stage=production&access_token={writer}")
    assert resp.status_code == 303
    assert resp.headers["Location"] == "/ui/sign-in?next=/?stage%3Dproduction"
    form = client.get(resp.headers["Location"])
    assert (
        form.status_code == 200 and 'name="next" value="/?stage=production"' in form.data.decode()
    )
    assert writer not in form.data.decode()
    scoped = client.post("/ui/sign-in", data={"token": writer})
    assert "lacks the &#39;read&#39; scope" in scoped.data.decode()
    for path in ("/ui/components/checkout", "/?kind=build"):
        assert client.get(path).status_code == 303

    bad = client.post("/ui/sign-in", data={"token": "rb_nope_nope", "next": "/"})
    assert "unknown or revoked" in bad.data.decode() and COOKIE not in bad.headers.get(
        "Set-Cookie", ""
    )
    good = client.post("/ui/sign-in", data={"token": reader, "next": "/?stage=production"})
    assert good.status_code == 303 and good.headers["Location"] == "/?stage=production"
    cookie = good.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}={reader};")
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=604800"):
        assert attribute in cookie
    page = client.get("/?stage=production")
    assert page.status_code == 200 and "4.5.6" in page.data.decode()
    assert reader not in page.data.decode()

    out = client.post("/ui/sign-out")
    assert out.status_code == 303 and f"{COOKIE}=;" in out.headers["Set-Cookie"]
    assert client.get("/").status_code == 303


def test_metrics_require_token_keeps_the_page_private_too(
    tmp_path: Path, new_db: Callable[..., str]
) -> None:
    client = make_app(tmp_path, new_db(), metrics_require_token=True).test_client()
    assert client.get("/").status_code == 303
    assert client.get("/docs").status_code == 200  # the API description is public anyway


def test_a_revoked_token_in_the_cookie_is_named_and_dropped(
    tmp_path: Path, new_db: Callable[..., str]
) -> None:
    app = make_app(tmp_path, new_db(), ui_require_token=True)
    client = app.test_client()
    reader = token(app, "reader", ("read",))
    client.post("/ui/sign-in", data={"token": reader})
    db = open_db(app.extensions["releasebits"].settings.db)
    tokens.revoke_token(db, "reader")
    db.close()
    resp = client.get("/", follow_redirects=True)
    assert "unknown or revoked" in resp.data.decode()
    assert f"{COOKIE}=;" in resp.headers["Set-Cookie"]


def test_sign_in_refuses_forms_posted_from_other_sites(ui: tuple[Any, Any, str]) -> None:
    _, client, tok = ui
    resp = client.post("/ui/sign-in", data={"token": tok}, headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status_code == 403 and "Set-Cookie" not in resp.headers
    ok = client.post("/ui/sign-in", data={"token": tok}, headers={"Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 303


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ui/components/a?stage=x", "/ui/components/a?stage=x"),
        ("//evil.example/", "/"),
        ("/\\evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/\r\nSet-Cookie: x=1", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_sign_in_only_goes_back_to_this_server(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_tokens_never_appear_in_links_the_page_renders(ui: tuple[Any, Any, str]) -> None:
    _, client, tok = ui
    for i in range(60):
        deploy(client, tok, "checkout", version=f"v{i}")
    page = client.get(f"/?access_token={tok}&stage=production").data.decode()
    assert "v59" in page and tok not in page
    older = re.search(r'<a rel="next" href="([^"]+)">Older</a>', page)
    assert older and "access_token" not in older[1] and older[1].startswith("/?stage=production&")


def test_feed_pages_newest_first_with_older_and_newest_links(ui: tuple[Any, Any, str]) -> None:
    _, client, tok = ui
    for i in range(55):
        deploy(client, tok, "checkout", version=f"v{i}", finished_at=f"2024-05-01T12:{i:02d}:00Z")
    first = client.get("/").data.decode()
    older = unescape(re.search(r'<a rel="next" href="([^"]+)">Older</a>', first)[1])
    second = client.get(older).data.decode()
    versions = re.findall(r'<td data-label="Version"><span class="version">(v\d+)</span>', second)
    assert versions == [f"v{i}" for i in range(4, -1, -1)]
    assert '<a href="/">Newest</a>' in second and "Older" not in second


def test_bad_filters_and_cursors_are_notices_not_errors(ui: tuple[Any, Any, str]) -> None:
    _, client, _ = ui
    resp = client.get("/?component=<b>x</b>&stage=!!&result=maybe&kind=pod&cursor=garbage")
    page = resp.data.decode()
    assert resp.status_code == 200
    assert "&#39;&lt;b&gt;x&lt;/b&gt;&#39; is not a component name" in page
    for notice in ("is not a stage name", "is not a result class", "is not deployment or build"):
        assert notice in page
    assert "That page link is not valid any more" in page


def test_component_page_timeline_and_unknown_components(ui: tuple[Any, Any, str]) -> None:
    _, client, tok = ui
    deploy(client, tok, "checkout", version="1.0", finished_at="2024-05-01T12:00:00Z")
    deploy(client, tok, "checkout", version="1.1", finished_at="2024-05-02T12:00:00Z")
    page = client.get("/ui/components/checkout").data.decode()
    changes = re.findall(r'<li><span class="version">([^<]+)</span>', page)
    assert changes == ["1.1", "1.0"]
    assert re.search(r'<rect class="seg current s0" x="[\d.]+" y="0" width="[\d.]+"', page)
    assert "was current for 1d 0h" in page
    missing = client.get("/ui/components/<script>")
    assert missing.status_code == 404 and "&lt;script&gt;" in missing.data.decode()


def test_a_key_column_appended_later_shows_up_per_production_stage(
    ui: tuple[Any, Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """How the DORA keys plug in: one KeyColumn whose reader answers per component."""
    _, client, tok = ui
    deploy(client, tok, "checkout", version="1.0", stage="production")
    lead = keys.KeyColumn(
        "Lead time", "Commit to production.", lambda inp: {"checkout": keys.Figure("2h 05m")}
    )
    monkeypatch.setattr("exporter.ui.status.COLUMNS", (*keys.COLUMNS, lead))
    page = client.get("/").data.decode()
    assert 'title="Commit to production.">Lead time <span class="sub">production</span>' in page
    assert (
        '<td data-label="Lead time (production)" class="key"><span title="">2h 05m</span>' in page
    )


def test_docs_render_every_operation_of_the_document(ui: tuple[Any, Any, str]) -> None:
    _, client, _ = ui
    doc = client.get("/openapi.json").json
    page = client.get("/docs").data.decode()
    for path, item in doc["paths"].items():
        for method in ("get", "post"):
            if method in item:
                assert f'id="{item[method]["operationId"]}"' in page, (method, path)
    for name in doc["components"]["schemas"]:
        assert f'id="schema-{name}"' in page
    assert "<code>Authorization: Bearer &lt;token&gt;</code>" in page  # `code` spans


def test_empty_page_says_how_to_post_the_first_deployment(ui: tuple[Any, Any, str]) -> None:
    _, client, _ = ui
    page = client.get("/", headers={"Host": "evil.example"}).data.decode()
    assert "No deployments yet" in page
    assert '"$RELEASEBITS_URL/components/my-service/deployments"' in page
    assert "evil.example" not in page  # links are relative; the Host header is not trusted


def test_repository_must_be_an_http_url(tmp_path: Path, new_db: Callable[..., str]) -> None:
    with pytest.raises(ConfigError, match=r"^components\.checkout\.repository: expected an http"):
        make_app(tmp_path, new_db(), '[components.checkout]\nrepository = "javascript:alert(1)"\n')


def test_ui_require_token_setting_reads_the_environment() -> None:
    assert load_settings(None, {"RELEASEBITS_UI_REQUIRE_TOKEN": "true"}).ui_require_token
    assert Settings().ui_require_token is False


def test_templates_and_assets_ship_as_package_data() -> None:
    """A wheel carries exactly what pyproject's package-data globs name."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["exporter"]
    files = [
        p.relative_to(ROOT / "exporter").as_posix()
        for folder in ("templates", "static")
        for p in (ROOT / "exporter/ui" / folder).rglob("*")
        if p.is_file()
    ]
    assert len(files) >= 8
    assert [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)] == []


def test_health_shows_sources_outbox_and_worker_with_errors_only_to_readers(
    tmp_path: Path, new_db: Callable[..., str]
) -> None:
    config = CONFIG + (
        '\n[[bugsnag]]\ntoken_env = "SENTRY_TOKEN"\nprojects = ["p1"]\n'
        '\n[[forward.webhook]]\nname = "hooks"\nurl = "https://hooks.example.com/in"\n'
        'secret_env = "HOOK_SECRET"\n'
    )
    app = make_app(tmp_path, new_db(), config)
    client, tok = app.test_client(), token(app)
    deploy(client, tok, "checkout", version="1.0")  # one delivery waits for the webhook
    db = open_db(app.extensions["releasebits"].settings.db)
    error = "HTTP 401 from https://sentry.io/api/0/organizations/acme/sessions/"
    release_health.record_failure(db, "sentry", error, duration=0.25, projects=["42"])
    db.close()
    public = text(client.get("/"))
    health = public[public.index("Sources and forwarding") :]
    assert re.search(r"sentry\s+42\s+down\s+never\s+just now\s+0\.25s", health)
    assert re.search(r"bugsnag\s+not polled yet", health)
    assert re.search(r"hooks\s+webhook\s+1\s+\d+s\s+0\s+0\s+0\s+active", health)
    assert "Background worker: not running" in " ".join(health.split())
    assert "sources 1 down" in " ".join(public.split()) and error not in public
    signed = text(client.get("/", headers={"Authorization": tok}))
    assert error in signed
