"""Dense layers."""
from __future__ import annotations

from typing import TYPE_CHECKING
from ..errors import ShapeError
from ..ir import Init, Node, ParamSpec, TensorType
from .cases import Case
from .lazy import F
from .registry import Attrs, Inferred, lowering, op, reference
from .shapes import concrete, float_input, per_sample

if TYPE_CHECKING:
    from ..onnx.registry import Builder


class Linear(Attrs):
    out_features: int
    bias: bool = True
    in_features: int | None = None


@op("linear", Linear, primary="out_features",
    cases=[Case({"out_features": 3}, ((2, 4),)), Case({"out_features": 2, "bias": False}, ((2, 3, 4),))])
def linear(a: Linear, x: TensorType) -> Inferred:
    """y = x Wᵀ + b on the last dimension; `in_features` is inferred (or checked when given). x is float
    (int64 token ids go through an embedding, bool masks are declared float32)."""
    if x.rank < 1:
        raise ShapeError("linear needs an input with at least one dimension, got a scalar")
    float_input("linear", "input", x, hint="declare the input as float32 (token indices go through an embedding)")
    fan_in = concrete(x.shape[-1], "linear's input feature size (last dimension)")
    if a.in_features is not None and a.in_features != fan_in:
        raise ShapeError(f"linear expects {a.in_features} input features (in_features: {a.in_features}) "
                         f"but its input gives {fan_in} (shape {x})",
                         hint="drop in_features to infer it", attr="in_features")
    if a.out_features < 1:
        raise ShapeError(f"out_features must be positive, got {a.out_features}", attr="out_features")
    params = [ParamSpec("weight", (a.out_features, fan_in), Init.of("kaiming_uniform", a=5 ** 0.5))]
    if a.bias:
        params.append(ParamSpec("bias", (a.out_features,), Init.of("bias_uniform", fan_in=fan_in)))
    y = TensorType(x.shape[:-1] + (a.out_features,), x.dtype)
    return Inferred([y], params, macs=per_sample(y) * fan_in if x.rank > 1 else a.out_features * fan_in)


@lowering("linear")
def linear_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    if b.ins[0].rank == 2:
        return b.op("Gemm", [x[0], p[0], p[1] if len(p) > 1 else None], transB=1)
    wt = b.op("Transpose", [p[0]], perm=[1, 0])
    y = b.op("MatMul", [x[0], wt])
    return b.op("Add", [y, p[1]]) if len(p) > 1 else y


@reference("linear")
def _linear(c, x, w, b=None):
    return F.linear(x, w, b)
