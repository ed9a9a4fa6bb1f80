"""ONNX -> spec: the inverse of compiler.onnx (docs/onnx-import.md).

    imported = import_model("model.onnx", name="lenet")
    imported.text       # the spec, YAML
    imported.weights    # {state_dict name: array}, the model's initialisers in specc's layouts

One module per op family holds converters (`@converter("Conv")`), registered in the table `CONVERTERS`;
`graph.py` reads the model (shape inference, constant folding), `writer.py` prints the spec. Imported only
by `specc import`, so nothing else loads onnx for it. Depends on `compiler`, never on `runtime`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError, UserError
from . import activation, compare, convolution, dense, layout, normalisation, sequence, tensor  # noqa: F401
from .registry import CONVERTERS, Context, OnnxImportError

__all__ = ["import_model", "Imported", "supported_ops", "OnnxImportError"]


@dataclass
class Imported:
    text: str
    weights: dict[str, np.ndarray]
    graph: Any = None                                  # the compiled spec (compiler.Graph)
    notes: list[str] = field(default_factory=list)


def supported_ops() -> list[str]:
    return sorted(CONVERTERS)


def import_model(model: Any, name: str | None = None, source: str = "") -> Imported:
    """Convert an ONNX ModelProto (or a path to one) into a spec and its weights; OnnxImportError when
    a node has no spec equivalent."""
    from .graph import Source, load_model
    if isinstance(model, (str, Path)):
        source = source or Path(model).name
        model = load_model(model)
    src = Source(model)
    _check_ops(src)
    cx = Context(src)
    for nd in src.nodes:
        if nd.index in src.folded or nd.index in cx.taken:
            continue
        cx.node = nd
        try:
            CONVERTERS[nd.op_type](cx, nd)
        except UserError:
            raise
        except Exception as e:                                       # noqa: BLE001 - never a traceback
            raise OnnxImportError(f"cannot import {nd.describe()}: {type(e).__name__}: {e}",
                                  hint="an ONNX graph specc does not understand (or a bug in specc import)") from e
    outputs: dict[str, tuple] = {}
    out_names = {}
    for o in src.outputs:
        if o not in cx.bound:
            raise OnnxImportError(f"graph output '{o}' is a constant or computed from shapes only; "
                                  "a spec output must be computed from an input")
        key = _unique(_ident(o, "out"), out_names)
        out_names[key] = o
        outputs[key] = cx.bound[o]
        layer = cx.bound[o][0]
        if not isinstance(layer, str) and not layer.params:          # name the layer after the output it gives
            layer.hint = [key] + ([layer.hint] if isinstance(layer.hint, str) else list(layer.hint))
    inputs = {}
    taken: set[str] = set()
    for k, (shape, dtype) in src.inputs.items():
        spec_name = _ident(k, "input")
        while spec_name in taken:
            spec_name += "_"
        taken.add(spec_name)
        if any(d is None for d in shape):
            raise OnnxImportError(f"graph input '{k}' has no known shape")
        inputs[k] = (spec_name, shape, dtype)
    from .writer import write
    name = _ident(name or (Path(source).stem if source else model.graph.name) or "imported", "imported")
    producer = " ".join(x for x in (model.producer_name, model.producer_version) if x)
    desc = f"imported from {source or 'an ONNX model'}" + (f" ({producer}, opset {src.opset})" if producer else
                                                           f" (opset {src.opset})")
    text, weights = write(name, desc, inputs, cx.layers, outputs)
    return Imported(text, weights, _verify(text, weights))


def _check_ops(src: Any) -> None:
    for nd in src.nodes:
        if nd.index not in src.folded and nd.op_type not in CONVERTERS:
            raise OnnxImportError(f"{nd.describe()} has no spec equivalent: specc imports "
                                  + ", ".join(supported_ops()),
                                  hint="docs/onnx-import.md lists what each op becomes and the patterns specc "
                                       "refuses")


def _ident(text: str, fallback: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_")
    return s if s and not s[0].isdigit() else (f"{fallback}_{s}" if s else fallback)


def _unique(name: str, taken: dict) -> str:
    out, k = name, 1
    while out in taken:
        k += 1
        out = f"{name}_{k}"
    return out


def _verify(text: str, weights: dict[str, np.ndarray]) -> Any:
    """Compile the generated spec and fit the weights to it: a failure is a bug of the importer, said so."""
    from .. import compile_text
    from ..onnx.export import check_weights
    try:
        graph = compile_text(text)
        check_weights(graph, weights)
    except (SpecError, UserError) as e:
        msg = e.render() if isinstance(e, UserError) else str(e)
        raise OnnxImportError("the spec made from this model does not compile (a bug in specc import):\n"
                              + msg + "\n--- generated spec ---\n" + text) from None
    return graph
