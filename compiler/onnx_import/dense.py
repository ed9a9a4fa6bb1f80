"""Dense layers: Gemm, and MatMul by a constant (+ Add of a constant bias), become `linear`.

specc's `linear` (as torch.nn.Linear) keeps weight [out, in]: Gemm's B is used as it is when transB=1,
transposed when transB=0 (and a MatMul's right operand [in, out] is always transposed).
"""
from __future__ import annotations

import numpy as np

from .registry import Context, OnnxNode, converter


def _weight_hint(name: str, nd: OnnxNode) -> list[str]:
    """Name candidates for a layer with weights: its weight's name (`conv1.weight`), then its node's."""
    return [name, nd.name]


def _bias_of(cx: Context, value: str, out: int) -> tuple[np.ndarray, OnnxNode] | None:
    """A following `Add(value, const)` whose constant is a bias of size `out` (or broadcasts as one)."""
    add = cx.only_consumer(value, "Add")
    if add is None:
        return None
    other = add.inputs[1] if add.inputs[0] == value else add.inputs[0]
    c = cx.const(other)
    if c is None or c.dtype.kind != "f" or c.size != out or (c.ndim and c.shape[-1] != out):
        return None
    return c.reshape(out).astype(np.float32), add


def _linear(cx: Context, nd: OnnxNode, x: str, w: np.ndarray, bias: np.ndarray | None, hint: list[str],
            outputs: list[str]) -> None:
    attrs: dict = {"out_features": int(w.shape[0])}
    params = {"weight": np.ascontiguousarray(w, dtype=np.float32)}
    if bias is None:
        attrs["bias"] = False
    else:
        params["bias"] = bias
    cx.emit("linear", [x], attrs, params, hint=hint, outputs=outputs)


def linear_from_matmul(cx: Context, nd: OnnxNode) -> bool:
    w = cx.const(nd.inputs[1])
    if w is None or w.ndim != 2 or w.dtype.kind != "f" or cx.is_const(nd.inputs[0]):
        return False
    found = _bias_of(cx, nd.outputs[0], w.shape[1])
    bias, outputs = None, nd.outputs
    if found is not None:
        bias, add = found
        cx.take(add)
        outputs = add.outputs
    _linear(cx, nd, nd.inputs[0], w.T, bias, _weight_hint(nd.inputs[1], nd), outputs)
    return True


@converter("Gemm")
def gemm(cx: Context, nd: OnnxNode) -> None:
    a, b = nd.inputs[:2]
    w = cx.const(b)
    if w is None or cx.is_const(a):
        raise cx.refuse(nd, "a Gemm whose right operand is computed at run time (specc imports Gemm as a "
                            "linear layer with constant weights)")
    if nd.attr("transA", 0):
        x = cx.emit("transpose", [a], {"dim0": 0, "dim1": 1}, hint=nd.name)
        a = (x, 0)
    w = w if nd.attr("transB", 0) else w.T
    w = w * np.float32(nd.attr("alpha", 1.0))
    bias = None
    if len(nd.inputs) > 2 and nd.inputs[2]:
        c = cx.const(nd.inputs[2])
        if c is None or c.size not in (1, w.shape[0]):
            raise cx.refuse(nd, "its C input is not a constant bias of the output size")
        bias = (np.broadcast_to(c.reshape(-1), (w.shape[0],)) * np.float32(nd.attr("beta", 1.0))).astype(np.float32)
    _linear(cx, nd, a, w, bias, _weight_hint(b, nd), nd.outputs)
