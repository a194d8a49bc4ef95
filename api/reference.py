"""The API reference page's content, read from the OpenAPI document ninja generates for /v4/
(the one served at /v4/openapi.json): operations grouped by resource (the path's first part),
each with its parameters, request body fields, responses and an example curl call."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

# Resources in the order a newcomer meets them; any other comes after, by name.
RESOURCE_ORDER = (
    "account",
    "subscribers",
    "tags",
    "custom_fields",
    "forms",
    "sequences",
    "segments",
    "broadcasts",
    "webhooks",
    "bulk",
)
METHOD_ORDER = ("get", "post", "put", "patch", "delete")
# What a path parameter stands for in the example calls.
EXAMPLE_ID = "123"


@dataclass(frozen=True)
class Field:
    name: str
    where: str
    type: str
    required: bool
    description: str


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    anchor: str
    summary: str
    description: str
    parameters: list[Field]
    body_fields: list[Field]
    responses: list[tuple[str, str]]
    curl_path: str
    curl_body: str


@dataclass(frozen=True)
class Resource:
    name: str
    title: str
    anchor: str
    operations: list[Operation]


def _type(schema: dict, components: dict) -> str:
    """A schema's type as a reader says it: "string", "integer or null", "list of integer",
    "object"."""
    schema = _resolved(schema, components)
    if "anyOf" in schema:
        kinds = [_type(option, components) for option in schema["anyOf"]]
        real = [kind for kind in kinds if kind != "null"]
        return " or ".join(real) + (" or null" if len(real) < len(kinds) else "")
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}), components)}"
    return kind


def _resolved(schema: dict, components: dict) -> dict:
    reference = schema.get("$ref", "")
    if reference.startswith("#/components/schemas/"):
        return components.get(reference.rsplit("/", 1)[1], {})
    return schema


def _example(schema: dict, components: dict, name: str = ""):
    """An example value of a schema, for the curl call: an address for email fields."""
    schema = _resolved(schema, components)
    if "anyOf" in schema:
        options = [option for option in schema["anyOf"] if option.get("type") != "null"]
        return _example(options[0], components, name) if options else None
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        return {
            key: _example(value, components, key) for key, value in schema["properties"].items()
        }
    return {
        "string": "ada@example.com" if "email" in name else "string",
        "integer": 0,
        "number": 0.0,
        "boolean": True,
        "array": [],
        "object": {},
    }.get(kind)


def _body(operation: dict, components: dict) -> tuple[list[Field], str]:
    content = operation.get("requestBody", {}).get("content", {})
    schema = _resolved(content.get("application/json", {}).get("schema", {}), components)
    required = set(schema.get("required", ()))
    fields = [
        Field(
            name=name,
            where="body",
            type=_type(value, components),
            required=name in required,
            description=value.get("description", ""),
        )
        for name, value in schema.get("properties", {}).items()
    ]
    example = json.dumps(_example(schema, components)) if fields else ""
    return fields, example


def _anchor(method: str, path: str) -> str:
    return f"{method}-" + re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def _resource_name(path: str) -> str:
    parts = [part for part in path.split("/") if part]
    return parts[1] if len(parts) > 1 else parts[0] if parts else "api"


def reference_resources(schema: dict) -> list[Resource]:
    """The document's operations grouped by resource, in RESOURCE_ORDER then by name; within
    one, by path, then GET, POST, PUT, PATCH, DELETE."""
    components = schema.get("components", {}).get("schemas", {})
    grouped: dict[str, list[Operation]] = {}
    for path, methods in sorted(schema.get("paths", {}).items()):
        for method in sorted(
            methods, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 9
        ):
            operation = methods[method]
            parameters = [
                Field(
                    name=parameter["name"],
                    where=parameter.get("in", "query"),
                    type=_type(parameter.get("schema", {}), components),
                    required=bool(parameter.get("required")),
                    description=parameter.get("description", ""),
                )
                for parameter in operation.get("parameters", [])
            ]
            body_fields, curl_body = _body(operation, components)
            grouped.setdefault(_resource_name(path), []).append(
                Operation(
                    method=method.upper(),
                    path=path,
                    anchor=_anchor(method, path),
                    summary=operation.get("summary", ""),
                    description=operation.get("description", ""),
                    parameters=parameters,
                    body_fields=body_fields,
                    responses=[
                        (status, answer.get("description", ""))
                        for status, answer in sorted(operation.get("responses", {}).items())
                    ],
                    curl_path=re.sub(r"\{[^}]+\}", EXAMPLE_ID, path),
                    curl_body=curl_body,
                )
            )
    order = {name: index for index, name in enumerate(RESOURCE_ORDER)}
    return [
        Resource(
            name=name,
            title=name.replace("_", " ").capitalize(),
            anchor=f"resource-{name}",
            operations=operations,
        )
        for name, operations in sorted(
            grouped.items(), key=lambda item: (order.get(item[0], len(order)), item[0])
        )
    ]


@cache
def api_reference() -> list[Resource]:
    """The v4 API's reference, read once per process (the document changes only with the
    code)."""
    from api.v4 import api

    return reference_resources(api.get_openapi_schema())
