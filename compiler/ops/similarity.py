"""Similarity and distance between two batches of vectors."""
from __future__ import annotations

from ..errors import ShapeError
from ..ir import Dim, TensorType
from .registry import Attrs, Inferred, op
from .shapes import broadcast, norm_dim, per_sample


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


@op("cosine_similarity", CosineSimilarity, inputs=["x1", "x2"])
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


class PairwiseDistance(Attrs):
    p: float = 2.0
    eps: float = 1e-6
    keepdim: bool = False


@op("pairwise_distance", PairwiseDistance, inputs=["x1", "x2"])
def pairwise_distance(a: PairwiseDistance, x1: TensorType, x2: TensorType) -> Inferred:
    """‖x1 − x2 + eps‖_p over the last dimension (removed unless keepdim); inputs broadcast.

    As torch.nn.functional.pairwise_distance: any real p, including inf (max |·|), -inf (min |·|)
    and 0 (count of non-zeros, no gradient). One operation per input element.
    """
    shape = _pair("pairwise_distance", x1, x2)
    y = TensorType(shape[:-1] + ((1,) if a.keepdim else ()), x1.dtype)
    return Inferred([y], macs=per_sample(TensorType(shape)))
