"""Convolution and pooling: Conv, ConvTranspose, MaxPool, AveragePool, GlobalAveragePool/GlobalMaxPool.

ONNX pads are [x1_begin, x2_begin, ..., x1_end, x2_end, ...]; specc (as PyTorch) pads both sides alike,
or 'same'. A pool whose end padding is smaller than its begin padding (specc's export sets the end to
exactly what the kept windows reach) becomes the PyTorch padding with the ceil_mode giving the same size.
"""
from __future__ import annotations

import numpy as np

from ..ops.convolution import conv_pads, pool_out
from .dense import _weight_hint
from .registry import Context, OnnxNode, converter


def _one(v: list[int]) -> int | list[int]:
    return v[0] if len(set(v)) == 1 else list(v)


def _pads(cx: Context, nd: OnnxNode, nd_: int) -> list[tuple[int, int]]:
    auto = nd.attr("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID", ""):
        raise cx.refuse(nd, f"auto_pad {auto}", hint="export with explicit pads (torch.onnx.export and specc do)")
    p = nd.attr("pads") or [0] * (2 * nd_)
    return list(zip(p[:nd_], p[nd_:]))


@converter("Conv")
def conv(cx: Context, nd: OnnxNode) -> None:
    w = cx.const(nd.inputs[1])
    if w is None:
        raise cx.refuse(nd, "its weight is computed at run time; specc's conv layers hold constant weights")
    nd_ = w.ndim - 2
    if nd_ not in (1, 2):
        raise cx.refuse(nd, f"a {nd_}-d convolution (specc has conv1d and conv2d)")
    ks = list(w.shape[2:])
    st, dl = nd.attr("strides") or [1] * nd_, nd.attr("dilations") or [1] * nd_
    pads = _pads(cx, nd, nd_)
    if all(lo == hi for lo, hi in pads):
        padding: object = _one([lo for lo, _ in pads])
    elif tuple(pads) == conv_pads("same", tuple(ks), tuple(dl)) and all(s == 1 for s in st):
        padding = "same"
    else:
        raise cx.refuse(nd, f"asymmetric padding {nd.attr('pads')} (specc pads both sides alike, or 'same')")
    attrs = {"out_channels": int(w.shape[0]), "kernel_size": _one(ks)}
    if any(s != 1 for s in st):
        attrs["stride"] = _one(st)
    if padding != 0:
        attrs["padding"] = padding
    if any(d != 1 for d in dl):
        attrs["dilation"] = _one(dl)
    if nd.attr("group", 1) != 1:
        attrs["groups"] = nd.attr("group")
    params = {"weight": w.astype(np.float32)}
    if len(nd.inputs) > 2 and nd.inputs[2]:
        b = cx.const(nd.inputs[2])
        if b is None:
            raise cx.refuse(nd, "its bias is computed at run time")
        params["bias"] = b.astype(np.float32)
    else:
        attrs["bias"] = False
    cx.emit(f"conv{nd_}d", [nd.inputs[0]], attrs, params, hint=_weight_hint(nd.inputs[1], nd), outputs=nd.outputs)


@converter("ConvTranspose")
def conv_transpose(cx: Context, nd: OnnxNode) -> None:
    w = cx.const(nd.inputs[1])
    if w is None or w.ndim != 4:
        raise cx.refuse(nd, "specc imports 2-d transposed convolutions with constant weights only")
    if nd.attr("output_shape") is not None:
        raise cx.refuse(nd, "the output_shape attribute", hint="export with pads and output_padding")
    g = nd.attr("group", 1)
    ks = list(w.shape[2:])
    st, dl = nd.attr("strides") or [1, 1], nd.attr("dilations") or [1, 1]
    pads = _pads(cx, nd, 2)
    opad = list(nd.attr("output_padding") or [0, 0])
    # a smaller end pad is the same as more output padding
    for i, (lo, hi) in enumerate(pads):
        if hi > lo:
            raise cx.refuse(nd, f"end padding larger than begin padding ({nd.attr('pads')})")
        opad[i] += lo - hi
    attrs = {"out_channels": int(w.shape[1]) * g, "kernel_size": _one(ks)}
    if any(s != 1 for s in st):
        attrs["stride"] = _one(st)
    if any(lo for lo, _ in pads):
        attrs["padding"] = _one([lo for lo, _ in pads])
    if any(opad):
        attrs["output_padding"] = _one(opad)
    if any(d != 1 for d in dl):
        attrs["dilation"] = _one(dl)
    if g != 1:
        attrs["groups"] = g
    params = {"weight": w.astype(np.float32)}
    if len(nd.inputs) > 2 and nd.inputs[2]:
        params["bias"] = cx.const(nd.inputs[2]).astype(np.float32)
    else:
        attrs["bias"] = False
    cx.emit("conv_transpose2d", [nd.inputs[0]], attrs, params, hint=_weight_hint(nd.inputs[1], nd), outputs=nd.outputs)


def _onnx_pool_out(i: int, k: int, s: int, lo: int, hi: int, d: int, ceil: int) -> int:
    num = i + lo + hi - d * (k - 1) - 1
    o = (-(-num // s) if ceil else num // s) + 1
    if ceil and (o - 1) * s >= i + lo:                  # a window may not start in the end padding
        o -= 1
    return o


@converter("MaxPool", "AveragePool")
def pool(cx: Context, nd: OnnxNode) -> None:
    ks = nd.attr("kernel_shape")
    if len(ks) != 2:
        raise cx.refuse(nd, f"a {len(ks)}-d pool (specc pools 2-d)")
    if len(nd.outputs) > 1 and nd.outputs[1] and cx.consumers(nd.outputs[1]):
        raise cx.refuse(nd, "its Indices output is read")
    st, dl = nd.attr("strides") or [1, 1], nd.attr("dilations") or [1, 1]
    pads = _pads(cx, nd, 2)
    ceil = nd.attr("ceil_mode", 0)
    sp = (cx.shape(nd.inputs[0]) or (None,) * 4)[2:]
    mode = bool(ceil)
    for i, (lo, hi) in enumerate(pads):
        if hi > lo:
            raise cx.refuse(nd, f"end padding larger than begin padding ({nd.attr('pads')})")
    if any(lo != hi for lo, hi in pads) or ceil:
        if not all(isinstance(i, int) for i in sp):
            raise cx.refuse(nd, "uneven padding or ceil_mode on an input whose height and width are not known")
        want = [_onnx_pool_out(i, k, s, lo, hi, d, ceil) for i, k, s, (lo, hi), d in zip(sp, ks, st, pads, dl)]
        for mode in (False, True):
            if [pool_out(i, k, s, lo, d, mode) for i, k, s, (lo, _), d in zip(sp, ks, st, pads, dl)] == want:
                break
        else:
            raise cx.refuse(nd, f"no PyTorch ceil_mode gives its output size {want}")
    attrs: dict = {"kernel_size": _one(ks)}
    if list(st) != list(ks):
        attrs["stride"] = _one(st)
    if any(lo for lo, _ in pads):
        attrs["padding"] = _one([lo for lo, _ in pads])
    if nd.op_type == "MaxPool" and any(d != 1 for d in dl):
        attrs["dilation"] = _one(dl)
    if mode:
        attrs["ceil_mode"] = True
    if nd.op_type == "AveragePool":
        if any(d != 1 for d in dl):
            raise cx.refuse(nd, "a dilated average pool")
        if any(lo for lo, _ in pads) and not nd.attr("count_include_pad", 0):
            attrs["count_include_pad"] = False
    op = "max_pool2d" if nd.op_type == "MaxPool" else "avg_pool2d"
    cx.emit(op, [nd.inputs[0]], attrs, hint=nd.name, outputs=nd.outputs[:1])


@converter("GlobalAveragePool")
def global_avg_pool(cx: Context, nd: OnnxNode) -> None:
    r = len(cx.shape(nd.inputs[0]) or (0, 0, 0, 0))
    if r != 4:
        raise cx.refuse(nd, "a global pool over other than 2 spatial dims")
    flat = cx.only_consumer(nd.outputs[0], ("Flatten", "Reshape"))
    if flat is not None and (flat.op_type == "Flatten" and flat.attr("axis", 1) == 1
                             or flat.op_type == "Reshape" and _is_flat(cx, flat)):
        cx.take(flat)
        cx.emit("global_avg_pool2d", [nd.inputs[0]], hint=nd.name, outputs=flat.outputs)
        return
    cx.emit("adaptive_avg_pool2d", [nd.inputs[0]], {"output_size": 1}, hint=nd.name, outputs=nd.outputs)


def _is_flat(cx: Context, nd: OnnxNode) -> bool:
    """A Reshape to [batch, -1] (torch's `x.view(x.size(0), -1)`)."""
    s = cx.const(nd.inputs[1])
    if s is None:
        s = cx.g.symbolic.get(nd.inputs[1])
    if s is None or len(s) != 2 or isinstance(s[1], str) or int(s[1]) != -1:
        return False
    return isinstance(s[0], str) or int(s[0]) == 0 or s[0] == (cx.shape(nd.inputs[0]) or [None])[0]


@converter("GlobalMaxPool")
def global_max_pool(cx: Context, nd: OnnxNode) -> None:
    cx.emit("max", [nd.inputs[0]], {"dim": [2, 3], "keepdim": True}, hint=nd.name, outputs=nd.outputs)
