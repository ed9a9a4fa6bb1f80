"""Sequence layers: embedding and the recurrent layers rnn, lstm and gru (PyTorch semantics and layouts)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from .. import limits
from ..errors import ShapeError
from ..ir import Dim, Init, Node, ParamSpec, TensorType
from .cases import Case, In
from .lazy import F, np, torch
from .registry import Attrs, Inferred, lowering, op, reference
from .shapes import concrete, float_input

if TYPE_CHECKING:
    from ..onnx.registry import Builder


# -- embedding ---------------------------------------------------------------------------------------------

class Embedding(Attrs):
    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None = None


@op("embedding", Embedding, primary="num_embeddings",
    cases=[Case({"num_embeddings": 5, "embedding_dim": 3}, (In((2, 4), "int64", 0, 5),)),
           Case({"num_embeddings": 5, "embedding_dim": 2, "padding_idx": 0}, (In((3,), "int64", 0, 5),))])
def embedding(a: Embedding, x: TensorType) -> Inferred:
    """Looks up row x of a learned [num_embeddings, embedding_dim] table for each integer index x (any shape),
    giving [..., embedding_dim]; the padding_idx row starts at zero and gets no gradient (as PyTorch)."""
    if a.num_embeddings < 1:
        raise ShapeError(f"num_embeddings must be positive, got {a.num_embeddings}", attr="num_embeddings")
    if a.embedding_dim < 1:
        raise ShapeError(f"embedding_dim must be positive, got {a.embedding_dim}", attr="embedding_dim")
    if not x.dtype.startswith("int"):
        raise ShapeError(f"embedding expects integer token indices (int64), but its input is {x.dtype} "
                         f"(shape {x})", hint="feed the token ids, not their float values or one-hot vectors")
    pad = a.padding_idx
    if pad is not None:
        if not -a.num_embeddings <= pad < a.num_embeddings:
            raise ShapeError(f"padding_idx={pad} is outside the table of {a.num_embeddings} rows "
                             f"(allowed {-a.num_embeddings}..{a.num_embeddings - 1})", attr="padding_idx")
        pad %= a.num_embeddings
    weight = ParamSpec("weight", (a.num_embeddings, a.embedding_dim), Init.of("embedding", padding_idx=pad))
    return Inferred([TensorType(x.shape + (a.embedding_dim,), "float32")], [weight], macs=0)


@lowering("embedding")
def embedding_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Gather", [p[0], x[0]], axis=0)


@reference("embedding")
def _embedding(c, x, w):
    pad = c.a.padding_idx
    if pad is not None:
        pad %= c.a.num_embeddings
    return F.embedding(x.long(), w, padding_idx=pad)


# -- recurrent layers ----------------------------------------------------------------------------------------

class _Recurrent(Attrs):
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = True
    dropout: float = 0.0
    bias: bool = True
    input_size: int | None = None


class RNN(_Recurrent):
    nonlinearity: Literal["tanh", "relu"] = "tanh"


class LSTM(_Recurrent):
    pass


class GRU(_Recurrent):
    pass


GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _same_dim(a: Dim, b: Dim) -> bool:
    return a == b or (isinstance(a, int) != isinstance(b, int))


def _recurrent(kind: str, a: _Recurrent, x: TensorType, h0: TensorType | None,
               c0: TensorType | None = None) -> Inferred:
    if a.hidden_size < 1:
        raise ShapeError(f"hidden_size must be positive, got {a.hidden_size}", attr="hidden_size")
    if a.num_layers < 1:
        raise ShapeError(f"num_layers must be at least 1, got {a.num_layers}", attr="num_layers")
    if a.num_layers > limits.REPEAT:
        raise ShapeError(f"num_layers {a.num_layers:,} is larger than the limit of {limits.REPEAT:,}", attr="num_layers")
    if not 0.0 <= a.dropout < 1.0:
        raise ShapeError(f"dropout is a probability in [0, 1), got {a.dropout}", attr="dropout")
    layout = "N×T×features" if a.batch_first else "T×N×features"
    if x.rank != 3:
        raise ShapeError(f"{kind} expects a rank-3 input ({layout}, batch_first: {str(a.batch_first).lower()}) "
                         f"but its input has rank {x.rank} (shape {x})",
                         hint="a single sequence needs a batch dimension: unsqueeze it"
                         if x.rank == 2 else None)
    if not x.dtype.startswith("float"):
        raise ShapeError(f"{kind} expects a float input, but its input is {x.dtype} (shape {x})",
                         hint="token indices go through an embedding first")
    n, t = (x.shape[0], x.shape[1]) if a.batch_first else (x.shape[1], x.shape[0])
    feat = concrete(x.shape[2], f"{kind}'s input feature size (last dimension)")
    if a.input_size is not None and a.input_size != feat:
        raise ShapeError(f"{kind} expects {a.input_size} input features (input_size: {a.input_size}) "
                         f"but its input gives {feat} (shape {x})", hint="drop input_size to infer it",
                         attr="input_size")
    d = 2 if a.bidirectional else 1
    hid = a.hidden_size
    state = (a.num_layers * d, n, hid)
    for name, s in (("h0", h0), ("c0", c0)):
        if s is None:
            continue
        float_input(kind, name, s, hint=f"declare the initial state {name} as float32")
        if s.rank != 3 or not (s.shape[0] == state[0] and _same_dim(s.shape[1], n) and s.shape[2] == hid):
            raise ShapeError(f"{kind}'s initial state {name} must have shape num_layers·directions×N×hidden_size"
                             f" = {state[0]}×{n}×{hid}, but it has shape {s}",
                             hint="as PyTorch: [num_layers * (2 if bidirectional else 1), batch, hidden_size],"
                                  " batch in the middle even when batch_first")
    g = GATES[kind] * hid
    init = Init.of("uniform", bound=1.0 / math.sqrt(hid))
    params: list[ParamSpec] = []
    macs = 0
    for k in range(a.num_layers):
        fan_in = feat if k == 0 else d * hid
        for sfx in ("", "_reverse")[:d]:
            params += [ParamSpec(f"weight_ih_l{k}{sfx}", (g, fan_in), init),
                       ParamSpec(f"weight_hh_l{k}{sfx}", (g, hid), init)]
            if a.bias:
                params += [ParamSpec(f"bias_ih_l{k}{sfx}", (g,), init), ParamSpec(f"bias_hh_l{k}{sfx}", (g,), init)]
            macs += g * (fan_in + hid)
    steps = t if isinstance(t, int) else 1
    out = TensorType((n, t, d * hid) if a.batch_first else (t, n, d * hid), x.dtype)
    outs = [out, TensorType(state, x.dtype)]
    if kind == "lstm":
        outs.append(TensorType(state, x.dtype))
    return Inferred(outs, params, macs=macs * steps)


@op("rnn", RNN, inputs=("x", "h0"), optional=("h0",), ports=("out", "h"), primary="hidden_size",
    cases=[Case({"hidden_size": 3}, ((2, 4, 2), None)),
           Case({"hidden_size": 2, "num_layers": 2, "bidirectional": True, "batch_first": False,
                 "nonlinearity": "relu"}, ((4, 2, 3), (4, 2, 2)))])
def rnn(a: RNN, x: TensorType, h0: TensorType | None = None) -> Inferred:
    """Elman RNN, h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) with act tanh or relu, stacked and optionally
    bidirectional as torch.nn.RNN: port out is every step's last-layer state, h the final state of each layer."""
    return _recurrent("rnn", a, x, h0)


@lowering("rnn")
def rnn_onnx(b: Builder, node: Node, x: list, p: list) -> list:
    return _recurrent_onnx("rnn", b, node, x, p)


def _recurrent_torch(kind: str):
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


reference("rnn")(_recurrent_torch("rnn"))


@op("lstm", LSTM, inputs=("x", "h0", "c0"), optional=("h0", "c0"), ports=("out", "h", "c"), primary="hidden_size",
    cases=[Case({"hidden_size": 3}, ((2, 4, 2), None, None)),
           Case({"hidden_size": 2, "num_layers": 2, "bidirectional": True, "bias": False},
                ((2, 3, 3), (4, 2, 2), (4, 2, 2)))])
def lstm(a: LSTM, x: TensorType, h0: TensorType | None = None, c0: TensorType | None = None) -> Inferred:
    """Long short-term memory as torch.nn.LSTM (gates i, f, g, o): port out is every step's last-layer hidden
    state, h and c the final hidden and cell states of each layer and direction; dropout acts between layers."""
    return _recurrent("lstm", a, x, h0, c0)


@lowering("lstm")
def lstm_onnx(b: Builder, node: Node, x: list, p: list) -> list:
    return _recurrent_onnx("lstm", b, node, x, p)


reference("lstm")(_recurrent_torch("lstm"))


@op("gru", GRU, inputs=("x", "h0"), optional=("h0",), ports=("out", "h"), primary="hidden_size",
    cases=[Case({"hidden_size": 3}, ((2, 4, 2), None)),
           Case({"hidden_size": 2, "bidirectional": True, "batch_first": False}, ((4, 2, 3), (2, 2, 2)))])
def gru(a: GRU, x: TensorType, h0: TensorType | None = None) -> Inferred:
    """Gated recurrent unit as torch.nn.GRU (gates r, z, n; n = tanh(W_in x + b_in + r·(W_hn h + b_hn))):
    port out is every step's last-layer state, h the final state of each layer and direction."""
    return _recurrent("gru", a, x, h0)


@lowering("gru")
def gru_onnx(b: Builder, node: Node, x: list, p: list) -> list:
    return _recurrent_onnx("gru", b, node, x, p)


reference("gru")(_recurrent_torch("gru"))


# ---------------------------------------------------------------- helpers of the ONNX lowerings


# rows of ONNX's gate order, as blocks of PyTorch's: LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h
_ORDER = {"rnn": None, "lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}
_ONNX_OP = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _recurrent_onnx(kind: str, b: Builder, node: Node, x: list, p: list) -> list:
    a = node.attrs
    L, D, H = a.num_layers, 2 if a.bidirectional else 1, a.hidden_size
    per = 4 if a.bias else 2
    lstm = kind == "lstm"
    order = _ORDER[kind]
    rows = None
    if order is not None:
        rows = b.ints(np.concatenate([np.arange(g * H, (g + 1) * H) for g in order]), hint="gate_rows")
    axis0 = b.ints([0], hint="axes")

    def reorder(name: str) -> str:
        return b.op("Gather", [name, rows], axis=0) if rows is not None else name

    def stack(values: list[str]) -> str:              # [D] tensors of shape S -> [D, *S]
        vs = [b.op("Unsqueeze", [v, axis0]) for v in values]
        return vs[0] if len(vs) == 1 else b.op("Concat", vs, axis=0)

    def layer_state(value: str | None, l: int) -> str | None:
        if value is None or L == 1:
            return value
        return b.op("Slice", [value, b.ints([l * D]), b.ints([(l + 1) * D]), axis0])

    seq = b.op("Transpose", [x[0]], perm=[1, 0, 2]) if a.batch_first else x[0]
    h0, c0 = x[1], (x[2] if lstm else None)
    hs, cs = [], []
    attrs: dict = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
    if kind == "gru":
        attrs["linear_before_reset"] = 1
    if kind == "rnn":
        attrs["activations"] = ["Relu" if a.nonlinearity == "relu" else "Tanh"] * D
    for l in range(L):
        ws = [p[(l * D + d) * per:(l * D + d + 1) * per] for d in range(D)]
        W = stack([reorder(w[0]) for w in ws])
        R = stack([reorder(w[1]) for w in ws])
        B = stack([b.op("Concat", [reorder(w[2]), reorder(w[3])], axis=0) for w in ws]) if a.bias else None
        ins = [seq, W, R, B, None, layer_state(h0, l)]
        if lstm:
            ins.append(layer_state(c0, l))
        outs = b.op(_ONNX_OP[kind], ins, n_out=3 if lstm else 2, **attrs)
        y = outs[0]                                    # [T, D, N, H]
        if D == 1:
            seq = b.op("Squeeze", [y, b.ints([1], hint="axes")])
        else:
            y = b.op("Transpose", [y], perm=[0, 2, 1, 3])
            seq = b.op("Reshape", [y, b.ints([0, 0, D * H])])
        hs.append(outs[1])
        if lstm:
            cs.append(outs[2])
    out = b.op("Transpose", [seq], perm=[1, 0, 2]) if a.batch_first else seq
    h = hs[0] if L == 1 else b.op("Concat", hs, axis=0)
    if not lstm:
        return [out, h]
    return [out, h, cs[0] if L == 1 else b.op("Concat", cs, axis=0)]
