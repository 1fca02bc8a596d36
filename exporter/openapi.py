"""The OpenAPI 3.1 description of the whole HTTP API, served at /openapi.json.

Parameters, enums and list filters come from the declarations the routes themselves use
(`exporter.web.params`); tests/exporter/test_openapi.py walks the Flask URL map and fails on any
route, method, declared parameter or enum value this document lacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exporter.badges import model as badges
from exporter.badges.routes import COMPONENT_PARAMS, RELEASE_PARAMS
from exporter.dora.routes import LIST_PARAMS as INCIDENT_LIST_PARAMS
from exporter.forwarding.routes import LIST_PARAMS as DELIVERY_LIST_PARAMS
from exporter.forwarding.targets.base import EVENT_TYPES
from exporter.ingest.resources import COMPONENT_LIST_PARAMS, RELEASE_LIST_PARAMS
from exporter.ingest.routes import LIST_PARAMS
from exporter.ingest.validation import TIMESTAMP_SCHEMA
from exporter.names import RESULT_CLASSES, SLUG_INPUT_PATTERN
from exporter.receivers.routes import RECEIVER_KINDS
from exporter.ui import params as ui_params
from exporter.web.params import Param
from storage.outbox import STATUSES


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


_AUTH: list[dict[str, list[str]]] = [{"bearer": []}, {"access_token": []}]


def _err(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


_ERRORS = {
    "400": _err("Malformed request (broken JSON, bad slug, bad parameter)."),
    "401": _err("Missing, unknown or revoked token."),
    "403": _err("The token lacks the needed scope."),
}
_WRITE_ERRORS = {
    **_ERRORS,
    "409": _err("The Idempotency-Key was used with a different body."),
    "413": _err("Body too large."),
    "415": _err("Unsupported content type."),
    "422": _err("Invalid fields; `fields` names each."),
    "503": _err("The database is busy or unavailable; nothing was stored; retry."),
}

_STR = {"type": "string"}
_TS = {"type": "string", "format": "date-time"}
_NULL_STR = {"type": ["string", "null"]}
_NULL_TS = {"type": ["string", "null"], "format": "date-time"}


def _event_input(kind: str) -> dict[str, Any]:
    props: dict[str, Any] = {
        "version": {
            **_STR,
            "description": "The version, e.g. v1.2.3 (surrounding spaces are removed).",
            "minLength": 1,
            "maxLength": 255,
            "pattern": "\\S",
        },
        "result": {
            **_STR,
            "description": "Result, e.g. success, failed, cancelled. Mapped onto the metric "
            "classes success/failure/error/cancelled/other; absent means success.",
        },
        "started_at": {
            **TIMESTAMP_SCHEMA,
            "description": "ISO 8601 (offsets are normalised to UTC; naive means UTC) or Unix "
            "epoch seconds (a number, or digits in forms and query strings).",
        },
        "finished_at": {
            **TIMESTAMP_SCHEMA,
            "description": "ISO 8601 or Unix epoch seconds, as started_at; set to now when empty.",
        },
        "commit_sha": _STR,
        "code_name": _STR,
        "branch": _STR,
        "tag": _STR,
        "meta_data": {
            "type": "object",
            "description": "Arbitrary data; in forms and query strings use meta_data[key]=value.",
        },
    }
    if kind == "deployment":
        props["stage"] = {**_STR, "description": "e.g. staging; defaults to the configured stage."}
        props["host"] = _STR
        props["release"] = {**_STR, "description": "Name of a release to join (created if new)."}
        props["commits"] = {
            "type": "array",
            "maxItems": 1000,
            "description": "The commits this deployment brings, for DORA change lead time.",
            "items": {
                "type": "object",
                "required": ["sha", "timestamp"],
                "properties": {"sha": _STR, "timestamp": _TS},
            },
        }
    else:
        props["url"] = {**_STR, "description": "Link to the CI run."}
    return {
        "type": "object",
        "required": ["version"],
        "properties": props,
        "additionalProperties": True,
        "description": "Unknown fields are accepted, ignored and listed in `ignored_fields`.",
    }


def _event_output(kind: str) -> dict[str, Any]:
    props: dict[str, Any] = {
        "id": {**_STR, "format": "uuid"},
        "component": _STR,
        "version": _STR,
        "result": _NULL_STR,
        "result_class": {"enum": list(RESULT_CLASSES)},
        "code_name": _NULL_STR,
        "started_at": _NULL_TS,
        "finished_at": _TS,
        "duration_seconds": {"type": ["number", "null"]},
        "meta_data": {"type": "object"},
        "commit_sha": _NULL_STR,
        "tag": _NULL_STR,
        "branch": _NULL_STR,
    }
    if kind == "deployment":
        props.update({"stage": _STR, "host": _NULL_STR, "release": _NULL_STR})
    else:
        props["url"] = _NULL_STR
    return {"type": "object", "properties": props}


def _query(params: Sequence[Param]) -> list[dict[str, Any]]:
    return [p.openapi() for p in params]


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _STR}


_SLUG = {**_path("slug"), "schema": {**_STR, "pattern": SLUG_INPUT_PATTERN}}
_LINK = {"Link": {"description": 'Next page: <url>; rel="next"', "schema": _STR}}


def _page(plural: str, schema: str) -> dict[str, Any]:
    """The 200 answer of a paginated list: an array of `schema` and a Link to the next page."""
    return {
        "description": f"A page of {plural}.",
        "headers": _LINK,
        "content": {"application/json": {"schema": {"type": "array", "items": _ref(schema)}}},
    }


def _create_event(kind: str, schema: str) -> dict[str, Any]:
    body = {"schema": _ref(f"{schema}Input")}
    return {
        "operationId": f"create{schema}",
        "summary": f"Record a {kind}",
        "description": "JSON body, form body, or query parameters on a bodiless POST. "
        "A 201 means the event is committed to disk.",
        "security": _AUTH,
        "parameters": [
            {"name": "Idempotency-Key", "in": "header", "schema": _STR, "required": False}
        ],
        "requestBody": {
            "required": False,
            "content": {"application/json": body, "application/x-www-form-urlencoded": body},
        },
        "responses": {
            "201": _json("Stored.", "Created"),
            "200": _json("Replay of an earlier answer for the same Idempotency-Key.", "Created"),
            **_WRITE_ERRORS,
        },
    }


def _event_paths(kind: str) -> dict[str, Any]:
    plural = f"{kind}s"
    schema = "Deployment" if kind == "deployment" else "Build"
    return {
        f"/components/{{slug}}/{plural}": {
            "parameters": [_SLUG],
            "post": _create_event(kind, schema),
            "get": {
                "operationId": f"list{schema}s",
                "summary": f"List {plural}, newest first",
                "security": _AUTH,
                "parameters": _query(LIST_PARAMS[kind]),
                "responses": {
                    "200": _page(plural, schema),
                    "404": _err("Unknown component."),
                    **_ERRORS,
                },
            },
        },
        f"/components/{{slug}}/{plural}/{{event_id}}": {
            "parameters": [_SLUG, _path("event_id")],
            "get": {
                "operationId": f"get{schema}",
                "summary": f"One {kind}",
                "security": _AUTH,
                "responses": {
                    "200": _json(f"The {kind}.", schema),
                    "404": _err("Not found."),
                    **_ERRORS,
                },
            },
        },
    }


_BADGE_HEADERS = {
    "ETag": {
        "description": "Strong validator of the body; send it as If-None-Match.",
        "schema": _STR,
    },
    "Cache-Control": {"description": "max-age=badge_max_age_seconds.", "schema": _STR},
}
_ENDPOINT_JSON = {
    "type": "object",
    "required": ["schemaVersion", "label", "message"],
    "properties": {
        "schemaVersion": {"const": 1},
        **dict.fromkeys(("label", "message", "color", "labelColor", "style"), _STR),
        "isError": {"type": "boolean"},
        "cacheSeconds": {"type": "integer"},
    },
}


def _badge_operation(what: str, ext: str, query: Sequence[Param]) -> dict[str, Any]:
    media, schema = (
        ("image/svg+xml", _STR) if ext == "svg" else ("application/json", _ENDPOINT_JSON)
    )
    return {
        "operationId": f"badge{what}{ext.upper()}",
        "summary": f"{what} badge as {'SVG' if ext == 'svg' else 'shields.io endpoint JSON'}",
        "description": "Unknown component, stage or release, or no data: a grey 'not found' / "
        "'no data' badge with status 200. A read token is needed only when "
        "badges_require_token is set.",
        "parameters": _query(query),
        "responses": {
            "200": {
                "description": "The badge.",
                "headers": _BADGE_HEADERS,
                "content": {media: {"schema": schema}},
            },
            "304": {"description": "Unchanged (If-None-Match matched the ETag)."},
            "401": _err("Token required (badges_require_token)."),
            "404": {
                "description": "No such badge kind (a grey badge).",
                "content": {media: {"schema": schema}},
            },
        },
    }


def _badge_paths() -> dict[str, Any]:
    """Badge images (SVG) and their shields.io endpoint JSON, per component and per release."""
    families = (
        (
            "/badges/components/{slug}/{kind}",
            _SLUG,
            badges.COMPONENT_KINDS,
            COMPONENT_PARAMS,
            "Component",
        ),
        (
            "/badges/releases/{name}/{kind}",
            _path("name"),
            badges.RELEASE_KINDS,
            RELEASE_PARAMS,
            "Release",
        ),
    )
    out: dict[str, Any] = {}
    for base, ident, kinds, query, what in families:
        params = [ident, {**_path("kind"), "schema": {"enum": list(kinds)}}]
        for ext in ("svg", "json"):
            out[f"{base}.{ext}"] = {"parameters": params, "get": _badge_operation(what, ext, query)}
    return out


def _delivery_paths() -> dict[str, Any]:
    """The forwarding outbox: list deliveries, retry one."""
    return {
        "/deliveries": {
            "get": {
                "operationId": "listDeliveries",
                "summary": "Forwarding deliveries (one per event and target), newest first",
                "security": _AUTH,
                "parameters": _query(DELIVERY_LIST_PARAMS),
                "responses": {"200": _page("deliveries", "Delivery"), **_ERRORS},
            }
        },
        "/deliveries/{delivery_id}/retry": {
            "parameters": [_path("delivery_id")],
            "post": {
                "operationId": "retryDelivery",
                "summary": "Make a delivery due now with a fresh give-up horizon "
                "(re-enables a disabled target)",
                "security": _AUTH,
                "responses": {
                    "200": _json("The delivery, pending again.", "Delivery"),
                    "404": _err("Unknown delivery."),
                    "409": _err("The delivery is being attempted right now."),
                    **_ERRORS,
                },
            },
        },
    }


def _delivery_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "id": {**_STR, "description": "Also the webhook-id header of webhook deliveries."},
            "event": {
                "type": "object",
                "properties": {
                    "kind": {"enum": list(EVENT_TYPES)},
                    "id": _STR,
                    "component": _NULL_STR,
                },
            },
            "target": _STR,
            "status": {"enum": list(STATUSES)},
            "attempts": {"type": "integer"},
            "next_attempt_at": _NULL_TS,
            "last_status": {"type": ["integer", "null"]},
            "last_error": _NULL_STR,
            "created_at": _TS,
            "updated_at": _TS,
            "delivered_at": _NULL_TS,
        },
    }


def _incident_paths() -> dict[str, Any]:
    """Incidents of a component: create (idempotent by external_id), resolve, list, get."""
    body = {"schema": _ref("IncidentInput")}
    return {
        "/components/{slug}/incidents": {
            "parameters": [_SLUG],
            "post": {
                "operationId": "createIncident",
                "summary": "Record an incident (linked at once to the deployment it names, else "
                "to the rollout current on its stage when it started)",
                "security": _AUTH,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": body,
                        "application/x-www-form-urlencoded": body,
                    },
                },
                "responses": {
                    "201": _json("Created.", "Incident"),
                    "200": _json("An incident with this external_id existed; updated.", "Incident"),
                    **_WRITE_ERRORS,
                },
            },
            **_list_op(
                "listIncidents",
                "Incidents, newest first",
                "incidents",
                "Incident",
                INCIDENT_LIST_PARAMS,
            ),
        },
        "/components/{slug}/incidents/{incident_id}": {
            "parameters": [_SLUG, _path("incident_id")],
            "patch": {
                "operationId": "resolveIncident",
                "summary": "Resolve an incident (resolved_at, default now)",
                "security": _AUTH,
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {"type": "object", "properties": {"resolved_at": _TS}}
                        }
                    },
                },
                "responses": {
                    "200": _json("The incident.", "Incident"),
                    "404": _err("Unknown incident."),
                    **_WRITE_ERRORS,
                },
            },
            **_one_op("getIncident", "One incident", "Incident", "incident"),
        },
    }


def _incident_schemas() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "IncidentInput": {
            "type": "object",
            "required": ["started_at"],
            "properties": {
                "stage": {**text, "description": "Defaults to the configured default_stage."},
                "started_at": {
                    **TIMESTAMP_SCHEMA,
                    "description": "ISO 8601 or Unix epoch seconds.",
                },
                "resolved_at": {
                    **TIMESTAMP_SCHEMA,
                    "description": "ISO 8601 or Unix epoch seconds.",
                },
                "title": text,
                "url": text,
                "external_id": {**text, "description": "Your id; a second POST with it updates."},
                "deployment_id": {**text, "description": "The deployment that caused it."},
            },
        },
        "Incident": {
            "type": "object",
            "properties": {
                "id": text,
                "component": text,
                "stage": text,
                "external_id": _NULL_STR,
                "title": _NULL_STR,
                "url": _NULL_STR,
                "deployment_id": _NULL_STR,
                "linked_deployment_id": {
                    **_NULL_STR,
                    "description": "The deployment (of a rollout) it counts against; set once.",
                },
                "started_at": _TS,
                "resolved_at": _NULL_TS,
                "source": {"enum": ["api", "cdevents"]},
            },
        },
    }


def _webhook_paths() -> dict[str, Any]:
    """The webhook receivers, one path with the receiver kind as its parameter."""
    answer = {"type": "object", "additionalProperties": True}
    content = {"application/json": {"schema": answer}}
    return {
        "/webhooks/{kind}": {
            "parameters": [{**_path("kind"), "schema": {"enum": list(RECEIVER_KINDS)}}],
            "post": {
                "operationId": "receiveWebhook",
                "summary": "A GitHub, GitLab or CDEvents (CloudEvents HTTP) delivery",
                "description": "github: signed with X-Hub-Signature-256; gitlab: X-Gitlab-Token "
                "(and a Standard Webhooks signature when a signing token is configured); "
                "cdevents: a write token. Off (404) until [receivers.<kind>] is configured.",
                "security": [{}, *_AUTH],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": answer}},
                },
                "responses": {
                    "201": {
                        "description": "A new deployment, build or incident stored.",
                        "content": content,
                    },
                    "200": {
                        "description": "Stored: commits, a start time, an update of an event "
                        "already stored, a ping, or a delivery seen before (`duplicate`).",
                        "content": content,
                    },
                    "202": {
                        "description": "Nothing to store; `ignored` says why.",
                        "content": content,
                    },
                    "400": _err("Unreadable body (broken JSON, not a CloudEvent)."),
                    "401": _err("Bad or missing signature or token."),
                    "403": _err("The token lacks the write scope (cdevents)."),
                    "404": _err("This receiver is not configured."),
                    "413": _err("Body too large (max_body_bytes)."),
                    "503": _err("The database is busy or unavailable; nothing was stored; retry."),
                },
            },
        }
    }


def _get(
    operation_id: str, summary: str, responses: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "get": {"operationId": operation_id, "summary": summary, **extra, "responses": responses}
    }


def _meta_paths() -> dict[str, Any]:
    """Health, this document and /metrics."""
    any_object = {"application/json": {"schema": {"type": "object"}}}
    text = {"description": "OK", "content": {"text/plain": {"schema": _STR}}}
    return {
        "/healthz": _get(
            "health",
            "Database and worker health",
            {
                "200": {"description": "Healthy", "content": any_object},
                "503": {"description": "Database unavailable", "content": any_object},
            },
        ),
        "/openapi.json": _get(
            "openapi",
            "This document",
            {"200": {"description": "OpenAPI 3.1", "content": any_object}},
        ),
        "/metrics": _get(
            "metrics",
            "Prometheus metrics (text or OpenMetrics by Accept; gzip on request)",
            {"200": text, "401": _err("Token required (metrics_require_token).")},
        ),
    }


def _ui_paths() -> dict[str, Any]:
    """The status page, a component's page, this document as HTML, signing in and out."""
    paths = _ui_operations()
    for item in paths.values():
        for key in ("get", "post"):
            if key in item:
                item[key]["tags"] = ["Status page (HTML)"]
    return paths


def _ui_operations() -> dict[str, Any]:
    html = {"text/html": {"schema": _STR}}
    page = {"description": "An HTML page.", "content": html}
    sign_in = {"description": "The sign-in form (ui_require_token).", "content": html}
    see_other = {"description": "Signed in or out; Location says where to go next."}
    form = {"application/x-www-form-urlencoded": {"schema": _ref("SignIn")}}
    return {
        "/": _get(
            "statusPage",
            "The status page: versions per component and stage, recent deployments and "
            "builds, source and forwarding health",
            {"200": page, "401": sign_in},
            parameters=_query(ui_params.STATUS_PARAMS),
        ),
        "/ui/components/{slug}": {
            "parameters": [_SLUG],
            **_get(
                "componentPage",
                "One component's page: versions per stage, their changes, its events",
                {
                    "200": page,
                    "401": sign_in,
                    "404": {"description": "Unknown component.", "content": html},
                },
                parameters=_query(ui_params.COMPONENT_PARAMS),
            ),
        },
        "/docs": _get("apiReference", "This document as a readable page", {"200": page}),
        "/ui/sign-in": {
            **_get(
                "signInForm", "The sign-in form", {"200": page}, parameters=_query([ui_params.NEXT])
            ),
            "post": {
                "operationId": "signIn",
                "summary": "Keep a read token in a Secure, HttpOnly, SameSite=Strict cookie",
                "requestBody": {"required": True, "content": form},
                # 200: the form again, saying why (found by tests/e2e/test_schemathesis.py).
                "responses": {"200": sign_in, "303": see_other, "401": sign_in, "403": sign_in},
            },
        },
        "/ui/sign-out": {
            "post": {
                "operationId": "signOut",
                "summary": "Forget the sign-in cookie",
                "responses": {"303": see_other},
            }
        },
        "/ui/static/{filename}": {
            "parameters": [_path("filename")],
            **_get(
                "uiAsset",
                "The status page's stylesheet, script and icon",
                {"200": {"description": "The file."}, "404": _err("No such file.")},
            ),
        },
    }


def _list_op(
    operation_id: str, summary: str, plural: str, schema: str, params: Sequence[Param]
) -> dict[str, Any]:
    return _get(
        operation_id,
        summary,
        {"200": _page(plural, schema), **_ERRORS},
        security=_AUTH,
        parameters=_query(params),
    )


def _one_op(operation_id: str, summary: str, schema: str, what: str) -> dict[str, Any]:
    responses = {"200": _json(f"The {what}.", schema), "404": _err(f"Unknown {what}."), **_ERRORS}
    return _get(operation_id, summary, responses, security=_AUTH)


def _resource_paths() -> dict[str, Any]:
    """Components and releases."""
    return {
        "/components": _list_op(
            "listComponents",
            "Components with their current version per stage",
            "components",
            "Component",
            COMPONENT_LIST_PARAMS,
        ),
        "/components/{slug}": {
            "parameters": [_SLUG],
            **_one_op("getComponent", "One component", "Component", "component"),
        },
        "/releases": {
            "post": _create_release(),
            **_list_op(
                "listReleases", "Releases, newest first", "releases", "Release", RELEASE_LIST_PARAMS
            ),
        },
        "/releases/{id_or_name}": {
            "parameters": [_path("id_or_name")],
            **_one_op("getRelease", "One release with its deployments", "Release", "release"),
        },
    }


def _create_release() -> dict[str, Any]:
    body = {"schema": _ref("ReleaseInput")}
    return {
        "operationId": "createRelease",
        "summary": "Create a release (returns the existing one, 200, if the name exists)",
        "security": _AUTH,
        "requestBody": {
            "required": False,
            "content": {"application/json": body, "application/x-www-form-urlencoded": body},
        },
        "responses": {
            "201": _json("Created.", "Release"),
            "200": _json("Already existed.", "Release"),
            **_WRITE_ERRORS,
        },
    }


def _component_schema() -> dict[str, Any]:
    stage = {
        "type": "object",
        "properties": {
            "version": _STR,
            "commit_sha": _NULL_STR,
            "deployment_id": _STR,
            "deployed_at": _TS,
            "since": _TS,
        },
    }
    return {
        "type": "object",
        "properties": {
            "slug": _STR,
            "stages": {
                "type": "object",
                "description": "Current version per stage.",
                "additionalProperties": stage,
            },
            "deployments_count": {"type": "integer"},
            "builds_count": {"type": "integer"},
            "last_build": {"type": ["object", "null"]},
        },
    }


def _schemas() -> dict[str, Any]:
    error = {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": _STR,
            "message": _STR,
            "fields": {"type": "object", "additionalProperties": _STR},
        },
    }
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": error}},
        "Created": {
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {**_STR, "format": "uuid"},
                "ignored_fields": {"type": "array", "items": _STR},
            },
        },
        "DeploymentInput": _event_input("deployment"),
        "BuildInput": _event_input("build"),
        "Deployment": _event_output("deployment"),
        "Build": _event_output("build"),
        "Component": _component_schema(),
        "ReleaseInput": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {**_STR, "minLength": 1, "maxLength": 255, "pattern": "\\S"},
                "description": {**_STR, "maxLength": 4096},
                "meta_data": {"type": "object"},
            },
        },
        "Release": {
            "type": "object",
            "properties": {
                "id": _STR,
                "name": _STR,
                "description": _NULL_STR,
                "meta_data": {"type": "object"},
                "created_at": _TS,
                "deployments_count": {"type": "integer"},
                "deployments": {"type": "array", "items": _ref("Deployment")},
            },
        },
        "Delivery": _delivery_schema(),
        "SignIn": {
            "type": "object",
            "required": ["token"],
            "properties": {
                "token": {**_STR, "description": "An API token with the read scope."},
                "next": {**_STR, "description": "A path on this server to go to afterwards."},
            },
        },
        **_incident_schemas(),
    }


def openapi_document(version: str) -> dict[str, Any]:
    """The complete document; tests validate it with openapi-spec-validator."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ReleaseBits API",
            "version": version,
            "description": "Record CI/CD deployments, builds and releases; read them back; "
            "scrape them as Prometheus metrics.",
        },
        "paths": {
            **_meta_paths(),
            **_event_paths("deployment"),
            **_event_paths("build"),
            **_delivery_paths(),
            **_webhook_paths(),
            **_incident_paths(),
            **_badge_paths(),
            **_resource_paths(),
            **_ui_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <token>` (or the bare token).",
                },
                "access_token": {"type": "apiKey", "in": "query", "name": "access_token"},
            },
            "schemas": _schemas(),
        },
    }
