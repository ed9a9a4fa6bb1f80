"""Losses. Every loss has reduction: mean | sum | none; mean and sum give a scalar."""
from __future__ import annotations

from typing import Literal

from ..errors import ShapeError
from ..ir import TensorType
from .cases import Case, In
from .lazy import F
from .registry import Attrs, Inferred, op, reference
from .shapes import per_sample

FLOATS = ("float32", "float64")

PROB = In((4, 3), low=0.05, high=0.95)      # probabilities, for the test cases


class Loss(Attrs):
    reduction: Literal["mean", "sum", "none"] = "mean"


class CrossEntropy(Loss):
    label_smoothing: float = 0.0
    ignore_index: int | None = None         # a target class that counts neither in the loss nor in the mean


def _fmt(shape) -> str:
    return "×".join(str(d) for d in shape) or "scalar"


def _reduced(a: Loss, shape: tuple, dtype: str) -> TensorType:
    return TensorType(() if a.reduction != "none" else tuple(shape), dtype)


def _elementwise(name: str, a: Loss, x: TensorType, t: TensorType, what: str = "float") -> Inferred:
    if x.dtype not in FLOATS:
        raise ShapeError(f"{name} needs a floating-point input, but its input has dtype {x.dtype} (shape {x})",
                         hint="declare it as float32, or cast it first")
    if t.dtype not in FLOATS:
        raise ShapeError(f"{name} needs {what} targets, but its target has dtype {t.dtype} (shape {t})",
                         hint="declare the target input as float32 (PyTorch refuses integer targets here too)")
    if x.shape != t.shape:
        raise ShapeError(f"{name} expects input and target of the same shape, but its input has shape {x} "
                         f"and its target {t}",
                         hint="reshape one of them (e.g. a target of shape N needs an input of shape N, "
                              "not N×1: add {op: flatten, start_dim: 0} or squeeze)")
    return Inferred([_reduced(a, x.shape, x.dtype)], macs=per_sample(x))


@op("mse_loss", Loss, inputs=["input", "target"], loss=True,
    cases=[Case({}, ((4, 3), (4, 3))), Case({"reduction": "none"}, ((4, 3), (4, 3)))])
def mse_loss(a: Loss, x: TensorType, t: TensorType) -> Inferred:
    """Mean squared error (input − target)², input and target of equal shape."""
    return _elementwise("mse_loss", a, x, t)


reference("mse_loss")(lambda c, i, t: F.mse_loss(i, t.to(i.dtype), reduction=c.a.reduction))


@op("l1_loss", Loss, inputs=["input", "target"], loss=True,
    cases=[Case({}, (In((4, 3), avoid=(0.0,)), (4, 3))), Case({"reduction": "sum"}, ((4, 3), (4, 3)))])
def l1_loss(a: Loss, x: TensorType, t: TensorType) -> Inferred:
    """Mean absolute error |input − target|, input and target of equal shape."""
    return _elementwise("l1_loss", a, x, t)


reference("l1_loss")(lambda c, i, t: F.l1_loss(i, t.to(i.dtype), reduction=c.a.reduction))


@op("bce_loss", Loss, inputs=["input", "target"], loss=True,
    cases=[Case({}, (PROB, PROB)),
           Case({"reduction": "none"}, (PROB, In((4, 3), low=0, high=2, integer=True)), fixed=(1,))])
def bce_loss(a: Loss, x: TensorType, t: TensorType) -> Inferred:
    """Binary cross-entropy of probabilities in [0, 1] with float targets; logs clamped at −100 as PyTorch."""
    return _elementwise("bce_loss", a, x, t, "float (0/1 or probability)")


reference("bce_loss")(lambda c, i, t: F.binary_cross_entropy(i, t.to(i.dtype), reduction=c.a.reduction))


@op("bce_with_logits", Loss, inputs=["input", "target"], loss=True,
    cases=[Case({}, ((4, 3), PROB)),
           Case({"reduction": "sum"}, ((4, 3), PROB))])
def bce_with_logits(a: Loss, x: TensorType, t: TensorType) -> Inferred:
    """Binary cross-entropy on logits (a numerically stable sigmoid + bce_loss), float targets of the same shape."""
    return _elementwise("bce_with_logits", a, x, t, "float (0/1 or probability)")


reference("bce_with_logits")(lambda c, i, t: F.binary_cross_entropy_with_logits(i, t.to(i.dtype),
                                                                            reduction=c.a.reduction))


def _class_input(name: str, x: TensorType, what: str) -> tuple:
    if x.rank < 2:
        raise ShapeError(f"{name} expects {what} of shape N×C (or N×C×d1×…), but its input has shape {x}",
                         hint="keep the batch dimension; classes are dimension 1")
    if x.dtype not in FLOATS:
        raise ShapeError(f"{name} needs floating-point {what}, but its input has dtype {x.dtype} (shape {x})")
    return x.shape[:1] + x.shape[2:]


def _index_target(name: str, x: TensorType, t: TensorType, want: tuple, what: str, probs: bool) -> None:
    if t.shape != want:
        if t.shape == x.shape:
            hint = ("class indices drop the class dimension; a one-hot target must be float32 (class probabilities)"
                    if probs else "nll_loss takes class indices; for probabilities use cross_entropy")
        elif x.rank == 4 and t.rank == 1:       # a classifier missing its flatten: the fix is not in the target
            hint = (f"the {what} are {x}, feature maps rather than N×classes: add flatten (or global_avg_pool2d) "
                    "before the linear that makes them; a linear acts on the last dimension only")
        else:
            hint = f"the target needs one class index per sample (and per position beyond dim 1): shape {_fmt(want)}"
        raise ShapeError(f"{name} expects class indices of shape {_fmt(want)} (from {what} {x}) but its target "
                         f"has shape {t} with dtype {t.dtype}", hint=hint)


@op("cross_entropy", CrossEntropy, inputs=["input", "target"], loss=True,
    cases=[Case({}, ((4, 3), In((4,), "int64", 0, 3))),
           Case({"label_smoothing": 0.1, "reduction": "sum"}, ((2, 3, 4), In((2, 4), "int64", 0, 3))),
           Case({}, ((4, 3), In((4, 3), low=0.0, high=1.0)))])
def cross_entropy(a: CrossEntropy, x: TensorType, t: TensorType) -> Inferred:
    """Softmax cross-entropy of logits N×C×… with int64 class indices N×… or float class probabilities of the logits' shape; label smoothing as PyTorch (mean over N×…); ignore_index: targets of that class add 0 and leave the mean's count (as PyTorch)."""
    want = _class_input("cross_entropy", x, "logits")
    if not 0.0 <= a.label_smoothing <= 1.0:
        raise ShapeError(f"label_smoothing must be between 0 and 1, got {a.label_smoothing}",
                         attr="label_smoothing")
    if t.dtype == "int64":
        _index_target("cross_entropy", x, t, want, "logits", True)
    elif t.dtype in FLOATS:
        if a.ignore_index is not None:
            raise ShapeError(f"cross_entropy's ignore_index applies to int64 class indices, but its target is "
                             f"float probabilities (shape {t}, {t.dtype})", attr="ignore_index",
                             hint="drop ignore_index, or give the target as class indices")
        if t.shape != x.shape:
            raise ShapeError(f"cross_entropy expects int64 class indices of shape {_fmt(want)} or float class "
                             f"probabilities of shape {x} (from logits {x}) but its target has shape {t} "
                             f"with dtype {t.dtype}",
                             hint="declare class labels as int64" if t.shape == want else
                             "probabilities need one value per class, in the logits' shape")
    else:
        raise ShapeError(f"cross_entropy needs int64 class indices or float probabilities as target, "
                         f"but its target has dtype {t.dtype} (shape {t})")
    return Inferred([_reduced(a, want, x.dtype)], macs=per_sample(x))


@reference("cross_entropy")
def _cross_entropy(c, i, t):
    t = t.to(i.dtype) if t.is_floating_point() else t.long()
    return F.cross_entropy(i, t, reduction=c.a.reduction, label_smoothing=c.a.label_smoothing)


@op("nll_loss", Loss, inputs=["input", "target"], loss=True,
    cases=[Case({}, ((4, 3), In((4,), "int64", 0, 3))),
           Case({"reduction": "none"}, ((2, 3, 4), In((2, 4), "int64", 0, 3)))])
def nll_loss(a: Loss, x: TensorType, t: TensorType) -> Inferred:
    """Negative log-likelihood −input[target] of log-probabilities N×C×… with int64 class indices N×…."""
    want = _class_input("nll_loss", x, "log-probabilities")
    if t.dtype != "int64":
        raise ShapeError(f"nll_loss needs int64 class indices as target, but its target has dtype {t.dtype} "
                         f"(shape {t})", hint="declare the labels as int64; for probabilities use cross_entropy")
    _index_target("nll_loss", x, t, want, "log-probabilities", False)
    return Inferred([_reduced(a, want, x.dtype)], macs=per_sample(x))


reference("nll_loss")(lambda c, i, t: F.nll_loss(i, t.long(), reduction=c.a.reduction))
