"""Fixtures of the browser tests: one headless chromium per session, pages with a recorder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.browser import ARGS, Recorder, chromium_path, sync_api


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    api = sync_api()
    exe = chromium_path()
    pw = api.sync_playwright().start()
    try:
        launched = pw.chromium.launch(executable_path=exe, headless=True, args=ARGS)
        yield launched
        launched.close()
    finally:
        pw.stop()


NewPage = Callable[..., tuple[Any, Recorder]]


@pytest.fixture
def new_page(browser: Any) -> Iterator[NewPage]:
    """A factory of pages, each in its own context (cookies, colour scheme, viewport)."""
    contexts: list[Any] = []

    def make(
        *,
        width: int = 1280,
        height: int = 800,
        scheme: str = "light",
        js: bool = True,
        phone: bool = False,
        headers: dict[str, str] | None = None,
    ) -> tuple[Any, Recorder]:
        ctx = browser.new_context(
            viewport={"width": width, "height": height},
            color_scheme=scheme,
            java_script_enabled=js,
            is_mobile=phone,
            has_touch=phone,
            device_scale_factor=1,
            service_workers="block",
            extra_http_headers=headers or {},
        )
        contexts.append(ctx)
        rec = Recorder()
        ctx.on("request", lambda r: rec.requests.append(r.url))
        page = ctx.new_page()
        page.on(
            "console", lambda m: rec.console_errors.append(m.text) if m.type == "error" else None
        )
        page.on("pageerror", lambda e: rec.page_errors.append(str(e)))

        def dialog(d: Any) -> None:
            rec.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", dialog)
        return page, rec

    yield make
    for ctx in contexts:
        ctx.close()
