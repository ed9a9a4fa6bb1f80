"""Reading an ONNX model for import: load it safely, infer shapes, fold what is constant.

`Source` holds, for every value name: its shape (ints and specc symbols), constants as arrays
(initialisers, Constant nodes and everything computed from them alone, e.g. the RNN weight reordering
that specc's unoptimised export writes), and shape arithmetic (Shape → Gather → Concat → Reshape, as
torch.onnx.export writes `x.view(x.size(0), -1)`) as lists of ints and symbols. What is left are the
nodes that compute on data: the converters' work.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .registry import OnnxNode

MAX_BYTES = 2 * 1024 ** 3
TYPES = {1: "float32", 7: "int64", 9: "bool", 11: "float64", 6: "int32"}
# ops evaluated on shape lists (object arrays of ints and symbols)
ZERO_KEEPING = {"Slice", "Gather", "Squeeze", "Unsqueeze", "Reshape", "Transpose", "Identity", "Expand"}
SHAPE_OPS = {"Shape", "Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Cast", "Identity", "Reshape"}
# folds that keep a learned tensor's values (only rearranged): the result is still that parameter
REARRANGING = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity"}
# lookups into a learned tensor by a model's buffer are left to the converters (index_select of a `param` by a
# `buffer`, as Swin's relative position bias); by a constant of the lowering (RNN gate reordering) they fold
LOOKUPS = {"Gather", "GatherElements"}


def load_model(path: str | Path) -> Any:
    """The ModelProto in `path`; UserError for a missing, oversized, corrupt or non-ONNX file."""
    import onnx
    p = Path(path)
    if not p.is_file():
        raise UserError(f"cannot read '{path}': " + ("it is a folder" if p.is_dir() else "no such file"))
    if p.stat().st_size > MAX_BYTES:
        raise UserError(f"'{path}' is larger than 2 GB; models with external data are not supported")
    data = p.read_bytes()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:                                           # noqa: BLE001 - protobuf's DecodeError & co
        raise UserError(f"'{path}' is not an ONNX model (protobuf could not decode it: {type(e).__name__})",
                        hint="give a .onnx file written by onnx.save, torch.onnx.export or `specc compile`") from None
    if not model.graph.node and not model.graph.output or not model.opset_import:
        raise UserError(f"'{path}' is not an ONNX model (it holds no graph)",
                        hint="give a .onnx file written by onnx.save, torch.onnx.export or `specc compile`")
    if any(t.data_location == 1 for t in model.graph.initializer):
        raise UserError(f"'{path}' keeps its weights in external data files, which specc does not read",
                        hint="save it as one file: onnx.save(onnx.load(path), out, save_as_external_data=False)")
    return model


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode("utf-8", "replace") for x in v]
        out[a.name] = v
    return out


def symbol_name(param: str, axis: int, taken: dict[str, str]) -> str:
    """A specc symbol for an ONNX dim_param: the batch axis is N, others keep a sanitised name."""
    if param in taken:
        return taken[param]
    if axis == 0:
        sym = "N"
    else:
        sym = re.sub(r"[^A-Za-z0-9_]", "_", param) or f"D{axis}"
        if not re.match(r"[A-Za-z_]", sym):
            sym = "D" + sym
    taken[param] = sym
    return sym


class Source:
    def __init__(self, model: Any):
        import onnx
        from onnx import numpy_helper
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:                                            # noqa: BLE001 - shapes are a help, not a need
            pass
        self.model = model
        g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.initializer_names = set(self.consts)
        self.learned: dict[str, str] = {}                 # a folded constant -> the learned initialiser it rearranges
        self.symbols: dict[str, str] = {}
        self.inputs: dict[str, tuple[tuple, str]] = {}
        for vi in g.input:
            if vi.name in self.consts:
                continue
            self.inputs[vi.name] = (self._shape(vi, input_=True), self._dtype(vi))
        self.outputs = [o.name for o in g.output]
        self.shapes: dict[str, tuple] = {k: v[0] for k, v in self.inputs.items()}
        self.types: dict[str, str] = {k: v[1] for k, v in self.inputs.items()}   # element types, where known
        for vi in list(g.value_info) + list(g.output):
            s = self._shape(vi)
            if s is not None:
                self.shapes[vi.name] = s
            self._note_type(vi)
        self.nodes = [OnnxNode(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}", n.name,
                               list(n.input), list(n.output), _attrs(n), i) for i, n in enumerate(g.node)]
        self.symbolic: dict[str, np.ndarray] = {}
        self.folded: set[int] = set()
        self.zeros: set[str] = set()
        self._fold()
        self._reinfer_shapes()
        self.consumers: dict[str, list[OnnxNode]] = {}
        self.producer = {o: nd for nd in self.nodes if nd.index not in self.folded for o in nd.outputs if o}
        for nd in self.nodes:
            if nd.index in self.folded:
                continue
            for i in dict.fromkeys(nd.inputs):
                if i:
                    self.consumers.setdefault(i, []).append(nd)

    # -- shapes and types
    def _shape(self, vi: Any, input_: bool = False) -> tuple | None:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            return None
        dims: list = []
        for axis, d in enumerate(t.shape.dim):
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.dim_param and (input_ or d.dim_param in self.symbols):
                dims.append(symbol_name(d.dim_param, axis, self.symbols))
            elif input_:
                dims.append(symbol_name(f"?{vi.name}:{axis}", axis, self.symbols))
            else:
                dims.append(None)
        return tuple(dims)

    def _note_type(self, vi: Any) -> None:
        et = vi.type.tensor_type.elem_type
        if et in TYPES and vi.name not in self.types:
            self.types[vi.name] = TYPES[et]

    def dtype(self, name: str) -> str | None:
        """The element type of value `name` (float32, int64, bool, ...), None when ONNX could not tell."""
        if name in self.consts:
            return {"f": "float32" if self.consts[name].dtype == np.float32 else "float64", "b": "bool"}.get(
                self.consts[name].dtype.kind, "int64")
        return self.types.get(name)

    @staticmethod
    def _dtype(vi: Any) -> str:
        et = vi.type.tensor_type.elem_type
        if et not in TYPES:
            raise UserError(f"graph input '{vi.name}' has ONNX element type {et}, which specc has no dtype for",
                            hint="specc inputs are float32, float64, int64 or bool")
        return "int64" if TYPES[et] == "int32" else TYPES[et]

    # -- constant folding
    def _fold(self) -> None:
        from ..onnx.export import _evaluate
        protos = self.model.graph.node
        for nd in self.nodes:
            ins = [i for i in nd.inputs if i]
            if nd.op_type == "Constant":
                self.consts[nd.outputs[0]] = _constant(protos[nd.index])
                self.folded.add(nd.index)
            elif ins and all(i in self.consts for i in ins) and nd.op_type not in ("RandomNormal", "RandomUniform",
                                                                                    "RandomNormalLike",
                                                                                    "RandomUniformLike", "Dropout") \
                    and not (nd.op_type in LOOKUPS and self.learned_name(ins[0]) and self.named(ins[1])):
                try:
                    res = _evaluate(protos[nd.index], [self.consts[i] if i else None for i in nd.inputs], self.opset)
                except Exception:                                    # noqa: BLE001 - left to the converters
                    continue
                for o, r in zip([o for o in nd.outputs if o], res):
                    self.consts[o] = r
                source = self.learned_name(ins[0])
                if nd.op_type in REARRANGING and source and nd.outputs[0]:
                    self.learned[nd.outputs[0]] = source
                self.folded.add(nd.index)
            elif nd.op_type in SHAPE_OPS and self._fold_shape(nd):
                self.folded.add(nd.index)
            elif nd.op_type == "ConstantOfShape" and nd.inputs[0] in self.symbolic and not np.any(
                    _constant(protos[nd.index]) if protos[nd.index].attribute else 0):
                self.zeros.add(nd.outputs[0])            # a zero initial state sized by the batch
                self.folded.add(nd.index)
            elif nd.op_type in ZERO_KEEPING and nd.inputs and nd.inputs[0] in self.zeros:
                self.zeros.add(nd.outputs[0])            # a slice (per layer) of a zero state is zero
                self.folded.add(nd.index)

    def _reinfer_shapes(self) -> None:
        """Shapes ONNX could not infer while a value was computed (torch.onnx.export's pads and shapes made of
        Constant → Reshape → Cast chains), inferred again with the folded values as initialisers."""
        import onnx
        from onnx import helper, numpy_helper
        g = self.model.graph
        missing = [o for nd in self.nodes if nd.index not in self.folded for o in nd.outputs
                   if o and (self.shapes.get(o) is None or None in self.shapes[o])]
        if not missing:
            return
        gone = {i for i, nd in enumerate(self.nodes) if nd.outputs and all(o in self.consts for o in nd.outputs if o)}
        keep = [n for i, n in enumerate(g.node) if i not in gone]
        needed = {i for n in keep for i in n.input if i in self.consts}
        # values (pads, shapes) as initialisers; large tensors (weights) by their type and shape alone
        inits = [numpy_helper.from_array(np.asarray(self.consts[k]), k) for k in needed if self.consts[k].size <= 4096]
        typed = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(self.consts[k].dtype),
                                               list(self.consts[k].shape))
                 for k in needed if self.consts[k].size > 4096]
        ins = [vi for vi in g.input if vi.name not in self.consts]
        graph = helper.make_graph(keep, g.name, ins + typed, list(g.output), inits)
        model = helper.make_model(graph, opset_imports=list(self.model.opset_import))
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:                                            # noqa: BLE001 - shapes are a help, not a need
            return
        for vi in model.graph.value_info:
            self._note_type(vi)
            have = self.shapes.get(vi.name)
            if have is None or None in have:
                s = self._shape(vi)
                if s is not None:
                    self.shapes[vi.name] = s

    def learned_name(self, name: str) -> str | None:
        """The model parameter (a float initialiser with a plain name, as `conv1.weight`) that constant `name`
        is or rearranges; None for constants of the lowering (`/conv1/shape`, `zero`)."""
        if name in self.learned:
            return self.learned[name]
        return name if self.named(name) and self.consts[name].dtype.kind == "f" else None

    def named(self, name: str) -> bool:
        """An initialiser with a model's name (`conv1.weight`, `relative_position_index`), not the lowering's."""
        return name in self.initializer_names and "/" not in name and "::" not in name

    def _fold_shape(self, nd: OnnxNode) -> bool:
        """Shape arithmetic on object arrays of ints and symbols; True when `nd` was evaluated."""
        def get(name: str) -> np.ndarray | None:
            if name in self.symbolic:
                return self.symbolic[name]
            if name in self.consts and self.consts[name].dtype.kind == "i":
                return self.consts[name].astype(object)
            return None
        if nd.op_type == "Shape":
            s = self.shapes.get(nd.inputs[0])
            if s is None or any(d is None for d in s):
                return False
            s = s[nd.attr("start", 0):nd.attr("end", len(s))]
            res = np.asarray(list(s) if s else [], dtype=object)
        else:
            args = [get(i) if i else None for i in nd.inputs]
            if args[0] is None or not any(i in self.symbolic for i in nd.inputs if i):
                return False
            try:
                res = _shape_op(nd, args)
            except Exception:                                        # noqa: BLE001 - not a shape computation
                return False
            if res is None:
                return False
        if all(isinstance(d, (int, np.integer)) for d in res.flat):
            self.consts[nd.outputs[0]] = res.astype(np.int64)
        else:
            self.symbolic[nd.outputs[0]] = res
        return True


def _constant(node: Any) -> np.ndarray:
    from onnx import numpy_helper, helper
    a = node.attribute[0]
    if a.name == "value":
        return numpy_helper.to_array(a.t)
    v = helper.get_attribute_value(a)
    dtype = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
             "value_ints": np.int64}.get(a.name)
    return np.asarray(v, dtype=dtype)


def _shape_op(nd: OnnxNode, a: list) -> np.ndarray | None:
    x = a[0]
    t = nd.op_type
    if t in ("Cast", "Identity"):
        return x
    if t == "Gather":
        return np.asarray(np.take(x, np.asarray(a[1], dtype=np.int64), axis=nd.attr("axis", 0)), dtype=object)
    if t == "Concat":
        if any(v is None for v in a):
            return None
        return np.concatenate([np.atleast_1d(v) for v in a], axis=nd.attr("axis", 0))
    if t == "Unsqueeze":
        axes = nd.attr("axes") if len(a) < 2 else [int(v) for v in a[1]]
        return np.expand_dims(x, tuple(axes))
    if t == "Squeeze":
        axes = nd.attr("axes") if len(a) < 2 else [int(v) for v in a[1]]
        return np.squeeze(x, axis=None if axes is None else tuple(axes))
    if t == "Slice" and x.ndim == 1 and len(a) >= 3:
        start, end = int(a[1][0]), int(a[2][0])
        step = int(a[4][0]) if len(a) > 4 and a[4] is not None else 1
        return x[slice(start, None if end >= 2 ** 62 else end, step)]
    return None
