"""Tensor manipulation lowered to standard ONNX ops (valid for opsets 17..21)."""
from __future__ import annotations

import numpy as np

from ..ir import Dim, Node
from ..ops.tensor import reduce_axes, split_sizes, squeeze_axes
from .registry import DTYPES, Builder, lowering

INT64_MAX = np.iinfo(np.int64).max
NP_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "int32": np.int32, "bool": np.bool_}


def _norm(d: int, rank: int) -> int:
    return d % rank if rank else 0


def _cast(b: Builder, value: str, have: str, want: str) -> str:
    return value if have == want else b.op("Cast", [value], to=DTYPES[want])


def shape_value(b: Builder, in_shape: tuple[Dim, ...], out_shape: tuple[Dim, ...]) -> str:
    """An int64 shape tensor for Reshape to `out_shape`: numbers as they are, a symbol at the same
    position as in the input as 0 (copy), a lone other symbol as -1, several through b.dim."""
    moved = [i for i, d in enumerate(out_shape)
             if isinstance(d, str) and not (i < len(in_shape) and in_shape[i] == d)]
    entries: list[int | str] = []
    for i, d in enumerate(out_shape):
        if isinstance(d, int):
            entries.append(d)
        elif i not in moved:
            entries.append(0)
        elif len(moved) == 1:
            entries.append(-1)
        else:
            entries.append(d)
    return _pieces(b, entries)


def _pieces(b: Builder, entries: list[int | str]) -> str:
    """Concatenate constant runs and b.dim(symbol) values into one int64 [rank] tensor."""
    if all(isinstance(e, int) for e in entries):
        return b.ints(entries)
    parts: list[str] = []
    run: list[int] = []
    for e in entries:
        if isinstance(e, int):
            run.append(e)
            continue
        if run:
            parts.append(b.ints(run))
            run = []
        parts.append(b.dim(e))
    if run:
        parts.append(b.ints(run))
    return parts[0] if len(parts) == 1 else b.op("Concat", parts, axis=0)


# --------------------------------------------------------------------------- identity, arithmetic

@lowering("identity")
def identity(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Identity", [x[0]])


@lowering("detach")
def detach(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Identity", [x[0]])


def _arith(op_type: str, b: Builder, node: Node, x: list) -> str:
    want = node.out.dtype
    lhs = _cast(b, x[0], b.ins[0].dtype, want)
    if len(x) > 1 and x[1] is not None:
        rhs = _cast(b, x[1], b.ins[1].dtype, want)
    else:
        rhs = b.const(np.asarray(node.attrs.value, dtype=NP_DTYPES[want]), hint="value")
    return b.op(op_type, [lhs, rhs])


@lowering("add")
def add(b: Builder, node: Node, x: list, p: list) -> str:
    return _arith("Add", b, node, x)


@lowering("sub")
def sub(b: Builder, node: Node, x: list, p: list) -> str:
    return _arith("Sub", b, node, x)


@lowering("mul")
def mul(b: Builder, node: Node, x: list, p: list) -> str:
    return _arith("Mul", b, node, x)


@lowering("div")
def div(b: Builder, node: Node, x: list, p: list) -> str:
    return _arith("Div", b, node, x)


@lowering("matmul")
def matmul(b: Builder, node: Node, x: list, p: list) -> str:
    want = node.out.dtype
    return b.op("MatMul", [_cast(b, x[0], b.ins[0].dtype, want), _cast(b, x[1], b.ins[1].dtype, want)])


# --------------------------------------------------------------------------- concat, split

@lowering("concat")
def concat(b: Builder, node: Node, x: list, p: list) -> str:
    if len(x) == 1:
        return b.op("Identity", [x[0]])
    return b.op("Concat", x, axis=_norm(node.attrs.dim, b.ins[0].rank))


@lowering("split")
def split(b: Builder, node: Node, x: list, p: list) -> list[str]:
    t = b.ins[0]
    d = _norm(node.attrs.dim, t.rank)
    sizes = split_sizes(node.attrs.sections, t.shape[d])       # at least two (the shape rule says so)
    return list(b.op("Split", [x[0], b.ints(sizes, hint="split")], n_out=len(sizes), axis=d))


# --------------------------------------------------------------------------- reshapes

@lowering("reshape")
def reshape(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Reshape", [x[0], shape_value(b, b.ins[0].shape, node.out.shape)])


@lowering("flatten")
def flatten(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Reshape", [x[0], shape_value(b, b.ins[0].shape, node.out.shape)])


@lowering("permute")
def permute(b: Builder, node: Node, x: list, p: list) -> str:
    rank = b.ins[0].rank
    return b.op("Transpose", [x[0]], perm=[_norm(d, rank) for d in node.attrs.dims])


@lowering("transpose")
def transpose(b: Builder, node: Node, x: list, p: list) -> str:
    rank = b.ins[0].rank
    perm = list(range(rank))
    d0, d1 = _norm(node.attrs.dim0, rank), _norm(node.attrs.dim1, rank)
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return b.op("Transpose", [x[0]], perm=perm)


@lowering("squeeze")
def squeeze(b: Builder, node: Node, x: list, p: list) -> str:
    axes = squeeze_axes(node.attrs.dim, b.ins[0])
    if not axes:                      # never let ONNX squeeze "all 1s": a batch of 1 must stay
        return b.op("Identity", [x[0]])
    return b.op("Squeeze", [x[0], b.ints(axes, hint="axes")])


@lowering("unsqueeze")
def unsqueeze(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Unsqueeze", [x[0], b.ints([_norm(node.attrs.dim, b.ins[0].rank + 1)], hint="axes")])


# --------------------------------------------------------------------------- slicing

@lowering("slice")
def slice_(b: Builder, node: Node, x: list, p: list) -> str:
    a = node.attrs
    end = INT64_MAX if a.end is None else a.end
    return b.op("Slice", [x[0], b.ints([a.start], hint="starts"), b.ints([end], hint="ends"),
                          b.ints([_norm(a.dim, b.ins[0].rank)], hint="axes"), b.ints([a.step], hint="steps")])


@lowering("select")
def select(b: Builder, node: Node, x: list, p: list) -> str:
    index = b.const(np.asarray(node.attrs.index, dtype=np.int64), hint="index")
    return b.op("Gather", [x[0], index], axis=_norm(node.attrs.dim, b.ins[0].rank))


# --------------------------------------------------------------------------- reductions

def _reduce(b: Builder, node: Node, x: str, op_type: str, axes_input: bool) -> str:
    t = b.ins[0]
    axes = None if node.attrs.dim is None else reduce_axes(node.attrs, t)
    keep = int(node.attrs.keepdim)
    if axes_input:
        return b.op(op_type, [x, None if axes is None else b.ints(axes, hint="axes")], keepdims=keep)
    return b.op(op_type, [x], axes=axes, keepdims=keep)


@lowering("sum")
def reduce_sum(b: Builder, node: Node, x: list, p: list) -> str:
    v = _cast(b, x[0], b.ins[0].dtype, node.out.dtype)          # bool counts as int64
    return _reduce(b, node, v, "ReduceSum", True)               # axes an input since opset 13


@lowering("mean")
def reduce_mean(b: Builder, node: Node, x: list, p: list) -> str:
    v = _cast(b, x[0], b.ins[0].dtype, node.out.dtype)
    return _reduce(b, node, v, "ReduceMean", b.opset >= 18)      # axes an input from opset 18


@lowering("max")
def reduce_max(b: Builder, node: Node, x: list, p: list) -> str:
    if b.ins[0].dtype == "bool":                                # ReduceMax takes no bool: any() through int64
        v = _reduce(b, node, _cast(b, x[0], "bool", "int64"), "ReduceMax", b.opset >= 18)
        return _cast(b, v, "int64", "bool")
    return _reduce(b, node, x[0], "ReduceMax", b.opset >= 18)


# --------------------------------------------------------------------------- expand, one_hot

@lowering("expand")
def expand(b: Builder, node: Node, x: list, p: list) -> str:
    t, out = b.ins[0], node.out.shape
    lead = len(out) - t.rank
    entries: list[int | str] = []
    for i, d in enumerate(out):
        if i >= lead and t.shape[i - lead] == d:
            entries.append(1)             # Expand broadcasts: 1 keeps the input's size
        else:
            entries.append(d)             # a number, or a symbol read off a graph input
    return b.op("Expand", [x[0], _pieces(b, entries)])


@lowering("one_hot")
def one_hot(b: Builder, node: Node, x: list, p: list) -> str:
    depth = b.ints([node.attrs.num_classes], hint="depth")
    values = b.const(np.asarray([0.0, 1.0], dtype=np.float32), hint="off_on")
    if b.ins[0].rank == 0:                  # ONNX's OneHot needs indices of rank >= 1
        one = b.op("OneHot", [b.op("Unsqueeze", [x[0], b.ints([0])]), depth, values], axis=-1)
        return b.op("Squeeze", [one, b.ints([0])])
    return b.op("OneHot", [x[0], depth, values], axis=-1)


# --------------------------------------------------------------------------- param, constant

@lowering("param")
def param(b: Builder, node: Node, x: list, p: list) -> str:
    return p[0]


@lowering("constant")
def constant(b: Builder, node: Node, x: list, p: list) -> str:
    return b.const(np.asarray(node.attrs.value, dtype=np.float32), hint="constant")

