"""Graph layers on a dense adjacency: GCN, GAT and plain message passing (graph_aggregate).

Conventions shared by the three ops: node features x (float) are [V, F] (one graph) or [N, V, F] (a batch of
graphs with the same node count); the adjacency is [V, V] or [N, V, V] (float weights, or bool/int 0-1),
and a [V, V] adjacency with a batched x is shared by every graph. Row i of the adjacency lists the
nodes that node i gathers from: j is a neighbour of i when adj[i, j] != 0 (PyG's edge_index = adj.nonzero()
is the transposed reading; both agree on undirected, symmetric graphs). For an unbatched [V, F] input the
MAC count is for the whole graph (the graph is the sample).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from ..errors import ShapeError
from ..ir import Dim, Init, Node, ParamSpec, TensorType
from .attention import masked_softmax, masked_softmax_torch
from .cases import Case, In
from .lazy import F, np, torch
from .registry import DTYPES, Attrs, Inferred, lowering, op, reference
from .shapes import broadcast, concrete, float_input, only_by_luck

if TYPE_CHECKING:
    from ..onnx.registry import Builder

ADJ = In((5, 5), low=0, high=2, integer=True)      # a 0/1 adjacency, for the test cases


def _clash(a: Dim, b: Dim) -> bool:
    return isinstance(a, int) and isinstance(b, int) and a != b


def _count(d: Dim) -> int:
    return d if isinstance(d, int) else 1


def graph_inputs(name: str, x: TensorType, adj: TensorType) -> tuple[tuple[Dim, ...], Dim, int]:
    """Check x [V, F] / [N, V, F] against adj [V, V] / [N, V, V]; return (leading dims, V, F)."""
    if x.rank not in (2, 3):
        raise ShapeError(f"{name} expects node features [V, F] or a batch [N, V, F], but x has shape {x}")
    if adj.rank not in (2, 3):
        raise ShapeError(f"{name} expects a dense adjacency [V, V] or a batch [N, V, V], but adj has shape {adj}")
    float_input(name, "x", x, hint="declare the node features x as float32")
    v = x.shape[-2]
    rows, cols = adj.shape[-2:]
    if rows != cols:                # two numbers, a number and a symbol, or two symbols: only equal ones are square
        raise ShapeError(f"{name} needs a square adjacency matrix, but adj has shape {adj}{only_by_luck(rows, cols)}",
                         hint="declare the adjacency as [V, V] (one number or one symbol for both)")
    for dim in adj.shape[-2:]:
        if _clash(dim, v):
            raise ShapeError(f"{name}: x has {v} nodes (shape {x}) but the adjacency is {adj.shape[-1]}×"
                             f"{adj.shape[-1]} (shape {adj})", hint="adj must be [V, V] for V nodes")
    try:
        lead = broadcast(x.shape[:-2], adj.shape[:-2])
    except ShapeError:
        raise ShapeError(f"{name}: x (shape {x}) and adj (shape {adj}) have different batch sizes") from None
    f = concrete(x.shape[-1], f"{name}'s node feature size (the last dimension of x)")
    return lead, v, f


# --- gcn_conv -----------------------------------------------------------------------------------

class GCNConv(Attrs):
    out_features: int
    bias: bool = True
    add_self_loops: bool = True
    normalize: bool = True


@op("gcn_conv", GCNConv, inputs=["x", "adj"], primary="out_features",
    cases=[Case({"out_features": 3}, ((5, 4), ADJ)),
           Case({"out_features": 6, "normalize": False, "add_self_loops": False}, ((2, 5, 4), ADJ))])
def gcn_conv(a: GCNConv, x: TensorType, adj: TensorType) -> Inferred:
    """Kipf & Welling's graph convolution: D^-1/2 Â D^-1/2 X Wᵀ + b (no activation).

    Â = A + I when add_self_loops (the catalogue's formula; PyG's add_remaining_self_loops instead keeps an
    existing self-loop weight, which agrees when A has no self-loops), D_ii = Σ_j Â_ij (row sums); a node of
    degree 0 gets 0 in D^-1/2 (not inf). Without normalize: Â X Wᵀ + b. Adjacency weights are used as given.
    Parameters as PyG's GCNConv: weight [out, in] (glorot = xavier_uniform), bias [out] (zeros).
    The gradient reaches x, the parameters and a float adjacency (which is usually a constant).
    """
    lead, v, f = graph_inputs("gcn_conv", x, adj)
    if a.out_features < 1:
        raise ShapeError(f"out_features must be positive, got {a.out_features}", attr="out_features")
    params = [ParamSpec("weight", (a.out_features, f), Init.of("xavier_uniform"))]
    if a.bias:
        params.append(ParamSpec("bias", (a.out_features,), Init.of("zeros")))
    cv = _count(v)
    macs = cv * f * a.out_features + cv * cv * min(f, a.out_features)
    return Inferred([TensorType(lead + (v, a.out_features), x.dtype)], params, macs=macs)


@lowering("gcn_conv")
def gcn_conv_onnx(b: Builder, node: Node, x: list, p: list) -> str:
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


@reference("gcn_conv")
def _gcn_conv(c, x, adj, w, b=None):
    a = c.a
    A = _adj_float(adj, x.dtype)
    s = None
    if a.normalize:
        deg = A.sum(-1)
        if a.add_self_loops:
            deg = deg + 1
        s = torch.where(deg > 0, deg.clamp_min(1e-30).rsqrt(), torch.zeros_like(deg)).unsqueeze(-1)

    def prop(z):                                      # (S Â S) z without forming Â = A + I
        zs = z * s if s is not None else z
        y = torch.matmul(A, zs)
        if a.add_self_loops:
            y = y + zs
        return y * s if s is not None else y

    y = prop(F.linear(x, w)) if w.shape[0] < w.shape[1] else F.linear(prop(x), w)
    return y + b if b is not None else y


# --- gat_conv -----------------------------------------------------------------------------------

class GATConv(Attrs):
    out_features: int
    heads: int = 1
    concat: bool = True
    negative_slope: float = 0.2
    bias: bool = True
    add_self_loops: bool = True


@op("gat_conv", GATConv, inputs=["x", "adj"], primary="out_features",
    cases=[Case({"out_features": 3}, ((5, 4), ADJ), fixed=(1,)),
           Case({"out_features": 2, "heads": 3, "concat": False}, ((2, 5, 4), ADJ), fixed=(1,))])
def gat_conv(a: GATConv, x: TensorType, adj: TensorType) -> Inferred:
    """PyG's GATConv on a dense adjacency: out_i = Σ_j α_ij W x_j per head, heads concatenated or averaged, + b.

    e_ij = LeakyReLU(a_dstᵀ W x_i + a_srcᵀ W x_j) over the neighbours j of i (adj[i, j] != 0, plus i itself
    when add_self_loops; edge weights are ignored), α = softmax over j; a node with no neighbour gets 0.
    No attention dropout. Parameters: weight [heads·out, in] (glorot), att_src / att_dst [1, heads, out]
    (PyG's glorot: U(±√(6 / (heads + out)))), bias [heads·out] if concat else [out] (zeros).
    """
    lead, v, f = graph_inputs("gat_conv", x, adj)
    if a.out_features < 1:
        raise ShapeError(f"out_features must be positive, got {a.out_features}", attr="out_features")
    if a.heads < 1:
        raise ShapeError(f"heads must be positive, got {a.heads}", attr="heads")
    h, c = a.heads, a.out_features
    att = Init.of("uniform", bound=math.sqrt(6.0 / (h + c)))
    params = [ParamSpec("weight", (h * c, f), Init.of("xavier_uniform")),
              ParamSpec("att_src", (1, h, c), att), ParamSpec("att_dst", (1, h, c), att)]
    width = h * c if a.concat else c
    if a.bias:
        params.append(ParamSpec("bias", (width,), Init.of("zeros")))
    cv = _count(v)
    macs = cv * f * h * c + 2 * cv * h * c + cv * cv * h * c
    return Inferred([TensorType(lead + (v, width), x.dtype)], params, macs=macs)


@lowering("gat_conv")
def gat_conv_onnx(b: Builder, node: Node, x: list, p: list) -> str:
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


@reference("gat_conv")
def _gat_conv(c, x, adj, w, att_src, att_dst, b=None):
    a = c.a
    h, ch = a.heads, a.out_features
    hx = F.linear(x, w)
    hx = hx.reshape(hx.shape[:-1] + (h, ch))                          # [.., V, H, C]
    ss = (hx * att_src).sum(-1)                                      # [.., V, H]
    sd = (hx * att_dst).sum(-1)
    e = sd.transpose(-1, -2).unsqueeze(-1) + ss.transpose(-1, -2).unsqueeze(-2)   # [.., H, Vi, Vj]
    e = F.leaky_relu(e, a.negative_slope)
    nb = adj != 0
    if a.add_self_loops:
        nb = nb | torch.eye(adj.shape[-1], dtype=torch.bool)
    alpha = masked_softmax_torch(e, (~nb).unsqueeze(-3))
    out = torch.matmul(alpha, hx.transpose(-2, -3))                  # [.., H, V, C]
    out = out.transpose(-2, -3)                                      # [.., V, H, C]
    out = out.reshape(out.shape[:-2] + (h * ch,)) if a.concat else out.mean(-2)
    return out + b if b is not None else out


# --- graph_aggregate ----------------------------------------------------------------------------

class GraphAggregate(Attrs):
    reduce: Literal["sum", "mean", "max"] = "sum"


@op("graph_aggregate", GraphAggregate, inputs=["x", "adj"], primary="reduce",
    cases=[Case({}, ((5, 4), ADJ)), Case({"reduce": "mean"}, ((2, 5, 4), ADJ), fixed=(1,)),
           Case({"reduce": "max"}, ((5, 4), ADJ), fixed=(1,))])
def graph_aggregate(a: GraphAggregate, x: TensorType, adj: TensorType) -> Inferred:
    """Message passing without parameters: out_i = reduce over neighbours j (adj[i, j] != 0) of adj[i, j]·x_j.

    The message from j to i is adj[i, j]·x_j, so a weighted adjacency weights the messages (a 0/1 one
    passes x_j as is): sum = A @ X; mean = A @ X divided by the number of neighbours (non-zero entries of
    row i); max = elementwise max of the messages. Isolated nodes get 0. No self-loops are added.
    Gradients reach x and a float adjacency (for mean and max only through its non-zero entries).
    """
    lead, v, f = graph_inputs("graph_aggregate", x, adj)
    cv = _count(v)
    return Inferred([TensorType(lead + (v, f), x.dtype)], macs=cv * cv * f)


@lowering("graph_aggregate")
def graph_aggregate_onnx(b: Builder, node: Node, x: list, p: list) -> str:
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


@reference("graph_aggregate")
def _graph_aggregate(c, x, adj):
    A = _adj_float(adj, x.dtype)
    r = c.a.reduce
    if r == "sum":
        return torch.matmul(A, x)
    nb = adj != 0
    if r == "mean":
        cnt = nb.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)
        return torch.matmul(A, x) / cnt
    msg = A.unsqueeze(-1) * x.unsqueeze(-3)                          # [.., Vi, Vj, F]
    msg = msg.masked_fill(~nb.unsqueeze(-1), float("-inf"))
    out = msg.amax(-2)
    return out.masked_fill(~nb.any(-1, keepdim=True), 0.0)


# ---------------------------------------------------------------- helpers of the ONNX lowerings

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


# ---------------------------------------------------------------- helpers of the PyTorch references

def _adj_float(adj: torch.Tensor, dtype) -> torch.Tensor:
    return adj if adj.dtype == dtype else adj.to(dtype)
