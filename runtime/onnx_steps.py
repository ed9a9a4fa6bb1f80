"""Inference steps that run a node's own ONNX lowering in onnxruntime: the recurrent layers.

Why: an LSTM's time loop is one small GEMM and ~10 elementwise NumPy calls per step; at the benchmark's
[32, 50] tokens, hidden 128, that loop took 6.0 ms against PyTorch's nn.LSTM 3.2 ms, and onnxruntime's
LSTM kernel (MLAS GEMMs, fused gate loops) takes 2.0 ms with the weights passed in on every call
(docs/benchmarks.md, "Recurrent layers in inference"). onnxruntime is a dependency of specc already.

How: for a node whose op is in OPS, the inference plan (runtime/inference_plan.py) builds a one-node ONNX
model from the op record's own lowering (the one `specc compile` exports, checked against the kernel
by every op's onnx_parity test), with the node's inputs *and parameters* as graph inputs: one session
per (node, input shapes, thread count) serves every call while the weights change between calls
(training between evaluations, load_state_dict). Only inference uses it: training keeps the NumPy
kernel, whose forward caches what its backward needs. Float64 inputs, SPECC_ONNX_STEPS=0, a forked
child of a process that made sessions, or a model onnxruntime refuses keep the NumPy kernel.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import ort_sessions, threads

OPS = frozenset({"lstm", "gru", "rnn"})
_refused: set = set()                  # keys onnxruntime would not build: never retried


def enabled() -> bool:
    """SPECC_ONNX_STEPS unset or 1: recurrent layers run in onnxruntime during inference; 0: NumPy."""
    return os.environ.get("SPECC_ONNX_STEPS", "1").strip().lower() not in ("0", "false", "no", "off")


def usable(op: str) -> bool:
    """Whether the plan should try onnxruntime for this op (checked again per call by run())."""
    return op in OPS and enabled()


def _value_info(name: str, a: np.ndarray):
    from onnx import helper

    from compiler.onnx.registry import DTYPES
    return helper.make_tensor_value_info(name, DTYPES[str(a.dtype)], list(a.shape))


def _concrete(node: Any, symbols: dict[str, int]) -> Any:
    """The node with its output shapes' bound symbols replaced by their sizes."""
    from compiler.ir import Node, TensorType
    outs = {p: TensorType(tuple(symbols.get(d, d) if isinstance(d, str) else d for d in t.shape), t.dtype)
            for p, t in node.outputs.items()}
    return Node(name=node.name, op=node.op, attrs=node.attrs, inputs=[], outputs=outs, params=node.params)


def _build(node: Any, ctx: Any, args: list, params: list, n_threads: int):
    """(session, output names, their port indices) for the node's lowering at these shapes."""
    from onnx import helper

    from compiler.ir import TensorType
    from compiler.onnx import LOWERINGS, Builder
    from compiler.onnx.registry import DTYPES

    b = Builder(18)
    graph_inputs, x, p = [], [], []
    for prefix, values, names in (("in", args, x), ("p", params, p)):
        for i, v in enumerate(values):
            if v is None:
                names.append(None)
                continue
            nm = f"{prefix}{i}"
            b.reserve(nm)
            names.append(nm)
            graph_inputs.append(_value_info(nm, v))
    b.ins = [None if v is None else TensorType(tuple(v.shape), str(v.dtype)) for v in args]
    b.scope = node.name
    res = LOWERINGS[node.op](b, _concrete(node, ctx.symbols), x, p)
    res = [res] if isinstance(res, str) else list(res)
    names, ports = [], []
    for k, value in enumerate(res):
        wanted = k >= len(ctx.wanted) or ctx.wanted[k]
        if value is not None and wanted:
            names.append(b.op("Identity", [value], outputs=[f"out{k}"]))
            ports.append(k)
    types = list(node.outputs.values())
    outs = [helper.make_tensor_value_info(n, DTYPES[types[k].dtype], None) for n, k in zip(names, ports)]
    graph = helper.make_graph(b.nodes, node.op, graph_inputs, outs, b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    sess = ort_sessions.make(model, n_threads, optimize=True)
    return sess, names, ports


def run(node: Any, ctx: Any, args: list, params: list) -> tuple | None:
    """The node's outputs (one per port, None where not wanted) from onnxruntime, or None when this call
    must use the NumPy kernel instead."""
    if ort_sessions.forked():
        return None
    floats = [v for v in list(args) + list(params) if v is not None]
    if any(not isinstance(v, np.ndarray) or (v.dtype.kind == "f" and v.dtype != np.float32) for v in floats):
        return None
    n_threads = threads.cap()
    key = (id(node), node.name, tuple(None if v is None else (v.shape, v.dtype.str) for v in args),
           tuple(v.shape for v in params), ctx.wanted, n_threads)
    if key in _refused:
        return None
    try:
        hit = ort_sessions.cached(key, lambda: _build(node, ctx, args, params, n_threads))
    except Exception:                  # noqa: BLE001 - onnxruntime refused this model: keep NumPy for it
        _refused.add(key)
        return None
    sess, names, ports = hit
    feeds = {f"in{i}": np.ascontiguousarray(v) for i, v in enumerate(args) if v is not None}
    feeds.update({f"p{i}": np.ascontiguousarray(v) for i, v in enumerate(params)})
    threads.other_pool_used()
    try:
        got = sess.run(names, feeds)
    except Exception:                  # noqa: BLE001 - e.g. a shape onnxruntime rejects: NumPy from now on
        _refused.add(key)
        return None
    out: list = [None] * len(node.outputs)
    for k, v in zip(ports, got):
        out[k] = v
    return tuple(out)
