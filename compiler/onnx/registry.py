"""The Builder the ONNX lowerings write into, and LOWERINGS: every op record's lowering, by op name.

A lowering is declared on its op's record in compiler/ops/<family>.py (see compiler/ops/registry.py):

    @lowering("linear")
    def linear_onnx(b: Builder, node: Node, x: list[str | None], p: list[str]) -> str | list[str | None]:
        return b.op("Gemm", [x[0], p[0], p[1]], transB=1)   # (rank 2 only; see compiler/ops/dense.py)

`x` are the value names of the node's inputs (None for an omitted optional input) and `p` the
initialiser names of its parameters (state_dict names, buffers included), in the order the shape
rule declared them. `b.ins` holds the inputs' TensorTypes and `node.outputs` the inferred output
types. Return one value name per output port (None for a port not produced).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..ir import TensorType
from ..ops import OPS
from ..ops.registry import DTYPES, lowering

Lowering = Callable[..., "str | list[str | None]"]
# Derived from the records (losses have none: they are pruned from exports). A dict, so tests can patch it.
LOWERINGS: dict[str, Lowering] = {n: d.lowering for n, d in OPS.items() if d.lowering is not None}

if DTYPES != {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64, "bool": TensorProto.BOOL,
              "float64": TensorProto.DOUBLE}:                                   # pragma: no cover
    raise RuntimeError("compiler/ops/registry.py's DTYPES disagree with onnx's TensorProto")
__all__ = ["DTYPES", "LOWERINGS", "Builder", "lowering"]


class Builder:
    """Collects ONNX nodes and initialisers; names every node after the spec node it lowers."""

    def __init__(self, opset: int = 18):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.ins: list[TensorType | None] = []
        self.scope = ""                      # the spec node being lowered
        self._names: set[str] = set()
        self._consts: dict[tuple, str] = {}
        self.symbols: dict[str, tuple[str, int]] = {}   # symbol -> (graph input, axis) that carries it
        self._dims: dict[str, str] = {}

    def fresh(self, hint: str) -> str:
        base = f"{self.scope}/{hint}" if self.scope else hint
        name, k = base, 1
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def reserve(self, name: str) -> None:
        self._names.add(name)

    def op(self, op_type: str, inputs: Sequence[str | None], n_out: int = 1, *,
           outputs: Sequence[str] | None = None, domain: str = "", **attrs: Any) -> Any:
        """Add one node; returns its output name (or a list when n_out > 1)."""
        outs = list(outputs) if outputs else [self.fresh(op_type if n_out == 1 else f"{op_type}:{i}")
                                              for i in range(n_out)]
        for o in outs:
            self._names.add(o)
        ins = ["" if i is None else i for i in inputs]
        while ins and ins[-1] == "":
            ins.pop()
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, ins, outs, name=self.fresh(op_type + "_node"),
                                           domain=domain or None, **attrs))
        return outs[0] if len(outs) == 1 else outs

    def const(self, value: Any, dtype: Any = None, hint: str = "const") -> str:
        """An initialiser holding `value` (deduplicated by content)."""
        arr = np.asarray(value, dtype=dtype)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            name = self.fresh(hint)
            self.initializers.append(numpy_helper.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]

    def ints(self, values: Sequence[int], hint: str = "shape") -> str:
        return self.const(np.asarray(list(values), dtype=np.int64), hint=hint)

    def dim(self, symbol: str) -> str:
        """An int64 [1] value holding a symbolic dimension's run-time size (read off a graph input)."""
        if symbol not in self._dims:
            if symbol not in self.symbols:
                raise KeyError(f"symbol {symbol!r} is not a dimension of any graph input")
            name, axis = self.symbols[symbol]
            saved, self.scope = self.scope, ""
            self._dims[symbol] = self.op("Shape", [name], start=axis, end=axis + 1,
                                         outputs=[f"dim_{symbol}"])
            self.scope = saved
        return self._dims[symbol]

    def add_initializer(self, name: str, arr: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(arr, order="C"), name))
        self._names.add(name)
        return name
