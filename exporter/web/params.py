"""Query parameters declared once: the routes read them, the OpenAPI document lists them, and a
test checks every route's declared parameters and enum values against the document."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import request

from exporter.web.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Param:
    """One query parameter: its name, JSON schema and description."""

    name: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    description: str = ""

    def openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "in": "query", "schema": dict(self.schema)}
        if self.description:
            out["description"] = self.description
        return out


def enum(*values: str) -> dict[str, Any]:
    return {"enum": list(values)}


def declares(*params: Param) -> Callable[[F], F]:
    """Decorator: record the query parameters a view reads (for the OpenAPI document)."""

    def decorator(view: F) -> F:
        view.query_params = params  # type: ignore[attr-defined]
        return view

    return decorator


def declared(view: Callable[..., Any]) -> tuple[Param, ...]:
    """The parameters a view declared (through any decorators that keep __wrapped__)."""
    while True:
        found = getattr(view, "query_params", None)
        if found is not None:
            return tuple(found)
        inner = getattr(view, "__wrapped__", None)
        if inner is None:
            return ()
        view = inner


def limit_param(maximum: int, default: int = 50) -> Param:
    """The page size of a list: the route reads it with pagination.parse_limit(param)."""
    return Param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
        "Page size.",
    )


CURSOR = Param("cursor", description="From the Link header of the previous page.")


def refuse_nul() -> None:
    """Before an API route: a NUL character (%00) in a path or query parameter is a 400.
    Nothing stored contains one (ingest refuses NUL in every field) and PostgreSQL cannot
    compare text with it, so both backends answer the same instead of PostgreSQL's 503."""
    values = [*(request.view_args or {}).items(), *request.args.items(multi=True)]
    for name, value in values:
        if isinstance(value, str) and "\x00" in name + value:
            raise ApiError(
                400,
                "invalid_parameter",
                f"{name.replace(chr(0), '')}: NUL characters are not accepted",
                {name.replace(chr(0), ""): "must not contain NUL characters"},
            )
