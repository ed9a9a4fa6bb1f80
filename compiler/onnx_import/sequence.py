"""Gather (embedding lookups, `select`, `index_select`), GatherElements (`gather`) and the recurrent layers
LSTM / GRU / RNN.

ONNX's recurrent ops run sequence-first with Y [T, dirs, N, H], stacked weights W [dirs, gates·H, in],
R [dirs, gates·H, H], B [dirs, 2·gates·H] in ONNX's gate order (LSTM i,o,f,c; GRU z,r,h); specc (as
torch.nn) keeps PyTorch's per-direction tensors in order i,f,g,o / r,z,n. The layout around the node
(Transpose to sequence-first, Squeeze or Transpose+Reshape of Y, Transpose back) is recognised and
becomes `batch_first`; anything else reads Y through explicit reshapes.
"""
from __future__ import annotations

import numpy as np

from .registry import Context, OnnxNode, Src, converter

# PyTorch gate block j comes from ONNX block PERM[j]
PERM = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
SPEC_OP = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}


@converter("Gather")
def gather(cx: Context, nd: OnnxNode) -> None:
    data, idx = nd.inputs[:2]
    table, index = cx.const(data), cx.const(idx)
    axis = nd.attr("axis", 0)
    if table is not None and table.ndim == 2 and axis == 0 and table.dtype.kind == "f" and index is None:
        hint = [data, nd.name]
        cx.emit("embedding", [idx], {"num_embeddings": int(table.shape[0]), "embedding_dim": int(table.shape[1])},
                {"weight": table.astype(np.float32)}, hint=hint, outputs=nd.outputs)
    elif index is not None and index.ndim == 0:
        cx.emit("select", [data], {"dim": axis, "index": int(index)}, hint=nd.name, outputs=nd.outputs)
    elif index is not None or len(cx.shape(idx) or ()) == 1:
        _index_select(cx, nd, data, idx, axis)
    else:
        raise cx.refuse(nd, "a Gather whose index is computed at run time and not 1-d (specc's index_select takes "
                            "a 1-d index; a run-time index into a constant 2-d table is an embedding)")


def _index_select(cx: Context, nd: OnnxNode, data: str, idx: str, axis: int) -> None:
    """index_select along `axis`; a constant index of another rank is flattened (a `buffer`) and the
    result reshaped to ONNX's x.shape[:axis] + index.shape + x.shape[axis + 1:]."""
    index = cx.const(idx)
    size = _size(cx, data, axis)
    if index is not None and np.any(index < 0):             # ONNX counts negative indices from the end
        if size is None:
            raise cx.refuse(nd, "a Gather by negative indices along a dimension of unknown size")
        idx = idx + ":wrapped"
        cx.g.consts[idx] = index = np.where(index < 0, index + size, index)
    if index is not None and index.ndim != 1:
        shape = cx.shape(data)
        if shape is None:
            raise cx.refuse(nd, "a Gather by a constant index of rank other than 1 on an input of unknown shape")
        axis %= len(shape)
        flat = idx + ":flat"
        cx.g.consts[flat] = index.reshape(-1)
        sel = cx.emit("index_select", [data, flat], {"dim": axis}, hint=nd.name)
        out = list(shape[:axis]) + list(index.shape) + list(shape[axis + 1:])
        cx.emit("reshape", [(sel, 0)], {"shape": out}, hint=nd.name, outputs=nd.outputs)
        return
    cx.emit("index_select", [data, idx], {"dim": axis}, hint=nd.name, outputs=nd.outputs)


def _size(cx: Context, name: str, axis: int) -> int | None:
    shape = cx.shape(name)
    d = None if shape is None or not -len(shape) <= axis < len(shape) else shape[axis]
    return d if isinstance(d, int) else None


@converter("GatherElements")
def gather_elements(cx: Context, nd: OnnxNode) -> None:
    data, idx = nd.inputs[:2]
    axis = nd.attr("axis", 0)
    cut = cx.g.producer.get(data)
    if cut is not None and cut.op_type == "Slice" and _corner(cx, cut, idx, axis):
        data = cut.inputs[0]                        # specc's gather reads the corner of the input itself
    cx.emit("gather", [data, idx], {"dim": axis}, hint=nd.name, outputs=nd.outputs)


def _corner(cx: Context, cut: OnnxNode, idx: str, axis: int) -> bool:
    """Slice `cut` keeps [0, index size) of axes other than `axis` (as specc's gather lowering writes it)."""
    starts, ends = cx.const(cut.inputs[1]), cx.const(cut.inputs[2])
    axes = cx.const(cut.inputs[3]) if len(cut.inputs) > 3 and cut.inputs[3] else None
    steps = cx.const(cut.inputs[4]) if len(cut.inputs) > 4 and cut.inputs[4] else None
    shape, rank = cx.shape(idx), len(cx.shape(cut.inputs[0]) or ())
    if starts is None or ends is None or shape is None or rank != len(shape) or cx.is_const(cut.inputs[0]):
        return False
    axes = list(range(len(starts))) if axes is None else [int(a) % rank for a in axes]
    return (not np.any(starts) and (steps is None or np.all(steps == 1)) and axis % rank not in axes
            and all(int(e) == shape[a] for a, e in zip(axes, ends)))


def _reorder(kind: str, w: np.ndarray, h: int) -> np.ndarray:
    blocks = [w[k * h:(k + 1) * h] for k in range(GATES[kind])]
    return np.concatenate([blocks[k] for k in PERM[kind]], axis=0).astype(np.float32)


def _params(cx: Context, nd: OnnxNode, kind: str, h: int, dirs: int, layer: int = 0) -> dict[str, np.ndarray]:
    W, R = cx.const(nd.inputs[1]), cx.const(nd.inputs[2])
    if W is None or R is None:
        raise cx.refuse(nd, "its weights are computed at run time")
    B = cx.const(nd.inputs[3]) if len(nd.inputs) > 3 and nd.inputs[3] else None
    g = GATES[kind] * h
    out: dict[str, np.ndarray] = {}
    for d in range(dirs):
        sfx = "_reverse" if d else ""
        out[f"weight_ih_l{layer}{sfx}"] = _reorder(kind, W[d], h)
        out[f"weight_hh_l{layer}{sfx}"] = _reorder(kind, R[d], h)
        if B is not None:
            out[f"bias_ih_l{layer}{sfx}"] = _reorder(kind, B[d, :g], h)
            out[f"bias_hh_l{layer}{sfx}"] = _reorder(kind, B[d, g:], h)
    return out


def _check(cx: Context, nd: OnnxNode, kind: str, dirs: int) -> dict:
    attrs: dict = {}
    if len(nd.inputs) > 4 and nd.inputs[4]:
        raise cx.refuse(nd, "its sequence_lens input (packed, variable-length sequences)")
    if nd.attr("clip") is not None or nd.attr("input_forget", 0) or (kind == "LSTM" and len(nd.inputs) > 7
                                                                    and nd.inputs[7]):
        raise cx.refuse(nd, "clip, input_forget or peepholes (torch.nn has none of them)")
    if nd.attr("direction", "forward") == "reverse":
        raise cx.refuse(nd, "a reverse-only recurrent layer (torch.nn runs forward or bidirectional)")
    acts = nd.attr("activations")
    if kind == "RNN":
        act = (acts or ["Tanh"])[0]
        if act not in ("Tanh", "Relu") or acts and len(set(acts)) > 1:
            raise cx.refuse(nd, f"activations {acts} (specc's rnn uses tanh or relu)")
        if act == "Relu":
            attrs["nonlinearity"] = "relu"
    elif acts and [a.lower() for a in acts] != (["sigmoid", "tanh", "tanh"] if kind == "LSTM" else
                                                ["sigmoid", "tanh"]) * dirs:
        raise cx.refuse(nd, f"activations {acts} (PyTorch's gates use sigmoid and tanh)")
    if kind == "GRU" and not nd.attr("linear_before_reset", 0):
        raise cx.refuse(nd, "a GRU with linear_before_reset=0 (PyTorch's GRU applies the reset gate after the "
                            "hidden-state product: linear_before_reset=1)")
    return attrs


def _transposed_from(cx: Context, name: str) -> str | None:
    """The batch-first value whose Transpose [1, 0, 2] is `name`, when that is all `name` is used for."""
    for nd in cx.g.nodes:
        if name in nd.outputs and nd.op_type == "Transpose" and list(nd.attr("perm") or []) == [1, 0, 2] \
                and len(cx.consumers(name)) == 1 and nd.index not in cx.g.folded:
            return nd.inputs[0]
    return None


def _y_pattern(cx: Context, y: str, dirs: int) -> tuple[list[OnnxNode], str] | None:
    """The nodes that turn Y [T, D, N, H] into [T, N, D·H] (Squeeze, or Transpose + Reshape), and that value."""
    if dirs == 1:
        sq = cx.only_consumer(y, "Squeeze")
        if sq is None:
            return None
        axes = [int(a) for a in (cx.const(sq.inputs[1]) if len(sq.inputs) > 1 and sq.inputs[1] else
                                 sq.attr("axes") or [])]
        return ([sq], sq.outputs[0]) if axes == [1] else None
    tr = cx.only_consumer(y, "Transpose")
    if tr is None or list(tr.attr("perm") or []) != [0, 2, 1, 3]:
        return None
    rs = cx.only_consumer(tr.outputs[0], "Reshape")
    shape = None if rs is None else cx.const(rs.inputs[1])
    if shape is None or len(shape) != 3 or int(shape[0]) != 0 or int(shape[1]) != 0:
        return None
    return [tr, rs], rs.outputs[0]


def _same_kind(a: OnnxNode, b: OnnxNode) -> bool:
    keys = ("hidden_size", "direction", "activations", "linear_before_reset", "layout", "clip")
    biased = [len(n.inputs) > 3 and bool(n.inputs[3]) for n in (a, b)]
    return a.op_type == b.op_type and all(a.attr(k) == b.attr(k) for k in keys) and biased[0] == biased[1]


def _stack(cx: Context, nd: OnnxNode, dirs: int) -> tuple[list[OnnxNode], list[OnnxNode]]:
    """The recurrent nodes that each read the one before's Y as their sequence (specc and torch write a
    stacked RNN as one node per layer), and the layout nodes between them."""
    chain, links = [nd], []
    while chain[-1].outputs and chain[-1].outputs[0] and nd.attr("layout", 0) == 0:
        pat = _y_pattern(cx, chain[-1].outputs[0], dirs)
        nxt = None if pat is None else cx.only_consumer(pat[1], nd.op_type)
        if nxt is None or nxt.inputs[0] != pat[1] or not _same_kind(nd, nxt):
            break
        chain.append(nxt)
        links.extend(pat[0])
    return chain, links


def _stacked_state(cx: Context, chain: list[OnnxNode], slot: int, dirs: int) -> tuple[bool, str | None]:
    """(ok, the [layers·dirs, N, H] initial state) of input `slot` over the chain: none, the one value
    (one layer), or the source every layer's Slice [l·D, (l+1)·D) reads."""
    vals = [c.inputs[slot] if len(c.inputs) > slot else "" for c in chain]
    vals = [v if v and v not in cx.g.zeros and not (cx.is_const(v) and not np.any(cx.const(v))) else "" for v in vals]
    if not any(vals):
        return True, None
    if len(chain) == 1:
        return True, vals[0]
    src = None
    for l, v in enumerate(vals):
        p = cx.g.producer.get(v) if v else None
        if p is None or p.op_type != "Slice":
            return False, None
        starts, ends = cx.const(p.inputs[1]), cx.const(p.inputs[2])
        axes = cx.const(p.inputs[3]) if len(p.inputs) > 3 and p.inputs[3] else np.zeros(1, np.int64)
        if starts is None or ends is None or [int(starts[0]), int(ends[0]), int(axes[0])] != [l * dirs, (l + 1) * dirs, 0] \
                or (src is not None and p.inputs[0] != src):
            return False, None
        src = p.inputs[0]
    return True, src


def _bind_states(cx: Context, chain: list[OnnxNode], layer, port: int, dirs: int) -> None:
    """Each node's Y_h (port 1) or Y_c (port 2) as the merged layer's h/c: the Concat of all of them
    is the port itself, one of them alone a slice of it."""
    outs = [c.outputs[port] if len(c.outputs) > port else "" for c in chain]
    if len(chain) == 1:
        if outs[0]:
            cx.bind(outs[0], (layer, port))
        return
    if outs[0]:
        for cat in cx.consumers(outs[0]):
            if cat.op_type == "Concat" and cat.inputs == outs and cat.attr("axis") == 0:
                cx.take(cat)
                cx.bind(cat.outputs[0], (layer, port))
    for l, o in enumerate(outs):
        if o and any(c.index not in cx.taken for c in cx.consumers(o)):
            cx.emit("slice", [(layer, port)], {"dim": 0, "start": l * dirs, "end": (l + 1) * dirs},
                    hint=chain[l].name, outputs=[o])


@converter("LSTM", "GRU", "RNN")
def recurrent(cx: Context, nd: OnnxNode) -> None:
    kind = nd.op_type
    dirs = 2 if nd.attr("direction", "forward") == "bidirectional" else 1
    h = int(nd.attr("hidden_size"))
    attrs: dict = {"hidden_size": h}
    attrs.update(_check(cx, nd, kind, dirs))
    chain, links = _stack(cx, nd, dirs)
    slots = (5, 6) if kind == "LSTM" else (5,)
    states = [_stacked_state(cx, chain, k, dirs) for k in slots]
    if not all(ok for ok, _ in states):
        chain, links = [nd], []
        states = [_stacked_state(cx, chain, k, dirs) for k in slots]
    for c in chain[1:]:
        _check(cx, c, kind, dirs)
    if len(chain) > 1:
        attrs["num_layers"] = len(chain)
    if dirs == 2:
        attrs["bidirectional"] = True
    params: dict = {}
    for l, c in enumerate(chain):
        params.update(_params(cx, c, kind, h, dirs, l))
    if "bias_ih_l0" not in params:
        attrs["bias"] = False
    last = chain[-1]
    layout = nd.attr("layout", 0)
    y = last.outputs[0] if last.outputs and last.outputs[0] else None
    used_y = y is not None and bool(cx.consumers(y) or y in cx.g.outputs)
    pattern = _y_pattern(cx, y, dirs) if used_y and layout == 0 else None
    x = nd.inputs[0]
    batch_first = layout == 1
    back = None
    if layout == 0:
        inner = _transposed_from(cx, x)
        if pattern is not None:
            back = cx.only_consumer(pattern[1], "Transpose")
            back = back if back is not None and list(back.attr("perm") or []) == [1, 0, 2] else None
        if inner is not None and (not used_y or back is not None):
            x, batch_first = inner, True
    if not batch_first:
        attrs["batch_first"] = False
    ins: list = [x] + [v for _, v in states]
    while ins and ins[-1] is None:
        ins.pop()
    if any(i is None for i in ins):
        raise cx.refuse(nd, "an initial cell state without an initial hidden state")
    for t in chain[1:] + links:
        cx.take(t)
    hint = [nd.inputs[1], nd.name]
    ports = ("out", "h", "c") if kind == "LSTM" else ("out", "h")
    layer = cx.emit(SPEC_OP[kind], ins, attrs, params, hint=hint, ports=ports)
    for port in range(1, len(ports)):
        _bind_states(cx, chain, layer, port, dirs)
    if not used_y:
        return
    if layout == 1:
        raise cx.refuse(nd, "layout=1 with its Y output read")
    if pattern is not None:
        for p in pattern[0]:
            cx.take(p)
        if batch_first:
            cx.take(back)
            cx.bind(back.outputs[0], (layer, 0))
        else:
            cx.bind(pattern[1], (layer, 0))
        return
    if len(chain) > 1:
        raise cx.refuse(last, "the last layer of a stack reads its Y output in an unrecognised layout")
    _bind_raw_y(cx, nd, layer, y, dirs, h, batch_first)


def _bind_raw_y(cx: Context, nd: OnnxNode, layer, y: str, dirs: int, h: int, batch_first: bool) -> None:
    """Y [T, D, N, H] from specc's [T, N, D·H] (sequence-first) output: reshape, then swap D and N."""
    if batch_first:
        raise cx.refuse(nd, "its Y output is read in an unrecognised layout")
    r = cx.emit("reshape", [(layer, 0)], {"shape": [_dim(cx, nd, 0), _dim(cx, nd, 1), dirs, h]}, hint=nd.name)
    src: Src = (r, 0)
    cx.emit("transpose", [src], {"dim0": 1, "dim1": 2}, hint=nd.name, outputs=[y])


def _dim(cx: Context, nd: OnnxNode, axis: int) -> object:
    s = cx.shape(nd.inputs[0])
    if s is None or s[axis] is None:
        raise cx.refuse(nd, "its Y output is read and its input's shape is unknown")
    return s[axis]
