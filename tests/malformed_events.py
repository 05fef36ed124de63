"""Malformed events generated from the published JSON Schemas (``schemas/``), field by field.

The oracle is the schema a producer in any language validates against, read here with no
help from the pydantic models: a field given a value of a JSON type its schema does not
allow, a required field left out, a field the schema does not know. Every such event is
malformed whatever the workers' own code says, so tests can hold the workers to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"

SAMPLE_OF_TYPE: dict[str, Any] = {
    "boolean": True,
    "integer": 12345,
    "number": 0.5,
    "string": "x",
    "array": [1],
    "object": {"a": 1},
    "null": None,
}
"""One JSON value of each JSON type."""


def json_type(value: Any) -> str:
    """The JSON Schema type of a decoded JSON value ("integer" for whole numbers)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


@dataclass(frozen=True)
class FieldSchema:
    """One property of a contract's schema: its dotted path and the JSON types it allows."""

    path: str
    types: frozenset[str]
    required: bool

    def allows_type_of(self, value: Any) -> bool:
        kind = json_type(value)
        return kind in self.types or (kind == "integer" and "number" in self.types)


def load_schema(topic: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / f"{topic}.schema.json").read_text())
    return schema


def fields(
    schema: dict[str, Any], node: dict[str, Any] | None = None, prefix: str = ""
) -> Iterator[FieldSchema]:
    """Every property of ``schema``, nested objects' own properties included."""
    node = schema if node is None else node
    required = set(node.get("required", []))
    for name, prop in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        options = prop.get("anyOf", [prop])
        resolved = [_resolve(schema, option) for option in options]
        types = frozenset(option.get("type", "object") for option in resolved)
        yield FieldSchema(path, types, name in required)
        for option in resolved:
            if option.get("type", "object") == "object" and "properties" in option:
                yield from fields(schema, option, prefix=f"{path}.")


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    reference = node.get("$ref")
    if reference is None:
        return node
    resolved: dict[str, Any] = schema["$defs"][reference.rsplit("/", 1)[1]]
    return resolved


@dataclass(frozen=True)
class Malformation:
    """One way an event breaks its schema: at ``path``, ``value`` (or the field removed)."""

    path: str
    what: str
    value: Any = None
    remove: bool = False

    def apply(self, event: dict[str, Any]) -> dict[str, Any]:
        """A deep copy of ``event`` with this malformation applied."""
        broken: dict[str, Any] = json.loads(json.dumps(event))
        *parents, leaf = self.path.split(".")
        node = broken
        for parent in parents:
            if not isinstance(node.get(parent), dict):
                node[parent] = {}
            node = node[parent]
        if self.remove:
            node.pop(leaf, None)
        else:
            node[leaf] = self.value
        return broken


def malformations(topic: str) -> list[Malformation]:
    """For each field of ``topic``'s schema: every JSON type it does not allow, and its
    removal if required; plus one field the schema does not know."""
    schema = load_schema(topic)
    found = []
    for field in fields(schema):
        for kind, sample in SAMPLE_OF_TYPE.items():
            if not field.allows_type_of(sample):
                found.append(Malformation(field.path, f"{field.path} as {kind}", sample))
        if field.required and "." not in field.path:
            found.append(Malformation(field.path, f"{field.path} missing", remove=True))
    found.append(Malformation("unexpected_field", "an unknown field", "surprise"))
    return found
