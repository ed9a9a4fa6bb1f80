"""Activations: one ONNX op each, plus specc's own decompositions (x·sigmoid(x) is silu, Cast(x > 0) is step)."""
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


@converter("Greater")
def greater(cx: Context, nd: OnnxNode) -> None:
    zero = cx.const(nd.inputs[1])
    cast = cx.only_consumer(nd.outputs[0], "Cast")
    if zero is not None and zero.size == 1 and float(zero.reshape(())) == 0.0 and cast is not None \
            and cast.attr("to") == 1:
        cx.take(cast)
        cx.emit("step", [nd.inputs[0]], hint=nd.name, outputs=cast.outputs)
        return
    raise cx.refuse(nd, "a comparison other than Cast(x > 0) to float (specc's step)")
