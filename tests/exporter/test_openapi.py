"""/openapi.json against the running app: every route, method, declared query parameter and
enum value the routes accept is in the document (walked from Flask's URL map)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from exporter.badges import model as badges
from exporter.names import RESULT_CLASSES
from exporter.web.params import declared
from storage.outbox import STATUSES


def _operations(app: Any, doc: dict[str, Any]) -> list[tuple[str, str, Any, dict[str, Any]]]:
    """(path, method, view, documented operation) for every rule of the URL map."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        item = doc["paths"].get(path)
        assert item is not None, f"{path} missing from /openapi.json"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operation = item.get(method.lower())
            assert operation is not None, f"{method} {path} missing from /openapi.json"
            params = [*item.get("parameters", []), *operation.get("parameters", [])]
            out.append((path, method, app.view_functions[rule.endpoint], {"params": params}))
    return out


def test_every_route_and_declared_parameter_is_documented(app: Any, client: Any) -> None:
    doc = client.get("/openapi.json").json
    checked = 0
    for path, method, view, operation in _operations(app, doc):
        documented = {p["name"]: p for p in operation["params"] if p["in"] == "query"}
        for param in declared(view):
            assert param.name in documented, f"{method} {path}: ?{param.name} undocumented"
            assert documented[param.name]["schema"] == dict(param.schema), (path, param.name)
            checked += 1
        names = re.findall(r"{(\w+)}", path)
        path_params = {p["name"] for p in operation["params"] if p["in"] == "path"}
        assert set(names) <= path_params, f"{method} {path}: path parameters undocumented"
    assert checked >= 20  # the lists, deliveries and badges declare their parameters


def _enums(doc: Any) -> list[list[Any]]:
    found: list[list[Any]] = []
    if isinstance(doc, dict):
        if isinstance(doc.get("enum"), list):
            found.append(doc["enum"])
        for value in doc.values():
            found.extend(_enums(value))
    elif isinstance(doc, list):
        for value in doc:
            found.extend(_enums(value))
    return found


@pytest.mark.parametrize(
    "values",
    [
        RESULT_CLASSES,
        STATUSES,
        badges.COMPONENT_KINDS,
        badges.RELEASE_KINDS,
        tuple(badges.PERIODS),
    ],
)
def test_every_enum_the_server_knows_is_in_the_document(client: Any, values: Any) -> None:
    doc = client.get("/openapi.json").json
    assert list(values) in _enums(doc)


def test_badge_styles_are_documented_without_an_enum(client: Any) -> None:
    """Any style draws (flat when unknown, as shields.io does), so the document lists the
    styles in words and forbids nothing the server accepts (issue 17, item 10: style=null)."""
    doc = client.get("/openapi.json").json
    params = doc["paths"]["/badges/components/{slug}/{kind}.svg"]["get"]["parameters"]
    style = next(p for p in params if p["name"] == "style")
    assert "enum" not in style["schema"]
    assert all(s in style["description"] for s in badges.STYLES)
    assert client.get("/badges/components/x/version.svg?style=null").status_code == 200


def test_document_and_server_agree_on_slugs_versions_and_limits(
    client: Any, auth: dict[str, str]
) -> None:
    """Item 10: the document had no slug pattern and no version minLength; the server now
    refuses what the document forbids, and the document allows what the server accepts."""
    doc = client.get("/openapi.json").json
    item = doc["paths"]["/components/{slug}/deployments"]
    slug = next(p for p in item["parameters"] if p["name"] == "slug")
    pattern = re.compile(slug["schema"]["pattern"])
    version = doc["components"]["schemas"]["DeploymentInput"]["properties"]["version"]
    assert version["minLength"] == 1
    limit = next(p for p in item["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["minimum"] == 1
    for raw, accepted in [("Billing API", True), ("a_b", True), (" a", False), ("-a", False)]:
        assert bool(pattern.fullmatch(raw)) is accepted
        resp = client.post(f"/components/{raw}/deployments", json={"version": "1"}, headers=auth)
        assert (resp.status_code == 201) is accepted, (raw, resp.json)
    resp = client.get("/components/checkout/deployments?limit=0", headers=auth)
    assert resp.status_code in (400, 404)
