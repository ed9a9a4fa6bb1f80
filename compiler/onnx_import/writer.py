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
from .blocks import USE, Repeat, find_repeats
from .registry import Layer

KEYWORDS = {"true", "false", "null", "yes", "no", "on", "off", "~"}
JUNK = {"onnx", "val", "const", "Constant", "tmp"}            # torch.onnx's generated value names
PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:]*\Z")


def sanitise(text: str) -> str | None:
    """A specc node name from an ONNX node/initialiser name (`/layer1/layer1.0/conv1/Conv` -> `layer1_0_conv1`)."""
    text = re.split(r"[+:]", text, maxsplit=1)[0]
    text = re.sub(r"\.(weight|bias)[A-Za-z0-9_]*$", "", text)       # conv1.weight, lstm.weight_ih_l0
    parts = [p for p in text.split("/") if p]
    if len(parts) > 1:
        parts = parts[:1] if parts[-1].endswith("_node") else parts[-2:-1]   # specc: scope/Op_node; torch: /a/b/Op
    name = re.sub(r"[^A-Za-z0-9_]", "_", parts[0] if parts else "").strip("_")
    name = re.sub(r"__+", "_", name)[:64].rstrip("_")               # a spec's names have at most 200 characters
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
        plain = (not layer.params and layer.op != USE and id(layer) not in out_ids and rs == [(k + 1, 0)]
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
        layer.auto = a is not None


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
    named = not layer.auto
    if isinstance(layer, Repeat):
        fields = [("use", layer.block), ("name", layer.name), ("repeat", len(layer.copies))]
        if not sequential:
            fields.append(("in", ins[0]))
        return "  - {" + ", ".join(f"{k}: {scalar(v)}" for k, v in fields) + "}"
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
    if not sequential and ins:                                    # param and constant read nothing
        fields.append(("in", ins[0] if len(ins) == 1 else ins))
    fields.extend(attrs.items())
    return "  - {" + ", ".join(f"{k}: {scalar(v)}" for k, v in fields) + "}"


def _hints(layer: Layer) -> list[str]:
    return [layer.hint] if isinstance(layer.hint, str) else list(layer.hint)


def _prefix(names: list[str]) -> str:
    """The common stem of the copies' names (`layer1_0_conv1`, `layer1_1_conv1` -> `layer1`), or ''."""
    if len(names) < 2:
        return ""
    p = names[0]
    for n in names[1:]:
        while not n.startswith(p):
            p = p[:-1]
    return re.sub(r"_\d*$", "", p.rstrip("_")) if "_" in p else ""


def name_blocks(items: list[Layer]) -> list[Repeat]:
    """Give each Repeat a use-name hint and block name, and its template layers names without the copy prefix."""
    reps = [x for x in items if isinstance(x, Repeat)]
    used: set[str] = set()
    for rep in reps:
        names = [n for copy in rep.copies for x in copy if (n := next(filter(None, map(sanitise, _hints(x))), None))]
        stem = _prefix(names)
        rep.hint = [stem, "stage"] if stem and not stem[0].isdigit() else ["stage"]
        ops = [x.op for x in rep.template]
        base = "_".join(dict.fromkeys(ops)) if len(ops) <= 3 else "block"
        block, k = base, 1
        while block in used or block in OPS:
            k += 1
            block = f"{base}_{k}"
        used.add(block)
        rep.block = block
        for t in rep.template:
            own = next(filter(None, map(sanitise, _hints(t))), None)
            if own and stem and own.startswith(stem):
                rest = re.sub(r"^_?\d+_", "", own[len(stem):]).lstrip("_")
                t.hint = [rest] + _hints(t) if rest and not rest[0].isdigit() else _hints(t)
    return reps


def _block_lines(rep: Repeat) -> list[str]:
    assign_names(rep.template, [], ["x"])
    lines = [f"  {rep.block}:", "    layers:"]
    prev = None
    for t in rep.template:
        lines.append("    " + layer_line(t, prev, "x", {"x": "x"}))
        prev = t
    return lines


def _weights(items: list[Layer]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for x in items:
        if isinstance(x, Repeat):
            for c, copy in enumerate(x.copies):
                for t, layer in zip(x.template, copy):
                    for p, arr in layer.params.items():
                        out[f"{x.name}.{c}.{t.name}" + (f".{p}" if p else "")] = arr
        else:
            out.update({f"{x.name}.{p}" if p else x.name: arr for p, arr in x.params.items()})
    return out


def write(name: str, description: str, inputs: dict[str, tuple[str, tuple, str]],
          layers: list[Layer], outputs: dict[str, tuple[Any, int]]) -> tuple[str, dict[str, np.ndarray]]:
    """The spec text and its checkpoint. inputs: ONNX name -> (spec name, shape, dtype); outputs: spec
    output name -> source."""
    layers = live_layers(layers, list(outputs.values()))
    layers, replaced = find_repeats(layers, list(outputs.values()))
    outputs = {k: (replaced.get(id(s), s), p) for k, (s, p) in outputs.items()}
    reps = name_blocks(layers)
    input_names = {k: v[0] for k, v in inputs.items()}
    assign_names(layers, list(outputs.values()), list(input_names.values()))
    lines = ["specc: 1", f"name: {scalar(name)}", f"description: {json.dumps(description)}", "inputs:"]
    for spec_name, shape, dtype in inputs.values():
        dims = scalar(list(shape))
        lines.append(f"  {spec_name}: {dims}" if dtype == "float32" else
                     f"  {spec_name}: {{shape: {dims}, dtype: {dtype}}}")
    if reps:
        lines.append("blocks:")
        for rep in reps:
            lines.extend(_block_lines(rep))
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
    return "\n".join(lines) + "\n", _weights(layers)
