"""Normalisation: batch_norm, layer_norm, dropout, standardize, stochastic_depth."""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..errors import ShapeError
from ..ir import Init, Node, ParamSpec, TensorType
from .cases import Case
from .lazy import F, np, torch
from .registry import Attrs, Inferred, lowering, op, reference
from .shapes import concrete, norm_dim, per_sample
from .tensor import to_float

if TYPE_CHECKING:
    from ..onnx.registry import Builder

FLOATS = ("float32", "float64")


def _fmt(shape) -> str:
    return "×".join(str(d) for d in shape) or "scalar"


def expect_float(x: TensorType, what: str) -> None:
    if x.dtype not in FLOATS:
        raise ShapeError(f"{what} needs a floating-point input, but its input has dtype {x.dtype} (shape {x})",
                         hint="declare the input as float32, or cast it first")


# -- batch_norm -------------------------------------------------------------------------------

class BatchNorm(Attrs):
    eps: float = 1e-5
    momentum: float | None = 0.1            # None: cumulative average (PyTorch's momentum=None)
    affine: bool = True
    num_features: int | None = None


@op("batch_norm", BatchNorm,
    cases=[Case({}, ((4, 3, 2, 2),)),
           Case({}, ((6, 3),), training=True),
           Case({"affine": False, "momentum": None}, ((4, 3, 5),), training=True)])
def batch_norm(a: BatchNorm, x: TensorType) -> Inferred:
    """Batch normalisation over dim 1 (N×C, N×C×L or N×C×H×W): batch statistics and running-stat updates (unbiased variance, PyTorch's momentum) in training, running statistics in eval."""
    if x.rank not in (2, 3, 4):
        raise ShapeError(f"batch_norm expects a rank-2 (N×C), rank-3 (N×C×L) or rank-4 (N×C×H×W) input, "
                         f"but its input has rank {x.rank} (shape {x})",
                         hint="flatten or reshape so that the channels are dimension 1")
    expect_float(x, "batch_norm")
    c = concrete(x.shape[1], "batch_norm's channel count (dimension 1 of its input)")
    if a.num_features is not None and a.num_features != c:
        raise ShapeError(f"batch_norm expects {a.num_features} channels (num_features: {a.num_features}) "
                         f"but its input gives {c} (shape {x})",
                         hint="drop num_features to infer it", attr="num_features")
    if a.eps < 0:
        raise ShapeError(f"eps must be non-negative, got {a.eps}", attr="eps")
    if a.momentum is not None and not 0.0 <= a.momentum <= 1.0:
        raise ShapeError(f"momentum must be between 0 and 1, got {a.momentum}", attr="momentum",
                         hint="PyTorch's default is 0.1: running = (1 - momentum)·running + momentum·batch")
    params = []
    if a.affine:
        params += [ParamSpec("weight", (c,), Init.of("ones")), ParamSpec("bias", (c,), Init.of("zeros"))]
    params += [ParamSpec("running_mean", (c,), Init.of("zeros"), buffer=True),
               ParamSpec("running_var", (c,), Init.of("ones"), buffer=True),
               ParamSpec("num_batches_tracked", (), Init.of("zeros"), buffer=True, dtype="int64")]
    return Inferred([TensorType(x.shape, x.dtype)], params, macs=per_sample(x))


@lowering("batch_norm")
def batch_norm_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    a = node.attrs
    if a.affine:
        scale, bias, mean, var = p[:4]
    else:
        c = b.ins[0].shape[1]
        mean, var = p[:2]
        scale, bias = b.const(np.ones(c, np.float32), hint="ones"), b.const(np.zeros(c, np.float32), hint="zeros")
    # ONNX BatchNormalization takes N×C×D1×… of any rank >= 2; inference form uses the running statistics
    return b.op("BatchNormalization", [x[0], scale, bias, mean, var], epsilon=float(a.eps))


@reference("batch_norm")
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


# -- layer_norm -------------------------------------------------------------------------------

class LayerNorm(Attrs):
    normalized_shape: int | list[int] | None = None     # default: the last dimension
    eps: float = 1e-5
    elementwise_affine: bool = True
    bias: bool = True
    dim: int | None = None                              # one dimension to normalise instead (channels-first: 1)


@op("layer_norm", LayerNorm,
    cases=[Case({}, ((2, 3, 4),)), Case({"normalized_shape": [3, 4], "bias": False}, ((2, 3, 4),)),
           Case({"dim": 1}, ((2, 3, 4, 5),)), Case({"dim": -2, "eps": 1e-6}, ((2, 3, 4),))])
def layer_norm(a: LayerNorm, x: TensorType) -> Inferred:
    """Layer normalisation over the trailing `normalized_shape` dims (default: the last one), with weight and bias of that shape.

    `dim` normalises over that one dimension instead, weight and bias [its size]: `dim: 1` on an N×C×H×W
    input is torchvision's LayerNorm2d (ConvNeXt), the channels normalised at each position.
    """
    expect_float(x, "layer_norm")
    if x.rank < 1:
        raise ShapeError("layer_norm needs an input with at least one dimension, got a scalar")
    if a.dim is not None:
        if a.normalized_shape is not None:
            raise ShapeError("layer_norm takes normalized_shape (trailing dimensions) or dim (one dimension), "
                             "not both", hint="drop normalized_shape: dim's size is read off the input", attr="dim")
        d = norm_dim(a.dim, x.rank)
        ns = (concrete(x.shape[d], f"layer_norm's normalised size (dimension {d} of its input)", attr="dim"),)
    elif a.normalized_shape is None:
        ns = (concrete(x.shape[-1], "layer_norm's normalised size (last dimension of its input)"),)
    else:
        ns = (a.normalized_shape,) if isinstance(a.normalized_shape, int) else tuple(a.normalized_shape)
        if not ns or any(d < 1 for d in ns):
            raise ShapeError(f"normalized_shape must list positive sizes, got {a.normalized_shape}",
                             attr="normalized_shape")
        if len(ns) > x.rank:
            raise ShapeError(f"layer_norm normalises the last {len(ns)} dimensions ({_fmt(ns)}) "
                             f"but its input has only {x.rank} (shape {x})", attr="normalized_shape")
        tail = tuple(concrete(d, "layer_norm's normalised dimensions", attr="normalized_shape")
                     for d in x.shape[x.rank - len(ns):])
        if tail != ns:
            raise ShapeError(f"layer_norm expects its input to end in {_fmt(ns)} (normalized_shape: "
                             f"{a.normalized_shape}) but its input has shape {x}",
                             hint=f"normalized_shape must equal the trailing dimensions, here {_fmt(tail)}; "
                                  "drop it to normalise the last dimension", attr="normalized_shape")
    if a.eps < 0:
        raise ShapeError(f"eps must be non-negative, got {a.eps}", attr="eps")
    params = []
    if a.elementwise_affine:
        params.append(ParamSpec("weight", ns, Init.of("ones")))
        if a.bias:
            params.append(ParamSpec("bias", ns, Init.of("zeros")))
    return Inferred([TensorType(x.shape, x.dtype)], params, macs=per_sample(x))


@lowering("layer_norm")
def layer_norm_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    a = node.attrs
    ns = a.normalized_shape
    k = 1 if ns is None or isinstance(ns, int) else len(ns)
    rank = b.ins[0].rank
    d = None if a.dim is None else a.dim % rank
    moved = d is not None and d != rank - 1
    if p:
        scale, bias = p[0], (p[1] if len(p) > 1 else None)
    else:
        shape = [int(b.ins[0].shape[d])] if d is not None else [int(s) for s in b.ins[0].shape[-k:]]
        scale, bias = b.const(np.ones(shape, np.float32), hint="ones"), None
    # LayerNormalization normalises trailing axes: a channels-first dim goes last and back (a Transpose pair)
    perm = [i for i in range(rank) if i != d] + [d] if moved else None
    v = b.op("Transpose", [x[0]], perm=perm) if moved else x[0]
    y = b.op("LayerNormalization", [v, scale, bias], axis=-k, epsilon=float(a.eps))
    return b.op("Transpose", [y], perm=[perm.index(i) for i in range(rank)]) if moved else y


@reference("layer_norm")
def _layer_norm(c, x, w=None, b=None):
    if c.a.dim is not None:
        d = c.a.dim % x.dim()
        return F.layer_norm(x.movedim(d, -1), (x.shape[d],), w, b, c.a.eps).movedim(-1, d)
    ns = c.a.normalized_shape
    ns = (x.shape[-1],) if ns is None else ((ns,) if isinstance(ns, int) else tuple(ns))
    return F.layer_norm(x, ns, w, b, c.a.eps)


# -- dropout ----------------------------------------------------------------------------------

class Dropout(Attrs):
    p: float = 0.5


@op("dropout", Dropout, primary="p",
    cases=[Case({}, ((2, 3),)), Case({"p": 0.3}, ((4, 5),), training=True, torch=False)])
def dropout(a: Dropout, x: TensorType) -> Inferred:
    """Inverted dropout: in training zero each element with probability p and scale the rest by 1/(1-p); identity in eval."""
    if not 0.0 <= a.p < 1.0:
        raise ShapeError(f"dropout probability p must be in [0, 1), got {a.p}", attr="p",
                         hint="p is the probability of dropping an element, e.g. p: 0.5")
    expect_float(x, "dropout")
    return Inferred([TensorType(x.shape, x.dtype)], macs=per_sample(x))


@lowering("dropout")
def dropout_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Identity", [x[0]])


@reference("dropout")
def _dropout(c, x):
    if not c.training or c.a.p == 0.0:
        return x
    return F.dropout(x, c.a.p, True)


# -- standardize ------------------------------------------------------------------------------

class Standardize(Attrs):
    mean: float | list[float] | None = None
    std: float | list[float] | None = None
    from_data: bool = False


def _channel_values(v: float | list[float], c: int, attr: str, x: TensorType) -> list[float]:
    vals = [float(v)] if isinstance(v, (int, float)) else [float(u) for u in v]
    if len(vals) == 1:
        return vals * c
    if len(vals) != c:
        raise ShapeError(f"standardize has {len(vals)} {attr} values but its input has {c} channels "
                         f"(dimension 1 of shape {x})",
                         hint=f"give one number for all channels or exactly {c} values", attr=attr)
    return vals


def _values_init(vals: list[float]) -> Init:
    if all(v == vals[0] for v in vals):
        return Init.of("constant", value=vals[0])
    return Init.of("values", values=tuple(vals))


@op("standardize", Standardize,
    cases=[Case({"mean": [0.5, -1.0, 2.0], "std": [2.0, 0.5, 1.0]}, ((2, 3, 4),))])
def standardize(a: Standardize, x: TensorType) -> Inferred:
    """Input normalisation (x − mean) / std per channel (dim 1), mean/std kept as buffers; from_data: the trainer fits them on the training set."""
    given = [n for n in ("mean", "std") if getattr(a, n) is not None]
    if a.from_data and given:
        raise ShapeError("standardize takes either mean and std, or from_data: true, not both",
                         hint="drop mean/std to fit them on the training set, or drop from_data",
                         attr="from_data")
    if not a.from_data and len(given) < 2:
        if given:
            missing = "std" if given[0] == "mean" else "mean"
            raise ShapeError(f"standardize has {given[0]} but no {missing}",
                             hint=f"give {missing} too (a number, or one value per channel)", attr=given[0])
        raise ShapeError("standardize needs mean and std, or from_data: true",
                         hint="e.g. {op: standardize, mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.243, 0.261]}, "
                              "or from_data: true to compute them from the training set")
    if x.rank < 2:
        raise ShapeError(f"standardize normalises per channel (dimension 1) and needs an input of rank 2 or more, "
                         f"but its input has shape {x}", hint="give the input a batch dimension first")
    if x.dtype == "bool":
        raise ShapeError(f"standardize needs a numeric input, but its input has dtype bool (shape {x})")
    c = concrete(x.shape[1], "standardize's channel count (dimension 1 of its input)")
    if a.from_data:
        mean_init, std_init = Init.of("zeros"), Init.of("ones")
    else:
        means = _channel_values(a.mean, c, "mean", x)
        stds = _channel_values(a.std, c, "std", x)
        if any(s <= 0 for s in stds):
            raise ShapeError(f"std must be positive, got {a.std}", attr="std")
        mean_init, std_init = _values_init(means), _values_init(stds)
    params = [ParamSpec("mean", (c,), mean_init, buffer=True), ParamSpec("std", (c,), std_init, buffer=True)]
    out = TensorType(x.shape, x.dtype if x.dtype in FLOATS else "float32")
    return Inferred([out], params, macs=per_sample(x))


@lowering("standardize")
def standardize_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    t = b.ins[0]
    v = x[0]
    if t.dtype not in ("float32", "float64"):
        v = b.op("Cast", [v], to=1)                       # TensorProto.FLOAT
    mean, std = p
    if t.dtype == "float64":                              # buffers are float32 initialisers
        mean, std = b.op("Cast", [mean], to=11), b.op("Cast", [std], to=11)
    if t.rank > 2:
        shape = b.ints([-1] + [1] * (t.rank - 2))
        mean, std = b.op("Reshape", [mean, shape]), b.op("Reshape", [std, shape])
    return b.op("Div", [b.op("Sub", [v, mean]), std])


@reference("standardize")
def _standardize(c, x, mean, std):
    x = to_float(c, x)
    shape = (-1,) + (1,) * (x.dim() - 2)
    return (x - mean.to(x.dtype).view(shape)) / std.to(x.dtype).view(shape)


# -- stochastic_depth -------------------------------------------------------------------------

class StochasticDepth(Attrs):
    p: float
    mode: Literal["row", "batch"] = "row"


@op("stochastic_depth", StochasticDepth, primary="p",
    cases=[Case({"p": 0.2}, ((4, 3, 2, 2),)),
           Case({"p": 0.5}, ((6, 3, 2),), training=True, torch=False),
           Case({"p": 0.3, "mode": "batch"}, ((4, 5),), training=True, torch=False)])
def stochastic_depth(a: StochasticDepth, x: TensorType) -> Inferred:
    """Stochastic depth (torchvision.ops.StochasticDepth), on a residual branch: in training drop whole rows with probability p and scale the survivors by 1/(1-p); identity in eval.

    mode: row drops each sample's row independently (dim 0, the batch); batch drops the whole input at once.
    """
    if not 0.0 <= a.p <= 1.0:
        raise ShapeError(f"stochastic_depth probability p must be in [0, 1], got {a.p}", attr="p",
                         hint="p is the probability of dropping a sample's branch, e.g. p: 0.1")
    expect_float(x, "stochastic_depth")
    if a.mode == "row" and x.rank < 1:
        raise ShapeError("stochastic_depth with mode: row drops rows of dimension 0, but its input is a scalar",
                         hint="use mode: batch", attr="mode")
    return Inferred([TensorType(x.shape, x.dtype)], macs=per_sample(x))


@lowering("stochastic_depth")
def stochastic_depth_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    return b.op("Identity", [x[0]])


@reference("stochastic_depth")
def _stochastic_depth(c, x):
    a = c.a
    if not c.training or a.p == 0.0:
        return x
    size = [x.shape[0]] + [1] * (x.dim() - 1) if a.mode == "row" else [1] * x.dim()
    keep = torch.empty(size, dtype=x.dtype).bernoulli_(1.0 - a.p)
    return x * (keep / (1.0 - a.p) if a.p < 1.0 else keep)
