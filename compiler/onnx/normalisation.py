"""Normalisation (inference forms): BatchNormalization, LayerNormalization, Identity, Sub/Div."""
from __future__ import annotations

import numpy as np

from ..ir import Node
from .registry import Builder, lowering


@lowering("batch_norm")
def batch_norm(b: Builder, node: Node, x: list, p: list) -> str:
    a = node.attrs
    if a.affine:
        scale, bias, mean, var = p[:4]
    else:
        c = b.ins[0].shape[1]
        mean, var = p[:2]
        scale, bias = b.const(np.ones(c, np.float32), hint="ones"), b.const(np.zeros(c, np.float32), hint="zeros")
    # ONNX BatchNormalization takes N×C×D1×… of any rank >= 2; inference form uses the running statistics
    return b.op("BatchNormalization", [x[0], scale, bias, mean, var], epsilon=float(a.eps))


@lowering("layer_norm")
def layer_norm(b: Builder, node: Node, x: list, p: list) -> str:
    a = node.attrs
    ns = a.normalized_shape
    k = 1 if ns is None or isinstance(ns, int) else len(ns)
    if p:
        scale, bias = p[0], (p[1] if len(p) > 1 else None)
    else:
        shape = [int(d) for d in b.ins[0].shape[-k:]]
        scale, bias = b.const(np.ones(shape, np.float32), hint="ones"), None
    return b.op("LayerNormalization", [x[0], scale, bias], axis=-k, epsilon=float(a.eps))


@lowering("dropout")
def dropout(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Identity", [x[0]])


@lowering("standardize")
def standardize(b: Builder, node: Node, x: list, p: list) -> str:
    t = b.ins[0]
    v = x[0]
    if t.dtype not in ("float32", "float64"):
        v = b.op("Cast", [v], to=1)                       # TensorProto.FLOAT
    mean, std = p
    if t.dtype == "float64":                              # buffers are float32 initialisers
        mean, std = b.op("Cast", [mean], to=11), b.op("Cast", [std], to=11)
    if t.rank > 2:
        shape = b.ints([-1] + [1] * (t.rank - 2))
        mean, std = b.op("Reshape", [mean, shape]), b.op("Reshape", [std, shape])
    return b.op("Div", [b.op("Sub", [v, mean]), std])
