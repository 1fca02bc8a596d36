"""/metrics as a scraper sees it: hostile label values, promtool, negotiation, gzip, auth."""

from __future__ import annotations

import gzip
import subprocess
from typing import Any

import pytest
from prometheus_client.core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import create_app
from exporter.settings import Settings
from storage import tokens
from tests.conftest import need_binary

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
INFO = "releasebits_deployed_version_info"

# (component, stage, version, commit_sha). Slugs and stages are restricted by the API, so they
# get only the punctuation it allows; version (<= 255) and commit_sha (<= 128) are free text.
# None of them starts or ends with whitespace: the API strips that.
HOSTILE = [
    ("quotes", "production", 'v"1"', 'sha"'),
    ("backslash-end", "production", "v1\\", "sha\\"),
    ("newline", "production", "v1\nv2", "abc\ndef"),
    ("escaped-looking", "production", 'v1\\nv2\\"x', "\\n\\\\"),
    ("injection", "production", 'x",stage="evil"} 1\n# EOF\nfoo{a="', '"} 0\n# TYPE x counter'),
    ("tab-and-braces", "production", 'v1\t{le="+Inf"}, #', "{}"),
    (
        "emoji",
        "production",
        "\U0001f680 release \U0001f525\u2764\ufe0f \U0001f468\u200d\U0001f469\u200d\U0001f467",
        "\U0001f600",
    ),
    (
        "cjk",
        "production",
        "\u7248\u672c\u4e00 \u30ea\u30ea\u30fc\u30b9 \ub9b4\ub9ac\uc2a4",
        "\u4e2d\u6587",
    ),
    (
        "rtl",
        "production",
        "\u05d2\u05e8\u05e1\u05d4 \u0627\u0644\u0625\u0635\u062f\u0627\u0631 \u202ev1.0\u202c \u200f2",
        "\u202e\u05d0",
    ),
    ("long", "production", ('\u00e9"\\\n\U0001f680x' * 51)[:255], ('a\n"\\' * 32)),
    ("svc.v2-x", "eu_west-1.canary", "plain", "0123abc"),
]


def post(client: Any, auth: dict[str, str], slug: str, **fields: Any) -> None:
    resp = client.post(f"/components/{slug}/deployments", json=fields, headers=auth)
    assert resp.status_code == 201, resp.json


def versions(families: list[Metric]) -> dict[tuple[str, str], tuple[str, str, float]]:
    out = {}
    for family in families:
        for s in family.samples:
            if s.name == INFO:
                key = (s.labels["component"], s.labels["stage"])
                assert key not in out, f"two current versions for {key}"
                out[key] = (s.labels["version"], s.labels["commit_sha"], s.value)
    return out


@pytest.fixture
def hostile(app: Any, client: Any, auth: dict[str, str]) -> Any:
    assert len(HOSTILE[-2][2]) == 255 and len(HOSTILE[-2][3]) == 128
    for component, stage, version, sha in HOSTILE:
        post(client, auth, component, version=version, stage=stage, commit_sha=sha)
    # One past each limit is refused, not truncated into a label.
    too_long = client.post(
        "/components/long/deployments", json={"version": "v" * 256}, headers=auth
    )
    assert too_long.status_code == 422
    assert set(too_long.json["error"]["fields"]) == {"version"}
    sha_too_long = client.post(
        "/components/long/deployments", json={"version": "v", "commit_sha": "a" * 129}, headers=auth
    )
    assert sha_too_long.status_code == 422
    assert set(sha_too_long.json["error"]["fields"]) == {"commit_sha"}
    return app


def test_hostile_labels_round_trip_in_text_and_openmetrics(hostile: Any, client: Any) -> None:
    want = {(c, s): (v, sha, 1.0) for c, s, v, sha in HOSTILE}

    text = client.get("/metrics")
    assert text.status_code == 200
    assert versions(list(text_string_to_metric_families(text.get_data(as_text=True)))) == want

    om = client.get("/metrics", headers={"Accept": OPENMETRICS})
    assert om.status_code == 200
    assert versions(list(openmetrics_families(om.get_data(as_text=True)))) == want

    registry = hostile.extensions["releasebits"].registry
    for component, stage, version, sha in HOSTILE:
        labels = {"component": component, "stage": stage, "version": version, "commit_sha": sha}
        assert registry.get_sample_value(INFO, labels) == 1.0
        counter = {"component": component, "stage": stage, "result": "success"}
        assert registry.get_sample_value("releasebits_deployments_total", counter) == 1.0


def test_promtool_accepts_the_scrape(hostile: Any, client: Any) -> None:
    promtool = need_binary("promtool")
    body = client.get("/metrics").get_data()
    assert "\U0001f680".encode() in body  # the hostile data is really in what promtool reads
    done = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    # promtool exits 1 on a parse error and 3 on lint problems (each printed on stderr); a
    # clean exposition gives 0 and no output at all.
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output
    assert output.strip() == ""


def test_content_negotiation_and_gzip(hostile: Any, client: Any) -> None:
    plain = client.get("/metrics")
    assert plain.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "Content-Encoding" not in plain.headers
    assert "# EOF" not in plain.get_data(as_text=True).splitlines()
    assert set(plain.headers["Vary"].replace(" ", "").split(",")) >= {"Accept", "Accept-Encoding"}

    om = client.get("/metrics", headers={"Accept": OPENMETRICS})
    assert om.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    om_text = om.get_data(as_text=True)
    assert om_text.endswith("# EOF\n")
    assert "# TYPE releasebits_deployed_version info" in om_text
    assert "# TYPE releasebits_deployments counter" in om_text

    # What Prometheus itself sends.
    prometheus_accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
        "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    scraped = client.get("/metrics", headers={"Accept": prometheus_accept})
    assert scraped.headers["Content-Type"].startswith("application/openmetrics-text")

    zipped = client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert zipped.status_code == 200
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Content-Type"] == plain.headers["Content-Type"]
    raw = zipped.get_data()
    assert int(zipped.headers["Content-Length"]) == len(raw)
    unzipped = gzip.decompress(raw).decode()
    assert list(text_string_to_metric_families(unzipped)) == list(
        text_string_to_metric_families(plain.get_data(as_text=True))
    )

    zipped_om = client.get(
        "/metrics", headers={"Accept": OPENMETRICS, "Accept-Encoding": "gzip, deflate, br"}
    )
    assert zipped_om.headers["Content-Encoding"] == "gzip"
    assert list(openmetrics_families(gzip.decompress(zipped_om.get_data()).decode())) == list(
        openmetrics_families(om_text)
    )


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("gzip;q=0", False),
        ("gzip; q=0, deflate", False),
        ("br;q=1, gzip;q=0.5", True),
        ("*", True),
        ("*, gzip;q=0", False),
        ("deflate, x-gzip", False),
    ],
)
def test_gzip_honours_quality_values(client: Any, accept_encoding: str, gzipped: bool) -> None:
    plain = client.get("/metrics").get_data()
    resp = client.get("/metrics", headers={"Accept-Encoding": accept_encoding})
    assert resp.status_code == 200
    body = resp.get_data()
    if gzipped:
        assert resp.headers["Content-Encoding"] == "gzip"
        text = gzip.decompress(body).decode()
    else:
        # A q=0 refusal must get an identity body a scraper can read as is.
        assert "Content-Encoding" not in resp.headers
        assert not body.startswith(b"\x1f\x8b")
        text = body.decode()
    assert "releasebits_components 0.0" in text
    assert b"releasebits_components 0.0" in plain


def test_metrics_require_token(settings: Settings, db: Any, auth: dict[str, str]) -> None:
    app = create_app(settings.replace(metrics_require_token=True), process_metrics=False)
    client = app.test_client()
    reader = tokens.create_token(db, "reader", ("read",))
    writer = tokens.create_token(db, "writer", ("write",))

    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.json["error"]["code"] == "missing_token"
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {writer}"}).status_code == 403

    ok = client.get("/metrics", headers={"Authorization": f"Bearer {reader}"})
    assert ok.status_code == 200
    assert "releasebits_components 0.0" in ok.get_data(as_text=True)
    assert client.get(f"/metrics?access_token={reader}").status_code == 200
    # The read+write token of the `auth` fixture reads too.
    assert client.get("/metrics", headers=auth).status_code == 200
