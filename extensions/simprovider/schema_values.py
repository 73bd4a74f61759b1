"""Deterministic values for JSON schemas: tool-call arguments and structured answers.

Pure logic. Understands the schema subset models are given in practice: ``type`` (also
Gemini's upper-case OpenAPI spelling and type lists), ``enum``, ``const``, ``anyOf`` /
``oneOf`` (first non-null alternative), ``allOf`` (merged), local ``$ref`` to ``$defs`` /
``definitions``, ``minimum`` / ``maximum`` (and exclusive), ``minLength`` / ``maxLength``,
``minItems`` / ``maxItems`` (at most ``MAX_REPEAT``) and common string ``format``s.
Strings are "sim", numbers 1, booleans true, arrays hold ``max(1, minItems)`` items.
Malformed schemas never raise: what cannot be read is ignored.

Tool arguments fill an object's ``required`` properties; structured answers
(``OutputFormat``) fill every listed property, as a model answering a schema does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MAX_DEPTH = 12
MAX_REPEAT = 1000  # cap on minLength / minItems honoured (answers stay small)
_STRING_FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00Z",
    "email": "sim@example.com",
    "uri": "https://example.com/sim",
    "url": "https://example.com/sim",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "hostname": "example.com",
}


def _schema_type(schema: Mapping[str, Any]) -> str | None:
    raw = schema.get("type")
    if isinstance(raw, list):
        non_null = [t for t in raw if isinstance(t, str) and t.lower() != "null"]
        raw = non_null[0] if non_null else (raw[0] if raw else None)
    return raw.lower() if isinstance(raw, str) else None


def _resolve(
    schema: Mapping[str, Any], root: Mapping[str, Any], depth: int = 0
) -> Mapping[str, Any]:
    """Follow a local ``$ref`` (``#/$defs/X``, ``#/definitions/X``); merge ``allOf``."""
    for _ in range(MAX_DEPTH):
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            break
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, Mapping) else None
        if not isinstance(target, Mapping):
            break
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    parts = schema.get("allOf")
    if not isinstance(parts, list) or not parts or depth >= MAX_DEPTH:
        return schema
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    properties = _mapping(merged.get("properties"))
    required = _names(merged.get("required"))
    for part in parts:
        if isinstance(part, Mapping):
            resolved = _resolve(part, root, depth + 1)
            merged = {**resolved, **merged}
            properties.update(_mapping(resolved.get("properties")))
            required.extend(_names(resolved.get("required")))
    if properties:
        merged["properties"] = properties
    if required:
        merged["required"] = required
    return merged


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _names(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _bound(schema: Mapping[str, Any], key: str) -> float | None:
    value = schema.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _count(schema: Mapping[str, Any], key: str) -> int | None:
    value = schema.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return max(0, min(value, MAX_REPEAT))


def _number(schema: Mapping[str, Any], integer: bool) -> float | int:
    value = 1.0
    low, high = _bound(schema, "minimum"), _bound(schema, "maximum")
    low_x, high_x = _bound(schema, "exclusiveMinimum"), _bound(schema, "exclusiveMaximum")
    if low is not None and value < low:
        value = low
    if low_x is not None and value <= low_x:
        value = low_x + 1
    if high is not None and value > high:
        value = high
    if high_x is not None and value >= high_x:
        value = high_x - 1
    if integer:
        return math.ceil(value)
    return int(value) if value.is_integer() else value


def _string(schema: Mapping[str, Any]) -> str:
    fmt = schema.get("format")
    text = _STRING_FORMATS.get(fmt, "sim") if isinstance(fmt, str) else "sim"
    min_length, max_length = _count(schema, "minLength"), _count(schema, "maxLength")
    if min_length is not None and len(text) < min_length:
        text = (text * (min_length // len(text) + 1))[:min_length]
    if max_length is not None and len(text) > max_length:
        text = text[:max_length]
    return text


def value_for_schema(
    schema: Any, root: Any = None, all_properties: bool = False, depth: int = 0
) -> Any:
    """A deterministic value valid for a (simple) JSON schema; unknown schemas give "sim".

    Objects get their ``required`` properties, or every property with ``all_properties``.
    """
    if not isinstance(schema, Mapping) or depth > MAX_DEPTH:
        return "sim"
    base = root if isinstance(root, Mapping) else schema
    schema = _resolve(schema, base)
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "any_of"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [
                o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")
            ]
            return value_for_schema((non_null or options)[0], base, all_properties, depth + 1)
    kind = _schema_type(schema)
    if kind == "string":
        return _string(schema)
    if kind in ("number", "integer"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "array":
        min_items, max_items = _count(schema, "minItems"), _count(schema, "maxItems")
        count = max(1, min_items or 0)
        if max_items is not None:
            count = min(count, max_items)
        item = value_for_schema(schema.get("items", {}), base, all_properties, depth + 1)
        return [item] * count
    if kind == "object" or "properties" in schema:
        return _object(schema, base, all_properties, depth + 1)
    return "sim"


def _object(
    schema: Mapping[str, Any], root: Mapping[str, Any], all_properties: bool, depth: int
) -> dict[str, Any]:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    required = schema.get("required")
    names = list(properties) if all_properties else required
    if not isinstance(names, list):
        return {}
    return {
        name: value_for_schema(properties.get(name, {}), root, all_properties, depth)
        for name in names
        if isinstance(name, str)
    }


def arguments_for_schema(schema: Any) -> dict[str, Any]:
    """Arguments object for a tool's parameter schema: one value per required property."""
    if not isinstance(schema, Mapping):
        return {}
    return _object(_resolve(schema, schema), schema, False, 0)


def arguments_json(schema: Any) -> str:
    """``arguments_for_schema`` serialised compactly (what goes on the wire)."""
    return json.dumps(arguments_for_schema(schema), separators=(",", ":"))


# ------------------------------------------------------------------------ structured answers


class OutputKind(StrEnum):
    TEXT = "text"
    JSON_OBJECT = "json_object"  # any JSON object
    JSON_SCHEMA = "json_schema"  # a JSON value valid for ``schema``
    ENUM = "enum"  # Gemini text/x.enum: one of the schema's enum values


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """What the caller asked the answer to be (parsed by each wire format)."""

    kind: OutputKind
    schema: Any = None


TEXT = OutputFormat(OutputKind.TEXT)


def render_answer(fmt: OutputFormat, text: str) -> str:
    """The answer's content: ``text`` itself, ``{"answer": text}``, a schema-valid JSON
    value (every property filled) or the schema's first enum value."""
    if fmt.kind is OutputKind.JSON_OBJECT:
        return json.dumps({"answer": text})
    if fmt.kind is OutputKind.JSON_SCHEMA:
        schema = fmt.schema if isinstance(fmt.schema, Mapping) else {"type": "object"}
        return json.dumps(value_for_schema(schema, all_properties=True))
    if fmt.kind is OutputKind.ENUM:
        value = value_for_schema(fmt.schema) if isinstance(fmt.schema, Mapping) else text
        return value if isinstance(value, str) else json.dumps(value)
    return text
