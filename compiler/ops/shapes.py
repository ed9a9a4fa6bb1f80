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


def only_by_luck(a: Dim, b: Dim) -> str:
    """For two sizes that must be equal but are not the same number or symbol: the end of the error
    message ("" when both are numbers, else why the spec cannot be trusted to run)."""
    return "" if is_int(a) and is_int(b) else f": {a} and {b} would have to be equal at run time"


def norm_dim(dim: int, rank: int, attr: str = "dim") -> int:
    """dim as an index in 0..rank-1 (negative counts from the end). A scalar takes 0 or -1, as in PyTorch."""
    n = max(rank, 1)
    if not -n <= dim < n:
        where = "a scalar (rank 0), which allows 0 or -1" if rank == 0 else \
            f"a rank-{rank} tensor (allowed {-rank}..{rank - 1})"
        raise ShapeError(f"{attr}={dim} is out of range for {where}", attr=attr)
    return dim % rank if rank else 0


def float_input(op_name: str, port: str, t: TensorType | None, hint: str | None = None) -> None:
    """Refuse an int64/bool tensor where the kernel computes in floating point (a None input is fine)."""
    if t is not None and not t.dtype.startswith("float"):
        raise ShapeError(f"{op_name} needs a floating-point {port}, but its {port} has dtype {t.dtype} (shape {t})",
                         hint=hint or f"declare {port} as float32 (int64 class indices and bool masks are not "
                                      "features)")


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
