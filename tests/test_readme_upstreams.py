"""The README names every upstream endpoint the pollers call, so a proxy or a fake can stand in
for Sentry and Bugsnag without reading the code: each request the pollers make, with its
concrete values turned back into placeholders, is in the README."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import requests
from pytest_httpserver import HTTPServer

from exporter.config import load_settings
from exporter.pollers.sources import PollSource
from tests.upstreams import BUGSNAG_PROJECT, TOKEN_ENV, FakeBugsnag, FakeSentry, sources_toml

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
PLACEHOLDERS = {"acme": "{organization}", BUGSNAG_PROJECT: "{project}"}


def test_readme_names_every_endpoint_the_pollers_call(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    sentry, bugsnag = FakeSentry(httpserver).install(), FakeBugsnag(httpserver).install()
    config = tmp_path / "rb.toml"
    config.write_text(sources_toml(sentry, bugsnag))
    settings = load_settings(config, TOKEN_ENV)
    with requests.Session() as session:
        for source in settings.sources:
            assert isinstance(source, PollSource)
            source.poll(session, sleep=lambda _s: None, monotonic=lambda: 0.0)
    called = set()
    for request, _response in httpserver.log:
        path = urlsplit(request.url).path
        for value, placeholder in PLACEHOLDERS.items():
            path = path.replace(f"/{value}/", f"/{placeholder}/")
            if path.endswith(f"/{value}"):
                path = path[: -len(value)] + placeholder
        called.add(f"{request.method} {{base_url}}{path}")
    assert called == {
        "GET {base_url}/api/0/organizations/{organization}/sessions/",
        "GET {base_url}/projects/{project}",
        "GET {base_url}/projects/{project}/release_groups",
    }
    for endpoint in called:
        assert f"`{endpoint}" in README, f"README does not name {endpoint}"
