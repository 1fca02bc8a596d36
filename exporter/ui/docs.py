"""/docs: the OpenAPI document as a readable page, built server-side from the same document
/openapi.json serves (no JavaScript, nothing fetched from elsewhere)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Field:
    """A parameter or a schema property as one table row."""

    name: str
    type: str
    ref: str | None = None  # the schema it names, linked on the page
    where: str = ""  # query, path, header (parameters only)
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Answer:
    status: str
    description: str
    media: list[tuple[str, str, str | None]]  # media type, schema text, schema ref


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    anchor: str
    summary: str
    description: str
    needs_token: bool
    params: list[Field]
    body: list[tuple[str, str, str | None]]
    answers: list[Answer]


@dataclass(frozen=True)
class Group:
    title: str
    operations: list[Operation] = field(default_factory=list)


@dataclass(frozen=True)
class Schema:
    name: str
    description: str
    fields: list[Field]


@dataclass(frozen=True)
class Docs:
    title: str
    version: str
    description: str
    groups: list[Group]
    schemas: list[Schema]
    security: list[tuple[str, str]]


def code_spans(text: str) -> list[tuple[str, bool]]:
    """Text split at `backticks` into (piece, is_code), so descriptions show code as code."""
    pieces = text.split("`")
    if len(pieces) % 2 == 0:  # an unpaired backtick: plain text
        return [(text, False)]
    return [(piece, i % 2 == 1) for i, piece in enumerate(pieces) if piece]


def type_of(schema: Mapping[str, Any]) -> tuple[str, str | None]:
    """A schema as short text ('string | null', 'one of a, b', 'array of Deployment') and the
    name of the schema it refers to, if any."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return name, name
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"]), None
    if "const" in schema:
        return f"always {schema['const']}", None
    kind = schema.get("type", "any")
    text = " | ".join(kind) if isinstance(kind, list) else str(kind)
    ref = None
    if text == "array" and isinstance(schema.get("items"), Mapping):
        inner, ref = type_of(schema["items"])
        text = f"array of {inner}"
    if "format" in schema:
        text += f" ({schema['format']})"
    bounds = [f"{k} {schema[k]}" for k in ("minimum", "maximum", "maxLength") if k in schema]
    if bounds:
        text += ", " + ", ".join(bounds)
    return text, ref


def _param(p: Mapping[str, Any]) -> Field:
    text, ref = type_of(p.get("schema", {}))
    return Field(
        name=str(p["name"]),
        type=text,
        ref=ref,
        where=str(p.get("in", "")),
        required=bool(p.get("required", False)),
        description=str(p.get("description", "")),
    )


def _media(content: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(media, *type_of(spec.get("schema", {}))) for media, spec in content.items()]


def _operation(path: str, method: str, item: Mapping[str, Any], op: Mapping[str, Any]) -> Operation:
    params = [*item.get("parameters", []), *op.get("parameters", [])]
    answers = [
        Answer(str(status), str(r.get("description", "")), _media(r.get("content", {})))
        for status, r in op.get("responses", {}).items()
    ]
    return Operation(
        method=method.upper(),
        path=path,
        anchor=str(op.get("operationId") or f"{method}-{path}"),
        summary=str(op.get("summary", "")),
        description=str(op.get("description", "")),
        needs_token=bool(op.get("security")),
        params=[_param(p) for p in params],
        body=_media(op.get("requestBody", {}).get("content", {})),
        answers=sorted(answers, key=lambda a: a.status),
    )


def _schema(name: str, schema: Mapping[str, Any]) -> Schema:
    required = set(schema.get("required", []))
    fields = []
    for prop, spec in schema.get("properties", {}).items():
        text, ref = type_of(spec)
        fields.append(
            Field(
                prop, text, ref, required=prop in required, description=spec.get("description", "")
            )
        )
    text, _ = type_of(schema)
    return Schema(name, str(schema.get("description", "")) or text, fields)


def docs(document: Mapping[str, Any]) -> Docs:
    """Operations grouped by their first tag, else by the first segment of their path, in the
    document's order."""
    groups: dict[str, Group] = {}
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                tags = item[method].get("tags") or ["/" + path.strip("/").split("/", 1)[0]]
                op = _operation(path, method, item, item[method])
                groups.setdefault(tags[0], Group(tags[0])).operations.append(op)
    parts = document.get("components", {})
    security = [
        (
            name,
            str(
                spec.get("description") or f"{spec.get('in', '')} parameter {spec.get('name', '')}"
            ),
        )
        for name, spec in parts.get("securitySchemes", {}).items()
    ]
    info = document.get("info", {})
    return Docs(
        title=str(info.get("title", "API")),
        version=str(info.get("version", "")),
        description=str(info.get("description", "")),
        groups=list(groups.values()),
        schemas=[_schema(n, s) for n, s in parts.get("schemas", {}).items()],
        security=security,
    )
