"""Tensor manipulation: arithmetic, matmul, shape changes, reductions, constants and parameters."""
from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Literal, Union

from .. import limits
from ..errors import ShapeError
from ..ir import Dim, Init, Node, ParamSpec, TensorType
from .cases import Case, In
from .lazy import F, np, torch
from .registry import DTYPES, Attrs, Inferred, NoAttrs, lowering, op, reference
from .shapes import broadcast, concrete, norm_dim, per_sample

if TYPE_CHECKING:
    from ..onnx.registry import Builder

Number = Union[int, float]


# --------------------------------------------------------------------------- helpers

def fmt(shape: tuple[Dim, ...]) -> str:
    return "×".join(str(d) for d in shape) or "scalar"


def is_float(dtype: str) -> bool:
    return dtype.startswith("float")


def _symbol(d: object, what: str, attr: str) -> str:
    if not (isinstance(d, str) and d.isidentifier()):
        raise ShapeError(f"{what} entry {d!r} is neither a size nor a symbol such as N",
                         hint="use positive integers, -1, or a dimension symbol from `inputs`", attr=attr)
    return d


def _dims(dim: int | list[int], rank: int, attr: str = "dim") -> list[int]:
    """Normalise one dim or a list of dims; duplicates are an error."""
    dims = [norm_dim(d, rank, attr) for d in ([dim] if isinstance(dim, int) else dim)]
    if len(set(dims)) != len(dims):
        raise ShapeError(f"{attr} {list(dim)} names the same dimension twice", attr=attr)
    return sorted(dims)


def _count(shape: tuple[Dim, ...]) -> tuple[int, Counter]:
    """Element count of a shape as (product of the numbers, multiset of the symbols)."""
    return math.prod(d for d in shape if isinstance(d, int)), Counter(d for d in shape if isinstance(d, str))


def _count_str(n: int, syms: Counter) -> str:
    parts = ([str(n)] if n != 1 or not syms else []) + [s for s, k in sorted(syms.items()) for _ in range(k)]
    return "·".join(parts)


def _merge(dims: tuple[Dim, ...], op_name: str, hint: str) -> Dim:
    """The size of several dimensions merged into one: a number, or a lone symbol."""
    n, syms = _count(dims)
    if not syms:
        return n
    if sum(syms.values()) == 1 and n == 1:
        return next(iter(syms))
    raise ShapeError(f"{op_name} would merge the dimensions {fmt(dims)} into one of size {_count_str(n, syms)}, "
                     "which is not a single number or symbol", hint=hint)


# --------------------------------------------------------------------------- identity, arithmetic

@op("identity", NoAttrs,
    cases=[Case({}, ((2, 3),))])
def identity(a: NoAttrs, x: TensorType) -> Inferred:
    """Returns its input unchanged."""
    return Inferred([x])


@lowering("identity")
def identity_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Identity", [x[0]])


@reference("identity")
def _identity(c, x):
    return x


@op("detach", NoAttrs,
    cases=[Case({}, ((2, 3),))],
    no_grad="stops gradients by definition: its kernel has no backward (tests/test_ops_tensor.py checks it)")
def detach(a: NoAttrs, x: TensorType) -> Inferred:
    """Returns its input unchanged but stops the gradient (as torch.Tensor.detach)."""
    return Inferred([x])


@lowering("detach")
def detach_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Identity", [x[0]])


@reference("detach")
def _detach(c, x):
    return x.detach()


class Arith(Attrs):
    value: Number | None = None


def _arith(name: str, a: Arith, x: TensorType, y: TensorType | None) -> Inferred:
    if y is None and a.value is None:
        raise ShapeError(f"{name} needs a second input or a `value`, but got neither",
                         hint=f"write `in: [a, b]`, or `{{op: {name}, value: 2.0}}` for a constant", attr="value")
    if y is not None and a.value is not None:
        raise ShapeError(f"{name} got both a second input and `value: {a.value}`; give only one",
                         hint="drop `value`, or drop the second input", attr="value")
    if y is None:
        shape = x.shape
        dts = [x.dtype]
        value_float = isinstance(a.value, float)
    else:
        try:
            shape = broadcast(x.shape, y.shape)
        except ShapeError as e:
            raise ShapeError(f"{name}: inputs of {e.message}",
                             hint="broadcasting aligns shapes from the right; each pair of sizes must be "
                                  "equal or one of them 1") from None
        dts = [x.dtype, y.dtype]
        value_float = False
    floats = [d for d in dts if is_float(d)]
    if floats:
        dtype = "float64" if "float64" in floats else floats[0]
    elif value_float or name == "div":
        dtype = "float32"
    elif a.value is not None or "int64" in dts:
        dtype = "int64"                     # bool with an integer counts as 0/1 (as NumPy and PyTorch)
    elif name == "sub":
        raise ShapeError("sub cannot subtract two bool tensors (PyTorch refuses it too)",
                         hint="declare one input as float32 or int64 to subtract 0/1 values")
    else:
        dtype = "bool"                      # add: logical or; mul: logical and (as NumPy and PyTorch)
    out = TensorType(shape, dtype)
    return Inferred([out], macs=per_sample(out))


@op("add", Arith, inputs=("a", "b"), optional=("b",),
    cases=[Case({}, ((2, 3), (2, 3))), Case({}, ((2, 1, 4), (3, 1))), Case({"value": 2.5}, ((2, 3), None))])
def add(a: Arith, x: TensorType, y: TensorType | None = None) -> Inferred:
    """a + b with NumPy broadcasting, or a + value. Two bool inputs give their logical or (as PyTorch)."""
    return _arith("add", a, x, y)


@lowering("add")
def add_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return _arith_onnx("Add", b, node, x)


def _arith_torch(name: str):
    def run(c, a, b=None):
        fn = getattr(torch, name)
        if b is None:
            return fn(a, c.a.value)
        return fn(a, b)
    return run


reference("add")(_arith_torch("add"))


@op("sub", Arith, inputs=("a", "b"), optional=("b",),
    cases=[Case({}, ((2, 3), (2, 3))), Case({}, ((2, 1, 4), (3, 1))), Case({"value": 2.5}, ((2, 3), None))])
def sub(a: Arith, x: TensorType, y: TensorType | None = None) -> Inferred:
    """a - b with NumPy broadcasting, or a - value. Two bool inputs are refused (as PyTorch)."""
    return _arith("sub", a, x, y)


@lowering("sub")
def sub_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return _arith_onnx("Sub", b, node, x)


reference("sub")(_arith_torch("sub"))


@op("mul", Arith, inputs=("a", "b"), optional=("b",),
    cases=[Case({}, ((2, 3), (2, 3))), Case({}, ((2, 1, 4), (3, 1))), Case({"value": 2.5}, ((2, 3), None))])
def mul(a: Arith, x: TensorType, y: TensorType | None = None) -> Inferred:
    """a * b (elementwise) with NumPy broadcasting, or a * value. Two bool inputs give their logical and."""
    return _arith("mul", a, x, y)


@lowering("mul")
def mul_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return _arith_onnx("Mul", b, node, x)


reference("mul")(_arith_torch("mul"))


@op("div", Arith, inputs=("a", "b"), optional=("b",),
    cases=[Case({}, ((2, 3), In((3,), low=0.5, high=2.0))), Case({"value": -4.0}, ((2, 3), None))])
def div(a: Arith, x: TensorType, y: TensorType | None = None) -> Inferred:
    """a / b (true division, integers give float32) with NumPy broadcasting, or a / value."""
    return _arith("div", a, x, y)


@lowering("div")
def div_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return _arith_onnx("Div", b, node, x)


reference("div")(_arith_torch("true_divide"))


# --------------------------------------------------------------------------- matmul

@op("matmul", NoAttrs, inputs=("a", "b"),
    cases=[Case({}, ((2, 3, 4), (4, 5))), Case({}, ((4,), (2, 4, 3)))])
def matmul(a: NoAttrs, x: TensorType, y: TensorType) -> Inferred:
    """Matrix product with NumPy/torch.matmul semantics: 1-D operands are promoted, batch dims broadcast.

    Float if either operand is float, else int64; two bool operands are refused (as PyTorch)."""
    if x.rank == 0 or y.rank == 0:
        raise ShapeError(f"matmul needs inputs with at least one dimension, got shapes {x} and {y}",
                         hint="use mul to multiply by a scalar")
    xs = (1,) + x.shape if x.rank == 1 else x.shape
    ys = y.shape + (1,) if y.rank == 1 else y.shape
    k1, k2 = xs[-1], ys[-2]
    if k1 != k2:
        raise ShapeError(f"matmul: the last dimension of a ({k1}, shape {x}) must equal the "
                         f"{'only' if y.rank == 1 else 'second-to-last'} dimension of b ({k2}, shape {y})",
                         hint="transpose one operand, or check which inputs are connected")
    try:
        batch = broadcast(xs[:-2], ys[:-2])
    except ShapeError as e:
        raise ShapeError(f"matmul: the batch dimensions of a (shape {x}) and b (shape {y}) do not broadcast: "
                         f"{e.message}") from None
    shape = batch + ((xs[-2],) if x.rank > 1 else ()) + ((ys[-1],) if y.rank > 1 else ())
    dt = [d for d in (x.dtype, y.dtype) if is_float(d)]
    if not dt and x.dtype == y.dtype == "bool":
        raise ShapeError("matmul cannot multiply two bool tensors (PyTorch refuses it too)",
                         hint="declare one input as float32 (or int64) to multiply 0/1 matrices")
    out = TensorType(shape, dt[0] if dt else "int64")
    k = k1 if isinstance(k1, int) else 1
    macs = per_sample(out) * k if out.rank >= 2 else out.numel() * k
    return Inferred([out], macs=macs)


@lowering("matmul")
def matmul_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    want = node.out.dtype
    return b.op("MatMul", [_cast(b, x[0], b.ins[0].dtype, want), _cast(b, x[1], b.ins[1].dtype, want)])


@reference("matmul")
def _matmul(c, a, b):
    return torch.matmul(a, b)


# --------------------------------------------------------------------------- concat, split

class Concat(Attrs):
    dim: int = 0


@op("concat", Concat, inputs=("x",), variadic=True,
    cases=[Case({"dim": 1}, ((2, 3), (2, 2))), Case({"dim": 0}, ((1, 3), (2, 3), (1, 3)))])
def concat(a: Concat, *xs: TensorType) -> Inferred:
    """Joins its inputs along `dim` (default 0, as torch.cat); all other dimensions must agree."""
    if not xs:
        raise ShapeError("concat needs at least one input")
    first = xs[0]
    if first.rank == 0:
        raise ShapeError("concat cannot join scalars (rank-0 inputs)", hint="unsqueeze them first")
    d = norm_dim(a.dim, first.rank)
    for i, t in enumerate(xs[1:], 1):
        if t.rank != first.rank:
            raise ShapeError(f"concat: input {i} has rank {t.rank} (shape {t}) but input 0 has rank "
                             f"{first.rank} (shape {first}); all inputs need the same rank")
        for j in range(first.rank):
            if j != d and t.shape[j] != first.shape[j]:
                raise ShapeError(f"concat along dim {a.dim}: input {i} (shape {t}) differs from input 0 "
                                 f"(shape {first}) in dimension {j} ({t.shape[j]} vs {first.shape[j]})",
                                 hint=f"only the concatenated dimension may differ; did you mean `dim: {j}`? "
                                      "(concat joins along dim 0 by default, as torch.cat)", attr="dim")
        if t.dtype != first.dtype:
            raise ShapeError(f"concat: input {i} is {t.dtype} but input 0 is {first.dtype}")
    sizes = [t.shape[d] for t in xs]
    syms = [s for s in sizes if isinstance(s, str)]
    if syms and len(xs) > 1:
        raise ShapeError(f"concat along dim {a.dim} joins sizes {' + '.join(map(str, sizes))}, and the "
                         f"symbolic size '{syms[0]}' makes the result size unknown",
                         hint="concat joins along dim 0 by default (as torch.cat); "
                              "to join features write e.g. `dim: -1`", attr="dim")
    total = sizes[0] if syms else sum(sizes)
    return Inferred([TensorType(first.shape[:d] + (total,) + first.shape[d + 1:], first.dtype)])


@lowering("concat")
def concat_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    if len(x) == 1:
        return b.op("Identity", [x[0]])
    return b.op("Concat", x, axis=_norm(node.attrs.dim, b.ins[0].rank))


@reference("concat")
def _concat(c, *xs):
    return torch.cat(xs, dim=c.a.dim)


class Split(Attrs):
    sections: int | list[int]
    dim: int = 0


def split_sizes(sections: int | list[int], size: int) -> list[int]:
    """Chunk sizes as torch.split: an int is the chunk size (the last chunk may be smaller)."""
    if isinstance(sections, int):
        return [min(sections, size - i) for i in range(0, size, sections)]
    return list(sections)


@op("split", Split, ports=("0", "1"), primary="sections",
    cases=[Case({"sections": [1, 3], "dim": 1}, ((2, 4, 2),)), Case({"sections": 2, "dim": -1}, ((3, 4),))])
def split(a: Split, x: TensorType) -> Inferred:
    """Splits along `dim` (default 0, as torch.split) into chunks: `sections` is a chunk size or a list of sizes."""
    if x.rank == 0:
        raise ShapeError("split cannot split a scalar")
    d = norm_dim(a.dim, x.rank)
    size = concrete(x.shape[d], f"split: the dimension {a.dim} (shape {x})", attr="dim")
    if isinstance(a.sections, int):
        if a.sections < 1:
            raise ShapeError(f"split: the chunk size must be positive, got sections: {a.sections}", attr="sections")
    else:
        if not a.sections or any(s < 1 for s in a.sections):
            raise ShapeError(f"split: the sections must be a list of positive sizes, got {a.sections}",
                             attr="sections")
        if sum(a.sections) != size:
            raise ShapeError(f"split: the sections {a.sections} add up to {sum(a.sections)}, but dimension "
                             f"{a.dim} of the input has size {size} (shape {x})",
                             hint=f"make the sizes add up to {size}, or give one chunk size", attr="sections")
    if isinstance(a.sections, int) and -(-size // a.sections) > limits.OUTPUTS:
        raise ShapeError(f"split: sections {a.sections} cut dimension {a.dim} (size {size}) into "
                         f"{-(-size // a.sections):,} chunks, more than the limit of {limits.OUTPUTS:,}",
                         attr="sections")
    sizes = split_sizes(a.sections, size)
    if len(sizes) == 1:
        raise ShapeError(f"split: sections {a.sections} of dimension {a.dim} (size {size}, shape {x}) give a single "
                         "chunk, which is the input itself", attr="sections",
                         hint="give a smaller chunk size or a list of sizes; to pass the input on, use identity")
    outs = [TensorType(x.shape[:d] + (s,) + x.shape[d + 1:], x.dtype) for s in sizes]
    return Inferred(outs, ports=[str(i) for i in range(len(outs))])


@lowering("split")
def split_onnx(b: Builder, node: Node, x: list, p: list) -> list[str]:
    t = b.ins[0]
    d = _norm(node.attrs.dim, t.rank)
    sizes = split_sizes(node.attrs.sections, t.shape[d])       # at least two (the shape rule says so)
    return list(b.op("Split", [x[0], b.ints(sizes, hint="split")], n_out=len(sizes), axis=d))


@reference("split")
def _split(c, x):
    return tuple(torch.split(x, c.a.sections, dim=c.a.dim))


# --------------------------------------------------------------------------- reshapes

class Reshape(Attrs):
    shape: list[int | str]


@op("reshape", Reshape, primary="shape",
    cases=[Case({"shape": [3, -1]}, ((2, 3, 2),))])
def reshape(a: Reshape, x: TensorType) -> Inferred:
    """Reshapes to `shape` (the full shape, batch included, as torch.reshape); one entry may be -1.

    A symbol in `shape` (e.g. `[N, -1]`) must be a dimension of the input; `[-1, 16]` on an `N×4×4`
    input keeps N for the -1.
    """
    target = list(a.shape)
    for d in target:
        if isinstance(d, int) and d < 1 and d != -1:
            raise ShapeError(f"reshape: the shape {target} has the size {d}; sizes are positive, or -1 for "
                             "'whatever is left'", attr="shape")
        if isinstance(d, str):
            _symbol(d, "reshape: the shape's", "shape")
    if target.count(-1) > 1:
        raise ShapeError(f"reshape: the shape {target} has more than one -1", attr="shape")
    n_in, s_in = _count(x.shape)
    n_t, s_t = _count(tuple(d for d in target if d != -1))
    missing = s_t - s_in
    if missing:
        sym = next(iter(missing))
        raise ShapeError(f"reshape: the shape {target} uses the symbol '{sym}', which is not a dimension of its "
                         f"input (shape {x})", hint="use -1 for the size that is left over", attr="shape")
    left = s_in - s_t
    ins = f"its input (shape {x}) has {_count_str(n_in, s_in)} elements"
    if -1 in target:
        if n_in % n_t:
            raise ShapeError(f"reshape to {target}: {ins}, which is not a multiple of {_count_str(n_t, s_t)}",
                             attr="shape")
        rest = n_in // n_t
        if not left:
            fill: Dim = rest
        elif sum(left.values()) == 1 and rest == 1:
            fill = next(iter(left))
        else:
            raise ShapeError(f"reshape to {target}: the -1 would have to be {_count_str(rest, left)}, which is "
                             "not a single number or symbol", attr="shape",
                             hint=f"keep the symbolic dimensions in the shape, e.g. [{', '.join(left)}, -1]")
        out = tuple(fill if d == -1 else d for d in target)
    else:
        if left or n_in != n_t:
            raise ShapeError(f"reshape to {target}: {ins}, but the target has {_count_str(n_t, s_t)}",
                             hint="the element counts must match; use -1 for the size that is left over",
                             attr="shape")
        out = tuple(target)
    return Inferred([TensorType(out, x.dtype)])


@lowering("reshape")
def reshape_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Reshape", [x[0], shape_value(b, b.ins[0].shape, node.out.shape)])


@reference("reshape")
def _reshape(c, x):
    return x.reshape(_bind(c.a.shape, c.symbols))


class Flatten(Attrs):
    start_dim: int = 1
    end_dim: int = -1


@op("flatten", Flatten,
    cases=[Case({}, ((2, 3, 4),)), Case({"start_dim": 0, "end_dim": 1}, ((2, 3, 4),))])
def flatten(a: Flatten, x: TensorType) -> Inferred:
    """Merges dimensions start_dim..end_dim into one (as torch.flatten; default keeps the batch dim)."""
    if x.rank == 0:
        return Inferred([TensorType((1,), x.dtype)])
    s = norm_dim(a.start_dim, x.rank, "start_dim")
    e = norm_dim(a.end_dim, x.rank, "end_dim")
    if s > e:
        raise ShapeError(f"flatten: the start_dim ({a.start_dim}) comes after its end_dim ({a.end_dim}) "
                         f"for an input of shape {x}", attr="start_dim")
    merged = _merge(x.shape[s:e + 1], "flatten",
                    hint="leave the batch dimension out of the flattened range (start_dim: 1)")
    return Inferred([TensorType(x.shape[:s] + (merged,) + x.shape[e + 1:], x.dtype)])


@lowering("flatten")
def flatten_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Reshape", [x[0], shape_value(b, b.ins[0].shape, node.out.shape)])


@reference("flatten")
def _flatten(c, x):
    if x.dim() == 0:
        return x.reshape(1)
    return torch.flatten(x, c.a.start_dim, c.a.end_dim)


class Permute(Attrs):
    dims: list[int]


@op("permute", Permute, primary="dims",
    cases=[Case({"dims": [2, 0, 1]}, ((2, 3, 4),))])
def permute(a: Permute, x: TensorType) -> Inferred:
    """Reorders the dimensions: output dim i is input dim dims[i] (as torch.permute)."""
    if len(a.dims) != x.rank:
        raise ShapeError(f"permute: the dims {a.dims} list {len(a.dims)} dimensions but the input has rank "
                         f"{x.rank} (shape {x})", hint="name every dimension exactly once", attr="dims")
    dims = [norm_dim(d, x.rank, "dims") for d in a.dims]
    if sorted(dims) != list(range(x.rank)):
        raise ShapeError(f"permute: the dims {a.dims} is not a permutation of 0..{x.rank - 1}",
                         hint="name every dimension exactly once", attr="dims")
    return Inferred([TensorType(tuple(x.shape[d] for d in dims), x.dtype)])


@lowering("permute")
def permute_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    rank = b.ins[0].rank
    if rank == 0:                           # permute of a scalar (dims: []) changes nothing
        return b.op("Identity", [x[0]])
    return b.op("Transpose", [x[0]], perm=[_norm(d, rank) for d in node.attrs.dims])


@reference("permute")
def _permute(c, x):
    return x.permute(*c.a.dims)


class Transpose(Attrs):
    dim0: int
    dim1: int


@op("transpose", Transpose,
    cases=[Case({"dim0": 0, "dim1": 2}, ((2, 3, 4),))])
def transpose(a: Transpose, x: TensorType) -> Inferred:
    """Swaps dimensions dim0 and dim1."""
    if x.rank == 0:
        raise ShapeError("transpose needs an input with at least one dimension, got a scalar")
    d0 = norm_dim(a.dim0, x.rank, "dim0")
    d1 = norm_dim(a.dim1, x.rank, "dim1")
    shape = list(x.shape)
    shape[d0], shape[d1] = shape[d1], shape[d0]
    return Inferred([TensorType(tuple(shape), x.dtype)])


@lowering("transpose")
def transpose_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    rank = b.ins[0].rank
    perm = list(range(rank))
    d0, d1 = _norm(node.attrs.dim0, rank), _norm(node.attrs.dim1, rank)
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return b.op("Transpose", [x[0]], perm=perm)


@reference("transpose")
def _transpose(c, x):
    return x.transpose(c.a.dim0, c.a.dim1)


class Squeeze(Attrs):
    dim: int | list[int] | None = None


def squeeze_axes(dim: int | list[int] | None, x: TensorType) -> list[int]:
    if dim is None:
        return [i for i, d in enumerate(x.shape) if d == 1]
    if x.rank == 0:
        raise ShapeError("squeeze: the input is a scalar, it has no dimension to squeeze", attr="dim",
                         hint="drop `dim` (a scalar stays a scalar) or squeeze a tensor with size-1 dimensions")
    dims = _dims(dim, x.rank)
    for d in dims:
        if x.shape[d] != 1:
            raise ShapeError(f"squeeze: dimension {d} of the input (shape {x}) has size {x.shape[d]}, not 1",
                             hint="only size-1 dimensions can be squeezed", attr="dim")
    return dims


@op("squeeze", Squeeze,
    cases=[Case({}, ((2, 1, 3, 1),)), Case({"dim": 1}, ((2, 1, 3),))])
def squeeze(a: Squeeze, x: TensorType) -> Inferred:
    """Removes size-1 dimensions: `dim` (one or a list, each must have size 1), or every size-1 dim.

    Unlike torch.squeeze, a named dim that is not 1 is an error; symbolic dims are never squeezed.
    """
    axes = squeeze_axes(a.dim, x)
    return Inferred([TensorType(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype)])


@lowering("squeeze")
def squeeze_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    axes = squeeze_axes(node.attrs.dim, b.ins[0])
    if not axes:                      # never let ONNX squeeze "all 1s": a batch of 1 must stay
        return b.op("Identity", [x[0]])
    return b.op("Squeeze", [x[0], b.ints(axes, hint="axes")])


@reference("squeeze")
def _squeeze(c, x):
    t = c.in_types[0]
    if c.a.dim is None:                       # static size-1 dims only: a symbol that is 1 at run time stays
        axes = [i for i, d in enumerate(t.shape) if d == 1]
    else:
        axes = _ndims(c.a.dim, x.dim())
    return x.squeeze(tuple(axes)) if axes else x


class Unsqueeze(Attrs):
    dim: int


@op("unsqueeze", Unsqueeze, primary="dim",
    cases=[Case({"dim": 1}, ((2, 3),)), Case({"dim": -1}, ((2, 3),))])
def unsqueeze(a: Unsqueeze, x: TensorType) -> Inferred:
    """Inserts a size-1 dimension at `dim` (negative counts from the end of the result, as torch)."""
    d = norm_dim(a.dim, x.rank + 1)
    return Inferred([TensorType(x.shape[:d] + (1,) + x.shape[d:], x.dtype)])


@lowering("unsqueeze")
def unsqueeze_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Unsqueeze", [x[0], b.ints([_norm(node.attrs.dim, b.ins[0].rank + 1)], hint="axes")])


@reference("unsqueeze")
def _unsqueeze(c, x):
    return x.unsqueeze(c.a.dim)


# --------------------------------------------------------------------------- slicing

class Slice(Attrs):
    dim: int
    start: int = 0
    end: int | None = None
    step: int = 1


def slice_len(size: Dim, start: int, end: int | None, step: int) -> Dim | None:
    """Length of x[start:end:step] along a dim; for a symbol, a number when it does not depend on the
    symbol's value (assuming the dimension is long enough), the symbol for the whole dim, else None."""
    if isinstance(size, int):
        return len(range(*slice(start, end, step).indices(size)))
    if end is None:
        if start == 0 and step == 1:
            return size
        if start < 0:
            return -(start // step)                      # ceil(-start / step)
        return None
    if (start >= 0) == (end >= 0):
        return max(0, -((start - end) // step))          # ceil((end - start) / step)
    return None


@op("slice", Slice,
    cases=[Case({"dim": 1, "start": 1, "end": 4, "step": 2}, ((2, 5),)),
           Case({"dim": -1, "start": -3}, ((2, 5),))])
def slice_(a: Slice, x: TensorType) -> Inferred:
    """x[start:end:step] along `dim`, with Python slicing semantics (negative indices count from the end).

    On a symbolic dimension the result must have a known size: `start: 0, end: 1` gives 1 (assuming the
    dimension is at least that long), `start: -3` gives 3; `start: 1` alone would give 'T-1', an error.
    """
    if x.rank == 0:
        raise ShapeError("slice needs an input with at least one dimension, got a scalar")
    d = norm_dim(a.dim, x.rank)
    if a.step < 1:
        raise ShapeError(f"slice: the step must be positive, got {a.step}", hint="as in PyTorch, no reversed slices",
                         attr="step")
    n = slice_len(x.shape[d], a.start, a.end, a.step)
    span = f"[{a.start}:{'' if a.end is None else a.end}{'' if a.step == 1 else f':{a.step}'}]"
    if n is None:
        raise ShapeError(f"slice: taking {span} of dimension {a.dim} (symbolic size '{x.shape[d]}', shape {x}) "
                         f"gives a size that depends on '{x.shape[d]}'", attr="start" if a.start else "end",
                         hint="use indices of the same sign (e.g. start: 0, end: 5, or start: -5) so the "
                              "result has a fixed size")
    if n == 0:
        raise ShapeError(f"slice: taking {span} of dimension {a.dim} (shape {x}) gives nothing", attr="start")
    return Inferred([TensorType(x.shape[:d] + (n,) + x.shape[d + 1:], x.dtype)])


@lowering("slice")
def slice__onnx(b: Builder, node: Node, x: list, p: list) -> str:
    a = node.attrs
    end = INT64_MAX if a.end is None else a.end
    return b.op("Slice", [x[0], b.ints([a.start], hint="starts"), b.ints([end], hint="ends"),
                          b.ints([_norm(a.dim, b.ins[0].rank)], hint="axes"), b.ints([a.step], hint="steps")])


@reference("slice")
def _slice(c, x):
    idx = [slice(None)] * x.dim()
    idx[c.a.dim] = slice(c.a.start, c.a.end, c.a.step)
    return x[tuple(idx)]


class Select(Attrs):
    dim: int
    index: int


@op("select", Select,
    cases=[Case({"dim": 1, "index": -1}, ((2, 3, 4),))])
def select(a: Select, x: TensorType) -> Inferred:
    """x[..., index, ...] along `dim`, removing that dimension (as torch.select; negative counts from the end)."""
    if x.rank == 0:
        raise ShapeError("select needs an input with at least one dimension, got a scalar")
    d = norm_dim(a.dim, x.rank)
    size = x.shape[d]
    if isinstance(size, int) and not -size <= a.index < size:
        raise ShapeError(f"select: index {a.index} is out of range for dimension {a.dim} of size {size} "
                         f"(shape {x}); allowed {-size}..{size - 1}", attr="index")
    return Inferred([TensorType(x.shape[:d] + x.shape[d + 1:], x.dtype)])


@lowering("select")
def select_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    index = b.const(np.asarray(node.attrs.index, dtype=np.int64), hint="index")
    return b.op("Gather", [x[0], index], axis=_norm(node.attrs.dim, b.ins[0].rank))


@reference("select")
def _select(c, x):
    return x.select(c.a.dim, c.a.index)


# --------------------------------------------------------------------------- reductions

class Reduce(Attrs):
    dim: int | list[int] | None = None
    keepdim: bool = False


def reduce_axes(a: Reduce, x: TensorType) -> list[int]:
    if a.dim is None:
        return list(range(x.rank))
    if x.rank == 0:
        raise ShapeError("cannot reduce over a dimension of a scalar", attr="dim")
    if isinstance(a.dim, list) and not a.dim:
        raise ShapeError("dim is an empty list; leave dim out to reduce over everything", attr="dim")
    return _dims(a.dim, x.rank)


def _reduce(a: Reduce, x: TensorType, dtype: str) -> Inferred:
    axes = reduce_axes(a, x)
    if a.keepdim:
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return Inferred([TensorType(shape, dtype)], macs=per_sample(x))


@op("sum", Reduce, primary="dim",
    cases=[Case({}, ((2, 3),)), Case({"dim": [0, 2], "keepdim": True}, ((2, 3, 4),))])
def reduce_sum(a: Reduce, x: TensorType) -> Inferred:
    """Sum over `dim` (an int or a list; none = everything, giving a scalar), keeping it as size 1 if keepdim.

    A bool input gives int64 (the count of True values), as torch.sum."""
    return _reduce(a, x, "int64" if x.dtype == "bool" else x.dtype)      # counts the True values


@lowering("sum")
def reduce_sum_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    v = _cast(b, x[0], b.ins[0].dtype, node.out.dtype)           # bool counts as int64
    return _reduce_onnx(b, node, v, "ReduceSum", True)                # axes an input since opset 13


@reference("sum")
def _sum(c, x):
    return torch.sum(x, dim=_axes(c, x), keepdim=c.a.keepdim)


@op("mean", Reduce, primary="dim",
    cases=[Case({}, ((2, 3),)), Case({"dim": [0, 2], "keepdim": True}, ((2, 3, 4),))])
def reduce_mean(a: Reduce, x: TensorType) -> Inferred:
    """Mean over `dim` (an int or a list; none = everything, giving a scalar), keeping it as size 1 if keepdim."""
    return _reduce(a, x, x.dtype if is_float(x.dtype) else "float32")


@lowering("mean")
def reduce_mean_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    v = _cast(b, x[0], b.ins[0].dtype, node.out.dtype)
    return _reduce_onnx(b, node, v, "ReduceMean", b.opset >= 18)      # axes an input from opset 18


@reference("mean")
def _mean(c, x):
    return torch.mean(to_float(c, x), dim=_axes(c, x), keepdim=c.a.keepdim)


@op("max", Reduce, primary="dim",
    cases=[Case({}, ((2, 3),)), Case({"dim": [0, 2], "keepdim": True}, ((2, 3, 4),))])
def reduce_max(a: Reduce, x: TensorType) -> Inferred:
    """Maximum over `dim` (values only, as torch.amax: tied maxima share the gradient equally)."""
    return _reduce(a, x, x.dtype)


@lowering("max")
def reduce_max_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    if b.ins[0].dtype == "bool":            # ReduceMax takes bool only from opset 20: max of 0/1 values
        v = _reduce_onnx(b, node, b.op("Cast", [x[0]], to=DTYPES["int64"]), "ReduceMax", b.opset >= 18)
        return b.op("Cast", [v], to=DTYPES["bool"])
    return _reduce_onnx(b, node, x[0], "ReduceMax", b.opset >= 18)


@reference("max")
def _max(c, x):
    return torch.amax(x, dim=_axes(c, x), keepdim=c.a.keepdim)


# --------------------------------------------------------------------------- expand, one_hot

class Expand(Attrs):
    shape: list[int | str]


@op("expand", Expand, primary="shape",
    cases=[Case({"shape": [2, 3, 4]}, ((2, 1, 4),))])
def expand(a: Expand, x: TensorType) -> Inferred:
    """Broadcasts to `shape` (as torch.expand): -1 keeps a dim, size-1 dims grow, new dims are added in front.

    A symbol such as N is bound at run time, e.g. `shape: [N, -1, -1]` repeats a `1×1×D` class token
    over the batch.
    """
    t = list(a.shape)
    for d in t:
        if isinstance(d, str):
            _symbol(d, "expand: the shape's", "shape")
        elif d < 1 and d != -1:
            raise ShapeError(f"expand: the shape {t} has the size {d}; sizes are positive, or -1 to keep a "
                             "dimension", attr="shape")
    if len(t) < x.rank:
        raise ShapeError(f"expand: the shape {t} has {len(t)} dimensions, fewer than the input's {x.rank} "
                         f"(shape {x})", attr="shape")
    lead = len(t) - x.rank
    out: list[Dim] = []
    for i, d in enumerate(t):
        if i < lead:
            if d == -1:
                raise ShapeError(f"expand to {t}: the -1 at position {i} has no input dimension to keep "
                                 f"(input shape {x})", hint="new leading dimensions need a size", attr="shape")
            out.append(d)
            continue
        s = x.shape[i - lead]
        if d == -1 or d == s:
            out.append(s)
        elif s == 1:
            out.append(d)
        else:
            raise ShapeError(f"expand to {t}: dimension {i - lead} of the input (shape {x}) has size {s}, which "
                             f"cannot become {d}; only size-1 dimensions can be expanded",
                             hint="use -1 to keep a dimension", attr="shape")
    return Inferred([TensorType(tuple(out), x.dtype)])


@lowering("expand")
def expand_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    t, out = b.ins[0], node.out.shape
    lead = len(out) - t.rank
    entries: list[int | str] = []
    for i, d in enumerate(out):
        if i >= lead and t.shape[i - lead] == d:
            entries.append(1)             # Expand broadcasts: 1 keeps the input's size
        else:
            entries.append(d)             # a number, or a symbol read off a graph input
    return b.op("Expand", [x[0], _pieces(b, entries)])


@reference("expand")
def _expand(c, x):
    return x.expand(*_bind(c.a.shape, c.symbols))


class OneHot(Attrs):
    num_classes: int


@op("one_hot", OneHot, primary="num_classes",
    cases=[Case({"num_classes": 4}, (In((2, 3), "int64", 0, 4),))],
    no_grad="its only input is an int64 index array: nothing to differentiate")
def one_hot(a: OneHot, x: TensorType) -> Inferred:
    """One-hot encoding of int64 class indices: adds a last dimension of size num_classes (float32 output)."""
    if a.num_classes < 1:
        raise ShapeError(f"num_classes must be positive, got {a.num_classes}", attr="num_classes")
    if x.dtype not in ("int64", "int32"):
        raise ShapeError(f"one_hot expects integer class indices, but its input is {x.dtype} (shape {x})",
                         hint="declare the input with `dtype: int64`")
    return Inferred([TensorType(x.shape + (a.num_classes,), "float32")])


@lowering("one_hot")
def one_hot_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    depth = b.ints([node.attrs.num_classes], hint="depth")
    values = b.const(np.asarray([0.0, 1.0], dtype=np.float32), hint="off_on")
    if b.ins[0].rank == 0:                  # OneHot needs indices of rank >= 1
        zero = b.ints([0])
        return b.op("Squeeze", [b.op("OneHot", [b.op("Unsqueeze", [x[0], zero]), depth, values], axis=-1), zero])
    return b.op("OneHot", [x[0], depth, values], axis=-1)


@reference("one_hot")
def _one_hot(c, x):
    return F.one_hot(x.long(), c.a.num_classes).to(c.fdtype)


# --------------------------------------------------------------------------- param, constant

class Param(Attrs):
    shape: list[int]


@op("param", Param, inputs=(), primary="shape",
    cases=[Case({"shape": [2, 3]}, ())])
def param(a: Param) -> Inferred:
    """A learned tensor of `shape` (e.g. a class token), initialised to zeros unless `init` says otherwise.

    Its state_dict name is the node's name.
    """
    if any(d < 1 for d in a.shape):
        raise ShapeError(f"param: the shape {a.shape} must have positive sizes", attr="shape")
    shape = tuple(a.shape)
    return Inferred([TensorType(shape)], [ParamSpec("", shape, Init.of("zeros"))])


@lowering("param")
def param_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return p[0]


@reference("param")
def _param(c, p):
    return p


class Constant(Attrs):
    value: Number | list


def constant_shape(value: object, what: str = "value") -> tuple[int, ...]:
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        raise ShapeError(f"constant: the {what} {value!r} is not a number or a list of numbers", attr="value")
    if not isinstance(value, list):
        return ()
    if not value:
        raise ShapeError(f"constant: the {what} is an empty list", attr="value")
    inner = [constant_shape(v, what) for v in value]
    if any(s != inner[0] for s in inner):
        raise ShapeError(f"constant: the value is ragged: its rows have shapes {sorted(set(map(fmt, inner)))}",
                         hint="every row of a nested list needs the same length", attr="value")
    return (len(value),) + inner[0]


@op("constant", Constant, inputs=(),
    cases=[Case({"value": [[1.0, -2.0], [0.5, 3.0]]}, ())],
    no_grad="no inputs and no parameters: nothing to differentiate")
def constant(a: Constant) -> Inferred:
    """A fixed float32 tensor given by a number or a nested list; not trained, not in the state_dict."""
    return Inferred([TensorType(constant_shape(a.value))])


@lowering("constant")
def constant_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.const(np.asarray(node.attrs.value, dtype=np.float32), hint="constant")


@reference("constant")
def _constant(c):
    return torch.tensor(c.a.value, dtype=c.fdtype)


# ---------------------------------------------------------------- helpers of the ONNX lowerings

INT64_MAX = 2**63 - 1


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


def _arith_onnx(op_type: str, b: Builder, node: Node, x: list) -> str:
    want = node.out.dtype
    if want == "bool":                      # bool + bool is or, bool * bool is and (the shape rule allows no other)
        return b.op({"Add": "Or", "Mul": "And"}[op_type], [x[0], x[1]])
    lhs = _cast(b, x[0], b.ins[0].dtype, want)
    if len(x) > 1 and x[1] is not None:
        rhs = _cast(b, x[1], b.ins[1].dtype, want)
    else:
        rhs = b.const(np.asarray(node.attrs.value, dtype=want), hint="value")
    return b.op(op_type, [lhs, rhs])


def _reduce_onnx(b: Builder, node: Node, x: str, op_type: str, axes_input: bool) -> str:
    t = b.ins[0]
    axes = None if node.attrs.dim is None else reduce_axes(node.attrs, t)
    keep = int(node.attrs.keepdim)
    if axes_input:
        return b.op(op_type, [x, None if axes is None else b.ints(axes, hint="axes")], keepdims=keep)
    return b.op(op_type, [x], axes=axes, keepdims=keep)


# ---------------------------------------------------------------- helpers of the PyTorch references

def _bind(shape, symbols: dict[str, int]) -> list[int]:
    return [symbols[d] if isinstance(d, str) else d for d in shape]


def _ndims(dim, rank: int) -> list[int]:
    dims = [dim] if isinstance(dim, int) else list(dim)
    return sorted(d % rank if rank else 0 for d in dims)


def to_float(c, x):
    """x itself if it is a float tensor, else x in the reference's float dtype."""
    return x if x.is_floating_point() else x.to(c.fdtype)


def _axes(c, x) -> tuple[int, ...]:
    return tuple(range(x.dim())) if c.a.dim is None else tuple(_ndims(c.a.dim, x.dim()))


# =========================================================================== comparisons, where, cast, arange,
# pad, roll (issue 12 item 3): each op's lowering and reference follow its rule

def promoted(dtypes: list[str], value: object = None) -> str:
    """The dtype two operands (or one and a scalar `value`) meet in, as PyTorch promotes them: a float
    tensor wins, a float value lifts integers and bools to float32, an int64 tensor or an integer value
    lifts bools to int64; two bool tensors stay bool."""
    floats = [d for d in dtypes if is_float(d)]
    if floats:
        return "float64" if "float64" in floats else floats[0]
    if isinstance(value, float):
        return "float32"
    if "int64" in dtypes or (value is not None and not isinstance(value, bool)):
        return "int64"
    return "bool"


def _operand_shapes(name: str, shapes: list[tuple[Dim, ...]], what: str = "inputs") -> tuple[Dim, ...]:
    out = shapes[0]
    for s in shapes[1:]:
        try:
            out = broadcast(out, s)
        except ShapeError as e:
            raise ShapeError(f"{name}: {what} of {e.message}",
                             hint="broadcasting aligns shapes from the right; each pair of sizes must be "
                                  "equal or one of them 1") from None
    return out


def _value_or_input(name: str, value: object, y: TensorType | None, example: str) -> None:
    if y is None and value is None:
        raise ShapeError(f"{name} needs a second input or a `value`, but got neither",
                         hint=f"write `in: [a, b]`, or `{{op: {name}, value: {example}}}` to compare with a "
                              "number", attr="value")
    if y is not None and value is not None:
        raise ShapeError(f"{name} got both a second input and `value: {value}`; give only one",
                         hint="drop `value`, or drop the second input", attr="value")


# --------------------------------------------------------------------------- comparisons

class Compare(Attrs):
    value: bool | int | float | None = None


COMPARISONS = {"eq": ("==", "Equal"), "ne": ("!=", "Equal"), "lt": ("<", "Less"), "le": ("<=", "LessOrEqual"),
               "gt": (">", "Greater"), "ge": (">=", "GreaterOrEqual")}


def _compare(name: str, a: Compare, x: TensorType, y: TensorType | None) -> Inferred:
    _value_or_input(name, a.value, y, "0")
    shape = x.shape if y is None else _operand_shapes(name, [x.shape, y.shape])
    out = TensorType(shape, "bool")
    return Inferred([out], macs=per_sample(out))


def _compare_cases() -> list[Case]:
    ints = In((2, 3), "int64", 0, 3)
    return [Case({}, (In((2, 3), integer=True, low=-2, high=2), In((3,), integer=True, low=-2, high=2))),
            Case({}, ((2, 1, 4), (3, 1))),
            Case({"value": 1}, (ints, None)),
            Case({"value": 0.25}, ((2, 3), None)),
            Case({}, (ints, In((2, 3), "float32", 0, 3, integer=True)))]


_NO_GRAD_BOOL = "its output is bool: no gradient flows through it (as in PyTorch)"


@op("eq", Compare, inputs=("a", "b"), optional=("b",), primary="value", cases=_compare_cases(),
    no_grad=_NO_GRAD_BOOL)
def eq(a: Compare, x: TensorType, y: TensorType | None = None) -> Inferred:
    """a == b elementwise with NumPy broadcasting, or a == value: a bool tensor, e.g. the padding mask of
    `{op: eq, in: tokens, value: 0}` for multi_head_attention's key_padding_mask. No gradient.

    Operands of different dtypes meet as PyTorch promotes them (a float with anything as float, an int64
    tensor with a float value as float), here and in ne, lt, le, gt, ge."""
    return _compare("eq", a, x, y)


@op("ne", Compare, inputs=("a", "b"), optional=("b",), primary="value", cases=_compare_cases(),
    no_grad=_NO_GRAD_BOOL)
def ne(a: Compare, x: TensorType, y: TensorType | None = None) -> Inferred:
    """a != b elementwise with NumPy broadcasting, or a != value: a bool tensor. No gradient."""
    return _compare("ne", a, x, y)


@op("lt", Compare, inputs=("a", "b"), optional=("b",), primary="value", cases=_compare_cases(),
    no_grad=_NO_GRAD_BOOL)
def lt(a: Compare, x: TensorType, y: TensorType | None = None) -> Inferred:
    """a < b elementwise with NumPy broadcasting, or a < value: a bool tensor. No gradient."""
    return _compare("lt", a, x, y)


@op("le", Compare, inputs=("a", "b"), optional=("b",), primary="value", cases=_compare_cases(),
    no_grad=_NO_GRAD_BOOL)
def le(a: Compare, x: TensorType, y: TensorType | None = None) -> Inferred:
    """a <= b elementwise with NumPy broadcasting, or a <= value: a bool tensor. No gradient."""
    return _compare("le", a, x, y)


@op("gt", Compare, inputs=("a", "b"), optional=("b",), primary="value", cases=_compare_cases(),
    no_grad=_NO_GRAD_BOOL)
def gt(a: Compare, x: TensorType, y: TensorType | None = None) -> Inferred:
    """a > b elementwise with NumPy broadcasting, or a > value: a bool tensor. No gradient."""
    return _compare("gt", a, x, y)


@op("ge", Compare, inputs=("a", "b"), optional=("b",), primary="value", cases=_compare_cases(),
    no_grad=_NO_GRAD_BOOL)
def ge(a: Compare, x: TensorType, y: TensorType | None = None) -> Inferred:
    """a >= b elementwise with NumPy broadcasting, or a >= value: a bool tensor. No gradient."""
    return _compare("ge", a, x, y)


@lowering(*COMPARISONS)
def compare_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    a = node.attrs
    ins = [t for t in b.ins if t is not None]
    common = promoted([t.dtype for t in ins], a.value)
    ordering = node.op not in ("eq", "ne")
    want = "int64" if ordering and common == "bool" else common     # Less & co. take no bool
    lhs = _cast(b, x[0], ins[0].dtype, want)
    if len(x) > 1 and x[1] is not None:
        rhs = _cast(b, x[1], ins[1].dtype, want)
    else:
        rhs = b.const(np.asarray(a.value, dtype=want), hint="value")
    out = b.op(COMPARISONS[node.op][1], [lhs, rhs])
    return b.op("Not", [out]) if node.op == "ne" else out


@reference(*COMPARISONS)
def _compare_torch(c, x, y=None):
    return getattr(torch, c.node.op)(x, c.a.value if y is None else y)


# --------------------------------------------------------------------------- where

class Where(Attrs):
    value: bool | int | float | None = None


@op("where", Where, inputs=("condition", "x", "y"), optional=("y",),
    cases=[Case({}, (In((2, 3), "bool"), (2, 3), (2, 3))),
           Case({}, (In((2, 1, 3), "bool"), (4, 1), (3,))),
           Case({"value": -1.5}, (In((2, 3), "bool"), (2, 3), None)),
           Case({}, (In((2, 3), "bool"), In((2, 3), "int64", -3, 3), (2, 3)))])
def where(a: Where, cond: TensorType, x: TensorType, y: TensorType | None = None) -> Inferred:
    """x where condition is True, else y (or the scalar `value`: masked_fill), with NumPy broadcasting of
    all three, as torch.where. condition must be bool; x and y meet in a common dtype as PyTorch promotes
    them. Gradients flow to x where the condition holds and to y elsewhere."""
    if cond.dtype != "bool":
        raise ShapeError(f"where needs a bool condition (its first input), but it is {cond.dtype} (shape {cond})",
                         hint="build one with a comparison, e.g. `{op: gt, in: scores, value: 0}`, or cast it: "
                              "`{op: cast, dtype: bool}`")
    if y is None and a.value is None:
        raise ShapeError("where needs a third input (the values where the condition is False) or a `value`",
                         hint="write `in: [condition, x, y]`, or `{op: where, in: [mask, x], value: 0.0}`",
                         attr="value")
    if y is not None and a.value is not None:
        raise ShapeError(f"where got both a third input and `value: {a.value}`; give only one",
                         hint="drop `value`, or drop the third input", attr="value")
    shapes = [cond.shape, x.shape] + ([] if y is None else [y.shape])
    dts = [x.dtype] + ([] if y is None else [y.dtype])
    out = TensorType(_operand_shapes("where", shapes, "condition, x and y"), promoted(dts, a.value))
    return Inferred([out], macs=per_sample(out))


@lowering("where")
def where_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    want = "int64" if node.out.dtype == "bool" else node.out.dtype      # onnxruntime's Where takes no bool
    lhs = _cast(b, x[1], b.ins[1].dtype, want)
    if len(x) > 2 and x[2] is not None:
        rhs = _cast(b, x[2], b.ins[2].dtype, want)
    else:
        rhs = b.const(np.asarray(node.attrs.value, dtype=want), hint="value")
    return _cast(b, b.op("Where", [x[0], lhs, rhs]), want, node.out.dtype)


@reference("where")
def _where_torch(c, cond, x, y=None):
    return torch.where(cond, x, c.a.value if y is None else y)


# --------------------------------------------------------------------------- cast

class CastTo(Attrs):
    dtype: Literal["float32", "int64", "bool"]


@op("cast", CastTo, primary="dtype",
    cases=[Case({"dtype": "float32"}, ((2, 3),)),
           Case({"dtype": "int64"}, (In((2, 3), low=-3.0, high=3.0),), grad=False),
           Case({"dtype": "bool"}, (In((2, 3), "int64", -1, 2),), grad=False),
           Case({"dtype": "float32"}, (In((2, 3), "bool"),), grad=False)])
def cast(a: CastTo, x: TensorType) -> Inferred:
    """x converted to `dtype` (float32, int64 or bool), as torch.Tensor.to: float to int64 truncates toward
    zero, anything to bool is `!= 0`. The gradient flows through a float-to-float cast only (a float input
    cast to float32 is unchanged)."""
    dtype = x.dtype if a.dtype == "float32" and is_float(x.dtype) else a.dtype
    return Inferred([TensorType(x.shape, dtype)])


@lowering("cast")
def cast_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Cast", [x[0]], to=DTYPES[node.out.dtype]) if node.out.dtype != b.ins[0].dtype else \
        b.op("Identity", [x[0]])


@reference("cast")
def _cast_torch(c, x):
    if c.a.dtype == "float32":
        return x if x.is_floating_point() else x.to(c.fdtype)
    return x.to(getattr(torch, c.a.dtype))


# --------------------------------------------------------------------------- arange

class Arange(Attrs):
    end: int | float
    start: int | float = 0
    step: int | float = 1
    dtype: Literal["float32", "int64"] | None = None


def arange_size(start: float, end: float, step: float) -> int:
    """The length of arange(start, end, step), computed as PyTorch does (in double precision)."""
    return max(math.ceil((float(end) - float(start)) / float(step)), 0)


def arange_dtype(a: Arange) -> str:
    ints = all(isinstance(v, int) for v in (a.start, a.end, a.step))
    return a.dtype or ("int64" if ints else "float32")


@op("arange", Arange, inputs=(), primary="end",
    cases=[Case({"end": 5}, ()), Case({"start": -1.0, "end": 1.0, "step": 0.25}, ()),
           Case({"start": 10, "end": 1, "step": -3, "dtype": "float32"}, ())],
    no_grad="no inputs and no parameters: nothing to differentiate")
def arange(a: Arange) -> Inferred:
    """The values start, start + step, ... up to `end` (excluded), as torch.arange: int64 when start, end and
    step are all integers, else float32 (or the given dtype). Its length comes from the attributes, so it is a
    fixed size (e.g. the positions 0..T-1 of a sequence of known length T)."""
    if a.step == 0:
        raise ShapeError("arange: step must not be 0", attr="step")
    for k in ("start", "end", "step"):
        v = getattr(a, k)
        if isinstance(v, float) and not math.isfinite(v):
            raise ShapeError(f"arange: {k} must be a finite number, got {v}", attr=k)
    dtype = arange_dtype(a)
    if dtype == "int64" and not all(isinstance(v, int) for v in (a.start, a.end, a.step)):
        raise ShapeError(f"arange: dtype int64 needs integer start, end and step, got start {a.start}, end {a.end}, "
                         f"step {a.step}", hint="drop `dtype` (fractional values give float32), or use integers",
                         attr="dtype")
    n = arange_size(a.start, a.end, a.step)
    if n == 0:
        toward = "up" if a.step > 0 else "down"
        raise ShapeError(f"arange from {a.start} to {a.end} with step {a.step} is empty (a step of {a.step} counts "
                         f"{toward}, away from the end)",
                         hint="swap start and end, or change the sign of step", attr="step")
    if n > limits.ARANGE:
        raise ShapeError(f"arange from {a.start} to {a.end} with step {a.step} has {n:,} values, more than the "
                         f"limit of {limits.ARANGE:,}", attr="end")
    return Inferred([TensorType((n,), dtype)])


def arange_values(a: Arange, np_module) -> object:
    """The values (as the kernel and the ONNX initialiser hold them): start + step·i in double precision,
    then rounded to the dtype, as PyTorch computes them."""
    n = arange_size(a.start, a.end, a.step)
    if arange_dtype(a) == "int64":
        return a.start + a.step * np_module.arange(n, dtype=np_module.int64)
    return (float(a.start) + float(a.step) * np_module.arange(n, dtype=np_module.float64)).astype(np_module.float32)


@lowering("arange")
def arange_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.const(arange_values(node.attrs, np), hint="arange")     # exact: no float32 length question


@reference("arange")
def _arange_torch(c):
    a = c.a
    dtype = torch.int64 if arange_dtype(a) == "int64" else torch.float32
    out = torch.arange(a.start, a.end, a.step, dtype=dtype)
    return out if dtype == torch.int64 else out.to(c.fdtype)


# --------------------------------------------------------------------------- pad

def _fixed(d: Dim, what: str, attr: str, hint: str) -> int:
    """A dimension that must be a number, with a hint that fits the op (shapes.concrete's is generic)."""
    if not isinstance(d, int):
        raise ShapeError(f"{what} must be a concrete size, but it is the symbol '{d}'", hint=hint, attr=attr)
    return d


class Pad(Attrs):
    pad: list[int]
    mode: Literal["constant", "reflect", "replicate"] = "constant"
    value: bool | int | float | None = None


def pad_pairs(pad: list[int], rank: int) -> list[tuple[int, int]]:
    """torch.nn.functional.pad's list (last dimension first) as (before, after) per dimension, first to last."""
    pairs = [(0, 0)] * (rank - len(pad) // 2) + [(pad[2 * k], pad[2 * k + 1]) for k in range(len(pad) // 2)][::-1]
    return pairs


def _check_pad_list(a: Pad, x: TensorType) -> None:
    pad = a.pad
    if not pad or len(pad) % 2:
        raise ShapeError(f"pad: the list {pad} must hold pairs (before, after), the last dimension first, as "
                         "torch.nn.functional.pad", hint="e.g. `pad: [1, 1]` pads the last dimension by 1 on "
                         "each side, `pad: [1, 1, 2, 2]` also the one before it by 2", attr="pad")
    if any(p < 0 for p in pad):
        raise ShapeError(f"pad: the list {pad} has a negative size; pad only adds",
                         hint="to crop, use slice (`{op: slice, dim: -1, start: 1, end: -1}`)", attr="pad")
    k = len(pad) // 2
    if k > x.rank:
        raise ShapeError(f"pad: the list {pad} pads {k} dimensions, but the input has only {x.rank} (shape {x})",
                         attr="pad")
    if a.mode != "constant" and (k > 3 or x.rank not in (k + 1, k + 2)):
        raise ShapeError(f"pad: mode {a.mode} pads the last 1, 2 or 3 dimensions of a tensor with one or two "
                         f"leading (batch, channel) dimensions, as PyTorch; {k} padded dimension(s) of a rank-"
                         f"{x.rank} input (shape {x}) is not such a case",
                         hint="for a rank-R input give R-1 or R-2 pairs (e.g. [N, C, H, W]: pad: [l, r, t, b]), "
                              "or use mode constant", attr="mode")


@op("pad", Pad, primary="pad", torch="F.pad",
    cases=[Case({"pad": [1, 2]}, ((2, 3, 4),)),
           Case({"pad": [2, 1, 1, 0], "mode": "reflect"}, ((2, 2, 3, 4),)),
           Case({"pad": [1, 3, 2, 0], "mode": "replicate"}, ((2, 3, 4),)),
           Case({"pad": [0, 1, 1, 1], "value": -2.5}, ((2, 3, 4),)),
           Case({"pad": [1, 1], "value": 7}, (In((2, 3), "int64", 0, 5),), grad=False)])
def pad(a: Pad, x: TensorType) -> Inferred:
    """Pads as torch.nn.functional.pad: `pad` lists (before, after) sizes, the last dimension first
    ([left, right, top, bottom] for an image). mode constant fills with `value` (default 0), reflect mirrors
    without repeating the edge (each size below the dimension's), replicate repeats the edge; reflect and
    replicate pad the last 1-3 dimensions of a tensor with one or two leading ones."""
    _check_pad_list(a, x)
    if a.value is not None and a.mode != "constant":
        raise ShapeError(f"pad: mode {a.mode} takes no `value` (only mode constant fills with one)",
                         hint="drop `value`, or use mode constant", attr="value")
    if a.value is not None and x.dtype == "int64" and not isinstance(a.value, int):
        raise ShapeError(f"pad: value {a.value} does not fit the int64 input (shape {x})",
                         hint="use an integer value, or cast the input to float32 first", attr="value")
    shape = list(x.shape)
    for d, (before, after) in enumerate(pad_pairs(a.pad, x.rank)):
        if not before and not after:
            continue
        size = _fixed(x.shape[d], f"pad: dimension {d} of the input (shape {x}), which it pads,", "pad",
                      "pad only dimensions of a fixed size (the last ones: the batch N cannot grow); give that "
                      "dimension a number in `inputs` if it has one")
        if a.mode == "reflect" and max(before, after) >= size:
            raise ShapeError(f"pad: mode reflect pads dimension {d} (size {size}) by {max(before, after)}; "
                             "reflection needs each size below the dimension's", attr="pad",
                             hint="use smaller sizes, or mode replicate")
        shape[d] = size + before + after
    out = TensorType(tuple(shape), x.dtype)
    return Inferred([out])


@lowering("pad")
def pad_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    a, t = node.attrs, b.ins[0]
    pairs = pad_pairs(a.pad, t.rank)
    pads = b.ints([s for s, _ in pairs] + [e for _, e in pairs], hint="pads")
    mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[a.mode]
    if a.mode != "constant":
        return b.op("Pad", [x[0], pads], mode=mode)
    fill = b.const(np.asarray(a.value or 0, dtype=t.dtype), hint="value")
    return b.op("Pad", [x[0], pads, fill], mode=mode)


# --------------------------------------------------------------------------- roll

class Roll(Attrs):
    shifts: int | list[int]
    dims: int | list[int] | None = None


def roll_pairs(a: Roll, rank: int) -> list[tuple[int, int]]:
    """(shift, dim) pairs, dims normalised (no dims: one pair for the flattened tensor, dim None)."""
    shifts = [a.shifts] if isinstance(a.shifts, int) else list(a.shifts)
    if a.dims is None:
        return [(shifts[0], None)]
    dims = [a.dims] if isinstance(a.dims, int) else list(a.dims)
    return [(s, norm_dim(d, rank, "dims")) for s, d in zip(shifts, dims)]


@op("roll", Roll, primary="shifts", torch="torch.roll",
    cases=[Case({"shifts": 1, "dims": 1}, ((2, 5),)),
           Case({"shifts": [-2, 3], "dims": [2, -2]}, ((2, 3, 4),)),
           Case({"shifts": [7, -1], "dims": [1, 1]}, ((2, 3),)),
           Case({"shifts": -4}, ((2, 3),))])
def roll(a: Roll, x: TensorType) -> Inferred:
    """Rolls as torch.roll: elements shifted by `shifts` along `dims` wrap around to the other end (negative
    shifts roll toward the start); several dims take a list of shifts each. Without dims the flattened tensor
    is rolled and the shape restored."""
    if x.rank == 0:
        raise ShapeError("roll needs an input with at least one dimension, got a scalar")
    shifts = [a.shifts] if isinstance(a.shifts, int) else list(a.shifts)
    if not shifts:
        raise ShapeError("roll: shifts is an empty list", hint="give a shift, e.g. `shifts: 1`", attr="shifts")
    if a.dims is None:
        if len(shifts) != 1:
            raise ShapeError(f"roll: {len(shifts)} shifts but no dims; without dims the flattened tensor takes "
                             "one shift", hint="name a dimension per shift, e.g. `dims: [1, 2]`", attr="dims")
        for d, s in enumerate(x.shape):
            _fixed(s, f"roll without dims flattens the input (shape {x}), so dimension {d}", "dims",
                   "name the dimensions to roll, e.g. `dims: -1`")
    else:
        dims = [a.dims] if isinstance(a.dims, int) else list(a.dims)
        if len(dims) != len(shifts):
            raise ShapeError(f"roll: {len(shifts)} shift(s) {shifts} but {len(dims)} dim(s) {dims}; give one shift "
                             "per dimension", attr="dims")
        for _, d in roll_pairs(a, x.rank):
            _fixed(x.shape[d], f"roll: dimension {d} of the input (shape {x}), which it rolls,", "dims",
                   "roll dimensions of a fixed size (not the batch N); give that dimension a number in `inputs` "
                   "if it has one")
    return Inferred([x])


@lowering("roll")
def roll_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    t = b.ins[0]
    value = x[0]
    pairs = roll_pairs(node.attrs, t.rank)
    if pairs[0][1] is None:
        total = math.prod(t.shape)
        flat = b.op("Reshape", [value, b.ints([total])])
        rolled = _roll_axis(b, flat, pairs[0][0], 0, total)
        return b.op("Reshape", [rolled, b.ints(list(t.shape))])
    for shift, d in pairs:
        value = _roll_axis(b, value, shift, d, t.shape[d])
    return value if value != x[0] else b.op("Identity", [value])


def _roll_axis(b: Builder, value: str, shift: int, axis: int, size: int) -> str:
    """value rolled by `shift` along `axis` (of `size`): its last `shift` elements, then the rest."""
    s = shift % size
    if s == 0:
        return value
    axes = b.ints([axis], hint="axes")
    tail = b.op("Slice", [value, b.ints([size - s], hint="starts"), b.ints([size], hint="ends"), axes])
    head = b.op("Slice", [value, b.ints([0], hint="starts"), b.ints([size - s], hint="ends"), axes])
    return b.op("Concat", [tail, head], axis=axis)

# --------------------------------------------------------------------------- buffers, gather, index_select

class Buffer(Attrs):
    value: Number | list
    dtype: Literal["float32", "int64", "bool"] = "float32"
    shape: list[int] | None = None
    persistent: bool = True


def _buffer_items(value: object, dtype: str) -> tuple[tuple[int, ...], list]:
    """(shape, flat items) of a buffer's value, each item checked against the dtype."""
    shape: list[int] = []
    v = value
    while isinstance(v, list) and v:                     # the shape along the first entries
        shape.append(len(v))
        v = v[0]
    flat: list = []
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:                                         # iterative: values may be large, nesting deep
        v, depth = stack.pop()
        if isinstance(v, list):
            if not v:
                raise ShapeError("buffer: the value holds an empty list", attr="value")
            if depth >= len(shape) or len(v) != shape[depth]:
                raise ShapeError(f"buffer: the value is ragged: a list of {len(v)} stands where "
                                 + (f"{shape[depth]} items are" if depth < len(shape) else "a number is")
                                 + " expected", hint="every row of a nested list needs the same length", attr="value")
            stack.extend((u, depth + 1) for u in reversed(v))
        elif depth != len(shape):
            raise ShapeError("buffer: the value is ragged: a number stands where a list is expected",
                             hint="every row of a nested list needs the same length", attr="value")
        else:
            flat.append(_buffer_item(v, dtype))
    return tuple(shape), flat


def _buffer_item(v: object, dtype: str) -> Number:
    if dtype == "bool":
        if v in (0, 1) and not isinstance(v, float):
            return bool(v)
        raise ShapeError(f"buffer: a bool buffer holds true/false (or 0/1), got {v!r}", attr="value")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ShapeError(f"buffer: the value holds {v!r}, which is not a number", attr="value")
    if dtype == "int64" and not isinstance(v, int):
        raise ShapeError(f"buffer: an int64 buffer holds integers, got {v!r}", attr="value",
                         hint="use int(...) or // in the expression, or `dtype: float32`")
    return v


def buffer_shape(a: Buffer) -> tuple[tuple[int, ...], list]:
    """The buffer's shape (its value's, or `shape` with at most one -1) and its items, flat."""
    shape, flat = _buffer_items(a.value, a.dtype)
    if a.shape is None:
        return shape, flat
    if any(d < 1 and d != -1 for d in a.shape) or a.shape.count(-1) > 1:
        raise ShapeError(f"buffer: the shape {a.shape} needs positive sizes (and at most one -1)", attr="shape")
    known = math.prod(d for d in a.shape if d != -1)
    if len(flat) % known or (-1 not in a.shape and len(flat) != known):
        raise ShapeError(f"buffer: the value has {len(flat)} items, which do not fill the shape {a.shape}",
                         attr="shape", hint="the element counts must match (as torch.reshape)")
    return tuple(len(flat) // known if d == -1 else d for d in a.shape), flat


@op("buffer", Buffer, inputs=(),
    cases=[Case({"value": [[0, 2], [1, 1], [2, 0]], "dtype": "int64"}, ()),
           Case({"value": [0.5, -1.0, 2.0, 3.0], "shape": [2, 2]}, ()),
           Case({"value": [True, False], "dtype": "bool", "persistent": False}, ())],
    no_grad="a buffer is never trained: it has no gradient")
def buffer(a: Buffer) -> Inferred:
    """A fixed tensor kept in the state_dict under the node's name (as PyTorch's register_buffer): not
    trained, saved and loaded with the weights, an ONNX initialiser. `value` is a number or (nested) list,
    often an expression (an index table), reshaped to `shape` if given; `dtype` float32, int64 or bool.
    `persistent: false` leaves it out of the state_dict (register_buffer(..., persistent=False))."""
    shape, flat = buffer_shape(a)
    params = [ParamSpec("", shape, Init.of("values", values=tuple(flat)), buffer=True, dtype=a.dtype)] \
        if a.persistent else []
    return Inferred([TensorType(shape, a.dtype)], params)


def buffer_value(a: Buffer) -> "np.ndarray":
    """A buffer's value as an array of its dtype and shape (what a non-persistent buffer computes)."""
    shape, flat = buffer_shape(a)
    return np.asarray(flat, dtype={"float32": np.float32, "int64": np.int64, "bool": np.bool_}[a.dtype]).reshape(shape)


@lowering("buffer")
def buffer_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return p[0] if p else b.const(buffer_value(node.attrs), hint="buffer")


@reference("buffer")
def _buffer(c, p=None):
    return p if p is not None else torch.as_tensor(buffer_value(c.a))


class IndexDim(Attrs):
    dim: int


def _index_input(name: str, index: TensorType) -> None:
    if index.dtype != "int64":
        raise ShapeError(f"{name}: the index must be int64, but it is {index.dtype} (shape {index})",
                         hint="declare it with `dtype: int64`, or build it with `{op: buffer, dtype: int64}`")


@op("gather", IndexDim, inputs=("x", "index"), primary="dim",
    cases=[Case({"dim": 1}, ((2, 4), In((2, 6), "int64", 0, 4))),
           Case({"dim": -1}, ((2, 3, 5), In((2, 2, 4), "int64", 0, 5)))])
def gather(a: IndexDim, x: TensorType, index: TensorType) -> Inferred:
    """out[i][j] = x[index[i][j]][j] for dim 0, and likewise for any `dim` (as torch.gather): `index` is int64
    of the input's rank, no larger than it except along `dim`; the output has the index's shape. Indices
    run from 0 to size-1 (a value out of range is an error at run time)."""
    _index_input("gather", index)
    if index.rank != x.rank:
        raise ShapeError(f"gather: the index has rank {index.rank} (shape {index}) but the input has rank "
                         f"{x.rank} (shape {x}); they must be equal", hint="use index_select for a 1-D index")
    d = norm_dim(a.dim, x.rank)
    for k, (s, t) in enumerate(zip(x.shape, index.shape)):
        if k != d and isinstance(s, int) and isinstance(t, int) and t > s:
            raise ShapeError(f"gather: the index (shape {index}) is larger than the input (shape {x}) in "
                             f"dimension {k}", hint="outside `dim`, the index may only be as large as the input")
    return Inferred([TensorType(index.shape, x.dtype)])


@lowering("gather")
def gather_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    t, i = b.ins[0], b.ins[1]
    d = _norm(node.attrs.dim, t.rank)
    axes = [k for k in range(t.rank) if k != d and t.shape[k] != i.shape[k]]
    data = x[0]
    if axes:                                # the index covers a corner of the input: cut it out first
        data = b.op("Slice", [data, b.ints([0] * len(axes), hint="starts"),
                              _pieces(b, [i.shape[k] for k in axes]), b.ints(axes, hint="axes")])
    return b.op("GatherElements", [data, x[1]], axis=d)


@reference("gather")
def _gather(c, x, index):
    return torch.gather(x, c.a.dim, index)


@op("index_select", IndexDim, inputs=("x", "index"), primary="dim",
    cases=[Case({"dim": 1}, ((3, 5), In((7,), "int64", 0, 5))),
           Case({"dim": 1}, ((2, 4, 3), In((3,), "int64", 0, 4)))])
def index_select(a: IndexDim, x: TensorType, index: TensorType) -> Inferred:
    """The entries of `x` at the positions `index` (a 1-D int64 tensor) along `dim` (as torch.index_select):
    that dimension becomes the index's length. Swin's relative position bias is `table` indexed by a buffer."""
    _index_input("index_select", index)
    if index.rank != 1:
        raise ShapeError(f"index_select: the index must be 1-D, but it has shape {index}",
                         hint="flatten it first, or use gather for an index of the input's rank")
    if x.rank == 0:
        raise ShapeError("index_select needs an input with at least one dimension, got a scalar")
    d = norm_dim(a.dim, x.rank)
    return Inferred([TensorType(x.shape[:d] + index.shape + x.shape[d + 1:], x.dtype)])


@lowering("index_select")
def index_select_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Gather", [x[0], x[1]], axis=_norm(node.attrs.dim, b.ins[0].rank))


@reference("index_select")
def _index_select(c, x, index):
    return torch.index_select(x, c.a.dim, index)
