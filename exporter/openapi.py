"""The OpenAPI 3.1 description of the whole HTTP API, served at /openapi.json."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


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
        "version": {**_STR, "description": "The version, e.g. v1.2.3.", "maxLength": 255},
        "result": {
            **_STR,
            "description": "Result, e.g. success, failed, cancelled. Mapped onto the metric "
            "classes success/failure/error/cancelled/other; absent means success.",
        },
        "started_at": {**_TS, "description": "ISO 8601; offsets are normalised to UTC."},
        "finished_at": {**_TS, "description": "ISO 8601; set to now when empty."},
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
        "result_class": {"enum": ["success", "failure", "error", "cancelled", "other"]},
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


def _list_params(kind: str) -> list[dict[str, Any]]:
    params = [
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 500},
        },
        {"name": "cursor", "in": "query", "schema": _STR, "description": "From the Link header."},
        {"name": "version", "in": "query", "schema": _STR},
        {"name": "result", "in": "query", "schema": _STR, "description": "Raw result or class."},
        {"name": "since", "in": "query", "schema": _TS},
        {"name": "until", "in": "query", "schema": _TS},
    ]
    if kind == "deployment":
        params += [
            {"name": "stage", "in": "query", "schema": _STR},
            {"name": "host", "in": "query", "schema": _STR},
        ]
    return params


_SLUG = {"name": "slug", "in": "path", "required": True, "schema": _STR}
_LINK = {"Link": {"description": 'Next page: <url>; rel="next"', "schema": _STR}}


def _page(plural: str, schema: str) -> dict[str, Any]:
    """The 200 answer of a paginated list: an array of `schema` and a Link to the next page."""
    return {
        "description": f"A page of {plural}.",
        "headers": _LINK,
        "content": {"application/json": {"schema": {"type": "array", "items": _ref(schema)}}},
    }


def _event_paths(kind: str) -> dict[str, Any]:
    plural = f"{kind}s"
    schema = "Deployment" if kind == "deployment" else "Build"
    body_types = {
        "application/json": {"schema": _ref(f"{schema}Input")},
        "application/x-www-form-urlencoded": {"schema": _ref(f"{schema}Input")},
    }
    return {
        f"/components/{{slug}}/{plural}": {
            "parameters": [_SLUG],
            "post": {
                "operationId": f"create{schema}",
                "summary": f"Record a {kind}",
                "description": "JSON body, form body, or query parameters on a bodiless POST. "
                "A 201 means the event is committed to disk.",
                "security": [{"bearer": []}, {"access_token": []}],
                "parameters": [
                    {"name": "Idempotency-Key", "in": "header", "schema": _STR, "required": False}
                ],
                "requestBody": {"required": False, "content": body_types},
                "responses": {
                    "201": {
                        "description": "Stored.",
                        "content": {"application/json": {"schema": _ref("Created")}},
                    },
                    "200": {
                        "description": "Replay of an earlier answer for the same Idempotency-Key.",
                        "content": {"application/json": {"schema": _ref("Created")}},
                    },
                    **_WRITE_ERRORS,
                },
            },
            "get": {
                "operationId": f"list{schema}s",
                "summary": f"List {plural}, newest first",
                "security": [{"bearer": []}, {"access_token": []}],
                "parameters": _list_params(kind),
                "responses": {
                    "200": _page(plural, schema),
                    "404": _err("Unknown component."),
                    **_ERRORS,
                },
            },
        },
        f"/components/{{slug}}/{plural}/{{event_id}}": {
            "parameters": [
                _SLUG,
                {"name": "event_id", "in": "path", "required": True, "schema": _STR},
            ],
            "get": {
                "operationId": f"get{schema}",
                "summary": f"One {kind}",
                "security": [{"bearer": []}, {"access_token": []}],
                "responses": {
                    "200": {
                        "description": f"The {kind}.",
                        "content": {"application/json": {"schema": _ref(schema)}},
                    },
                    "404": _err("Not found."),
                    **_ERRORS,
                },
            },
        },
    }


def _badge_paths() -> dict[str, Any]:
    """Badge images (SVG) and their shields.io endpoint JSON, per component and per release."""
    q = "query"
    look = [
        {
            "name": "style",
            "in": q,
            "schema": {"enum": ["flat", "flat-square", "plastic", "for-the-badge"]},
            "description": "shields.io style; anything else draws flat.",
        },
        {"name": "label", "in": q, "schema": _STR, "description": "Replaces the left text."},
        {
            "name": "color",
            "in": q,
            "schema": _STR,
            "description": "A shields.io colour name or hex (ff69b4); invalid values are ignored.",
        },
        {"name": "labelColor", "in": q, "schema": _STR, "description": "Colour of the label."},
    ]
    headers = {
        "ETag": {
            "description": "Strong validator of the body; send it as If-None-Match.",
            "schema": _STR,
        },
        "Cache-Control": {"description": "max-age=badge_max_age_seconds.", "schema": _STR},
    }
    endpoint_schema = {
        "type": "object",
        "required": ["schemaVersion", "label", "message"],
        "properties": {
            "schemaVersion": {"const": 1},
            "label": _STR,
            "message": _STR,
            "color": _STR,
            "labelColor": _STR,
            "isError": {"type": "boolean"},
            "style": _STR,
            "cacheSeconds": {"type": "integer"},
        },
    }
    component_params = [
        _SLUG,
        {
            "name": "kind",
            "in": "path",
            "required": True,
            "schema": {"enum": ["version", "build", "crash-free", "deployments", "last-deploy"]},
        },
    ]
    release_params = [
        {"name": "name", "in": "path", "required": True, "schema": _STR},
        {
            "name": "kind",
            "in": "path",
            "required": True,
            "schema": {"enum": ["crash-free", "deployments", "last-deploy"]},
        },
    ]
    component_query = [
        {"name": "stage", "in": q, "schema": _STR, "description": "Default: default_stage."},
        {"name": "source", "in": q, "schema": _STR, "description": "crash-free: the source."},
        {"name": "period", "in": q, "schema": {"enum": ["day", "week", "month"]}},
    ]
    release_query = [
        {"name": "source", "in": q, "schema": _STR},
        {"name": "environment", "in": q, "schema": _STR},
    ]
    description = (
        "Unknown component, stage or release, or no data: a grey 'not found' / 'no data' badge "
        "with status 200. A read token is needed only when badges_require_token is set."
    )
    out: dict[str, Any] = {}
    for base, params, query, what in (
        ("/badges/components/{slug}/{kind}", component_params, component_query, "Component"),
        ("/badges/releases/{name}/{kind}", release_params, release_query, "Release"),
    ):
        for ext, media, schema in (
            ("svg", "image/svg+xml", _STR),
            ("json", "application/json", endpoint_schema),
        ):
            out[f"{base}.{ext}"] = {
                "parameters": params,
                "get": {
                    "operationId": f"badge{what}{ext.upper()}",
                    "summary": f"{what} badge as {'SVG' if ext == 'svg' else 'shields.io endpoint JSON'}",
                    "description": description,
                    "parameters": [*query, *look],
                    "responses": {
                        "200": {
                            "description": "The badge.",
                            "headers": headers,
                            "content": {media: {"schema": schema}},
                        },
                        "304": {"description": "Unchanged (If-None-Match matched the ETag)."},
                        "401": _err("Token required (badges_require_token)."),
                        "404": {
                            "description": "No such badge kind (a grey badge).",
                            "content": {media: {"schema": schema}},
                        },
                    },
                },
            }
    return out


def _delivery_paths() -> dict[str, Any]:
    """The forwarding outbox: list deliveries, retry one."""
    auth: list[dict[str, list[str]]] = [{"bearer": []}, {"access_token": []}]
    statuses = ["pending", "delivering", "delivered", "failed", "disabled"]
    return {
        "/deliveries": {
            "get": {
                "operationId": "listDeliveries",
                "summary": "Forwarding deliveries (one per event and target), newest first",
                "security": auth,
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"enum": statuses}},
                    {
                        "name": "target",
                        "in": "query",
                        "schema": _STR,
                        "description": "A configured target name.",
                    },
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    {"name": "cursor", "in": "query", "schema": _STR},
                ],
                "responses": {
                    "200": _page("deliveries", "Delivery"),
                    **_ERRORS,
                },
            }
        },
        "/deliveries/{delivery_id}/retry": {
            "parameters": [{"name": "delivery_id", "in": "path", "required": True, "schema": _STR}],
            "post": {
                "operationId": "retryDelivery",
                "summary": "Make a delivery due now with a fresh give-up horizon "
                "(re-enables a disabled target)",
                "security": auth,
                "responses": {
                    "200": {
                        "description": "The delivery, pending again.",
                        "content": {"application/json": {"schema": _ref("Delivery")}},
                    },
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
                    "kind": {"enum": ["deployment", "build", "release"]},
                    "id": _STR,
                    "component": _NULL_STR,
                },
            },
            "target": _STR,
            "status": {"enum": ["pending", "delivering", "delivered", "failed", "disabled"]},
            "attempts": {"type": "integer"},
            "next_attempt_at": _NULL_TS,
            "last_status": {"type": ["integer", "null"]},
            "last_error": _NULL_STR,
            "created_at": _TS,
            "updated_at": _TS,
            "delivered_at": _NULL_TS,
        },
    }


def openapi_document(version: str) -> dict[str, Any]:
    """The complete document; tests validate it with openapi-spec-validator."""
    auth: list[dict[str, list[str]]] = [{"bearer": []}, {"access_token": []}]
    component_schema = {
        "type": "object",
        "properties": {
            "slug": _STR,
            "stages": {
                "type": "object",
                "description": "Current version per stage.",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "version": _STR,
                        "commit_sha": _NULL_STR,
                        "deployment_id": _STR,
                        "deployed_at": _TS,
                        "since": _TS,
                    },
                },
            },
            "deployments_count": {"type": "integer"},
            "builds_count": {"type": "integer"},
            "last_build": {"type": ["object", "null"]},
        },
    }
    release_schema = {
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
    }
    text = {"description": "OK", "content": {"text/plain": {"schema": _STR}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ReleaseBits API",
            "version": version,
            "description": "Record CI/CD deployments, builds and releases; read them back; "
            "scrape them as Prometheus metrics.",
        },
        "paths": {
            "/": {
                "get": {
                    "operationId": "landing",
                    "summary": "HTML landing page",
                    "responses": {
                        "200": {"description": "HTML", "content": {"text/html": {"schema": _STR}}}
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Database and worker health",
                    "responses": {
                        "200": {
                            "description": "Healthy",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "503": {
                            "description": "Database unavailable",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text or OpenMetrics by Accept; gzip on request)",
                    "responses": {
                        "200": text,
                        "401": _err("Token required (metrics_require_token)."),
                    },
                }
            },
            **_event_paths("deployment"),
            **_event_paths("build"),
            **_delivery_paths(),
            **_badge_paths(),
            "/components": {
                "get": {
                    "operationId": "listComponents",
                    "summary": "Components with their current version per stage",
                    "security": auth,
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                        {"name": "cursor", "in": "query", "schema": _STR},
                    ],
                    "responses": {
                        "200": _page("components", "Component"),
                        **_ERRORS,
                    },
                }
            },
            "/components/{slug}": {
                "parameters": [_SLUG],
                "get": {
                    "operationId": "getComponent",
                    "summary": "One component",
                    "security": auth,
                    "responses": {
                        "200": {
                            "description": "The component.",
                            "content": {"application/json": {"schema": _ref("Component")}},
                        },
                        "404": _err("Unknown component."),
                        **_ERRORS,
                    },
                },
            },
            "/releases": {
                "post": {
                    "operationId": "createRelease",
                    "summary": "Create a release (returns the existing one, 200, if the name exists)",
                    "security": auth,
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {"schema": _ref("ReleaseInput")},
                            "application/x-www-form-urlencoded": {"schema": _ref("ReleaseInput")},
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "Created.",
                            "content": {"application/json": {"schema": _ref("Release")}},
                        },
                        "200": {
                            "description": "Already existed.",
                            "content": {"application/json": {"schema": _ref("Release")}},
                        },
                        **_WRITE_ERRORS,
                    },
                },
                "get": {
                    "operationId": "listReleases",
                    "summary": "Releases, newest first",
                    "security": auth,
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                        {"name": "cursor", "in": "query", "schema": _STR},
                    ],
                    "responses": {
                        "200": _page("releases", "Release"),
                        **_ERRORS,
                    },
                },
            },
            "/releases/{id_or_name}": {
                "parameters": [
                    {"name": "id_or_name", "in": "path", "required": True, "schema": _STR}
                ],
                "get": {
                    "operationId": "getRelease",
                    "summary": "One release with its deployments",
                    "security": auth,
                    "responses": {
                        "200": {
                            "description": "The release.",
                            "content": {"application/json": {"schema": _ref("Release")}},
                        },
                        "404": _err("Unknown release."),
                        **_ERRORS,
                    },
                },
            },
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
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": _STR,
                                "message": _STR,
                                "fields": {"type": "object", "additionalProperties": _STR},
                            },
                        }
                    },
                },
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
                "Component": component_schema,
                "ReleaseInput": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": _STR,
                        "description": _STR,
                        "meta_data": {"type": "object"},
                    },
                },
                "Release": release_schema,
                "Delivery": _delivery_schema(),
            },
        },
    }
