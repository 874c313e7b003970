"""Checking a value against the JSON schema of a deployed task's parameter, without the task's code.

A deployed task's spec carries, for every input and its output that travel as JSON, the JSON schema pydantic makes
of its annotation. A caller that never imports the task's code checks its arguments against those schemas before
it submits, so a wrong type fails at the call with the parameter and the place in the value named, as a local call
would. Only the keywords pydantic emits for JSON-friendly annotations are interpreted (types, properties, items,
tuples, unions, enums, constants and `$ref`s into `$defs`); any other keyword (formats, bounds) is left to the
callee, whose own pydantic validation is the final word.
"""

from __future__ import annotations

from typing import Any

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}


def schema_errors(value: Any, schema: dict[str, Any]) -> list[str]:
    """What is wrong with `value` (JSON data: dicts, lists, scalars) under `schema`; empty when it fits."""
    return _check(value, schema, schema.get("$defs", {}), "")


def _check(value: Any, schema: dict[str, Any] | bool, defs: dict[str, Any], where: str) -> list[str]:
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{where or 'the value'} is not allowed"]
    assert isinstance(schema, dict)
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = defs.get(ref.removeprefix("#/$defs/"))
        if target is None:
            return []
        return _check(value, target, defs, where)
    for union in ("anyOf", "oneOf"):
        if union in schema:
            if all(_check(value, option, defs, where) for option in schema[union]):
                return [_expected(schema, value, where)]
            return []
    for part in schema.get("allOf", []):
        errors = _check(value, part, defs, where)
        if errors:
            return errors
    if "const" in schema and not _same(value, schema["const"]):
        return [f"{where or 'the value'} must be {schema['const']!r}, got {_preview(value)}"]
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        choices = ", ".join(repr(option) for option in schema["enum"])
        return [f"{where or 'the value'} must be one of {choices}, got {_preview(value)}"]
    kind = schema.get("type")
    if kind is not None and not _is_type(value, kind):
        return [_expected(schema, value, where)]
    if isinstance(value, list):
        return _check_array(value, schema, defs, where)
    if isinstance(value, dict):
        return _check_object(value, schema, defs, where)
    return []


def _check_array(value: list[Any], schema: dict[str, Any], defs: dict[str, Any], where: str) -> list[str]:
    low, high = schema.get("minItems", 0), schema.get("maxItems")
    if len(value) < low or (high is not None and len(value) > high):
        wanted = f"{low}" if low == high else f"{low} to {high if high is not None else 'any number of'}"
        return [f"{where or 'the value'} must have {wanted} items, got {len(value)}"]
    prefix = schema.get("prefixItems")
    if prefix is not None:
        if len(value) < len(prefix) or (schema.get("items") is False and len(value) > len(prefix)):
            return [f"{where or 'the value'} must have {len(prefix)} items, got {len(value)}"]
        for i, (item, item_schema) in enumerate(zip(value, prefix, strict=False)):
            errors = _check(item, item_schema, defs, f"{where}[{i}]")
            if errors:
                return errors
        return []
    items = schema.get("items")
    if isinstance(items, dict | bool):
        for i, item in enumerate(value):
            errors = _check(item, items, defs, f"{where}[{i}]")
            if errors:
                return errors
    return []


def _check_object(value: dict[str, Any], schema: dict[str, Any], defs: dict[str, Any], where: str) -> list[str]:
    properties: dict[str, Any] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            return [f"{where or 'the value'} is missing the field {name!r}"]
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        inner = f"{where}.{key}" if where else str(key)
        item_schema = properties.get(key, extra)
        errors = _check(item, item_schema, defs, inner)
        if errors:
            return errors
    return []


def _is_type(value: Any, kind: str | list[str]) -> bool:
    kinds = kind if isinstance(kind, list) else [kind]
    for name in kinds:
        types = _JSON_TYPES.get(name)
        if types is None:
            return True
        # JSON has no separate boolean numbers: True is not an integer here, as pydantic's strict types agree.
        if isinstance(value, bool) and name != "boolean":
            continue
        if isinstance(value, types):
            return True
    return False


def _same(value: Any, expected: Any) -> bool:
    return type(value) is type(expected) and value == expected


def _expected(schema: dict[str, Any], value: Any, where: str) -> str:
    described = describe(schema)
    return f"{where + ' ' if where else ''}expects {described}, got {type(value).__name__} {_preview(value)}"


def describe(schema: dict[str, Any] | bool) -> str:
    """A short name for what a schema accepts: `integer`, `array of number`, `Point`, `string or null`."""
    if not isinstance(schema, dict):
        return "anything" if schema else "nothing"
    if "$ref" in schema:
        return str(schema["$ref"]).rpartition("/")[2]
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " or ".join(describe(option) for option in schema[union])
    kind = schema.get("type")
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"array of {describe(schema['items'])}"
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind is not None:
        return str(schema.get("title", kind)) if kind == "object" and "properties" in schema else str(kind)
    if "enum" in schema:
        return "one of " + ", ".join(repr(option) for option in schema["enum"])
    return "anything"


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
