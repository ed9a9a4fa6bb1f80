"""Activation functions: elementwise nonlinearities and the softmax family."""
from __future__ import annotations

from typing import Literal

from ..errors import ShapeError
from ..ir import Init, ParamSpec, TensorType
from .registry import Attrs, Inferred, NoAttrs, op
from .shapes import concrete, norm_dim, per_sample


def _elementwise(x: TensorType) -> Inferred:
    """Same shape out; one operation per output element per sample."""
    return Inferred([TensorType(x.shape, x.dtype)], macs=per_sample(x))


def _float_input(name: str, x: TensorType) -> None:
    if not x.dtype.startswith("float"):
        raise ShapeError(f"{name} expects a float32 input, but it is {x.dtype} (shape {x})",
                         hint="feed it a float tensor (class indices and masks are not activations)")


@op("relu", NoAttrs)
def relu(a: NoAttrs, x: TensorType) -> Inferred:
    """max(x, 0), elementwise."""
    _float_input("relu", x)
    return _elementwise(x)


class LeakyRelu(Attrs):
    negative_slope: float = 0.01


@op("leaky_relu", LeakyRelu)
def leaky_relu(a: LeakyRelu, x: TensorType) -> Inferred:
    """x where x > 0, else negative_slope · x, elementwise."""
    _float_input("leaky_relu", x)
    return _elementwise(x)


class PRelu(Attrs):
    num_parameters: int = 1
    init_value: float = 0.25


@op("prelu", PRelu)
def prelu(a: PRelu, x: TensorType) -> Inferred:
    """x where x > 0, else weight · x, with a learned slope `weight` [num_parameters] (init init_value).

    As torch.nn.PReLU: one shared slope (num_parameters: 1), or one per channel, the channel being
    dimension 1 of the input (which then needs rank ≥ 2).
    """
    _float_input("prelu", x)
    if a.num_parameters < 1:
        raise ShapeError(f"prelu's num_parameters must be at least 1, got {a.num_parameters}",
                         hint="use 1 for one shared slope, or the number of channels", attr="num_parameters")
    if a.num_parameters > 1:
        if x.rank < 2:
            raise ShapeError(f"prelu with num_parameters: {a.num_parameters} needs a channel dimension "
                             f"(dimension 1), but its input has rank {x.rank} (shape {x})",
                             hint="use num_parameters: 1 for a single shared slope", attr="num_parameters")
        c = concrete(x.shape[1], "prelu's channel count (dimension 1)", attr="num_parameters")
        if c != a.num_parameters:
            raise ShapeError(f"prelu expects {a.num_parameters} channels (num_parameters: {a.num_parameters}) "
                             f"but its input gives {c} on dimension 1 (shape {x})",
                             hint=f"set num_parameters: {c}, or 1 for a single shared slope",
                             attr="num_parameters")
    w = ParamSpec("weight", (a.num_parameters,), Init.of("constant", value=float(a.init_value)))
    return Inferred([TensorType(x.shape, x.dtype)], [w], macs=per_sample(x))


@op("sigmoid", NoAttrs)
def sigmoid(a: NoAttrs, x: TensorType) -> Inferred:
    """1 / (1 + exp(-x)), elementwise."""
    _float_input("sigmoid", x)
    return _elementwise(x)


@op("tanh", NoAttrs)
def tanh(a: NoAttrs, x: TensorType) -> Inferred:
    """The hyperbolic tangent, elementwise."""
    _float_input("tanh", x)
    return _elementwise(x)


@op("sign", NoAttrs)
def sign(a: NoAttrs, x: TensorType) -> Inferred:
    """-1, 0 or 1 by the sign of x, elementwise; its gradient is zero (as torch.sign)."""
    _float_input("sign", x)
    return _elementwise(x)


@op("step", NoAttrs)
def step(a: NoAttrs, x: TensorType) -> Inferred:
    """Perceptron unit step: 1 where x > 0, else 0 (so step(0) = 0); its gradient is zero."""
    _float_input("step", x)
    return _elementwise(x)


@op("silu", NoAttrs)
def silu(a: NoAttrs, x: TensorType) -> Inferred:
    """x · sigmoid(x) (SiLU, also called swish), elementwise."""
    _float_input("silu", x)
    return _elementwise(x)


class Softplus(Attrs):
    beta: float = 1.0
    threshold: float = 20.0


@op("softplus", Softplus)
def softplus(a: Softplus, x: TensorType) -> Inferred:
    """log(1 + exp(beta · x)) / beta, and x itself where beta · x > threshold (as PyTorch)."""
    _float_input("softplus", x)
    if a.beta == 0:
        raise ShapeError("softplus's beta must not be 0 (it divides by beta)", hint="the default is beta: 1",
                         attr="beta")
    return _elementwise(x)


class Gelu(Attrs):
    approximate: Literal["none", "tanh"] = "none"


@op("gelu", Gelu)
def gelu(a: Gelu, x: TensorType) -> Inferred:
    """x · Φ(x) with Φ the standard normal CDF; approximate: tanh uses PyTorch's tanh formula."""
    _float_input("gelu", x)
    return _elementwise(x)


class Elu(Attrs):
    alpha: float = 1.0


@op("elu", Elu)
def elu(a: Elu, x: TensorType) -> Inferred:
    """x where x > 0, else alpha · (exp(x) − 1), elementwise."""
    _float_input("elu", x)
    return _elementwise(x)


class Softmax(Attrs):
    dim: int = -1
    temperature: float = 1.0


@op("softmax", Softmax)
def softmax(a: Softmax, x: TensorType) -> Inferred:
    """softmax(x / temperature) along `dim`: exp normalised to sum to 1."""
    _float_input("softmax", x)
    norm_dim(a.dim, x.rank)
    if not a.temperature > 0:
        raise ShapeError(f"softmax's temperature must be positive, got {a.temperature}",
                         hint="1 is plain softmax; above 1 flattens, below 1 sharpens", attr="temperature")
    return _elementwise(x)


class LogSoftmax(Attrs):
    dim: int = -1


@op("log_softmax", LogSoftmax)
def log_softmax(a: LogSoftmax, x: TensorType) -> Inferred:
    """log(softmax(x)) along `dim`, computed stably (x − logsumexp(x))."""
    _float_input("log_softmax", x)
    norm_dim(a.dim, x.rank)
    return _elementwise(x)
