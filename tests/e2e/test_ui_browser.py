"""The status page in a real browser (Playwright on Debian's chromium) against `releasebits serve`.

Every page load records the browser's requests, console errors and uncaught errors: no test
passes if the page logged an error or asked anything of a host other than 127.0.0.1.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from pytest_httpserver import HTTPServer

from tests.browser import Recorder, run_axe, screenshot_dir, serious
from tests.conftest import Daemon, free_port, fresh_location
from tests.e2e.conftest import NewPage
from tests.upstreams import BUGSNAG_PROJECT, TOKEN_ENV, FakeBugsnag, FakeSentry

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def token_of(daemon: Daemon, name: str, *scopes: str) -> str:
    args = ["token", "create", name] + [a for s in scopes for a in ("--scope", s)]
    out = daemon.cli(*args)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def post(daemon: Daemon, token: str, kind: str, component: str, **fields: Any) -> None:
    daemon.record(token, component, f"{kind}s", fields)


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def clean(rec: Recorder) -> None:
    """Nothing went wrong in the page and nothing left this machine."""
    assert rec.console_errors == []
    assert rec.page_errors == []
    assert rec.dialogs == []
    hosts = {urlsplit(u).hostname for u in rec.requests}
    assert hosts == {"127.0.0.1"}, rec.requests


@pytest.fixture(scope="module")
def plain(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Daemon, str]]:
    """One daemon for the module's tests that need no configuration, and a read/write token."""
    workdir = tmp_path_factory.mktemp("ui")
    daemon = Daemon(db=fresh_location(request, workdir, "ui"), workdir=workdir).start()
    try:
        yield daemon, token_of(daemon, "ci")
    finally:
        daemon.stop()


def submit(page: Any, selector: str) -> None:
    """Click a form's button and wait for the page it leads to."""
    page.click(selector)
    page.wait_for_load_state()


def cell(page: Any, component: str, stage: str) -> Any:
    """The grid cell of a component and stage (by the column heading, as a reader finds it)."""
    page.wait_for_load_state()
    stages = page.locator("table.grid thead th").all_inner_texts()
    column = [s.strip() for s in stages].index(stage) + 1
    row = page.locator("table.grid tbody tr", has=page.locator(f"th >> text='{component}'"))
    return row.locator(f"td:nth-child({column})")


def test_grid_shows_a_posted_version_and_refreshes_itself(
    plain: tuple[Daemon, str], new_page: NewPage
) -> None:
    daemon, token = plain
    post(daemon, token, "deployment", "grid-demo", version="v1.0.0", stage="production")
    page, rec = new_page()
    page.clock.install()  # the page's 30 s timer runs on a clock the test moves
    page.goto(daemon.url + "/")
    assert "v1.0.0" in cell(page, "grid-demo", "production").inner_text()

    post(daemon, token, "deployment", "grid-demo", version="v1.1.0", stage="production")
    page.clock.run_for(31_000)
    page.wait_for_function(
        "() => document.querySelector('#grid').innerText.includes('v1.1.0')", timeout=10_000
    )
    assert "v1.1.0" in cell(page, "grid-demo", "production").inner_text()
    assert page.locator("#feed").inner_text().count("grid-demo") >= 2

    # A hidden tab does not refresh; becoming visible again refreshes at once.
    page.evaluate(
        "() => { Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    fetched = len(rec.requests)
    post(daemon, token, "deployment", "grid-demo", version="v1.2.0", stage="production")
    page.clock.run_for(95_000)
    assert len(rec.requests) == fetched
    assert "v1.2.0" not in cell(page, "grid-demo", "production").inner_text()
    page.evaluate(
        "() => { Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    page.wait_for_function(
        "() => document.querySelector('#grid').innerText.includes('v1.2.0')", timeout=10_000
    )
    clean(rec)


def test_a_reload_shows_a_new_deployment_with_javascript_off(
    plain: tuple[Daemon, str], new_page: NewPage
) -> None:
    daemon, token = plain
    post(daemon, token, "deployment", "nojs-demo", version="1.0", stage="staging")
    page, rec = new_page(js=False)
    page.goto(daemon.url + "/")
    assert "1.0" in cell(page, "nojs-demo", "staging").inner_text()
    # Without JavaScript the page reloads itself through a <noscript> meta refresh.
    refresh = page.locator("noscript").first.inner_html()
    assert 'http-equiv="refresh"' in refresh and 'content="30"' in refresh
    post(daemon, token, "deployment", "nojs-demo", version="2.0", stage="staging")
    page.reload()
    assert "2.0" in cell(page, "nojs-demo", "staging").inner_text()
    clean(rec)


def test_filters_narrow_the_feed_and_the_grid(plain: tuple[Daemon, str], new_page: NewPage) -> None:
    daemon, token = plain
    post(daemon, token, "deployment", "filter-a", version="a1", stage="staging")
    post(daemon, token, "deployment", "filter-a", version="a2", stage="qa", result="failed")
    post(daemon, token, "deployment", "filter-b", version="b1", stage="qa")
    post(daemon, token, "build", "filter-b", version="b2", result="failed")
    page, rec = new_page()
    page.goto(daemon.url + "/")

    page.select_option("select[name=stage]", "qa")
    submit(page, "form.filters button[type=submit]")
    assert urlsplit(page.url).query == "component=&stage=qa&result=&kind="
    stages = page.locator("#feed td[data-label=Stage]").all_inner_texts()
    assert stages and set(stages) == {"qa"}
    assert [t.strip() for t in page.locator("table.grid thead th").all_inner_texts()][1] == "qa"

    page.select_option("select[name=result]", "failure")
    submit(page, "form.filters button[type=submit]")
    versions = page.locator("#feed td[data-label=Version] .version").all_inner_texts()
    assert versions == ["a2"]

    page.goto(daemon.url + "/")
    page.fill("input[name=component]", "filter-b")
    page.select_option("select[name=kind]", "build")
    submit(page, "form.filters button[type=submit]")
    kinds = page.locator("#feed td[data-label=Kind]").all_inner_texts()
    assert kinds == ["build"]
    assert page.locator("table.grid tbody th").all_inner_texts() == ["filter-b"]
    clean(rec)


def test_hostile_text_renders_as_text_and_no_script_runs(
    plain: tuple[Daemon, str], new_page: NewPage
) -> None:
    daemon, token = plain
    script = "<script>window.__pwned = 1</script>"
    img = '<img src=x onerror="window.__pwned = 2">'
    # A component name cannot carry markup: the API refuses it before anything is stored.
    refused = requests.post(
        f"{daemon.url}/components/{requests.utils.quote(img, safe='')}/deployments",
        json={"version": "1"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert refused.status_code == 400
    post(
        daemon,
        token,
        "deployment",
        "hostile",
        version=script,
        stage="production",
        host=img,
        result=f"failed {img}",
        branch="\"><svg onload='window.__pwned=3'>",
        meta_data={"note": img, script: "x"},
    )
    post(daemon, token, "build", "hostile", version=img, url="javascript:window.__pwned=4")
    # Signed in through a header, so the details (host, meta data, CI link) are shown too.
    page, rec = new_page(headers={"Authorization": f"Bearer {token}"})
    for path in ("/?component=hostile", "/ui/components/hostile"):
        page.goto(daemon.url + path)
        feed = page.locator("#feed").inner_text()
        assert script in feed and img in feed and "svg onload" in feed
        assert page.evaluate("() => window.__pwned") is None
        assert page.locator("#feed img, #feed svg, #feed script").count() == 0
        assert page.locator("a[href^='javascript:']").count() == 0
    clean(rec)


def test_sign_in_keeps_the_token_in_a_strict_cookie(
    tmp_path: Path, new_db: Callable[..., str], new_page: NewPage
) -> None:
    daemon = Daemon(
        db=new_db("private"), workdir=tmp_path, extra_env={"RELEASEBITS_UI_REQUIRE_TOKEN": "1"}
    )
    daemon.start()
    try:
        token = token_of(daemon, "reader", "read")
        writer = token_of(daemon, "writer", "write")
        post(daemon, writer, "deployment", "private-app", version="9.9.9", stage="production")
        page, rec = new_page()
        page.goto(daemon.url + "/?stage=production")
        assert urlsplit(page.url).path == "/ui/sign-in"
        assert "9.9.9" not in page.content()
        assert page.locator("h1").inner_text() == "Sign in"

        assert serious(run_axe(page)) == []  # the sign-in form, too
        page.fill("input[name=token]", writer)  # a token without the read scope
        submit(page, "form button[type=submit]")
        assert "lacks the 'read' scope" in page.locator("[role=alert]").inner_text()

        page.fill("input[name=token]", token)
        submit(page, "form button[type=submit]")
        assert urlsplit(page.url).path == "/" and urlsplit(page.url).query == "stage=production"
        assert "9.9.9" in cell(page, "private-app", "production").inner_text()
        assert "Signed in as reader" in page.locator("header").inner_text()

        (cookie,) = page.context.cookies()
        assert cookie["value"] == token
        assert (cookie["secure"], cookie["httpOnly"], cookie["sameSite"]) == (True, True, "Strict")
        assert page.evaluate("() => document.cookie") == ""  # scripts cannot read it
        assert token not in page.content()  # never in a link, a form or the text
        assert all(token not in u for u in rec.requests)

        submit(page, "header button[type=submit]")  # sign out
        assert page.context.cookies() == []
        assert page.locator("h1").inner_text() == "Sign in"
        clean(rec)
    finally:
        daemon.stop()


# --- what a team lead sees: screenshots and the accessibility check -------------------------


def _config(tmp_path: Path, sentry: FakeSentry, bugsnag: FakeBugsnag) -> Path:
    cfg = tmp_path / "releasebits.toml"
    cfg.write_text(
        f'[[sentry]]\nname = "sentry"\nbase_url = "{sentry.base_url}"\norganization = "acme"\n'
        f'token_env = "SENTRY_TOKEN"\nprojects = [42]\npoll_interval = "1s"\n\n'
        f'[[bugsnag]]\nname = "bugsnag"\nbase_url = "{bugsnag.base_url}"\n'
        f'token_env = "BUGSNAG_TOKEN"\nprojects = ["{BUGSNAG_PROJECT}"]\npoll_interval = "1s"\n\n'
        # Nothing listens there: deliveries wait in the outbox, as when a target is down.
        f'[[forward.webhook]]\nname = "hooks"\nurl = "http://127.0.0.1:{free_port()}/hook"\n'
        f'secret_env = "WEBHOOK_SECRET"\nevents = ["deployment"]\n\n'
        '[components.checkout]\nrepository = "https://git.example.com/acme/checkout"\n\n'
        '[components.checkout.sources.sentry]\nproject = "42"\nrelease = "checkout@{version}"\n\n'
        f'[components.search.sources.bugsnag]\nproject = "{BUGSNAG_PROJECT}"\n'
    )
    return cfg


def _seed(daemon: Daemon, token: str) -> None:
    """A small team's week: three stages, a rollout, a failed deployment, builds."""
    sha = "b927e3797fc56fb8bc093d59ee7a624dafddadd2"
    plan: list[tuple[str, str, str, str, dict[str, Any]]] = [
        ("checkout", "dev", "1.2.0", "success", {"days": 6}),
        ("checkout", "staging", "1.1.9", "success", {"days": 9}),
        ("checkout", "production", "1.1.9", "success", {"days": 8}),
        ("checkout", "staging", "1.2.0", "success", {"days": 3}),
        ("checkout", "production", "1.2.0", "success", {"hours": 5}),
        ("search", "staging", "1.2.0", "success", {"days": 2}),
        ("search", "production", "1.1.9", "success", {"days": 12}),
        ("billing-api", "dev", "3.5.0-rc.1", "success", {"hours": 20}),
        ("billing-api", "staging", "3.4.1", "success", {"days": 4}),
        ("billing-api", "production", "3.4.1", "success", {"days": 4}),
        ("billing-api", "production", "3.5.0", "failed", {"minutes": 40}),
        ("web-frontend", "production", "2024.11.3", "success", {"days": 1}),
    ]
    for component, stage, version, result, delta in plan:
        post(
            daemon,
            token,
            "deployment",
            component,
            version=version,
            stage=stage,
            result=result,
            commit_sha=sha,
            started_at=ago(**{k: v + (1 if k == "minutes" else 0.01) for k, v in delta.items()}),
            finished_at=ago(**delta),
        )
    post(daemon, token, "build", "checkout", version="1.2.1", finished_at=ago(minutes=12))
    post(daemon, token, "build", "billing-api", version="3.5.1", result="failed")


def _wait_for_health(daemon: Daemon) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = requests.get(daemon.url + "/", timeout=10).text
        if "crash-free 99.72%" in page and "crash-free 98.5%" in page:
            return
        time.sleep(0.2)
    raise AssertionError("the worker did not poll the fake sources in time")


def test_screenshots_and_accessibility(
    tmp_path: Path, httpserver: HTTPServer, new_db: Callable[..., str], new_page: NewPage
) -> None:
    sentry = FakeSentry(httpserver).install()
    bugsnag = FakeBugsnag(httpserver).install()
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    env = {**TOKEN_ENV, "WEBHOOK_SECRET": secret}
    env["RELEASEBITS_CONFIG"] = str(_config(tmp_path, sentry, bugsnag))
    daemon = Daemon(db=new_db("shots"), workdir=tmp_path, extra_env=env).start()
    out = screenshot_dir()
    try:
        _seed(daemon, token_of(daemon, "ci"))
        _wait_for_health(daemon)
        for (name, size), scheme in (
            (layout, scheme)
            for layout in (("desktop", DESKTOP), ("phone", PHONE))
            for scheme in ("light", "dark")
        ):
            page, rec = new_page(**size, scheme=scheme, phone=name == "phone")
            for label, path in (("status", "/"), ("component", "/ui/components/checkout")):
                page.goto(daemon.url + path)
                page.screenshot(path=str(out / f"{label}-{name}-{scheme}.png"), full_page=True)
                bad = serious(run_axe(page))
                assert bad == [], f"{path} {name} {scheme}:\n" + "\n".join(bad)
            clean(rec)
        page, rec = new_page()
        page.goto(daemon.url + "/docs")
        page.screenshot(path=str(out / "docs-desktop-light.png"))
        assert serious(run_axe(page)) == []
        clean(rec)
    finally:
        daemon.stop()
