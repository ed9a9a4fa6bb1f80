"""Comparisons, logic on bool tensors, and Where.

ONNX compares two tensors; a scalar constant operand becomes the spec's `value:` (swapping the comparison
when the constant comes first: Less(2, x) is gt 2). specc has no separate logic ops: on bool tensors `add`
is or, `mul` is and, `ne` is xor and `eq` with `value: false` is not, and Not(Equal) is `ne`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .registry import Context, OnnxNode, converter

COMPARE = {"Equal": "eq", "Less": "lt", "LessOrEqual": "le", "Greater": "gt", "GreaterOrEqual": "ge"}
SWAPPED = {"eq": "eq", "lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "ne": "ne"}
LOGIC = {"Or": "add", "And": "mul", "Xor": "ne"}


def scalar_value(cx: Context, name: str) -> bool | int | float | None:
    """A one-value constant as the Python number a spec writes (None for anything else)."""
    c = cx.const(name)
    if c is None or c.size != 1:
        return None
    v = c.reshape(()).item()
    if isinstance(v, float):
        return float(str(np.float32(v))) if c.dtype == np.float32 else v
    return v


def _step(cx: Context, nd: OnnxNode) -> bool:
    """Cast(x > 0) to float32 is specc's `step`."""
    cast = cx.only_consumer(nd.outputs[0], "Cast")
    zero = scalar_value(cx, nd.inputs[1])
    if cast is None or cast.attr("to") != 1 or zero is None or zero != 0 or cx.is_const(nd.inputs[0]):
        return False
    cx.take(cast)
    cx.emit("step", [nd.inputs[0]], hint=nd.name, outputs=cast.outputs)
    return True


@converter(*COMPARE)
def compare(cx: Context, nd: OnnxNode) -> None:
    op = COMPARE[nd.op_type]
    if op == "gt" and _step(cx, nd):
        return
    out = nd.outputs
    neg = cx.only_consumer(nd.outputs[0], "Not") if op == "eq" else None
    if neg is not None:                                      # Not(Equal(a, b)): specc's ne
        cx.take(neg)
        op, out = "ne", neg.outputs
    a, b = nd.inputs[:2]
    va, vb = scalar_value(cx, a), scalar_value(cx, b)
    if vb is not None and not cx.is_const(a) and len(cx.shape(b) or ()) <= len(cx.shape(a) or ()):
        cx.emit(op, [a], {"value": vb}, hint=nd.name, outputs=out)
    elif va is not None and not cx.is_const(b) and len(cx.shape(a) or ()) <= len(cx.shape(b) or ()):
        cx.emit(SWAPPED[op], [b], {"value": va}, hint=nd.name, outputs=out)
    else:
        cx.emit(op, [a, b], hint=nd.name, outputs=out)


@converter("Not")
def not_(cx: Context, nd: OnnxNode) -> None:
    cx.emit("eq", [nd.inputs[0]], {"value": False}, hint=nd.name, outputs=nd.outputs)


@converter(*LOGIC)
def logic(cx: Context, nd: OnnxNode) -> None:
    cx.emit(LOGIC[nd.op_type], nd.inputs[:2], hint=nd.name, outputs=nd.outputs)


@converter("Where")
def where(cx: Context, nd: OnnxNode) -> None:
    cond, x, y = nd.inputs[:3]
    vy = scalar_value(cx, y)
    attrs: dict[str, Any] = {}
    ins = [cond, x, y]
    if vy is not None and len(cx.shape(y) or ()) <= len(cx.shape(x) or ()) and not cx.is_const(x):
        attrs, ins = {"value": vy}, [cond, x]              # masked_fill's where(mask, x, value)
    cx.emit("where", ins, attrs, hint=nd.name, outputs=nd.outputs)
