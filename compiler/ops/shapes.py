"""Small helpers shared by shape rules."""
from __future__ import annotations

import math

from ..errors import ShapeError
from ..ir import Dim, TensorType


def is_int(d: Dim) -> bool:
    return isinstance(d, int)


def concrete(d: Dim, what: str, attr: str | None = None) -> int:
    """A dimension that must be a number; a symbol gets a clear error."""
    if not isinstance(d, int):
        raise ShapeError(f"{what} must be a concrete size, but it is the symbol '{d}'",
                         hint=f"give '{d}' a number in `inputs`, or pass the size explicitly", attr=attr)
    return d


def norm_dim(dim: int, rank: int, attr: str = "dim") -> int:
    if not -rank <= dim < max(rank, 1):
        raise ShapeError(f"{attr}={dim} is out of range for a rank-{rank} tensor "
                         f"(allowed {-rank}..{rank - 1})", attr=attr)
    return dim % rank if rank else 0


def expect_rank(x: TensorType, ranks: int | tuple[int, ...], what: str = "input") -> None:
    ranks = (ranks,) if isinstance(ranks, int) else ranks
    if x.rank not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ShapeError(f"expects a rank-{want} {what}, but it has rank {x.rank} (shape {x})")


def broadcast(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """NumPy broadcasting of two shapes; symbols broadcast with 1 and with themselves."""
    out: list[Dim] = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ShapeError(f"shapes {_fmt(a)} and {_fmt(b)} do not broadcast "
                             f"(dimension -{i}: {x} vs {y})")
    return tuple(reversed(out))


def per_sample(t: TensorType) -> int:
    """Elements per sample: every dimension but the first (symbols count as 1)."""
    return math.prod(d if isinstance(d, int) else 1 for d in t.shape[1:]) if t.rank else 1


def _fmt(s: tuple[Dim, ...]) -> str:
    return "×".join(str(d) for d in s) or "scalar"


def pair(v: int | list[int] | tuple[int, ...], n: int = 2) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    return tuple(v)
