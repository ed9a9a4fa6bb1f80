"""Similarity and distance between two batches of vectors."""
from __future__ import annotations

import math

from ..ir import Node
from ..ops.shapes import broadcast
from .registry import DTYPES, Builder, lowering


def _reduce(b: Builder, op_type: str, x: str, axes: list[int], keepdims: int) -> str:
    """Reduce* with `axes` as an input where the opset takes it so (ReduceSum from 13, the rest from 18)."""
    if op_type == "ReduceSum" or b.opset >= 18:
        return b.op(op_type, [x, b.ints(axes, hint="axes")], keepdims=keepdims)
    return b.op(op_type, [x], axes=axes, keepdims=keepdims)


@lowering("cosine_similarity")
def cosine_similarity(b: Builder, node: Node, x: list, p: list) -> str:
    t1, t2 = b.ins[0], b.ins[1]
    shape = broadcast(t1.shape, t2.shape)
    rank = len(shape)
    axis = node.attrs.dim % rank
    eps = b.const(float(node.attrs.eps))
    prod = b.op("Mul", [x[0], x[1]])
    dot = _reduce(b, "ReduceSum", prod, [axis], 0)
    clamped = []
    for v, t in ((x[0], t1), (x[1], t2)):
        if t.rank < rank:                    # align ranks so `axis` means the same dimension
            v = b.op("Unsqueeze", [v, b.ints(list(range(rank - t.rank)), hint="axes")])
        aligned = (1,) * (rank - t.rank) + tuple(t.shape)
        sq = _reduce(b, "ReduceSum", b.op("Mul", [v, v]), [axis], 0)
        if aligned[axis] == 1 and shape[axis] != 1:
            # this input is broadcast along the reduced axis: its squared norm counts `size` copies
            if isinstance(shape[axis], int):
                size = b.const(float(shape[axis]))
            else:
                n = b.op("Shape", [prod], start=axis, end=axis + 1)
                size = b.op("Reshape", [b.op("Cast", [n], to=DTYPES[t.dtype]), b.ints([])])
            sq = b.op("Mul", [sq, size])
        clamped.append(b.op("Max", [b.op("Sqrt", [sq]), eps]))
    return b.op("Div", [dot, b.op("Mul", clamped)])


@lowering("pairwise_distance")
def pairwise_distance(b: Builder, node: Node, x: list, p: list) -> str:
    a = node.attrs
    rank = max(b.ins[0].rank, b.ins[1].rank)
    axes, keep = [rank - 1], int(a.keepdim)
    d = b.op("Add", [b.op("Sub", [x[0], x[1]]), b.const(float(a.eps))])
    pv = float(a.p)
    if pv == 2:
        return _reduce(b, "ReduceL2", d, axes, keep)
    if pv == 1:
        return _reduce(b, "ReduceL1", d, axes, keep)
    if math.isinf(pv):
        return _reduce(b, "ReduceMax" if pv > 0 else "ReduceMin", b.op("Abs", [d]), axes, keep)
    if pv == 0:
        nonzero = b.op("Not", [b.op("Equal", [d, b.const(0.0)])])
        return _reduce(b, "ReduceSum", b.op("Cast", [nonzero], to=DTYPES[b.ins[0].dtype]), axes, keep)
    powered = b.op("Pow", [b.op("Abs", [d]), b.const(pv)])
    return b.op("Pow", [_reduce(b, "ReduceSum", powered, axes, keep), b.const(1.0 / pv)])
