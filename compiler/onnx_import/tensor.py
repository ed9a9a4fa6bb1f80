"""Tensor plumbing: arithmetic, concat/split, reshapes, transposes, slicing, reductions, identities."""
from __future__ import annotations

import numpy as np

from .registry import Context, OnnxNode, converter

BIG = 2 ** 62                         # Slice ends at or beyond this mean "to the end"
ARITH = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}


def ints(cx: Context, nd: OnnxNode, k: int, attr: str | None = None) -> list[int] | None:
    """A constant int list given as input k (opset 13+) or, in older models, as attribute `attr`."""
    if k < len(nd.inputs) and nd.inputs[k]:
        v = cx.const(nd.inputs[k])
        if v is None:
            raise cx.refuse(nd, f"its input {k} ('{nd.inputs[k]}') is computed at run time; specc needs it constant")
        return [int(x) for x in np.atleast_1d(v)]
    if attr is not None and nd.attr(attr) is not None:
        return [int(x) for x in nd.attr(attr)]
    return None


def rank(cx: Context, name: str) -> int | None:
    s = cx.shape(name)
    return None if s is None else len(s)


@converter("Identity", "Dropout")
def identity(cx: Context, nd: OnnxNode) -> None:
    if len(nd.outputs) > 1 and nd.outputs[1] and cx.consumers(nd.outputs[1]):
        raise cx.refuse(nd, "its dropout mask output is read; an inference spec has no mask")
    cx.bind(nd.outputs[0], cx.src(nd.inputs[0], nd))


@converter("Cast")
def cast(cx: Context, nd: OnnxNode) -> None:
    from .graph import TYPES
    want = TYPES.get(nd.attr("to"))
    have = cx.g.dtype(nd.inputs[0])
    src = cx.src(nd.inputs[0], nd)
    if want == have or want == "float32" and have == "float64":
        cx.bind(nd.outputs[0], src)
        return
    if want in ("float32", "int64", "bool"):
        cx.emit("cast", [nd.inputs[0]], {"dtype": want}, hint=nd.name, outputs=nd.outputs)
        return
    raise cx.refuse(nd, f"a cast to {want or nd.attr('to')}: specc's cast op gives float32, int64 or bool",
                    hint="specc's arithmetic promotes integers itself; export the model with float inputs")


def _per_channel(v: np.ndarray | None, rank: int, c: int) -> np.ndarray | None:
    """`v` as [c] values when it broadcasts over dim 1 of a rank-`rank` input only, else None."""
    if v is None or v.dtype.kind != "f" or v.ndim > rank:
        return None
    full = v.reshape((1,) * (rank - v.ndim) + v.shape)
    if any(d != 1 for i, d in enumerate(full.shape) if i != 1) or full.shape[1] not in (1, c):
        return None
    return np.broadcast_to(full.reshape(-1), (c,)).astype(np.float32)


def standardize(cx: Context, nd: OnnxNode) -> bool:
    """(x − mean) / std with per-channel constants: specc's `standardize`, mean/std as buffers."""
    shape = cx.shape(nd.inputs[0])
    div = cx.only_consumer(nd.outputs[0], "Div")
    if shape is None or len(shape) < 2 or not isinstance(shape[1], int) or div is None or div.inputs[0] != nd.outputs[0]:
        return False
    mean = _per_channel(cx.const(nd.inputs[1]), len(shape), shape[1])
    std = _per_channel(cx.const(div.inputs[1]), len(shape), shape[1])
    if mean is None or std is None or np.any(std <= 0):
        return False
    cx.take(div)
    attrs = {"mean": [float(str(v)) for v in mean], "std": [float(str(v)) for v in std]} if mean.size <= 16 \
        else {"from_data": True}
    cx.emit("standardize", [nd.inputs[0]], attrs, {"mean": mean, "std": std}, hint=nd.name, outputs=div.outputs)
    return True


@converter("Add", "Sub", "Mul", "Div")
def arithmetic(cx: Context, nd: OnnxNode) -> None:
    op = ARITH[nd.op_type]
    a, b = nd.inputs[:2]
    ca, cb = cx.const(a), cx.const(b)
    if op == "sub" and ca is None and cb is not None and standardize(cx, nd):
        return
    if cb is not None and cb.size == 1 and cb.ndim <= (rank(cx, a) or 0) and cb.dtype.kind == "f":
        cx.emit(op, [a], {"value": float(cb.reshape(()))}, hint=nd.name, outputs=nd.outputs)
    elif ca is not None and ca.size == 1 and ca.ndim <= (rank(cx, b) or 0) and op in ("add", "mul") \
            and ca.dtype.kind == "f":
        cx.emit(op, [b], {"value": float(ca.reshape(()))}, hint=nd.name, outputs=nd.outputs)
    else:
        cx.emit(op, [a, b], hint=nd.name, outputs=nd.outputs)


@converter("MatMul")
def matmul(cx: Context, nd: OnnxNode) -> None:
    from .dense import linear_from_matmul
    if not linear_from_matmul(cx, nd):
        cx.emit("matmul", nd.inputs[:2], hint=nd.name, outputs=nd.outputs)


@converter("Concat")
def concat(cx: Context, nd: OnnxNode) -> None:
    from .layout import roll
    ins = [i for i in nd.inputs if i]
    if len(ins) == 1:
        cx.bind(nd.outputs[0], cx.src(ins[0], nd))
        return
    if roll(cx, nd):
        return
    cx.emit("concat", ins, {"dim": nd.attr("axis")}, hint=nd.name, outputs=nd.outputs)


@converter("Split")
def split(cx: Context, nd: OnnxNode) -> None:
    axis = nd.attr("axis", 0)
    sizes = ints(cx, nd, 1, "split")
    outs = [o for o in nd.outputs]
    if sizes is None:
        shape = cx.shape(nd.inputs[0])
        total = None if shape is None else shape[axis]
        if not isinstance(total, int):
            raise cx.refuse(nd, "an even split of a dimension whose size is not known")
        n = len(outs)
        chunk = -(-total // n)
        sizes = [min(chunk, total - i) for i in range(0, total, chunk)]
    cx.emit("split", [nd.inputs[0]], {"sections": sizes, "dim": axis}, hint=nd.name, outputs=outs,
            ports=tuple(str(i) for i in range(len(sizes))))


@converter("Reshape")
def reshape(cx: Context, nd: OnnxNode) -> None:
    from .layout import channel_shuffle
    x = nd.inputs[0]
    if channel_shuffle(cx, nd):
        return
    shape = cx.const(nd.inputs[1])
    if shape is None:
        shape = cx.g.symbolic.get(nd.inputs[1])
    if shape is None:
        raise cx.refuse(nd, "its target shape is computed from data at run time")
    have = cx.shape(x) or ()
    out: list = []
    for i, d in enumerate(list(shape)):
        if isinstance(d, str):
            out.append(d)
        elif int(d) == 0 and not nd.attr("allowzero", 0):
            if i >= len(have) or have[i] is None:
                raise cx.refuse(nd, f"it copies dimension {i} of an input whose shape is unknown")
            out.append(have[i])
        else:
            out.append(int(d))
    if len(out) == 2 and len(have) > 2 and have and out[0] == have[0] and (out[1] == -1 or _prod(have[1:]) == out[1]):
        cx.emit("flatten", [x], hint=nd.name, outputs=nd.outputs)
        return
    cx.emit("reshape", [x], {"shape": out}, hint=nd.name, outputs=nd.outputs)


def _prod(dims: tuple) -> int | None:
    p = 1
    for d in dims:
        if not isinstance(d, int):
            return None
        p *= d
    return p


@converter("Flatten")
def flatten(cx: Context, nd: OnnxNode) -> None:
    axis = nd.attr("axis", 1)
    r = rank(cx, nd.inputs[0])
    if axis == 1 or (r is not None and axis == 1 - r):
        if r == 2:
            cx.bind(nd.outputs[0], cx.src(nd.inputs[0], nd))
        else:
            cx.emit("flatten", [nd.inputs[0]], hint=nd.name, outputs=nd.outputs)
    elif axis == 0:
        cx.emit("reshape", [nd.inputs[0]], {"shape": [1, -1]}, hint=nd.name, outputs=nd.outputs)
    else:
        s = cx.shape(nd.inputs[0])
        lead = None if s is None else _prod(s[:axis])
        if lead is None:
            raise cx.refuse(nd, f"Flatten at axis {axis} merges leading dimensions whose sizes are not known")
        cx.emit("reshape", [nd.inputs[0]], {"shape": [lead, -1]}, hint=nd.name, outputs=nd.outputs)


@converter("Transpose")
def transpose(cx: Context, nd: OnnxNode) -> None:
    perm = nd.attr("perm")
    if perm is None:
        r = rank(cx, nd.inputs[0])
        if r is None:
            raise cx.refuse(nd, "a Transpose without perm on an input of unknown rank")
        perm = list(range(r))[::-1]
    moved = [i for i, p in enumerate(perm) if p != i]
    from .normalisation import layer_norm_over_dim
    if moved and layer_norm_over_dim(cx, nd, list(perm)):
        return
    if not moved:
        cx.bind(nd.outputs[0], cx.src(nd.inputs[0], nd))
    elif len(moved) == 2:
        cx.emit("transpose", [nd.inputs[0]], {"dim0": moved[0], "dim1": moved[1]}, hint=nd.name, outputs=nd.outputs)
    else:
        cx.emit("permute", [nd.inputs[0]], {"dims": list(perm)}, hint=nd.name, outputs=nd.outputs)


@converter("Squeeze")
def squeeze(cx: Context, nd: OnnxNode) -> None:
    axes = ints(cx, nd, 1, "axes")
    if axes is None:
        s = cx.shape(nd.inputs[0])
        if s is None:
            raise cx.refuse(nd, "a Squeeze without axes on an input of unknown shape")
        axes = [i for i, d in enumerate(s) if d == 1]
    cx.emit("squeeze", [nd.inputs[0]], {"dim": axes[0] if len(axes) == 1 else axes}, hint=nd.name,
            outputs=nd.outputs)


@converter("Unsqueeze")
def unsqueeze(cx: Context, nd: OnnxNode) -> None:
    axes = ints(cx, nd, 1, "axes") or []
    r = rank(cx, nd.inputs[0])
    if any(a < 0 for a in axes):
        if r is None:
            raise cx.refuse(nd, "negative axes on an input of unknown rank")
        axes = [a % (r + len(axes)) for a in axes]
    src = cx.src(nd.inputs[0], nd)
    for k, a in enumerate(sorted(axes)):
        last = k == len(axes) - 1
        layer = cx.emit("unsqueeze", [src], {"dim": a}, hint=nd.name, outputs=nd.outputs if last else None)
        src = (layer, 0)


@converter("Slice")
def slice_(cx: Context, nd: OnnxNode) -> None:
    starts, ends = ints(cx, nd, 1, "starts"), ints(cx, nd, 2, "ends")
    axes = ints(cx, nd, 3, "axes") or list(range(len(starts)))
    steps = ints(cx, nd, 4) or [1] * len(starts)
    src = cx.src(nd.inputs[0], nd)
    for k, (s, e, a, st) in enumerate(zip(starts, ends, axes, steps)):
        attrs = {"dim": a, "start": s}
        if abs(e) < BIG:
            attrs["end"] = e
        if st != 1:
            attrs["step"] = st
        last = k == len(starts) - 1
        layer = cx.emit("slice", [src], attrs, hint=nd.name, outputs=nd.outputs if last else None)
        src = (layer, 0)


@converter("ReduceMean", "ReduceSum", "ReduceMax")
def reduce(cx: Context, nd: OnnxNode) -> None:
    op = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max"}[nd.op_type]
    axes = ints(cx, nd, 1, "axes")
    if axes is None and nd.attr("noop_with_empty_axes", 0):
        cx.bind(nd.outputs[0], cx.src(nd.inputs[0], nd))
        return
    attrs: dict = {}
    if axes is not None:
        attrs["dim"] = axes[0] if len(axes) == 1 else axes
    if nd.attr("keepdims", 1):
        attrs["keepdim"] = True
    cx.emit(op, [nd.inputs[0]], attrs, hint=nd.name, outputs=nd.outputs)


@converter("Expand")
def expand(cx: Context, nd: OnnxNode) -> None:
    shape = cx.const(nd.inputs[1])
    if shape is None:
        shape = cx.g.symbolic.get(nd.inputs[1])
    if shape is None:
        raise cx.refuse(nd, "its target shape is computed from data at run time")
    have = cx.shape(nd.inputs[0]) or ()
    out = list(shape)
    lead = len(out) - len(have)
    out = [-1 if i >= lead and isinstance(d, (int, np.integer)) and d == 1 else
           (d if isinstance(d, str) else int(d)) for i, d in enumerate(out)]
    cx.emit("expand", [nd.inputs[0]], {"shape": out}, hint=nd.name, outputs=nd.outputs)
