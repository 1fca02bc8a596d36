"""Playwright on Debian's chromium for the status page tests: no browser download, no internet.

Launched through `executable_path` (the real binary, not the /usr/bin/chromium wrapper script
that sources /etc/chromium.d and adds flags), with every host name except 127.0.0.1 and
localhost resolving to nothing, so a page that tried to reach the internet would fail loudly in
the request log instead of quietly succeeding. axe-core comes from npm (tests/e2e/axe, `npm ci`
in .ci/run) and is injected from that file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_E2E

ROOT = Path(__file__).resolve().parents[1]
AXE_JS = ROOT / "tests" / "e2e" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
# CI keeps this folder as output (.ci/run prints it); git ignores it.
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")

# Playwright already passes --headless, --no-sandbox, --disable-background-networking,
# --disable-component-update, --disable-sync, --disable-extensions, --no-first-run and its own
# --disable-features list (a second --disable-features would replace it, so none here).
ARGS = [
    "--no-pings",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-crash-reporter",
    "--safebrowsing-disable-auto-update",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]


def missing(message: str) -> None:
    """Skip, or fail under RELEASEBITS_REQUIRE_E2E=1 (CI installs everything these need)."""
    if REQUIRE_E2E:
        pytest.fail(message + " and RELEASEBITS_REQUIRE_E2E=1 forbids skipping")
    pytest.skip(message)


def chromium_path() -> str:
    env = os.environ.get("CHROMIUM_PATH")
    found = env or next((p for p in CHROMIUM if os.access(p, os.X_OK)), None)
    if found is None:
        missing("chromium is not installed (Debian package chromium; .ci/run installs it)")
    assert found is not None
    return found


def sync_api() -> Any:
    try:
        import playwright.sync_api as api
    except ImportError:
        missing("the playwright package is not installed (pip install -e '.[test]')")
    return api


@dataclass
class Recorder:
    """What a page did: every request the browser made, console errors, uncaught errors."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def run_axe(page: Any) -> dict[str, Any]:
    """axe-core's WCAG 2 A/AA (and 2.1, 2.2) rules on the page; returns its results."""
    if not AXE_JS.exists():
        missing(f"{AXE_JS.relative_to(ROOT)} is absent (npm ci --prefix tests/e2e/axe)")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # The page's CSP refuses inline scripts (add_script_tag); DevTools evaluation is not
        # subject to it, so the page keeps its real policy while axe runs.
        page.evaluate(AXE_JS.read_text())
        if not page.evaluate("() => typeof window.axe === 'object'"):
            raise RuntimeError("axe-core did not load")
    tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
    return dict(
        page.evaluate(
            "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags},"
            " resultTypes: ['violations']})",
            tags,
        )
    )


def serious(results: dict[str, Any]) -> list[str]:
    """Serious and critical violations, one readable line each."""
    return [
        f"{v['impact']} {v['id']}: {v['help']} ({len(v['nodes'])}x, e.g. {v['nodes'][0]['target']})"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
