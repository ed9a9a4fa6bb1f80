"""JSON Schema of the spec language, with one branch per op (chosen by `op`) so editors complete attribute
names and validators report the one error that matters."""
from __future__ import annotations

from typing import Any

from .expand.node_init import INIT_ARGS, MODES, NONLINEARITIES, USER_INITS
from .ops import OPS
from .spec import BlockSpec, Generate, Train

EXPR = {"type": "string", "pattern": r"\$\{.*\}", "description": "an expression ${...}"}
REF = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": ["string", "null"]}}]}


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


def _init_schema() -> dict[str, Any]:
    """`init:` (docs/spec-language.md): KIND, {KIND: {arguments}}, or one of those per parameter name."""
    kinds = list(USER_INITS)
    arg = {"mode": {"enum": list(MODES)}, "nonlinearity": {"enum": list(NONLINEARITIES)}}
    one = {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
           "properties": {k: {"anyOf": [{"type": "null"}, {
               "type": "object", "additionalProperties": False,
               "properties": {a: _allow_expr(arg.get(want, {"type": "number"})) for a, want in args.items()}}]}
               for k, args in INIT_ARGS.items()}}
    initialiser = {"anyOf": [{"enum": kinds}, EXPR, one]}
    per_param = {"type": "object", "minProperties": 1, "propertyNames": {"not": {"enum": kinds}},
                 "additionalProperties": initialiser}
    return {"description": "KIND, {KIND: {arguments}} or {PARAMETER: KIND, ...}",
            "anyOf": [{"enum": kinds}, EXPR, one, per_param]}


NODE_COMMON: dict[str, Any] = {
    # a PyTorch module name (compiler/expand/scope.py NODE_NAME_RE), or text holding an expression
    "name": {"anyOf": [{"type": "string", "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_-]*$"},
                       {"type": "string", "pattern": r"\$\{"}, {"type": "integer", "minimum": 0}]},
    "in": REF,
    "repeat": {"anyOf": [{"type": "integer", "minimum": 1}, EXPR]},
    "when": {"anyOf": [{"type": "boolean"}, EXPR]},
    "init": _init_schema(),
}


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


def _layer_schema(defs: dict[str, Any]) -> dict[str, Any]:
    """A layer, dispatched on its form and then on `op` with if/then (no anyOf over the ops), so a validator
    checks one op's branch and reports the one error that matters: an unknown attribute of conv2d, or a
    misspelt op name, instead of an error per op. Each op's branch is `$defs/op.NAME`."""
    shorthand = []
    for name, opdef in sorted(OPS.items()):
        a = _attr_schema(opdef.attrs)
        defs.update(a["defs"])
        props = {"op": {"const": name}, **NODE_COMMON, **a["properties"]}
        defs[f"op.{name}"] = {"type": "object", "title": name, "description": opdef.doc, "properties": props,
                              "additionalProperties": False,
                              # required attributes only once every key is known: a misspelt `kernal_size`
                              # is one error (the unknown key), not a second one for the missing kernel_size
                              "if": {"propertyNames": {"enum": list(props)}},
                              "then": {"required": ["op", *a["required"]]}}
        inner = {"anyOf": [{"type": "object", "properties": a["properties"], "additionalProperties": False},
                           {"type": ["number", "string", "array", "boolean", "null"]}]}
        shorthand.append({"if": {"required": [name]}, "then": {"properties": {name: inner}}})
    op_names = sorted(OPS)
    by_op = {"if": {"properties": {"op": EXPR}},
             "then": {"title": "op chosen by an expression", "properties": NODE_COMMON},
             "else": {"properties": {"op": {"enum": op_names}},
                      "allOf": [{"if": {"properties": {"op": {"const": n}}}, "then": {"$ref": f"#/$defs/op.{n}"}}
                                for n in op_names]}}
    no_init = {**NODE_COMMON, "init": False}          # init: belongs on the layers of a block, or the called one
    use = {"title": "block use", "properties": {"use": {"type": "string"}, **no_init}}
    call = {"title": "call (shared weights)", "properties": {"call": {"type": "string"}, **no_init},
            "additionalProperties": False}
    short = {"title": "shorthand {op: primary value or attributes}", "minProperties": 1, "properties": NODE_COMMON,
             "propertyNames": {"enum": op_names + list(NODE_COMMON)}, "allOf": shorthand}
    return {
        "description": "a layer: an op name, {op: NAME, ...attributes}, {NAME: value}, {use: BLOCK} or {call: NODE}",
        "if": {"type": "string"}, "then": {"title": "op without attributes", "enum": op_names},
        "else": {"type": "object",
                 "if": {"required": ["op"]}, "then": by_op,
                 "else": {"if": {"required": ["use"]}, "then": use,
                          "else": {"if": {"required": ["call"]}, "then": call, "else": short}}},
    }


def json_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    layer = _layer_schema(defs)
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
