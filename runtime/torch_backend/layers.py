"""One small function per op: how a node reads in the generated PyTorch file.

Each returns an `Emit`: the forward expression (with "{m}" standing for the node's module attribute),
and, for ops with weights or configuration, the torch module to build in __init__ (nn.Conv2d, nn.LSTM,
...) whose parameter names are specc's. The semantics follow tools/torch_ref.py (the project's parity
reference) and docs/ops.md."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from compiler.ir import Node
from compiler.ops import OPS
from compiler.ops.convolution import conv_pads, pool_geometry, transpose_output_padding, tup
from compiler.ops.lazy import torch_kwargs
from compiler.ops.tensor import COMPARISONS, arange_dtype

from .source import Call, D, call, lit, render_call


class Unsupported(Exception):
    """This node cannot be written as PyTorch code (the message says why)."""


@dataclass
class Emit:
    expr: str                                   # forward expression; "{m}" is the node's module
    module: Call | None = None                  # built in __init__ as self.<name>
    modform: Call | None = None                 # a param-less op as a module (inside an nn.Sequential)
    helpers: tuple[str, ...] = ()               # helper functions/classes of helpers.py it needs
    lhs: str | None = None                      # several outputs: "{0}, ({1}, {2})"
    parameter: str | None = None                # an nn.Parameter's source (param op)
    buffer: str | None = None                   # a buffer's source (constant op, buffer op)
    persistent: bool = False                    # the buffer is in the state_dict (buffer op)


@dataclass
class Cx:
    node: Node
    ins: list[str | None]                       # input variable names (None: an omitted optional input)
    in_types: list[Any]
    wanted: tuple[bool, ...]                    # per output port: read by someone
    symbols: dict[str, str] = field(default_factory=dict)   # "N" -> "image.size(0)"

    @property
    def a(self) -> Any:
        return self.node.attrs

    @property
    def x(self) -> str:
        return self.ins[0]

    def param_shape(self, name: str) -> tuple[int, ...]:
        return next(p.shape for p in self.node.params if p.name == name)

    def has_param(self, name: str) -> bool:
        return any(p.name == name for p in self.node.params)

    def dims(self, shape: list, allow_minus: bool) -> str:
        syms = [d for d in shape if isinstance(d, str)]
        out = []
        for d in shape:
            if isinstance(d, str):
                if allow_minus and len(syms) == 1 and -1 not in shape:   # torch infers one dimension only
                    out.append("-1")
                elif d in self.symbols:
                    out.append(self.symbols[d])
                else:
                    raise Unsupported(f"its shape uses the symbol {d}, which no input of this scope fixes")
            else:
                out.append(str(d))
        return ", ".join(out)


EMIT: dict[str, Callable[[Cx], Emit]] = {}


def emits(*names: str):
    def reg(fn):
        for n in names:
            EMIT[n] = fn
        return fn
    return reg


def _axes(a: Any) -> str:
    dims = [a.dim] if isinstance(a.dim, int) else list(a.dim)
    return lit(dims[0]) if len(dims) == 1 else lit(tuple(dims))


def _rank(cx: Cx, i: int = 0) -> int:
    return cx.in_types[i].rank


# ---------------------------------------------------------------------------------------- tensor

@emits("identity")
def _identity(cx: Cx) -> Emit:
    return Emit(cx.x, modform=call("nn.Identity"))


@emits("detach")
def _detach(cx: Cx) -> Emit:
    return Emit(f"{cx.x}.detach()")


ARITH = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


@emits(*ARITH)
def _arith(cx: Cx) -> Emit:
    sym = ARITH[cx.node.op]
    other = cx.ins[1] if len(cx.ins) > 1 and cx.ins[1] is not None else lit(cx.a.value)
    return Emit(f"{cx.x} {sym} {other}")


@emits("matmul")
def _matmul(cx: Cx) -> Emit:
    return Emit(f"{cx.ins[0]} @ {cx.ins[1]}")


@emits("concat")
def _concat(cx: Cx) -> Emit:
    return Emit(f"torch.cat([{', '.join(cx.ins)}], dim={cx.a.dim})")


@emits("split")
def _split(cx: Cx) -> Emit:
    return Emit(f"torch.split({cx.x}, {lit(cx.a.sections)}, dim={cx.a.dim})")


@emits("reshape")
def _reshape(cx: Cx) -> Emit:
    return Emit(f"{cx.x}.reshape({cx.dims(cx.a.shape, True)})")


@emits("flatten")
def _flatten(cx: Cx) -> Emit:
    a = cx.a
    if _rank(cx) == 0:
        return Emit(f"{cx.x}.reshape(1)")
    args = "" if (a.start_dim, a.end_dim) == (1, -1) else f"{a.start_dim}, {a.end_dim}"
    mod = call("nn.Flatten", *([("start_dim", a.start_dim), ("end_dim", a.end_dim)] if args else []))
    return Emit(f"torch.flatten({cx.x}, {a.start_dim}, {a.end_dim})" if args else f"torch.flatten({cx.x}, 1)",
                modform=mod)


@emits("permute")
def _permute(cx: Cx) -> Emit:
    return Emit(f"{cx.x}.permute({', '.join(map(str, cx.a.dims))})")


@emits("transpose")
def _transpose(cx: Cx) -> Emit:
    return Emit(f"{cx.x}.transpose({cx.a.dim0}, {cx.a.dim1})")


@emits("squeeze")
def _squeeze(cx: Cx) -> Emit:
    t = cx.in_types[0]
    if cx.a.dim is None:
        axes = [i for i, d in enumerate(t.shape) if d == 1]
    else:
        dims = [cx.a.dim] if isinstance(cx.a.dim, int) else list(cx.a.dim)
        axes = sorted(d % t.rank for d in dims)
    if not axes:
        return Emit(cx.x)
    return Emit(f"{cx.x}.squeeze({axes[0] if len(axes) == 1 else lit(tuple(axes))})")


@emits("unsqueeze")
def _unsqueeze(cx: Cx) -> Emit:
    return Emit(f"{cx.x}.unsqueeze({cx.a.dim})")


@emits("slice")
def _slice(cx: Cx) -> Emit:
    a = cx.a
    rank = _rank(cx)
    dim = a.dim % rank
    s = f"{a.start or ''}:{'' if a.end is None else a.end}" + ("" if a.step == 1 else f":{a.step}")
    return Emit(f"{cx.x}[{', '.join([':'] * dim + [s])}]")


@emits("select")
def _select(cx: Cx) -> Emit:
    dim = cx.a.dim % _rank(cx)
    return Emit(f"{cx.x}[{', '.join([':'] * dim + [str(cx.a.index)])}]")


@emits("sum", "mean", "max")
def _reduce(cx: Cx) -> Emit:
    fn = {"sum": "torch.sum", "mean": "torch.mean", "max": "torch.amax"}[cx.node.op]
    x = cx.x
    if cx.node.op == "mean" and cx.in_types[0].dtype not in ("float32", "float64"):
        x = f"{x}.float()"
    keep = ", keepdim=True" if cx.a.keepdim else ""
    if cx.a.dim is None:
        if not keep and cx.node.op != "max":
            return Emit(f"{fn}({x})")
        dim = lit(tuple(range(_rank(cx))))
    else:
        dim = _axes(cx.a)
    return Emit(f"{fn}({x}, dim={dim}{keep})")


@emits("expand")
def _expand(cx: Cx) -> Emit:
    return Emit(f"{cx.x}.expand({cx.dims(cx.a.shape, False)})")


@emits("one_hot")
def _one_hot(cx: Cx) -> Emit:
    return Emit(f"F.one_hot({cx.x}.long(), {cx.a.num_classes}).float()")


@emits("param")
def _param(cx: Cx) -> Emit:
    shape = ", ".join(map(str, cx.a.shape))
    return Emit("{m}", parameter=f"nn.Parameter(torch.zeros({shape}))")


@emits("constant")
def _constant(cx: Cx) -> Emit:
    return Emit("{m}", buffer=f"torch.tensor({lit(cx.a.value)}, dtype=torch.float32)")


@emits("buffer")
def _buffer(cx: Cx) -> Emit:
    from compiler.ops.tensor import buffer_shape
    shape, flat = buffer_shape(cx.a)
    items = ", ".join(lit(v) for v in flat)
    if len(items) > 80:                         # an index table: a few numbers a line
        rows = [", ".join(lit(v) for v in flat[i:i + 16]) for i in range(0, len(flat), 16)]
        items = "\n            " + ",\n            ".join(rows) + ",\n        "
    value = f"torch.tensor([{items}], dtype=torch.{cx.a.dtype})"
    if len(shape) != 1:
        value += f".reshape({', '.join(map(str, shape))})" if shape else ".reshape(())"
    return Emit("{m}", buffer=value, persistent=cx.a.persistent)


@emits("gather", "index_select")
def _gather(cx: Cx) -> Emit:
    return Emit(f"torch.{cx.node.op}({cx.x}, {cx.a.dim}, {cx.ins[1]})")

def _number(v: Any) -> str:
    """A number's source; float('inf') and float('nan') as calls (repr gives a bare name)."""
    return f"float({repr(v)!r})" if isinstance(v, float) and not math.isfinite(v) else lit(v)


@emits("eq", "ne", "lt", "le", "gt", "ge")
def _compare(cx: Cx) -> Emit:
    other = cx.ins[1] if len(cx.ins) > 1 and cx.ins[1] is not None else _number(cx.a.value)
    return Emit(f"({cx.x} {COMPARISONS[cx.node.op][0]} {other})")


@emits("where")
def _where(cx: Cx) -> Emit:
    other = cx.ins[2] if len(cx.ins) > 2 and cx.ins[2] is not None else _number(cx.a.value)
    return Emit(f"torch.where({cx.ins[0]}, {cx.ins[1]}, {other})")


@emits("cast")
def _cast(cx: Cx) -> Emit:
    if cx.a.dtype == "float32" and cx.in_types[0].dtype.startswith("float"):
        return Emit(cx.x)
    return Emit(f"{cx.x}.to(torch.{cx.a.dtype})")


@emits("arange")
def _arange(cx: Cx) -> Emit:
    a = cx.a
    return Emit("{m}", buffer=f"torch.arange({_number(a.start)}, {_number(a.end)}, {_number(a.step)}, "
                              f"dtype=torch.{arange_dtype(a)})")


# ---------------------------------------------------------------------------------------- dense

@emits("linear")
def _linear(cx: Cx) -> Emit:
    out_f, in_f = cx.param_shape("weight")
    kw = {"bias": D(cx.a.bias, True)}
    return Emit(f"{{m}}({cx.x})", call("nn.Linear", ("in_features", in_f), ("out_features", out_f), **kw))


# ---------------------------------------------------------------------------------------- activations

@emits("step")
def _step(cx: Cx) -> Emit:
    return Emit(f"({cx.x} > 0).to({cx.x}.dtype)")


@emits("leaky_relu")
def _leaky_relu(cx: Cx) -> Emit:
    s = cx.a.negative_slope
    return Emit(f"F.leaky_relu({cx.x}, {lit(s)})", modform=call("nn.LeakyReLU", ("negative_slope", s)))


@emits("prelu")
def _prelu(cx: Cx) -> Emit:
    return Emit(f"{{m}}({cx.x})", call("nn.PReLU", ("num_parameters", cx.a.num_parameters),
                                          ("init", cx.a.init_value)))


@emits("softplus")
def _softplus(cx: Cx) -> Emit:
    a = cx.a
    return Emit(f"F.softplus({cx.x}, {lit(a.beta)}, {lit(a.threshold)})",
                modform=call("nn.Softplus", ("beta", a.beta), ("threshold", a.threshold)))


@emits("gelu")
def _gelu(cx: Cx) -> Emit:
    if cx.a.approximate == "none":
        return Emit(f"F.gelu({cx.x})", modform=call("nn.GELU"))
    return Emit(f"F.gelu({cx.x}, approximate='tanh')", modform=call("nn.GELU", approximate="tanh"))


@emits("elu")
def _elu(cx: Cx) -> Emit:
    return Emit(f"F.elu({cx.x}, {lit(cx.a.alpha)})", modform=call("nn.ELU", ("alpha", cx.a.alpha)))


@emits("softmax", "log_softmax")
def _softmax(cx: Cx) -> Emit:
    fn = "F." + cx.node.op
    x = cx.x
    if getattr(cx.a, "temperature", 1.0) != 1.0:
        return Emit(f"{fn}({x} / {lit(cx.a.temperature)}, dim={cx.a.dim})")
    mod = "nn.Softmax" if cx.node.op == "softmax" else "nn.LogSoftmax"
    return Emit(f"{fn}({x}, dim={cx.a.dim})", modform=call(mod, dim=cx.a.dim))


# ---------------------------------------------------------------------------------------- convolution

def _one(v: tuple) -> Any:
    return v[0] if all(e == v[0] for e in v) else v


@emits("conv1d", "conv2d")
def _conv(cx: Cx) -> Emit:
    a = cx.a
    w = cx.param_shape("weight")
    nd = len(w) - 2
    ks, dl = tuple(w[2:]), tup(a.dilation, nd)
    pads = conv_pads(a.padding, ks, dl)
    x = cx.x
    if all(lo == hi for lo, hi in pads):
        pad = _one(tuple(lo for lo, _ in pads))
    else:                                        # 'same' with an even kernel: the odd extra after
        flat = tuple(p for lo_hi in reversed(pads) for p in lo_hi)
        x, pad = f"F.pad({x}, {lit(flat)})", 0
    kw: dict[str, Any] = {}
    for k, v, d in (("stride", _one(tup(a.stride, nd)), 1), ("padding", pad, 0), ("dilation", _one(dl), 1),
                    ("groups", a.groups, 1), ("bias", a.bias, True)):
        kw[k] = D(v, d)
    mod = call(f"nn.Conv{nd}d", ("in_channels", w[1] * a.groups), ("out_channels", w[0]),
               ("kernel_size", _one(ks)), **kw)
    return Emit(f"{{m}}({x})", mod)


@emits("conv_transpose2d")
def _conv_transpose2d(cx: Cx) -> Emit:
    a = cx.a
    w = cx.param_shape("weight")
    opad = transpose_output_padding(a, tuple(cx.in_types[0].shape[2:]))
    kw: dict[str, Any] = {}
    for k, v, d in (("stride", _one(tup(a.stride, 2)), 1), ("padding", _one(tup(a.padding, 2)), 0),
                    ("output_padding", _one(tuple(opad)), 0), ("groups", a.groups, 1), ("bias", a.bias, True),
                    ("dilation", _one(tup(a.dilation, 2)), 1)):
        kw[k] = D(v, d)
    mod = call("nn.ConvTranspose2d", ("in_channels", w[0]), ("out_channels", w[1] * a.groups),
               ("kernel_size", _one(tuple(w[2:]))), **kw)
    return Emit(f"{{m}}({cx.x})", mod)


def _pool_args(cx: Cx, with_dilation: bool) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    shape = cx.in_types[0].shape[2:]
    if any(isinstance(d, str) for d in shape) and cx.a.ceil_mode:
        raise Unsupported("ceil_mode pooling needs a fixed spatial size")
    ks, st, pd, dl, _ = pool_geometry(cx.a, tuple(d if isinstance(d, int) else 1 for d in shape))
    pos = [("kernel_size", _one(ks))]
    kw: dict[str, Any] = {"stride": D(_one(st), _one(ks)), "padding": D(_one(pd), 0)}
    if with_dilation:
        kw["dilation"] = D(_one(dl), 1)
    kw["ceil_mode"] = D(cx.a.ceil_mode, False)
    return pos, kw


def _fargs(pos: list, kw: dict) -> str:
    """Functional-call arguments: those a module call would show."""
    c = call("f", *pos, **kw)
    return render_call(c)[2:-1]


@emits("max_pool2d")
def _max_pool2d(cx: Cx) -> Emit:
    pos, kw = _pool_args(cx, True)
    return Emit(f"F.max_pool2d({cx.x}, {_fargs(pos, kw)})", modform=call("nn.MaxPool2d", *pos, **kw))


@emits("avg_pool2d")
def _avg_pool2d(cx: Cx) -> Emit:
    pos, kw = _pool_args(cx, False)
    kw["count_include_pad"] = D(cx.a.count_include_pad, True)
    return Emit(f"F.avg_pool2d({cx.x}, {_fargs(pos, kw)})", modform=call("nn.AvgPool2d", *pos, **kw))


@emits("adaptive_avg_pool2d")
def _adaptive_avg_pool2d(cx: Cx) -> Emit:
    o = cx.a.output_size
    o = tuple(o) if isinstance(o, (list, tuple)) else o
    return Emit(f"F.adaptive_avg_pool2d({cx.x}, {lit(o)})", modform=call("nn.AdaptiveAvgPool2d", ("output_size", o)))


@emits("global_avg_pool2d")
def _global_avg_pool2d(cx: Cx) -> Emit:
    return Emit(f"{cx.x}.mean(dim=(2, 3))")


@emits("upsample")
def _upsample(cx: Cx) -> Emit:
    sf = tuple(float(f) for f in tup(cx.a.scale_factor, 2))
    sf = _one(sf)
    mode = cx.a.mode
    extra = ", align_corners=False" if mode == "bilinear" else ""
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return Emit(f"F.interpolate({cx.x}, scale_factor={lit(sf)}, mode={mode!r}{extra})",
                modform=call("nn.Upsample", scale_factor=sf, mode=mode, **kw))


# ---------------------------------------------------------------------------------------- normalisation

@emits("batch_norm")
def _batch_norm(cx: Cx) -> Emit:
    a = cx.a
    c = cx.param_shape("running_mean")[0]
    kw: dict[str, Any] = {}
    for k, v, d in (("eps", a.eps, 1e-5), ("momentum", a.momentum, 0.1), ("affine", a.affine, True)):
        kw[k] = D(v, d)
    nd = "2d" if _rank(cx) == 4 else "1d"
    return Emit(f"{{m}}({cx.x})", call(f"nn.BatchNorm{nd}", ("num_features", c), **kw))


@emits("layer_norm")
def _layer_norm(cx: Cx) -> Emit:
    a = cx.a
    ns = a.normalized_shape
    t = cx.in_types[0]
    ns = (t.shape[-1],) if ns is None else ((ns,) if isinstance(ns, int) else tuple(ns))
    kw: dict[str, Any] = {}
    for k, v, d in (("eps", a.eps, 1e-5), ("elementwise_affine", a.elementwise_affine, True), ("bias", a.bias, True)):
        kw[k] = D(v, d)
    if a.dim is not None and a.dim % t.rank != t.rank - 1:      # channels-first (LayerNorm2d)
        d = a.dim % t.rank
        return Emit(f"{{m}}({cx.x}.movedim({d}, -1)).movedim(-1, {d})",
                    call("nn.LayerNorm", ("normalized_shape", t.shape[d]), **kw))
    shape = ns[0] if len(ns) == 1 else ns
    return Emit(f"{{m}}({cx.x})", call("nn.LayerNorm", ("normalized_shape", shape), **kw))


@emits("dropout")
def _dropout(cx: Cx) -> Emit:
    return Emit(f"{{m}}({cx.x})", call("nn.Dropout", ("p", cx.a.p)))


@emits("stochastic_depth")
def _stochastic_depth(cx: Cx) -> Emit:
    return Emit(f"{{m}}({cx.x})", call("StochasticDepth", ("p", cx.a.p), ("mode", cx.a.mode)),
                helpers=("StochasticDepth",))


@emits("standardize")
def _standardize(cx: Cx) -> Emit:
    vals = []
    for p in cx.node.params:
        init = p.init.kw
        vals.append(list(init["values"]) if "values" in init else [float(init.get("value", 0.0 if p.name == "mean"
                                                                                      else 1.0))] * p.shape[0])
    return Emit(f"{{m}}({cx.x})", call("Standardize", ("mean", vals[0]), ("std", vals[1])), helpers=("Standardize",))


# ---------------------------------------------------------------------------------------- sequence

@emits("embedding")
def _embedding(cx: Cx) -> Emit:
    a = cx.a
    kw = {"padding_idx": D(a.padding_idx, None)}
    return Emit(f"{{m}}({cx.x})", call("nn.Embedding", ("num_embeddings", a.num_embeddings),
                                         ("embedding_dim", a.embedding_dim), **kw))


@emits("rnn", "lstm", "gru")
def _recurrent(cx: Cx) -> Emit:
    a = cx.a
    kind = cx.node.op
    in_size = cx.param_shape("weight_ih_l0")[1]
    kw: dict[str, Any] = {}
    for k, v, d in (("num_layers", a.num_layers, 1), ("nonlinearity", getattr(a, "nonlinearity", "tanh"), "tanh"),
                    ("bias", a.bias, True), ("batch_first", a.batch_first, False), ("dropout", a.dropout, 0.0),
                    ("bidirectional", a.bidirectional, False)):
        kw[k] = D(v, d)
    mod = call(f"nn.{kind.upper()}", ("input_size", in_size), ("hidden_size", a.hidden_size), **kw)
    states = [s for s in cx.ins[1:]]
    if kind == "lstm":
        states += [None] * (2 - len(states))
        if any(s is not None for s in states):          # an omitted state starts at zeros
            h0, c0 = (st if st is not None else f"torch.zeros_like({other})"
                      for st, other in zip(states, reversed(states)))
            return Emit(f"{{m}}({cx.x}, ({h0}, {c0}))", mod, lhs="{0}, ({1}, {2})")
        return Emit(f"{{m}}({cx.x})", mod, lhs="{0}, ({1}, {2})")
    h0 = f", {states[0]}" if states and states[0] is not None else ""
    return Emit(f"{{m}}({cx.x}{h0})", mod)


# ---------------------------------------------------------------------------------------- attention

@emits("multi_head_attention")
def _mha(cx: Cx) -> Emit:
    a = cx.a
    e = cx.param_shape("in_proj_weight")[1]
    q = cx.ins[0]
    k = cx.ins[1] if len(cx.ins) > 1 and cx.ins[1] is not None else q
    v = cx.ins[2] if len(cx.ins) > 2 and cx.ins[2] is not None else k
    kpm = cx.ins[3] if len(cx.ins) > 3 else None
    mod = call("nn.MultiheadAttention", ("embed_dim", e), ("num_heads", a.num_heads), dropout=D(a.dropout, 0.0),
               bias=D(a.bias, True), batch_first=True)
    extra = []
    if kpm is not None:
        extra.append(f"key_padding_mask={kpm}")
    want_w = len(cx.wanted) > 1 and cx.wanted[1]
    extra.append(f"need_weights={want_w}")
    helpers: tuple[str, ...] = ()
    if a.causal:
        extra.append(f"attn_mask=causal_mask({q}, {k})")
        helpers = ("causal_mask",)
    return Emit(f"{{m}}({q}, {k}, {v}, {', '.join(extra)})", mod, helpers=helpers)


@emits("scaled_dot_product_attention")
def _sdpa(cx: Cx) -> Emit:
    q, k, v = cx.ins[:3]
    mask = f", {cx.ins[3]}" if len(cx.ins) > 3 and cx.ins[3] is not None else ""
    extra = (", causal=True" if cx.a.causal else "") + ("" if cx.a.scale is None else f", scale={lit(cx.a.scale)}")
    return Emit(f"attention({q}, {k}, {v}{mask}{extra})",
                helpers=("attention",))


@emits("positional_encoding")
def _positional_encoding(cx: Cx) -> Emit:
    t = cx.in_types[0]
    return Emit(f"{{m}}({cx.x})", call("PositionalEncoding", ("d_model", t.shape[2]), ("max_len", cx.a.max_len)),
                helpers=("PositionalEncoding",))


# ---------------------------------------------------------------------------------------- graph

@emits("gcn_conv")
def _gcn_conv(cx: Cx) -> Emit:
    a = cx.a
    out_f, in_f = cx.param_shape("weight")
    kw = {k: D(v, d) for k, v, d in (("bias", a.bias, True), ("add_self_loops", a.add_self_loops, True),
                               ("normalize", a.normalize, True)) }
    return Emit(f"{{m}}({cx.ins[0]}, {cx.ins[1]})", call("GCNConv", ("in_features", in_f), ("out_features", out_f),
                                                         **kw), helpers=("GCNConv",))


@emits("gat_conv")
def _gat_conv(cx: Cx) -> Emit:
    a = cx.a
    in_f = cx.param_shape("weight")[1]
    kw = {k: D(v, d) for k, v, d in (("heads", a.heads, 1), ("concat", a.concat, True),
                               ("negative_slope", a.negative_slope, 0.2), ("bias", a.bias, True),
                               ("add_self_loops", a.add_self_loops, True)) }
    return Emit(f"{{m}}({cx.ins[0]}, {cx.ins[1]})", call("GATConv", ("in_features", in_f),
                                                         ("out_features", a.out_features), **kw),
                helpers=("GATConv",))


@emits("graph_aggregate")
def _graph_aggregate(cx: Cx) -> Emit:
    return Emit(f"graph_aggregate({cx.ins[0]}, {cx.ins[1]}, {cx.a.reduce!r})", helpers=("graph_aggregate",))


# ---------------------------------------------------------------------------------------- generative

@emits("reparameterize")
def _reparameterize(cx: Cx) -> Emit:
    return Emit(f"reparameterize({cx.ins[0]}, {cx.ins[1]}, self.training)", helpers=("reparameterize",))


@emits("kl_normal")
def _kl_normal(cx: Cx) -> Emit:
    return Emit(f"kl_normal({cx.ins[0]}, {cx.ins[1]}, {cx.a.reduction!r})", helpers=("kl_normal",))


# ---------------------------------------------------------------------------------------- similarity, losses

@emits("cosine_similarity")
def _cosine(cx: Cx) -> Emit:
    return Emit(f"F.cosine_similarity({cx.ins[0]}, {cx.ins[1]}, dim={cx.a.dim}, eps={lit(cx.a.eps)})")


@emits("pairwise_distance")
def _pairwise(cx: Cx) -> Emit:
    a = cx.a
    keep = ", keepdim=True" if a.keepdim else ""
    return Emit(f"F.pairwise_distance({cx.ins[0]}, {cx.ins[1]}, p={lit(a.p)}, eps={lit(a.eps)}{keep})")


LOSSES = {"mse_loss": "F.mse_loss", "l1_loss": "F.l1_loss", "bce_loss": "F.binary_cross_entropy",
          "bce_with_logits": "F.binary_cross_entropy_with_logits", "nll_loss": "F.nll_loss",
          "cross_entropy": "F.cross_entropy"}


@emits(*LOSSES)
def _loss(cx: Cx) -> Emit:
    a = cx.a
    i, t = cx.ins[0], cx.ins[1]
    tt = cx.in_types[1]
    if cx.node.op in ("nll_loss", "cross_entropy") and tt.dtype not in ("float32", "float64"):
        t = f"{t}.long()"
    elif tt.dtype != cx.in_types[0].dtype:
        t = f"{t}.to({i}.dtype)"
    extra = "" if a.reduction == "mean" else f", reduction={a.reduction!r}"
    if getattr(a, "label_smoothing", 0.0):
        extra += f", label_smoothing={lit(a.label_smoothing)}"
    return Emit(f"{LOSSES[cx.node.op]}({i}, {t}{extra})")


def _init_call(init: Any, target: str) -> str:
    """torch.nn.init's call for a node's `init:` override (compiler/init.py's kinds)."""
    kw, kind = init.kw, init.kind
    if kind in ("kaiming_uniform", "kaiming_normal"):
        if kw.get("fan_in"):
            raise Unsupported(f"init {kind} with an explicit fan_in has no torch.nn.init form")
        nl = kw.get("nonlinearity", "leaky_relu" if kind == "kaiming_uniform" else "relu")
        a = kw.get("a", 0.0)
        mode = ", mode='fan_out'" if kw.get("mode") == "fan_out" else ""
        return f"nn.init.{kind}_({target}{', a=' + lit(float(a)) if a else ''}{mode}, nonlinearity={nl!r})"
    if kind == "trunc_normal":
        args = ", ".join(f"{k}={lit(float(kw.get(k, d)))}" for k, d in
                         (("mean", 0.0), ("std", 1.0), ("a", -2.0), ("b", 2.0)))
        return f"nn.init.trunc_normal_({target}, {args})"
    if kind in ("xavier_uniform", "xavier_normal"):
        gain = kw.get("gain", 1.0)
        return f"nn.init.{kind}_({target}{'' if gain == 1.0 else ', gain=' + lit(float(gain))})"
    if kind == "uniform":
        lo, hi = (-kw["bound"], kw["bound"]) if "bound" in kw else (kw.get("low", 0.0), kw.get("high", 1.0))
        return f"nn.init.uniform_({target}, {lit(float(lo))}, {lit(float(hi))})"
    if kind == "normal":
        mean = kw.get('mean', 0.0)
        return f"nn.init.normal_({target}{', mean=' + lit(float(mean)) if mean else ''}, std={lit(float(kw.get('std', 1.0)))})"
    if kind in ("zeros", "ones"):
        return f"nn.init.{kind}_({target})"
    if kind == "constant":
        return f"nn.init.constant_({target}, {lit(float(kw['value']))})"
    raise Unsupported(f"init {kind} has no torch.nn.init form")


def init_lines(node: Node) -> list[str]:
    """The node's `init:` override as torch.nn.init calls on "{m}" (its module or parameter): every weight
    (a parameter whose name contains 'weight'), as runtime.Model applies it."""
    if node.init is None:
        return []
    if node.op == "param":
        return [_init_call(node.init, "{m}")]
    if isinstance(node.init, dict):
        return [_init_call(node.init[p.name], "{m}." + p.name) for p in node.params if p.name in node.init]
    return [_init_call(node.init, "{m}." + p.name) for p in node.params if "weight" in p.name]


def declared(cx: Cx) -> Emit:
    """The default form of an op whose record names its torch function (`torch="F.relu"`) and has no
    parameters: that function on the inputs, the attributes as keyword arguments; in an nn.Sequential,
    the record's `torch_module` (nn.ReLU) with the same keywords."""
    d = OPS[cx.node.op]
    kw = torch_kwargs(cx.a, d.torch_kw)
    args = [i for i in cx.ins if i is not None] + [f"{k}={lit(v)}" for k, v in kw.items()]
    return Emit(f"{d.torch}({', '.join(args)})", modform=call(d.torch_module, **kw) if d.torch_module else None)


def emitter(op: str) -> Callable[[Cx], Emit] | None:
    """The op's emitter: its own function above, else the declared default (param-less ops with `torch=`)."""
    if op in EMIT:
        return EMIT[op]
    d = OPS.get(op)
    return declared if d is not None and d.torch else None


def emit(cx: Cx) -> Emit:
    fn = emitter(cx.node.op)
    if fn is None or (fn is declared and cx.node.params):
        raise Unsupported(f"export-torch has no PyTorch form for op '{cx.node.op}'")
    return fn(cx)
