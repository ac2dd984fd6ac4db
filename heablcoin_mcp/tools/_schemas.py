"""What tools/list costs the model: schemas that say what a client needs, and nothing twice.

Every chat pays for tools/list before the user says a word, and most of it was output schemas
(86 of 132 thousand characters). Input schemas lose only pydantic's generated titles and null
defaults, and write unions of bare types as one type list; every description, unit, bound and
default stays. Output schemas name the fields a result holds (and an enum's values) without
repeating their types: the result is self-describing JSON, clients that validate (the TypeScript
SDK) accept it, and the full model is enforced on the server when the result is built.
"""

from __future__ import annotations

import enum
import inspect
import re
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def without_titles(schema: Any) -> Any:
    """The schema minus the generated ``title`` keywords (property names called "title" stay), with
    ``anyOf`` of bare types written as one type list (``{"type": ["number", "string", "null"]}``)."""
    if isinstance(schema, list):
        return [without_titles(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" or (key == "default" and value is None):  # a null default says nothing
            continue
        if key in SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: without_titles(sub) for name, sub in value.items()}
        elif key in SCHEMA_LISTS or key in ("items", "additionalProperties", "not"):
            out[key] = without_titles(value)
        else:
            out[key] = value
    options = out.get("anyOf")
    if isinstance(options, list) and options and all(isinstance(o.get("type"), str) for o in options):
        extras = [{k: v for k, v in o.items() if k != "type"} for o in options]
        merged = {k: v for e in extras for k, v in e.items()}
        # One type list is the same schema when no keyword of one option could reject another's values.
        if sum(1 for e in extras if e) <= 1 and not set(merged) & set(out):
            del out["anyOf"]
            out.update(merged, type=[o["type"] for o in options])
    return out


def shallow(schema: dict[str, Any]) -> dict[str, Any]:
    """The fields of an object schema by name, with the values a field can take when it is an enum."""
    defs = schema.get("$defs", {})
    return {"type": "object", "properties": {
        name: _field(prop, defs) for name, prop in schema.get("properties", {}).items()}}


def fields_of(model: type[BaseModel]) -> dict[str, Any]:
    """``shallow`` of the model's JSON schema, read from its fields without generating the schema
    (pydantic's schema generation for 43 result models was most of the server's start-up)."""
    return {"type": "object", "properties": {
        field.serialization_alias or field.alias or name: _enum_of(field.annotation)
        for name, field in model.model_fields.items()}}


def _enum_of(annotation: Any) -> dict[str, Any]:
    if get_origin(annotation) is Literal:
        return {"enum": list(get_args(annotation))}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [member.value for member in annotation]}
    return {}


def _field(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = prop.get("$ref")
    resolved = defs.get(ref.removeprefix("#/$defs/"), {}) if isinstance(ref, str) else prop
    return {"enum": resolved["enum"]} if "enum" in resolved else {}


def plain(description: str | None) -> str | None:
    """A docstring as prose: no indentation, lines of a paragraph joined, paragraphs kept."""
    if not description:
        return description
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(description))
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)
