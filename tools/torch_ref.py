"""An independent PyTorch interpreter of a specc Graph: the reference for parity tests and benchmarks.

    import compiler, runtime
    from tools.torch_ref import TorchRef

    g = compiler.compile_file("specs/lenet5.yaml")
    model = runtime.Model(g, seed=0)
    ref = TorchRef(g, model.state_dict())          # same weights, torch parameters named as the state_dict
    out = ref(image=x, label=y, outputs=["logits", "loss"])   # {name: torch.Tensor}
    out["loss"].backward()                          # grads in ref.named_parameters(), same names

Every IR node runs as a small function of torch.nn.functional / torch ops (OPS below, one per op of
compiler.catalogue.ALL_OPS), following docs/ops.md and the spec language's section 6. Nothing here
uses specc's NumPy kernels: only the IR, and the compiler's geometry helpers (padding, pooling sizes,
the sinusoid table) that define what a spec means.

Parameters and buffers are registered in a tree of modules mirroring the dotted names, so
`ref.state_dict()` / `ref.named_parameters()` use exactly runtime.Model.state_dict()'s keys and
torch.load_state_dict works with them. batch_norm updates its running statistics (and
num_batches_tracked) in training mode as nn.BatchNorm does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compiler.ir import Graph, Node, Ref
from compiler.ops.attention import sinusoid_table
from compiler.ops.convolution import conv_pads, pool_geometry, transpose_output_padding, tup

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "bool": torch.bool,
                "int32": torch.int32}


class _Box(nn.Module):
    """A container for one level of the dotted parameter names."""

    def forward(self, *a):                                   # pragma: no cover - never called
        raise RuntimeError("_Box is a container")


@dataclass
class C:
    """What an op function gets besides its tensors."""

    a: Any                          # the node's attribute model
    node: Node
    training: bool
    symbols: dict[str, int]
    wanted: tuple[bool, ...]        # per output port: read by someone
    in_types: list                  # per input: compiler TensorType (None for an omitted one)
    fdtype: torch.dtype             # the float dtype the interpreter runs in


OPS: dict[str, Callable[..., Any]] = {}


def op(*names: str):
    def reg(fn):
        for n in names:
            OPS[n] = fn
        return fn
    return reg


def _bind(shape, symbols: dict[str, int]) -> list[int]:
    return [symbols[d] if isinstance(d, str) else d for d in shape]


def _ndims(dim, rank: int) -> list[int]:
    dims = [dim] if isinstance(dim, int) else list(dim)
    return sorted(d % rank if rank else 0 for d in dims)


def _float(c: C, x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.to(c.fdtype)


# ------------------------------------------------------------------------------------------ tensor

@op("identity")
def _identity(c, x):
    return x


@op("detach")
def _detach(c, x):
    return x.detach()


def _arith(fn):
    def run(c, a, b=None):
        if b is None:
            return fn(a, c.a.value)
        return fn(a, b)
    return run


OPS["add"] = _arith(torch.add)
OPS["sub"] = _arith(torch.sub)
OPS["mul"] = _arith(torch.mul)
OPS["div"] = _arith(torch.true_divide)


@op("matmul")
def _matmul(c, a, b):
    return torch.matmul(a, b)


@op("concat")
def _concat(c, *xs):
    return torch.cat(xs, dim=c.a.dim)


@op("split")
def _split(c, x):
    return tuple(torch.split(x, c.a.sections, dim=c.a.dim))


@op("reshape")
def _reshape(c, x):
    return x.reshape(_bind(c.a.shape, c.symbols))


@op("flatten")
def _flatten(c, x):
    if x.dim() == 0:
        return x.reshape(1)
    return torch.flatten(x, c.a.start_dim, c.a.end_dim)


@op("permute")
def _permute(c, x):
    return x.permute(*c.a.dims)


@op("transpose")
def _transpose(c, x):
    return x.transpose(c.a.dim0, c.a.dim1)


@op("squeeze")
def _squeeze(c, x):
    t = c.in_types[0]
    if c.a.dim is None:                       # static size-1 dims only: a symbol that is 1 at run time stays
        axes = [i for i, d in enumerate(t.shape) if d == 1]
    else:
        axes = _ndims(c.a.dim, x.dim())
    return x.squeeze(tuple(axes)) if axes else x


@op("unsqueeze")
def _unsqueeze(c, x):
    return x.unsqueeze(c.a.dim)


@op("slice")
def _slice(c, x):
    idx = [slice(None)] * x.dim()
    idx[c.a.dim] = slice(c.a.start, c.a.end, c.a.step)
    return x[tuple(idx)]


@op("select")
def _select(c, x):
    return x.select(c.a.dim, c.a.index)


def _axes(c, x) -> tuple[int, ...]:
    return tuple(range(x.dim())) if c.a.dim is None else tuple(_ndims(c.a.dim, x.dim()))


@op("sum")
def _sum(c, x):
    return torch.sum(x, dim=_axes(c, x), keepdim=c.a.keepdim)


@op("mean")
def _mean(c, x):
    return torch.mean(_float(c, x), dim=_axes(c, x), keepdim=c.a.keepdim)


@op("max")
def _max(c, x):
    return torch.amax(x, dim=_axes(c, x), keepdim=c.a.keepdim)


@op("expand")
def _expand(c, x):
    return x.expand(*_bind(c.a.shape, c.symbols))


@op("one_hot")
def _one_hot(c, x):
    return F.one_hot(x.long(), c.a.num_classes).to(c.fdtype)


@op("param")
def _param(c, p):
    return p


@op("constant")
def _constant(c):
    return torch.tensor(c.a.value, dtype=c.fdtype)


# ------------------------------------------------------------------------------------------ dense

@op("linear")
def _linear(c, x, w, b=None):
    return F.linear(x, w, b)


# ------------------------------------------------------------------------------------------ activations

OPS["relu"] = lambda c, x: F.relu(x)
OPS["sigmoid"] = lambda c, x: torch.sigmoid(x)
OPS["tanh"] = lambda c, x: torch.tanh(x)
OPS["sign"] = lambda c, x: torch.sign(x)
OPS["step"] = lambda c, x: (x > 0).to(x.dtype)
OPS["silu"] = lambda c, x: F.silu(x)
OPS["leaky_relu"] = lambda c, x: F.leaky_relu(x, c.a.negative_slope)
OPS["prelu"] = lambda c, x, w: F.prelu(x, w)
OPS["softplus"] = lambda c, x: F.softplus(x, c.a.beta, c.a.threshold)
OPS["gelu"] = lambda c, x: F.gelu(x, approximate=c.a.approximate)
OPS["elu"] = lambda c, x: F.elu(x, c.a.alpha)
OPS["log_softmax"] = lambda c, x: F.log_softmax(x, c.a.dim)


@op("softmax")
def _softmax(c, x):
    return F.softmax(x if c.a.temperature == 1.0 else x / c.a.temperature, c.a.dim)


# ------------------------------------------------------------------------------------------ convolution

def _conv(nd: int):
    fn = F.conv1d if nd == 1 else F.conv2d

    def run(c, x, w, b=None):
        a = c.a
        ks, dl = tuple(w.shape[2:]), tup(a.dilation, nd)
        pads = conv_pads(a.padding, ks, dl)
        if all(lo == hi for lo, hi in pads):
            pad = tuple(lo for lo, _ in pads)
        else:                                  # 'same' with an even total: the odd extra after (PyTorch)
            x = F.pad(x, [p for lo_hi in reversed(pads) for p in lo_hi])
            pad = 0
        return fn(x, w, b, tup(a.stride, nd), pad, dl, a.groups)
    return run


OPS["conv1d"] = _conv(1)
OPS["conv2d"] = _conv(2)


@op("conv_transpose2d")
def _conv_transpose2d(c, x, w, b=None):
    a = c.a
    opad = transpose_output_padding(a, tuple(x.shape[2:]))
    return F.conv_transpose2d(x, w, b, tup(a.stride, 2), tup(a.padding, 2), opad, a.groups, tup(a.dilation, 2))


@op("max_pool2d")
def _max_pool2d(c, x):
    ks, st, pd, dl, _ = pool_geometry(c.a, tuple(x.shape[2:]))
    return F.max_pool2d(x, ks, st, pd, dl, ceil_mode=c.a.ceil_mode)


@op("avg_pool2d")
def _avg_pool2d(c, x):
    ks, st, pd, _, _ = pool_geometry(c.a, tuple(x.shape[2:]))
    return F.avg_pool2d(x, ks, st, pd, ceil_mode=c.a.ceil_mode, count_include_pad=c.a.count_include_pad)


@op("adaptive_avg_pool2d")
def _adaptive_avg_pool2d(c, x):
    return F.adaptive_avg_pool2d(x, c.a.output_size)


@op("global_avg_pool2d")
def _global_avg_pool2d(c, x):
    return x.mean(dim=(2, 3))


@op("upsample")
def _upsample(c, x):
    sf = tuple(float(f) for f in tup(c.a.scale_factor, 2))
    if c.a.mode == "nearest":
        return F.interpolate(x, scale_factor=sf, mode="nearest")
    return F.interpolate(x, scale_factor=sf, mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------------------ normalisation

@op("batch_norm")
def _batch_norm(c, x, *p):
    a = c.a
    w, b = (p[0], p[1]) if a.affine else (None, None)
    rm, rv, nbt = p[-3:]
    if c.training:
        with torch.no_grad():
            nbt.add_(1)
        mom = a.momentum if a.momentum is not None else 1.0 / float(nbt)
        return F.batch_norm(x, rm, rv, w, b, True, mom, a.eps)
    return F.batch_norm(x, rm, rv, w, b, False, 0.0, a.eps)


@op("layer_norm")
def _layer_norm(c, x, w=None, b=None):
    ns = c.a.normalized_shape
    ns = (x.shape[-1],) if ns is None else ((ns,) if isinstance(ns, int) else tuple(ns))
    return F.layer_norm(x, ns, w, b, c.a.eps)


@op("dropout")
def _dropout(c, x):
    if not c.training or c.a.p == 0.0:
        return x
    return F.dropout(x, c.a.p, True)


@op("standardize")
def _standardize(c, x, mean, std):
    x = _float(c, x)
    shape = (-1,) + (1,) * (x.dim() - 2)
    return (x - mean.to(x.dtype).view(shape)) / std.to(x.dtype).view(shape)


# ------------------------------------------------------------------------------------------ sequence

@op("embedding")
def _embedding(c, x, w):
    pad = c.a.padding_idx
    if pad is not None:
        pad %= c.a.num_embeddings
    return F.embedding(x.long(), w, padding_idx=pad)


def _recurrent(kind: str):
    def run(c, x, *rest):
        a = c.a
        n_state = 2 if kind == "lstm" else 1
        states, flat = rest[:n_state], list(rest[n_state:])
        d = 2 if a.bidirectional else 1
        n = x.shape[0] if a.batch_first else x.shape[1]
        zeros = None
        hx = []
        for s in states:
            if s is None:
                if zeros is None:
                    zeros = torch.zeros(a.num_layers * d, n, a.hidden_size, dtype=x.dtype)
                s = zeros
            hx.append(s)
        args = (flat, a.bias, a.num_layers, a.dropout, c.training, a.bidirectional, a.batch_first)
        if kind == "lstm":
            out, h, cc = torch._VF.lstm(x, tuple(hx), *args)
            return out, h, cc
        fn = {"gru": torch._VF.gru, "rnn": torch._VF.rnn_relu if getattr(a, "nonlinearity", "tanh") == "relu"
              else torch._VF.rnn_tanh}[kind]
        out, h = fn(x, hx[0], *args)
        return out, h
    return run


OPS["rnn"] = _recurrent("rnn")
OPS["lstm"] = _recurrent("lstm")
OPS["gru"] = _recurrent("gru")


# ------------------------------------------------------------------------------------------ attention

def _masked_softmax(s: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
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


@op("scaled_dot_product_attention")
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
    return torch.matmul(_masked_softmax(s, m), v)


@op("multi_head_attention")
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
    p = _masked_softmax(s, m)
    if c.training and a.dropout > 0:
        p = F.dropout(p, a.dropout, True)
    o = torch.matmul(p, vh).transpose(1, 2).reshape(n, tq, e)
    return F.linear(o, w_out, b_out), (p.mean(1) if want_w else None)


_PE: dict[tuple, torch.Tensor] = {}


@op("positional_encoding")
def _positional_encoding(c, x):
    t, d = x.shape[1], x.shape[2]
    key = (t, d, x.dtype)
    if key not in _PE:
        _PE[key] = torch.from_numpy(sinusoid_table(t, d)).to(x.dtype)
    return x + _PE[key]


# ------------------------------------------------------------------------------------------ graph

def _adj_float(adj: torch.Tensor, dtype) -> torch.Tensor:
    return adj if adj.dtype == dtype else adj.to(dtype)


@op("gcn_conv")
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


@op("gat_conv")
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
    alpha = _masked_softmax(e, (~nb).unsqueeze(-3))
    out = torch.matmul(alpha, hx.transpose(-2, -3))                  # [.., H, V, C]
    out = out.transpose(-2, -3)                                      # [.., V, H, C]
    out = out.reshape(out.shape[:-2] + (h * ch,)) if a.concat else out.mean(-2)
    return out + b if b is not None else out


@op("graph_aggregate")
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


# ------------------------------------------------------------------------------------------ generative

@op("reparameterize")
def _reparameterize(c, mu, logvar):
    if not c.training:
        return mu
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def _reduce(t: torch.Tensor, reduction: str) -> torch.Tensor:
    return t.mean() if reduction == "mean" else t.sum() if reduction == "sum" else t


@op("kl_normal")
def _kl_normal(c, mu, logvar):
    t = 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar)
    per = t.sum(dim=tuple(range(1, t.dim()))) if t.dim() > 1 else t
    return _reduce(per, c.a.reduction)


# ------------------------------------------------------------------------------------------ similarity

OPS["cosine_similarity"] = lambda c, x1, x2: F.cosine_similarity(x1, x2, c.a.dim, c.a.eps)
OPS["pairwise_distance"] = lambda c, x1, x2: F.pairwise_distance(x1, x2, c.a.p, c.a.eps, c.a.keepdim)


# ------------------------------------------------------------------------------------------ losses

OPS["mse_loss"] = lambda c, i, t: F.mse_loss(i, t.to(i.dtype), reduction=c.a.reduction)
OPS["l1_loss"] = lambda c, i, t: F.l1_loss(i, t.to(i.dtype), reduction=c.a.reduction)
OPS["bce_loss"] = lambda c, i, t: F.binary_cross_entropy(i, t.to(i.dtype), reduction=c.a.reduction)
OPS["bce_with_logits"] = lambda c, i, t: F.binary_cross_entropy_with_logits(i, t.to(i.dtype),
                                                                            reduction=c.a.reduction)
OPS["nll_loss"] = lambda c, i, t: F.nll_loss(i, t.long(), reduction=c.a.reduction)


@op("cross_entropy")
def _cross_entropy(c, i, t):
    t = t.to(i.dtype) if t.is_floating_point() else t.long()
    return F.cross_entropy(i, t, reduction=c.a.reduction, label_smoothing=c.a.label_smoothing)


# ------------------------------------------------------------------------------------------ the module

@dataclass
class _Step:
    node: Node
    fn: Callable
    ins: list[tuple[str, str | None] | None]
    params: list[tuple[nn.Module, str]]
    ports: list[str]
    wanted: tuple[bool, ...]
    in_types: list


@dataclass
class _Plan:
    steps: list[_Step]
    inputs: list[str]
    refs: dict[str, tuple[str, str | None]]


class TorchRef(nn.Module):
    """A specc Graph as a torch.nn.Module; parameters and buffers named as runtime.Model.state_dict()."""

    def __init__(self, graph: Graph, state_dict: Mapping[str, Any] | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        missing = sorted({n.op for n in graph.nodes} - set(OPS))
        if missing:
            raise NotImplementedError(f"torch_ref has no function for op(s) {', '.join(missing)}")
        object.__setattr__(self, "_graph", graph)
        object.__setattr__(self, "_fdtype", dtype)
        self._slots: dict[str, tuple[nn.Module, str]] = {}
        self._plans: dict[tuple, _Plan] = {}
        self._nodes = {n.name: n for n in graph.nodes}
        for name, (spec, _node) in graph.params().items():
            *path, leaf = name.split(".")
            mod: nn.Module = self
            for part in path:
                if part not in mod._modules:
                    mod.add_module(part, _Box())
                mod = mod._modules[part]
            dt = TORCH_DTYPES.get(spec.dtype, torch.float32)
            dt = dtype if dt.is_floating_point else dt
            t = torch.zeros(spec.shape, dtype=dt)
            if spec.buffer:
                mod.register_buffer(leaf, t)
            else:
                mod.register_parameter(leaf, nn.Parameter(t))
            self._slots[name] = (mod, leaf)
        if state_dict is not None:
            self.load_numpy(state_dict)

    @property
    def graph(self) -> Graph:
        return self._graph

    def load_numpy(self, state: Mapping[str, Any]) -> None:
        """Copy a {name: ndarray} state_dict (runtime.Model.state_dict()) into the parameters and buffers."""
        missing = [k for k in self._slots if k not in state]
        unexpected = [k for k in state if k not in self._slots]
        if missing or unexpected:
            raise KeyError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        with torch.no_grad():
            for k, (mod, leaf) in self._slots.items():
                t = getattr(mod, leaf)
                v = torch.as_tensor(np.asarray(state[k]))
                if tuple(v.shape) != tuple(t.shape):
                    raise ValueError(f"{k}: shape {tuple(v.shape)}, expected {tuple(t.shape)}")
                t.copy_(v.to(t.dtype))

    def numpy_state(self) -> dict[str, np.ndarray]:
        return {k: getattr(m, leaf).detach().cpu().numpy().copy() for k, (m, leaf) in self._slots.items()}

    def grads(self) -> dict[str, np.ndarray]:
        out = {}
        for k, (m, leaf) in self._slots.items():
            t = getattr(m, leaf)
            if isinstance(t, nn.Parameter) and t.grad is not None:
                out[k] = t.grad.detach().cpu().numpy()
        return out

    # -- planning: only the nodes the requested outputs need -----------------------------------
    def _resolve(self, name: str) -> tuple[str, str | None]:
        g = self._graph
        if name in g.output_refs:
            r = g.output_refs[name]
            return self._key(r)
        node, _, port = name.partition(":")
        if node in g.inputs and not port:
            return (node, None)
        return self._key(Ref(node, port or None))

    def _key(self, r: Ref) -> tuple[str, str | None]:
        if r.port is not None and r.node in self._nodes and r.port == next(iter(self._nodes[r.node].outputs)):
            return (r.node, None)
        return (r.node, r.port)

    def plan(self, outputs: list[str] | None) -> _Plan:
        key = tuple(outputs) if outputs else ()
        if key in self._plans:
            return self._plans[key]
        g = self._graph
        refs = {n: self._resolve(n) for n in (outputs or list(g.output_refs))}
        need: set[str] = set()
        stack = [r[0] for r in refs.values()]
        while stack:
            n = stack.pop()
            if n in need:
                continue
            need.add(n)
            if n in self._nodes:
                stack.extend(r.node for r in self._nodes[n].inputs if r is not None)
        used: set[tuple[str, str | None]] = set(refs.values())
        nodes = [n for n in g.nodes if n.name in need]
        for n in nodes:
            used.update(self._key(r) for r in n.inputs if r is not None)
        steps = []
        for n in nodes:
            ports = list(n.outputs)
            wanted = tuple((n.name, None if i == 0 else p) in used for i, p in enumerate(ports))
            steps.append(_Step(n, OPS[n.op], [None if r is None else self._key(r) for r in n.inputs],
                               [self._slots[n.param_name(p)] for p in n.params], ports, wanted,
                               [None if r is None else g.type_of(r) for r in n.inputs]))
        plan = _Plan(steps, [k for k in g.inputs if k in need], refs)
        self._plans[key] = plan
        return plan

    # -- running ---------------------------------------------------------------------------------
    def forward(self, outputs: list[str] | None = None, **inputs: Any) -> dict[str, torch.Tensor]:
        g = self._graph
        plan = self.plan(outputs)
        env: dict[tuple[str, str | None], Any] = {}
        symbols: dict[str, int] = {}
        for name in plan.inputs:
            tt = g.inputs[name]
            v = inputs[name]
            if not isinstance(v, torch.Tensor):
                v = torch.as_tensor(np.asarray(v))
            want = TORCH_DTYPES[tt.dtype]
            want = self._fdtype if want.is_floating_point else want
            if v.dtype != want:
                v = v.to(want)
            for d, s in zip(tt.shape, v.shape):
                if isinstance(d, str):
                    symbols.setdefault(d, int(s))
            env[(name, None)] = v
        training = self.training
        for st in plan.steps:
            args = [None if k is None else env[k] for k in st.ins]
            args += [getattr(m, leaf) for m, leaf in st.params]
            c = C(st.node.attrs, st.node, training, symbols, st.wanted, st.in_types, self._fdtype)
            out = st.fn(c, *args)
            if len(st.ports) > 1:
                for i, (p, o) in enumerate(zip(st.ports, out)):
                    env[(st.node.name, None if i == 0 else p)] = o
            else:
                env[(st.node.name, None)] = out
        return {k: env[r] for k, r in plan.refs.items()}


class Positional(nn.Module):
    """TorchRef with positional inputs and a tuple of outputs (for torch.onnx.export / tracing)."""

    def __init__(self, ref: TorchRef, inputs: list[str], outputs: list[str]):
        super().__init__()
        self.ref = ref
        self.input_names = list(inputs)
        self.output_names = list(outputs)

    def forward(self, *args):
        res = self.ref(outputs=self.output_names, **dict(zip(self.input_names, args)))
        return tuple(res[k] for k in self.output_names)


def from_model(model: Any, dtype: torch.dtype = torch.float32) -> TorchRef:
    """A TorchRef with the weights of a runtime.Model, in the same train/eval mode."""
    ref = TorchRef(model.graph, model.state_dict(), dtype=dtype)
    ref.train(model.training)
    return ref
