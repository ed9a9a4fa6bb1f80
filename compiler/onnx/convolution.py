"""Convolution and pooling: native Conv, ConvTranspose, MaxPool, AveragePool, GlobalAveragePool, Resize.

Padding is always explicit (`pads`, never auto_pad); attributes that PyTorch and ONNX default
differently (count_include_pad) are always written.
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..ir import Node
from ..ops.convolution import (adaptive_windows, conv_pads, pool_geometry, transpose_output_padding, tup)
from .registry import Builder, lowering


def _onnx_pads(pads) -> list[int]:
    """((lo, hi) per dim) -> ONNX [x1_begin, x2_begin, ..., x1_end, x2_end, ...]."""
    return [lo for lo, _ in pads] + [hi for _, hi in pads]


def _conv(b: Builder, node: Node, x: list, p: list, nd: int) -> str:
    a = node.attrs
    ks, st, dl = tup(a.kernel_size, nd), tup(a.stride, nd), tup(a.dilation, nd)
    return b.op("Conv", [x[0], p[0], p[1] if len(p) > 1 else None], kernel_shape=list(ks), strides=list(st),
                dilations=list(dl), pads=_onnx_pads(conv_pads(a.padding, ks, dl)), group=a.groups)


@lowering("conv1d")
def conv1d(b: Builder, node: Node, x: list, p: list) -> str:
    return _conv(b, node, x, p, 1)


@lowering("conv2d")
def conv2d(b: Builder, node: Node, x: list, p: list) -> str:
    return _conv(b, node, x, p, 2)


@lowering("conv_transpose2d")
def conv_transpose2d(b: Builder, node: Node, x: list, p: list) -> str:
    a = node.attrs
    ks, st, dl, pd = tup(a.kernel_size, 2), tup(a.stride, 2), tup(a.dilation, 2), tup(a.padding, 2)
    sp = b.ins[0].shape[2:]
    if a.output_size is not None:
        opad = transpose_output_padding(a, tuple(sp))      # the shape rule made these sizes concrete
    else:
        opad = tup(a.output_padding, 2)
    # onnxruntime accepts output_padding < stride only (PyTorch: < max(stride, dilation)); a larger
    # one is taken off the end padding, and what is left over is appended as zeros before the bias.
    ends, outpad, extra = [], [], []
    for q, o, s in zip(pd, opad, st):
        if o < s:
            ends.append(q), outpad.append(o), extra.append(0)
        elif o <= q:
            ends.append(q - o), outpad.append(0), extra.append(0)
        else:
            ends.append(0), outpad.append(0), extra.append(o - q)
    bias = p[1] if len(p) > 1 else None
    y = b.op("ConvTranspose", [x[0], p[0], None if any(extra) else bias], kernel_shape=list(ks),
             strides=list(st), dilations=list(dl), pads=list(pd) + ends, output_padding=outpad, group=a.groups)
    if any(extra):
        y = b.op("Pad", [y, b.ints([0, 0, 0, 0, 0, 0] + extra, hint="pads")])
        if bias is not None:
            y = b.op("Add", [y, b.op("Unsqueeze", [bias, b.ints([1, 2], hint="axes")])])
    return y


def _pool(b: Builder, node: Node, x: str, op_type: str, **extra) -> str:
    """MaxPool/AveragePool with PyTorch's output size. ONNX's ceil_mode keeps a last window that starts
    in the right padding, PyTorch's drops it; so the end padding is set to exactly what the kept windows
    reach (never more than `padding`, so count_include_pad divides alike), trailing rows no window reads
    are sliced off, and ceil_mode is only written where a window must hang over the end padding."""
    sp = tuple(b.ins[0].shape[2:])
    ks, st, pd, dl, out = pool_geometry(node.attrs, sp)
    begins, ends, ceil, crop = list(pd), [], 0, {}
    for ax, (i, k, s, p, d, o) in enumerate(zip(sp, ks, st, pd, dl, out)):
        need = (o - 1) * s + d * (k - 1) + 1 - i - p          # how far the last window reaches past the input
        if need > p:                                            # overhang: ONNX's ceil_mode does it, as PyTorch
            ends.append(p)
            ceil = 1
        elif need < 0:                                          # trailing rows no window reads
            crop[ax + 2] = i + need
            ends.append(0)
        else:
            ends.append(need)
    if crop:
        axes = sorted(crop)
        x = b.op("Slice", [x, b.ints([0] * len(axes), hint="starts"), b.ints([crop[a] for a in axes], hint="ends"),
                           b.ints(axes, hint="axes")])
    attrs = dict(kernel_shape=list(ks), strides=list(st), pads=begins + ends, ceil_mode=ceil, **extra)
    return b.op(op_type, [x], **attrs)


@lowering("max_pool2d")
def max_pool2d(b: Builder, node: Node, x: list, p: list) -> str:
    return _pool(b, node, x[0], "MaxPool", dilations=list(tup(node.attrs.dilation, 2)))


@lowering("avg_pool2d")
def avg_pool2d(b: Builder, node: Node, x: list, p: list) -> str:
    return _pool(b, node, x[0], "AveragePool", count_include_pad=int(node.attrs.count_include_pad))


def _adaptive_matrix(i: int, o: int) -> np.ndarray:
    m = np.zeros((o, i), np.float32)
    for j, (s, e) in enumerate(adaptive_windows(i, o)):
        m[j, s:e] = 1.0 / (e - s)
    return m


@lowering("adaptive_avg_pool2d")
def adaptive_avg_pool2d(b: Builder, node: Node, x: list, p: list) -> str:
    sp = tuple(b.ins[0].shape[2:])
    out = tuple(node.outputs.values())[0].shape[2:]
    if out == (1, 1):
        return b.op("GlobalAveragePool", [x[0]])
    if not all(isinstance(i, int) for i in sp):
        raise UserError(f"adaptive_avg_pool2d to {list(out)} needs a concrete input height and width for ONNX export, "
                        f"but its input is {b.ins[0]}",
                        hint="give the spatial sizes as numbers in `inputs`, or pool to 1×1")
    if sp[0] % out[0] == 0 and sp[1] % out[1] == 0:
        k = [sp[0] // out[0], sp[1] // out[1]]
        if k == [1, 1]:
            return b.op("Identity", [x[0]])
        return b.op("AveragePool", [x[0]], kernel_shape=k, strides=k, pads=[0, 0, 0, 0])
    # general windows (overlapping or uneven): the mean is separable, y = A_h · x · A_wᵀ
    y = x[0]
    if sp[1] != out[1]:
        y = b.op("MatMul", [y, b.const(_adaptive_matrix(sp[1], out[1]).T, hint="adaptive_w")])
    if sp[0] != out[0]:
        y = b.op("MatMul", [b.const(_adaptive_matrix(sp[0], out[0]), hint="adaptive_h"), y])
    return y


@lowering("global_avg_pool2d")
def global_avg_pool2d(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Flatten", [b.op("GlobalAveragePool", [x[0]])], axis=1)


@lowering("upsample")
def upsample(b: Builder, node: Node, x: list, p: list) -> str:
    sh, sw = tup(node.attrs.scale_factor, 2)
    scales = b.const(np.asarray([1.0, 1.0, sh, sw], np.float32), hint="scales")
    if node.attrs.mode == "nearest":
        return b.op("Resize", [x[0], None, scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor")
    return b.op("Resize", [x[0], None, scales], mode="linear", coordinate_transformation_mode="half_pixel")
