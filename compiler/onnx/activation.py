"""Activation functions: native ONNX ops where they exist, primitives elsewhere."""
from __future__ import annotations

import math

from ..ir import Node
from .registry import DTYPES, Builder, lowering


def _dtype(b: Builder) -> int:
    return DTYPES[b.ins[0].dtype]


@lowering("relu")
def relu(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Relu", [x[0]])


@lowering("leaky_relu")
def leaky_relu(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("LeakyRelu", [x[0]], alpha=float(node.attrs.negative_slope))


@lowering("prelu")
def prelu(b: Builder, node: Node, x: list, p: list) -> str:
    rank = b.ins[0].rank
    slope = p[0]
    if node.attrs.num_parameters > 1 and rank > 2:
        # PRelu broadcasts the slope from the right: [C] must become [C, 1, ..., 1] to hit dim 1
        slope = b.op("Reshape", [slope, b.ints([node.attrs.num_parameters] + [1] * (rank - 2))])
    elif rank == 0:                         # a [1] slope would broadcast a scalar input to [1]
        slope = b.op("Squeeze", [slope])
    return b.op("PRelu", [x[0], slope])


@lowering("sigmoid")
def sigmoid(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Sigmoid", [x[0]])


@lowering("tanh")
def tanh(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Tanh", [x[0]])


@lowering("sign")
def sign(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Sign", [x[0]])


@lowering("step")
def step(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Cast", [b.op("Greater", [x[0], b.const(0.0)])], to=_dtype(b))


@lowering("silu")
def silu(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Mul", [x[0], b.op("Sigmoid", [x[0]])])


@lowering("softplus")
def softplus(b: Builder, node: Node, x: list, p: list) -> str:
    beta, threshold = float(node.attrs.beta), float(node.attrs.threshold)
    if beta == 1 and threshold >= 20:
        # beyond 20 PyTorch's switch to x changes nothing a float32 can hold
        return b.op("Softplus", [x[0]])
    z = b.op("Mul", [x[0], b.const(beta)]) if beta != 1 else x[0]
    sp = b.op("Softplus", [z])
    if beta != 1:
        sp = b.op("Div", [sp, b.const(beta)])
    return b.op("Where", [b.op("Greater", [z, b.const(threshold)]), x[0], sp])


@lowering("gelu")
def gelu(b: Builder, node: Node, x: list, p: list) -> str:
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


@lowering("elu")
def elu(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Elu", [x[0]], alpha=float(node.attrs.alpha))


def _over_scalar(b: Builder, op_type: str, v: str, axis: int) -> str:
    """Softmax/LogSoftmax need rank >= 1: a scalar goes through as a 1-element vector."""
    if b.ins[0].rank:
        return b.op(op_type, [v], axis=axis)
    zero = b.ints([0])
    return b.op("Squeeze", [b.op(op_type, [b.op("Unsqueeze", [v, zero])], axis=0), zero])


@lowering("softmax")
def softmax(b: Builder, node: Node, x: list, p: list) -> str:
    v = x[0]
    if float(node.attrs.temperature) != 1:
        v = b.op("Div", [v, b.const(float(node.attrs.temperature))])
    return _over_scalar(b, "Softmax", v, node.attrs.dim)


@lowering("log_softmax")
def log_softmax(b: Builder, node: Node, x: list, p: list) -> str:
    return _over_scalar(b, "LogSoftmax", x[0], node.attrs.dim)
