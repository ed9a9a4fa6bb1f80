"""Normalisation: BatchNormalization (inference form) and LayerNormalization (with a Transpose pair around
it: layer_norm over `dim`)."""
from __future__ import annotations

import numpy as np

from .dense import _weight_hint
from .registry import Context, OnnxNode, converter


def _f32(cx: Context, nd: OnnxNode, k: int, what: str) -> np.ndarray:
    v = cx.const(nd.inputs[k]) if k < len(nd.inputs) and nd.inputs[k] else None
    if v is None:
        raise cx.refuse(nd, f"its {what} is not a constant")
    return np.asarray(v, dtype=np.float32).reshape(-1)


@converter("BatchNormalization")
def batch_norm(cx: Context, nd: OnnxNode) -> None:
    if nd.attr("training_mode", 0) or (len(nd.outputs) > 1 and any(cx.consumers(o) for o in nd.outputs[1:] if o)):
        raise cx.refuse(nd, "a batch norm in training mode (specc imports inference graphs)")
    params = {"weight": _f32(cx, nd, 1, "scale"), "bias": _f32(cx, nd, 2, "bias"),
              "running_mean": _f32(cx, nd, 3, "mean"), "running_var": _f32(cx, nd, 4, "variance"),
              "num_batches_tracked": np.zeros((), np.int64)}
    attrs = {}
    eps = float(str(np.float32(nd.attr("epsilon", 1e-5))))          # 1e-06, not 9.999999974752427e-07
    if abs(eps - 1e-5) > 1e-12:
        attrs["eps"] = eps
    cx.emit("batch_norm", [nd.inputs[0]], attrs, params, hint=_weight_hint(nd.inputs[1], nd), outputs=nd.outputs[:1])


@converter("LayerNormalization")
def layer_norm(cx: Context, nd: OnnxNode) -> None:
    attrs, params = _layer_norm_parts(cx, nd)
    cx.emit("layer_norm", [nd.inputs[0]], attrs, params, hint=_weight_hint(nd.inputs[1], nd), outputs=nd.outputs[:1])


def _layer_norm_parts(cx: Context, nd: OnnxNode) -> tuple[dict, dict]:
    """The layer_norm attributes and parameters of a LayerNormalization node."""
    if any(cx.consumers(o) for o in nd.outputs[1:] if o):
        raise cx.refuse(nd, "its Mean / InvStdDev outputs are read")
    scale = cx.const(nd.inputs[1])
    if scale is None:
        raise cx.refuse(nd, "its scale is not a constant")
    axis = nd.attr("axis", -1)
    shape = cx.shape(nd.inputs[0])
    if axis >= 0:
        if shape is None:
            raise cx.refuse(nd, "a positive axis on an input of unknown rank")
        axis -= len(shape)
    attrs: dict = {}
    if axis != -1:
        attrs["normalized_shape"] = [int(d) for d in scale.shape[axis:]] if scale.ndim >= -axis else None
        if attrs["normalized_shape"] is None:
            raise cx.refuse(nd, f"its scale {list(scale.shape)} does not cover the normalised dims")
    eps = float(str(np.float32(nd.attr("epsilon", 1e-5))))          # 1e-06, not 9.999999974752427e-07
    if abs(eps - 1e-5) > 1e-12:
        attrs["eps"] = eps
    params = {"weight": np.broadcast_to(scale.astype(np.float32), scale.shape[axis:] if scale.ndim >= -axis
                                        else tuple(shape[axis:])).copy()}
    if len(nd.inputs) > 2 and nd.inputs[2]:
        params["bias"] = np.broadcast_to(_f32(cx, nd, 2, "bias").reshape(cx.const(nd.inputs[2]).shape),
                                         params["weight"].shape).astype(np.float32).copy()
    else:
        attrs["bias"] = False
    return attrs, params


def layer_norm_over_dim(cx: Context, nd: OnnxNode, perm: list[int]) -> bool:
    """Transpose (dim d to the end) → LayerNormalization over the last axis → Transpose back: specc's
    layer_norm with `dim: d` (as specc lowers it, and torchvision's LayerNorm2d over channels)."""
    rank = len(perm)
    d = perm[-1]
    if perm != [i for i in range(rank) if i != d] + [d]:
        return False
    ln = cx.only_consumer(nd.outputs[0], "LayerNormalization")
    back = None if ln is None else cx.only_consumer(ln.outputs[0], "Transpose")
    if back is None or list(back.attr("perm") or []) != [perm.index(i) for i in range(rank)] \
            or nd.inputs[0] == ln.inputs[0] or ln.attr("axis", -1) not in (-1, rank - 1):
        return False
    attrs, params = _layer_norm_parts(cx, ln)
    if params["weight"].ndim != 1:
        return False
    cx.take(ln)
    cx.take(back)
    cx.emit("layer_norm", [nd.inputs[0]], {"dim": d, **attrs}, params, hint=_weight_hint(ln.inputs[1], ln),
            outputs=back.outputs)
    return True
