"""Activations: one ONNX op each, plus specc's own decompositions (x·sigmoid(x) is silu, x·HardSigmoid(x) is
hardswish; a Clip is relu6, hardtanh or clamp by its bounds)."""
from __future__ import annotations

import numpy as np

from .registry import Context, OnnxNode, converter

SIMPLE = {"Relu": "relu", "Tanh": "tanh", "Sign": "sign", "Softplus": "softplus"}


@converter(*SIMPLE)
def simple(cx: Context, nd: OnnxNode) -> None:
    cx.emit(SIMPLE[nd.op_type], [nd.inputs[0]], hint=nd.name, outputs=nd.outputs)


@converter("Sigmoid")
def sigmoid(cx: Context, nd: OnnxNode) -> None:
    mul = cx.only_consumer(nd.outputs[0], "Mul")
    if mul is not None and nd.inputs[0] in mul.inputs:              # x * sigmoid(x)
        cx.take(mul)
        cx.emit("silu", [nd.inputs[0]], hint=mul.name, outputs=mul.outputs)
        return
    cx.emit("sigmoid", [nd.inputs[0]], hint=nd.name, outputs=nd.outputs)


@converter("LeakyRelu")
def leaky_relu(cx: Context, nd: OnnxNode) -> None:
    alpha = float(np.float32(nd.attr("alpha", 0.01)))
    attrs = {} if abs(alpha - 0.01) < 1e-9 else {"negative_slope": round(alpha, 7)}
    cx.emit("leaky_relu", [nd.inputs[0]], attrs, hint=nd.name, outputs=nd.outputs)


@converter("Elu")
def elu(cx: Context, nd: OnnxNode) -> None:
    alpha = float(np.float32(nd.attr("alpha", 1.0)))
    cx.emit("elu", [nd.inputs[0]], {} if alpha == 1.0 else {"alpha": round(alpha, 7)}, hint=nd.name,
            outputs=nd.outputs)


@converter("Gelu")
def gelu(cx: Context, nd: OnnxNode) -> None:
    approx = nd.attr("approximate", "none")
    cx.emit("gelu", [nd.inputs[0]], {} if approx == "none" else {"approximate": approx}, hint=nd.name,
            outputs=nd.outputs)


@converter("Softmax", "LogSoftmax")
def softmax(cx: Context, nd: OnnxNode) -> None:
    op = "softmax" if nd.op_type == "Softmax" else "log_softmax"
    axis = nd.attr("axis", -1 if cx.g.opset >= 13 else 1)
    shape = cx.shape(nd.inputs[0])
    if cx.g.opset < 13 and (shape is None or axis % len(shape) != len(shape) - 1):
        raise cx.refuse(nd, f"a {nd.op_type} before opset 13 over the flattened dims {axis}..")
    if shape is not None and axis >= 0 and axis == len(shape) - 1:
        axis = -1
    cx.emit(op, [nd.inputs[0]], {} if axis == -1 else {"dim": axis}, hint=nd.name, outputs=nd.outputs)


@converter("PRelu")
def prelu(cx: Context, nd: OnnxNode) -> None:
    slope = cx.const(nd.inputs[1])
    if slope is None:
        raise cx.refuse(nd, "its slope is not a constant")
    flat = slope.astype(np.float32).reshape(-1)
    attrs = {} if flat.size == 1 else {"num_parameters": int(flat.size)}
    cx.emit("prelu", [nd.inputs[0]], attrs, {"weight": flat}, hint=[nd.inputs[1], nd.name],
            outputs=nd.outputs)


def _scalar(cx: Context, nd: OnnxNode | None, value: float, x: str | None = None) -> str | None:
    """The other input of binary `nd` when one input is the constant `value` (and the other `x`, if given)."""
    if nd is None or len(nd.inputs) != 2:
        return None
    for a, b in (nd.inputs, nd.inputs[::-1]):
        c = cx.const(b)
        if c is not None and c.size == 1 and abs(float(c.reshape(())) - value) < 1e-6 and (x is None or a == x):
            return a
    return None


def _gelu(cx: Context, nd: OnnxNode) -> tuple[str, list[OnnxNode]] | None:
    """x·½(1 + erf(x/√2)), as specc (opsets < 20) and torch.onnx.export write it: (x, nodes to take)."""
    p = cx.g.producer.get(nd.inputs[0])
    if p is None:
        return None
    x = _scalar(cx, p, 2 ** 0.5) if p.op_type == "Div" else _scalar(cx, p, 0.5 ** 0.5) if p.op_type == "Mul" else None
    add = cx.only_consumer(nd.outputs[0], "Add")
    if x is None or add is None or _scalar(cx, add, 1.0) != nd.outputs[0]:
        return None
    mul = cx.only_consumer(add.outputs[0], "Mul")
    if mul is None:
        return None
    other = mul.inputs[1] if mul.inputs[0] == add.outputs[0] else mul.inputs[0]
    if other == x:                                               # torch: (x · (1 + erf)) · 0.5
        half = cx.only_consumer(mul.outputs[0], "Mul")
        return (x, [add, mul, half]) if _scalar(cx, half, 0.5) == mul.outputs[0] else None
    q = cx.g.producer.get(other)                                 # specc: (x · 0.5) · (1 + erf)
    return (x, [add, mul]) if q is not None and q.op_type == "Mul" and _scalar(cx, q, 0.5) == x else None


@converter("Erf")
def erf(cx: Context, nd: OnnxNode) -> None:
    found = _gelu(cx, nd)
    if found is None:
        raise cx.refuse(nd, "an Erf that is not part of gelu's x·½(1 + erf(x/√2))")
    x, nodes = found
    for t in nodes:
        cx.take(t)
    cx.emit("gelu", [x], hint=nodes[-1].name, outputs=nodes[-1].outputs)


TORCH_HARDSIGMOID = (1.0 / 6.0, 0.5)                 # torch.nn.Hardsigmoid: relu6(x + 3) / 6


def _bound(cx: Context, nd: OnnxNode, k: int, attr: str) -> float | None:
    """Clip's bound k (an input from opset 11, an attribute before); None when omitted."""
    if cx.g.opset < 11:
        v = nd.attr(attr)
        return None if v is None else float(v)
    if k >= len(nd.inputs) or not nd.inputs[k]:
        return None
    c = cx.const(nd.inputs[k])
    if c is None or c.size != 1:
        raise cx.refuse(nd, f"its {attr} bound '{nd.inputs[k]}' is not a constant number")
    return float(c.reshape(()))


def _f32(v: float) -> float:
    return float(str(np.float32(v)))               # 0.1, not 0.10000000149011612


@converter("Clip")
def clip(cx: Context, nd: OnnxNode) -> None:
    lo, hi = _bound(cx, nd, 1, "min"), _bound(cx, nd, 2, "max")
    if cx.g.dtype(nd.inputs[0]) in ("int64", "int32", "bool"):
        raise cx.refuse(nd, "a Clip of an integer tensor (specc's relu6, hardtanh and clamp take floats)",
                        hint="cast it to float32 first")
    if lo is not None and hi is not None and lo > hi:
        raise cx.refuse(nd, f"its min {lo} is above its max {hi}")
    if lo is None and hi is None:
        cx.bind(nd.outputs[0], cx.src(nd.inputs[0], nd))
        return
    if (lo, hi) == (0.0, 6.0):
        op, attrs = "relu6", {}
    elif lo is not None and hi is not None:
        op, attrs = "hardtanh", {k: _f32(v) for k, v, d in (("min_val", lo, -1.0), ("max_val", hi, 1.0)) if v != d}
    else:
        op, attrs = "clamp", {k: _f32(v) for k, v in (("min", lo), ("max", hi)) if v is not None}
    cx.emit(op, [nd.inputs[0]], attrs, hint=nd.name, outputs=nd.outputs)


@converter("HardSigmoid")
def hardsigmoid(cx: Context, nd: OnnxNode) -> None:
    alpha, beta = float(nd.attr("alpha", 0.2)), float(nd.attr("beta", 0.5))
    x = nd.inputs[0]
    if abs(alpha - TORCH_HARDSIGMOID[0]) < 1e-6 and abs(beta - TORCH_HARDSIGMOID[1]) < 1e-6:
        mul = cx.only_consumer(nd.outputs[0], "Mul")
        if mul is not None and x in mul.inputs:                    # x * hardsigmoid(x), before opset 14
            cx.take(mul)
            cx.emit("hardswish", [x], hint=mul.name, outputs=mul.outputs)
            return
        cx.emit("hardsigmoid", [x], hint=nd.name, outputs=nd.outputs)
        return
    # ONNX's general form max(0, min(1, alpha·x + beta)), spelled out
    scaled = cx.emit("mul", [x], {"value": _f32(alpha)}, hint=nd.name)
    shifted = cx.emit("add", [(scaled, 0)], {"value": _f32(beta)}, hint=nd.name)
    cx.emit("hardtanh", [(shifted, 0)], {"min_val": 0.0}, hint=nd.name, outputs=nd.outputs)


@converter("HardSwish")
def hardswish(cx: Context, nd: OnnxNode) -> None:
    cx.emit("hardswish", [nd.inputs[0]], hint=nd.name, outputs=nd.outputs)
