"""Graph layers on a dense adjacency, lowered onto MatMul, ReduceSum, Where and Softmax."""
from __future__ import annotations

import numpy as np

from ..ir import Node
from .attention import masked_softmax
from .registry import DTYPES, Builder, lowering


def float_adj(b: Builder, adj: str) -> str:
    t = b.ins[1]
    want = b.ins[0].dtype
    return adj if t.dtype == want else b.op("Cast", [adj], to=DTYPES[want])


def f32(b: Builder, value: float, hint: str = "const") -> str:
    return b.const(np.array(value, np.float32), hint=hint)


def eye_bool(b: Builder, adj: str) -> str:
    """Bool [V, V] identity: a constant when V is known, else Equal of two Ranges over V."""
    v = b.ins[1].shape[-1]
    if isinstance(v, int):
        return b.const(np.eye(v, dtype=bool), hint="eye")
    n = b.op("Squeeze", [b.op("Shape", [adj], start=-1), b.ints([0])])
    i = b.op("Range", [b.const(np.array(0, np.int64)), n, b.const(np.array(1, np.int64))])
    return b.op("Equal", [b.op("Unsqueeze", [i, b.ints([1])]), b.op("Unsqueeze", [i, b.ints([0])])])


def nonzero(b: Builder, adj: str) -> str:
    """Bool adj != 0."""
    if b.ins[1].dtype == "bool":
        return adj
    zero = b.const(np.array(0, dtype=np.float32 if b.ins[1].dtype == "float32" else
                            {"float64": np.float64, "int64": np.int64}[b.ins[1].dtype]), hint="zero")
    return b.op("Not", [b.op("Equal", [adj, zero])])


@lowering("gcn_conv")
def gcn_conv(b: Builder, node: Node, x: list, p: list) -> str:
    a = node.attrs
    xs, adj = x
    A = float_adj(b, adj)
    s = None
    if a.normalize:
        deg = b.op("ReduceSum", [A, b.ints([-1])], keepdims=1)             # [.., V, 1]
        if a.add_self_loops:
            deg = b.op("Add", [deg, f32(b, 1.0, "one")])
        pos = b.op("Greater", [deg, f32(b, 0.0, "zero")])
        s = b.op("Where", [pos, b.op("Pow", [deg, f32(b, -0.5, "neg_half")]), f32(b, 0.0, "zero")])

    def prop(z: str) -> str:
        zs = b.op("Mul", [z, s]) if s else z
        y = b.op("MatMul", [A, zs])
        if a.add_self_loops:
            y = b.op("Add", [y, zs])
        return b.op("Mul", [y, s]) if s else y

    wt = b.op("Transpose", [p[0]], perm=[1, 0])
    out_f, in_f = node.params[0].shape
    y = prop(b.op("MatMul", [xs, wt])) if out_f < in_f else b.op("MatMul", [prop(xs), wt])
    return b.op("Add", [y, p[1]]) if a.bias else y


@lowering("gat_conv")
def gat_conv(b: Builder, node: Node, x: list, p: list) -> str:
    a = node.attrs
    h, c = a.heads, a.out_features
    xs, adj = x
    weight, att_src, att_dst = p[:3]
    rank = b.ins[0].rank
    hx = b.op("MatMul", [xs, b.op("Transpose", [weight], perm=[1, 0])])   # [.., V, H*C]
    if rank == 2:
        hh = b.op("Transpose", [b.op("Reshape", [hx, b.ints([-1, h, c])])], perm=[1, 0, 2])
    else:
        hh = b.op("Transpose", [b.op("Reshape", [hx, b.ints([0, -1, h, c])])], perm=[0, 2, 1, 3])
    # hh: [.., H, V, C]; scores per node: hh @ att[h] as [H, C, 1] -> [.., H, V, 1]
    s_src = b.op("MatMul", [hh, b.op("Reshape", [att_src, b.ints([h, c, 1])])])
    s_dst = b.op("MatMul", [hh, b.op("Reshape", [att_dst, b.ints([h, c, 1])])])
    perm = list(range(rank - 1)) + [rank, rank - 1]                        # swap the last two axes
    z = b.op("Add", [s_dst, b.op("Transpose", [s_src], perm=perm)])        # [.., H, V, V]
    z = b.op("LeakyRelu", [z], alpha=float(a.negative_slope))
    m = nonzero(b, adj)
    if a.add_self_loops:
        m = b.op("Or", [m, eye_bool(b, adj)])
    ignore = b.op("Unsqueeze", [b.op("Not", [m]), b.ints([-3])])           # [.., 1, V, V]
    o = b.op("MatMul", [masked_softmax(b, z, [ignore]), hh])               # [.., H, V, C]
    if a.concat:
        if len(node.out.shape) == 2:
            y = b.op("Reshape", [b.op("Transpose", [o], perm=[1, 0, 2]), b.ints([-1, h * c])])
        else:
            y = b.op("Reshape", [b.op("Transpose", [o], perm=[0, 2, 1, 3]), b.ints([0, -1, h * c])])
    else:
        y = b.op("ReduceSum", [o, b.ints([-3])], keepdims=0)
        y = b.op("Mul", [y, f32(b, 1.0 / h, "inv_heads")])
    return b.op("Add", [y, p[3]]) if a.bias else y


@lowering("graph_aggregate")
def graph_aggregate(b: Builder, node: Node, x: list, p: list) -> str:
    red = node.attrs.reduce
    xs, adj = x
    A = float_adj(b, adj)
    if red == "sum":
        return b.op("MatMul", [A, xs])
    nz = nonzero(b, adj)
    if red == "mean":
        cnt = b.op("ReduceSum", [b.op("Cast", [nz], to=DTYPES[b.ins[0].dtype]), b.ints([-1])], keepdims=1)
        return b.op("Div", [b.op("MatMul", [A, xs]), b.op("Max", [cnt, f32(b, 1.0, "one")])])
    # max: dense messages [.., V(i), V(j), F] = adj[i, j] x_j, non-neighbours at -inf, max over j
    msg = b.op("Mul", [b.op("Unsqueeze", [A, b.ints([-1])]), b.op("Unsqueeze", [xs, b.ints([-3])])])
    nz4 = b.op("Unsqueeze", [nz, b.ints([-1])])
    msg = b.op("Where", [nz4, msg, f32(b, -np.inf, "neg_inf")])
    if b.opset >= 18:
        mx = b.op("ReduceMax", [msg, b.ints([-2])], keepdims=0)
    else:
        mx = b.op("ReduceMax", [msg], axes=[-2], keepdims=0)
    cnt = b.op("ReduceSum", [b.op("Cast", [nz], to=DTYPES[b.ins[0].dtype]), b.ints([-1])], keepdims=1)
    has = b.op("Greater", [cnt, f32(b, 0.0, "zero")])                    # [.., V, 1]: any neighbour
    return b.op("Where", [has, mx, f32(b, 0.0, "zero")])
