"""Activation functions: elementwise nonlinearities and the softmax family.

Each op is one record: the @op line declares its attributes, ONNX form (`onnx=`), PyTorch form (`torch=`,
`torch_module=`) and test cases; the function below it is the shape rule, whose docstring is its entry in
docs/ops.md. Ops whose ONNX or PyTorch form is more than one call register a function with @lowering /
@reference right after the rule. The NumPy kernel is in runtime/kernels/activation.py.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from ..errors import ShapeError
from ..ir import Init, Node, ParamSpec, TensorType
from .cases import Case, In
from .lazy import F
from .registry import DTYPES, Attrs, Inferred, NoAttrs, lowering, op, reference
from .shapes import concrete, norm_dim, per_sample

if TYPE_CHECKING:
    from ..onnx.registry import Builder

X = In((2, 3, 4), low=-3.0, high=3.0, avoid=(0.0,))     # values off the kink at 0 of relu and friends
UNARY = [Case(inputs=(X,))]                               # the test case of an attribute-free activation
ZERO_GRADIENT = "piecewise constant: its gradient is 0 everywhere (tests/test_ops_activation.py checks the zeros)"


def _elementwise(x: TensorType) -> Inferred:
    """Same shape out; one operation per output element per sample."""
    return Inferred([TensorType(x.shape, x.dtype)], macs=per_sample(x))


def _float_input(name: str, x: TensorType) -> None:
    if not x.dtype.startswith("float"):
        raise ShapeError(f"{name} expects a float32 input, but it is {x.dtype} (shape {x})",
                         hint="feed it a float tensor (class indices and masks are not activations)")


def unary(name: str, x: TensorType) -> Inferred:
    """The shape rule of an elementwise activation: a float input, the same shape out."""
    _float_input(name, x)
    return _elementwise(x)


@op("relu", onnx="Relu", torch="F.relu", torch_module="nn.ReLU", cases=UNARY)
def relu(a: NoAttrs, x: TensorType) -> Inferred:
    """max(x, 0), elementwise."""
    return unary("relu", x)


class LeakyRelu(Attrs):
    negative_slope: float = 0.01


@op("leaky_relu", LeakyRelu, torch="F.leaky_relu",
    cases=[Case({}, (X,)), Case({"negative_slope": 0.2}, (X,)), Case({"negative_slope": -0.3}, (X,))])
def leaky_relu(a: LeakyRelu, x: TensorType) -> Inferred:
    """x where x > 0, else negative_slope · x, elementwise."""
    return unary("leaky_relu", x)


@lowering("leaky_relu")
def leaky_relu_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("LeakyRelu", [x[0]], alpha=float(node.attrs.negative_slope))


class PRelu(Attrs):
    num_parameters: int = 1
    init_value: float = 0.25


@op("prelu", PRelu, torch="F.prelu", torch_kw={"num_parameters": None, "init_value": None},
    cases=[Case({}, (X,)), Case({"num_parameters": 3}, (X,), params=([0.1, -0.4, 1.7],)),
           Case({"num_parameters": 3}, (In((4, 3), avoid=(0.0,)),), params=([0.1, -0.4, 1.7],))])
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


@lowering("prelu")
def prelu_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    rank = b.ins[0].rank
    slope = p[0]
    if node.attrs.num_parameters > 1 and rank > 2:
        # PRelu broadcasts the slope from the right: [C] must become [C, 1, ..., 1] to hit dim 1
        slope = b.op("Reshape", [slope, b.ints([node.attrs.num_parameters] + [1] * (rank - 2))])
    elif rank == 0:                         # a [1] slope would broadcast a scalar input to [1]
        slope = b.op("Squeeze", [slope])
    return b.op("PRelu", [x[0], slope])


@op("sigmoid", onnx="Sigmoid", torch="torch.sigmoid", torch_module="nn.Sigmoid", cases=UNARY)
def sigmoid(a: NoAttrs, x: TensorType) -> Inferred:
    """1 / (1 + exp(-x)), elementwise."""
    return unary("sigmoid", x)


@op("tanh", onnx="Tanh", torch="torch.tanh", torch_module="nn.Tanh", cases=UNARY)
def tanh(a: NoAttrs, x: TensorType) -> Inferred:
    """The hyperbolic tangent, elementwise."""
    return unary("tanh", x)


@op("sign", onnx="Sign", torch="torch.sign", cases=UNARY, no_grad=ZERO_GRADIENT)
def sign(a: NoAttrs, x: TensorType) -> Inferred:
    """-1, 0 or 1 by the sign of x, elementwise; its gradient is zero (as torch.sign)."""
    return unary("sign", x)


@op("step", cases=UNARY, no_grad=ZERO_GRADIENT)
def step(a: NoAttrs, x: TensorType) -> Inferred:
    """Perceptron unit step: 1 where x > 0, else 0 (so step(0) = 0); its gradient is zero."""
    return unary("step", x)


@lowering("step")
def step_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Cast", [b.op("Greater", [x[0], b.const(0.0)])], to=DTYPES[b.ins[0].dtype])


@reference("step")
def step_torch(c, x):
    return (x > 0).to(x.dtype)


@op("silu", torch="F.silu", torch_module="nn.SiLU", cases=UNARY)
def silu(a: NoAttrs, x: TensorType) -> Inferred:
    """x · sigmoid(x) (SiLU, also called swish), elementwise."""
    return unary("silu", x)


@lowering("silu")
def silu_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Mul", [x[0], b.op("Sigmoid", [x[0]])])


class Softplus(Attrs):
    beta: float = 1.0
    threshold: float = 20.0


@op("softplus", Softplus, torch="F.softplus",
    cases=[Case({}, (X,)), Case({"beta": 2.0, "threshold": 1.0}, (In((2, 3, 4), low=-3, high=3, avoid=(0.5,)),)),
           Case({"beta": 0.5, "threshold": 0.5}, (In((2, 3, 4), low=-3, high=3, avoid=(1.0,)),))])
def softplus(a: Softplus, x: TensorType) -> Inferred:
    """log(1 + exp(beta · x)) / beta, and x itself where beta · x > threshold (as PyTorch)."""
    _float_input("softplus", x)
    if a.beta == 0:
        raise ShapeError("softplus's beta must not be 0 (it divides by beta)", hint="the default is beta: 1",
                         attr="beta")
    return _elementwise(x)


@lowering("softplus")
def softplus_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    beta, threshold = float(node.attrs.beta), float(node.attrs.threshold)
    if beta == 1 and threshold >= 20:
        # beyond 20 PyTorch's switch to x changes nothing a float32 can hold
        return b.op("Softplus", [x[0]])
    z = b.op("Mul", [x[0], b.const(beta)]) if beta != 1 else x[0]
    sp = b.op("Softplus", [z])
    if beta != 1:
        sp = b.op("Div", [sp, b.const(beta)])
    return b.op("Where", [b.op("Greater", [z, b.const(threshold)]), x[0], sp])


class Gelu(Attrs):
    approximate: Literal["none", "tanh"] = "none"


@op("gelu", Gelu, torch="F.gelu", cases=[Case({}, (X,)), Case({"approximate": "tanh"}, (X,))])
def gelu(a: Gelu, x: TensorType) -> Inferred:
    """x · Φ(x) with Φ the standard normal CDF; approximate: tanh uses PyTorch's tanh formula."""
    return unary("gelu", x)


@lowering("gelu")
def gelu_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    approximate = node.attrs.approximate
    if b.opset >= 20:
        return b.op("Gelu", [x[0]], approximate=approximate)
    half_x = b.op("Mul", [x[0], b.const(0.5)])
    if approximate == "tanh":
        cube = b.op("Mul", [b.op("Mul", [x[0], x[0]]), x[0]])
        inner = b.op("Add", [x[0], b.op("Mul", [cube, b.const(0.044715)])])
        t = b.op("Tanh", [b.op("Mul", [inner, b.const(math.sqrt(2 / math.pi))])])
    else:
        t = b.op("Erf", [b.op("Mul", [x[0], b.const(math.sqrt(0.5))])])
    return b.op("Mul", [half_x, b.op("Add", [t, b.const(1.0)])])


class Elu(Attrs):
    alpha: float = 1.0


@op("elu", Elu, torch="F.elu", cases=[Case({}, (X,)), Case({"alpha": 0.5}, (X,))])
def elu(a: Elu, x: TensorType) -> Inferred:
    """x where x > 0, else alpha · (exp(x) − 1), elementwise."""
    return unary("elu", x)


@lowering("elu")
def elu_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Elu", [x[0]], alpha=float(node.attrs.alpha))


class Softmax(Attrs):
    dim: int = -1
    temperature: float = 1.0


@op("softmax", Softmax,
    cases=[Case({}, ((2, 3, 4),)), Case({"dim": 1, "temperature": 0.5}, ((2, 3, 4),)), Case({"dim": 0}, ((5,),))])
def softmax(a: Softmax, x: TensorType) -> Inferred:
    """softmax(x / temperature) along `dim`: exp normalised to sum to 1."""
    _float_input("softmax", x)
    norm_dim(a.dim, x.rank)
    if not a.temperature > 0:
        raise ShapeError(f"softmax's temperature must be positive, got {a.temperature}",
                         hint="1 is plain softmax; above 1 flattens, below 1 sharpens", attr="temperature")
    return _elementwise(x)


def _over_scalar(b: Builder, op_type: str, v: str, axis: int) -> str:
    """Softmax/LogSoftmax need rank >= 1: a scalar goes through as a 1-element vector."""
    if b.ins[0].rank:
        return b.op(op_type, [v], axis=axis)
    zero = b.ints([0])
    return b.op("Squeeze", [b.op(op_type, [b.op("Unsqueeze", [v, zero])], axis=0), zero])


@lowering("softmax")
def softmax_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    v = x[0]
    if float(node.attrs.temperature) != 1:
        v = b.op("Div", [v, b.const(float(node.attrs.temperature))])
    return _over_scalar(b, "Softmax", v, node.attrs.dim)


@reference("softmax")
def softmax_torch(c, x):
    return F.softmax(x if c.a.temperature == 1.0 else x / c.a.temperature, c.a.dim)


class LogSoftmax(Attrs):
    dim: int = -1


@op("log_softmax", LogSoftmax, torch="F.log_softmax", cases=[Case({}, ((2, 3, 4),)), Case({"dim": -2}, ((2, 3, 4),))])
def log_softmax(a: LogSoftmax, x: TensorType) -> Inferred:
    """log(softmax(x)) along `dim`, computed stably (x − logsumexp(x))."""
    _float_input("log_softmax", x)
    norm_dim(a.dim, x.rank)
    return _elementwise(x)


@lowering("log_softmax")
def log_softmax_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return _over_scalar(b, "LogSoftmax", x[0], node.attrs.dim)


# --- clipping family: relu6, hardtanh, clamp, hardsigmoid, hardswish --------------------------------

def _clip_onnx(b: Builder, v: str, lo: float | None, hi: float | None) -> str:
    """ONNX Clip (opset 11+ takes its bounds as inputs; an omitted bound is an empty input)."""
    return b.op("Clip", [v, None if lo is None else b.const(float(lo)), None if hi is None else b.const(float(hi))])


@op("relu6", torch="F.relu6", torch_module="nn.ReLU6",
    cases=[Case(inputs=(In((2, 3, 4), low=-3.0, high=9.0, avoid=(0.0, 6.0)),))])
def relu6(a: NoAttrs, x: TensorType) -> Inferred:
    """min(max(x, 0), 6), elementwise (MobileNet's activation; torch.nn.ReLU6)."""
    return unary("relu6", x)


@lowering("relu6")
def relu6_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return _clip_onnx(b, x[0], 0.0, 6.0)


class Hardtanh(Attrs):
    min_val: float = -1.0
    max_val: float = 1.0


def _bounds(name: str, lo: float | None, hi: float | None, attrs: tuple[str, str]) -> None:
    if lo is not None and hi is not None and lo > hi:
        raise ShapeError(f"{name}'s lower bound {attrs[0]}: {lo} is above its upper bound {attrs[1]}: {hi}",
                         hint=f"swap them: {attrs[0]} is the lower bound", attr=attrs[0])


@op("hardtanh", Hardtanh, torch="F.hardtanh", torch_module="nn.Hardtanh",
    cases=[Case({}, (In((2, 3, 4), low=-3.0, high=3.0, avoid=(-1.0, 1.0)),)),
           Case({"min_val": -2.0, "max_val": 0.5}, (In((2, 3, 4), low=-3.0, high=3.0, avoid=(-2.0, 0.5)),))])
def hardtanh(a: Hardtanh, x: TensorType) -> Inferred:
    """x clipped to [min_val, max_val] (default [-1, 1]), elementwise; gradient 1 strictly inside, else 0 (torch.nn.Hardtanh)."""
    _float_input("hardtanh", x)
    _bounds("hardtanh", a.min_val, a.max_val, ("min_val", "max_val"))
    return _elementwise(x)


@lowering("hardtanh")
def hardtanh_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return _clip_onnx(b, x[0], node.attrs.min_val, node.attrs.max_val)


class Clamp(Attrs):
    min: float | None = None
    max: float | None = None


@op("clamp", Clamp, torch="torch.clamp",
    cases=[Case({"min": -1.0, "max": 2.0}, (In((2, 3, 4), low=-3.0, high=3.0, avoid=(-1.0, 2.0)),)),
           Case({"min": 0.5}, (In((2, 3, 4), low=-3.0, high=3.0, avoid=(0.5,)),)),
           Case({"max": -0.5}, (In((3, 4), low=-3.0, high=3.0, avoid=(-0.5,)),))])
def clamp(a: Clamp, x: TensorType) -> Inferred:
    """x clipped below at `min` and above at `max`, elementwise; either bound may be omitted (torch.clamp)."""
    _float_input("clamp", x)
    if a.min is None and a.max is None:
        raise ShapeError("clamp needs a bound: min, max or both",
                         hint="e.g. {op: clamp, min: 0} clips negative values to 0")
    _bounds("clamp", a.min, a.max, ("min", "max"))
    return _elementwise(x)


@lowering("clamp")
def clamp_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return _clip_onnx(b, x[0], node.attrs.min, node.attrs.max)


HARD = [Case(inputs=(In((2, 3, 4), low=-5.0, high=5.0, avoid=(-3.0, 3.0)),))]    # kinks at ±3


@op("hardsigmoid", torch="F.hardsigmoid", torch_module="nn.Hardsigmoid", cases=HARD)
def hardsigmoid(a: NoAttrs, x: TensorType) -> Inferred:
    """relu6(x + 3) / 6, elementwise: 0 below −3, 1 above 3, linear between (torch.nn.Hardsigmoid; MobileNetV3)."""
    return unary("hardsigmoid", x)


@lowering("hardsigmoid")
def hardsigmoid_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("HardSigmoid", [x[0]], alpha=1.0 / 6.0, beta=0.5)


@op("hardswish", onnx="HardSwish", torch="F.hardswish", torch_module="nn.Hardswish", cases=HARD)
def hardswish(a: NoAttrs, x: TensorType) -> Inferred:
    """x · relu6(x + 3) / 6, elementwise (torch.nn.Hardswish; MobileNetV3)."""
    return unary("hardswish", x)
