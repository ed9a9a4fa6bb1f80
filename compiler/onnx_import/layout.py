"""Rearranging and padding: Pad (`pad`), DepthToSpace (`pixel_shuffle`), and the patterns specc lowers its
layout ops to: Slice + Concat of one tensor's two ends (`roll`), Reshape–Transpose–Reshape back
(`channel_shuffle`).

ONNX pads are [x1_begin, x2_begin, ..., x1_end, ...] over all axes; specc (as torch.nn.functional.pad)
lists (before, after) pairs from the last dimension backward.
"""
from __future__ import annotations

import numpy as np

from .registry import Context, OnnxNode, converter
from .tensor import BIG, ints

MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


def _torch_pads(cx: Context, nd: OnnxNode, rank: int) -> list[tuple[int, int]]:
    """(before, after) per axis, first to last."""
    pads = ints(cx, nd, 1, "pads")
    if pads is None or len(pads) % 2:
        raise cx.refuse(nd, "its pads are missing or not (begin, end) pairs")
    k = len(pads) // 2
    axes = ints(cx, nd, 3) if len(nd.inputs) > 3 else None
    axes = list(range(k)) if axes is None else [a % rank for a in axes]
    if len(axes) != k:
        raise cx.refuse(nd, f"{k} pad pairs for {len(axes)} axes")
    out = [(0, 0)] * rank
    for a, lo, hi in zip(axes, pads[:k], pads[k:]):
        out[a] = (lo, hi)
    if any(lo < 0 or hi < 0 for lo, hi in out):
        raise cx.refuse(nd, f"negative pads {pads} (a crop)", hint="specc's pad only adds; a crop is a `slice`")
    return out


@converter("Pad")
def pad(cx: Context, nd: OnnxNode) -> None:
    shape = cx.shape(nd.inputs[0])
    if shape is None:
        raise cx.refuse(nd, "a Pad of an input of unknown rank")
    rank = len(shape)
    mode = nd.attr("mode", "constant")
    if mode not in MODES:
        raise cx.refuse(nd, f"pad mode '{mode}' (specc pads constant, reflect or replicate = edge)")
    pairs = _torch_pads(cx, nd, rank)
    used = next((i for i, p in enumerate(pairs) if p != (0, 0)), rank)
    if used == rank:
        cx.bind(nd.outputs[0], cx.src(nd.inputs[0], nd))
        return
    k = rank - used                                        # padded trailing dims, the last first
    if mode != "constant":
        k = max(k, rank - 2)                               # reflect/replicate: one or two leading dims
        if k > 3:
            raise cx.refuse(nd, f"a {mode} pad of {k} trailing dims of a rank-{rank} input (PyTorch pads at most "
                                "the last 3 dims of a tensor with one or two leading dims this way)")
    attrs: dict = {"pad": [v for lo, hi in pairs[rank - k:][::-1] for v in (lo, hi)]}
    if mode != "constant":
        attrs["mode"] = MODES[mode]
    value = nd.attr("value") if cx.g.opset < 11 else None
    if len(nd.inputs) > 2 and nd.inputs[2]:
        c = cx.const(nd.inputs[2])
        if c is None or c.size != 1:
            raise cx.refuse(nd, "its constant_value is not a constant number")
        value = c.reshape(()).item()
        value = float(str(np.float32(value))) if c.dtype == np.float32 else value
    if mode == "constant" and value:
        attrs["value"] = value
    cx.emit("pad", [nd.inputs[0]], attrs, hint=nd.name, outputs=nd.outputs)


@converter("DepthToSpace")
def depth_to_space(cx: Context, nd: OnnxNode) -> None:
    r = int(nd.attr("blocksize"))
    mode = nd.attr("mode", "DCR")
    if mode == "CRD":                                      # torch.pixel_shuffle's order
        cx.emit("pixel_shuffle", [nd.inputs[0]], {"upscale_factor": r}, hint=nd.name, outputs=nd.outputs)
        return
    shape = cx.shape(nd.inputs[0])
    if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        raise cx.refuse(nd, "a DCR DepthToSpace on an input whose channels, height and width are not known")
    n, c, h, w = shape
    split = cx.emit("reshape", [nd.inputs[0]], {"shape": [n, r, r, c // (r * r), h, w]}, hint=nd.name)
    moved = cx.emit("permute", [(split, 0)], {"dims": [0, 3, 4, 1, 5, 2]}, hint=nd.name)
    cx.emit("reshape", [(moved, 0)], {"shape": [n, c // (r * r), h * r, w * r]}, hint=nd.name, outputs=nd.outputs)


def _end_slice(cx: Context, name: str) -> tuple[str, int, int, int] | None:
    """(source, axis, start, end) of a Slice on one axis with step 1 producing `name`."""
    sl = cx.g.producer.get(name)
    if sl is None or sl.op_type != "Slice" or len(sl.inputs) < 4:
        return None
    vals = [cx.const(i) if i else None for i in sl.inputs[1:5]]
    if any(v is None or v.size != 1 for v in vals[:3]) or (len(vals) > 3 and vals[3] is not None
                                                         and int(vals[3].reshape(-1)[0]) != 1):
        return None
    shape = cx.shape(sl.inputs[0])
    if shape is None:
        return None
    axis = int(vals[2].reshape(-1)[0]) % len(shape)
    size = shape[axis]
    start, end = (int(v.reshape(-1)[0]) for v in vals[:2])
    if not isinstance(size, int):
        return None
    start, end = (v + size if v < 0 else v for v in (start, end))
    return sl.inputs[0], axis, min(start, size), min(end, size) if end < BIG else size


def roll(cx: Context, nd: OnnxNode) -> bool:
    """Concat(x[size-s:], x[:size-s]) along one axis, as specc and torch.onnx.export write torch.roll."""
    ins = [i for i in nd.inputs if i]
    if len(ins) != 2:
        return False
    tail, head = _end_slice(cx, ins[0]), _end_slice(cx, ins[1])
    if tail is None or head is None or tail[0] != head[0] or tail[1] != head[1]:
        return False
    src, axis, t0, t1 = tail
    _, _, h0, h1 = head
    size = (cx.shape(src) or ())[axis]
    if nd.attr("axis") % len(cx.shape(src)) != axis or not (t1 == size and h0 == 0 and h1 == t0 and 0 < t0 < size):
        return False
    cx.emit("roll", [src], {"shifts": size - t0, "dims": axis}, hint=nd.name, outputs=nd.outputs)
    return True


def channel_shuffle(cx: Context, nd: OnnxNode) -> bool:
    """Reshape [N, g, C/g, -1] → Transpose [0, 2, 1, 3] → Reshape to the input's shape: `channel_shuffle`."""
    x = nd.inputs[0]
    shape, target = cx.shape(x), cx.const(nd.inputs[1])
    tr = cx.only_consumer(nd.outputs[0], "Transpose")
    back = None if tr is None else cx.only_consumer(tr.outputs[0], "Reshape")
    if shape is None or len(shape) < 3 or target is None or len(target) != 4 or back is None \
            or list(tr.attr("perm") or []) != [0, 2, 1, 3] or not isinstance(shape[1], int):
        return False
    g = int(target[1])
    if int(target[0]) not in (0, shape[0] if isinstance(shape[0], int) else 0) or g < 1 or shape[1] % g \
            or int(target[2]) != shape[1] // g:
        return False
    to = cx.const(back.inputs[1])
    to = cx.g.symbolic.get(back.inputs[1]) if to is None else to
    if to is None or [d if isinstance(d, str) else int(d) for d in to] != list(shape):
        return False
    cx.take(tr)
    cx.take(back)
    cx.emit("channel_shuffle", [x], {"groups": g}, hint=nd.name, outputs=back.outputs)
    return True
