"""Attention: scaled dot-product attention, multi-head attention, sinusoidal positional encoding."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from ..errors import ShapeError
from ..ir import Dim, Init, Node, ParamSpec, TensorType
from .cases import Case, In
from .lazy import F, np, torch
from .registry import DTYPES, Attrs, Inferred, lowering, op, reference
from .shapes import broadcast, concrete, float_input, only_by_luck, per_sample

if TYPE_CHECKING:
    from ..onnx.registry import Builder


def _fmt(shape: tuple[Dim, ...]) -> str:
    return "×".join(str(d) for d in shape) or "scalar"


def _clash(a: Dim, b: Dim) -> bool:
    """Two sizes that certainly differ (symbols may stand for anything)."""
    return isinstance(a, int) and isinstance(b, int) and a != b


def _count(d: Dim) -> int:
    return d if isinstance(d, int) else 1


def _check_mask(mask: TensorType, what: str) -> None:
    if mask.dtype != "bool":
        raise ShapeError(f"{what} must be boolean (True = ignore this position), but it is {mask.dtype} "
                         f"(shape {mask})",
                         hint="compare to build it, e.g. `{op: eq, in: tokens, value: 0}` (0 the padding id), or "
                              "`{op: cast, dtype: bool}`; masks here follow PyTorch's "
                              "key_padding_mask convention (True = ignore), not SDPA's attn_mask")


# --- scaled_dot_product_attention --------------------------------------------------------------

class ScaledDotProductAttention(Attrs):
    causal: bool = False
    scale: float | None = None


def sdpa_mask_shape(mask: tuple[Dim, ...], scores: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """The shape a mask takes against scores [..., Tq, Tk]: a rank-2 mask with scores of rank >= 3
    is a key-padding mask [N, Tk] and reads as [N, 1, ..., 1, Tk]; any other mask broadcasts as is."""
    if len(mask) == 2 and len(scores) >= 3:
        return (mask[0],) + (1,) * (len(scores) - 2) + (mask[1],)
    return mask


@op("scaled_dot_product_attention", ScaledDotProductAttention, inputs=["q", "k", "v", "mask"],
    optional=["mask"],
    cases=[Case({}, ((2, 3, 4), (2, 5, 4), (2, 5, 3), None)),
           Case({"causal": True, "scale": 0.5}, ((2, 2, 4, 3), (2, 2, 4, 3), (2, 2, 4, 3), None)),
           Case({}, ((2, 3, 4), (2, 5, 4), (2, 5, 3), In((2, 5), "bool")))])
def scaled_dot_product_attention(a: ScaledDotProductAttention, q: TensorType, k: TensorType, v: TensorType,
                                 mask: TensorType | None = None) -> Inferred:
    """softmax(q kᵀ · scale + masks) v, with scale = 1/√d unless given.

    q [..., Tq, d], k [..., Tk, d], v [..., Tk, dv] (leading dims broadcast) give [..., Tq, dv].
    `mask` is boolean with True = ignore (PyTorch's key_padding_mask convention, the opposite of the
    boolean attn_mask of torch's SDPA). Rule: when the mask has rank 2 and the scores [..., Tq, Tk] have
    rank 3 or more, it is a key-padding mask [N, Tk], read as [N, 1, ..., 1, Tk]; any other mask must
    broadcast (NumPy rules) to [..., Tq, Tk] — so give a [Tq, Tk] attention mask for batched inputs as
    [1, Tq, Tk]. `causal` ignores keys after the query's position (top-left aligned, as torch's is_causal).
    A query whose keys are all ignored gets zero weights and a zero output (as torch's SDPA), not NaN.
    """
    for t, nm in ((q, "q"), (k, "k"), (v, "v")):
        float_input("scaled_dot_product_attention", nm, t, hint="queries, keys and values are float32 features")
        if t.rank < 2:
            raise ShapeError(f"scaled_dot_product_attention expects {nm} of rank >= 2 ([..., T, d]), "
                             f"but {nm} has shape {t}")
    if _clash(q.shape[-1], k.shape[-1]):
        raise ShapeError(f"scaled_dot_product_attention needs q and k with the same feature size d, but q "
                         f"gives {q.shape[-1]} (shape {q}) and k gives {k.shape[-1]} (shape {k})")
    if k.shape[-2] != v.shape[-2]:              # a number and a symbol, or two symbols, match only by luck
        raise ShapeError(f"scaled_dot_product_attention needs as many values as keys, but k has "
                         f"{k.shape[-2]} (shape {k}) and v has {v.shape[-2]} (shape {v})"
                         f"{only_by_luck(k.shape[-2], v.shape[-2])}",
                         hint="take keys and values from one sequence length")
    try:
        lead = broadcast(broadcast(q.shape[:-2], k.shape[:-2]), v.shape[:-2])
    except ShapeError as e:
        raise ShapeError(f"scaled_dot_product_attention: the leading (batch) dims of q {q}, k {k} and v {v} "
                         f"do not broadcast: {e.message}") from None
    tq, tk, d, dv = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    if a.scale is None:                     # the default scale 1/√d is a constant in the exported graph
        concrete(d, "scaled_dot_product_attention's feature size d (the last dimension of q; the default scale "
                    "is 1/√d)", attr="scale")
    scores = lead + (tq, tk)
    if mask is not None:
        _check_mask(mask, "scaled_dot_product_attention's mask")
        m = sdpa_mask_shape(mask.shape, scores)
        try:
            ok = broadcast(m, scores) == scores
        except ShapeError:
            ok = False
        if not ok:
            extra = (" A rank-2 mask with batched inputs is read as a key-padding mask [N, Tk];"
                     " give a [Tq, Tk] attention mask as [1, Tq, Tk]." if m != mask.shape else "")
            raise ShapeError(f"scaled_dot_product_attention's mask (shape {mask}) does not broadcast to the "
                             f"attention scores [..., Tq, Tk] = {_fmt(scores)}.{extra}",
                             hint="a mask is [N, Tk] (key padding) or broadcastable to [..., Tq, Tk]")
    out = TensorType(lead + (tq, dv), q.dtype)
    per = 1 if len(lead) <= 1 else _count_all(lead[1:])
    macs = per * _count(tq) * _count(tk) * (_count(d) + _count(dv))
    return Inferred([out], macs=macs)


@lowering("scaled_dot_product_attention")
def scaled_dot_product_attention_onnx(b: Builder, node: Node, x: list, p: list) -> str:
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
            mask = b.op("Cast", [mask], to=DTYPES["bool"])
        if mt.rank == 2 and rank >= 3:                          # key-padding mask [N, Tk] -> [N, 1.., Tk]
            mask = b.op("Unsqueeze", [mask, b.ints(list(range(1, rank - 1)))])
        masks.append(mask)
    return b.op("MatMul", [masked_softmax(b, s, masks), v])


@reference("scaled_dot_product_attention")
def _sdpa(c, q, k, v, mask=None):
    d = q.shape[-1]
    scale = c.a.scale if c.a.scale is not None else 1.0 / math.sqrt(d)
    s = torch.matmul(q, k.transpose(-2, -1)) * scale
    m = None
    if mask is not None:
        m = mask.bool()
        if m.dim() == 2 and s.dim() >= 3:             # key padding [N, Tk] -> [N, 1, .., 1, Tk]
            m = m.reshape((m.shape[0],) + (1,) * (s.dim() - 2) + (m.shape[1],))
    if c.a.causal:
        cm = _causal_mask(s.shape[-2], s.shape[-1])
        m = cm if m is None else (m | cm)
    return torch.matmul(masked_softmax_torch(s, m), v)


def _count_all(dims: tuple[Dim, ...]) -> int:
    n = 1
    for d in dims:
        n *= _count(d)
    return n


# --- multi_head_attention ----------------------------------------------------------------------

class MultiHeadAttention(Attrs):
    num_heads: int
    bias: bool = True
    causal: bool = False
    embed_dim: int | None = None
    dropout: float = 0.0


def _divisors(e: int, limit: int = 100_000) -> str:
    """': 1, 2, 4, ...' when e is small enough to list them quickly (a huge e made the hint hang)."""
    if e > limit:
        return ""
    return ": " + ", ".join(str(h) for h in range(1, e + 1) if e % h == 0)


@op("multi_head_attention", MultiHeadAttention, inputs=["query", "key", "value", "key_padding_mask"],
    optional=["key", "value", "key_padding_mask"], ports=["out", "weights"], primary="num_heads",
    cases=[Case({"num_heads": 2}, ((2, 3, 4), None, None, None)),
           Case({"num_heads": 2, "causal": True, "bias": False}, ((2, 3, 4), (2, 5, 4), (2, 5, 4), None)),
           Case({"num_heads": 1}, ((2, 3, 4), (2, 5, 4), None, In((2, 5), "bool")))])
def multi_head_attention(a: MultiHeadAttention, query: TensorType, key: TensorType | None = None,
                         value: TensorType | None = None, key_padding_mask: TensorType | None = None) -> Inferred:
    """PyTorch's nn.MultiheadAttention(batch_first=True): `out` [N, Tq, E] and head-averaged `weights` [N, Tq, Tk].

    key defaults to query and value to key. key_padding_mask [N, Tk] is boolean, True = ignore that key.
    `causal` ignores keys after the query's position. `dropout` drops attention weights in training only
    (the `weights` port then shows the dropped weights, as PyTorch). Key and value must have the query's
    embedding size (PyTorch's kdim/vdim are not supported). A query whose keys are all masked gets zero
    weights (PyTorch gives NaN there). Parameters as PyTorch: in_proj_weight [3E, E] (q, k, v stacked),
    in_proj_bias [3E], out_proj.weight [E, E], out_proj.bias [E].
    """
    if query.rank != 3:
        raise ShapeError(f"multi_head_attention expects a batch-first query [N, T, E], but it has shape {query}")
    n, tq = query.shape[0], query.shape[1]
    e = concrete(query.shape[2], "multi_head_attention's embedding size (the query's last dimension)")
    if a.embed_dim is not None and a.embed_dim != e:
        raise ShapeError(f"multi_head_attention expects embed_dim {a.embed_dim} (embed_dim: {a.embed_dim}) "
                         f"but its query gives {e} (shape {query})",
                         hint="drop embed_dim to infer it from the query", attr="embed_dim")
    if a.num_heads < 1:
        raise ShapeError(f"num_heads must be positive, got {a.num_heads}", attr="num_heads")
    if e % a.num_heads:
        raise ShapeError(f"multi_head_attention splits the embedding into num_heads equal parts, but "
                         f"embed_dim {e} is not divisible by num_heads {a.num_heads}",
                         hint=f"choose num_heads among the divisors of {e}" + _divisors(e), attr="num_heads")
    if not 0.0 <= a.dropout < 1.0:
        raise ShapeError(f"dropout must be in [0, 1), got {a.dropout}", attr="dropout")
    for t, nm in ((query, "query"), (key, "key"), (value, "value")):
        float_input("multi_head_attention", nm, t, hint="queries, keys and values are float32 features")
    k = key if key is not None else query
    v = value if value is not None else k
    for t, nm, kw in ((k, "key", "kdim"), (v, "value", "vdim")):
        if t.rank != 3:
            raise ShapeError(f"multi_head_attention expects a batch-first {nm} [N, T, E], but it has shape {t}")
        if _clash(t.shape[2], e):
            raise ShapeError(f"multi_head_attention's {nm} has {t.shape[2]} features (shape {t}) but the query "
                             f"has {e}: a {nm} size different from embed_dim (PyTorch's {kw}) is not supported",
                             hint=f"project the {nm} to {e} features with a linear layer first")
        if _clash(t.shape[0], n):
            raise ShapeError(f"multi_head_attention's {nm} has batch size {t.shape[0]} (shape {t}) but the "
                             f"query has {n} (shape {query})")
    tk = k.shape[1]
    if v.shape[1] != tk:                        # a number and a symbol, or two symbols, match only by luck
        raise ShapeError(f"multi_head_attention needs as many values as keys, but key has {tk} positions "
                         f"(shape {k}) and value has {v.shape[1]} (shape {v}){only_by_luck(tk, v.shape[1])}",
                         hint="take keys and values from one sequence length")
    if key_padding_mask is not None:
        _check_mask(key_padding_mask, "multi_head_attention's key_padding_mask")
        m = key_padding_mask
        if m.rank != 2 or _clash(m.shape[0], n) or _clash(m.shape[1], tk):
            raise ShapeError(f"multi_head_attention expects key_padding_mask [N, Tk] = {_fmt((n, tk))} "
                             f"(one flag per key), but it has shape {m}")
    params = [ParamSpec("in_proj_weight", (3 * e, e), Init.of("xavier_uniform"))]
    if a.bias:
        params.append(ParamSpec("in_proj_bias", (3 * e,), Init.of("zeros")))
    params.append(ParamSpec("out_proj.weight", (e, e), Init.of("kaiming_uniform", a=5 ** 0.5)))
    if a.bias:
        params.append(ParamSpec("out_proj.bias", (e,), Init.of("zeros")))
    out = TensorType((n, tq, e), query.dtype)
    weights = TensorType((n, tq, tk), query.dtype)
    cq, ck = _count(tq), _count(tk)
    macs = cq * e * e + 2 * ck * e * e + 2 * cq * ck * e + cq * e * e
    return Inferred([out, weights], params, macs=macs)


@lowering("multi_head_attention")
def multi_head_attention_onnx(b: Builder, node: Node, x: list, p: list) -> list:
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
        m = kpm if b.ins[3].dtype == "bool" else b.op("Cast", [kpm], to=DTYPES["bool"])
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


@reference("multi_head_attention")
def _mha(c, query, key=None, value=None, kpm=None, w_in=None, *rest):
    a = c.a
    if a.bias:
        b_in, w_out, b_out = rest
    else:
        b_in, (w_out,), b_out = None, rest, None
    key = query if key is None else key
    value = key if value is None else value
    e = query.shape[-1]
    want_w = len(c.wanted) > 1 and c.wanted[1]
    if kpm is None:
        # PyTorch's own path (what nn.MultiheadAttention(batch_first=True) runs), sequence-first inside
        q = query.transpose(0, 1)
        k = q if key is query else key.transpose(0, 1)
        v = k if value is key else value.transpose(0, 1)
        am = _causal_mask(query.shape[1], key.shape[1]) if a.causal else None
        out, w = F.multi_head_attention_forward(
            q, k, v, e, a.num_heads, w_in, b_in, None, None, False, a.dropout, w_out, b_out,
            training=c.training, need_weights=want_w, attn_mask=am, average_attn_weights=True,
            is_causal=a.causal)
        return out.transpose(0, 1), w
    # with a key padding mask: explicit, so that a query whose keys are all masked gets zeros (PyTorch: NaN)
    n, tq, tk, h = query.shape[0], query.shape[1], key.shape[1], a.num_heads
    hd = e // h
    wq, wk, wv = w_in.chunk(3)
    bq, bk, bv = b_in.chunk(3) if b_in is not None else (None, None, None)

    def heads(x, w, b, t):
        return F.linear(x, w, b).reshape(n, t, h, hd).transpose(1, 2)

    qh, kh, vh = heads(query, wq, bq, tq), heads(key, wk, bk, tk), heads(value, wv, bv, tk)
    s = torch.matmul(qh, kh.transpose(-2, -1)) / math.sqrt(hd)
    m = kpm.bool().reshape(n, 1, 1, tk)
    if a.causal:
        m = m | _causal_mask(tq, tk)
    p = masked_softmax_torch(s, m)
    if c.training and a.dropout > 0:
        p = F.dropout(p, a.dropout, True)
    o = torch.matmul(p, vh).transpose(1, 2).reshape(n, tq, e)
    return F.linear(o, w_out, b_out), (p.mean(1) if want_w else None)


# --- positional_encoding -----------------------------------------------------------------------

def sinusoid_table(t: int, d: int):
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d)) as float64 [t, d]
    (shared by the kernel and the ONNX lowering)."""
    import numpy as np

    pos = np.arange(t, dtype=np.float64)[:, None]
    even = np.arange(0, d, 2, dtype=np.float64)                 # the column index 2i
    angle = pos * np.exp(-math.log(10000.0) * even / d)         # pos / 10000^(2i/d)
    pe = np.empty((t, d))
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : d // 2])
    return pe


class PositionalEncoding(Attrs):
    kind: Literal["sinusoidal"] = "sinusoidal"
    max_len: int = 5000


@op("positional_encoding", PositionalEncoding,
    cases=[Case({}, ((2, 3, 6),))])
def positional_encoding(a: PositionalEncoding, x: TensorType) -> TensorType | Inferred:
    """x + PE[:T] with PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d)).

    Input [N, T, d]; no scaling of x, no dropout, no parameters. An odd d ends with a sine column.
    T may be at most max_len.
    """
    if x.rank != 3:
        raise ShapeError(f"positional_encoding expects a batch-first input [N, T, d], but it has shape {x}")
    float_input("positional_encoding", "input", x, hint="declare the input as float32 (token indices go through "
                                                        "an embedding first)")
    concrete(x.shape[2], "positional_encoding's feature size d (last dimension)")
    if not x.dtype.startswith("float"):
        raise ShapeError(f"positional_encoding adds sines and cosines to a floating-point input, but its input "
                         f"has dtype {x.dtype} (shape {x})", hint="embed integer tokens first (embedding)")
    if a.max_len < 1:
        raise ShapeError(f"max_len must be positive, got {a.max_len}", attr="max_len")
    t = x.shape[1]
    if isinstance(t, int) and t > a.max_len:
        raise ShapeError(f"positional_encoding covers at most max_len = {a.max_len} positions, but its input "
                         f"has {t} (shape {x})", hint=f"raise max_len to at least {t}", attr="max_len")
    return Inferred([TensorType(x.shape, x.dtype)], macs=per_sample(x))


@lowering("positional_encoding")
def positional_encoding_onnx(b: Builder, node: Node, x: list, p: list) -> str:
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


@reference("positional_encoding")
def _positional_encoding(c, x):
    t, d = x.shape[1], x.shape[2]
    key = (t, d, x.dtype)
    if key not in _PE:
        _PE[key] = torch.from_numpy(sinusoid_table(t, d)).to(x.dtype)
    return x + _PE[key]


# ---------------------------------------------------------------- helpers of the ONNX lowerings

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


# ---------------------------------------------------------------- helpers of the PyTorch references

def masked_softmax_torch(s: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax over the last dim ignoring mask==True; rows with every key ignored give zeros (not NaN)."""
    if mask is None:
        return F.softmax(s, -1)
    s = s.masked_fill(mask, float("-inf"))
    dead = mask.all(-1, keepdim=True)
    if bool(dead.any()):
        s = s.masked_fill(dead, 0.0)
        return F.softmax(s, -1).masked_fill(dead, 0.0)
    return F.softmax(s, -1)


def _causal_mask(tq: int, tk: int) -> torch.Tensor:
    return torch.ones(tq, tk, dtype=torch.bool).triu(1)


_PE: dict[tuple, torch.Tensor] = {}
