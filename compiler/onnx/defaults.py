"""Attribute values written out even where they equal ONNX's default.

Converters do not all read a missing attribute as the ONNX default (onnx2torch took a CumSum without
`reverse` for a reversed one; Softmax's default axis changed at opset 13), so the exported graph states
the value of every attribute below that a node leaves out. The meaning is unchanged: these are the
defaults of the ONNX spec for opsets 17+.
"""
from __future__ import annotations

from typing import Any

import onnx
from onnx import helper

EXPLICIT: dict[str, dict[str, Any]] = {
    "CumSum": {"exclusive": 0, "reverse": 0},
    "ArgMax": {"axis": 0, "keepdims": 1, "select_last_index": 0},
    "Gemm": {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0},
    "Gather": {"axis": 0},
    "Flatten": {"axis": 1},
    "Split": {"axis": 0},
    "OneHot": {"axis": -1},
    "Pad": {"mode": "constant"},
    "ReduceSum": {"keepdims": 1, "noop_with_empty_axes": 0},
    "ReduceMax": {"keepdims": 1},
    "ReduceMean": {"keepdims": 1},
    "LeakyRelu": {"alpha": 0.01},
    "Elu": {"alpha": 1.0},
    "Gelu": {"approximate": "none"},
    "Softmax": {"axis": -1},
    "LogSoftmax": {"axis": -1},
    "LayerNormalization": {"axis": -1, "epsilon": 1e-5},
    "BatchNormalization": {"epsilon": 1e-5},
    "Conv": {"group": 1},
    "ConvTranspose": {"group": 1},
    "MaxPool": {"ceil_mode": 0},
    "AveragePool": {"ceil_mode": 0, "count_include_pad": 0},
}


def make_defaults_explicit(model: onnx.ModelProto) -> int:
    """Add the missing attributes of EXPLICIT to every node, in place; returns how many were added."""
    added = 0
    for nd in model.graph.node:
        wanted = EXPLICIT.get(nd.op_type) if nd.domain in ("", "ai.onnx") else None
        if not wanted:
            continue
        have = {a.name for a in nd.attribute}
        for name, value in wanted.items():
            if name not in have:
                nd.attribute.append(helper.make_attribute(name, value))
                added += 1
    return added
