"""Attention lowered onto primitives: MatMul, Softmax, Where (masks), Reshape/Transpose (heads).

Masked positions get -inf before Softmax; a second Where zeroes rows whose keys are all masked
(Softmax gives NaN there), matching the NumPy kernels. Nothing here branches on the opset (17..21).
"""
from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from ..ir import Node
from ..ops.attention import sinusoid_table
from .registry import Builder, lowering


def causal_mask(b: Builder, q: str, k: str, tq, tk, axis_q: int, axis_k: int) -> str:
    """Bool [Tq, Tk], True where key j > query i: a constant when both sizes are known, else Range."""
    if isinstance(tq, int) and isinstance(tk, int):
        return b.const(np.triu(np.ones((tq, tk), dtype=bool), 1), hint="causal_mask")
    zero, one = b.const(np.array(0, np.int64)), b.const(np.array(1, np.int64))

    def rng(x: str, axis: int) -> str:
        n = b.op("Shape", [x], start=axis, end=axis + 1)
        n = b.op("Squeeze", [n, b.ints([0])])
        return b.op("Range", [zero, n, one])

    i = b.op("Unsqueeze", [rng(q, axis_q), b.ints([1])])       # [Tq, 1]
    j = b.op("Unsqueeze", [rng(k, axis_k), b.ints([0])])       # [1, Tk]
    return b.op("Greater", [j, i])


def masked_softmax(b: Builder, s: str, masks: list[str]) -> str:
    """Softmax over the last axis, True in a mask = ignored; fully masked rows give 0."""
    if not masks:
        return b.op("Softmax", [s], axis=-1)
    m = masks[0]
    for extra in masks[1:]:
        m = b.op("Or", [m, extra])
    ninf = b.const(np.array(-np.inf, np.float32), hint="neg_inf")
    zero = b.const(np.array(0.0, np.float32), hint="zero")
    p = b.op("Softmax", [b.op("Where", [m, ninf, s])], axis=-1)
    return b.op("Where", [m, zero, p])


@lowering("scaled_dot_product_attention")
def scaled_dot_product_attention(b: Builder, node: Node, x: list, p: list) -> str:
    q, k, v, mask = x
    tq_, tk_ = b.ins[0], b.ins[1]
    d = tq_.shape[-1]
    rk = tk_.rank
    perm = list(range(rk - 2)) + [rk - 1, rk - 2]
    s = b.op("MatMul", [q, b.op("Transpose", [k], perm=perm)])
    scale = node.attrs.scale
    if scale is None:
        if not isinstance(d, int):
            raise ValueError("scaled_dot_product_attention needs a concrete feature size d to export its scale")
        scale = 1.0 / math.sqrt(d)
    s = b.op("Mul", [s, b.const(np.array(scale, np.float32), hint="scale")])
    rank = len(node.out.shape)                                  # scores have the output's rank
    masks = []
    if node.attrs.causal:
        masks.append(causal_mask(b, q, k, tq_.shape[-2], tk_.shape[-2], tq_.rank - 2, rk - 2))
    if mask is not None:
        mt = b.ins[3]
        if mt.dtype != "bool":
            mask = b.op("Cast", [mask], to=TensorProto.BOOL)
        if mt.rank == 2 and rank >= 3:                          # key-padding mask [N, Tk] -> [N, 1.., Tk]
            mask = b.op("Unsqueeze", [mask, b.ints(list(range(1, rank - 1)))])
        masks.append(mask)
    return b.op("MatMul", [masked_softmax(b, s, masks), v])


@lowering("multi_head_attention")
def multi_head_attention(b: Builder, node: Node, x: list, p: list) -> list:
    a = node.attrs
    query, key, value, kpm = x
    if a.bias:
        w_in, b_in, w_out, b_out = p
    else:
        (w_in, w_out), b_in, b_out = p, None, None
    qt = b.ins[0]
    e = qt.shape[2]
    h = a.num_heads
    hd = e // h
    key_t = b.ins[1] if key is not None else qt
    k_src = key if key is not None else query
    v_src = value if value is not None else k_src

    def proj(src: str, i: int) -> str:
        w = b.op("Slice", [w_in, b.ints([i * e]), b.ints([(i + 1) * e]), b.ints([0])])
        y = b.op("MatMul", [src, b.op("Transpose", [w], perm=[1, 0])])
        if b_in is not None:
            y = b.op("Add", [y, b.op("Slice", [b_in, b.ints([i * e]), b.ints([(i + 1) * e]), b.ints([0])])])
        return y

    def split_heads(y: str, perm: list[int]) -> str:            # [N, T, E] -> [N, H, T, hd] (or kᵀ)
        return b.op("Transpose", [b.op("Reshape", [y, b.ints([0, 0, h, hd])])], perm=perm)

    if k_src == query and v_src == query:                       # self-attention: one MatMul
        qkv = b.op("MatMul", [query, b.op("Transpose", [w_in], perm=[1, 0])])
        if b_in is not None:
            qkv = b.op("Add", [qkv, b_in])
        qp, kp, vp = b.op("Split", [qkv, b.ints([e, e, e])], 3, axis=2)
    else:
        qp, kp, vp = proj(query, 0), proj(k_src, 1), proj(v_src, 2)
    qh = split_heads(qp, [0, 2, 1, 3])
    kh_t = split_heads(kp, [0, 2, 3, 1])                        # [N, H, hd, Tk]
    vh = split_heads(vp, [0, 2, 1, 3])
    qh = b.op("Mul", [qh, b.const(np.array(1.0 / math.sqrt(hd), np.float32), hint="scale")])
    s = b.op("MatMul", [qh, kh_t])                              # [N, H, Tq, Tk]
    masks = []
    if a.causal:
        masks.append(causal_mask(b, query, k_src, qt.shape[1], key_t.shape[1], 1, 1))
    if kpm is not None:
        m = kpm if b.ins[3].dtype == "bool" else b.op("Cast", [kpm], to=TensorProto.BOOL)
        masks.append(b.op("Unsqueeze", [m, b.ints([1, 2])]))
    pr = masked_softmax(b, s, masks)
    wanted = set(node.outputs)
    ctxv = b.op("MatMul", [pr, vh])                             # [N, H, Tq, hd]
    ctxv = b.op("Reshape", [b.op("Transpose", [ctxv], perm=[0, 2, 1, 3]), b.ints([0, 0, e])])
    out = b.op("MatMul", [ctxv, b.op("Transpose", [w_out], perm=[1, 0])])
    if b_out is not None:
        out = b.op("Add", [out, b_out])
    weights = None
    if "weights" in wanted:
        weights = b.op("ReduceSum", [pr, b.ints([1])], keepdims=0)
        weights = b.op("Mul", [weights, b.const(np.array(1.0 / h, np.float32), hint="inv_heads")])
    return [out, weights]


@lowering("positional_encoding")
def positional_encoding(b: Builder, node: Node, x: list, p: list) -> str:
    """x + PE[:T]: one constant [T, d] when T is known. For a symbolic T, rows 0..T-1 gathered from the
    constant [max_len, d] table (values exactly the table's), the indices counted along x's own T axis so
    that ONNX shape inference keeps T and N (a Shape -> Slice of the table gives a dimension it cannot name)."""
    xt = b.ins[0]
    t, d = xt.shape[1], xt.shape[2]
    if isinstance(t, int):
        return b.op("Add", [x[0], b.const(sinusoid_table(t, d).astype(np.float32), hint="pe")])
    table = b.const(sinusoid_table(node.attrs.max_len, d).astype(np.float32), hint="pe_table")
    one = b.const(np.array(1, np.int64), hint="one")
    col = b.op("Slice", [x[0], b.ints([0]), b.ints([1]), b.ints([2])])     # [N, T, 1]
    zeros = b.op("ArgMax", [col], axis=2, keepdims=0)           # [N, T] int64 0 (a 1-long axis: NaN-proof)
    zeros = b.op("ReduceSum", [zeros, b.ints([0])], keepdims=0)  # [T] (0 for N = 0 too)
    axis0 = b.const(np.array(0, np.int64), hint="axis")
    pos = b.op("CumSum", [b.op("Add", [zeros, one]), axis0], exclusive=1)   # 0, 1, .., T-1
    pe = b.op("Gather", [table, pos], axis=0)                   # [T, d]; T > max_len: onnxruntime refuses
    return b.op("Add", [x[0], pe])
