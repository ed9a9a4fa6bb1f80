"""Convolution and pooling: conv1d, conv2d, conv_transpose2d, max/avg/adaptive/global pooling, upsample.

The geometry helpers at the top (padding resolution, pooling windows, output_padding from
output_size) are shared with runtime/kernels/convolution.py and the lowerings below so
that shape rule, kernel and lowering agree on every size.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, Optional, Union

from pydantic import field_validator

from ..errors import ShapeError, UserError
from ..ir import Init, Node, ParamSpec, TensorType
from .cases import Case
from .lazy import F, np
from .registry import Attrs, Inferred, lowering, op, reference
from .shapes import concrete, per_sample

if TYPE_CHECKING:
    from ..onnx.registry import Builder

Int1 = Union[int, tuple[int]]
Int2 = Union[int, tuple[int, int]]
Pad1 = Union[int, tuple[int], Literal["same", "valid"]]
Pad2 = Union[int, tuple[int, int], Literal["same", "valid"]]

_DIMS = {1: ("length",), 2: ("height", "width")}


def _fmt(shape) -> str:
    return "×".join(str(d) for d in shape) or "scalar"


def tup(v, n: int) -> tuple:
    """An int (or None) repeated n times; a sequence as a tuple."""
    if v is None or isinstance(v, int):
        return (v,) * n
    return tuple(v)


def _show(v) -> str:
    return str(list(v)) if isinstance(v, tuple) else str(v)


class _NoBool(Attrs):
    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_int(cls, v, info):
        # pydantic turns `true` into 1 for an int field; a size given as a boolean is a mistake
        if isinstance(v, bool) and info.field_name not in ("bias", "ceil_mode", "count_include_pad"):
            raise ValueError("expected an integer, got a boolean")
        return v


# -- geometry shared with the kernels and lowerings ------------------------------------------------

def conv_pads(padding, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """(before, after) padding per spatial dim; `same` puts the odd extra on the after side (PyTorch)."""
    n = len(kernel)
    if padding == "valid":
        return ((0, 0),) * n
    if padding == "same":
        tot = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in tot)
    return tuple((p, p) for p in tup(padding, n))


def conv_out(i: int, k: int, s: int, d: int, lo: int, hi: int) -> int:
    return (i + lo + hi - d * (k - 1) - 1) // s + 1


def pool_out(i: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size: with ceil_mode the last window must start inside the input or the left padding."""
    num = i + 2 * p - d * (k - 1) - 1
    o = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (o - 1) * s >= i + p:
        o -= 1
    return o


def transpose_base(i: int, k: int, s: int, p: int, d: int) -> int:
    """conv_transpose output size before output_padding."""
    return (i - 1) * s - 2 * p + d * (k - 1) + 1


def transpose_output_padding(a, in_sp: tuple[int, ...]) -> tuple[int, ...]:
    """output_padding per dim: from `output_size` when given, else the attribute."""
    n = len(in_sp)
    if a.output_size is None:
        return tup(a.output_padding, n)
    ks, st, pd, dl = tup(a.kernel_size, n), tup(a.stride, n), tup(a.padding, n), tup(a.dilation, n)
    want = tup(a.output_size, n)
    out = []
    for ax, (i, k, s, p, d, w) in enumerate(zip(in_sp, ks, st, pd, dl, want)):
        base = transpose_base(i, k, s, p, d)
        top = max(s, d)
        if not base <= w < base + top:
            reach = (", ".join(str(base + j) for j in range(top) if base + j >= 1) or "none") if top <= 64 else \
                f"{max(base, 1)} to {base + top - 1}"             # a huge stride: a range, not a 2**62 loop
            raise ShapeError(f"conv_transpose2d cannot produce {_DIMS[n][ax]} {w} (output_size: {_show(a.output_size)}) "
                             f"from input {_DIMS[n][ax]} {i}: with kernel_size {k}, stride {s}, padding {p} and "
                             f"dilation {d} the reachable sizes are {reach}",
                             hint="pick one of the reachable sizes, or change stride/padding", attr="output_size")
        out.append(w - base)
    return tuple(out)


def adaptive_windows(i: int, o: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling windows: [floor(j·i/o), ceil((j+1)·i/o))."""
    return [((j * i) // o, -(-((j + 1) * i) // o)) for j in range(o)]


# -- shared checks ----------------------------------------------------------------------------------

def _expect_rank(name: str, x: TensorType, nd: int) -> None:
    if x.rank != nd + 2:
        layout = "N×C×L" if nd == 1 else "N×C×H×W"
        hint = {1: "conv1d takes [N, C, L]; for images use conv2d",
                2: "2-d ops take [N, C, H, W]; add a channel dimension with unsqueeze, or use conv1d for sequences"}[nd]
        raise ShapeError(f"{name} expects a rank-{nd + 2} input ({layout}), but its input has rank {x.rank} "
                         f"(shape {x})", hint=hint)
    if x.dtype not in ("float32", "float64"):
        raise ShapeError(f"{name} needs a floating-point input, but its input has dtype {x.dtype} (shape {x})",
                         hint="declare the input as float32")


def _positive(name: str, attr: str, vals: tuple, minimum: int = 1) -> None:
    if any(v < minimum for v in vals):
        what = "positive" if minimum == 1 else "non-negative"
        raise ShapeError(f"{name}'s {attr} must be {what}, got {_show(vals if len(vals) > 1 else vals[0])}",
                         attr=attr)


def _channels(name: str, x: TensorType, a, out_channels: int) -> int:
    c = concrete(x.shape[1], f"{name}'s input channels (dimension 1 of its input)")
    if a.in_channels is not None and a.in_channels != c:
        raise ShapeError(f"{name} expects {a.in_channels} input channels (in_channels: {a.in_channels}) "
                         f"but its input gives {c} (shape {x})", hint="drop in_channels to infer it",
                         attr="in_channels")
    if out_channels < 1:
        raise ShapeError(f"{name}'s out_channels must be positive, got {out_channels}", attr="out_channels")
    if a.groups < 1:
        raise ShapeError(f"{name}'s groups must be positive, got {a.groups}", attr="groups")
    if c % a.groups:
        raise ShapeError(f"{name} with groups: {a.groups} needs input channels divisible by {a.groups}, "
                         f"but its input gives {c} (shape {x})",
                         hint="choose groups dividing both channel counts", attr="groups")
    if out_channels % a.groups:
        raise ShapeError(f"{name} with groups: {a.groups} needs out_channels divisible by {a.groups}, "
                         f"but out_channels is {out_channels}",
                         hint="choose groups dividing both channel counts", attr="groups")
    return c


def _spatial(x: TensorType, nd: int) -> tuple:
    return tuple(x.shape[2:2 + nd])


# -- conv1d / conv2d --------------------------------------------------------------------------------

class Conv1d(_NoBool):
    out_channels: int
    kernel_size: Int1
    stride: Int1 = 1
    padding: Pad1 = 0
    dilation: Int1 = 1
    groups: int = 1
    bias: bool = True
    in_channels: Optional[int] = None


class Conv2d(_NoBool):
    out_channels: int
    kernel_size: Int2
    stride: Int2 = 1
    padding: Pad2 = 0
    dilation: Int2 = 1
    groups: int = 1
    bias: bool = True
    in_channels: Optional[int] = None


def _conv(name: str, nd: int, a, x: TensorType) -> Inferred:
    _expect_rank(name, x, nd)
    ks, st, dl = tup(a.kernel_size, nd), tup(a.stride, nd), tup(a.dilation, nd)
    _positive(name, "kernel_size", ks)
    _positive(name, "stride", st)
    _positive(name, "dilation", dl)
    if isinstance(a.padding, str):
        if a.padding == "same" and any(s != 1 for s in st):
            raise ShapeError(f"{name} with padding 'same' needs stride 1 (as in PyTorch), got stride {_show(a.stride)}",
                             hint="give the padding as a number, e.g. padding: (kernel_size - 1) // 2",
                             attr="padding")
    else:
        _positive(name, "padding", tup(a.padding, nd), minimum=0)
    c = _channels(name, x, a, a.out_channels)
    pads = conv_pads(a.padding, ks, dl)
    out = []
    for ax, (i, k, s, d, (lo, hi)) in enumerate(zip(_spatial(x, nd), ks, st, dl, pads)):
        if not isinstance(i, int) and s == 1 and lo + hi == d * (k - 1):
            out.append(i)                   # size-preserving: a symbolic size flows through
            continue
        i = concrete(i, f"{name}'s input {_DIMS[nd][ax]}")
        o = conv_out(i, k, s, d, lo, hi)
        if o < 1:
            span = d * (k - 1) + 1
            raise ShapeError(f"{name}'s input is too small for its kernel: input {_DIMS[nd][ax]} {i} with padding "
                             f"{lo + hi} in total is smaller than the kernel's span {span} (kernel_size {k}"
                             f"{f', dilation {d}' if d > 1 else ''}) (input shape {x})",
                             hint="use a smaller kernel_size, add padding, or feed a larger input",
                             attr="kernel_size")
        out.append(o)
    cg = c // a.groups
    area = math.prod(ks)
    params = [ParamSpec("weight", (a.out_channels, cg) + ks, Init.of("kaiming_uniform", a=5 ** 0.5))]
    if a.bias:
        params.append(ParamSpec("bias", (a.out_channels,), Init.of("bias_uniform", fan_in=cg * area)))
    y = TensorType((x.shape[0], a.out_channels) + tuple(out), x.dtype)
    return Inferred([y], params, macs=per_sample(y) * cg * area)


@op("conv1d", Conv1d, primary="out_channels",
    cases=[Case({"out_channels": 4, "kernel_size": 3, "padding": 1}, ((2, 2, 7),)),
           Case({"out_channels": 4, "kernel_size": 2, "stride": 2, "groups": 2, "bias": False}, ((1, 2, 8),))])
def conv1d(a: Conv1d, x: TensorType) -> Inferred:
    """1-d cross-correlation over [N, C, L] as torch.nn.Conv1d (weight [out, in/groups, k]); padding 'same' needs stride 1 and puts an odd extra pad on the right."""
    return _conv("conv1d", 1, a, x)


@lowering("conv1d")
def conv1d_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return _conv_onnx(b, node, x, p, 1)


def _conv_torch(nd: int):
    def run(c, x, w, b=None):
        a = c.a
        fn = F.conv1d if nd == 1 else F.conv2d
        ks, dl = tuple(w.shape[2:]), tup(a.dilation, nd)
        pads = conv_pads(a.padding, ks, dl)
        if all(lo == hi for lo, hi in pads):
            pad = tuple(lo for lo, _ in pads)
        else:                                  # 'same' with an even total: the odd extra after (PyTorch)
            x = F.pad(x, [p for lo_hi in reversed(pads) for p in lo_hi])
            pad = 0
        return fn(x, w, b, tup(a.stride, nd), pad, dl, a.groups)
    return run


reference("conv1d")(_conv_torch(1))


@op("conv2d", Conv2d, primary="out_channels",
    cases=[Case({"out_channels": 3, "kernel_size": 3, "padding": 1}, ((2, 2, 5, 5),)),
           Case({"out_channels": 4, "kernel_size": 2, "padding": "same", "dilation": 2, "groups": 2}, ((1, 2, 5, 6),)),
           Case({"out_channels": 2, "kernel_size": [3, 2], "stride": 2}, ((1, 3, 7, 6),)),
           Case({"out_channels": 17, "kernel_size": 3, "padding": 1}, ((1, 16, 16, 20),))])   # the shifted-view path
def conv2d(a: Conv2d, x: TensorType) -> Inferred:
    """2-d cross-correlation over [N, C, H, W] as torch.nn.Conv2d (weight [out, in/groups, kh, kw]); padding 'same' needs stride 1 and puts an odd extra pad on the bottom/right."""
    return _conv("conv2d", 2, a, x)


@lowering("conv2d")
def conv2d_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return _conv_onnx(b, node, x, p, 2)


reference("conv2d")(_conv_torch(2))


# -- conv_transpose2d ----------------------------------------------------------------------------------

class ConvTranspose2d(_NoBool):
    out_channels: int
    kernel_size: Int2
    stride: Int2 = 1
    padding: Int2 = 0
    output_padding: Int2 = 0
    dilation: Int2 = 1
    groups: int = 1
    bias: bool = True
    output_size: Optional[Int2] = None
    in_channels: Optional[int] = None


@op("conv_transpose2d", ConvTranspose2d, primary="out_channels",
    cases=[Case({"out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}, ((2, 2, 3, 4),)),
           Case({"out_channels": 4, "kernel_size": 2, "groups": 2, "bias": False}, ((1, 2, 3, 3),))])
def conv_transpose2d(a: ConvTranspose2d, x: TensorType) -> Inferred:
    """Transposed 2-d convolution (the gradient of conv2d with respect to its input) as torch.nn.ConvTranspose2d: weight [in, out/groups, kh, kw], output (i−1)·s − 2p + d·(k−1) + output_padding + 1; `output_size` [H, W] picks output_padding (and wins over it, as in PyTorch's forward(output_size=...))."""
    name, nd = "conv_transpose2d", 2
    _expect_rank(name, x, nd)
    ks, st, dl, pd = tup(a.kernel_size, nd), tup(a.stride, nd), tup(a.dilation, nd), tup(a.padding, nd)
    _positive(name, "kernel_size", ks)
    _positive(name, "stride", st)
    _positive(name, "dilation", dl)
    _positive(name, "padding", pd, minimum=0)
    op_ = tup(a.output_padding, nd)
    _positive(name, "output_padding", op_, minimum=0)
    if any(o >= max(s, d) for o, s, d in zip(op_, st, dl)):
        raise ShapeError(f"{name}'s output_padding {_show(a.output_padding)} must be smaller than stride or dilation "
                         f"(stride {_show(a.stride)}, dilation {_show(a.dilation)})",
                         hint="output_padding only resolves the ambiguity of a strided output size",
                         attr="output_padding")
    if a.output_size is not None:
        _positive(name, "output_size", tup(a.output_size, nd))
    c = _channels(name, x, a, a.out_channels)
    sp = _spatial(x, nd)
    if a.output_size is not None:
        op_ = transpose_output_padding(a, tuple(concrete(i, f"{name}'s input {_DIMS[nd][ax]}")
                                                for ax, i in enumerate(sp)))
        if any(o != 0 for o in tup(a.output_padding, nd)) and op_ != tup(a.output_padding, nd):
            raise ShapeError(f"{name}'s output_size {_show(a.output_size)} needs output_padding {list(op_)}, "
                             f"but output_padding is {_show(a.output_padding)}",
                             hint="give output_size or output_padding, not both", attr="output_padding")
    out = []
    for ax, (i, k, s, p, d, o_) in enumerate(zip(sp, ks, st, pd, dl, op_)):
        if not isinstance(i, int) and s == 1 and 2 * p == d * (k - 1) + o_:
            out.append(i)
            continue
        i = concrete(i, f"{name}'s input {_DIMS[nd][ax]}")
        o = transpose_base(i, k, s, p, d) + o_
        if o < 1:
            raise ShapeError(f"{name}'s output {_DIMS[nd][ax]} would be {o} (input {i}, kernel_size {k}, stride {s}, "
                             f"padding {p}, dilation {d}): the padding removes more than the kernel adds "
                             f"(input shape {x})", hint="reduce padding", attr="padding")
        out.append(o)
    og = a.out_channels // a.groups
    area = math.prod(ks)
    params = [ParamSpec("weight", (c, og) + ks, Init.of("kaiming_uniform", a=5 ** 0.5))]
    if a.bias:
        params.append(ParamSpec("bias", (a.out_channels,), Init.of("bias_uniform", fan_in=og * area)))
    y = TensorType((x.shape[0], a.out_channels) + tuple(out), x.dtype)
    return Inferred([y], params, macs=per_sample(x) * og * area)


@lowering("conv_transpose2d")
def conv_transpose2d_onnx(b: Builder, node: Node, x: list, p: list) -> str:
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


@reference("conv_transpose2d")
def _conv_transpose2d(c, x, w, b=None):
    a = c.a
    opad = transpose_output_padding(a, tuple(x.shape[2:]))
    return F.conv_transpose2d(x, w, b, tup(a.stride, 2), tup(a.padding, 2), opad, a.groups, tup(a.dilation, 2))


# -- pooling ------------------------------------------------------------------------------------------------

class MaxPool2d(_NoBool):
    kernel_size: Int2
    stride: Optional[Int2] = None           # None: kernel_size
    padding: Int2 = 0
    dilation: Int2 = 1
    ceil_mode: bool = False


class AvgPool2d(_NoBool):
    kernel_size: Int2
    stride: Optional[Int2] = None           # None: kernel_size
    padding: Int2 = 0
    ceil_mode: bool = False
    count_include_pad: bool = True


def pool_geometry(a, in_sp: tuple[int, int]):
    """(kernel, stride, padding, dilation, output size) per dim of a max/avg pool."""
    ks = tup(a.kernel_size, 2)
    st = ks if a.stride is None else tup(a.stride, 2)
    pd = tup(a.padding, 2)
    dl = tup(getattr(a, "dilation", 1), 2)
    out = tuple(pool_out(i, k, s, p, d, a.ceil_mode) for i, k, s, p, d in zip(in_sp, ks, st, pd, dl))
    return ks, st, pd, dl, out


def _pool(name: str, a, x: TensorType) -> Inferred:
    _expect_rank(name, x, 2)
    ks = tup(a.kernel_size, 2)
    _positive(name, "kernel_size", ks)
    if a.stride is not None:
        _positive(name, "stride", tup(a.stride, 2))
    _positive(name, "padding", tup(a.padding, 2), minimum=0)
    if hasattr(a, "dilation"):
        _positive(name, "dilation", tup(a.dilation, 2))
    pd = tup(a.padding, 2)
    if any(p > k // 2 for p, k in zip(pd, ks)):
        raise ShapeError(f"{name}'s padding {_show(a.padding)} is more than half its kernel_size "
                         f"{_show(a.kernel_size)} (PyTorch allows at most kernel_size // 2 = "
                         f"{_show(tuple(k // 2 for k in ks) if not isinstance(a.kernel_size, int) else ks[0] // 2)})",
                         hint="reduce padding or enlarge kernel_size", attr="padding")
    sp = tuple(concrete(i, f"{name}'s input {d}") for i, d in zip(_spatial(x, 2), _DIMS[2]))
    ks, st, pd, dl, out = pool_geometry(a, sp)
    for ax in range(2):
        if out[ax] < 1:
            raise ShapeError(f"{name}'s input is too small for its kernel: input {_DIMS[2][ax]} {sp[ax]} with padding "
                             f"{pd[ax]} gives no complete window of size {dl[ax] * (ks[ax] - 1) + 1} "
                             f"(input shape {x})", hint="use a smaller kernel_size or feed a larger input",
                             attr="kernel_size")
        empty = _padding_only_window(sp[ax], ks[ax], st[ax], pd[ax], dl[ax], out[ax])
        if empty is not None:
            raise ShapeError(f"{name}'s window {empty} along {_DIMS[2][ax]} sees only padding: with input "
                             f"{_DIMS[2][ax]} {sp[ax]}, padding {pd[ax]} and dilation {dl[ax]} its "
                             f"{ks[ax]} taps all miss the input, so that output is −inf (input shape {x})",
                             hint="use a smaller dilation or padding, or feed a larger input", attr="dilation")
    y = TensorType(tuple(x.shape[:2]) + out, x.dtype)
    return Inferred([y], [], macs=per_sample(y) * ks[0] * ks[1])


def _padding_only_window(size: int, k: int, s: int, p: int, d: int, out: int) -> int | None:
    """The first output position of a pool along one dim whose taps all fall in the padding, or None.
    Only a dilated window can skip over the input (padding is at most half the kernel); PyTorch returns
    −inf there with an index outside the window, and its backward writes outside the input."""
    if d == 1:
        return None
    for o in range(out):
        start = o * s - p
        if not any(0 <= start + j * d < size for j in range(k)):
            return o
    return None


@op("max_pool2d", MaxPool2d, primary="kernel_size",
    cases=[Case({"kernel_size": 2}, ((2, 2, 4, 6),)),
           Case({"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, ((1, 2, 6, 5),)),
           Case({"kernel_size": [3, 2]}, ((2, 2, 6, 8),)),
           Case({"kernel_size": 2, "ceil_mode": True}, ((1, 2, 5, 7),)),
           Case({"kernel_size": 2, "padding": 1}, ((1, 2, 6, 6),))])
def max_pool2d(a: MaxPool2d, x: TensorType) -> Inferred:
    """Maximum over k×k windows of [N, C, H, W] as torch.nn.MaxPool2d (stride defaults to kernel_size; padding counts as −∞; ceil_mode keeps a last partial window only if it starts inside the input or left padding). A dilated window whose taps all fall in the padding is a shape error (its output would be −∞). Counts one comparison per window element."""
    return _pool("max_pool2d", a, x)


@lowering("max_pool2d")
def max_pool2d_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return _pool_onnx(b, node, x[0], "MaxPool", dilations=list(tup(node.attrs.dilation, 2)))


@reference("max_pool2d")
def _max_pool2d(c, x):
    ks, st, pd, dl, _ = pool_geometry(c.a, tuple(x.shape[2:]))
    return F.max_pool2d(x, ks, st, pd, dl, ceil_mode=c.a.ceil_mode)


@op("avg_pool2d", AvgPool2d, primary="kernel_size",
    cases=[Case({"kernel_size": 2}, ((2, 2, 4, 6),)),
           Case({"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, ((1, 2, 6, 5),))])
def avg_pool2d(a: AvgPool2d, x: TensorType) -> Inferred:
    """Mean over k×k windows of [N, C, H, W] as torch.nn.AvgPool2d (stride defaults to kernel_size; count_include_pad divides by the window size clipped to the padded input, else by the number of input elements). Counts one add per window element."""
    return _pool("avg_pool2d", a, x)


@lowering("avg_pool2d")
def avg_pool2d_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return _pool_onnx(b, node, x[0], "AveragePool", count_include_pad=int(node.attrs.count_include_pad))


@reference("avg_pool2d")
def _avg_pool2d(c, x):
    ks, st, pd, _, _ = pool_geometry(c.a, tuple(x.shape[2:]))
    return F.avg_pool2d(x, ks, st, pd, ceil_mode=c.a.ceil_mode, count_include_pad=c.a.count_include_pad)


class AdaptiveAvgPool2d(_NoBool):
    output_size: Union[int, tuple[Optional[int], Optional[int]]]


@op("adaptive_avg_pool2d", AdaptiveAvgPool2d, primary="output_size",
    cases=[Case({"output_size": [2, 3]}, ((2, 2, 5, 7),))])
def adaptive_avg_pool2d(a: AdaptiveAvgPool2d, x: TensorType) -> Inferred:
    """Mean over the adaptive windows [floor(i·H/Oh), ceil((i+1)·H/Oh)) of [N, C, H, W] as torch.nn.AdaptiveAvgPool2d; keeps rank 4; a null size keeps that input size."""
    name = "adaptive_avg_pool2d"
    _expect_rank(name, x, 2)
    sp = _spatial(x, 2)
    want = tup(a.output_size, 2)
    _positive(name, "output_size", tuple(1 if w is None else w for w in want))
    out = tuple(i if w is None else w for i, w in zip(sp, want))
    c = x.shape[1] if isinstance(x.shape[1], int) else 1
    if all(isinstance(i, int) for i in sp) and max(out) <= 100_000:      # (a window per output: no 2**62 loop)
        reads = math.prod(sum(e - s for s, e in adaptive_windows(i, o)) for i, o in zip(sp, out))
        macs = c * reads
    else:
        macs = per_sample(x)
    return Inferred([TensorType(tuple(x.shape[:2]) + out, x.dtype)], [], macs=macs)


@lowering("adaptive_avg_pool2d")
def adaptive_avg_pool2d_onnx(b: Builder, node: Node, x: list, p: list) -> str:
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


@reference("adaptive_avg_pool2d")
def _adaptive_avg_pool2d(c, x):
    return F.adaptive_avg_pool2d(x, c.a.output_size)


@op("global_avg_pool2d", family="convolution",
    cases=[Case({}, ((2, 3, 4, 5),))])
def global_avg_pool2d(a, x: TensorType) -> Inferred:
    """Mean over H and W of [N, C, H, W], giving [N, C] (adaptive_avg_pool2d(1) followed by flatten)."""
    _expect_rank("global_avg_pool2d", x, 2)
    return Inferred([TensorType(tuple(x.shape[:2]), x.dtype)], [], macs=per_sample(x))


@lowering("global_avg_pool2d")
def global_avg_pool2d_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Flatten", [b.op("GlobalAveragePool", [x[0]])], axis=1)


@reference("global_avg_pool2d")
def _global_avg_pool2d(c, x):
    return x.mean(dim=(2, 3))


class Upsample(_NoBool):
    scale_factor: Int2
    mode: Literal["nearest", "bilinear"] = "nearest"


@op("upsample", Upsample, primary="scale_factor",
    cases=[Case({"scale_factor": 2}, ((1, 2, 3, 4),)),
           Case({"scale_factor": 2, "mode": "bilinear"}, ((1, 2, 3, 4),))])
def upsample(a: Upsample, x: TensorType) -> Inferred:
    """Enlarge H and W of [N, C, H, W] by integer factors as torch.nn.Upsample: nearest copies pixels (no MACs), bilinear interpolates with align_corners=false (4 MACs per output element)."""
    name = "upsample"
    _expect_rank(name, x, 2)
    sf = tup(a.scale_factor, 2)
    _positive(name, "scale_factor", sf)
    out = tuple(i if f == 1 else concrete(i, f"upsample's input {d}") * f
                for i, f, d in zip(_spatial(x, 2), sf, _DIMS[2]))
    y = TensorType(tuple(x.shape[:2]) + out, x.dtype)
    return Inferred([y], [], macs=0 if a.mode == "nearest" else 4 * per_sample(y))


@lowering("upsample")
def upsample_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    sh, sw = tup(node.attrs.scale_factor, 2)
    scales = b.const(np.asarray([1.0, 1.0, sh, sw], np.float32), hint="scales")
    if node.attrs.mode == "nearest":
        return b.op("Resize", [x[0], None, scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor")
    return b.op("Resize", [x[0], None, scales], mode="linear", coordinate_transformation_mode="half_pixel")


@reference("upsample")
def _upsample(c, x):
    sf = tuple(float(f) for f in tup(c.a.scale_factor, 2))
    if c.a.mode == "nearest":
        return F.interpolate(x, scale_factor=sf, mode="nearest")
    return F.interpolate(x, scale_factor=sf, mode="bilinear", align_corners=False)


# ---------------------------------------------------------------- helpers of the ONNX lowerings

def _onnx_pads(pads) -> list[int]:
    """((lo, hi) per dim) -> ONNX [x1_begin, x2_begin, ..., x1_end, x2_end, ...]."""
    return [lo for lo, _ in pads] + [hi for _, hi in pads]


def _conv_onnx(b: Builder, node: Node, x: list, p: list, nd: int) -> str:
    a = node.attrs
    ks, st, dl = tup(a.kernel_size, nd), tup(a.stride, nd), tup(a.dilation, nd)
    return b.op("Conv", [x[0], p[0], p[1] if len(p) > 1 else None], kernel_shape=list(ks), strides=list(st),
                dilations=list(dl), pads=_onnx_pads(conv_pads(a.padding, ks, dl)), group=a.groups)


def _pool_onnx(b: Builder, node: Node, x: str, op_type: str, **extra) -> str:
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


def _adaptive_matrix(i: int, o: int) -> np.ndarray:
    m = np.zeros((o, i), np.float32)
    for j, (s, e) in enumerate(adaptive_windows(i, o)):
        m[j, s:e] = 1.0 / (e - s)
    return m


# --------------------------------------------------------------------------- pixel_shuffle, channel_shuffle

class PixelShuffle(Attrs):
    upscale_factor: int


@op("pixel_shuffle", PixelShuffle, primary="upscale_factor", torch="F.pixel_shuffle",
    torch_module="nn.PixelShuffle",
    cases=[Case({"upscale_factor": 2}, ((1, 16, 2, 3),)), Case({"upscale_factor": 3}, ((2, 9, 2, 2),))])
def pixel_shuffle(a: PixelShuffle, x: TensorType) -> Inferred:
    """[N, C·r², H, W] → [N, C, H·r, W·r] with r = upscale_factor (as torch.pixel_shuffle, ONNX
    DepthToSpace in CRD mode): sub-pixel convolution's upsampling, channels c·r² + i·r + j going to row
    offset i and column offset j."""
    r = a.upscale_factor
    if r < 1:
        raise ShapeError(f"pixel_shuffle: upscale_factor must be positive, got {r}", attr="upscale_factor")
    if x.rank != 4:
        raise ShapeError(f"pixel_shuffle expects a rank-4 input [N, C, H, W], but it has shape {x}")
    n, c, h, w = x.shape
    c = concrete(c, "pixel_shuffle's channel count")
    h, w = concrete(h, "pixel_shuffle's height"), concrete(w, "pixel_shuffle's width")
    if c % (r * r):
        raise ShapeError(f"pixel_shuffle: the input's {c} channels are not a multiple of upscale_factor² = "
                         f"{r * r} (shape {x})", attr="upscale_factor",
                         hint=f"give the layer before it a multiple of {r * r} output channels")
    return Inferred([TensorType((n, c // (r * r), h * r, w * r), x.dtype)])


@lowering("pixel_shuffle")
def pixel_shuffle_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    r = node.attrs.upscale_factor
    if b.ins[0].dtype.startswith("float"):
        return b.op("DepthToSpace", [x[0]], blocksize=r, mode="CRD")
    _, c, h, w = node.out.shape             # onnxruntime's DepthToSpace takes floats only: spelled out
    split = b.op("Reshape", [x[0], b.ints([0, c, r, r, h // r, w // r])])
    moved = b.op("Transpose", [split], perm=[0, 1, 4, 2, 5, 3])
    return b.op("Reshape", [moved, b.ints([0, c, h, w])])


class ChannelShuffle(Attrs):
    groups: int


@op("channel_shuffle", ChannelShuffle, primary="groups", torch="F.channel_shuffle",
    torch_module="nn.ChannelShuffle",
    cases=[Case({"groups": 2}, ((2, 6, 3),)), Case({"groups": 3}, ((1, 6, 2, 2),))])
def channel_shuffle(a: ChannelShuffle, x: TensorType) -> Inferred:
    """Interleaves the channels (dim 1) of `groups` groups, as ShuffleNet between grouped convolutions (and
    torch.nn.functional.channel_shuffle): channel i·(C/groups) + k goes to k·groups + i; shape unchanged."""
    g = a.groups
    if g < 1:
        raise ShapeError(f"channel_shuffle: groups must be positive, got {g}", attr="groups")
    if x.rank < 3:
        raise ShapeError(f"channel_shuffle expects an input [N, C, ...] of rank 3 or more, but it has shape {x}",
                         hint="as PyTorch: add a spatial dimension with unsqueeze")
    c = concrete(x.shape[1], "channel_shuffle's channel count")
    if c % g:
        raise ShapeError(f"channel_shuffle: the input's {c} channels do not split into {g} groups (shape {x})",
                         attr="groups")
    return Inferred([x])


@lowering("channel_shuffle")
def channel_shuffle_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    g = node.attrs.groups
    c = b.ins[0].shape[1]
    split = b.op("Reshape", [x[0], b.ints([0, g, c // g, -1])])
    swapped = b.op("Transpose", [split], perm=[0, 2, 1, 3])
    return b.op("Reshape", [swapped, b.op("Shape", [x[0]])])
