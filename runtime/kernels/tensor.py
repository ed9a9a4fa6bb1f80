"""Tensor manipulation kernels: arithmetic, matmul, shape changes, reductions, constants and parameters.

Backward functions never write into the gradient they receive and may return it (or a broadcast,
read-only view of it) unchanged: callers must not modify gradients in place either.
"""
from __future__ import annotations

import math

import numpy as np

from compiler.ops.tensor import arange_values, pad_pairs, promoted, roll_pairs, split_sizes
from .. import threads
from .registry import Ctx, kernel, unbroadcast


def _axis(d: int, ndim: int) -> int:
    return d % ndim if ndim else 0


# --------------------------------------------------------------------------- identity, detach

@kernel("identity")
def identity(ctx: Ctx, x):
    return x, lambda gy: (gy,)


@kernel("detach")
def detach(ctx: Ctx, x):
    return x, None


# --------------------------------------------------------------------------- arithmetic

def _operands(a: np.ndarray, b):
    """Bring an integer operand to the other's float dtype (int64 + float32 would give float64)."""
    if b is None:
        return a, b
    b = np.asarray(b)
    if a.dtype != b.dtype:
        if a.dtype.kind == "f" and b.dtype.kind != "f":
            b = b.astype(a.dtype)
        elif b.dtype.kind == "f" and a.dtype.kind != "f":
            a = a.astype(b.dtype)
    return a, b


def _result(y: np.ndarray, a: np.ndarray, b) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype == np.float64 and a.dtype != np.float64 and (b is None or b.dtype != np.float64):
        y = y.astype(np.float32)          # integer operands with a float value or a true division
    return y


def _operand_pair(ctx: Ctx, a, b):
    """(a, b, other): the two operands, `other` being b or the attribute `value`."""
    if b is None and ctx.attrs.value is None:
        raise ValueError("an arithmetic op needs a second input or a value")
    a, b = _operands(a, b)
    return a, b, (b if b is not None else ctx.attrs.value)


@kernel("add")
def add(ctx: Ctx, a, b=None):
    a, b, other = _operand_pair(ctx, a, b)
    y = _result(a + other, a, b)

    def backward(gy):
        ga = unbroadcast(gy, a.shape) if ctx.need(0) else None
        gb = unbroadcast(gy, b.shape) if b is not None and ctx.need(1) else None
        return ga, gb

    return y, backward


@kernel("sub")
def sub(ctx: Ctx, a, b=None):
    a, b, other = _operand_pair(ctx, a, b)
    y = _result(a - other, a, b)

    def backward(gy):
        ga = unbroadcast(gy, a.shape) if ctx.need(0) else None
        gb = -unbroadcast(gy, b.shape) if b is not None and ctx.need(1) else None
        return ga, gb

    return y, backward


@kernel("mul")
def mul(ctx: Ctx, a, b=None):
    a, b, other = _operand_pair(ctx, a, b)
    y = _result(a * other, a, b)

    def backward(gy):
        ga = unbroadcast(gy * other, a.shape) if ctx.need(0) else None
        gb = unbroadcast(gy * a, b.shape) if b is not None and ctx.need(1) else None
        return ga, gb

    return y, backward


@kernel("div")
def div(ctx: Ctx, a, b=None):
    a, b, other = _operand_pair(ctx, a, b)
    y = _result(a / other, a, b)

    def backward(gy):
        t = gy / other
        ga = unbroadcast(t, a.shape) if ctx.need(0) else None
        gb = -unbroadcast(t * y, b.shape) if b is not None and ctx.need(1) else None
        return ga, gb

    return y, backward


# --------------------------------------------------------------------------- matmul

def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.matmul, with a stack against one matrix done as a single GEMM (not one BLAS call per matrix)."""
    if b.ndim == 2 and a.ndim > 2:
        return (a.reshape(-1, a.shape[-1]) @ b).reshape(a.shape[:-1] + (b.shape[1],))
    if a.ndim == 2 and b.ndim > 2:
        k, m = b.shape[-2:]
        batch = b.shape[:-2]
        flat = np.moveaxis(b.reshape((-1, k, m)), 0, 1).reshape(k, -1)          # k × (B·m)
        y = (a @ flat).reshape(a.shape[0], -1, m)                               # n × B × m
        return np.moveaxis(y, 0, 1).reshape(batch + (a.shape[0], m))
    return np.asarray(np.matmul(a, b))


@kernel("matmul")
def matmul(ctx: Ctx, a, b):
    a, b = _operands(a, b)
    m, n = (a.shape[-2] if a.ndim > 1 else 1), (b.shape[-1] if b.ndim > 1 else 1)
    work = max(a.size * n, b.size * m)              # batch·m·k·n of the product, with broadcasting
    with threads.gemm(work, 1, 1):                  # one BLAS thread for small GEMMs (runtime.threads)
        y = _mm(a, b) if a.ndim > 1 and b.ndim > 1 else np.asarray(np.matmul(a, b))

    def backward(gy):
        with threads.gemm(work, 1, 1):
            return _matmul_backward(ctx, a, b, gy)

    return y, backward


def _matmul_backward(ctx: Ctx, a, b, gy):
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    g = np.reshape(gy, batch + (a2.shape[-2], b2.shape[-1]))
    ga = gb = None
    if ctx.need(0):
        if a2.ndim == 2 and b2.ndim > 2 and b2.shape[:-2] == batch:
            # a shared matrix against a batch: one contraction over batch and m
            axes = list(range(len(batch))) + [g.ndim - 1]
            ga = np.tensordot(g, b2, axes=(axes, axes))
        else:
            ga = unbroadcast(_mm(g, np.swapaxes(b2, -1, -2)), a2.shape)
        ga = ga.reshape(a.shape)
    if ctx.need(1):
        if b2.ndim == 2 and a2.ndim > 2:
            # a weight matrix shared by the batch (x @ W): one GEMM over all rows
            k, n = a2.shape[-1], a2.shape[-2]
            ga2 = a2 if a2.shape[:-2] == batch else np.broadcast_to(a2, batch + (n, k))
            gb = ga2.reshape(-1, k).T @ g.reshape(-1, g.shape[-1])
        else:
            gb = unbroadcast(_mm(np.swapaxes(a2, -1, -2), g), b2.shape)
        gb = gb.reshape(b.shape)
    return ga, gb


# --------------------------------------------------------------------------- concat, split

@kernel("concat")
def concat(ctx: Ctx, *xs):
    d = _axis(ctx.attrs.dim, xs[0].ndim)
    y = np.concatenate(xs, axis=d) if len(xs) > 1 else xs[0]
    bounds = np.cumsum([x.shape[d] for x in xs])[:-1]

    def backward(gy):
        parts = np.split(gy, bounds, axis=d)
        return tuple(p if ctx.need(i) else None for i, p in enumerate(parts))

    return y, backward


@kernel("split")
def split(ctx: Ctx, x):
    d = _axis(ctx.attrs.dim, x.ndim)
    sizes = split_sizes(ctx.attrs.sections, x.shape[d])
    if sum(sizes) != x.shape[d]:
        raise ValueError(f"split: sections {sizes} do not add up to {x.shape[d]} (input shape {x.shape})")
    bounds = np.cumsum(sizes)[:-1]
    outs = tuple(np.split(x, bounds, axis=d))

    def backward(gys):
        if not isinstance(gys, (tuple, list)):
            gys = (gys,)
        if not ctx.need(0):
            return (None,)
        parts = [g if g is not None else np.zeros(o.shape, dtype=x.dtype) for g, o in zip(gys, outs)]
        return (np.concatenate(parts, axis=d) if len(parts) > 1 else parts[0],)

    return outs, backward


# --------------------------------------------------------------------------- reshapes

def _target_shape(ctx: Ctx, shape: list, what: str) -> list[int]:
    """Resolve symbols of an attribute shape: bound ones from ctx.symbols; one unbound becomes -1."""
    out = [ctx.symbols.get(d, d) if isinstance(d, str) else d for d in shape]
    unbound = [d for d in out if isinstance(d, str)]
    if unbound:
        if len(unbound) > 1 or -1 in out:
            raise ValueError(f"{what}: the size of symbol '{unbound[0]}' is not known at run time")
        out = [-1 if isinstance(d, str) else d for d in out]
    return out


@kernel("reshape")
def reshape(ctx: Ctx, x):
    y = x.reshape(_target_shape(ctx, ctx.attrs.shape, "reshape"))
    return y, lambda gy: (gy.reshape(x.shape),)


@kernel("flatten")
def flatten(ctx: Ctx, x):
    if x.ndim == 0:
        y = x.reshape(1)
    else:
        s, e = _axis(ctx.attrs.start_dim, x.ndim), _axis(ctx.attrs.end_dim, x.ndim)
        y = x.reshape(x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])
    return y, lambda gy: (gy.reshape(x.shape),)


@kernel("permute")
def permute(ctx: Ctx, x):
    dims = [_axis(d, x.ndim) for d in ctx.attrs.dims]
    inverse = np.argsort(dims)
    return np.transpose(x, dims), lambda gy: (np.transpose(gy, inverse),)


@kernel("transpose")
def transpose(ctx: Ctx, x):
    d0, d1 = _axis(ctx.attrs.dim0, x.ndim), _axis(ctx.attrs.dim1, x.ndim)
    return np.swapaxes(x, d0, d1), lambda gy: (np.swapaxes(gy, d0, d1),)


def _squeeze_axes(ctx: Ctx, x: np.ndarray) -> tuple[int, ...]:
    dim = ctx.attrs.dim
    if dim is not None:
        return tuple(sorted({_axis(d, x.ndim) for d in ([dim] if isinstance(dim, int) else dim)}))
    out = getattr(ctx.node, "outputs", None)
    if out:
        # the shape rule squeezes only dims that are 1 in the type: a symbolic dim (a batch of 1) stays
        axes = _kept_alignment(x.shape, next(iter(out.values())).shape)
        if axes is not None:
            return axes
    return tuple(i for i, s in enumerate(x.shape) if s == 1)


def _kept_alignment(shape: tuple[int, ...], kept: tuple) -> tuple[int, ...] | None:
    """The axes of `shape` to drop (each of size 1) so that the rest matches `kept` (numbers exactly, a symbol
    any size), trying to keep a dim before dropping it; None if there is no such choice."""
    def solve(i: int, j: int) -> tuple[int, ...] | None:
        if i == len(shape):
            return () if j == len(kept) else None
        if j < len(kept) and (isinstance(kept[j], str) or kept[j] == shape[i]):
            rest = solve(i + 1, j + 1)
            if rest is not None:
                return rest
        if shape[i] == 1:
            rest = solve(i + 1, j)
            if rest is not None:
                return (i,) + rest
        return None
    return solve(0, 0)


@kernel("squeeze")
def squeeze(ctx: Ctx, x):
    axes = _squeeze_axes(ctx, x)
    return np.squeeze(x, axis=axes), lambda gy: (gy.reshape(x.shape),)


@kernel("unsqueeze")
def unsqueeze(ctx: Ctx, x):
    y = np.expand_dims(x, _axis(ctx.attrs.dim, x.ndim + 1))
    return y, lambda gy: (gy.reshape(x.shape),)


# --------------------------------------------------------------------------- slicing

def _scatter(gy: np.ndarray, shape: tuple[int, ...], index: tuple) -> np.ndarray:
    g = np.zeros(shape, dtype=gy.dtype)
    g[index] = gy
    return g


@kernel("slice")
def slice_(ctx: Ctx, x):
    a = ctx.attrs
    index = (slice(None),) * _axis(a.dim, x.ndim) + (slice(a.start, a.end, a.step),)
    return x[index], lambda gy: (_scatter(gy, x.shape, index),)


@kernel("select")
def select(ctx: Ctx, x):
    index = (slice(None),) * _axis(ctx.attrs.dim, x.ndim) + (ctx.attrs.index,)
    return x[index], lambda gy: (_scatter(gy, x.shape, index),)


# --------------------------------------------------------------------------- reductions

def _reduce_axes(ctx: Ctx, x: np.ndarray) -> tuple[int, ...]:
    dim = ctx.attrs.dim
    if dim is None:
        return tuple(range(x.ndim))
    return tuple(sorted({_axis(d, x.ndim) for d in ([dim] if isinstance(dim, int) else dim)}))


def _kept(gy: np.ndarray, axes: tuple[int, ...], keepdim: bool) -> np.ndarray:
    return gy if keepdim else np.expand_dims(gy, axes)


@kernel("sum")
def reduce_sum(ctx: Ctx, x):
    axes, keep = _reduce_axes(ctx, x), ctx.attrs.keepdim
    y = np.asarray(np.sum(x, axis=axes, keepdims=keep))
    return y, lambda gy: (np.broadcast_to(_kept(gy, axes, keep), x.shape),)


@kernel("mean")
def reduce_mean(ctx: Ctx, x):
    axes, keep = _reduce_axes(ctx, x), ctx.attrs.keepdim
    xf = x if x.dtype.kind == "f" else x.astype(np.float32)
    y = np.asarray(np.mean(xf, axis=axes, keepdims=keep))
    count = math.prod(x.shape[i] for i in axes)
    return y, lambda gy: (np.broadcast_to(_kept(gy, axes, keep) / count, x.shape),)


@kernel("max")
def reduce_max(ctx: Ctx, x):
    axes, keep = _reduce_axes(ctx, x), ctx.attrs.keepdim
    yk = np.max(x, axis=axes, keepdims=True)
    y = np.asarray(yk if keep else np.squeeze(yk, axis=axes))

    def backward(gy):
        mask = x == yk
        count = np.sum(mask, axis=axes, keepdims=True, dtype=gy.dtype)   # ties share the gradient
        return (mask * (_kept(gy, axes, keep) / count),)

    return y, backward


# --------------------------------------------------------------------------- expand, one_hot

@kernel("expand")
def expand(ctx: Ctx, x):
    target = ctx.attrs.shape
    lead = len(target) - x.ndim
    shape = []
    for i, d in enumerate(target):
        if d == -1:
            shape.append(x.shape[i - lead])
        elif isinstance(d, str):
            if d not in ctx.symbols:
                raise ValueError(f"expand: the size of symbol '{d}' is not known at run time "
                                 f"(bound symbols: {sorted(ctx.symbols) or 'none'})")
            shape.append(ctx.symbols[d])
        else:
            shape.append(d)
    y = np.broadcast_to(x, tuple(shape))           # a read-only view
    return y, lambda gy: (unbroadcast(gy, x.shape),)


@kernel("one_hot")
def one_hot(ctx: Ctx, x):
    c = ctx.attrs.num_classes
    x = np.asarray(x)
    if x.size and (x.min() < 0 or x.max() >= c):
        bad = x.min() if x.min() < 0 else x.max()
        raise ValueError(f"one_hot: class index {bad} is out of range for num_classes={c} (allowed 0..{c - 1})")
    y = np.zeros((x.size, c), dtype=np.float32)
    y[np.arange(x.size), x.reshape(-1)] = 1.0
    return y.reshape(x.shape + (c,)), None


# --------------------------------------------------------------------------- param, constant

@kernel("param")
def param(ctx: Ctx, p):
    return p, lambda gy: (gy,)


@kernel("constant")
def constant(ctx: Ctx):
    return np.asarray(ctx.attrs.value, dtype=np.float32), None


# --------------------------------------------------------------------------- buffer, gather, index_select

@kernel("buffer")
def buffer(ctx: Ctx, p=None):
    if p is None:                                   # persistent: false, the value is the attribute's
        from compiler.ops.tensor import buffer_value
        return buffer_value(ctx.attrs), None
    return p, None


def _check_index(op: str, index: np.ndarray, size: int, dim: int) -> None:
    """Indices outside 0..size-1 are the data's fault: a clear error (as PyTorch refuses them), never a
    NumPy IndexError or a silent wrap-around of a negative index."""
    if index.size and (index.min() < 0 or index.max() >= size):
        bad = int(index.min() if index.min() < 0 else index.max())
        raise ValueError(f"{op}: index {bad} is out of range for dimension {dim} of size {size} "
                         f"(allowed 0..{size - 1})")


def _scatter_add(flat_index: np.ndarray, g: np.ndarray, size: int) -> np.ndarray:
    """out[k] = sum of g where flat_index == k, as a flat array of `size` in g's dtype (repeated indices add up)."""
    return np.bincount(flat_index.reshape(-1), weights=g.reshape(-1), minlength=size).astype(g.dtype, copy=False)


@kernel("gather")
def gather(ctx: Ctx, x, index):
    d = _axis(ctx.attrs.dim, x.ndim)
    _check_index("gather", index, x.shape[d], ctx.attrs.dim)
    corner = tuple(slice(None) if k == d else slice(0, n) for k, n in enumerate(index.shape))
    xs = x[corner]                                  # outside dim the index may cover only a corner of x
    y = np.take_along_axis(xs, index, axis=d)

    def backward(gy):
        if not ctx.need(0):
            return None, None
        flat = np.zeros(index.shape, dtype=np.int64)   # each index entry's position in xs, C order
        stride = 1
        for k in reversed(range(xs.ndim)):
            pos = index if k == d else np.arange(index.shape[k]).reshape((-1,) + (1,) * (xs.ndim - 1 - k))
            flat += pos * stride
            stride *= xs.shape[k]
        g = np.zeros(x.shape, dtype=gy.dtype)
        g[corner] = _scatter_add(flat, gy, xs.size).reshape(xs.shape)
        return g, None

    return y, backward


@kernel("index_select")
def index_select(ctx: Ctx, x, index):
    d = _axis(ctx.attrs.dim, x.ndim)
    _check_index("index_select", index, x.shape[d], ctx.attrs.dim)
    y = np.take(x, index, axis=d)

    def backward(gy):
        if not ctx.need(0):
            return None, None
        moved = np.moveaxis(gy, d, 0).reshape(len(index), -1)      # k × rest
        rest = moved.shape[1]
        flat = index[:, None] * rest + np.arange(rest)
        g = _scatter_add(flat, moved, x.shape[d] * rest).reshape((x.shape[d],) + np.moveaxis(gy, d, 0).shape[1:])
        return np.moveaxis(g, 0, d), None

    return y, backward

# --------------------------------------------------------------------------- comparisons, where, cast, arange

_COMPARE = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
            "ge": np.greater_equal}


def _comparison(name: str):
    fn = _COMPARE[name]

    def compare(ctx: Ctx, a, b=None):
        value = ctx.attrs.value
        if b is None and value is None:
            raise ValueError(f"{name} needs a second input or a value")
        want = promoted([str(a.dtype)] + ([] if b is None else [str(b.dtype)]), value)   # as torch and ONNX
        other = np.asarray(value if b is None else b).astype(want, copy=False)
        return np.asarray(fn(a.astype(want, copy=False), other)), None     # a bool mask: no gradient

    compare.__name__ = name
    return kernel(name)(compare)


for _name in _COMPARE:
    _comparison(_name)


@kernel("where")
def where(ctx: Ctx, cond, x, y=None):
    want = promoted([str(x.dtype)] + ([] if y is None else [str(y.dtype)]), ctx.attrs.value)
    x = x.astype(want, copy=False)
    other = np.asarray(ctx.attrs.value if y is None else y).astype(want, copy=False)
    y_out = np.where(cond, x, other)

    def backward(gy):
        zero = np.zeros((), dtype=gy.dtype)
        gx = unbroadcast(np.where(cond, gy, zero), x.shape) if ctx.need(1) else None
        gz = unbroadcast(np.where(cond, zero, gy), y.shape) if y is not None and ctx.need(2) else None
        return None, gx, gz

    return y_out, backward


@kernel("cast")
def cast(ctx: Ctx, x):
    want = ctx.attrs.dtype
    if want == "float32" and x.dtype.kind == "f":
        return x, lambda gy: (gy,)                     # float stays float (float64 in gradient checks)
    return x.astype(want), None                        # float to int64 truncates toward zero, as PyTorch


@kernel("arange")
def arange(ctx: Ctx):
    return np.asarray(arange_values(ctx.attrs, np)), None


# --------------------------------------------------------------------------- pad, roll

def _fold_border(g: np.ndarray, axis: int, size: int, before: int, after: int, mode: str) -> np.ndarray:
    """The gradient of one padded axis back to its `size` input positions: the interior, plus each border
    added where it was copied from (mirrored positions for reflect, the edge for replicate)."""
    def part(start: int, stop: int) -> np.ndarray:
        return g[(slice(None),) * axis + (slice(start, stop),)]

    def at(start: int, stop: int) -> tuple:
        return (slice(None),) * axis + (slice(start, stop),)

    out = part(before, before + size).copy()
    if mode == "replicate":
        if before:
            out[at(0, 1)] += part(0, before).sum(axis=axis, keepdims=True)
        if after:
            out[at(size - 1, size)] += part(before + size, before + size + after).sum(axis=axis, keepdims=True)
        return out
    if before:                                         # reflect: position -k copies k
        out[at(1, before + 1)] += np.flip(part(0, before), axis=axis)
    if after:                                          # position size-1+k copies size-1-k
        out[at(size - 1 - after, size - 1)] += np.flip(part(before + size, before + size + after), axis=axis)
    return out


@kernel("pad")
def pad(ctx: Ctx, x):
    a = ctx.attrs
    pairs = pad_pairs(a.pad, x.ndim)
    if a.mode == "constant":
        y = np.pad(x, pairs, constant_values=np.asarray(a.value or 0).astype(x.dtype))
        inner = tuple(slice(s, s + n) for (s, _), n in zip(pairs, x.shape))
        return y, (lambda gy: (gy[inner],)) if x.dtype.kind == "f" else None
    y = np.pad(x, pairs, mode="reflect" if a.mode == "reflect" else "edge")   # NumPy's reflect: no edge repeat

    def backward(gy):
        g = gy
        for d, (before, after) in enumerate(pairs):
            if before or after:
                g = _fold_border(g, d, x.shape[d], before, after, a.mode)
        return (g,)

    return y, backward if x.dtype.kind == "f" else None


@kernel("roll")
def roll(ctx: Ctx, x):
    pairs = roll_pairs(ctx.attrs, x.ndim)
    if pairs[0][1] is None:
        shifts, axes = pairs[0][0], None
    else:
        shifts, axes = tuple(s for s, _ in pairs), tuple(d for _, d in pairs)
    back = -shifts if axes is None else tuple(-s for s in shifts)
    return np.roll(x, shifts, axis=axes), lambda gy: (np.roll(gy, back, axis=axes),)
