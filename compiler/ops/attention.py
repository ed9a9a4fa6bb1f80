"""Attention: scaled dot-product attention, multi-head attention, sinusoidal positional encoding."""
from __future__ import annotations

import math
from typing import Literal

from ..errors import ShapeError
from ..ir import Dim, Init, ParamSpec, TensorType
from .registry import Attrs, Inferred, op
from .shapes import broadcast, concrete, float_input, per_sample


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
                         hint="compare to build it, e.g. `tokens == pad_id`; masks here follow PyTorch's "
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
    optional=["mask"])
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
    if _clash(k.shape[-2], v.shape[-2]):
        raise ShapeError(f"scaled_dot_product_attention needs as many values as keys, but k has "
                         f"{k.shape[-2]} (shape {k}) and v has {v.shape[-2]} (shape {v})")
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
    optional=["key", "value", "key_padding_mask"], ports=["out", "weights"], primary="num_heads")
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
    if _clash(v.shape[1], tk):
        raise ShapeError(f"multi_head_attention needs as many values as keys, but key has {tk} positions "
                         f"(shape {k}) and value has {v.shape[1]} (shape {v})")
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


@op("positional_encoding", PositionalEncoding)
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
