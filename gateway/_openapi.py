"""The OpenAPI 3.1 document, made from the route table and the pydantic models it names."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from flyte._wire import ErrorBody
from gateway._routes import ALL_ROUTES

_PARAM = re.compile(r"{([^}]+)}")


def openapi_document(version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorBody}
    for route in ALL_ROUTES:
        models.update(m for m in (route.body, route.answer) if m is not None)
    _, schemas = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    error = {"description": "An error", "content": {"application/json": {"schema": _ref(ErrorBody.__name__)}}}
    paths: dict[str, dict[str, Any]] = {}
    for route in ALL_ROUTES:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _PARAM.findall(route.path)
            ],
            "responses": {"400": error, "401": error, "403": error, "404": error, "409": error, "413": error},
            "security": [{"bearer": []}],
        }
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(route.body.__name__)}},
            }
        if route.answer is not None:
            schema: dict[str, Any] = _ref(route.answer.__name__)
            if route.many:
                schema = {"type": "array", "items": schema}
            operation["responses"]["200"] = {"description": "OK", "content": {"application/json": {"schema": schema}}}
        else:
            operation["responses"]["200"] = {"description": "OK"}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Flyte Federation gateway", "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}
