"""Sequence layers: embedding as Gather; rnn / lstm / gru as ONNX's native RNN / LSTM / GRU, one node per layer.

ONNX runs sequence-first ([T, N, I]) with weights W [dirs, gates·hidden, in], R [dirs, gates·hidden, hidden],
B [dirs, 2·gates·hidden] and its own gate orders (LSTM i,o,f,c; GRU z,r,h). The stacked, reordered weights
are built from the PyTorch-layout parameter initialisers with Gather / Concat / Unsqueeze, which onnxruntime
folds into constants when it loads the model.
"""
from __future__ import annotations

import numpy as np

from ..ir import Node
from .registry import Builder, lowering


@lowering("embedding")
def embedding(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Gather", [p[0], x[0]], axis=0)


# rows of ONNX's gate order, as blocks of PyTorch's: LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h
_ORDER = {"rnn": None, "lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}
_ONNX_OP = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _recurrent(kind: str, b: Builder, node: Node, x: list, p: list) -> list:
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


@lowering("rnn")
def rnn(b: Builder, node: Node, x: list, p: list) -> list:
    return _recurrent("rnn", b, node, x, p)


@lowering("lstm")
def lstm(b: Builder, node: Node, x: list, p: list) -> list:
    return _recurrent("lstm", b, node, x, p)


@lowering("gru")
def gru(b: Builder, node: Node, x: list, p: list) -> list:
    return _recurrent("gru", b, node, x, p)
