"""Converted layers -> spec text: dead layers dropped, names chosen, the shortest readable form of each layer.

A layer is named when something refers to it by name (it has parameters, whose state_dict keys are
`<name>.<param>`; a later layer other than the next reads it; it is a graph output); the others are left
to specc's `<op>_<k>` names, which explicit names avoid. `in:` is written only where a layer does not
read the previous layer's output.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from ..ops.registry import OPS
from .registry import Layer

KEYWORDS = {"true", "false", "null", "yes", "no", "on", "off", "~"}
JUNK = {"onnx", "val", "const", "Constant", "tmp"}            # torch.onnx's generated value names
PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:]*$")


def sanitise(text: str) -> str | None:
    """A specc node name from an ONNX node/initialiser name (`/layer1/layer1.0/conv1/Conv` -> `layer1_0_conv1`)."""
    text = re.split(r"[+:]", text, maxsplit=1)[0]
    for sfx in (".weight", ".bias"):
        if text.endswith(sfx):
            text = text[: -len(sfx)]
    parts = [p for p in text.split("/") if p]
    if len(parts) > 1:
        parts = parts[:1] if parts[-1].endswith("_node") else parts[-2:-1]   # specc: scope/Op_node; torch: /a/b/Op
    name = re.sub(r"[^A-Za-z0-9_]", "_", parts[0] if parts else "").strip("_")
    name = re.sub(r"__+", "_", name)
    if (not name or name[0].isupper() and name.rstrip("0123456789_").isalpha() or name[0].isdigit()
            or name.split("_")[0] in JUNK):
        return None
    return name


def scalar(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return ".nan"
        if math.isinf(f):
            return ".inf" if f > 0 else "-.inf"
        text = str(np.float32(f)) if isinstance(v, np.float32) else repr(f)
        return text if any(c in text for c in ".en") else text + ".0"
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(scalar(x) for x in v) + "]"
    s = str(v)
    return s if PLAIN.match(s) and s.lower() not in KEYWORDS else json.dumps(s)


def live_layers(layers: list[Layer], outputs: list[tuple[Any, int]]) -> list[Layer]:
    keep: set[int] = set()
    stack = [src for src, _ in outputs if isinstance(src, Layer)]
    while stack:
        layer = stack.pop()
        if id(layer) in keep:
            continue
        keep.add(id(layer))
        stack.extend(src for src, _ in layer.inputs if isinstance(src, Layer))
    return [layer for layer in layers if id(layer) in keep]


def assign_names(layers: list[Layer], outputs: list[tuple[Any, int]], inputs: list[str]) -> None:
    readers: dict[int, list[tuple[int, int]]] = {}           # id(layer) -> (reader position, port) pairs
    for k, layer in enumerate(layers):
        for src, port in layer.inputs:
            if isinstance(src, Layer):
                readers.setdefault(id(src), []).append((k, port))
    out_ids = {id(src) for src, _ in outputs if isinstance(src, Layer)}
    counts: dict[str, int] = {}
    auto: list[str | None] = []
    for k, layer in enumerate(layers):
        counts[layer.op] = counts.get(layer.op, 0) + 1
        rs = readers.get(id(layer), [])
        plain = (not layer.params and id(layer) not in out_ids and rs == [(k + 1, 0)]
                 and layers[k + 1].inputs[0] == (layer, 0))
        auto.append(f"{layer.op}_{counts[layer.op]}" if plain else None)
    taken = set(inputs) | {a for a in auto if a}
    for layer, a in zip(layers, auto):
        if a is not None:
            layer.name = a
            continue
        hints = [layer.hint] if isinstance(layer.hint, str) else layer.hint
        base = next((n for n in map(sanitise, hints) if n), layer.op)
        name, i = base, 1
        while name in taken:
            i += 1
            name = f"{base}_{i}"
        taken.add(name)
        layer.name = name
    for layer, a in zip(layers, auto):
        layer.auto = a is not None                                # type: ignore[attr-defined]


def ref(src: tuple[Any, int], input_names: dict[str, str]) -> str:
    node, port = src
    if isinstance(node, Layer):
        return node.name if port == 0 else f"{node.name}:{node.ports[port]}"
    return input_names[node]


def layer_line(layer: Layer, prev: Layer | None, first_input: str | None, input_names: dict[str, str]) -> str:
    fields: list[tuple[str, Any]] = []
    ins = [ref(s, input_names) for s in layer.inputs]
    sequential = (len(layer.inputs) == 1 and (layer.inputs[0] == (prev, 0) if prev is not None else
                                               layer.inputs[0][0] == first_input))
    named = not getattr(layer, "auto", False)
    opdef = OPS[layer.op]
    attrs = dict(layer.attrs)
    if not attrs and not named and sequential:
        return f"  - {layer.op}"
    if len(attrs) == 1 and opdef.primary in attrs:
        fields.append((layer.op, attrs.pop(opdef.primary)))
    else:
        fields.append(("op", layer.op))
    if named:
        fields.append(("name", layer.name))
    if not sequential:
        fields.append(("in", ins[0] if len(ins) == 1 else ins))
    fields.extend(attrs.items())
    return "  - {" + ", ".join(f"{k}: {scalar(v)}" for k, v in fields) + "}"


def write(name: str, description: str, inputs: dict[str, tuple[str, tuple, str]],
          layers: list[Layer], outputs: dict[str, tuple[Any, int]]) -> tuple[str, dict[str, np.ndarray]]:
    """The spec text and its checkpoint. inputs: ONNX name -> (spec name, shape, dtype); outputs: spec
    output name -> source."""
    layers = live_layers(layers, list(outputs.values()))
    input_names = {k: v[0] for k, v in inputs.items()}
    assign_names(layers, list(outputs.values()), list(input_names.values()))
    lines = ["specc: 1", f"name: {scalar(name)}", f"description: {json.dumps(description)}", "inputs:"]
    for spec_name, shape, dtype in inputs.values():
        dims = scalar(list(shape))
        lines.append(f"  {spec_name}: {dims}" if dtype == "float32" else
                     f"  {spec_name}: {{shape: {dims}, dtype: {dtype}}}")
    lines.append("layers:")
    first = next(iter(inputs), None)
    prev = None
    for layer in layers:
        lines.append(layer_line(layer, prev, first, input_names))
        prev = layer
    outs = {k: ref(s, input_names) for k, s in outputs.items()}
    if all(k == v for k, v in outs.items()):
        lines.append("outputs: " + scalar(list(outs)))
    else:
        lines.append("outputs: {" + ", ".join(f"{scalar(k)}: {scalar(v)}" for k, v in outs.items()) + "}")
    weights = {f"{layer.name}.{p}" if p else layer.name: arr for layer in layers for p, arr in layer.params.items()}
    return "\n".join(lines) + "\n", weights
