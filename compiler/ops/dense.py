"""Dense layers."""
from __future__ import annotations

from ..errors import ShapeError
from ..ir import Init, ParamSpec, TensorType
from .registry import Attrs, Inferred, op
from .shapes import concrete, float_input, per_sample


class Linear(Attrs):
    out_features: int
    bias: bool = True
    in_features: int | None = None


@op("linear", Linear, primary="out_features")
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
