"""Similarity and distance between two batches of vectors."""
from __future__ import annotations

from typing import TYPE_CHECKING
import math
from ..errors import ShapeError
from ..ir import Dim, Node, TensorType
from .cases import Case
from .lazy import F
from .registry import DTYPES, Attrs, Inferred, lowering, op, reference
from .shapes import broadcast, norm_dim, per_sample

if TYPE_CHECKING:
    from ..onnx.registry import Builder


def _pair(name: str, x1: TensorType, x2: TensorType) -> tuple[Dim, ...]:
    """The broadcast shape of the two inputs, with an error that names both."""
    for i, t in enumerate((x1, x2), 1):
        if not t.dtype.startswith("float"):
            raise ShapeError(f"{name} expects float inputs, but x{i} is {t.dtype} (shape {t})")
    try:
        shape = broadcast(x1.shape, x2.shape)
    except ShapeError as e:
        raise ShapeError(f"{name} compares x1 and x2 elementwise, so their shapes must match or "
                         f"broadcast, but x1 is {x1} and x2 is {x2}: {e.message}",
                         hint="both inputs need the same vector size; size-1 dimensions broadcast") from None
    if not shape:
        raise ShapeError(f"{name} needs vectors, but both inputs are scalars")
    return shape


class CosineSimilarity(Attrs):
    dim: int = -1
    eps: float = 1e-8


@op("cosine_similarity", CosineSimilarity, inputs=["x1", "x2"],
    cases=[Case({}, ((2, 4), (2, 4))), Case({"dim": 1}, ((2, 3, 4), (1, 3, 4)))])
def cosine_similarity(a: CosineSimilarity, x1: TensorType, x2: TensorType) -> Inferred:
    """x1·x2 / (max(‖x1‖, eps) · max(‖x2‖, eps)) along `dim`, which is removed; inputs broadcast.

    As torch.nn.functional.cosine_similarity (each norm clamped separately). MACs: three dot
    products (x1·x2, ‖x1‖², ‖x2‖²) over the broadcast inputs.
    """
    shape = _pair("cosine_similarity", x1, x2)
    d = norm_dim(a.dim, len(shape))
    if a.eps < 0:
        raise ShapeError(f"cosine_similarity's eps must not be negative, got {a.eps}", attr="eps")
    y = TensorType(shape[:d] + shape[d + 1:], x1.dtype)
    return Inferred([y], macs=3 * per_sample(TensorType(shape)))


@lowering("cosine_similarity")
def cosine_similarity_onnx(b: Builder, node: Node, x: list, p: list) -> str:
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


reference("cosine_similarity")(lambda c, x1, x2: F.cosine_similarity(x1, x2, c.a.dim, c.a.eps))


class PairwiseDistance(Attrs):
    p: float = 2.0
    eps: float = 1e-6
    keepdim: bool = False


@op("pairwise_distance", PairwiseDistance, inputs=["x1", "x2"],
    cases=[Case({}, ((2, 4), (2, 4))), Case({"p": 1.0, "keepdim": True}, ((2, 4), (2, 4)))])
def pairwise_distance(a: PairwiseDistance, x1: TensorType, x2: TensorType) -> Inferred:
    """‖x1 − x2 + eps‖_p over the last dimension (removed unless keepdim); inputs broadcast.

    As torch.nn.functional.pairwise_distance: any real p, including inf (max |·|), -inf (min |·|)
    and 0 (count of non-zeros, no gradient). One operation per input element.
    """
    shape = _pair("pairwise_distance", x1, x2)
    y = TensorType(shape[:-1] + ((1,) if a.keepdim else ()), x1.dtype)
    return Inferred([y], macs=per_sample(TensorType(shape)))


@lowering("pairwise_distance")
def pairwise_distance_onnx(b: Builder, node: Node, x: list, p: list) -> str:
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


reference("pairwise_distance")(lambda c, x1, x2: F.pairwise_distance(x1, x2, c.a.p, c.a.eps, c.a.keepdim))


# ---------------------------------------------------------------- helpers of the ONNX lowerings

def _reduce(b: Builder, op_type: str, x: str, axes: list[int], keepdims: int) -> str:
    """Reduce* with `axes` as an input where the opset takes it so (ReduceSum from 13, the rest from 18)."""
    if op_type == "ReduceSum" or b.opset >= 18:
        return b.op(op_type, [x, b.ints(axes, hint="axes")], keepdims=keepdims)
    return b.op(op_type, [x], axes=axes, keepdims=keepdims)
