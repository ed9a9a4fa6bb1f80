"""Dense layers."""
from __future__ import annotations

from ..ir import Node
from .registry import Builder, lowering


@lowering("linear")
def linear(b: Builder, node: Node, x: list, p: list) -> str:
    if b.ins[0].rank == 2:
        return b.op("Gemm", [x[0], p[0], p[1] if len(p) > 1 else None], transB=1)
    wt = b.op("Transpose", [p[0]], perm=[1, 0])
    y = b.op("MatMul", [x[0], wt])
    return b.op("Add", [y, p[1]]) if len(p) > 1 else y
