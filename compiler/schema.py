"""JSON Schema of the spec language, with one branch per op so editors complete attribute names."""
from __future__ import annotations

from typing import Any

from .ops import OPS
from .spec import BlockSpec, Generate, Train

EXPR = {"type": "string", "pattern": r"\$\{.*\}", "description": "an expression ${...}"}
REF = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": ["string", "null"]}}]}
NODE_COMMON: dict[str, Any] = {
    "name": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]},
    "in": REF,
    "repeat": {"anyOf": [{"type": "integer", "minimum": 1}, EXPR]},
    "when": {"anyOf": [{"type": "boolean"}, EXPR]},
    "init": {"anyOf": [{"type": "string"}, {"type": "object"}]},
}


def _allow_expr(schema: Any) -> Any:
    """Any value, at any depth (list items included), may be an expression string."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _allow_expr(out[key])
    if isinstance(out.get("prefixItems"), list):
        out["prefixItems"] = [_allow_expr(x) for x in out["prefixItems"]]
    for key in ("anyOf", "oneOf"):
        if key in out:
            out[key] = [_allow_expr(x) for x in out[key]]
    return {"anyOf": [out, EXPR]}


def _expressions_in_train(schema: dict[str, Any]) -> dict[str, Any]:
    """Every value of the train section, nested ones too, may be a ${...} expression (train_section.py)."""
    for part in [schema, *schema.get("$defs", {}).values()]:
        if "properties" in part:
            part["properties"] = {k: _allow_expr(v) for k, v in part["properties"].items()}
    return schema


def _attr_schema(model: type) -> dict[str, Any]:
    s = model.model_json_schema()
    props = {k: {**_allow_expr(v), **({"description": v["description"]} if "description" in v else {})}
             for k, v in s.get("properties", {}).items()}
    return {"properties": props, "required": s.get("required", []), "defs": s.get("$defs", {})}


def json_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    branches = []
    for name, opdef in sorted(OPS.items()):
        a = _attr_schema(opdef.attrs)
        defs.update(a["defs"])
        canonical = {"type": "object", "title": name, "description": opdef.doc,
                     "properties": {"op": {"const": name}, **NODE_COMMON, **a["properties"]},
                     "required": ["op", *a["required"]], "additionalProperties": False}
        branches.append(canonical)
        inner = {"anyOf": [{"type": "object", "properties": a["properties"], "additionalProperties": False},
                           {"type": ["number", "string", "array", "boolean", "null"]}]}
        branches.append({"type": "object", "title": f"{name} (shorthand)",
                         "properties": {name: inner, **NODE_COMMON}, "required": [name],
                         "additionalProperties": False})
    branches.append({"type": "string", "enum": sorted(OPS), "title": "op without attributes"})
    branches.append({"type": "object", "title": "op chosen by an expression", "required": ["op"],
                     "properties": {"op": EXPR, **NODE_COMMON}, "additionalProperties": True})
    branches.append({"type": "object", "title": "block use", "required": ["use"],
                     "properties": {"use": {"type": "string"}, **NODE_COMMON}, "additionalProperties": True})
    branches.append({"type": "object", "title": "call (shared weights)", "required": ["call"],
                     "properties": {"call": {"type": "string"}, **NODE_COMMON}, "additionalProperties": False})
    layer = {"anyOf": branches}
    block = BlockSpec.model_json_schema()
    block["properties"]["layers"] = {"type": "array", "items": {"$ref": "#/$defs/layer"}}
    train = _expressions_in_train(Train.model_json_schema())
    defs.update(train.pop("$defs", {}))
    defs.update(block.pop("$defs", {}))
    defs["layer"] = layer
    shape = {"type": "array", "items": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}]}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "specc spec, version 1",
        "type": "object",
        "additionalProperties": False,          # inputs and layers are optional: a library file has only blocks
        "properties": {
            "specc": {"const": 1},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "imports": {"type": "object", "additionalProperties": {"type": "string"}},
            "params": {"type": "object"},
            "inputs": {"type": "object", "additionalProperties": {"anyOf": [shape, {
                "type": "object", "properties": {"shape": shape, "dtype": {"enum": ["float32", "int64", "bool"]}},
                "required": ["shape"], "additionalProperties": False}]}},
            "blocks": {"type": "object", "additionalProperties": block},
            "layers": {"type": "array", "items": {"$ref": "#/$defs/layer"}},
            "outputs": {"anyOf": [{"type": "array", "items": {"type": "string"}},
                                  {"type": "object", "additionalProperties": {"type": "string"}}]},
            "train": train,
            "generate": Generate.model_json_schema(),
        },
        "$defs": defs,
    }
