"""New Relic's `url` is the API base, as the README says: `{url}/graphql` gets the mutation, and
an endpoint given as `url` is a one-line config error instead of a doubled path."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from exporter.config import load_settings
from exporter.errors import ConfigError
from tests.exporter.forwarding.conftest import Forwarding

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()
KEY = "NRAK-FAKEFAKEFAKEFAKEFAKEFAKE12"
TOML = (
    '[[forward.newrelic]]\napi = "{api}"\nurl = "{url}"\napi_key_env = "NEW_RELIC_API_KEY"\n\n'
    '[components.checkout.forward.newrelic]\nentity_guid = "MXxBUE18QVBQTElDQVRJT058MTIz"\n'
    'app_id = "9999999"\n'
)


@pytest.mark.parametrize(
    ("api", "path", "documented"),
    [
        ("nerdgraph", "/nr-proxy/graphql", "POST {url}/graphql"),
        (
            "rest",
            "/nr-proxy/v2/applications/9999999/deployments.json",
            "POST {url}/v2/applications/{app_id}/deployments.json",
        ),
    ],
)
def test_url_is_the_api_base_the_readme_describes(
    httpserver: HTTPServer,
    forwarding: Callable[..., Forwarding],
    api: str,
    path: str,
    documented: str,
) -> None:
    assert f"`{documented}" in README
    f = forwarding(
        TOML.format(api=api, url=httpserver.url_for("/nr-proxy")), {"NEW_RELIC_API_KEY": KEY}
    )
    # NerdGraph's answer to changeTrackingCreateEvent (REST v2 ignores the body of its 201).
    event = {"changeTrackingId": "8a3a594c-e726-4bc2-8078-26dffec9a3d8", "category": "Deployment"}
    body = {"data": {"changeTrackingCreateEvent": {"changeTrackingEvent": event, "messages": []}}}
    httpserver.expect_oneshot_request(path, method="POST").respond_with_json(body, status=201)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    f.deploy(version="1.2.0", finished_at=now)
    f.run()
    httpserver.check_assertions()
    assert f.only()["status"] == "delivered"


@pytest.mark.parametrize(
    ("api", "endpoint"),
    [
        ("rest", "https://api.newrelic.com/graphql"),
        ("nerdgraph", "https://nr.example.com/v2/applications/1/deployments.json"),
        ("rest", "https://nr.example.com/v2/applications/1/deployments.json"),
    ],
)
def test_an_endpoint_as_url_is_a_one_line_error(tmp_path: Path, api: str, endpoint: str) -> None:
    """NerdGraph's own endpoint is accepted as given (the README says so); a REST path cannot
    be built on an endpoint."""
    config = tmp_path / "rb.toml"
    config.write_text(TOML.format(api=api, url=endpoint))
    with pytest.raises(ConfigError) as info:
        load_settings(config, {"NEW_RELIC_API_KEY": KEY})
    message = str(info.value)
    assert message.startswith("forward.newrelic[0].url: give the API base")
    assert "\n" not in message
